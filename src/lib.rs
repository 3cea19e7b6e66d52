//! imgsearch: image-similarity search on Deep InfoMax embeddings.
//!
//! The layers, in the order data flows through them:
//! - [`data`]: scan folders, decode and preprocess images, stream batches.
//! - [`model`]: the DIM encoder, its discriminators and objectives, config and weights.
//! - [`train`]: the training loop, optimiser and checkpoints.
//! - [`index`]: the on-disk index engine, its own crate (`crates/index`): manifest, mapped
//!   vectors, graph, atomic commits.
//! - [`store`]: the one interface searches read through: the local index, or PostgreSQL with
//!   pgvector for collections beyond one machine.
//! - [`pipeline`]: the jobs every front end runs (index, forget, query, eval, grid).
//! - [`json`]: the JSON Lines records those jobs are reported in (docs/JSON.md).
//!
//! Beside them: [`ops`], the CPU kernels the model runs on; [`fsx`], the one place that
//! writes files atomically and maps them; [`progress`], bars and the events of long jobs;
//! [`device`], the CPU or CUDA device; [`error`], the error type. The command line
//! (`main.rs` and `src/cli/`) is a thin front end over [`pipeline`] and [`train`].
//!
//! Indexing a folder and asking for the neighbours of one of its images, as `imgsearch index`
//! and `imgsearch query` do (`examples/library.rs` is the same as a program):
//!
//! ```
//! use imgsearch::{index::SearchOptions, model::{Model, ModelSource}, pipeline, store};
//! # fn main() -> imgsearch::Result<()> {
//! let photos = std::path::PathBuf::from("tests/fixtures/test");
//! let index = std::env::temp_dir().join(format!("imgsearch-doc-{}", std::process::id()));
//!
//! let model = Model::load(&ModelSource::Default, &candle_core::Device::Cpu)?;
//! let options = pipeline::IndexOptions::new(index.clone(), vec![photos.clone()]);
//! let summary = pipeline::index_folders(&model, &options, &mut |_event| {})?;
//! assert_eq!(summary.added, 200);
//!
//! let store = store::open(&store::Location::Local(index.clone()))?;
//! let cat = photos.join("cat/0000.jpg");
//! let search = SearchOptions { k: 3, ..SearchOptions::default() };
//! let answers = pipeline::query(&model, store.as_ref(), &[cat.clone()], &search)?;
//! let hits = answers[0].result.as_ref().expect("a readable image");
//! assert!(hits[0].path.ends_with("cat/0000.jpg")); // an image finds itself first
//! # drop(store);
//! # std::fs::remove_dir_all(&index).ok();
//! # Ok(())
//! # }
//! ```
//!
//! A module's docs name the private files it is made of, as links: they resolve with
//! `cargo doc --document-private-items`, the documentation a maintainer reads.

#![allow(rustdoc::private_intra_doc_links)]

pub mod data;
pub mod device;
pub mod error;
/// The on-disk index engine (the `imgsearch-index` crate, `crates/index`).
pub use imgsearch_index as index;
/// Atomic file replacement and read-only maps: the one place that writes files whole, kept in
/// the index engine (which needs it first) and used from here by every other layer.
pub use imgsearch_index::fsx;
pub mod json;
pub mod json_path;
pub mod model;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod store;
pub mod train;

pub use error::{Error, Result};
