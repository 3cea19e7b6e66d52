//! Deletion bitsets. Each commit that deletes rows of a segment writes a *new* file
//! `seg-NNNNNN.del-GGGGGG` (G = the generation) holding the segment's full bitset, so files named
//! by an older manifest are never rewritten.
//!
//! On disk: 64-byte header (magic `IMGS-DEL`, u32 version, u32 zero, u64 rows, u64 deleted)
//! then `ceil(rows / 64)` little-endian u64 words; bit `i % 64` of word `i / 64` set = row deleted.

use std::fs;
use std::path::Path;

use super::fsutil::{
    expect_crc, expect_len, HeaderBuilder, HeaderReader, Sink, HEADER_LEN, MISSING_FILE,
};
use super::IndexError;

const DEL_MAGIC: &[u8; 8] = b"IMGS-DEL";
const FILE_VERSION: u32 = 1;

/// A segment's deleted rows, held on the heap (one bit a row).
#[derive(Clone, Debug)]
pub(crate) struct Tombstones {
    words: Vec<u64>,
    rows: usize,
    deleted: usize,
}

impl Tombstones {
    pub(crate) fn new(rows: usize) -> Tombstones {
        Tombstones {
            words: vec![0; rows.div_ceil(64)],
            rows,
            deleted: 0,
        }
    }

    pub(crate) fn is_deleted(&self, row: usize) -> bool {
        self.words
            .get(row / 64)
            .is_some_and(|w| w & (1u64 << (row % 64)) != 0)
    }

    /// Mark `row` deleted; returns whether it was live.
    pub(crate) fn delete(&mut self, row: usize) -> bool {
        if row >= self.rows || self.is_deleted(row) {
            return false;
        }
        self.words[row / 64] |= 1u64 << (row % 64);
        self.deleted += 1;
        true
    }

    pub(crate) fn deleted(&self) -> usize {
        self.deleted
    }

    /// Read and verify a bitset file against the manifest's row count, deleted count and CRC.
    pub(crate) fn read(
        path: &Path,
        rows: usize,
        deleted: usize,
        crc: u32,
    ) -> Result<Tombstones, IndexError> {
        let bytes = fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => IndexError::corrupt(path, MISSING_FILE),
            _ => IndexError::io(path, e),
        })?;
        let mut h = HeaderReader::open(path, &bytes, DEL_MAGIC, FILE_VERSION)?;
        let _reserved = h.u32();
        let (hrows, hdeleted) = (h.u64(), h.u64());
        if hrows != rows as u64 || hdeleted != deleted as u64 {
            return Err(IndexError::corrupt(
                path,
                format!(
                    "header says {hdeleted} of {hrows} rows deleted, manifest says {deleted} of {rows}"
                ),
            ));
        }
        let nwords = rows.div_ceil(64);
        expect_len(path, bytes.len(), HEADER_LEN as u128 + nwords as u128 * 8)?;
        expect_crc(path, &bytes, crc)?;
        let words: Vec<u64> = bytes[HEADER_LEN..]
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let t = Tombstones {
            words,
            rows,
            deleted,
        };
        let counted: usize = (0..rows).filter(|&r| t.is_deleted(r)).count();
        let stray =
            !rows.is_multiple_of(64) && t.words.last().is_some_and(|w| w >> (rows % 64) != 0);
        if counted != deleted || stray {
            return Err(IndexError::corrupt(
                path,
                "bitset disagrees with its header",
            ));
        }
        Ok(t)
    }

    /// Write this bitset to a new file; returns its CRC32.
    pub(crate) fn write(&self, path: &Path) -> Result<u32, IndexError> {
        let mut sink = Sink::create(path)?;
        let header = HeaderBuilder::new(DEL_MAGIC)
            .u32(FILE_VERSION)
            .u32(0)
            .u64(self.rows as u64)
            .u64(self.deleted as u64)
            .build();
        sink.write(&header)?;
        let mut buf = Vec::with_capacity(self.words.len() * 8);
        for w in &self.words {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        sink.write(&buf)?;
        Ok(sink.finish()?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.del");
        let mut t = Tombstones::new(130);
        assert!(t.delete(0));
        assert!(t.delete(129));
        assert!(!t.delete(129));
        assert!(!t.delete(130));
        let crc = t.write(&p).unwrap();
        let r = Tombstones::read(&p, 130, 2, crc).unwrap();
        assert!(r.is_deleted(0) && r.is_deleted(129) && !r.is_deleted(64));
        assert!(Tombstones::read(&p, 130, 3, crc).is_err());
        assert!(Tombstones::read(&p, 130, 2, crc ^ 1).is_err());
    }
}
