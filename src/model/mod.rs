//! The DIM model: a conv encoder with a Gaussian posterior head, the global and local
//! mutual-information discriminators, the objectives, and the config + safetensors that store them.

mod config;
pub mod conv;
mod critic;
mod dim;
mod discriminator;
mod encoder;
mod init;
mod io;
pub mod objective;
mod prior;

pub use config::{
    Critic, Embedding, Estimator, ModelConfig, Objective, PriorKind, TrainingRecord, FORMAT_VERSION,
};
pub use dim::{Dim, DimBatch, DimLosses};
pub use discriminator::{GlobalDiscriminator, LocalDiscriminator};
pub use encoder::{Encoder, EncoderOutput};
pub use init::SeededInit;
pub use io::{model_files, safetensors_bytes, save_model, write_atomic, Model, ModelSource};
pub use prior::{PriorDiscriminator, PriorGame, PRIOR_PREFIX};

/// Leaky ReLU with slope 0.2, written as a maximum: candle's own op was twice as slow here.
pub(crate) fn leaky_relu(x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    x.maximum(&(x * 0.2)?)
}
