//! imgsearch's on-disk index engine: a directory of immutable segments of unit vectors named by
//! a manifest, committed atomically, searched exactly or through a per-segment HNSW graph.
//!
//! The engine owns vectors, their entries (image id, path, size, mtime), the files that hold
//! them and the search over them. It knows nothing of images or models: callers hand it
//! embeddings and an [`IndexMeta`] naming the model that made them, and it checks that every
//! later writer and query agrees. It does not depend on the `imgsearch` crate; `imgsearch`
//! re-exports it as `imgsearch::index`.
//!
//! The public surface: [`Index`] to read, [`IndexWriter`] to write, [`verify`] for a full
//! integrity check, the error type [`IndexError`], the record types ([`Entry`], [`Hit`],
//! [`ImageId`], [`IndexMeta`], [`SearchOptions`]), the dot product [`dot`] every comparison of
//! embeddings uses, [`simd`] (the run-time CPU feature detection the kernels share) and [`fsx`]
//! (atomic file replacement and read-only maps, which the rest of imgsearch writes through too).
//! The pieces live in small private modules:
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
pub mod fsx;
mod graph;
mod lock;
mod manifest;
mod reader;
mod segment;
pub mod simd;
mod tombstones;
mod types;
mod writer;

pub use error::IndexError;
/// The dot product every search path uses (AVX-512, AVX2 or portable, chosen at run time), shared
/// with imgsearch's own comparisons of embeddings and pixels.
pub use exact::dot;
pub use reader::{verify, verify_report, Index, VerifyReport};
pub use types::{
    normalized, Entry, Hit, ImageId, IndexMeta, SearchOptions, DEFAULT_GRAPH_THRESHOLD,
};
pub use writer::{DroppedSegment, IndexStats, IndexWriter, RepairReport, MAX_SEGMENTS};

#[cfg(target_endian = "big")]
compile_error!("imgsearch index files are little-endian and mapped in place; big-endian targets are not supported");
