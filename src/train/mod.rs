//! Training: decode the folder once into preprocessed pixels (kept in a memory-mapped pixel
//! cache, so later runs and `--resume` decode nothing), then run the DIM objective with
//! Adam for some epochs, writing an atomic checkpoint (weights + optimiser state) and the
//! exported model at the end of each epoch so that `--resume` continues exactly.
//!
//! - `settings`: the options of a run and what they resolve to on `--resume`;
//! - `run`: the loop ([`train`]);
//! - `adam`: the optimiser;
//! - `checkpoint`: the files `--resume` reads.

mod adam;
pub mod checkpoint;
mod run;
mod settings;

pub use adam::Adam;
pub use checkpoint::{CheckpointState, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
pub use run::{train, Losses, TrainReport};
pub use settings::{
    LrSchedule, PixelCache, TrainOptions, DEFAULT_BATCH, DEFAULT_LR, DEFAULT_SCHEDULE, DEFAULT_SEED,
};
