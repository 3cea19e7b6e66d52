//! Exact search: the dot product every search path uses, a bounded top-k collector, and the
//! brute-force scan of a segment's mapped vectors (rayon over row blocks for big segments).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::tombstones::Tombstones;

/// Segments with at least this many rows are scanned in parallel.
const PARALLEL_MIN_ROWS: usize = 32_768;
/// Rows per parallel work item.
const BLOCK_ROWS: usize = 8_192;

/// Dot product with 16 independent accumulators so the compiler vectorises it.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A score and the row it belongs to, ordered by score (total order; NaN never stored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub score: f32,
    pub row: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` highest scores seen.
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, score: f32, row: u32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let s = Scored { score, row };
        if self.heap.len() < self.k {
            self.heap.push(Reverse(s));
        } else if let Some(Reverse(worst)) = self.heap.peek() {
            if s > *worst {
                self.heap.pop();
                self.heap.push(Reverse(s));
            }
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for Reverse(s) in other.heap {
            self.push(s.score, s.row);
        }
        self
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|Reverse(s)| s).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

/// Top-`k` live rows of `data` (`count × dim`) by dot product with `query`.
pub(crate) fn scan(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    deleted: &Tombstones,
) -> Vec<Scored> {
    let count = data.len() / dim.max(1);
    let scan_block = |start: usize, end: usize| {
        let mut top = TopK::new(k);
        for row in start..end {
            if deleted.is_deleted(row) {
                continue;
            }
            top.push(dot(&data[row * dim..(row + 1) * dim], query), row as u32);
        }
        top
    };
    if count < PARALLEL_MIN_ROWS {
        return scan_block(0, count).into_sorted();
    }
    let blocks = count.div_ceil(BLOCK_ROWS);
    (0..blocks)
        .into_par_iter()
        .map(|b| scan_block(b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(count)))
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        for n in [0, 1, 7, 16, 17, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn topk_keeps_best_and_skips_nan() {
        let mut t = TopK::new(3);
        for (i, s) in [0.1, 0.9, f32::NAN, 0.5, 0.7, 0.2].into_iter().enumerate() {
            t.push(s, i as u32);
        }
        let rows: Vec<u32> = t.into_sorted().iter().map(|s| s.row).collect();
        assert_eq!(rows, vec![1, 4, 3]);
    }

    #[test]
    fn parallel_scan_matches_serial() {
        let dim = 8;
        let count = PARALLEL_MIN_ROWS + 1000;
        let data: Vec<f32> = (0..count * dim)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let q = vec![0.3f32; dim];
        let del = Tombstones::new(count);
        let par = scan(&data, dim, &q, 5, &del);
        let mut top = TopK::new(5);
        for r in 0..count {
            top.push(dot(&data[r * dim..(r + 1) * dim], &q), r as u32);
        }
        assert_eq!(par, top.into_sorted());
    }
}
