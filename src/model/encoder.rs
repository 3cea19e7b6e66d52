//! The encoder: strided 4×4 convolutions down to the local M×M feature map, each optionally
//! followed by 3×3 stride-1 convolutions at its resolution, one more convolution, global
//! average pooling, and two linear heads for the Gaussian posterior.
//! Activations are channels-last (NHWC); see `ops/conv.rs`. With `norm: batch` every
//! convolution is followed by batch normalisation (`ops/batchnorm.rs`) before its leaky ReLU;
//! [`Encoder::new`] builds the training form (batch statistics, running statistics updated on
//! every forward) and [`Encoder::for_inference`] folds the running statistics into the
//! convolutions.

use super::config::{Embedding, ModelConfig, Norm};
use super::layers::{apply_linear, BatchNorm, Conv, FOLDED_ACT};
use crate::ops::{mean_positions, Activation, Window};
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// A convolution and its leaky ReLU, with batch normalisation in between when the model has it.
struct Block {
    conv: Conv,
    norm: Option<BatchNorm>,
}

impl Block {
    fn new(
        in_channels: usize,
        out_channels: usize,
        window: Window,
        norm: Norm,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(match norm {
            Norm::None => Block {
                conv: Conv::new(in_channels, out_channels, window, vb)?,
                norm: None,
            },
            Norm::Batch => Block {
                conv: Conv::without_bias(in_channels, out_channels, window, vb.clone())?,
                norm: Some(BatchNorm::new(out_channels, vb.pp("bn"))?),
            },
        })
    }

    /// Training mode: batch statistics, running statistics updated.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.norm {
            None => self.conv.forward_act(x, Activation::LeakyRelu),
            Some(bn) => bn.forward_train(&self.conv.forward(x)?),
        }
    }

    /// Inference mode without folding (what the folded block must equal).
    #[cfg(test)]
    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        match &self.norm {
            None => self.conv.forward_act(x, Activation::LeakyRelu),
            Some(bn) => bn.forward_eval(&self.conv.forward(x)?),
        }
    }

    /// The normalisation's running statistics folded into the convolution.
    fn fold(self) -> Result<Self> {
        let Some(bn) = self.norm else {
            return Ok(self);
        };
        let (weight, bias) = bn.fold(self.conv.weight(), self.conv.bias())?;
        Ok(Block {
            conv: Conv::from_parts(weight, bias, self.conv.window()),
            norm: None,
        })
    }
}

// A folded block applies the leaky ReLU in the fused convolution.
const _: () = assert!(matches!(FOLDED_ACT, Activation::LeakyRelu));

pub struct Encoder {
    embedding: Embedding,
    downs: Vec<Block>,
    /// The stride-1 convolutions after each strided one.
    stages: Vec<Vec<Block>>,
    refine: Block,
    hidden: Linear,
    mean: Linear,
    logvar: Linear,
}

/// What one forward pass gives: the local feature map `(B, M, M, C)` and the posterior
/// `N(mean, exp(logvar))` over the `D`-dim code.
pub struct EncoderOutput {
    pub local: Tensor,
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl Encoder {
    /// The training form: with `norm: batch`, batch statistics in every forward, which also
    /// updates the running statistics. For embedding use [`Self::for_inference`].
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let down = Window {
            kernel: 4,
            stride: 2,
            padding: 1,
        };
        let same = Window {
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let mut downs = Vec::with_capacity(config.channels.len());
        let mut stages = Vec::with_capacity(config.channels.len());
        let mut in_channels = 3;
        for (i, &out_channels) in config.channels.iter().enumerate() {
            downs.push(Block::new(
                in_channels,
                out_channels,
                down,
                config.norm,
                vb.pp(format!("down{i}")),
            )?);
            let stage = (0..config.stage_convs)
                .map(|j| {
                    let vb = vb.pp(format!("stage{i}_{j}"));
                    Block::new(out_channels, out_channels, same, config.norm, vb)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(stage);
            in_channels = out_channels;
        }
        let refine = Block::new(in_channels, in_channels, same, config.norm, vb.pp("refine"))?;
        let hidden = candle_nn::linear(in_channels, config.hidden, vb.pp("hidden"))?;
        let mean = candle_nn::linear(config.hidden, config.dim, vb.pp("mean"))?;
        let logvar = candle_nn::linear(config.hidden, config.dim, vb.pp("logvar"))?;
        Ok(Encoder {
            embedding: config.embedding,
            downs,
            stages,
            refine,
            hidden,
            mean,
            logvar,
        })
    }

    /// The inference form: any batch normalisation uses its running statistics, folded into
    /// the convolutions (same speed as a model without normalisation).
    pub fn for_inference(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Self::new(config, vb)?.folded()
    }

    /// This encoder with every normalisation folded into its convolution.
    pub fn folded(self) -> Result<Self> {
        Ok(Encoder {
            downs: self
                .downs
                .into_iter()
                .map(Block::fold)
                .collect::<Result<_>>()?,
            stages: self
                .stages
                .into_iter()
                .map(|stage| stage.into_iter().map(Block::fold).collect())
                .collect::<Result<_>>()?,
            refine: self.refine.fold()?,
            ..self
        })
    }

    /// `x`: `(B, S, S, 3)` normalised images.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        let (local, pooled) = self.features(x)?;
        let hidden = self.hidden(&pooled)?;
        Ok(EncoderOutput {
            mean: apply_linear(&self.mean, &hidden, Activation::Identity)?,
            logvar: apply_linear(&self.logvar, &hidden, Activation::Identity)?,
            local,
        })
    }

    fn hidden(&self, pooled: &Tensor) -> Result<Tensor> {
        apply_linear(&self.hidden, pooled, Activation::LeakyRelu)
    }

    /// The local feature map `(B, M, M, C)` alone, without the global code's layers.
    pub fn local(&self, x: &Tensor) -> Result<Tensor> {
        self.strided_stages(x, |_| {})
    }

    /// Runs the strided stages (each with its stride-1 convolutions) and returns the local
    /// map, handing `each` every stage's output on the way.
    fn strided_stages(&self, x: &Tensor, mut each: impl FnMut(&Tensor)) -> Result<Tensor> {
        let mut h = x.clone();
        for (down, stage) in self.downs.iter().zip(&self.stages) {
            h = down.forward(&h)?;
            for block in stage {
                h = block.forward(&h)?;
            }
            each(&h);
        }
        Ok(h)
    }

    /// Every resolution's feature map `(B, H, W, C)`, finest first: the output of each strided
    /// stage (the last is the local map), then the refined local map that is pooled.
    pub fn stage_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut maps = Vec::with_capacity(self.downs.len() + 1);
        let local = self.strided_stages(x, |h| maps.push(h.clone()))?;
        maps.push(self.refine.forward(&local)?);
        Ok(maps)
    }

    /// The local map `(B, M, M, C)` and its refined global average `(B, C)`.
    fn features(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.local(x)?;
        let (b, m1, m2, c) = h.dims4()?;
        let pooled = mean_positions(&self.refine.forward(&h)?.reshape((b, m1 * m2, c))?)?;
        Ok((h, pooled))
    }

    /// The search embedding (unnormalised): the posterior mean `(B, D)` by default.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        match self.embedding {
            Embedding::Mean => self.forward(x).map(|out| out.mean),
            Embedding::Pooled => self.features(x).map(|(_, pooled)| pooled),
            Embedding::Hidden => self.hidden(&self.features(x)?.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SeededInit;
    use crate::ops::test_util::{max_diff, random};
    use candle_core::Device;
    use rand::SeedableRng;
    use std::sync::Arc;

    /// After a few training-mode forwards (which move the running statistics), the folded
    /// encoder embeds exactly as the unfolded one in inference mode, and both differ from the
    /// training mode's batch statistics.
    #[test]
    fn folded_encoder_equals_inference_mode_batch_norm() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let config = ModelConfig {
            norm: Norm::Batch,
            channels: vec![8, 12, 16],
            stage_convs: 1,
            hidden: 20,
            dim: 6,
            ..ModelConfig::default()
        };
        let init = Arc::new(SeededInit::new(2, Default::default()));
        let encoder = Encoder::new(&config, init.var_builder(&Device::Cpu))?;
        for _ in 0..3 {
            encoder.forward(&random(&[5, 32, 32, 3], &mut rng))?;
        }
        let x = random(&[3, 32, 32, 3], &mut rng);
        fn blocks(e: &Encoder) -> Vec<&Block> {
            let stages = e.downs.iter().zip(&e.stages);
            let mut all: Vec<&Block> = stages
                .flat_map(|(down, stage)| std::iter::once(down).chain(stage))
                .collect();
            all.push(&e.refine);
            all
        }
        let eval = |e: &Encoder| -> Result<Tensor> {
            let mut h = x.clone();
            for block in blocks(e) {
                h = block.forward_eval(&h)?;
            }
            Ok(h)
        };
        // Training mode first: it moves the running statistics once more.
        let mut training = x.clone();
        for block in blocks(&encoder) {
            training = block.forward(&training)?;
        }
        let unfolded = eval(&encoder)?;
        let folded = encoder.folded()?;
        assert!(blocks(&folded).iter().all(|b| b.norm.is_none()));
        assert_eq!(blocks(&folded).len(), 7);
        let out = eval(&folded)?;
        assert!(
            max_diff(&unfolded, &out) < 1e-4,
            "{}",
            max_diff(&unfolded, &out)
        );
        assert!(max_diff(&unfolded, &training) > 1e-3);
        Ok(())
    }
}
