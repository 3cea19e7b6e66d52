//! The adversarial prior of the DIM paper: a discriminator tells samples of the prior
//! N(0, I) from the encoder's codes, and the encoder is trained to fool it. The
//! discriminator's own loss is returned separately so the trainer can update its weights
//! against the encoder's (see `train::adversarial_grads`).

use super::config::ModelConfig;
use super::objective::softplus;
use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// Hidden widths of the paper's prior discriminator (D → 1000 → 200 → 1).
const HIDDEN: [usize; 2] = [1000, 200];

/// Name prefix of the discriminator's variables; the trainer routes their gradients.
pub const PRIOR_PREFIX: &str = "prior";

pub struct PriorDiscriminator {
    layers: Vec<Linear>,
}

/// The two sides of the prior game, both means over the batch.
pub struct PriorGame {
    /// The encoder's term: −log D(code), the non-saturating generator loss.
    pub encoder: Tensor,
    /// The discriminator's term: −log D(prior sample) − log(1 − D(code)), codes detached.
    pub discriminator: Tensor,
}

impl PriorDiscriminator {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::with_capacity(HIDDEN.len() + 1);
        let mut width = config.dim;
        for (i, &h) in HIDDEN.iter().chain(&[1]).enumerate() {
            layers.push(linear(width, h, vb.pp(format!("l{i}")))?);
            width = h;
        }
        Ok(PriorDiscriminator { layers })
    }

    /// Logit that `z` `(B, D)` was drawn from the prior, `(B,)`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = z.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        h.squeeze(1)
    }

    /// Both losses of the game for codes `z` and prior samples `prior` of the same shape.
    pub fn game(&self, z: &Tensor, prior: &Tensor) -> Result<PriorGame> {
        let encoder = softplus(&self.forward(z)?.neg()?)?.mean_all()?;
        let real = softplus(&self.forward(prior)?.neg()?)?.mean_all()?;
        let fake = softplus(&self.forward(&z.detach())?)?.mean_all()?;
        Ok(PriorGame {
            encoder,
            discriminator: (real + fake)?,
        })
    }
}
