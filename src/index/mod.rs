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

mod error;
mod exact;
mod fsutil;
mod graph;
mod lock;
mod manifest;
mod reader;
mod segment;
mod tombstones;
mod types;
mod writer;

pub use error::IndexError;
/// The dot product every search path uses (AVX-512, AVX2 or portable, chosen at run time), shared
/// with the pipeline's own comparisons of embeddings and pixels.
pub(crate) use exact::dot;
pub use reader::{verify, verify_report, Index, VerifyReport};
pub use types::{
    normalized, Entry, Hit, ImageId, IndexMeta, SearchOptions, DEFAULT_GRAPH_THRESHOLD,
};
pub use writer::{DroppedSegment, IndexStats, IndexWriter, RepairReport, MAX_SEGMENTS};

#[cfg(target_endian = "big")]
compile_error!("imgsearch index files are little-endian and mapped in place; big-endian targets are not supported");
