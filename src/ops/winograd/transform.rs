//! The transforms' arithmetic: a small transform matrix applied to α×α grids of channel rows
//! (AVX-512/AVX2 or portable), and the row helpers it is built from.

use crate::device::SimdLevel;

/// A small row-major transform matrix.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
}

/// Rows of `len` values inside a larger buffer: row `k` starts at `base + k·stride`.
pub(super) struct Rows<'a> {
    pub(super) data: &'a mut [f32],
    pub(super) base: usize,
    pub(super) stride: usize,
}

impl<'a> Rows<'a> {
    pub(super) fn new(data: &'a mut [f32], base: usize, stride: usize) -> Self {
        Rows { data, base, stride }
    }
}

/// An α×α grid of rows of `len` values inside a larger buffer: row `(i, j)` starts at
/// `base + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(super) struct RowsRef<'a> {
    pub(super) data: &'a [f32],
    pub(super) base: usize,
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl<'a> RowsRef<'a> {
    /// The `side×side` grid whose row `k = i·side + j` starts at `base + k·stride`.
    pub(super) fn grid(data: &'a [f32], base: usize, stride: usize, side: usize) -> Self {
        RowsRef {
            data,
            base,
            row_stride: side * stride,
            col_stride: stride,
        }
    }
}

pub(super) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

/// `out[a·n + b] = Σᵢⱼ P[a][i]·P[b][j]·in[i·m + j]` for `P` n×m, each term a row of `len`
/// values: the 2-D transform `P X Pᵀ` applied to every channel at once. Every output row is
/// overwritten; zero coefficients (most of them) are skipped. With AVX-512 or AVX2 where the CPU
/// has it ([`crate::device::simd_level`]): the transforms were 13% of an embedding batch with the
/// baseline's SSE.
pub(super) fn transform_rows(p: Matrix, input: RowsRef, out: Rows, len: usize, tmp: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    match crate::device::simd_level() {
        // SAFETY: `transform_rows_avx512` only needs AVX-512 F, AVX2 and FMA, which this level
        // means the CPU has.
        SimdLevel::Avx512 => return unsafe { transform_rows_avx512(p, input, out, len, tmp) },
        // SAFETY: `transform_rows_avx2` only needs AVX2 and FMA, which the CPU has.
        SimdLevel::Avx2Fma => return unsafe { transform_rows_avx2(p, input, out, len, tmp) },
        SimdLevel::Portable => {}
    }
    transform_rows_portable(p, input, out, len, tmp);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_rows_avx512(
    p: Matrix,
    input: RowsRef,
    out: Rows,
    len: usize,
    tmp: &mut Vec<f32>,
) {
    transform_rows_portable(p, input, out, len, tmp);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_rows_avx2(
    p: Matrix,
    input: RowsRef,
    out: Rows,
    len: usize,
    tmp: &mut Vec<f32>,
) {
    transform_rows_portable(p, input, out, len, tmp);
}

/// The body of [`transform_rows`], inlined into each caller so that it is compiled for the
/// caller's instruction set.
#[inline(always)]
pub(super) fn transform_rows_portable(
    p: Matrix,
    input: RowsRef,
    out: Rows,
    len: usize,
    tmp: &mut Vec<f32>,
) {
    let (n, m) = (p.rows, p.cols);
    if tmp.len() < n * m * len {
        tmp.resize(n * m * len, 0.0);
    }
    // tmp[a·m + j] = Σᵢ P[a][i]·in[i·m + j]
    for a in 0..n {
        for j in 0..m {
            let dst = &mut tmp[(a * m + j) * len..(a * m + j + 1) * len];
            let terms = (0..m).map(|i| {
                let src = input.base + i * input.row_stride + j * input.col_stride;
                (p.data[a * m + i], &input.data[src..src + len])
            });
            combine(terms, dst);
        }
    }
    // out[a·n + b] = Σⱼ P[b][j]·tmp[a·m + j]
    for a in 0..n {
        for b in 0..n {
            let dst = out.base + (a * n + b) * out.stride;
            let terms = (0..m).map(|j| (p.data[b * m + j], &tmp[(a * m + j) * len..][..len]));
            combine(terms, &mut out.data[dst..dst + len]);
        }
    }
}

/// `dst = Σ coef·row` over the terms with a non-zero coefficient (zero when there are none).
#[inline(always)]
pub(super) fn combine<'a>(terms: impl Iterator<Item = (f32, &'a [f32])>, dst: &mut [f32]) {
    let mut first = true;
    for (coef, row) in terms.filter(|&(coef, _)| coef != 0.0) {
        if first {
            dst.iter_mut().zip(row).for_each(|(d, r)| *d = coef * r);
            first = false;
        } else {
            axpy(coef, row, dst);
        }
    }
    if first {
        dst.fill(0.0);
    }
}

/// `y += a·x`, with the common ±1 cases as plain adds.
#[inline(always)]
pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    if a == 1.0 {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
    } else if a == -1.0 {
        y.iter_mut().zip(x).for_each(|(y, x)| *y -= x);
    } else {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
    }
}
