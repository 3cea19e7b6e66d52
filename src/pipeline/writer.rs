//! The write side of a store, one interface whatever its kind: [`StoreWriter`] indexes folders
//! into a store and forgets them. The local index embeds and commits segments itself
//! ([`super::index_folders`]); a PostgreSQL store is filled through its jobs table
//! ([`super::jobs`]), embedded here by a worker or left to `imgsearch worker`s.

use super::indexing::{ForgetSummary, IndexOptions, IndexSummary};
use super::jobs::WorkerOptions;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::OnEvent;
use crate::store::{postgres, Location, StoreKind};
use std::path::{Path, PathBuf};

/// What writing front ends (`index`, `forget`) need of a store.
pub trait StoreWriter {
    /// How messages name the store (a folder, or a URL without its password).
    fn describe(&self) -> String;
    /// Whether it is a local index or a PostgreSQL database.
    fn kind(&self) -> StoreKind;
    /// The folder of a local index; `None` for a database.
    fn folder(&self) -> Option<&Path>;
    /// Brings the store up to date with `opts.dirs` (`opts.index` is replaced by the store's
    /// own place).
    fn index_folders(
        &self,
        model: &Model,
        opts: &IndexOptions,
        on_event: OnEvent<'_>,
    ) -> Result<IndexSummary>;
    /// Drops the recorded `folders` and their entries.
    fn forget(&self, folders: &[PathBuf]) -> Result<ForgetSummary>;
}

/// The writer of the store at `location`. `worker` says how `index` embeds into a PostgreSQL
/// store (`None`: it only queues the files); a local index embeds them itself.
pub fn writer(location: &Location, worker: Option<WorkerOptions>) -> Box<dyn StoreWriter> {
    match location {
        Location::Local(dir) => Box::new(LocalWriter { dir: dir.clone() }),
        Location::Postgres(url) => Box::new(PgWriter {
            url: url.clone(),
            worker,
        }),
    }
}

/// A local index folder.
struct LocalWriter {
    dir: PathBuf,
}

impl StoreWriter for LocalWriter {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Local
    }
    fn folder(&self) -> Option<&Path> {
        Some(&self.dir)
    }
    fn index_folders(
        &self,
        model: &Model,
        opts: &IndexOptions,
        on_event: OnEvent<'_>,
    ) -> Result<IndexSummary> {
        let opts = IndexOptions {
            index: self.dir.clone(),
            ..opts.clone()
        };
        super::index_folders(model, &opts, on_event)
    }
    fn forget(&self, folders: &[PathBuf]) -> Result<ForgetSummary> {
        super::forget(&self.dir, folders)
    }
}

/// A PostgreSQL database, filled through its jobs table.
struct PgWriter {
    url: String,
    worker: Option<WorkerOptions>,
}

impl StoreWriter for PgWriter {
    fn describe(&self) -> String {
        postgres::redacted(&self.url)
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }
    fn folder(&self) -> Option<&Path> {
        None
    }
    fn index_folders(
        &self,
        model: &Model,
        opts: &IndexOptions,
        on_event: OnEvent<'_>,
    ) -> Result<IndexSummary> {
        super::jobs::index_postgres_with(model, &self.url, opts, self.worker.as_ref(), on_event)
    }
    fn forget(&self, _folders: &[PathBuf]) -> Result<ForgetSummary> {
        Err(Error::Usage(format!(
            "forget works on a local index; the store {} is a PostgreSQL database",
            self.describe()
        )))
    }
}
