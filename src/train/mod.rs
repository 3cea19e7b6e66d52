//! Training: decode the folder once into preprocessed pixels (kept in a memory-mapped pixel
//! cache, so later runs and `--resume` decode nothing), start the encoder from the bundled
//! model, another model or scratch, then run the DIM objective with Adam for some epochs or
//! a time budget, writing an atomic checkpoint (weights + optimiser state) at the end of each
//! epoch so that `--resume` continues exactly, and exporting the model the label-free probe
//! scores best.
//!
//! - `settings`: the options of a run and what they resolve to on `--resume`;
//! - `run`: a run's report, where it starts, which epoch `--out` keeps;
//! - `trainer`: the run ([`train`]) as it goes: set up, steps, end of each epoch, the finish;
//! - `adam`: the optimiser;
//! - `checkpoint`: the files `--resume` reads;
//! - `probe`: evidence without labels of whether a run helped;
//! - `projection`: the search projection fitted on the run's images at its end.

mod adam;
pub mod checkpoint;
pub mod probe;
mod projection;
mod run;
mod settings;
mod trainer;

pub use adam::Adam;
pub use checkpoint::{CheckpointState, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
pub use probe::ProbeScore;
pub use projection::min_fit_images;
pub use run::{resolve_start, start_model, Losses, ProbeReport, ProjectionReport, TrainReport};
pub use settings::{
    Keep, LrSchedule, PixelCache, Start, TrainOptions, DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_LR,
    DEFAULT_MIN_STEPS, DEFAULT_SCHEDULE, DEFAULT_SEED,
};
pub use trainer::train;
