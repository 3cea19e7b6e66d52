//! Embedding with a model and asking an index: the index job (scan, diff against what is
//! indexed, embed what is new or changed, commit as it goes) and queries.

use crate::data::{self, Failure};
use crate::index::{Entry, Hit, Index, IndexError, IndexMeta, IndexWriter, SearchOptions};
use crate::model::{Model, ModelSource};
use crate::progress::Verbosity;
use crate::Result;
use candle_core::Device;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name an index records for the bundled model.
pub const DEFAULT_MODEL_NAME: &str = "default";

#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub roots: Vec<PathBuf>,
    pub index: PathBuf,
    pub batch: usize,
    /// Commit progress after this many embedded images …
    pub commit_every: usize,
    /// … or after this long, whichever comes first.
    pub commit_interval: Duration,
    pub verbosity: Verbosity,
}

/// The `--json` summary of an index run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IndexSummary {
    pub total: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub skipped: usize,
    pub seconds: f64,
}

/// The metadata an index made with `model` records.
pub fn index_meta(model: &Model) -> IndexMeta {
    IndexMeta {
        model_id: model.id.clone(),
        model_name: model.name.clone(),
        dim: model.config.embedding_dim(),
        preprocess: serde_json::to_value(&model.config.preprocess).unwrap_or_default(),
    }
}

/// Brings the index at `opts.index` in line with the images under `opts.roots`: new and
/// changed files are embedded, files no longer there are removed. Files that fail to decode
/// are skipped, reported through `on_skip`, and counted.
pub fn index_folders(
    model: &Model,
    opts: &IndexOptions,
    mut on_skip: impl FnMut(&Failure),
) -> Result<IndexSummary> {
    let started = Instant::now();
    let scan = data::scan(&opts.roots)?;
    let mut writer = IndexWriter::open(&opts.index, index_meta(model))?;
    let mut summary = IndexSummary::default();
    for (path, reason) in &scan.unreadable {
        on_skip(&Failure {
            path: path.clone(),
            reason: reason.clone(),
        });
        summary.skipped += 1;
    }

    let present: HashSet<&Path> = scan.files.iter().map(|f| f.path.as_path()).collect();
    let gone: Vec<PathBuf> = writer
        .existing()
        .keys()
        .filter(|p| !present.contains(p.as_path()))
        .cloned()
        .collect();
    for path in &gone {
        writer.remove(path);
    }
    summary.removed = gone.len();

    let mut todo = Vec::new();
    for file in scan.files {
        match writer.existing().get(&file.path) {
            Some(old) if old.size == file.size && old.mtime_ns == file.mtime_ns => {}
            old => todo.push((old.is_some(), file)),
        }
    }

    let bar = opts.verbosity.bar(todo.len() as u64, "index");
    let paths: Vec<PathBuf> = todo.iter().map(|(_, f)| f.path.clone()).collect();
    let mut last_commit = Instant::now();
    let mut since_commit = 0;
    for batch in data::stream(paths, model.preprocess().clone(), opts.batch) {
        for (_, failure) in &batch.failures {
            opts.verbosity.warn(
                &bar,
                &format!("skipped {}: {}", failure.path.display(), failure.reason),
            );
            on_skip(failure);
            // A changed file that no longer decodes must not keep its old vector.
            writer.remove(&failure.path);
        }
        summary.skipped += batch.failures.len();
        let vectors = model.embed(batch.items.iter().map(|d| d.rgb.as_slice()))?;
        for (item, vector) in batch.items.iter().zip(vectors) {
            let (replaces, file) = &todo[item.index];
            writer.add(
                Entry {
                    path: file.path.clone(),
                    size: file.size,
                    mtime_ns: file.mtime_ns,
                },
                &vector,
            )?;
            if *replaces {
                summary.updated += 1;
            } else {
                summary.added += 1;
            }
        }
        since_commit += batch.items.len();
        bar.inc((batch.items.len() + batch.failures.len()) as u64);
        if since_commit >= opts.commit_every || last_commit.elapsed() >= opts.commit_interval {
            writer.commit()?;
            since_commit = 0;
            last_commit = Instant::now();
        }
    }
    bar.finish_and_clear();
    let stats = writer.finish()?;
    summary.total = stats.total;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Loads the model an index was built with, or `requested` if given; either way it must be
/// the index's model.
pub fn model_for_index(
    index: &Index,
    index_dir: &Path,
    requested: Option<PathBuf>,
    device: &Device,
) -> Result<Model> {
    let meta = index.meta();
    let source = match requested {
        Some(path) => ModelSource::Path(path),
        None if meta.model_name == DEFAULT_MODEL_NAME => ModelSource::Default,
        None => ModelSource::Path(PathBuf::from(&meta.model_name)),
    };
    let model = Model::load(&source, device)?;
    if model.id != meta.model_id {
        return Err(IndexError::ModelMismatch {
            dir: index_dir.to_path_buf(),
            index_model_id: meta.model_id.clone(),
            index_model_name: meta.model_name.clone(),
            model_id: model.id.clone(),
            model_name: model.name.clone(),
        }
        .into());
    }
    Ok(model)
}

/// One query's answer: its neighbours, or why the query image could not be used.
pub struct QueryAnswer {
    pub query: PathBuf,
    pub result: std::result::Result<Vec<Hit>, String>,
}

/// Embeds the query images in batches and searches the index for each.
pub fn query(
    model: &Model,
    index: &Index,
    queries: &[PathBuf],
    options: &SearchOptions,
    batch: usize,
) -> Result<Vec<QueryAnswer>> {
    let mut answers = Vec::with_capacity(queries.len());
    for batch in data::stream(queries.to_vec(), model.preprocess().clone(), batch) {
        let mut results: Vec<(usize, std::result::Result<Vec<Hit>, String>)> = batch
            .failures
            .iter()
            .map(|(at, f)| {
                let message = format!("{}: cannot read image: {}", f.path.display(), f.reason);
                (*at, Err(message))
            })
            .collect();
        let vectors = model.embed(batch.items.iter().map(|d| d.rgb.as_slice()))?;
        for (item, vector) in batch.items.iter().zip(vectors) {
            results.push((item.index, Ok(index.search(&vector, options)?)));
        }
        results.sort_by_key(|(at, _)| *at);
        answers.extend(results.into_iter().map(|(at, result)| QueryAnswer {
            query: queries[at].clone(),
            result,
        }));
    }
    Ok(answers)
}
