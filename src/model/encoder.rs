//! The encoder: strided 4×4 convolutions down to the local M×M feature map, one more
//! convolution, global average pooling, and two linear heads for the Gaussian posterior.

use super::{leaky_relu, ModelConfig};
use candle_core::{Module, Result, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};

pub struct Encoder {
    downs: Vec<Conv2d>,
    refine: Conv2d,
    hidden: Linear,
    mean: Linear,
    logvar: Linear,
}

/// What one forward pass gives: the local feature map `(B, C, M, M)` and the posterior
/// `N(mean, exp(logvar))` over the `D`-dim code.
pub struct EncoderOutput {
    pub local: Tensor,
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl Encoder {
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let stride2 = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let mut downs = Vec::with_capacity(config.channels.len());
        let mut in_channels = 3;
        for (i, &out_channels) in config.channels.iter().enumerate() {
            downs.push(conv2d(
                in_channels,
                out_channels,
                4,
                stride2,
                vb.pp(format!("down{i}")),
            )?);
            in_channels = out_channels;
        }
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let refine = conv2d(in_channels, in_channels, 3, same, vb.pp("refine"))?;
        let hidden = linear(in_channels, config.hidden, vb.pp("hidden"))?;
        let mean = linear(config.hidden, config.dim, vb.pp("mean"))?;
        let logvar = linear(config.hidden, config.dim, vb.pp("logvar"))?;
        Ok(Encoder {
            downs,
            refine,
            hidden,
            mean,
            logvar,
        })
    }

    /// `x`: `(B, 3, S, S)` normalised images.
    pub fn forward(&self, x: &Tensor) -> Result<EncoderOutput> {
        let mut h = x.clone();
        for conv in &self.downs {
            h = leaky_relu(&conv.forward(&h)?)?;
        }
        let local = h;
        let pooled = leaky_relu(&self.refine.forward(&local)?)?
            .mean(D::Minus1)?
            .mean(D::Minus1)?;
        let hidden = leaky_relu(&self.hidden.forward(&pooled)?)?;
        Ok(EncoderOutput {
            mean: self.mean.forward(&hidden)?,
            logvar: self.logvar.forward(&hidden)?,
            local,
        })
    }

    /// The search embedding: the posterior mean, `(B, D)`.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x).map(|out| out.mean)
    }
}
