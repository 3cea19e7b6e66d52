//! The encoder: strided 4×4 convolutions down to the local M×M feature map, each optionally
//! followed by 3×3 stride-1 convolutions at its resolution, one more convolution, global
//! average pooling, and two linear heads for the Gaussian posterior.
//! Activations are channels-last (NHWC); see [`super::conv`].

use super::conv::{Conv, Window};
use super::dense::{linear, Activation};
use super::{Embedding, ModelConfig};
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

pub struct Encoder {
    embedding: Embedding,
    downs: Vec<Conv>,
    /// The stride-1 convolutions after each strided one.
    stages: Vec<Vec<Conv>>,
    refine: Conv,
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
            downs.push(Conv::new(
                in_channels,
                out_channels,
                down,
                vb.pp(format!("down{i}")),
            )?);
            let stage = (0..config.stage_convs)
                .map(|j| {
                    let vb = vb.pp(format!("stage{i}_{j}"));
                    Conv::new(out_channels, out_channels, same, vb)
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(stage);
            in_channels = out_channels;
        }
        let refine = Conv::new(in_channels, in_channels, same, vb.pp("refine"))?;
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

    /// `x`: `(B, S, S, 3)` normalised images.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        let (local, pooled) = self.features(x)?;
        let hidden = self.hidden(&pooled)?;
        Ok(EncoderOutput {
            mean: linear(&self.mean, &hidden, Activation::Identity)?,
            logvar: linear(&self.logvar, &hidden, Activation::Identity)?,
            local,
        })
    }

    fn hidden(&self, pooled: &Tensor) -> Result<Tensor> {
        linear(&self.hidden, pooled, Activation::LeakyRelu)
    }

    /// The local map `(B, M, M, C)` and its refined global average `(B, C)`.
    fn features(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for (down, stage) in self.downs.iter().zip(&self.stages) {
            h = down.forward_act(&h, Activation::LeakyRelu)?;
            for conv in stage {
                h = conv.forward_act(&h, Activation::LeakyRelu)?;
            }
        }
        let (b, m1, m2, c) = h.dims4()?;
        let pooled = self
            .refine
            .forward_act(&h, Activation::LeakyRelu)?
            .reshape((b, m1 * m2, c))?
            .mean(1)?;
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
