//! A bounds-checked front to the gemm crate (the matmul candle's CPU backend runs on), for
//! the fused ops that multiply slices of their own buffers.

/// A strided view of an `f32` matrix: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element the strides address lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst (M×N, row-major) = [dst +] a (M×K) · b (K×N)`: accumulates onto `dst` when
/// `accumulate`, else overwrites it. `threads > 1` lets gemm split the product on rayon.
///
/// # Panics
/// When the shapes disagree or a view addresses memory outside its slice.
pub(crate) fn matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k, "matmul: {m}×{k} by {}×{n}", b.rows);
    assert!(
        dst.len() == m * n,
        "matmul: destination of {} for {m}×{n}",
        dst.len()
    );
    assert!(a.in_bounds() && b.in_bounds(), "matmul: view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: gemm reads a[i·rs + j·cs] for i < M, j < K and b likewise for K×N, and reads
    // and writes dst[i·N + j] for i < M, j < N. The assertions above put every such index
    // inside its slice (in_bounds checks the largest one; the strides are non-negative).
    // dst is a unique borrow, so it aliases neither input. k > 0 here; with read_dst false
    // gemm ignores dst's old contents (alpha is unused), else dst := 1·dst + 1·a·b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Against a triple loop, for every transpose combination, odd sizes, both modes.
    #[test]
    fn matmul_matches_the_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..24 {
            let (m, k, n) = (
                rng.random_range(1..=19),
                rng.random_range(1..=23),
                rng.random_range(1..=17),
            );
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let start: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            // The operands stored either way round.
            let a_view = if case % 2 == 0 {
                MatRef::rows(&a, m, k)
            } else {
                MatRef::rows(&a, k, m).t()
            };
            let b_view = if case % 4 < 2 {
                MatRef::rows(&b, k, n)
            } else {
                MatRef::rows(&b, n, k).t()
            };
            let at = |v: &MatRef, i: usize, j: usize| v.data[i * v.row_stride + j * v.col_stride];
            let accumulate = case % 3 == 0;
            let mut dst = start.clone();
            matmul(&mut dst, a_view, b_view, accumulate, 1 + case % 2);
            for i in 0..m {
                for j in 0..n {
                    let mut want = if accumulate { start[i * n + j] } else { 0.0 };
                    for l in 0..k {
                        want += at(&a_view, i, l) * at(&b_view, l, j);
                    }
                    assert!((dst[i * n + j] - want).abs() < 1e-4, "{case}: {i},{j}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_panics() {
        let a = vec![0f32; 5];
        let b = vec![0f32; 6];
        let mut dst = vec![0f32; 4];
        matmul(
            &mut dst,
            MatRef::rows(&a, 2, 3),
            MatRef::rows(&b, 3, 2),
            false,
            1,
        );
    }
}
