//! imgsearch: image-similarity search on Deep InfoMax embeddings.
//!
//! The layers, in the order data flows through them:
//! - [`data`]: scan folders, decode and preprocess images, stream batches.
//! - [`model`]: the DIM encoder, its discriminators and objectives, config and weights.
//! - [`train`]: the training loop, optimiser and checkpoints.
//! - [`index`]: the on-disk index (manifest, mapped vectors, graph, atomic commits).
//! - [`store`]: the one interface searches read through: the local index, or PostgreSQL with
//!   pgvector for collections beyond one machine.
//! - [`pipeline`]: the jobs every front end runs (index, forget, query, eval, grid).
//! - [`json`]: the JSON Lines records those jobs are reported in (docs/JSON.md).
//!
//! Beside them: [`ops`], the CPU kernels the model runs on; [`fsx`], the one place that
//! writes files atomically and maps them; [`progress`], bars and the events of long jobs;
//! [`device`], the CPU or CUDA device; [`error`], the error type. The command line
//! (`main.rs` and `src/cli/`) is a thin front end over [`pipeline`] and [`train`].

pub mod data;
pub mod device;
pub mod error;
pub mod fsx;
pub mod index;
pub mod json;
pub mod json_path;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod store;
pub mod train;

pub use error::{Error, Result};
