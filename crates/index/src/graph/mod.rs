//! The HNSW graph of a segment: built in memory by [`build`](mod@build), written as a flat
//! file, and searched in place over its memory map, so opening a graph reads nothing.
//!
//! File `seg-NNNNNN.hnsw`: a 64-byte header (magic `IMGS-HNS`, u32 version, u32 `m0`, u32 `m_up`,
//! u32 `max_level`, u32 `entry`, u32 `dim`, u64 `count`, u64 `upper_nodes`), then little-endian
//! 4-byte words:
//!
//! 1. layer 0: `count` slots, each the node's vector (`dim` f32, a copy of its row in the
//!    segment's vectors file), its neighbour count, then `m0` ids (unused tail = u32::MAX), padded
//!    with zero words to a multiple of 16 words, so every slot and vector starts on a 64-byte
//!    cache line;
//! 2. `count` words: each node's index among the nodes that have upper layers, or u32::MAX;
//! 3. upper layers: `upper_nodes` blocks of `max_level` slots of `1 + m_up` words (layer 1 first).
//!
//! The vector sits beside the node's layer-0 links because a search is bound by memory latency:
//! scoring a node brings in the cache lines its expansion reads next (hnswlib's layout; at
//! 1,000,000 vectors the separate files cost a third of the queries per second, docs/INDEX.md).
//! Version 1 files (written before, header `dim` zero) have slots of `1 + m0` words and no
//! vectors; they are still read, with the vectors from the vectors file.
//!
//! Every lookup is O(1). Node ids are segment row numbers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::IndexError;
use super::exact::{dot, prefetch, Scored};
use super::fsutil::{expect_len, map_file, HeaderBuilder, HeaderReader, Sink, HEADER_LEN};
use super::tombstones::Tombstones;

mod build;
mod common;

use build::{build_lists, BuildParams};
pub(crate) use common::Rows;
use common::{entry_of, with_visited, Near, Visited, MAX_NB_CONNECTION, MAX_NB_CONNECTION_0};

/// Links a new node chooses on layer 0 (see [`BuildParams::choose0`]).
const LINKS_CHOSEN_0: usize = 24;
/// Beam width while building.
pub(crate) const EF_CONSTRUCTION: usize = 200;
/// Layers a graph may have.
const MAX_LAYERS: usize = 16;
/// Seed of the level draw (fixed: the same vectors get the same layer structure).
const LEVEL_SEED: u64 = 0x1d5e_a2c4;
/// Sanity bound on strides read from a header.
const MAX_STRIDE: u32 = 4096;

const GRAPH_MAGIC: &[u8; 8] = b"IMGS-HNS";
/// The version written: vectors inside the layer-0 slots.
const FILE_VERSION: u32 = 2;
/// The oldest version read: links only, vectors in the segment's vectors file.
const SEPARATE_VECTORS_VERSION: u32 = 1;
/// Layer-0 slots are padded to a multiple of this many words (one 64-byte cache line).
const SLOT_ALIGN_WORDS: usize = 16;
const NONE: u32 = u32::MAX;

/// Build the graph of `count` rows of `data` (`count × dim`, normalised) and write it to `path`.
/// Returns the file's CRC32. `count` must be at least 1.
pub(crate) fn build(
    path: &Path,
    data: &[f32],
    dim: usize,
    count: usize,
) -> Result<u32, IndexError> {
    let lists = build_lists(
        data,
        dim,
        count,
        BuildParams {
            m: MAX_NB_CONNECTION,
            m0: MAX_NB_CONNECTION_0,
            choose0: LINKS_CHOSEN_0,
            ef_construction: EF_CONSTRUCTION,
            max_level: MAX_LAYERS - 1,
            seed: LEVEL_SEED,
        },
    );
    write_flat(path, &lists, data, dim)
}

/// Words of a version-2 layer-0 slot: the vector, the neighbour count, `m0` ids, padding.
fn slot0_words(dim: usize, m0: usize) -> usize {
    (dim + 1 + m0).next_multiple_of(SLOT_ALIGN_WORDS)
}

/// Write the flat layout of `lists[node][layer]`, with each node's row of `data` (`dim` wide)
/// in its layer-0 slot.
fn write_flat(
    path: &Path,
    lists: &[Vec<Vec<u32>>],
    data: &[f32],
    dim: usize,
) -> Result<u32, IndexError> {
    let count = lists.len();
    assert!(data.len() >= count * dim, "graph rows outside the data");
    let max_level = lists
        .iter()
        .map(|l| l.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let entry = entry_of(lists).unwrap_or(0);
    let m0 = lists
        .iter()
        .map(|l| l.first().map_or(0, Vec::len))
        .max()
        .unwrap_or(0)
        .max(1);
    let m_up = lists
        .iter()
        .flat_map(|l| l.iter().skip(1).map(Vec::len))
        .max()
        .unwrap_or(0)
        .max(1);
    let upper_nodes = lists.iter().filter(|l| l.len() > 1).count();

    let mut sink = Sink::create(path)?;
    let header = HeaderBuilder::new(GRAPH_MAGIC)
        .u32(FILE_VERSION)
        .u32(m0 as u32)
        .u32(m_up as u32)
        .u32(max_level as u32)
        .u32(entry as u32)
        .u32(dim as u32)
        .u64(count as u64)
        .u64(upper_nodes as u64)
        .build();
    sink.write(&header)?;

    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let slot = |buf: &mut Vec<u8>, ids: &[u32], stride: usize| {
        buf.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for i in 0..stride {
            buf.extend_from_slice(&ids.get(i).copied().unwrap_or(NONE).to_le_bytes());
        }
    };
    let flush = |buf: &mut Vec<u8>, sink: &mut Sink, force: bool| {
        if force || buf.len() >= 1 << 16 {
            let r = sink.write(buf);
            buf.clear();
            r
        } else {
            Ok(())
        }
    };
    let padding = slot0_words(dim, m0) - (dim + 1 + m0);
    for (node, l) in lists.iter().enumerate() {
        for x in &data[node * dim..(node + 1) * dim] {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        slot(&mut buf, l.first().map_or(&[][..], Vec::as_slice), m0);
        buf.extend(std::iter::repeat_n(0u8, 4 * padding));
        flush(&mut buf, &mut sink, false)?;
    }
    let mut next_upper = 0u32;
    for l in lists {
        let idx = if l.len() > 1 {
            next_upper += 1;
            next_upper - 1
        } else {
            NONE
        };
        buf.extend_from_slice(&idx.to_le_bytes());
        flush(&mut buf, &mut sink, false)?;
    }
    for l in lists.iter().filter(|l| l.len() > 1) {
        for layer in 1..=max_level {
            slot(&mut buf, l.get(layer).map_or(&[][..], Vec::as_slice), m_up);
        }
        flush(&mut buf, &mut sink, false)?;
    }
    flush(&mut buf, &mut sink, true)?;
    Ok(sink.finish()?.0)
}

/// A mapped graph file.
pub(crate) struct GraphFile {
    path: PathBuf,
    map: Mmap,
    count: usize,
    m0: usize,
    m_up: usize,
    max_level: usize,
    entry: u32,
    upper_nodes: usize,
    /// Floats of the vector at the start of each layer-0 slot (0 in version 1 files).
    inline_dim: usize,
    /// Words of a layer-0 slot.
    slot0: usize,
}

impl GraphFile {
    /// Map and check the header and length (O(1)) of the graph of `count` vectors of `dim`.
    pub(crate) fn open(path: &Path, count: usize, dim: usize) -> Result<GraphFile, IndexError> {
        let map = map_file(path)?;
        let (mut h, version) = HeaderReader::open_versions(
            path,
            &map,
            GRAPH_MAGIC,
            SEPARATE_VECTORS_VERSION..=FILE_VERSION,
        )?;
        let (m0, m_up, max_level, entry, hdim) = (h.u32(), h.u32(), h.u32(), h.u32(), h.u32());
        let (hcount, upper_nodes) = (h.u64(), h.u64());
        let bad = |reason: String| Err(IndexError::corrupt(path, reason));
        if hcount != count as u64 {
            return bad(format!("header says {hcount} nodes, manifest says {count}"));
        }
        if m0 == 0 || m0 > MAX_STRIDE || m_up == 0 || m_up > MAX_STRIDE {
            return bad(format!("implausible neighbour strides {m0}/{m_up}"));
        }
        let inline_dim = if version == SEPARATE_VECTORS_VERSION {
            0
        } else if hdim as usize != dim {
            return bad(format!("header says dimension {hdim}, manifest says {dim}"));
        } else {
            dim
        };
        let slot0 = if inline_dim == 0 {
            1 + m0 as usize
        } else {
            slot0_words(inline_dim, m0 as usize)
        };
        if max_level as usize >= MAX_LAYERS
            || (max_level == 0) != (upper_nodes == 0)
            || upper_nodes > hcount
            || entry as usize >= count
        {
            return bad("inconsistent layer header".into());
        }
        let words = count as u128 * slot0 as u128
            + count as u128
            + upper_nodes as u128 * max_level as u128 * (1 + m_up as u128);
        expect_len(path, map.len(), HEADER_LEN as u128 + 4 * words)?;
        if !(map.as_ptr() as usize + HEADER_LEN).is_multiple_of(std::mem::align_of::<u32>()) {
            return bad("mapping is not aligned for u32".into());
        }
        let g = GraphFile {
            path: path.to_path_buf(),
            map,
            count,
            m0: m0 as usize,
            m_up: m_up as usize,
            max_level: max_level as usize,
            entry,
            upper_nodes: upper_nodes as usize,
            inline_dim,
            slot0,
        };
        if g.max_level > 0 && g.upper_index(entry)? == NONE {
            return bad("entry point is not on the top layer".into());
        }
        Ok(g)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    fn words(&self) -> &[u32] {
        let bytes = &self.map[HEADER_LEN..];
        // SAFETY: `open` checked that the payload starts at an address aligned for u32 and that
        // its length is exactly 4 × (the number of words the header implies), so `len / 4` words
        // are all inside the map. Every bit pattern is a valid u32. The slice borrows `self`,
        // which owns the map; the file is immutable once committed (see `fsutil::map_file`).
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u32>(), bytes.len() / 4) }
    }

    /// The vector stored in `node`'s layer-0 slot (`node` < count; version 2 files only).
    #[inline]
    fn inline_row(&self, node: u32) -> &[f32] {
        let start = node as usize * self.slot0;
        let words = &self.words()[start..start + self.inline_dim];
        // SAFETY: f32 and u32 have the same size and alignment and every bit pattern is a valid
        // f32 (the file stores the vector's little-endian bits, and x86-64 is little-endian), so
        // the words reinterpreted are the floats written; the slice stays inside `words`.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<f32>(), words.len()) }
    }

    /// The row of `node` (< count): from its slot, or in a version 1 file from `vectors`.
    #[inline]
    fn row<'a>(&'a self, vectors: &'a impl Rows, node: u32) -> &'a [f32] {
        if self.inline_dim > 0 {
            self.inline_row(node)
        } else {
            vectors.row(node as usize)
        }
    }

    /// Start loading the layer-0 list of `node` (< count), the candidate likely expanded next,
    /// while the current one's neighbours are scored. A/B with `examples/index_bench.rs --reuse`
    /// on one 100,000-vector clustered index: +3% and +10% queries/s in two rounds; a tie at
    /// 1,000,000 (within the run-to-run spread).
    #[inline]
    fn prefetch_links(&self, node: u32) {
        let start = node as usize * self.slot0 + self.inline_dim;
        if let Some(words) = self.words().get(start..start + 1 + self.m0) {
            prefetch(words);
        }
    }

    fn corrupt(&self, reason: &str) -> IndexError {
        IndexError::corrupt(&self.path, reason)
    }

    fn upper_index(&self, node: u32) -> Result<u32, IndexError> {
        let at = self.count * self.slot0 + node as usize;
        let idx = *self
            .words()
            .get(at)
            .ok_or_else(|| self.corrupt("node id out of range"))?;
        if idx != NONE && idx as usize >= self.upper_nodes {
            return Err(self.corrupt("upper-layer index out of range"));
        }
        Ok(idx)
    }

    /// Neighbours of `node` (< count) on `layer`; ids are checked by the caller.
    fn neighbours(&self, node: u32, layer: usize) -> Result<&[u32], IndexError> {
        let words = self.words();
        let (start, stride) = if layer == 0 {
            (node as usize * self.slot0 + self.inline_dim, self.m0)
        } else {
            let idx = self.upper_index(node)?;
            if idx == NONE || layer > self.max_level {
                return Ok(&[]);
            }
            let base = self.count * (self.slot0 + 1)
                + idx as usize * self.max_level * (1 + self.m_up)
                + (layer - 1) * (1 + self.m_up);
            (base, self.m_up)
        };
        let n = *words
            .get(start)
            .ok_or_else(|| self.corrupt("node id out of range"))? as usize;
        if n > stride {
            return Err(self.corrupt("neighbour count exceeds its slot"));
        }
        words
            .get(start + 1..start + 1 + n)
            .ok_or_else(|| self.corrupt("neighbour list out of range"))
    }

    fn check_id(&self, id: u32) -> Result<u32, IndexError> {
        if (id as usize) < self.count {
            Ok(id)
        } else {
            Err(self.corrupt("neighbour id out of range"))
        }
    }

    /// Full structural check (every list and id, and each slot's vector equal to its row of
    /// `vectors`), for `verify` and writers.
    pub(crate) fn check_structure(&self, vectors: &impl Rows) -> Result<(), IndexError> {
        let mut uppers = 0usize;
        for node in 0..self.count as u32 {
            if self.inline_dim > 0 {
                let (inline, row) = (self.inline_row(node), vectors.row(node as usize));
                if inline
                    .iter()
                    .zip(row)
                    .any(|(a, b)| a.to_bits() != b.to_bits())
                {
                    return Err(self.corrupt("a node's vector differs from the vectors file"));
                }
            }
            for &n in self.neighbours(node, 0)? {
                self.check_id(n)?;
            }
            if self.upper_index(node)? != NONE {
                uppers += 1;
                for layer in 1..=self.max_level {
                    for &n in self.neighbours(node, layer)? {
                        self.check_id(n)?;
                    }
                }
            }
        }
        if uppers != self.upper_nodes {
            return Err(self.corrupt("upper-layer node count disagrees with the header"));
        }
        Ok(())
    }

    /// Approximate top-`k` live rows by dot product with the normalised `query`: greedy descent
    /// through the upper layers, then a beam search of width `ef` on layer 0. Touches O(ef · M)
    /// nodes, not O(count).
    pub(crate) fn search(
        &self,
        vectors: &impl Rows,
        query: &[f32],
        k: usize,
        ef: usize,
        deleted: &Tombstones,
    ) -> Result<Vec<Scored>, IndexError> {
        if k == 0 || self.count == 0 {
            return Ok(Vec::new());
        }
        let dist = |id: u32| 1.0 - dot(query, self.row(vectors, id));
        let mut cur = self.entry;
        let mut cur_d = dist(cur);
        for layer in (1..=self.max_level).rev() {
            loop {
                let mut moved = false;
                for &n in self.neighbours(cur, layer)? {
                    let d = dist(self.check_id(n)?);
                    if d < cur_d {
                        cur_d = d;
                        cur = n;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        let ef = ef.max(k);
        with_visited(self.count, |visited| {
            self.beam(
                vectors,
                &dist,
                ef,
                deleted,
                visited,
                Near { d: cur_d, id: cur },
            )
        })
        .map(|mut out| {
            out.truncate(k);
            out
        })
    }

    /// Layer-0 beam search of width `ef` from `start`; the best `ef` live rows, best first.
    fn beam(
        &self,
        vectors: &impl Rows,
        dist: &impl Fn(u32) -> f32,
        ef: usize,
        deleted: &Tombstones,
        visited: &mut Visited,
        start: Near,
    ) -> Result<Vec<Scored>, IndexError> {
        let (cur, cur_d) = (start.id, start.d);
        let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
        visited.insert(cur);
        candidates.push(Reverse(Near { d: cur_d, id: cur }));
        if !deleted.is_deleted(cur as usize) {
            results.push(Near { d: cur_d, id: cur });
        }
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            let list = self.neighbours(c.id, 0)?;
            if let Some(Reverse(next)) = candidates.peek() {
                self.prefetch_links(next.id);
            }
            // First every unvisited neighbour's vector is requested, then they are scored: the
            // loads overlap instead of each waiting on memory in turn.
            fresh.clear();
            for &n in list {
                if visited.insert(self.check_id(n)?) {
                    prefetch(self.row(vectors, n));
                    fresh.push(n);
                }
            }
            for &n in &fresh {
                let d = dist(n);
                let worth = results.len() < ef || results.peek().is_some_and(|w| d < w.d);
                if worth {
                    candidates.push(Reverse(Near { d, id: n }));
                    if !deleted.is_deleted(n as usize) {
                        results.push(Near { d, id: n });
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Scored> = results
            .into_iter()
            .filter(|n| !n.d.is_nan())
            .map(|n| Scored {
                score: 1.0 - n.d,
                row: n.id,
            })
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a plain `count × dim` slice.
    struct Slice<'a>(&'a [f32], usize);

    impl Rows for Slice<'_> {
        fn row(&self, i: usize) -> &[f32] {
            &self.0[i * self.1..(i + 1) * self.1]
        }
    }

    /// 4 nodes; node 2 on layers 0..=1.
    fn small_lists() -> Vec<Vec<Vec<u32>>> {
        vec![
            vec![vec![1, 2]],
            vec![vec![0, 2, 3]],
            vec![vec![0, 1], vec![]],
            vec![vec![1]],
        ]
    }

    fn small_rows() -> Vec<f32> {
        (0..4 * 3).map(|i| i as f32 * 0.25 - 1.0).collect()
    }

    #[test]
    fn flat_layout_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.hnsw");
        let data = small_rows();
        write_flat(&p, &small_lists(), &data, 3).unwrap();
        let g = GraphFile::open(&p, 4, 3).unwrap();
        assert_eq!(g.entry, 2);
        assert_eq!(g.max_level, 1);
        assert_eq!(g.slot0 % SLOT_ALIGN_WORDS, 0);
        assert_eq!(g.neighbours(1, 0).unwrap(), &[0, 2, 3]);
        assert_eq!(g.neighbours(2, 1).unwrap(), &[] as &[u32]);
        assert_eq!(g.neighbours(0, 1).unwrap(), &[] as &[u32]);
        for node in 0..4u32 {
            assert_eq!(g.inline_row(node), Slice(&data, 3).row(node as usize));
        }
        g.check_structure(&Slice(&data, 3)).unwrap();
        assert!(GraphFile::open(&p, 5, 3).is_err());
        assert!(GraphFile::open(&p, 4, 4).is_err());
        // A slot's vector that no longer matches the vectors file fails the full check.
        let mut other = data.clone();
        other[7] += 1.0;
        assert!(g.check_structure(&Slice(&other, 3)).is_err());
    }

    /// A version 1 file (links only), as written before the vectors moved into the slots, is
    /// still read and searched with the vectors file's rows.
    #[test]
    fn version_1_files_are_still_searched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g1.hnsw");
        let lists = small_lists();
        let (m0, m_up) = (3usize, 1usize);
        let mut bytes = HeaderBuilder::new(GRAPH_MAGIC)
            .u32(SEPARATE_VECTORS_VERSION)
            .u32(m0 as u32)
            .u32(m_up as u32)
            .u32(1)
            .u32(2)
            .u32(0)
            .u64(4)
            .u64(1)
            .build()
            .to_vec();
        let mut word = |w: u32| bytes.extend_from_slice(&w.to_le_bytes());
        for l in &lists {
            word(l[0].len() as u32);
            (0..m0).for_each(|i| word(l[0].get(i).copied().unwrap_or(NONE)));
        }
        for node in 0..4 {
            word(if node == 2 { 0 } else { NONE });
        }
        word(0);
        (0..m_up).for_each(|_| word(NONE));
        std::fs::write(&p, &bytes).unwrap();

        let data = small_rows();
        let rows = Slice(&data, 3);
        let g = GraphFile::open(&p, 4, 3).unwrap();
        assert_eq!(g.inline_dim, 0);
        assert_eq!(g.neighbours(1, 0).unwrap(), &[0, 2, 3]);
        g.check_structure(&rows).unwrap();

        let v2 = dir.path().join("g2.hnsw");
        write_flat(&v2, &lists, &data, 3).unwrap();
        let g2 = GraphFile::open(&v2, 4, 3).unwrap();
        let none = Tombstones::new(4);
        let query = [0.6f32, 0.0, 0.8];
        let old = g.search(&rows, &query, 4, 8, &none).unwrap();
        let new = g2.search(&rows, &query, 4, 8, &none).unwrap();
        assert_eq!(old, new);
        assert_eq!(old.len(), 4);
    }
}
