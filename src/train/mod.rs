//! Training: decode the folder once into preprocessed pixels (kept in a memory-mapped pixel
//! cache, so later runs and `--resume` decode nothing), then run the DIM objective with
//! Adam for some epochs, writing an atomic checkpoint (weights + optimiser state) and the
//! exported model at the end of each epoch so that `--resume` continues exactly.
//!
//! - `settings`: the options of a run and what they resolve to on `--resume`;
//! - `run`: the loop ([`train`]);
//! - `adam`: the optimiser;
//! - `checkpoint`: the files `--resume` reads;
//! - `probe`: evidence without labels of whether a run helped.

mod adam;
pub mod checkpoint;
pub mod probe;
mod run;
mod settings;

pub use adam::Adam;
pub use checkpoint::{CheckpointState, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
pub use probe::ProbeScore;
pub use run::{resolve_start, start_model, train, Losses, ProbeReport, TrainReport};
pub use settings::{
    LrSchedule, PixelCache, Start, TrainOptions, DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR,
    DEFAULT_MIN_STEPS, DEFAULT_SCHEDULE, DEFAULT_SEED,
};
