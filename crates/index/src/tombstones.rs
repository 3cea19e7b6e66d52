//! Deletion bitsets. Each commit that deletes rows of a segment writes a *new* file
//! `seg-NNNNNN.del-GGGGGG` (G = the generation) holding the segment's full bitset, so files named
//! by an older manifest are never rewritten.
//!
//! On disk: 64-byte header (magic `IMGS-DEL`, u32 version, u32 zero, u64 rows, u64 deleted)
//! then `ceil(rows / 64)` little-endian u64 words; bit `i % 64` of word `i / 64` set = row deleted.
//! Readers map the file (opening is O(1)); a writer copies the bits out on its first delete.

use std::path::Path;

use memmap2::Mmap;

use super::error::IndexError;
use super::fsutil::{
    expect_crc, expect_len, map_file, HeaderBuilder, HeaderReader, Sink, HEADER_LEN,
};

const DEL_MAGIC: &[u8; 8] = b"IMGS-DEL";
const FILE_VERSION: u32 = 1;

/// The bits: mapped from a committed file (readers never copy them), or owned once a writer
/// deletes a row.
#[derive(Debug)]
enum Bits {
    Owned(Vec<u64>),
    /// A whole `.del` file whose length `open` checked: the header, then the words.
    Mapped(Mmap),
}

/// A segment's deleted rows (one bit a row).
#[derive(Debug)]
pub(crate) struct Tombstones {
    bits: Bits,
    rows: usize,
    deleted: usize,
}

impl Tombstones {
    pub(crate) fn new(rows: usize) -> Tombstones {
        Tombstones {
            bits: Bits::Owned(vec![0; rows.div_ceil(64)]),
            rows,
            deleted: 0,
        }
    }

    fn word(&self, i: usize) -> Option<u64> {
        match &self.bits {
            Bits::Owned(words) => words.get(i).copied(),
            Bits::Mapped(map) => {
                let at = HEADER_LEN.checked_add(i.checked_mul(8)?)?;
                let bytes: [u8; 8] = map.get(at..at.checked_add(8)?)?.try_into().ok()?;
                Some(u64::from_le_bytes(bytes))
            }
        }
    }

    pub(crate) fn is_deleted(&self, row: usize) -> bool {
        self.word(row / 64)
            .is_some_and(|w| w & (1u64 << (row % 64)) != 0)
    }

    /// Mark `row` deleted; returns whether it was live. Mapped bits are copied out first.
    pub(crate) fn delete(&mut self, row: usize) -> bool {
        if row >= self.rows || self.is_deleted(row) {
            return false;
        }
        if let Bits::Mapped(_) = self.bits {
            let words = (0..self.rows.div_ceil(64))
                .map(|i| self.word(i).unwrap_or(0))
                .collect();
            self.bits = Bits::Owned(words);
        }
        if let Bits::Owned(words) = &mut self.bits {
            words[row / 64] |= 1u64 << (row % 64);
        }
        self.deleted += 1;
        true
    }

    pub(crate) fn deleted(&self) -> usize {
        self.deleted
    }

    /// Map a bitset file and check its header and length against the manifest's row and deleted
    /// counts (O(1)). With `crc`, also check the checksum and that the bits agree with the
    /// header (O(rows)).
    pub(crate) fn open(
        path: &Path,
        rows: usize,
        deleted: usize,
        crc: Option<u32>,
    ) -> Result<Tombstones, IndexError> {
        let map = map_file(path)?;
        let mut h = HeaderReader::open(path, &map, DEL_MAGIC, FILE_VERSION)?;
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
        expect_len(
            path,
            map.len(),
            HEADER_LEN as u128 + rows.div_ceil(64) as u128 * 8,
        )?;
        let t = Tombstones {
            bits: Bits::Mapped(map),
            rows,
            deleted,
        };
        if let Some(crc) = crc {
            if let Bits::Mapped(map) = &t.bits {
                expect_crc(path, map, crc)?;
            }
            let counted: usize = (0..rows).filter(|&r| t.is_deleted(r)).count();
            let stray = !rows.is_multiple_of(64)
                && t.word(rows / 64).is_some_and(|w| w >> (rows % 64) != 0);
            if counted != deleted || stray {
                return Err(IndexError::corrupt(
                    path,
                    "bitset disagrees with its header",
                ));
            }
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
        let words = self.rows.div_ceil(64);
        let mut buf = Vec::with_capacity(words * 8);
        for i in 0..words {
            buf.extend_from_slice(&self.word(i).unwrap_or(0).to_le_bytes());
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
        for check in [None, Some(crc)] {
            let mut r = Tombstones::open(&p, 130, 2, check).unwrap();
            assert!(r.is_deleted(0) && r.is_deleted(129) && !r.is_deleted(64));
            // A writer's delete copies the mapped bits out before changing them.
            assert!(r.delete(64) && !r.delete(0));
            assert!(r.is_deleted(0) && r.is_deleted(64) && r.is_deleted(129));
            assert_eq!(r.deleted(), 3);
        }
        assert!(Tombstones::open(&p, 130, 3, None).is_err());
        assert!(Tombstones::open(&p, 131, 2, None).is_err());
        assert!(Tombstones::open(&p, 130, 2, Some(crc ^ 1)).is_err());
    }
}
