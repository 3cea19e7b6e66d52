//! Exact search: the dot product every search path uses, a bounded top-k collector, and the
//! brute-force scan of a segment's mapped vectors (rayon over row blocks for big segments).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Range;

use rayon::prelude::*;

use super::tombstones::Tombstones;
use crate::simd::SimdLevel;

/// Segments with at least this many rows are scanned in parallel.
const PARALLEL_MIN_ROWS: usize = 32_768;
/// Rows per parallel work item.
const BLOCK_ROWS: usize = 8_192;

/// Dot product: AVX-512 or AVX2 + FMA when the CPU has them ([`crate::simd::simd_level`],
/// detected once, then a cached flag), otherwise a portable loop the compiler vectorises with the
/// SSE every x86-64 has. The build and every search spend most of their time here, and a
/// portable binary cannot assume either.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    match crate::simd::simd_level() {
        // SAFETY: `dot_avx512` only needs AVX-512 F, which this level means the CPU has.
        SimdLevel::Avx512 => return unsafe { dot_avx512(a, b) },
        // SAFETY: `dot_avx2` only needs the AVX2 and FMA instructions, which the CPU has.
        SimdLevel::Avx2Fma => return unsafe { dot_avx2(a, b) },
        SimdLevel::Portable => {}
    }
    dot_portable(a, b)
}

/// The plain loop, for the few floats left after the vector chunks. Always inlined: an
/// out-of-line call here once cost a third of a graph query.
#[inline(always)]
fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// 16 independent accumulators so the compiler vectorises the loop without reassociation.
#[inline]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let tail = scalar_dot(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `a` and `b` have the same length. Four 8-lane FMA accumulators over 32-float chunks, one over
/// the 8-float chunks left, a scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY (every load below): `_mm256_loadu_ps` reads 8 floats from a pointer with no
    // alignment requirement; each pointer is the start of a `chunks_exact(32)` chunk plus 0, 8, 16
    // or 24, or of a `chunks_exact(8)` chunk, so all 8 floats are inside the slice.
    let load = |s: &[f32], at: usize| unsafe { _mm256_loadu_ps(s.as_ptr().add(at)) };
    let mut acc = [_mm256_setzero_ps(); 4];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for (j, s) in acc.iter_mut().enumerate() {
            *s = _mm256_fmadd_ps(load(x, 8 * j), load(y, 8 * j), *s);
        }
    }
    let mut sum8 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let (ca, cb) = (ra.chunks_exact(8), rb.chunks_exact(8));
    let tail = scalar_dot(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        sum8 = _mm256_fmadd_ps(load(x, 0), load(y, 0), sum8);
    }
    let sum4 = _mm_add_ps(
        _mm256_castps256_ps128(sum8),
        _mm256_extractf128_ps::<1>(sum8),
    );
    let sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    let sum1 = _mm_add_ss(sum2, _mm_shuffle_ps::<1>(sum2, sum2));
    _mm_cvtss_f32(sum1) + tail
}

/// `a` and `b` have the same length. Four 16-lane FMA accumulators over 64-float chunks (one
/// chunk is a whole 64-d embedding), one over the 16-float chunks left, a scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY (every load below): `_mm512_loadu_ps` reads 16 floats from a pointer with no
    // alignment requirement; each pointer is the start of a `chunks_exact(64)` chunk plus 0, 16,
    // 32 or 48, or of a `chunks_exact(16)` chunk, so all 16 floats are inside the slice.
    let load = |s: &[f32], at: usize| unsafe { _mm512_loadu_ps(s.as_ptr().add(at)) };
    let mut acc = [_mm512_setzero_ps(); 4];
    let (ca, cb) = (a.chunks_exact(64), b.chunks_exact(64));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for (j, s) in acc.iter_mut().enumerate() {
            *s = _mm512_fmadd_ps(load(x, 16 * j), load(y, 16 * j), *s);
        }
    }
    let mut sum16 = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let (ca, cb) = (ra.chunks_exact(16), rb.chunks_exact(16));
    let tail = scalar_dot(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        sum16 = _mm512_fmadd_ps(load(x, 0), load(y, 0), sum16);
    }
    _mm512_reduce_add_ps(sum16) + tail
}

/// Hint the CPU to start loading `v` (a vector, or a graph's neighbour list) into the cache, one
/// 64-byte line at a time (a no-op where unsupported). Searches call it for every unvisited
/// neighbour of a candidate before scoring any of them, and for the next candidate's list.
#[inline]
pub(crate) fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in v.chunks((64 / std::mem::size_of::<T>().max(1)).max(1)) {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the program;
        // the pointer is inside a live slice anyway. SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
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

    /// Whether [`Self::push`] would keep `score` (a cheap test before any other work).
    #[inline]
    fn would_keep(&self, score: f32) -> bool {
        self.heap.len() < self.k || self.heap.peek().is_some_and(|w| score > w.0.score)
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
    let rows = |start: usize, end: usize| scan_rows(data, dim, query, k, deleted, start..end);
    if count < PARALLEL_MIN_ROWS {
        return rows(0, count).into_sorted();
    }
    let blocks = count.div_ceil(BLOCK_ROWS);
    (0..blocks)
        .into_par_iter()
        .map(|b| rows(b * BLOCK_ROWS, ((b + 1) * BLOCK_ROWS).min(count)))
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// The top `k` of `rows`, with the dot product the CPU does best inlined into the loop.
fn scan_rows(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    deleted: &Tombstones,
    rows: Range<usize>,
) -> TopK {
    #[cfg(target_arch = "x86_64")]
    match crate::simd::simd_level() {
        // SAFETY: the CPU has AVX-512 F, all `scan_rows_avx512` requires.
        SimdLevel::Avx512 => {
            return unsafe { scan_rows_avx512(data, dim, query, k, deleted, rows) }
        }
        // SAFETY: the CPU has AVX2 and FMA, all `scan_rows_avx2` requires.
        SimdLevel::Avx2Fma => return unsafe { scan_rows_avx2(data, dim, query, k, deleted, rows) },
        SimdLevel::Portable => {}
    }
    scan_rows_with(dot_portable, data, dim, query, k, deleted, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scan_rows_avx512(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    deleted: &Tombstones,
    rows: Range<usize>,
) -> TopK {
    // SAFETY: this function only runs where AVX-512 F was detected.
    let dot = |a: &[f32], b: &[f32]| unsafe { dot_avx512(a, b) };
    scan_rows_with(dot, data, dim, query, k, deleted, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_rows_avx2(
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    deleted: &Tombstones,
    rows: Range<usize>,
) -> TopK {
    // SAFETY: this function only runs where AVX2 and FMA were detected.
    let dot = |a: &[f32], b: &[f32]| unsafe { dot_avx2(a, b) };
    scan_rows_with(dot, data, dim, query, k, deleted, rows)
}

#[inline(always)]
fn scan_rows_with(
    dot: impl Fn(&[f32], &[f32]) -> f32,
    data: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    deleted: &Tombstones,
    rows: Range<usize>,
) -> TopK {
    let mut top = TopK::new(k);
    let query = &query[..dim.min(query.len())];
    for (row, v) in data[rows.start * dim..rows.end * dim]
        .chunks_exact(dim.max(1))
        .enumerate()
        .map(|(i, v)| (rows.start + i, v))
    {
        let score = dot(v, query);
        if top.would_keep(score) && !deleted.is_deleted(row) {
            top.push(score, row as u32);
        }
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        for n in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 40, 64, 100, 129] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
            assert!((dot_portable(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }

    /// Each wider kernel against the portable loop, on the CPUs that have it; a CPU without it
    /// says so (the test cannot check what the CPU cannot run).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_dots_match_portable() {
        let level = crate::simd::cpu_simd_level();
        if level < SimdLevel::Avx512 {
            eprintln!("SKIPPED: this CPU has no AVX-512, so dot_avx512 is not compared here");
        }
        if level < SimdLevel::Avx2Fma {
            eprintln!("SKIPPED: this CPU has no AVX2 + FMA, so dot_avx2 is not compared here");
        }
        for n in [
            0, 1, 15, 16, 17, 31, 48, 63, 64, 65, 80, 100, 128, 129, 200, 256, 515,
        ] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let portable = dot_portable(&a, &b);
            let tolerance = 1e-5 * (1.0 + n as f32);
            if level >= SimdLevel::Avx2Fma {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                let wide = unsafe { dot_avx2(&a, &b) };
                assert!((wide - portable).abs() < tolerance, "avx2 n={n}");
            }
            if level >= SimdLevel::Avx512 {
                // SAFETY: the CPU has AVX-512 F (checked above).
                let wide = unsafe { dot_avx512(&a, &b) };
                assert!((wide - portable).abs() < tolerance, "avx512 n={n}");
            }
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
