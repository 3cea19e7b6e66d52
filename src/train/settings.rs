//! What a training run is asked to do ([`TrainOptions`]) and what it resolves to: the
//! defaults of the recipe, where its weights start ([`Start`]), and on `--resume` the run's
//! own batch, views, augmentation and (unless given again) learning rate, schedule and seed
//! ([`RunSettings`]).

use crate::data::{Augment, CACHE_FILE};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelSource, TrainingRecord};
use crate::progress::Verbosity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub roots: Vec<PathBuf>,
    pub out: PathBuf,
    /// Where the encoder's weights start. `None`: the bundled model when `config` has its
    /// architecture, else from scratch.
    pub start: Option<Start>,
    /// Passes over the data. `None`: [`DEFAULT_EPOCHS`] but at least [`DEFAULT_MIN_STEPS`]
    /// steps, or without bound when `minutes` is given.
    pub epochs: Option<usize>,
    /// A wall-time budget for this invocation: training stops at the end of the step that
    /// crosses it, and the learning-rate schedule runs over the budget rather than the steps.
    pub minutes: Option<f64>,
    /// Images per step. `None`: [`DEFAULT_BATCH`], or on `resume` the run's own (a resumed
    /// run cannot change it: its step count and schedule are counted in batches).
    pub batch: Option<usize>,
    /// Peak learning rate. `None`: [`DEFAULT_LR`], or on `resume` the run's own.
    pub lr: Option<f64>,
    /// `None`: [`DEFAULT_SCHEDULE`], or on `resume` the run's own.
    pub schedule: Option<LrSchedule>,
    /// Seeds the initial weights and each epoch's data order and augmentations. `None`:
    /// [`DEFAULT_SEED`], or on `resume` the run's own, so that the resumed epochs draw what an
    /// uninterrupted run would have.
    pub seed: Option<u64>,
    pub resume: bool,
    /// Which epoch's model `out` holds at the end.
    pub keep: Keep,
    /// Use at most this many images, evenly spaced through the sorted paths.
    pub limit: Option<usize>,
    pub augment: Augment,
    /// Views of each image per step: 1, or 2 to pair the code of one augmented view with
    /// the features of another.
    pub views: usize,
    /// Architecture and objective; ignored on `--resume`, which keeps the checkpoint's. The
    /// search settings (`embedding`, `projection`) are this invocation's in either case.
    pub config: ModelConfig,
    /// Where decoded pixels are kept between runs.
    pub cache: PixelCache,
    pub verbosity: Verbosity,
}

/// Where a run keeps its pixel cache ([`CACHE_FILE`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PixelCache {
    /// In the output folder, beside the model.
    #[default]
    InOut,
    /// In this folder (shared by runs with different outputs).
    In(PathBuf),
    /// Nowhere: decode into memory only.
    Off,
}

impl TrainOptions {
    /// The recipe's defaults for training on `roots` into `out`.
    pub fn new(roots: Vec<PathBuf>, out: PathBuf) -> Self {
        TrainOptions {
            roots,
            out,
            start: None,
            epochs: None,
            minutes: None,
            batch: None,
            lr: None,
            schedule: None,
            seed: None,
            resume: false,
            keep: Keep::default(),
            limit: None,
            augment: Augment::standard(),
            views: 2,
            config: ModelConfig::default(),
            cache: PixelCache::default(),
            verbosity: Verbosity::default(),
        }
    }

    /// The pixel cache file, if any.
    /// The number of epochs to stop after, if any, for epochs of `steps_per_epoch` steps.
    pub fn epoch_limit(&self, steps_per_epoch: usize) -> Option<usize> {
        match (self.epochs, self.minutes) {
            (Some(epochs), _) => Some(epochs),
            (None, Some(_)) => None,
            (None, None) => {
                Some(DEFAULT_EPOCHS.max(DEFAULT_MIN_STEPS.div_ceil(steps_per_epoch.max(1))))
            }
        }
    }

    pub fn cache_file(&self) -> Option<PathBuf> {
        match &self.cache {
            PixelCache::InOut => Some(self.out.join(CACHE_FILE)),
            PixelCache::In(dir) => Some(dir.join(CACHE_FILE)),
            PixelCache::Off => None,
        }
    }
}

/// Where a run's encoder weights start (the critics always start fresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Seeded random weights.
    Scratch,
    /// A trained model's encoder: the bundled default or a folder `train` wrote. Its
    /// architecture and normalisation statistics are kept; the input size may change (the
    /// encoder is convolutional and pools globally).
    Model(ModelSource),
}

impl Start {
    /// The name training records keep: "scratch", "default" or the model's path.
    pub fn name(&self) -> String {
        match self {
            Start::Scratch => "scratch".into(),
            Start::Model(ModelSource::Default) => "default".into(),
            Start::Model(ModelSource::Path(path)) => path.display().to_string(),
        }
    }
}

pub const DEFAULT_EPOCHS: usize = 10;
/// A run given neither `epochs` nor `minutes` takes at least this many steps: on a folder of
/// 1,000 photos ten epochs are 150 steps, and what fine-tuning gains comes with steps
/// (docs/RESULTS.md, "Your photos").
pub const DEFAULT_MIN_STEPS: usize = 3000;
pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_LR: f64 = 1e-3;
pub const DEFAULT_SCHEDULE: LrSchedule = LrSchedule::Cosine;
pub const DEFAULT_SEED: u64 = 0;

/// How the run trains: the options given, the rest from the run being resumed or the
/// defaults. A resumed run always keeps its batch, views and augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RunSettings {
    pub batch: usize,
    pub lr: f64,
    pub schedule: LrSchedule,
    pub seed: u64,
    pub views: usize,
    pub augment: Augment,
}

impl RunSettings {
    pub(crate) fn resolve(opts: &TrainOptions, resumed: Option<&TrainingRecord>) -> Result<Self> {
        let Some(record) = resumed else {
            return Ok(RunSettings {
                batch: opts.batch.unwrap_or(DEFAULT_BATCH),
                lr: opts.lr.unwrap_or(DEFAULT_LR),
                schedule: opts.schedule.unwrap_or(DEFAULT_SCHEDULE),
                seed: opts.seed.unwrap_or(DEFAULT_SEED),
                views: opts.views.max(1),
                augment: opts.augment,
            });
        };
        if let Some(batch) = opts.batch.filter(|&b| b != record.batch) {
            return Err(Error::Usage(format!(
                "--batch {batch}: the run in {} trains with batch {}, and --resume cannot change it",
                opts.out.display(),
                record.batch
            )));
        }
        Ok(RunSettings {
            batch: record.batch,
            lr: opts.lr.unwrap_or(record.lr),
            schedule: opts
                .schedule
                .unwrap_or_else(|| LrSchedule::from_record(&record.schedule)),
            seed: opts.seed.unwrap_or(record.seed),
            views: record.views,
            augment: record.augment,
        })
    }
}

/// Which epoch's model a run leaves in its output folder (the checkpoint always holds the
/// last epoch, for `--resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// The epoch the label-free probe scored best: on a user's folder it rises while
    /// training helps, so a budget that overshoots costs nothing.
    #[default]
    BestProbe,
    /// The last epoch: on a large mixed folder the probe hardly moves and would keep an
    /// early epoch of a long run.
    Last,
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant,
    /// Half a cosine from `--lr` down to 0 over all steps of all epochs.
    Cosine,
}

impl LrSchedule {
    /// The schedule a model's training record names (models from before schedules were
    /// recorded trained at a constant rate).
    pub fn from_record(name: &str) -> Self {
        if name == LrSchedule::Cosine.name() {
            LrSchedule::Cosine
        } else {
            LrSchedule::Constant
        }
    }

    /// The name training records use, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Cosine => "cosine",
        }
    }

    /// The learning rate at `step` of `total` steps.
    pub fn at(self, lr: f64, step: usize, total: usize) -> f64 {
        self.at_progress(lr, step as f64 / total.max(1) as f64)
    }

    /// The learning rate `progress` (0 to 1) through the run.
    pub fn at_progress(self, lr: f64, progress: f64) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let progress = progress.clamp(0.0, 1.0);
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TrainOptions, DEFAULT_EPOCHS, DEFAULT_MIN_STEPS};
    use crate::model::{ModelConfig, Norm};
    use std::path::PathBuf;

    #[test]
    fn a_run_without_limits_takes_enough_steps() {
        let mut opts = TrainOptions::new(Vec::new(), PathBuf::new());
        // CIFAR-10's 781 steps an epoch: ten epochs are plenty.
        assert_eq!(opts.epoch_limit(781), Some(DEFAULT_EPOCHS));
        // 1,000 photos in batches of 64: 15 steps an epoch, 200 epochs for 3,000 steps.
        assert_eq!(opts.epoch_limit(15), Some(DEFAULT_MIN_STEPS / 15));
        opts.minutes = Some(10.0);
        assert_eq!(opts.epoch_limit(15), None, "the budget decides");
        opts.epochs = Some(3);
        assert_eq!(opts.epoch_limit(15), Some(3), "both: whichever ends first");
    }

    #[test]
    fn only_weight_shapes_and_norm_keep_a_run_from_starting_at_a_model() {
        let base = ModelConfig::default();
        let mut other = base.clone();
        other.preprocess.size = 64;
        other.objective.temperature = 0.2;
        assert_eq!(base.weights_differ(&other), None);
        other.channels = vec![16, 32, 64];
        other.norm = Norm::Batch;
        let why = base.weights_differ(&other).expect("differs");
        assert!(why.contains("channels") && why.contains("norm"), "{why}");
    }
}
