//! Data loading shared by every command: scan folders, decode any image format the `image`
//! crate knows (by content, not extension), preprocess one way for train, index and query, and
//! stream decoded batches with bounded memory.

mod augment;
mod batches;
mod cache;
mod decode;
mod preprocess;
mod scan;

pub use augment::{occlude, Augment};
pub use batches::{stream, stream_with, Batch, Decoded, Failure};
pub use cache::{aug_size, load_pixels, Event, LoadStats, Loaded, PixelSet, Pixels, CACHE_FILE};
pub use decode::{decode, decode_for, load, load_bytes, thumbnail, thumbnail_bytes, DECODE_BUDGET};
pub use preprocess::Preprocess;
pub use scan::{
    canonical_root, open_unchanged, read_unchanged, scan, scan_with, FileInfo, Scan, ScanOptions,
};
