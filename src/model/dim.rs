//! The whole trainable DIM model (encoder plus global and local critics) and its objective:
//! α·global MI + β·local MI + γ·KL prior, optionally across two augmented views.

use super::config::{Critic, ModelConfig, PriorKind};
use super::critic::DotCritic;
use super::discriminator::{GlobalDiscriminator, LocalDiscriminator};
use super::encoder::{Encoder, EncoderOutput};
use super::objective::{kl_to_standard_normal, matrix_mi_loss, mi_loss};
use super::prior::{PriorDiscriminator, PRIOR_PREFIX};
use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

/// Bound on the posterior's log-variance when sampling z: σ within e^±5.
const LOGVAR_LIMIT: f64 = 10.0;

enum Critics {
    Concat {
        global: GlobalDiscriminator,
        local: LocalDiscriminator,
    },
    Dot {
        summary: GlobalDiscriminator,
        global: DotCritic,
        local: DotCritic,
    },
}

pub struct Dim {
    pub encoder: Encoder,
    critics: Critics,
    prior: Option<PriorDiscriminator>,
    pub config: ModelConfig,
}

/// One training batch: `views` augmented views of `B` images stacked view-major (row
/// `v·B + i` is view `v` of image `i`), reparameterisation noise for every row, and a
/// derangement of the `B` images for the concat critic's negatives. The adversarial
/// prior also needs one N(0, I) sample per row.
pub struct DimBatch<'a> {
    pub x: &'a Tensor,
    /// With occlusion: `x` with part of each row hidden, the input of the global code
    /// (mean, log-variance, z); the local features still come from `x`.
    pub x_code: Option<&'a Tensor>,
    pub views: usize,
    pub eps: &'a Tensor,
    pub perm: &'a [u32],
    pub prior_samples: Option<&'a Tensor>,
}

/// The three loss terms, unweighted, and the adversarial prior's discriminator loss, which
/// only that discriminator minimises.
pub struct DimLosses {
    pub global: Tensor,
    pub local: Tensor,
    pub prior: Tensor,
    pub prior_critic: Option<Tensor>,
}

impl DimLosses {
    /// α·global + β·local + γ·prior.
    pub fn total(&self, config: &ModelConfig) -> Result<Tensor> {
        let o = &config.objective;
        ((&self.global * o.alpha as f64)? + (&self.local * o.beta as f64)?)?
            + (&self.prior * o.gamma as f64)?
    }
}

impl Dim {
    /// Builds the model on a var builder (prefixes `encoder`, `global`, `local`, and `prior`
    /// for the adversarial prior).
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let critics = match config.objective.critic {
            Critic::Concat => Critics::Concat {
                global: GlobalDiscriminator::new(config, vb.pp("global"))?,
                local: LocalDiscriminator::new(config, vb.pp("local"))?,
            },
            Critic::Dot => {
                let summary = GlobalDiscriminator::summary_only(config, vb.pp("global"))?;
                let global = DotCritic::new(summary.summary_len(config), config, vb.pp("global"))?;
                let local = DotCritic::new(config.local_channels(), config, vb.pp("local"))?;
                Critics::Dot {
                    summary,
                    global,
                    local,
                }
            }
        };
        let prior = match config.objective.prior {
            PriorKind::Adversarial => Some(PriorDiscriminator::new(config, vb.pp(PRIOR_PREFIX))?),
            PriorKind::Kl | PriorKind::None => None,
        };
        Ok(Dim {
            encoder: Encoder::new(config, vb.pp("encoder"))?,
            critics,
            prior,
            config: config.clone(),
        })
    }

    /// The loss terms of one batch: encode, draw the code from its Gaussian, then the mutual
    /// information terms and the prior's.
    pub fn losses(&self, batch: &DimBatch) -> Result<DimLosses> {
        let EncoderOutput {
            local,
            mean,
            logvar,
        } = match batch.x_code {
            None => self.encoder.forward(batch.x)?,
            // Two passes. With batch normalisation both update the running statistics.
            Some(x_code) => EncoderOutput {
                local: self.encoder.local(batch.x)?,
                ..self.encoder.forward(x_code)?
            },
        };
        // Without a prior nothing bounds the log-variance, and exp overflowed within tens of
        // steps (docs/RESULTS.md); the clamp only bites far outside what the KL prior allows.
        // The KL below is taken of the same, clamped, distribution: a from-scratch run on
        // 1,653 sign photos reached an infinite prior loss at step 1,720 without it.
        let logvar = logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)?;
        let std = (&logvar * 0.5)?.exp()?;
        let z = (&mean + std.mul(batch.eps)?)?;
        let (global, local_loss) = self.mutual_information(&local, &z, batch)?;
        let (prior, prior_critic) = self.prior_losses(&mean, &logvar, &z, batch)?;
        Ok(DimLosses {
            global,
            local: local_loss,
            prior,
            prior_critic,
        })
    }

    /// The global and local mutual-information losses: the code `z` of each row against the
    /// feature map of the other view of its image (positive) and of other images (negatives).
    fn mutual_information(
        &self,
        local: &Tensor,
        z: &Tensor,
        batch: &DimBatch,
    ) -> Result<(Tensor, Tensor)> {
        let objective = &self.config.objective;
        let device = batch.x.device();
        let rows = z.dim(0)?;
        let images = batch.perm.len();
        let views = batch.views.max(1);
        if rows != images * views {
            candle_core::bail!("batch of {rows} rows for {images} images × {views} views");
        }
        // Row r = v·B + i pairs its code with the features of the next view of image i.
        let other = |r: usize, image: usize| ((r / images + 1) % views) * images + image;
        let index = |ids: Vec<u32>| Tensor::new(ids, device);

        Ok(match &self.critics {
            Critics::Concat {
                global,
                local: critic,
            } => {
                let positive = index((0..rows).map(|r| other(r, r % images) as u32).collect())?;
                let negative = index(
                    (0..rows)
                        .map(|r| other(r, batch.perm[r % images] as usize) as u32)
                        .collect(),
                )?;
                let summary = global.summarise(local)?;
                let g = mi_loss(
                    objective.estimator,
                    &global.forward(&summary.index_select(&positive, 0)?, z)?,
                    &global.forward(&summary.index_select(&negative, 0)?, z)?,
                )?;
                let projected = critic.project(local)?;
                let l = mi_loss(
                    objective.estimator,
                    &critic.forward(&projected.index_select(&positive, 0)?, z)?,
                    &critic.forward(&projected.index_select(&negative, 0)?, z)?,
                )?;
                (g, l)
            }
            Critics::Dot {
                summary,
                global,
                local: critic,
            } => {
                // Positive: the other view of the same image. Negatives: every row of
                // another image. Rows of the same image in the code's own view are neither.
                let mut positive = vec![0f32; rows * rows];
                let mut negative = vec![0f32; rows * rows];
                for r in 0..rows {
                    for q in 0..rows {
                        if q == other(r, r % images) {
                            positive[r * rows + q] = 1.0;
                        } else if q % images != r % images {
                            negative[r * rows + q] = 1.0;
                        }
                    }
                }
                let positive = Tensor::from_vec(positive, (rows, rows, 1), device)?;
                let negative = Tensor::from_vec(negative, (rows, rows, 1), device)?;
                let s = summary.summarise(local)?.unsqueeze(1)?;
                let g = matrix_mi_loss(
                    objective.estimator,
                    &global.scores(z, &s)?,
                    &positive,
                    &negative,
                )?;
                let (b, m1, m2, c) = local.dims4()?;
                let l = matrix_mi_loss(
                    objective.estimator,
                    &critic.scores(z, &local.reshape((b, m1 * m2, c))?)?,
                    &positive,
                    &negative,
                )?;
                (g, l)
            }
        })
    }

    /// The prior's loss on the code and, for the adversarial prior, its discriminator's loss.
    fn prior_losses(
        &self,
        mean: &Tensor,
        logvar: &Tensor,
        z: &Tensor,
        batch: &DimBatch,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let device = batch.x.device();
        Ok(match (self.config.objective.prior, &self.prior) {
            (PriorKind::Kl, _) => (kl_to_standard_normal(mean, logvar)?, None),
            (PriorKind::None, _) => (Tensor::zeros((), DType::F32, device)?, None),
            (PriorKind::Adversarial, Some(discriminator)) => {
                let Some(samples) = batch.prior_samples else {
                    candle_core::bail!("the adversarial prior needs prior samples in the batch");
                };
                let game = discriminator.game(z, samples)?;
                (game.encoder, Some(game.discriminator))
            }
            (PriorKind::Adversarial, None) => {
                candle_core::bail!("model built without its prior discriminator")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SeededInit;
    use crate::model::objective::derangement;
    use crate::ops::test_util::random;
    use candle_core::Device;
    use rand::SeedableRng;
    use std::sync::Arc;

    /// With occlusion the code (and so the prior term) comes from `x_code` alone and the
    /// local features from `x`: the prior equals that of a plain pass over `x_code`, the MI
    /// terms differ from both plain passes, and `x_code = x` is the plain pass.
    #[test]
    fn the_code_reads_x_code_and_the_features_read_x() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let config = ModelConfig {
            channels: vec![8, 12, 16],
            hidden: 20,
            dim: 6,
            disc_hidden: 10,
            ..ModelConfig::default()
        };
        let init = Arc::new(SeededInit::new(4, Default::default()));
        let model = Dim::new(&config, init.var_builder(&Device::Cpu))?;
        let (images, views) = (4, 2);
        let x = random(&[images * views, 32, 32, 3], &mut rng);
        let other = random(&[images * views, 32, 32, 3], &mut rng);
        let eps = random(&[images * views, config.dim], &mut rng);
        let perm = derangement(images, &mut rng);
        let losses = |x: &Tensor, x_code: Option<&Tensor>| -> Result<[f32; 3]> {
            let l = model.losses(&DimBatch {
                x,
                x_code,
                views,
                eps: &eps,
                perm: &perm,
                prior_samples: None,
            })?;
            Ok([
                l.global.to_scalar()?,
                l.local.to_scalar()?,
                l.prior.to_scalar()?,
            ])
        };
        let plain = losses(&x, None)?;
        let plain_other = losses(&other, None)?;
        let same = losses(&x, Some(&x))?;
        let mixed = losses(&x, Some(&other))?;
        for term in 0..3 {
            assert!(
                (plain[term] - same[term]).abs() < 1e-5,
                "{plain:?} {same:?}"
            );
        }
        assert!(
            (mixed[2] - plain_other[2]).abs() < 1e-5,
            "{mixed:?} {plain_other:?}"
        );
        assert!((mixed[2] - plain[2]).abs() > 1e-4, "{mixed:?} {plain:?}");
        for term in 0..2 {
            assert!(
                (mixed[term] - plain[term]).abs() > 1e-5,
                "{mixed:?} {plain:?}"
            );
            assert!((mixed[term] - plain_other[term]).abs() > 1e-5);
        }
        Ok(())
    }
}
