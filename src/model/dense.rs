//! A fused dense layer, `act(x·Wᵀ + b)`, and the leaky-ReLU helpers of the fused ops.
//!
//! Written with candle's generic ops the layer is a matmul, a broadcast add and a leaky ReLU
//! (`max(x, 0.2x)`): three full passes over the output forward, and about ten backward (the
//! maximum's gradient builds equality masks and divides by their sum), each a fresh tensor
//! that backprop then adds into a zero-filled gradient. On the CPU [`dense`] is the fused
//! convolution's 1×1 case on rows ([`super::conv::conv`]): the forward multiplies from the
//! bias rows and activates in place; the backward is one pass for the activation's
//! derivative and one op for the three gradients. Every layer of the model (convolutions,
//! heads, critics) goes through it.
//!
//! On devices other than the CPU [`dense`] composes candle's own ops ([`dense_reference`]),
//! so the CUDA backend keeps working; the reference is also what the tests compare against.

use super::conv::{conv, Window};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
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
    let (weight, bias) = (weight.contiguous()?, bias.contiguous()?);
    // The dense layer is the fused convolution's 1×1 case on rows.
    if lead.len() == 1 {
        // No reshape: every reshape is a graph node whose gradient backprop zero-fills and
        // adds once more.
        return conv(x, &weight, &bias, Window::POINT, act);
    }
    let rows: usize = lead.iter().product();
    let mut shape = lead.to_vec();
    shape.push(weight.dim(0)?);
    conv(&x.reshape((rows, k))?, &weight, &bias, Window::POINT, act)?.reshape(shape)
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
                Activation::LeakyRelu => leaky_relu(&y),
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
        Activation::LeakyRelu => leaky_relu_reference(&y),
    }
}

/// `v ← max(v, 0.2·v)` over a slice.
pub(crate) fn leaky_relu_in_place(values: &mut [f32]) {
    for v in values {
        *v = v.max(*v * LEAKY_SLOPE);
    }
}

/// Leaky ReLU with slope 0.2 on its own (where no dense layer precedes it). On the CPU one
/// custom op whose backward is one pass; candle's `maximum` form costs about ten
/// full-size ops backward (equality masks, their sum, a division).
pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(LeakyRelu)
    } else {
        leaky_relu_reference(x)
    }
}

/// Leaky ReLU written as a maximum (candle's own op was twice as slow as this): every backend.
pub fn leaky_relu_reference(x: &Tensor) -> Result<Tensor> {
    x.maximum(&(x * LEAKY_SLOPE as f64)?)
}

struct LeakyRelu;

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = contiguous_f32(storage, layout, self.name())?.to_vec();
        out.par_chunks_mut(CHUNK).for_each(leaky_relu_in_place);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        leaky_relu_grad(res, grad_res).map(Some)
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
    use crate::model::test_util::{max_diff, probe_gradients, random};
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

            for (a, b) in probe_gradients(&ours, &theirs, &[&x, &w, &b], &mut rng) {
                assert!(max_diff(&a, &b) < 1e-4, "{case}: {}", max_diff(&a, &b));
            }
        }
    }

    /// The fused leaky ReLU and its gradient equal the maximum form on odd shapes.
    #[test]
    fn leaky_relu_matches_the_maximum_form() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for shape in [vec![1], vec![7, 3], vec![3, 5, 33], vec![70_001]] {
            let x = Var::from_tensor(&random(&shape, &mut rng)).expect("x");
            let ours = leaky_relu(x.as_tensor()).expect("ours");
            let theirs = leaky_relu_reference(x.as_tensor()).expect("reference");
            assert!(max_diff(&ours, &theirs) == 0.0);
            let probe = random(&shape, &mut rng);
            let grads = [ours, theirs].map(|y| {
                (y * &probe)
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.backward())
                    .expect("backward")
            });
            let (a, b) = (
                grads[0].get(x.as_tensor()).expect("g"),
                grads[1].get(x.as_tensor()).expect("g"),
            );
            assert!(max_diff(a, b) < 1e-6, "{shape:?}: {}", max_diff(a, b));
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
