//! The model's layers: a convolution and a batch normalisation with their parameters under
//! a `VarBuilder`, and `candle_nn::Linear` through the fused dense op. The arithmetic is in
//! [`crate::ops`]; here are the weights, their initialisation and the inference folding.

use crate::ops::{
    batch_norm_act, conv, dense, leaky_relu, leaky_relu_reference, Activation, Window, BN_EPS,
    BN_MOMENTUM,
};
use candle_core::{Result, Tensor, Var};
use candle_nn::{Linear, VarBuilder};

/// A 2-D convolution over NHWC tensors. The weight is stored as `(C_out, K·K·C_in)` with the
/// patch order (ky, kx, c), the order of [`crate::ops::im2col_reference`].
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    window: Window,
}

impl Conv {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        window: Window,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (weight, fan_in) = Self::init_weight(in_channels, out_channels, window, &vb)?;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let bias = vb.get_with_hints(
            out_channels,
            "bias",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Conv {
            weight,
            bias,
            window,
        })
    }

    /// The Kaiming-initialised weight `(O, K·K·C)` under `vb`, and its fan-in.
    fn init_weight(
        in_channels: usize,
        out_channels: usize,
        window: Window,
        vb: &VarBuilder,
    ) -> Result<(Tensor, usize)> {
        let fan_in = window.kernel * window.kernel * in_channels;
        let weight = vb.get_with_hints(
            (out_channels, fan_in),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok((weight, fan_in))
    }

    /// A convolution whose output is normalised next: the weight under `vb`, a constant
    /// zero bias (a learned one would be cancelled by the normalisation).
    pub fn without_bias(
        in_channels: usize,
        out_channels: usize,
        window: Window,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (weight, _) = Self::init_weight(in_channels, out_channels, window, &vb)?;
        let bias = Tensor::zeros(out_channels, weight.dtype(), weight.device())?;
        Ok(Conv {
            weight,
            bias,
            window,
        })
    }

    /// A convolution from given weight `(C_out, K·K·C_in)` and bias `(C_out)`.
    pub fn from_parts(weight: Tensor, bias: Tensor, window: Window) -> Self {
        Conv {
            weight,
            bias,
            window,
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// `x`: `(B, H, W, C_in)` → `(B, H', W', C_out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, Activation::Identity)
    }

    /// The convolution followed by `act`, as one op ([`conv`]).
    pub fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        conv(x, &self.weight, &self.bias, self.window, act)
    }
}

/// Whether a parameter name is a running statistic: updated by the forward pass, saved with
/// the model, never given to the optimiser.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Learned per-channel scale and shift, and the running statistics.
pub struct BatchNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    /// Parameters `weight` (γ, ones), `bias` (β, zeros), `running_mean` (zeros) and
    /// `running_var` (ones) under `vb`.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let gamma = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
        let beta = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
        let running_mean = Var::from_tensor(&vb.get_with_hints(
            channels,
            "running_mean",
            candle_nn::Init::Const(0.0),
        )?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(
            channels,
            "running_var",
            candle_nn::Init::Const(1.0),
        )?)?;
        Ok(BatchNorm {
            gamma,
            beta,
            running_mean,
            running_var,
        })
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// Training mode: `leaky_relu(γ·(x − μ_B)/σ_B + β)` for `x` `(…, C)` with the batch's
    /// statistics over every axis but the last; updates the running statistics.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let (y, mean, var) = batch_norm_act(x, &self.gamma, &self.beta)?;
        let rows = x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1);
        let unbiased = (var * (rows as f64 / (rows.max(2) - 1) as f64))?;
        let m = BN_MOMENTUM;
        let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean.detach())?;
        self.running_var.set(&new_var.detach())?;
        Ok(y)
    }

    /// Inference mode with the running statistics, from candle's ops (what [`Self::fold`]
    /// must equal).
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, shift) = self.scale_shift()?;
        leaky_relu_reference(&x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
    }

    /// `(γ/√(var + ε), β − mean·γ/√(var + ε))` from the running statistics.
    fn scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = (&self.gamma / (self.running_var() + BN_EPS)?.sqrt()?)?;
        let shift = (&self.beta - (self.running_mean() * &scale)?)?;
        Ok((scale, shift))
    }

    /// The weight `(O, K)` and bias `(O)` of a layer `x·Wᵀ + b` followed by this
    /// normalisation in inference mode, as one affine layer.
    pub fn fold(&self, weight: &Tensor, bias: &Tensor) -> Result<(Tensor, Tensor)> {
        let (scale, shift) = self.scale_shift()?;
        let weight = weight.broadcast_mul(&scale.unsqueeze(1)?)?;
        let bias = ((bias * &scale)? + shift)?;
        Ok((weight.detach(), bias.detach()))
    }
}

/// The activation after a folded normalisation.
pub const FOLDED_ACT: Activation = Activation::LeakyRelu;

/// A `candle_nn::Linear` applied through [`dense`] (or through candle's own forward when it
/// has no bias), followed by `act`.
pub fn apply_linear(layer: &Linear, x: &Tensor, act: Activation) -> Result<Tensor> {
    match layer.bias() {
        Some(bias) => dense(x, layer.weight(), bias, act),
        None => {
            let y = candle_core::Module::forward(layer, x)?;
            match act {
                Activation::Identity => Ok(y),
                Activation::LeakyRelu => leaky_relu(&y),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SeededInit;
    use crate::ops::test_util::{max_diff, random};
    use candle_core::{DType, Device};
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    /// The running statistics move by momentum 0.1 towards the batch mean and the unbiased
    /// batch variance; the model's output does not depend on them in training mode.
    #[test]
    fn running_statistics_follow_the_batches() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let init = Arc::new(SeededInit::new(0, Default::default()));
        let bn = BatchNorm::new(4, init.var_builder(&Device::Cpu).pp("bn"))?;
        let x = (random(&[6, 2, 3, 4], &mut rng) * 2.0)?;
        bn.forward_train(&x)?;
        let rows = x.reshape((36, 4))?;
        let mean = rows.mean(0)?;
        let var = rows.broadcast_sub(&mean)?.sqr()?.sum(0)? / 35.0;
        let expected_mean = (mean * 0.1)?;
        let expected_var = ((var? * 0.1)? + 0.9)?;
        assert!(max_diff(bn.running_mean(), &expected_mean) < 1e-6);
        assert!(max_diff(bn.running_var(), &expected_var) < 1e-5);
        // Running statistics are buffers: named so that the optimiser skips them.
        let names: Vec<String> = init.vars().into_iter().map(|(n, _)| n).collect();
        let buffers: Vec<&String> = names.iter().filter(|n| is_buffer(n)).collect();
        assert_eq!(buffers, ["bn.running_mean", "bn.running_var"]);
        Ok(())
    }

    /// A convolution with its normalisation folded in equals the convolution followed by the
    /// inference-mode normalisation (running statistics), on odd shapes.
    #[test]
    fn folded_inference_equals_inference_mode_batch_norm() -> Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        for (b, size, cin, cout, window) in [
            (
                2,
                9,
                3,
                5,
                Window {
                    kernel: 4,
                    stride: 2,
                    padding: 1,
                },
            ),
            (
                3,
                5,
                7,
                6,
                Window {
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                },
            ),
        ] {
            let init = Arc::new(SeededInit::new(1, Default::default()));
            let bn = BatchNorm::new(cout, init.var_builder(&Device::Cpu).pp("bn"))?;
            // Non-trivial γ, β and running statistics.
            for (_, var) in init.vars() {
                let values: Vec<f32> = (0..cout).map(|_| rng.random_range(0.2..2.0)).collect();
                var.set(&Tensor::new(values, &Device::Cpu)?)?;
            }
            let row = window.kernel * window.kernel * cin;
            let weight = random(&[cout, row], &mut rng);
            let bias = Tensor::zeros(cout, DType::F32, &Device::Cpu)?;
            let x = random(&[b, size, size, cin], &mut rng);
            let unfolded =
                bn.forward_eval(&conv(&x, &weight, &bias, window, Activation::Identity)?)?;
            let (w2, b2) = bn.fold(&weight, &bias)?;
            let folded = conv(&x, &w2, &b2, window, FOLDED_ACT)?;
            assert!(
                max_diff(&unfolded, &folded) < 1e-4,
                "{}",
                max_diff(&unfolded, &folded)
            );
        }
        Ok(())
    }
}
