//! Global average pooling of a channels-last map: the mean over the positions of `(B, N, C)`.
//!
//! candle's `mean(1)` reduces a middle axis element by element, with an index computation per
//! value; on the encoder's `(256, 16, 256)` map that was 5% of an embedding batch (perf of
//! `examples/train_bench.rs --embed-only`). Here it is one pass adding contiguous rows.

use super::elementwise::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The mean of `x` `(B, N, C)` over its N positions: `(B, C)`. On the CPU one custom op
/// (its gradient spreads `g / N` back over the positions); elsewhere candle's `mean(1)`.
pub fn mean_positions(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() == 3 {
        x.contiguous()?.apply_op1(MeanPositions)
    } else {
        x.mean(1)
    }
}

struct MeanPositions;

impl CustomOp1 for MeanPositions {
    fn name(&self) -> &'static str {
        "mean-positions"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, n, c) = layout.shape().dims3()?;
        let x = contiguous_f32(storage, layout, self.name())?;
        let mut out = vec![0f32; b * c];
        if n > 0 && c > 0 {
            let scale = 1.0 / n as f32;
            out.par_chunks_mut(c)
                .zip(x.par_chunks(n * c))
                .for_each(|(sums, rows)| {
                    for row in rows.chunks_exact(c) {
                        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                    }
                    sums.iter_mut().for_each(|s| *s *= scale);
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (b, n, c) = arg.dims3()?;
        let spread = grad_res.unsqueeze(1)?.broadcast_as((b, n, c))?;
        spread.affine(1.0 / n.max(1) as f64, 0.0).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, random};
    use candle_core::Var;
    use rand::SeedableRng;

    /// Values and the gradient equal candle's `mean(1)`.
    #[test]
    fn mean_positions_matches_candle_mean() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let x = Var::from_tensor(&random(&[3, 16, 7], &mut rng))?;
        let weights = random(&[3, 7], &mut rng);
        let ours = mean_positions(x.as_tensor())?;
        let reference = x.as_tensor().mean(1)?;
        assert!(max_diff(&ours, &reference) < 1e-6);
        let grad_ours = (ours * &weights)?.sum_all()?.backward()?;
        let grad_reference = (reference * &weights)?.sum_all()?.backward()?;
        let (a, b) = (
            grad_ours.get(x.as_tensor()).expect("gradient"),
            grad_reference.get(x.as_tensor()).expect("gradient"),
        );
        assert!(max_diff(a, b) < 1e-6);
        Ok(())
    }
}
