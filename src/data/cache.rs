//! Training's pixel cache: every image decoded once into a file of preprocessed RGB8 pixels,
//! memory-mapped on later runs so that `--resume` and re-runs on the same folder decode nothing.
//!
//! Each image has one fixed-size record of two squares, both HWC RGB8 of the same centre
//! square of the image:
//! - `size × size`: exactly what [`Preprocess`] gives to indexing and querying, so a training
//!   view without augmentation sees the very pixels an index embeds;
//! - `aug_size × aug_size` with `aug_size = size · 9/8` (36 for 32): the source of augmented
//!   views. A random resized crop keeps at least a quarter of the area, i.e. half the side,
//!   and scales it up to `size`; from a source 9/8 as fine each crop holds 12.5% more real
//!   pixels per side, and a full-frame view is a slight downscale (which the bilinear sampler
//!   handles) instead of a copy. `size` is a multiple of 8, so `aug_size` is exact. Going
//!   further (2×) would quadruple the file for detail that only the smallest crops use.
//!
//! File layout (little-endian): a 64-byte header (magic, format version, record stride,
//! record count, where the manifest is and its CRC-32, and a CRC-32 of the header itself),
//! the records, then a JSON manifest: the preprocessing key and, for each file in order, its
//! path, size and mtime and either its record number or why it could not be read.
//!
//! Invalidation: a different preprocessing key (size, aug_size, resize pipeline) or format
//! version discards the whole cache; otherwise only files whose path, size or mtime changed
//! are decoded again, the rest are copied from the old cache. A cache that fails any check
//! (magic, version, header or manifest checksum, length) is rebuilt with one warning. The
//! records themselves are not checksummed (they are most of the file); their length is.
//!
//! Writes go to a temporary file beside the cache, flushed, then renamed over it.

use super::batches::stream_with;
use super::batches::Failure;
use super::decode::decode_for;
use super::preprocess::square_rgb;
use super::preprocess::Preprocess;
use super::scan::FileInfo;
use crate::error::{Error, Result};
use crate::fsx::{self, AtomicFile};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The cache's file name inside its folder.
pub const CACHE_FILE: &str = "pixels.cache";

const MAGIC: [u8; 8] = *b"IMGSPIX\0";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
/// Names what produces the pixels beyond the sizes: change it whenever `decode` or
/// `square_rgb` would give different bytes, and old caches are discarded.
const PIPELINE: &str = "content-sniffed decode, big JPEGs at DCT scale (short side >= 8x), \
    EXIF orientation; box thumbnail to 2x above 4x; triangle fill";
/// Images decoded per batch while filling the cache.
const DECODE_BATCH: usize = 64;

/// The side of the augmentation source square for a model input of `size`.
pub fn aug_size(size: u32) -> u32 {
    size + size / 8
}

/// One cached image: the model-size square and the finer augmentation source.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    /// `size × size × 3`, exactly [`Preprocess::to_rgb`].
    pub exact: &'a [u8],
    /// `aug_size × aug_size × 3`, the same square at 9/8 the resolution.
    pub aug: &'a [u8],
    pub aug_size: usize,
}

/// What the cached pixels depend on besides each file's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Key {
    pipeline: String,
    size: u32,
    aug_size: u32,
}

impl Key {
    fn of(preprocess: &Preprocess) -> Self {
        Key {
            pipeline: PIPELINE.to_string(),
            size: preprocess.size,
            aug_size: aug_size(preprocess.size),
        }
    }

    fn exact_len(&self) -> usize {
        (self.size as usize).pow(2) * 3
    }

    fn stride(&self) -> usize {
        self.exact_len() + (self.aug_size as usize).pow(2) * 3
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Outcome {
    Record(u64),
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: PathBuf,
    size: u64,
    mtime_ns: i64,
    outcome: Outcome,
}

impl Entry {
    fn is(&self, file: &FileInfo) -> bool {
        self.path == file.path && self.size == file.size && self.mtime_ns == file.mtime_ns
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    key: Key,
    entries: Vec<Entry>,
}

enum Store {
    Mapped(Mmap),
    Heap(Vec<u8>),
}

/// The preprocessed pixels of every readable image, in file order.
pub struct PixelSet {
    store: Store,
    key: Key,
    count: usize,
}

impl PixelSet {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `i`th readable image. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> Pixels<'_> {
        assert!(i < self.count, "image {i} of {}", self.count);
        let bytes: &[u8] = match &self.store {
            Store::Mapped(map) => &map[HEADER_LEN..],
            Store::Heap(data) => data,
        };
        let stride = self.key.stride();
        let record = &bytes[i * stride..(i + 1) * stride];
        let (exact, aug) = record.split_at(self.key.exact_len());
        Pixels {
            exact,
            aug,
            aug_size: self.key.aug_size as usize,
        }
    }
}

/// What loading cost and where the pixels came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    /// Files decoded in this run.
    pub decoded: usize,
    /// Files (readable or not) answered by the cache without reading them.
    pub from_cache: usize,
    pub seconds: f64,
    /// The cache file, if one was used.
    pub cache: Option<PathBuf>,
    /// Why the cache was (re)written, if it was.
    pub rebuilt: Option<String>,
}

/// Decoded pixels, the files that could not be used, and how loading went.
pub struct Loaded {
    pub pixels: PixelSet,
    pub failures: Vec<Failure>,
    pub stats: LoadStats,
}

/// What loading reports as it goes.
pub enum Event<'a> {
    /// This many more files are done.
    Done(usize),
    Skipped(&'a Failure),
    /// A problem that does not stop loading (an unusable cache, say).
    Warning(String),
}

/// Preprocessed pixels of `files`, through the cache at `cache` when given (created or
/// brought up to date as needed), else decoded into memory.
pub fn load_pixels(
    files: &[FileInfo],
    preprocess: &Preprocess,
    cache: Option<&Path>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Loaded> {
    let started = Instant::now();
    let key = Key::of(preprocess);
    let mut stats = LoadStats {
        cache: cache.map(Path::to_path_buf),
        ..Default::default()
    };
    let mut old = cache.and_then(|path| open_previous(path, &key, &mut stats, on_event));

    // Everything already cached as it is now: read it in place.
    if let Some(Opened {
        map,
        manifest,
        count,
    }) = old.take_if(|o| {
        o.manifest.entries.len() == files.len()
            && o.manifest.entries.iter().zip(files).all(|(e, f)| e.is(f))
    }) {
        let failures = failures_of(&manifest);
        for failure in &failures {
            on_event(Event::Skipped(failure));
        }
        on_event(Event::Done(files.len()));
        stats.from_cache = files.len();
        stats.seconds = started.elapsed().as_secs_f64();
        return Ok(Loaded {
            pixels: PixelSet {
                store: Store::Mapped(map),
                key,
                count,
            },
            failures,
            stats,
        });
    }
    if old.is_some() {
        stats.rebuilt = Some("files changed".into());
    }

    let reuse = reusable_entries(old.as_ref(), files);
    let todo: Vec<PathBuf> = files
        .iter()
        .zip(&reuse)
        .filter(|(_, r)| r.is_none())
        .map(|(f, _)| f.path.clone())
        .collect();
    stats.decoded = todo.len();
    stats.from_cache = files.len() - todo.len();
    let mut decoded = decode_records(todo, preprocess, key.aug_size);
    let mut sink = open_sink(cache, on_event);
    let mut entries = Vec::with_capacity(files.len());
    let mut failures = Vec::new();
    let mut count = 0u64;
    for (file, reused) in files.iter().zip(reuse) {
        let written = write_record(file, reused, old.as_ref(), &key, &mut decoded, &mut sink)?;
        let outcome = match written {
            Ok(()) => {
                count += 1;
                Outcome::Record(count - 1)
            }
            Err(failure) => {
                on_event(Event::Skipped(&failure));
                let outcome = Outcome::Failed(failure.reason.clone());
                failures.push(failure);
                outcome
            }
        };
        on_event(Event::Done(1));
        entries.push(Entry {
            path: file.path.clone(),
            size: file.size,
            mtime_ns: file.mtime_ns,
            outcome,
        });
    }
    drop(old);
    let store = sink.finish(
        Manifest {
            key: key.clone(),
            entries,
        },
        count,
    )?;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(Loaded {
        pixels: PixelSet {
            store,
            key,
            count: count as usize,
        },
        failures,
        stats,
    })
}

/// The cache a previous run left at `path`, when it was made with the same preprocessing;
/// `stats` and a warning say why it is not used otherwise.
fn open_previous(
    path: &Path,
    key: &Key,
    stats: &mut LoadStats,
    on_event: &mut dyn FnMut(Event),
) -> Option<Opened> {
    match Opened::open(path) {
        Ok(Some(old)) if old.manifest.key == *key => Some(old),
        Ok(Some(_)) => {
            stats.rebuilt = Some("preprocessing changed".into());
            None
        }
        Ok(None) => {
            stats.rebuilt = Some("no cache yet".into());
            None
        }
        Err(reason) => {
            let why = format!(
                "{}: unusable pixel cache ({reason}); rebuilding it",
                path.display()
            );
            on_event(Event::Warning(why));
            stats.rebuilt = Some(format!("unusable: {reason}"));
            None
        }
    }
}

/// For each file, the old cache's entry when it still answers for the file (same path, size
/// and modification time); `None` means the file must be decoded.
fn reusable_entries<'a>(old: Option<&'a Opened>, files: &[FileInfo]) -> Vec<Option<&'a Entry>> {
    let by_path: std::collections::HashMap<&Path, &Entry> = old
        .iter()
        .flat_map(|o| o.manifest.entries.iter())
        .map(|e| (e.path.as_path(), e))
        .collect();
    files
        .iter()
        .map(|f| by_path.get(f.path.as_path()).copied().filter(|e| e.is(f)))
        .collect()
}

/// The cache records of `todo` (model input then augmentation source), decoded in parallel
/// batches and yielded in file order, each a record or the reason it could not be made.
fn decode_records(
    todo: Vec<PathBuf>,
    preprocess: &Preprocess,
    aug_size: u32,
) -> impl Iterator<Item = std::result::Result<Vec<u8>, Failure>> {
    let preprocess = preprocess.clone();
    stream_with(todo, DECODE_BATCH, move |path| {
        let image = decode_for(path, &preprocess)?;
        let mut record = preprocess.to_rgb(&image);
        record.extend(square_rgb(&image, aug_size));
        Ok(record)
    })
    .flat_map(|batch| {
        let mut results: Vec<(usize, std::result::Result<Vec<u8>, Failure>)> = batch
            .items
            .into_iter()
            .map(|d| (d.index, Ok(d.rgb)))
            .chain(batch.failures.into_iter().map(|(i, f)| (i, Err(f))))
            .collect();
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r)
    })
}

/// Where the new records go: a new cache file at `cache`, or memory when there is none or it
/// cannot be written (a warning says so; training goes on).
fn open_sink(cache: Option<&Path>, on_event: &mut dyn FnMut(Event)) -> Sink {
    match cache {
        Some(path) => Sink::create(path).unwrap_or_else(|e| {
            on_event(Event::Warning(format!(
                "{}: cannot write the pixel cache ({e}); keeping pixels in memory",
                path.display()
            )));
            Sink::heap()
        }),
        None => Sink::heap(),
    }
}

/// Writes `file`'s record to `sink`, copied from the old cache when `reused` says it is
/// there, else the next decoded one. The inner error is the file's own failure (skipped and
/// counted); the outer one stops loading (the cache cannot be read or written).
fn write_record(
    file: &FileInfo,
    reused: Option<&Entry>,
    old: Option<&Opened>,
    key: &Key,
    decoded: &mut impl Iterator<Item = std::result::Result<Vec<u8>, Failure>>,
    sink: &mut Sink,
) -> Result<std::result::Result<(), Failure>> {
    match reused.map(|e| &e.outcome) {
        Some(Outcome::Record(r)) => {
            let record = old
                .and_then(|o| o.record(*r, key))
                .ok_or_else(|| Error::cache(&file.path, "pixel cache record out of range"))?;
            sink.write(record)?;
            Ok(Ok(()))
        }
        Some(Outcome::Failed(reason)) => Ok(Err(Failure {
            path: file.path.clone(),
            reason: reason.clone(),
        })),
        None => match decoded.next() {
            Some(Ok(record)) => {
                sink.write(&record)?;
                Ok(Ok(()))
            }
            Some(Err(failure)) => Ok(Err(failure)),
            None => Err(Error::cache(&file.path, "the decoder stopped early")),
        },
    }
}

/// The files a manifest records as unreadable.
fn failures_of(manifest: &Manifest) -> Vec<Failure> {
    manifest
        .entries
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Failed(reason) => Some(Failure {
                path: e.path.clone(),
                reason: reason.clone(),
            }),
            Outcome::Record(_) => None,
        })
        .collect()
}

/// A verified cache file, mapped.
struct Opened {
    map: Mmap,
    manifest: Manifest,
    count: usize,
}

impl Opened {
    /// `Ok(None)` when there is no file; `Err(reason)` when it is not a sound cache.
    fn open(path: &Path) -> std::result::Result<Option<Opened>, String> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        // A cache is only ever replaced by a rename (`fsx::AtomicFile`), never rewritten in
        // place, which is what `map_readonly` asks of its callers.
        let map = fsx::map_readonly(&file).map_err(|e| e.to_string())?;
        let len = map.len();
        if len < HEADER_LEN {
            return Err(format!("truncated: {len} bytes"));
        }
        let header = &map[..HEADER_LEN];
        if header[..8] != MAGIC {
            return Err("not a pixel cache".into());
        }
        let u32_at =
            |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("format version {version}, expected {VERSION}"));
        }
        if crc32fast::hash(&header[..HEADER_LEN - 4]) != u32_at(HEADER_LEN - 4) {
            return Err("header checksum mismatch".into());
        }
        let (stride, count) = (u64_at(16), u64_at(24));
        let (manifest_at, manifest_len) = (u64_at(32), u64_at(40));
        let expected_len = stride
            .checked_mul(count)
            .and_then(|n| n.checked_add(HEADER_LEN as u64))
            .filter(|&end| end == manifest_at)
            .and_then(|end| end.checked_add(manifest_len));
        if expected_len != Some(len as u64) {
            return Err(format!("truncated or overlong: {len} bytes"));
        }
        let manifest = &map[manifest_at as usize..];
        if crc32fast::hash(manifest) != u32_at(48) {
            return Err("manifest checksum mismatch".into());
        }
        let manifest: Manifest =
            serde_json::from_slice(manifest).map_err(|e| format!("manifest: {e}"))?;
        // Records are numbered in file order; anything else was not written by us.
        let records = manifest.entries.iter().filter_map(|e| match e.outcome {
            Outcome::Record(r) => Some(r),
            Outcome::Failed(_) => None,
        });
        let in_order = records.clone().zip(0u64..).all(|(r, i)| r == i);
        if !in_order || records.count() as u64 != count || manifest.key.stride() as u64 != stride {
            return Err("manifest does not match the records".into());
        }
        Ok(Some(Opened {
            map,
            manifest,
            count: count as usize,
        }))
    }

    fn record(&self, r: u64, key: &Key) -> Option<&[u8]> {
        let stride = key.stride();
        let start = HEADER_LEN + usize::try_from(r).ok()?.checked_mul(stride)?;
        self.map.get(start..start + stride)
    }
}

/// Where records go while loading: a temporary cache file, or memory.
enum Sink {
    File(AtomicFile),
    Heap(Vec<u8>),
}

impl Sink {
    fn heap() -> Self {
        Sink::Heap(Vec::new())
    }

    fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = AtomicFile::create(path)?;
        file.write_all(&[0; HEADER_LEN])?;
        Ok(Sink::File(file))
    }

    fn write(&mut self, record: &[u8]) -> Result<()> {
        match self {
            Sink::File(file) => file
                .write_all(record)
                .map_err(|e| Error::cache(file.path(), e.to_string())),
            Sink::Heap(data) => {
                data.extend_from_slice(record);
                Ok(())
            }
        }
    }

    /// Completes the cache (manifest, header, rename) and maps it, or hands over the memory.
    fn finish(self, manifest: Manifest, count: u64) -> Result<Store> {
        let mut file = match self {
            Sink::Heap(data) => return Ok(Store::Heap(data)),
            Sink::File(file) => file,
        };
        let path = file.path().to_path_buf();
        let result = (|| -> std::io::Result<()> {
            let json = serde_json::to_vec(&manifest)?;
            let stride = manifest.key.stride() as u64;
            let mut header = [0u8; HEADER_LEN];
            header[..8].copy_from_slice(&MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            header[16..24].copy_from_slice(&stride.to_le_bytes());
            header[24..32].copy_from_slice(&count.to_le_bytes());
            let manifest_at = HEADER_LEN as u64 + stride * count;
            header[32..40].copy_from_slice(&manifest_at.to_le_bytes());
            header[40..48].copy_from_slice(&(json.len() as u64).to_le_bytes());
            header[48..52].copy_from_slice(&crc32fast::hash(&json).to_le_bytes());
            let crc = crc32fast::hash(&header[..HEADER_LEN - 4]);
            header[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
            file.write_all(&json)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header)?;
            file.commit()
        })();
        if let Err(e) = result {
            return Err(Error::io(&path, e));
        }
        match Opened::open(&path) {
            Ok(Some(opened)) => Ok(Store::Mapped(opened.map)),
            Ok(None) => Err(Error::cache(&path, "pixel cache vanished after writing")),
            Err(reason) => Err(Error::cache(
                &path,
                format!("pixel cache just written is unusable: {reason}"),
            )),
        }
    }
}
