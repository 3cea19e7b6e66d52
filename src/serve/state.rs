//! What every request reads: the current generation of the store with its model, swapped whole
//! when `imgsearch index` commits a new one, and the things shared by all requests (thumbnail
//! cache, the bound on concurrent embeddings, the cached duplicate groups).
//!
//! A request takes one [`Generation`] (an `Arc`) when it starts and uses only that, so every
//! response comes from one consistent generation even while a newer one is being opened.

use super::embedder::Embedder;
use imgsearch::model::Model;
use imgsearch::pipeline::dups::{find_groups, record_ignored, DupsOptions, Group, Ignored};
use imgsearch::pipeline::model_for_store;
use imgsearch::pipeline::thumbnails::Thumbnails;
use imgsearch::store::{self, Location, Store};
use imgsearch::{Error, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Semaphore;

/// One committed generation of the store and the model its vectors came from.
pub struct Generation {
    pub store: Box<dyn Store>,
    pub model: Arc<Model>,
}

/// Duplicate groups of one generation at one threshold, under the decisions they left apart.
struct DupsMemo {
    generation: u64,
    threshold: f32,
    ignored: Ignored,
    groups: Arc<Vec<Group>>,
}

pub struct Shared {
    requested_model: Option<PathBuf>,
    device: candle_core::Device,
    current: RwLock<Arc<Generation>>,
    pub thumbnails: Thumbnails,
    /// Decodes, thumbnails and duplicate groups running at once.
    pub heavy: Semaphore,
    /// The uploads' embeddings, batched.
    pub embedder: Embedder,
    pub max_upload: usize,
    dups: Mutex<Option<DupsMemo>>,
    /// Held while a decision is written, so that two at once do not lose one.
    deciding: Mutex<()>,
}

impl Shared {
    pub fn open(
        location: &Location,
        requested_model: Option<PathBuf>,
        device: candle_core::Device,
        thumbnails: Thumbnails,
        heavy_workers: usize,
        max_upload: usize,
    ) -> Result<Shared> {
        let store = store::open(location)?;
        store.prepare_lookups()?;
        let model = Arc::new(model_for_store(
            store.as_ref(),
            requested_model.as_deref(),
            &device,
        )?);
        let embedder = Embedder::start(heavy_workers)
            .map_err(|e| Error::Server(format!("cannot start the embedding threads: {e}")))?;
        Ok(Shared {
            embedder,
            requested_model,
            device,
            current: RwLock::new(Arc::new(Generation { store, model })),
            thumbnails,
            heavy: Semaphore::new(heavy_workers.max(1)),
            max_upload,
            dups: Mutex::new(None),
            deciding: Mutex::new(()),
        })
    }

    /// The generation requests should read now.
    pub fn snapshot(&self) -> Arc<Generation> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Opens the store's newest generation if it is not the one being served. Returns the new
    /// generation number when it swapped. Blocking (it maps files or asks the database, and
    /// may load a model).
    pub fn refresh(&self) -> Result<Option<u64>> {
        let serving = self.snapshot();
        let Some(now) = serving.store.latest_generation()? else {
            return Ok(None); // the index was removed: keep serving what is mapped
        };
        if now == serving.store.generation() {
            return Ok(None);
        }
        let store = serving.store.reopen()?;
        store.prepare_lookups()?;
        let model = if store.meta().model_id == serving.model.id {
            serving.model.clone()
        } else {
            Arc::new(model_for_store(
                store.as_ref(),
                self.requested_model.as_deref(),
                &self.device,
            )?)
        };
        let generation = store.generation();
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(Generation { store, model });
        Ok(Some(generation))
    }

    /// The duplicate groups of `generation` at `threshold`, computed once per generation,
    /// threshold and set of recorded decisions (blocking: every image decoded once more for
    /// its views, a graph search per view, the pixel check), as `imgsearch dups` finds them at
    /// the same threshold: the same views, closest images and copy score, so the page shows
    /// what the command reports.
    pub fn dups(&self, generation: &Generation, threshold: f32) -> Result<Arc<Vec<Group>>> {
        let key = generation.store.generation();
        // Pairs said apart beside a local index (by this page or by `imgsearch dups --ignore`)
        // are not shown (a PostgreSQL store keeps no such file). The decisions are part of the
        // memo's key, read on every request: groups computed before a decision (by a request
        // from a page left while it waited, finishing after the decision) are never current.
        let ignored = match generation.store.folder() {
            Some(dir) => Ignored::load(dir)?,
            None => Ignored::default(),
        };
        {
            let memo = self.dups.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = memo.as_ref() {
                if m.generation == key && m.threshold == threshold && m.ignored == ignored {
                    return Ok(m.groups.clone());
                }
            }
        }
        // A server's stderr is its log: no progress bars there.
        let opts = DupsOptions {
            threshold,
            verbosity: imgsearch::progress::Verbosity { quiet: true },
            ..DupsOptions::default()
        };
        let groups = Arc::new(
            find_groups(
                generation.store.as_ref(),
                Some(&generation.model),
                &opts,
                &ignored,
            )?
            .groups,
        );
        *self.dups.lock().unwrap_or_else(|p| p.into_inner()) = Some(DupsMemo {
            generation: key,
            threshold,
            ignored,
            groups: groups.clone(),
        });
        Ok(groups)
    }

    /// Records every pair among `paths` as not duplicates beside `generation`'s index, as
    /// `imgsearch dups --ignore` does; the next answer leaves them apart. Returns the pairs
    /// added and the pairs recorded in all.
    pub fn ignore(&self, generation: &Generation, paths: &[PathBuf]) -> Result<(usize, usize)> {
        let Some(dir) = generation.store.folder() else {
            return Err(Error::Usage(
                "a PostgreSQL store keeps no record of pairs that are not duplicates".into(),
            ));
        };
        let _writing = self.deciding.lock().unwrap_or_else(|p| p.into_inner());
        record_ignored(dir, paths)
    }
}
