//! Where the embeddings live, and the one interface every searching front end reads them
//! through: [`Store`], implemented by the local index folder ([`crate::index::Index`], the
//! default) and by a PostgreSQL database with pgvector ([`postgres::PgStore`], for collections
//! that outgrow one machine).
//!
//! A store is named by a [`Location`]: a folder, or a `postgres://` / `postgresql://` URL
//! (`--store`, or the `IMGSEARCH_STORE` environment variable). Writing differs by kind and
//! stays with each: the local index commits segments ([`crate::index::IndexWriter`]); the
//! PostgreSQL store is filled through its jobs table by workers ([`crate::pipeline::jobs`]).
//! Front ends write through one interface whatever the kind, [`crate::pipeline::StoreWriter`].

pub mod postgres;

use crate::error::Result;
use crate::index::{Entry, Hit, ImageId, Index, IndexMeta, SearchOptions};
use std::path::{Path, PathBuf};

pub use postgres::PgStore;

/// Where a store is: a local index folder or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// A libpq connection URL (`postgres://user@host:port/db?...`).
    Postgres(String),
}

impl Location {
    /// The store named by `--store` when given (a URL, or a folder), else the index folder.
    pub fn of(index: &Path, store: Option<&str>) -> Location {
        match store {
            Some(url) if is_postgres_url(url) => Location::Postgres(url.to_string()),
            Some(folder) => Location::Local(PathBuf::from(folder)),
            None => Location::Local(index.to_path_buf()),
        }
    }

    /// How messages name the store: the folder, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Local(dir) => dir.display().to_string(),
            Location::Postgres(url) => postgres::redacted(url),
        }
    }
}

/// What kind of store a [`Store`] is, for the decisions that differ by kind (which error names
/// a model mismatch, for one) without reading them out of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A local index folder ([`crate::index::Index`]).
    Local,
    /// A PostgreSQL database with pgvector ([`PgStore`]).
    Postgres,
}

/// A `postgres://` or `postgresql://` URL.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// What searching front ends need of a store: its model's identity, its size and generation,
/// nearest neighbours, and every entry with its vector.
pub trait Store: Send + Sync {
    /// How messages name the store (a folder, or a URL without its password).
    fn describe(&self) -> String;
    /// Whether it is a local index or a PostgreSQL database.
    fn kind(&self) -> StoreKind;
    /// The folder of a local index (errors name it as a path); `None` for a database.
    fn folder(&self) -> Option<&Path> {
        None
    }
    /// The model and preprocessing the vectors came from.
    fn meta(&self) -> &IndexMeta;
    /// Entries stored when this handle was opened.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A number that grows with every commit.
    fn generation(&self) -> u64;
    /// The `opts.k` nearest entries to `query` by cosine, best first.
    fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit>>;
    /// Every entry with its L2-normalised vector.
    fn entries_with_vectors(&self) -> Result<Vec<(Entry, Vec<f32>)>>;
    /// The folders the store was given, when it records them.
    fn roots(&self) -> Vec<PathBuf>;
    /// The entry named `id` and its stored (L2-normalised) vector.
    fn lookup(&self, id: ImageId) -> Result<Option<(Entry, Vec<f32>)>>;
    /// The neighbours of the stored image `id`, searched with its stored vector (it comes
    /// first, cosine 1); `None` if no entry has that id.
    fn search_by_id(&self, id: ImageId, opts: &SearchOptions) -> Result<Option<Vec<Hit>>> {
        match self.lookup(id)? {
            Some((_, vector)) => self.search(&vector, opts).map(Some),
            None => Ok(None),
        }
    }
    /// Pieces the store is kept in: the index's segments, or the partitions of a sharded
    /// PostgreSQL table (1 when it is not partitioned).
    fn segment_count(&self) -> usize;
    /// When the opened generation was committed (seconds since the Unix epoch; 0 if unknown).
    fn committed_unix(&self) -> u64;
    /// The newest generation now, without opening it (`None`: the store is gone).
    fn latest_generation(&self) -> Result<Option<u64>>;
    /// A fresh handle on the newest generation.
    fn reopen(&self) -> Result<Box<dyn Store>>;
    /// Makes [`Store::lookup`] fast before the first request needs it.
    fn prepare_lookups(&self) -> Result<()> {
        Ok(())
    }
    /// Whether calls wait on the network (a server must not make them on its event loop).
    fn blocks(&self) -> bool;
}

impl Store for Index {
    fn describe(&self) -> String {
        self.dir().display().to_string()
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Local
    }
    fn folder(&self) -> Option<&Path> {
        Some(self.dir())
    }
    fn meta(&self) -> &IndexMeta {
        Index::meta(self)
    }
    fn len(&self) -> usize {
        Index::len(self)
    }
    fn generation(&self) -> u64 {
        Index::generation(self)
    }
    fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit>> {
        Ok(Index::search(self, query, opts)?)
    }
    fn entries_with_vectors(&self) -> Result<Vec<(Entry, Vec<f32>)>> {
        let entries = self.entries().collect::<Result<Vec<_>, _>>()?;
        Ok(entries
            .into_iter()
            .zip(self.vectors().map(<[f32]>::to_vec))
            .collect())
    }
    fn roots(&self) -> Vec<PathBuf> {
        Index::roots(self)
    }
    fn lookup(&self, id: ImageId) -> Result<Option<(Entry, Vec<f32>)>> {
        Ok(Index::lookup(self, id)?.map(|(entry, vector)| (entry, vector.to_vec())))
    }
    fn search_by_id(&self, id: ImageId, opts: &SearchOptions) -> Result<Option<Vec<Hit>>> {
        Ok(Index::search_by_id(self, id, opts)?)
    }
    fn segment_count(&self) -> usize {
        Index::segment_count(self)
    }
    fn committed_unix(&self) -> u64 {
        Index::committed_unix(self)
    }
    fn latest_generation(&self) -> Result<Option<u64>> {
        Ok(Index::current_generation(self.dir())?)
    }
    fn reopen(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(Index::open(self.dir())?))
    }
    fn prepare_lookups(&self) -> Result<()> {
        Ok(self.build_id_table()?)
    }
    fn blocks(&self) -> bool {
        false
    }
}

/// Opens the store at `location` for reading (searching never writes, so a PostgreSQL
/// read replica serves it).
///
/// A folder that holds no index is an error that names it:
///
/// ```
/// use imgsearch::store::{open, Location};
/// let missing = Location::Local("no/such/index".into());
/// let error = open(&missing).err().expect("no index there");
/// assert!(error.to_string().contains("no/such/index"), "{error}");
/// ```
pub fn open(location: &Location) -> Result<Box<dyn Store>> {
    Ok(match location {
        Location::Local(dir) => Box::new(Index::open(dir)?),
        Location::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}

/// [`open`] for a job that reads the whole store (duplicate groups): a local index has every
/// file checked in full first ([`Index::open_verified`]), so damage is an error, not a wrong
/// group.
pub fn open_verified(location: &Location) -> Result<Box<dyn Store>> {
    Ok(match location {
        Location::Local(dir) => Box::new(Index::open_verified(dir)?),
        Location::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}
