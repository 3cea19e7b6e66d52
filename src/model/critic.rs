//! Encode-and-dot critics (one of the DIM paper's discriminator designs): features and code
//! are embedded separately and a pair's score is their cosine over a temperature, so scoring
//! every (code, feature) pair of a batch costs one matmul.

use super::config::ModelConfig;
use super::layers::apply_linear;
use crate::ops::Activation;
use candle_core::{Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// A two-layer MLP whose output is L2-normalised.
struct Embedder {
    first: Linear,
    second: Linear,
}

impl Embedder {
    fn new(input: usize, width: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Embedder {
            first: candle_nn::linear(input, width, vb.pp("0"))?,
            second: candle_nn::linear(width, width, vb.pp("1"))?,
        })
    }

    /// `(N, input)` → `(N, width)`, unit rows.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = apply_linear(
            &self.second,
            &apply_linear(&self.first, x, Activation::LeakyRelu)?,
            Activation::Identity,
        )?;
        let norm = h
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-6, f64::MAX)?;
        h.broadcast_div(&norm)
    }
}

/// Scores codes against feature vectors: `features` embeds one feature vector per row (the
/// global summary, or each local position through 1×1 convolutions, here matrices over the
/// rows), `code` embeds the global code.
pub struct DotCritic {
    features: Embedder,
    code: Embedder,
    inv_temperature: f64,
}

impl DotCritic {
    pub fn new(feature_len: usize, config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let width = config.disc_hidden;
        Ok(DotCritic {
            features: Embedder::new(feature_len, width, vb.pp("features"))?,
            code: Embedder::new(config.dim, width, vb.pp("code"))?,
            inv_temperature: 1.0 / config.objective.temperature as f64,
        })
    }

    /// Scores `(R, Q, P)` of every code `(R, D)` against every feature vector `(Q, P, F)`
    /// (P positions per image; P = 1 for a global feature).
    pub fn scores(&self, codes: &Tensor, features: &Tensor) -> Result<Tensor> {
        let (q, p, f) = features.dims3()?;
        let r = codes.dim(0)?;
        let fe = self.features.forward(&features.reshape((q * p, f))?)?;
        let ce = self.code.forward(codes)?;
        (ce.matmul(&fe.t()?)? * self.inv_temperature)?.reshape((r, q, p))
    }
}
