//! imgsearch: image-similarity search on Deep InfoMax embeddings.
//!
//! The layers, in the order data flows through them:
//! - [`data`]: scan folders, decode and preprocess images, stream batches.
//! - [`model`]: the DIM encoder, its discriminators and objectives, config and weights.
//! - [`train`]: the training loop, optimiser and checkpoints.
//! - [`index`]: the on-disk index (manifest, mapped vectors, graph, atomic commits).
//! - [`search`]: embedding images with a model and ranking neighbours.
//!
//! `main.rs` is only the command line on top of these.

pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod grid;
pub mod index;
pub mod model;
pub mod progress;
pub mod search;
pub mod train;

pub use error::{Error, Result};
