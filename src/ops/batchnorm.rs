//! Batch normalisation of NHWC feature maps followed by the leaky ReLU, as one op.
//!
//! In training the statistics are the batch's, per channel over `(B, H, W)`; the running
//! mean and (unbiased) variance follow them with momentum 0.1 and are kept as variables
//! that the optimiser never sees (`model::layers::is_buffer`). For inference the running
//! statistics are folded into the preceding convolution (`model::layers::BatchNorm::fold`), so
//! a normalised layer embeds at the speed of a plain one.
//!
//! On the CPU the training forward is one custom op ([`BatchNormAct`]): two passes, one for
//! the per-channel sums and one that normalises, scales, shifts and activates in place. Its
//! backward is one more op returning all three gradients from the analytic formula
//! `dx = γ/σ·(dz − mean(dz) − x̂·mean(dz·x̂))`, `dγ = Σ dz·x̂`, `dβ = Σ dz`, where `dz` is the
//! gradient through the leaky ReLU. Elsewhere the same layer is composed from candle's ops
//! ([`batch_norm_reference`]), which the tests also compare against.

use super::elementwise::{contiguous_f32, leaky_relu_reference, CHUNK, LEAKY_SLOPE};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Added to the variance before the square root.
pub const BN_EPS: f64 = 1e-5;
/// Weight of the current batch in the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;

/// `(leaky_relu(γ·x̂ + β), batch mean, biased batch variance)` for `x` `(…, C)`, statistics
/// over every axis but the last. The statistics carry no gradient.
pub fn batch_norm_act(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let fused = x.device().is_cpu()
        && [x, gamma, beta].iter().all(|t| t.dtype() == DType::F32)
        && gamma.rank() == 1
        && beta.rank() == 1;
    if !fused {
        return batch_norm_reference(x, gamma, beta);
    }
    let stats = Arc::new(Mutex::new(Vec::new()));
    let y = x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        BatchNormAct {
            stats: stats.clone(),
        },
    )?;
    let c = gamma.dim(0)?;
    let stats = stats
        .lock()
        .map_err(|_| candle_core::Error::Msg("batch norm: stats lock poisoned".into()))?
        .clone();
    if stats.len() != 2 * c {
        candle_core::bail!("batch norm: no statistics from the forward");
    }
    let mean = Tensor::from_slice(&stats[..c], c, x.device())?;
    let var = Tensor::from_slice(&stats[c..], c, x.device())?;
    Ok((y, mean, var))
}

/// The same from candle's ops: runs on every backend; the reference of the tests.
pub fn batch_norm_reference(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = gamma.dim(0)?;
    let rows = x.reshape(((), c))?;
    let mean = rows.mean_keepdim(0)?;
    let centred = rows.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(0)?;
    let normed = centred.broadcast_div(&(&var + BN_EPS)?.sqrt()?)?;
    let z = normed.broadcast_mul(gamma)?.broadcast_add(beta)?;
    let y = leaky_relu_reference(&z)?.reshape(x.shape())?;
    Ok((y, mean.squeeze(0)?.detach(), var.squeeze(0)?.detach()))
}

/// Per-channel `(Σx, Σx²)` in f64 over rows of `c` values, in parallel chunks of rows.
fn channel_sums(x: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let rows_per_chunk = (CHUNK / c).max(1);
    let zeros = || (vec![0f64; c], vec![0f64; c]);
    x.par_chunks(rows_per_chunk * c)
        .fold(zeros, |(mut s, mut q), chunk| {
            // f32 partial sums per row block keep the inner loop vectorisable.
            let mut s32 = vec![0f32; c];
            let mut q32 = vec![0f32; c];
            for (n, row) in chunk.chunks_exact(c).enumerate() {
                for ((a, b), &v) in s32.iter_mut().zip(q32.iter_mut()).zip(row) {
                    *a += v;
                    *b += v * v;
                }
                if n % 64 == 63 {
                    flush(&mut s, &mut s32);
                    flush(&mut q, &mut q32);
                }
            }
            flush(&mut s, &mut s32);
            flush(&mut q, &mut q32);
            (s, q)
        })
        .reduce(zeros, add_sums)
}

/// Adds two pairs of per-channel sums: the reduction of [`channel_sums`] and of the backward.
fn add_sums(
    (mut s1, mut q1): (Vec<f64>, Vec<f64>),
    (s2, q2): (Vec<f64>, Vec<f64>),
) -> (Vec<f64>, Vec<f64>) {
    s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
    q1.iter_mut().zip(&q2).for_each(|(a, b)| *a += b);
    (s1, q1)
}

/// `1/√(var + ε)` per channel.
fn inverse_std(var: &[f32]) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + BN_EPS).sqrt()) as f32)
        .collect()
}

/// The per-channel affine map of the normalisation, `z = x·scale + shift`: the forward and
/// the backward compute it alike, so the backward sees the forward's activation signs.
fn scale_shift(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let inv = inverse_std(var);
    let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let shift = beta
        .iter()
        .zip(mean.iter().zip(&scale))
        .map(|(b, (m, s))| b - m * s)
        .collect();
    (scale, shift)
}

fn flush(total: &mut [f64], part: &mut [f32]) {
    for (t, p) in total.iter_mut().zip(part.iter_mut()) {
        *t += *p as f64;
        *p = 0.0;
    }
}

/// The fused training forward: arguments `x` `(…, C)`, `γ` `(C)`, `β` `(C)`. Leaves the
/// batch mean and biased variance (`2·C` values) in `stats` for the layer's running
/// statistics and for the backward.
struct BatchNormAct {
    stats: Arc<Mutex<Vec<f32>>>,
}

impl BatchNormAct {
    fn saved(&self) -> Result<Vec<f32>> {
        self.stats
            .lock()
            .map(|s| s.clone())
            .map_err(|_| candle_core::Error::Msg("batch norm: stats lock poisoned".into()))
    }
}

impl CustomOp3 for BatchNormAct {
    fn name(&self) -> &'static str {
        "batch-norm-act"
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
        let c = l2.shape().dims1()?;
        if l3.shape().dims1()? != c || l1.shape().dims().last() != Some(&c) {
            candle_core::bail!(
                "batch norm: x {:?}, γ {:?}, β {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let x = contiguous_f32(s1, l1, self.name())?;
        let gamma = contiguous_f32(s2, l2, self.name())?;
        let beta = contiguous_f32(s3, l3, self.name())?;
        let rows = x.len() / c.max(1);
        if rows == 0 {
            candle_core::bail!("batch norm: empty batch");
        }
        let (s, q) = channel_sums(x, c);
        let n = rows as f64;
        let mut stats: Vec<f32> = s.iter().map(|s| (s / n) as f32).collect();
        let var: Vec<f32> = q
            .iter()
            .zip(&s)
            .map(|(q, s)| (q / n - (s / n) * (s / n)).max(0.0) as f32)
            .collect();
        stats.extend(var);
        let (mean, var) = stats.split_at(c);
        let (scale, shift) = scale_shift(gamma, beta, mean, var);
        let mut out = x.to_vec();
        let rows_per_chunk = (CHUNK / c).max(1);
        out.par_chunks_mut(rows_per_chunk * c).for_each(|chunk| {
            for row in chunk.chunks_exact_mut(c) {
                for ((v, &a), &b) in row.iter_mut().zip(&scale).zip(&shift) {
                    let z = *v * a + b;
                    *v = z.max(z * LEAKY_SLOPE);
                }
            }
        });
        *self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: stats lock poisoned".into()))? =
            stats;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.dim(0)?;
        let stats = Tensor::from_vec(self.saved()?, 2 * c, x.device())?;
        // The pre-activation's sign is recomputed from x and the saved statistics, exactly
        // as the forward computed it, so neither it nor x̂ is kept from forward to backward.
        let params = Tensor::cat(&[&gamma.detach(), &beta.detach(), &stats], 0)?;
        let packed =
            params.apply_op3_no_bwd(&x.detach(), &grad_res.contiguous()?, &BatchNormBackward)?;
        let nx = x.elem_count();
        let grad_x = packed.narrow(0, 0, nx)?.reshape(x.shape())?;
        let grad_gamma = packed.narrow(0, nx, c)?;
        let grad_beta = packed.narrow(0, nx + c, c)?;
        Ok((Some(grad_x), Some(grad_gamma), Some(grad_beta)))
    }
}

/// The three gradients of [`BatchNormAct`]: arguments `[γ, β, mean, var]` (`4·C`), `x` and
/// the output gradient `g`. Result: `dx`, `dγ`, `dβ` packed in one vector.
struct BatchNormBackward;

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch-norm-act-backward"
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
        let params = contiguous_f32(s1, l1, self.name())?;
        let x = contiguous_f32(s2, l2, self.name())?;
        let g = contiguous_f32(s3, l3, self.name())?;
        let c = params.len() / 4;
        if params.len() != 4 * c || g.len() != x.len() || c == 0 || x.len() % c != 0 {
            candle_core::bail!("batch norm backward: bad argument sizes");
        }
        let (gamma, rest) = params.split_at(c);
        let (beta, stats) = rest.split_at(c);
        let (mean, var) = stats.split_at(c);
        let (scale, shift) = scale_shift(gamma, beta, mean, var);
        let inv = inverse_std(var);
        let rows = x.len() / c;
        let rows_per_chunk = (CHUNK / c).max(1);
        let chunk = rows_per_chunk * c;
        // dz = g·lrelu'(z), z = x·scale + shift as in the forward; Σdz and Σdz·x̂ per channel.
        let dz = |g: f32, x: f32, i: usize| {
            if x * scale[i] + shift[i] > 0.0 {
                g
            } else {
                g * LEAKY_SLOPE
            }
        };
        let zeros = || (vec![0f64; c], vec![0f64; c]);
        let (sum_dz, sum_dz_xhat) = x
            .par_chunks(chunk)
            .zip(g.par_chunks(chunk))
            .fold(zeros, |(mut s, mut p), (x, g)| {
                let mut s32 = vec![0f32; c];
                let mut p32 = vec![0f32; c];
                for (n, (x, g)) in x.chunks_exact(c).zip(g.chunks_exact(c)).enumerate() {
                    for i in 0..c {
                        let dz = dz(g[i], x[i], i);
                        s32[i] += dz;
                        p32[i] += dz * (x[i] - mean[i]) * inv[i];
                    }
                    if n % 64 == 63 {
                        flush(&mut s, &mut s32);
                        flush(&mut p, &mut p32);
                    }
                }
                flush(&mut s, &mut s32);
                flush(&mut p, &mut p32);
                (s, p)
            })
            .reduce(zeros, add_sums);
        let n = rows as f64;
        let mean_dz: Vec<f32> = sum_dz.iter().map(|s| (s / n) as f32).collect();
        let mean_dz_xhat: Vec<f32> = sum_dz_xhat.iter().map(|s| (s / n) as f32).collect();
        let k: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let mut out = vec![0f32; x.len() + 2 * c];
        out[..x.len()]
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
            .for_each(|(dx, (x, g))| {
                for ((dx, x), g) in dx
                    .chunks_exact_mut(c)
                    .zip(x.chunks_exact(c))
                    .zip(g.chunks_exact(c))
                {
                    for i in 0..c {
                        let xhat = (x[i] - mean[i]) * inv[i];
                        let dz = dz(g[i], x[i], i);
                        dx[i] = k[i] * (dz - mean_dz[i] - xhat * mean_dz_xhat[i]);
                    }
                }
            });
        for i in 0..c {
            out[x.len() + i] = sum_dz_xhat[i] as f32;
            out[x.len() + c + i] = sum_dz[i] as f32;
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_diff, probe_gradients, random};
    use candle_core::Var;
    use rand::SeedableRng;

    /// Odd shapes (rows not a multiple of the chunk, a single channel, 4-D maps): values,
    /// statistics and the gradients of x, γ and β equal the composition of candle's ops.
    #[test]
    fn fused_batch_norm_matches_candle_ops() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let shapes: [&[usize]; 6] = [
            &[3, 1],
            &[7, 5],
            &[2, 3, 5, 7],
            &[3, 9, 9, 13],
            &[5, 4, 3, 1],
            &[4, 33, 31, 17],
        ];
        for shape in shapes {
            let c = *shape.last().expect("channels");
            // Off-centre, scaled inputs: the statistics matter.
            let x = (random(shape, &mut rng) * 3.0)
                .and_then(|x| x + 0.7)
                .expect("x");
            let x = Var::from_tensor(&x).expect("x");
            let gamma = Var::from_tensor(&random(&[c], &mut rng)).expect("γ");
            let beta = Var::from_tensor(&random(&[c], &mut rng)).expect("β");
            let args = (x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
            let (ours, m1, v1) = batch_norm_act(args.0, args.1, args.2).expect("ours");
            let (theirs, m2, v2) = batch_norm_reference(args.0, args.1, args.2).expect("ref");
            assert_eq!(ours.dims(), theirs.dims());
            assert!(
                max_diff(&ours, &theirs) < 1e-4,
                "{shape:?}: {}",
                max_diff(&ours, &theirs)
            );
            assert!(max_diff(&m1, &m2) < 1e-5, "{shape:?}");
            assert!(max_diff(&v1, &v2) < 1e-4, "{shape:?}");
            for (a, b) in probe_gradients(&ours, &theirs, &[&x, &gamma, &beta], &mut rng) {
                assert!(!a.track_op(), "gradient still tracks its graph");
                let scale = b.abs().and_then(|t| t.flatten_all()).and_then(|t| t.max(0));
                let scale = scale.and_then(|t| t.to_scalar::<f32>()).expect("scale");
                assert!(
                    max_diff(&a, &b) < 1e-4 * scale.max(1.0),
                    "{shape:?}: {} (scale {scale})",
                    max_diff(&a, &b)
                );
            }
        }
    }
}
