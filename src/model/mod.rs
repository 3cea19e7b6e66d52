//! The DIM model: a conv encoder with a Gaussian posterior head, the global and local
//! mutual-information discriminators, the objectives, and the config + safetensors that store them.

pub mod batchnorm;
mod config;
pub mod conv;
mod critic;
pub mod dense;
mod dim;
mod discriminator;
mod encoder;
mod init;
mod io;
mod matmul;
pub mod objective;
mod prior;
mod winograd;

pub use config::{
    Critic, Embedding, Estimator, ModelConfig, Norm, Objective, PriorKind, TrainingRecord,
    FORMAT_VERSION,
};
pub use dim::{Dim, DimBatch, DimLosses};
pub use discriminator::{GlobalDiscriminator, LocalDiscriminator};
pub use encoder::{Encoder, EncoderOutput};
pub use init::SeededInit;
pub use io::{model_files, safetensors_bytes, save_model, write_atomic, Model, ModelSource};
pub use prior::{PriorDiscriminator, PriorGame, PRIOR_PREFIX};

/// Leaky ReLU with slope 0.2 ([`dense::leaky_relu`]).
pub(crate) fn leaky_relu(x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    dense::leaky_relu(x)
}

/// Helpers shared by the custom ops' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor, Var};
    use rand::Rng;

    /// Uniform values in [-1, 1) of the given shape, on the CPU.
    pub fn random(shape: &[usize], rng: &mut impl Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    /// Largest absolute difference of two tensors of the same shape.
    pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    /// The gradients of `vars` through `ours` and through `theirs` (two computations of the same
    /// output from them), each output weighted by the same random probe: `(ours, theirs)` a var.
    pub fn probe_gradients(
        ours: &Tensor,
        theirs: &Tensor,
        vars: &[&Var],
        rng: &mut impl Rng,
    ) -> Vec<(Tensor, Tensor)> {
        let probe = random(ours.dims(), rng);
        let grads = |out: &Tensor| {
            (out * &probe)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("backward")
        };
        let (g1, g2) = (grads(ours), grads(theirs));
        vars.iter()
            .map(|v| {
                let get = |g: &candle_core::backprop::GradStore| {
                    g.get(v.as_tensor()).expect("gradient").clone()
                };
                (get(&g1), get(&g2))
            })
            .collect()
    }
}
