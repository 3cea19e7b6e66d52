//! Element-wise kernels and the storage helpers of every fused op: the leaky ReLU and its
//! gradient as custom CPU ops, and the affine map + activation from candle's generic ops
//! ([`dense_reference`]) that every fused layer falls back to off the CPU.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
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

/// The range of a storage that a contiguous layout covers.
fn contiguous_range(layout: &Layout, op: &str) -> Result<std::ops::Range<usize>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("{op}: input must be contiguous"),
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
    Ok(&data[contiguous_range(layout, op)?])
}

/// The slice a contiguous f32 storage covers, to update in place.
pub(crate) fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: only f32 is supported");
    };
    Ok(&mut data[contiguous_range(layout, op)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, random};
    use candle_core::Var;
    use rand::SeedableRng;

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
}
