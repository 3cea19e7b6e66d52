//! A segment's immutable data files and their read side:
//!
//! - vectors file `seg-NNNNNN.vec`: 64-byte header (magic `IMGS-VEC`, u32 version, u32 dim,
//!   u64 count, zero padding) then `count × dim` little-endian f32, 64-byte aligned in the map;
//! - entries file `seg-NNNNNN.ent`: 64-byte header (magic `IMGS-ENT`, u32 version, u32 zero,
//!   u64 count, u64 path bytes) then `count` 32-byte records (u64 size, i64 mtime_ns,
//!   u64 path offset, u32 path length, u32 zero) then the path bytes, so an entry's path is
//!   read in O(1).
//!
//! [`Segment`] bundles those with the optional graph and tombstones of one manifest record.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::IndexError;
use super::fsutil::{
    expect_crc, expect_len, map_file, HeaderBuilder, HeaderReader, Sink, HEADER_LEN,
};
use super::graph::{GraphFile, Rows};
use super::manifest::SegmentRecord;
use super::tombstones::Tombstones;
use super::types::Entry;

const VEC_MAGIC: &[u8; 8] = b"IMGS-VEC";
const ENT_MAGIC: &[u8; 8] = b"IMGS-ENT";
const FILE_VERSION: u32 = 1;
const RECORD_LEN: usize = 32;

/// Write a vectors file from `count` rows of `dim` floats. Returns its CRC32.
pub(crate) fn write_vectors<'a>(
    path: &Path,
    dim: usize,
    count: usize,
    rows: impl Iterator<Item = &'a [f32]>,
) -> Result<u32, IndexError> {
    let mut sink = Sink::create(path)?;
    let header = HeaderBuilder::new(VEC_MAGIC)
        .u32(FILE_VERSION)
        .u32(dim as u32)
        .u64(count as u64)
        .build();
    sink.write(&header)?;
    let mut buf = Vec::with_capacity(dim * 4);
    let mut written = 0usize;
    for row in rows {
        debug_assert_eq!(row.len(), dim);
        buf.clear();
        for x in row {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        sink.write(&buf)?;
        written += 1;
    }
    debug_assert_eq!(written, count);
    Ok(sink.finish()?.0)
}

/// Write an entries file. Returns its CRC32.
pub(crate) fn write_entries<'a>(
    path: &Path,
    entries: impl ExactSizeIterator<Item = &'a Entry>,
) -> Result<u32, IndexError> {
    let count = entries.len();
    let mut paths = Vec::new();
    let mut records = Vec::with_capacity(count * RECORD_LEN);
    for e in entries {
        let bytes = path_bytes(&e.path);
        let len = u32::try_from(bytes.len()).map_err(|_| IndexError::Invalid {
            dir: e.path.clone(),
            reason: "path too long".into(),
        })?;
        records.extend_from_slice(&e.size.to_le_bytes());
        records.extend_from_slice(&e.mtime_ns.to_le_bytes());
        records.extend_from_slice(&(paths.len() as u64).to_le_bytes());
        records.extend_from_slice(&len.to_le_bytes());
        records.extend_from_slice(&0u32.to_le_bytes());
        paths.extend_from_slice(&bytes);
    }
    let mut sink = Sink::create(path)?;
    let header = HeaderBuilder::new(ENT_MAGIC)
        .u32(FILE_VERSION)
        .u32(0)
        .u64(count as u64)
        .u64(paths.len() as u64)
        .build();
    sink.write(&header)?;
    sink.write(&records)?;
    sink.write(&paths)?;
    Ok(sink.finish()?.0)
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// A mapped vectors file.
pub(crate) struct VectorFile {
    path: PathBuf,
    map: Mmap,
    dim: usize,
    count: usize,
}

impl VectorFile {
    /// Map and check header and length (O(1); the data is not read).
    pub(crate) fn open(path: &Path, dim: usize, count: usize) -> Result<VectorFile, IndexError> {
        let map = map_file(path)?;
        let mut h = HeaderReader::open(path, &map, VEC_MAGIC, FILE_VERSION)?;
        let (hdim, hcount) = (h.u32() as usize, h.u64());
        if hdim != dim || hcount != count as u64 {
            return Err(IndexError::corrupt(
                path,
                format!(
                    "header says {hcount} vectors of dimension {hdim}, manifest says {count} of {dim}"
                ),
            ));
        }
        expect_len(
            path,
            map.len(),
            HEADER_LEN as u128 + count as u128 * dim as u128 * 4,
        )?;
        if !(map.as_ptr() as usize + HEADER_LEN).is_multiple_of(std::mem::align_of::<f32>()) {
            return Err(IndexError::corrupt(path, "mapping is not aligned for f32"));
        }
        Ok(VectorFile {
            path: path.to_path_buf(),
            map,
            dim,
            count,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's bytes (for checksums).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// All rows, `count × dim` floats.
    pub(crate) fn data(&self) -> &[f32] {
        let bytes = &self.map[HEADER_LEN..];
        // SAFETY: `open` checked that the payload starts at an address aligned for f32 (the map
        // is page-aligned and the header is 64 bytes) and that the file holds exactly
        // `count * dim * 4` payload bytes, so the slice covers only mapped bytes. Every bit
        // pattern is a valid f32. The slice borrows `self`, which owns the map, so it cannot
        // outlive it; the file is immutable once committed (see `fsutil::map_file`).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.count * self.dim) }
    }

    pub(crate) fn row(&self, i: usize) -> &[f32] {
        &self.data()[i * self.dim..(i + 1) * self.dim]
    }
}

impl Rows for VectorFile {
    fn row(&self, i: usize) -> &[f32] {
        VectorFile::row(self, i)
    }
}

/// A mapped entries file. Opening checks only the header and the length (O(1)); a record's
/// path range is checked when it is read, so a damaged record gives [`IndexError::Corrupt`]
/// naming the file, never a panic or a read outside the map. [`EntriesFile::check`] checks the
/// checksum and every record (for `verify` and the writer).
pub(crate) struct EntriesFile {
    path: PathBuf,
    map: Mmap,
    count: usize,
    paths_start: usize,
    paths_len: usize,
}

impl EntriesFile {
    /// Map and check the header and length against the manifest's `count` (O(1)).
    pub(crate) fn open(path: &Path, count: usize) -> Result<EntriesFile, IndexError> {
        let map = map_file(path)?;
        let mut h = HeaderReader::open(path, &map, ENT_MAGIC, FILE_VERSION)?;
        let _reserved = h.u32();
        let (hcount, paths_len) = (h.u64(), h.u64());
        if hcount != count as u64 {
            return Err(IndexError::corrupt(
                path,
                format!("header says {hcount} entries, manifest says {count}"),
            ));
        }
        expect_len(
            path,
            map.len(),
            HEADER_LEN as u128 + count as u128 * RECORD_LEN as u128 + paths_len as u128,
        )?;
        Ok(EntriesFile {
            path: path.to_path_buf(),
            map,
            count,
            paths_start: HEADER_LEN + count * RECORD_LEN,
            // The length check above bounds `paths_len` by the mapped length.
            paths_len: paths_len as usize,
        })
    }

    /// Full check, O(entries): the manifest's checksum and every record's path range.
    pub(crate) fn check(&self, crc: u32) -> Result<(), IndexError> {
        expect_crc(&self.path, &self.map, crc)?;
        (0..self.count).try_for_each(|i| self.path_range(i).map(|_| ()))
    }

    fn field(&self, i: usize, at: usize) -> u64 {
        let start = HEADER_LEN + i * RECORD_LEN + at;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.map[start..start + 8]);
        u64::from_le_bytes(b)
    }

    /// Row `i`'s path as a range of the path table, checked against the table's length.
    fn path_range(&self, i: usize) -> Result<std::ops::Range<usize>, IndexError> {
        if i >= self.count {
            return Err(IndexError::corrupt(
                &self.path,
                format!("entry {i} asked of a file of {} entries", self.count),
            ));
        }
        let off = self.field(i, 16);
        let len = self.field(i, 24) & 0xffff_ffff;
        match off.checked_add(len) {
            Some(end) if end <= self.paths_len as u64 => {
                Ok(self.paths_start + off as usize..self.paths_start + end as usize)
            }
            _ => Err(IndexError::corrupt(
                &self.path,
                format!("entry {i} points outside the path table"),
            )),
        }
    }

    pub(crate) fn path(&self, i: usize) -> Result<PathBuf, IndexError> {
        let range = self.path_range(i)?;
        Ok(path_from_bytes(&self.map[range]))
    }

    pub(crate) fn entry(&self, i: usize) -> Result<Entry, IndexError> {
        Ok(Entry {
            path: self.path(i)?,
            size: self.field(i, 0),
            mtime_ns: self.field(i, 8) as i64,
        })
    }
}

/// One opened segment of a generation.
pub(crate) struct Segment {
    pub record: SegmentRecord,
    pub vectors: VectorFile,
    pub entries: EntriesFile,
    pub graph: Option<GraphFile>,
    pub deleted: Tombstones,
}

impl Segment {
    /// Open the files of `record`: map them and check magic, version, header fields against the
    /// manifest, and lengths, which is O(1) in the segment's size. With `full`, also check every
    /// file's checksum and the structure of the entries, graph and tombstones (O(size)).
    pub(crate) fn open(
        dir: &Path,
        record: &SegmentRecord,
        dim: usize,
        full: bool,
    ) -> Result<Segment, IndexError> {
        let count = record.count as usize;
        let vec_path = dir.join(&record.vec_file);
        let vectors = VectorFile::open(&vec_path, dim, count)?;
        if full {
            expect_crc(vectors.path(), vectors.bytes(), record.vec_crc32)?;
        }
        let entries = EntriesFile::open(&dir.join(&record.entries_file), count)?;
        if full {
            entries.check(record.entries_crc32)?;
        }
        let graph = match (&record.graph_file, record.graph_crc32) {
            (Some(name), Some(crc)) => {
                let g = GraphFile::open(&dir.join(name), count, dim)?;
                if full {
                    expect_crc(g.path(), g.bytes(), crc)?;
                    g.check_structure(&vectors)?;
                }
                Some(g)
            }
            _ => None,
        };
        let deleted = match (&record.del_file, record.del_crc32) {
            (Some(name), Some(crc)) => Tombstones::open(
                &dir.join(name),
                count,
                record.deleted as usize,
                full.then_some(crc),
            )?,
            _ => Tombstones::new(count),
        };
        Ok(Segment {
            record: record.clone(),
            vectors,
            entries,
            graph,
            deleted,
        })
    }

    pub(crate) fn count(&self) -> usize {
        self.record.count as usize
    }

    /// Live rows' indices.
    pub(crate) fn live_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count()).filter(|&i| !self.deleted.is_deleted(i))
    }
}
