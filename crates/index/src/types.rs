//! The index's plain types: what an index records about its model ([`IndexMeta`]), one
//! indexed file ([`Entry`]), one result ([`Hit`]), how to search ([`SearchOptions`]), and the
//! normalisation every stored and query vector goes through.

use super::exact;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Segments with at least this many vectors get an HNSW graph; smaller ones are scanned exactly.
/// At 10,000 real-like vectors the graph already answers about 4× faster than the scan and costs
/// well under a second to build (`examples/index_bench.rs`), so only small segments are scanned.
pub const DEFAULT_GRAPH_THRESHOLD: usize = 5_000;

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
#[derive(Clone, Debug, PartialEq)]
pub struct SearchOptions {
    /// Number of results wanted.
    pub k: usize,
    /// HNSW beam width on layer 0 (raised to `k` if smaller). Default 64.
    pub ef: usize,
    /// Scan every vector instead of using the graphs.
    pub exact: bool,
    /// Drop results whose cosine is below this (after taking the `k` best).
    pub min_score: Option<f32>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            ef: 64,
            exact: false,
            min_score: None,
        }
    }
}

/// The stable name of an indexed image: a 64-bit hash (XXH3) of its path's bytes, written as 16
/// hex digits. It depends on nothing but the path, so it survives re-indexing and names the
/// same file in every generation (a shared link stays valid); it never carries a path, so a
/// request that names an image by id cannot point anywhere outside the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(pub u64);

impl ImageId {
    pub fn of(path: &std::path::Path) -> ImageId {
        ImageId(xxhash_rust::xxh3::xxh3_64(
            path.as_os_str().as_encoded_bytes(),
        ))
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for ImageId {
    type Err = String;

    /// Exactly 16 hex digits (as [`ImageId`]'s `Display` writes them).
    fn from_str(s: &str) -> Result<ImageId, String> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not an image id (16 hex digits)"));
        }
        u64::from_str_radix(s, 16)
            .map(ImageId)
            .map_err(|e| format!("{s:?} is not an image id: {e}"))
    }
}

/// L2-normalised copy of `v`, or `None` if it is zero or not finite.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = exact::dot(v, v).sqrt();
    if !norm.is_finite() || norm == 0.0 || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}

/// A path as the manifest stores it: a string when it is valid UTF-8, else its raw bytes, so
/// that any file name round-trips.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub(crate) enum StoredPath {
    Text(String),
    Bytes { bytes: Vec<u8> },
}

impl StoredPath {
    pub(crate) fn of(path: &std::path::Path) -> StoredPath {
        match path.to_str() {
            Some(text) => StoredPath::Text(text.to_string()),
            None => StoredPath::Bytes {
                bytes: path.as_os_str().as_encoded_bytes().to_vec(),
            },
        }
    }

    pub(crate) fn to_path(&self) -> PathBuf {
        match self {
            StoredPath::Text(text) => PathBuf::from(text),
            StoredPath::Bytes { bytes } => bytes_to_path(bytes),
        }
    }
}

#[cfg(unix)]
fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}
