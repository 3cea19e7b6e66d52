//! The search embedding's projection: principal components of the encoder's normalised
//! embedding, fitted without labels on a sample of the training images, each component
//! scaled by `eigenvalue^-power` (partial whitening) and the first `dim` kept.
//!
//! Why: the pooled features of a contrastive encoder are dominated by a few directions that
//! every photo shares (overall brightness, colourfulness); cosine similarity on them ranks
//! neighbours by those directions first. Centring and flattening the spectrum lets the
//! directions that tell photos apart count, and dropping the smallest components removes
//! noise. `power` 0.5 is full whitening; a smaller power keeps some of the spectrum's shape,
//! which retrieved better on photo sets the projection was not fitted on (docs/RESULTS.md).
//!
//! Stored in the model's safetensors file as `projection.mean` `(C)` and `projection.matrix`
//! `(C, dim)`; [`super::Model::embed`] applies it to the L2-normalised embedding before the
//! final normalisation.

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The power `train` fits with: a quarter, half way between the raw spectrum and full
/// whitening (docs/RESULTS.md, "Search features").
pub const PROJECTION_POWER: f32 = 0.25;

/// Prefix of the projection's tensors in a model file.
pub const PROJECTION_PREFIX: &str = "projection";

/// The projection's shape and how it was fitted (`config.json` → `projection`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionConfig {
    /// Components kept: the search embedding's length.
    pub dim: usize,
    /// Each component is divided by its eigenvalue to this power (0.5: full whitening).
    pub power: f32,
    /// Images the components were fitted on (0 before fitting).
    #[serde(default)]
    pub images: usize,
}

impl ProjectionConfig {
    pub fn validate(&self, in_dim: usize) -> std::result::Result<(), String> {
        if self.dim == 0 || self.dim > in_dim {
            return Err(format!(
                "projection.dim {} must be between 1 and the embedding's {in_dim} dims",
                self.dim
            ));
        }
        if !self.power.is_finite() || !(0.0..=1.0).contains(&self.power) {
            return Err(format!(
                "projection.power {} must lie in [0, 1]",
                self.power
            ));
        }
        Ok(())
    }
}

/// A fitted projection, ready to apply.
#[derive(Debug, Clone)]
pub struct Projection {
    /// `(1, C)`.
    mean: Tensor,
    /// `(C, dim)`.
    matrix: Tensor,
}

impl Projection {
    /// Reads `projection.mean` and `projection.matrix` for an embedding of `in_dim` values.
    pub fn new(cfg: &ProjectionConfig, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        let mean = vb.get(in_dim, "mean")?.reshape((1, in_dim))?;
        let matrix = vb.get((in_dim, cfg.dim), "matrix")?;
        Ok(Projection { mean, matrix })
    }

    /// `x`: `(B, C)` L2-normalised embeddings → `(B, dim)`, not normalised.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_sub(&self.mean)?.matmul(&self.matrix)
    }

    /// Fits the projection on `features` `(N, C)` (L2-normalised embeddings of unaugmented
    /// training images) and returns its tensors, named as [`Self::new`] reads them under
    /// [`PROJECTION_PREFIX`].
    pub fn fit(features: &Tensor, cfg: &ProjectionConfig) -> Result<HashMap<String, Tensor>> {
        let (n, c) = features.dims2()?;
        if n < 2 {
            candle_core::bail!("a projection needs at least 2 images, got {n}");
        }
        if cfg.dim == 0 || cfg.dim > c {
            candle_core::bail!("projection dim {} must be in 1..={c}", cfg.dim);
        }
        let x = features.to_dtype(DType::F64)?;
        let mean = x.mean_keepdim(0)?;
        let centred = x.broadcast_sub(&mean)?;
        let covariance = (centred.t()?.matmul(&centred)? / (n as f64 - 1.0))?;
        let values = covariance.flatten_all()?.to_vec1::<f64>()?;
        let eigen = nalgebra::DMatrix::from_row_slice(c, c, &values).symmetric_eigen();
        // Largest eigenvalues first; a tiny floor keeps flat directions finite.
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let floor = eigen.eigenvalues[order[0]].max(0.0) * 1e-6 + 1e-12;
        let mut matrix = vec![0f32; c * cfg.dim];
        for (j, &component) in order.iter().take(cfg.dim).enumerate() {
            let scale = (eigen.eigenvalues[component].max(0.0) + floor).powf(-cfg.power as f64);
            // Each eigenvector's sign is arbitrary; fix it so that refits agree.
            let column = eigen.eigenvectors.column(component);
            let sign = if column.iter().copied().sum::<f64>() < 0.0 {
                -1.0
            } else {
                1.0
            };
            for i in 0..c {
                matrix[i * cfg.dim + j] = (sign * column[i] * scale) as f32;
            }
        }
        let device = features.device();
        Ok(HashMap::from([
            (
                format!("{PROJECTION_PREFIX}.mean"),
                mean.squeeze(0)?.to_dtype(DType::F32)?,
            ),
            (
                format!("{PROJECTION_PREFIX}.matrix"),
                Tensor::from_vec(matrix, (c, cfg.dim), device)?,
            ),
        ]))
    }
}

/// L2-normalises the rows of `(B, N)`.
pub fn normalise_rows(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// Features on the CPU as a tensor, for [`Projection::fit`].
pub fn features_tensor(rows: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let c = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), c), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Fitted with full whitening and every component kept, the projection maps the fitting
    /// features to zero mean and identity covariance; with fewer components, to the top ones.
    #[test]
    fn full_whitening_gives_identity_covariance() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, c) = (400, 6);
        // Correlated features with very different scales.
        let rows: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                let a: f32 = rng.random_range(-1.0..1.0);
                let b: f32 = rng.random_range(-1.0..1.0);
                let e: Vec<f32> = (0..c).map(|_| rng.random_range(-0.5..0.5)).collect();
                (0..c)
                    .map(|i| 3.0 * a * (i as f32 + 1.0) + b * (c - i) as f32 + e[i] + 2.0)
                    .collect()
            })
            .collect();
        let x = features_tensor(&rows, &Device::Cpu)?;
        let cfg = ProjectionConfig {
            dim: c,
            power: 0.5,
            images: n,
        };
        let tensors = Projection::fit(&x, &cfg)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let p = Projection::new(&cfg, c, vb.pp(PROJECTION_PREFIX))?;
        let z = p.forward(&x)?.to_dtype(DType::F64)?;
        let mean = z.mean_keepdim(0)?;
        let zc = z.broadcast_sub(&mean)?;
        let cov = (zc.t()?.matmul(&zc)? / (n as f64 - 1.0))?.to_vec2::<f64>()?;
        for (i, row) in cov.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 2e-2, "cov[{i}][{j}] = {v}");
            }
        }
        for m in mean.flatten_all()?.to_vec1::<f64>()? {
            assert!(m.abs() < 1e-4, "mean {m}");
        }
        // Two components: the variances they keep are the two largest.
        let cfg2 = ProjectionConfig {
            dim: 2,
            power: 0.0,
            images: n,
        };
        let t2 = Projection::fit(&x, &cfg2)?;
        assert_eq!(t2[&format!("{PROJECTION_PREFIX}.matrix")].dims(), &[c, 2]);
        Ok(())
    }

    #[test]
    fn config_bounds() {
        let ok = ProjectionConfig {
            dim: 128,
            power: 0.25,
            images: 0,
        };
        assert!(ok.validate(256).is_ok());
        assert!(ok.validate(64).is_err());
        assert!(ProjectionConfig {
            power: f32::NAN,
            ..ok.clone()
        }
        .validate(256)
        .is_err());
        assert!(ProjectionConfig { dim: 0, ..ok }.validate(256).is_err());
    }
}
