//! The on-disk index: a directory of immutable segments named by a manifest, committed atomically.
//!
//! This module owns the public API of the index ([`Index`] to read, [`IndexWriter`] to write,
//! [`verify`] for a full integrity check) and its error type [`IndexError`]. The pieces live in
//! small private modules:
//!
//! - `manifest`: `manifest.json`, the single mutable file, swapped atomically on every commit;
//! - `segment`: a segment's vectors file (`seg-NNNNNN.vec`) and entries file (`seg-NNNNNN.ent`);
//! - `tombstones`: per-generation deletion bitsets (`seg-NNNNNN.del-GGGGGG`);
//! - `graph`: the flat HNSW graph (`seg-NNNNNN.hnsw`), built by our own parallel HNSW builder, searched over the mmap;
//! - `exact`: the dot product and brute-force top-k scan;
//! - `lock`: the writer's exclusive lock file (`writer.lock`);
//! - `fsutil`: fsync'd, checksummed file writing and mapping;
//! - `reader` / `writer`: [`Index`] and [`IndexWriter`].
//!
//! # Layout of an index directory
//!
//! ```text
//! index/
//!   manifest.json            {"crc32":"<hex of body>","manifest":<body>}
//!   writer.lock              held (flock) by the one writer
//!   seg-000001.vec           64-byte header + count×dim little-endian f32 (64-byte aligned)
//!   seg-000001.ent           64-byte header + count×32-byte records + path bytes
//!   seg-000001.hnsw          optional flat HNSW graph (segments of >= the graph threshold)
//!   seg-000001.del-000004    optional deletion bitset written by generation 4
//! ```
//!
//! Every file but `manifest.json` and `writer.lock` is immutable once a manifest names it: a commit
//! writes new files, fsyncs them, then replaces the manifest (write temp + fsync + rename + fsync
//! dir). A reader reads the manifest once and only opens the files it names, so it sees exactly one
//! generation. Files no manifest names are garbage from crashed or superseded writers; a writer
//! deletes them when it opens the index and after [`IndexWriter::finish`].
//!
//! All binary files are little-endian; big-endian targets are not supported.

mod exact;
mod fsutil;
mod graph;
mod lock;
mod manifest;
mod reader;
mod segment;
mod tombstones;
mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use reader::{verify, Index};
pub use writer::{IndexStats, IndexWriter, MAX_SEGMENTS};

#[cfg(target_endian = "big")]
compile_error!("imgsearch index files are little-endian and mapped in place; big-endian targets are not supported");

/// Segments with at least this many vectors get an HNSW graph; smaller ones are scanned exactly.
/// At 10,000 real-like vectors the graph already answers about 4× faster than the scan and costs
/// well under a second to build (`examples/index_bench.rs`), so only small segments are scanned.
pub const DEFAULT_GRAPH_THRESHOLD: usize = 5_000;

/// Environment variable overriding [`DEFAULT_GRAPH_THRESHOLD`] for new writers.
pub const GRAPH_THRESHOLD_ENV: &str = "IMGSEARCH_GRAPH_MIN";

/// Identity of the model and preprocessing that produced an index's vectors.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IndexMeta {
    /// Identity of the model that made the vectors (a hash string).
    pub model_id: String,
    /// Human name of the model, e.g. "default" or a path.
    pub model_name: String,
    /// Vector dimension.
    pub dim: usize,
    /// Preprocessing settings, recorded verbatim.
    pub preprocess: serde_json::Value,
}

/// One indexed file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Absolute path of the image.
    pub path: PathBuf,
    /// File size in bytes when it was indexed.
    pub size: u64,
    /// Modification time (nanoseconds since the Unix epoch) when it was indexed.
    pub mtime_ns: i64,
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub path: PathBuf,
    /// Cosine similarity between the query and the indexed vector.
    pub score: f32,
}

/// How to search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchOptions {
    /// Number of results wanted.
    pub k: usize,
    /// HNSW beam width on layer 0 (raised to `k` if smaller). Default 64.
    pub ef: usize,
    /// Scan every vector instead of using the graphs.
    pub exact: bool,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            ef: 64,
            exact: false,
        }
    }
}

const REINDEX: &str = "delete the index folder and re-run `imgsearch index`";

/// Errors of the index. Every message names the file or folder involved.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {}: run `imgsearch index DIR` first", .0.display())]
    Missing(PathBuf),
    #[error("index file {} is corrupt ({reason}): {REINDEX}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "index file {} has format version {found} but this imgsearch reads version {expected}: {REINDEX}",
        path.display()
    )]
    Version {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("another imgsearch process is writing {}", .0.display())]
    Locked(PathBuf),
    #[error(
        "index {} was built with model {index_model_id} ({index_model_name}) but the \
         current model is {model_id} ({model_name}): use the same model, or index into another folder",
        dir.display()
    )]
    ModelMismatch {
        dir: PathBuf,
        index_model_id: String,
        index_model_name: String,
        model_id: String,
        model_name: String,
    },
    #[error(
        "vector of dimension {found} given to index {} of dimension {expected}",
        dir.display()
    )]
    DimMismatch {
        dir: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("invalid input for index {}: {reason}", dir.display())]
    Invalid { dir: PathBuf, reason: String },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IndexError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The graph threshold from [`GRAPH_THRESHOLD_ENV`], else [`DEFAULT_GRAPH_THRESHOLD`].
pub(crate) fn graph_threshold_from_env() -> usize {
    std::env::var(GRAPH_THRESHOLD_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_GRAPH_THRESHOLD)
}

/// L2-normalised copy of `v`, or `None` if it is zero or not finite.
pub(crate) fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = exact::dot(v, v).sqrt();
    if !norm.is_finite() || norm == 0.0 || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}
