//! File plumbing for the index: fsync'd checksummed writers, read-only maps, directory fsync,
//! and the little-endian header helpers shared by every binary index file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::IndexError;
use crate::fsx;

/// Every binary index file starts with a header of this many bytes, so its payload is 64-byte
/// aligned in the map.
pub(crate) const HEADER_LEN: usize = 64;

/// Reason used in [`IndexError::Corrupt`] for a file the manifest names but that does not exist.
pub(crate) const MISSING_FILE: &str = "the manifest names this file but it does not exist";

/// Writes a new file through a buffer, checksumming every byte; [`Sink::finish`] flushes and
/// fsyncs it and returns the CRC32 of the whole file.
pub(crate) struct Sink {
    path: PathBuf,
    out: BufWriter<File>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Sink {
    pub(crate) fn create(path: &Path) -> Result<Sink, IndexError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| IndexError::io(path, e))?;
        Ok(Sink {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), IndexError> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| IndexError::io(&self.path, e))
    }

    /// Flush, fsync, and return (crc32, length).
    pub(crate) fn finish(self) -> Result<(u32, u64), IndexError> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| IndexError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| IndexError::io(&path, e))?;
        Ok((self.crc.finalize(), self.len))
    }
}

/// Fsync a directory so a rename or file creation in it is durable. A no-op where directories
/// cannot be opened (Windows).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    fsx::sync_dir(dir).map_err(|e| IndexError::io(dir, e))
}

/// Map a committed index file read-only. A missing file is corruption (the manifest names it).
pub(crate) fn map_file(path: &Path) -> Result<Mmap, IndexError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => IndexError::corrupt(path, MISSING_FILE),
        _ => IndexError::io(path, e),
    })?;
    let len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
    if len < HEADER_LEN as u64 {
        return Err(IndexError::corrupt(
            path,
            format!("file is {len} bytes, shorter than its {HEADER_LEN}-byte header"),
        ));
    }
    // Committed index files are immutable (new data always goes to new names), as
    // `map_readonly` requires.
    let map = fsx::map_readonly(&file).map_err(|e| IndexError::io(path, e))?;
    Ok(map)
}

/// Whether `e` says that a file named by the manifest is missing (a concurrent writer may have
/// just removed a superseded file; a reader then re-reads the manifest).
pub(crate) fn is_missing_file(e: &IndexError) -> bool {
    matches!(e, IndexError::Corrupt { reason, .. } if reason == MISSING_FILE)
}

/// Builds a 64-byte header: 8-byte magic then little-endian fields in order.
pub(crate) struct HeaderBuilder {
    bytes: [u8; HEADER_LEN],
    pos: usize,
}

impl HeaderBuilder {
    pub(crate) fn new(magic: &[u8; 8]) -> Self {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(magic);
        HeaderBuilder { bytes, pos: 8 }
    }

    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.bytes[self.pos..self.pos + 4].copy_from_slice(&v.to_le_bytes());
        self.pos += 4;
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.bytes[self.pos..self.pos + 8].copy_from_slice(&v.to_le_bytes());
        self.pos += 8;
        self
    }

    pub(crate) fn build(self) -> [u8; HEADER_LEN] {
        self.bytes
    }
}

/// Reads a 64-byte header written by [`HeaderBuilder`]; checks magic and version first.
pub(crate) struct HeaderReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> HeaderReader<'a> {
    /// `bytes` is the whole file (at least [`HEADER_LEN`] long, as [`map_file`] ensures).
    pub(crate) fn open(
        path: &Path,
        bytes: &'a [u8],
        magic: &[u8; 8],
        version: u32,
    ) -> Result<HeaderReader<'a>, IndexError> {
        Self::open_versions(path, bytes, magic, version..=version).map(|(r, _)| r)
    }

    /// [`HeaderReader::open`] for a format that still reads older versions: any version in
    /// `versions` is accepted and returned with the reader.
    pub(crate) fn open_versions(
        path: &Path,
        bytes: &'a [u8],
        magic: &[u8; 8],
        versions: std::ops::RangeInclusive<u32>,
    ) -> Result<(HeaderReader<'a>, u32), IndexError> {
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| IndexError::corrupt(path, "file shorter than its header"))?;
        if &header[..8] != magic {
            return Err(IndexError::corrupt(
                path,
                format!(
                    "bad magic: expected {:?}",
                    String::from_utf8_lossy(&magic[..])
                ),
            ));
        }
        let mut r = HeaderReader {
            bytes: header,
            pos: 8,
        };
        let found = r.u32();
        if !versions.contains(&found) {
            return Err(IndexError::Version {
                path: path.to_path_buf(),
                found: found.into(),
                expected: (*versions.end()).into(),
            });
        }
        Ok((r, found))
    }

    pub(crate) fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.bytes[self.pos..self.pos + 4]);
        self.pos += 4;
        u32::from_le_bytes(b)
    }

    pub(crate) fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(b)
    }
}

/// Check that a file's length is exactly what its header implies.
/// `expected` is computed in u128 from header fields, so no product of them can overflow.
pub(crate) fn expect_len(path: &Path, actual: usize, expected: u128) -> Result<(), IndexError> {
    if actual as u128 != expected {
        let what = if (actual as u128) < expected {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(IndexError::corrupt(
            path,
            format!("file {what}: {actual} bytes, expected {expected}"),
        ));
    }
    Ok(())
}

/// Check a file's CRC32 against the manifest's record.
pub(crate) fn expect_crc(path: &Path, bytes: &[u8], expected: u32) -> Result<(), IndexError> {
    let found = crc32fast::hash(bytes);
    if found != expected {
        return Err(IndexError::corrupt(
            path,
            format!("checksum mismatch: crc32 {found:08x}, manifest says {expected:08x}"),
        ));
    }
    Ok(())
}
