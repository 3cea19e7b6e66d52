//! Adam's update as three in-place passes on the CPU (first moment, second moment,
//! parameter) instead of about ten candle ops that each allocate a new tensor per parameter.

use super::elementwise::{contiguous_f32, contiguous_f32_mut, CHUNK};
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

/// The scalars of one Adam step for one parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    /// `lr / (1 − β1ᵗ)`.
    pub step_size: f32,
    /// `1 − β2ᵗ`.
    pub correction2: f32,
    pub eps: f32,
    /// `lr · weight_decay` (AdamW's decoupled decay), 0 for plain Adam.
    pub decay: f32,
}

/// Updates `param`, `m` and `v` in place when all four tensors are contiguous f32 on the
/// CPU; returns `false` (nothing changed) otherwise, and the caller uses candle's ops.
/// The caller guarantees that `m` and `v` own their storages (no other tensor shares them,
/// nor do they share one with each other or with `param`): candle cannot check that for us.
pub(crate) fn adam_in_place(
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    step: AdamStep,
) -> Result<bool> {
    let tensors = [param, m, v, grad];
    let fits = tensors.iter().all(|t| {
        t.device().is_cpu()
            && t.dtype() == DType::F32
            && t.is_contiguous()
            && t.shape() == param.shape()
    });
    if !fits {
        return Ok(false);
    }
    m.inplace_op2(
        grad,
        &Moment {
            beta: step.beta1,
            square: false,
        },
    )?;
    v.inplace_op2(
        grad,
        &Moment {
            beta: step.beta2,
            square: true,
        },
    )?;
    param.inplace_op3(m, v, &ParamUpdate(step))?;
    Ok(true)
}

/// `m ← β·m + (1 − β)·g`, or with `g²` for the second moment.
struct Moment {
    beta: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let m = contiguous_f32_mut(s1, l1, self.name())?;
        let g = contiguous_f32(s2, l2, self.name())?;
        if m.len() != g.len() {
            candle_core::bail!("adam-moment: {} vs {} values", m.len(), g.len());
        }
        let (beta, rest) = (self.beta, 1.0 - self.beta);
        let square = self.square;
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| {
                for (m, &g) in m.iter_mut().zip(g) {
                    let g = if square { g * g } else { g };
                    *m = beta * *m + rest * g;
                }
            });
        Ok(())
    }
}

/// `θ ← θ·(1 − decay) − step_size · m / (√(v / c2) + ε)`.
struct ParamUpdate(AdamStep);

impl InplaceOp3 for ParamUpdate {
    fn name(&self) -> &'static str {
        "adam-param"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let p = contiguous_f32_mut(s1, l1, self.name())?;
        let m = contiguous_f32(s2, l2, self.name())?;
        let v = contiguous_f32(s3, l3, self.name())?;
        if p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("adam-param: {}, {}, {} values", p.len(), m.len(), v.len());
        }
        let AdamStep {
            step_size,
            correction2,
            eps,
            decay,
            ..
        } = self.0;
        let keep = 1.0 - decay;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(p, (m, v))| {
                for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                    *p = *p * keep - step_size * m / ((v / correction2).sqrt() + eps);
                }
            });
        Ok(())
    }
}
