//! The jobs every front end runs, with their options and results: indexing folders (and
//! forgetting them), querying, evaluating retrieval on a labelled folder, and contact sheets.
//! The command line and the server call these, never the layers below for the same job.
//!
//! - `indexing`: the index job, its commit policy and folder bookkeeping, `forget`;
//! - `jobs`: filling a PostgreSQL store through its jobs table (`index --store`, `worker`);
//! - `query`: the index's model, and queries by image;
//! - `eval`: P@k and kNN accuracy, of a model or of the raw-pixel floor;
//! - `grid`: contact sheets of queries and their neighbours;
//! - `dups`: near-duplicate groups, and moving or hard-linking the copies;
//! - `thumbnails`: thumbnails of indexed images, cached in a folder of bounded size;
//! - `writer`: the write side of a store, one interface for a local index and PostgreSQL;
//! - `limits`: the bounds of search and duplicate-scan numbers, one check for every front end.

pub mod dups;
pub mod eval;
pub mod grid;
pub mod indexing;
pub mod jobs;
pub mod limits;
pub mod query;
pub mod thumbnails;
pub mod writer;

pub use eval::{evaluate_model, evaluate_pixels, ClassScore, EvalOptions, EvalReport};
pub use grid::{contact_sheet, query_rows, random_rows, Row, DEFAULT_TILE};
pub use indexing::{
    forget, index_folders, index_meta, CommitPolicy, ForgetSummary, IndexOptions, IndexSummary,
    DEFAULT_BATCH, DEFAULT_MODEL_NAME,
};
pub use query::{model_for_store, query, QueryAnswer, QUERY_BATCH};
pub use writer::{writer, StoreWriter};
