//! A fused dense layer, `act(x·Wᵀ + b)`, as one candle custom op.
//!
//! Written with candle's generic ops the layer is a matmul, a broadcast add and a leaky ReLU
//! (`max(x, 0.2x)`): three full passes over the output forward, and about ten backward (the
//! maximum's gradient builds equality masks and divides by their sum), each a fresh tensor
//! that backprop then adds into a zero-filled gradient. Here the forward is one gemm call
//! that starts from the bias rows and one in-place activation pass; the backward is one pass
//! for the activation's derivative, two matmuls and a column sum. Every layer of the model
//! (the convolutions after their im2col, the heads, the critics) goes through it.
//!
//! On devices other than the CPU [`dense`] composes candle's own ops ([`dense_reference`]),
//! so the CUDA backend keeps working; the reference is also what the tests compare against.

use super::matmul::{matmul, MatRef};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use candle_nn::Linear;
use rayon::prelude::*;

/// Slope of the leaky ReLU on negative inputs.
pub const LEAKY_SLOPE: f32 = 0.2;

/// Elements per parallel task in the element-wise passes.
pub(crate) const CHUNK: usize = 1 << 15;

/// The activation applied after the affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// `max(x, 0.2x)`.
    LeakyRelu,
}

/// `act(x·Wᵀ + b)` for `x` `(…, K)`, `weight` `(O, K)` and `bias` `(O)`: output `(…, O)`.
pub fn dense(x: &Tensor, weight: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    let fused = x.device().is_cpu()
        && [x, weight, bias].iter().all(|t| t.dtype() == DType::F32)
        && weight.rank() == 2
        && bias.rank() == 1;
    if !fused {
        return dense_reference(x, weight, bias, act);
    }
    let dims = x.dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("dense: input must have at least one dimension");
    };
    let op = DenseOp { act };
    let (weight, bias) = (weight.contiguous()?, bias.contiguous()?);
    if lead.len() == 1 {
        // No reshape: every reshape is a graph node whose gradient backprop zero-fills and
        // adds once more.
        return x.contiguous()?.apply_op3(&weight, &bias, op);
    }
    let rows: usize = lead.iter().product();
    let mut shape = lead.to_vec();
    shape.push(weight.dim(0)?);
    x.reshape((rows, k))?
        .contiguous()?
        .apply_op3(&weight, &bias, op)?
        .reshape(shape)
}

/// A `candle_nn::Linear` applied through [`dense`] (or through candle's own forward when it
/// has no bias), followed by `act`.
pub fn linear(layer: &Linear, x: &Tensor, act: Activation) -> Result<Tensor> {
    match layer.bias() {
        Some(bias) => dense(x, layer.weight(), bias, act),
        None => {
            let y = candle_core::Module::forward(layer, x)?;
            match act {
                Activation::Identity => Ok(y),
                Activation::LeakyRelu => super::leaky_relu(&y),
            }
        }
    }
}

/// The same layer written with candle's generic ops: runs on every backend.
pub fn dense_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let y = x.broadcast_matmul(&weight.t()?)?.broadcast_add(bias)?;
    match act {
        Activation::Identity => Ok(y),
        Activation::LeakyRelu => super::leaky_relu(&y),
    }
}

/// The fused CPU op: arguments `x` `(N, K)`, `W` `(O, K)`, `b` `(O)`, all contiguous.
struct DenseOp {
    act: Activation,
}

impl CustomOp3 for DenseOp {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = l1.shape().dims2()?;
        let (o, k2) = l2.shape().dims2()?;
        let o2 = l3.shape().dims1()?;
        if k != k2 || o != o2 {
            candle_core::bail!("dense: x {n}×{k}, weight {o}×{k2}, bias {o2}");
        }
        let x = contiguous_f32(s1, l1, self.name())?;
        let w = contiguous_f32(s2, l2, self.name())?;
        let b = contiguous_f32(s3, l3, self.name())?;
        let out = dense_cpu(x, w, b, (n, k, o), self.act);
        Ok((CpuStorage::F32(out), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = match self.act {
            Activation::Identity => grad_res.contiguous()?,
            Activation::LeakyRelu => leaky_relu_grad(res, grad_res)?,
        };
        // The input gradient is only wanted when the input depends on a variable: the first
        // layer's image patches do not. Every gradient is detached: built from `x` and `W`,
        // which are tracked, it would otherwise keep this step's whole graph alive in the
        // optimiser's moments (candle detaches gradients only between its own ops).
        let grad_x = if x.track_op() {
            Some(g.matmul(weight)?.detach())
        } else {
            None
        };
        let grad_w = g.t()?.matmul(x)?.detach();
        let grad_b = column_sums(&g)?.detach();
        Ok((grad_x, Some(grad_w), Some(grad_b)))
    }
}

/// `act(x·Wᵀ + b)` on slices: `x` `N×K`, `w` `O×K`, `b` `O` (lengths checked by the callers).
pub(crate) fn dense_cpu(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (n, k, o): (usize, usize, usize),
    act: Activation,
) -> Vec<f32> {
    // The gemm adds onto the bias rows: no zero fill, no separate bias pass.
    let mut out = Vec::with_capacity(n * o);
    for _ in 0..n {
        out.extend_from_slice(b);
    }
    let (x, w) = (MatRef::rows(x, n, k), MatRef::rows(w, o, k).t());
    matmul(&mut out, x, w, true, rayon::current_num_threads());
    if act == Activation::LeakyRelu {
        out.par_chunks_mut(CHUNK).for_each(leaky_relu_in_place);
    }
    out
}

/// `v ← max(v, 0.2·v)` over a slice.
pub(crate) fn leaky_relu_in_place(values: &mut [f32]) {
    for v in values {
        *v = v.max(*v * LEAKY_SLOPE);
    }
}

/// The gradient through the leaky ReLU, from its output `y` (whose sign is its input's) and
/// the gradient `g` with respect to it.
pub(crate) fn leaky_relu_grad(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    if y.device().is_cpu() && y.dtype() == DType::F32 && g.dtype() == DType::F32 {
        g.contiguous()?
            .apply_op2_no_bwd(&y.contiguous()?, &LeakyReluGrad)
    } else {
        let slope = y
            .gt(0.0)?
            .to_dtype(g.dtype())?
            .affine(1.0 - LEAKY_SLOPE as f64, LEAKY_SLOPE as f64)?;
        g * slope
    }
}

/// Sums over the rows of `g` `(N, O)` → `(O)`: the bias gradient. candle's `sum(0)` walks
/// the matrix column by column; this adds whole rows, in a few row blocks at once.
pub(crate) fn column_sums(g: &Tensor) -> Result<Tensor> {
    if g.device().is_cpu() && g.dtype() == DType::F32 {
        g.contiguous()?.apply_op1_no_bwd(&ColumnSums)
    } else {
        g.sum(0)
    }
}

struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, o) = layout.shape().dims2()?;
        let g = contiguous_f32(storage, layout, self.name())?;
        let add_rows = |rows: &[f32]| {
            let mut acc = vec![0f32; o];
            for row in rows.chunks_exact(o) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        };
        let sums = if o == 0 || n == 0 {
            vec![0f32; o]
        } else {
            let block = (CHUNK / o).max(1) * o;
            g.par_chunks(block).map(add_rows).reduce(
                || vec![0f32; o],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            )
        };
        Ok((CpuStorage::F32(sums), Shape::from(o)))
    }
}

/// `g · (y > 0 ? 1 : 0.2)` element-wise: arguments `g`, `y`.
struct LeakyReluGrad;

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("leaky-relu-grad: {:?} vs {:?}", l1.shape(), l2.shape());
        }
        let g = contiguous_f32(s1, l1, self.name())?;
        let y = contiguous_f32(s2, l2, self.name())?;
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
            .for_each(|(out, (g, y))| {
                for ((d, &g), &y) in out.iter_mut().zip(g).zip(y) {
                    *d = if y > 0.0 { g } else { g * LEAKY_SLOPE };
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The slice a contiguous f32 storage covers.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::{max_diff, random};
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    /// Random shapes, odd sizes and 3-D inputs included: values and all three gradients
    /// equal the composition of candle's own ops.
    #[test]
    fn dense_and_its_gradients_match_candle_ops() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for case in 0..17 {
            let act = if case % 2 == 0 {
                Activation::LeakyRelu
            } else {
                Activation::Identity
            };
            let k = rng.random_range(1..=37);
            let o = rng.random_range(1..=29);
            // The last case has enough rows for several blocks of the column sums.
            let shape: Vec<usize> = if case == 16 {
                vec![2503, k]
            } else if case % 3 == 0 {
                vec![rng.random_range(1..=5), rng.random_range(1..=7), k]
            } else {
                vec![rng.random_range(1..=41), k]
            };
            let x = Var::from_tensor(&random(&shape, &mut rng)).expect("x");
            let w = Var::from_tensor(&random(&[o, k], &mut rng)).expect("w");
            let b = Var::from_tensor(&random(&[o], &mut rng)).expect("b");
            let ours = dense(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).expect("ours");
            let theirs =
                dense_reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), act).expect("ref");
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-5, "{case}");

            let probe = random(ours.dims(), &mut rng);
            let g1 = (ours * &probe)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("ours backward");
            let g2 = (theirs * &probe)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("reference backward");
            for var in [&x, &w, &b] {
                let (a, b) = (
                    g1.get(var.as_tensor()).expect("g"),
                    g2.get(var.as_tensor()).expect("g"),
                );
                assert!(max_diff(a, b) < 1e-4, "{case}: {}", max_diff(a, b));
            }
        }
    }

    /// A constant input (no variable behind it) gets no gradient; the parameters get detached ones.
    #[test]
    fn dense_skips_the_gradient_of_a_constant_input() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let x = random(&[9, 5], &mut rng);
        let w = Var::from_tensor(&random(&[3, 5], &mut rng)).expect("w");
        let b = Var::from_tensor(&random(&[3], &mut rng)).expect("b");
        let grads = dense(&x, w.as_tensor(), b.as_tensor(), Activation::LeakyRelu)
            .and_then(|y| y.sum_all())
            .and_then(|y| y.backward())
            .expect("backward");
        assert!(grads.get(&x).is_none());
        for var in [&w, &b] {
            let grad = grads.get(var.as_tensor()).expect("parameter gradient");
            // A gradient that kept its graph would chain every step into the next through
            // the optimiser's moments.
            assert!(!grad.track_op(), "gradient still tracks its graph");
        }
    }
}
