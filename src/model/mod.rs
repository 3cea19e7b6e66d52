//! The DIM model: a conv encoder with a Gaussian posterior head, the global and local
//! mutual-information discriminators, the objectives, and the config + safetensors files that
//! store them. The arithmetic runs on the kernels of [`crate::ops`]; no I/O happens here but
//! in `io` (model folders and the bundled default).
//!
//! - `config`: the JSON config (architecture, preprocessing, objective, training record);
//! - `layers`: convolution, batch normalisation and dense layers with their parameters;
//! - `encoder`, `critic`, `discriminator`, `prior`, `dim`: the networks and the DIM objective;
//! - `objective`: the mutual-information estimators and the KL prior term;
//! - `projection`: the fitted PCA projection of the search embedding;
//! - `init`: seeded initialisation of every variable;
//! - `io`: [`Model`], loading and saving model folders.

mod config;
mod critic;
mod dim;
mod discriminator;
mod encoder;
mod init;
mod io;
mod layers;
pub mod objective;
mod prior;
mod projection;

pub use config::{
    Critic, Embedding, Estimator, ModelConfig, Norm, Objective, PriorKind, TrainingRecord,
    FORMAT_VERSION,
};
pub use dim::{Dim, DimBatch, DimLosses};
pub use discriminator::{GlobalDiscriminator, LocalDiscriminator};
pub use encoder::{Encoder, EncoderOutput};
pub use init::SeededInit;
pub use io::{
    default_config, load_parameters, model_files, safetensors_bytes, save_model, Model,
    ModelSource, CONFIG_FILE, WEIGHTS_FILE,
};
pub use layers::{is_buffer, BatchNorm, Conv};
pub use prior::{PriorDiscriminator, PriorGame, PRIOR_PREFIX};
pub use projection::{
    features_tensor, normalise_rows, Projection, ProjectionConfig, PROJECTION_POWER,
    PROJECTION_PREFIX,
};
