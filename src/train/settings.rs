//! What a training run is asked to do ([`TrainOptions`]) and what it resolves to: the
//! defaults of the recipe, and on `--resume` the run's own batch, views, augmentation and
//! (unless given again) learning rate, schedule and seed ([`RunSettings`]).

use crate::data::{Augment, CACHE_FILE};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, TrainingRecord};
use crate::progress::Verbosity;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub roots: Vec<PathBuf>,
    pub out: PathBuf,
    pub epochs: usize,
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
    /// Use at most this many images, evenly spaced through the sorted paths.
    pub limit: Option<usize>,
    pub augment: Augment,
    /// Views of each image per step: 1, or 2 to pair the code of one augmented view with
    /// the features of another.
    pub views: usize,
    /// Architecture and objective; ignored on `--resume`, which keeps the checkpoint's.
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
            epochs: 10,
            batch: None,
            lr: None,
            schedule: None,
            seed: None,
            resume: false,
            limit: None,
            augment: Augment::standard(),
            views: 2,
            config: ModelConfig::default(),
            cache: PixelCache::default(),
            verbosity: Verbosity::default(),
        }
    }

    /// The pixel cache file, if any.
    pub fn cache_file(&self) -> Option<PathBuf> {
        match &self.cache {
            PixelCache::InOut => Some(self.out.join(CACHE_FILE)),
            PixelCache::In(dir) => Some(dir.join(CACHE_FILE)),
            PixelCache::Off => None,
        }
    }
}

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
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let progress = (step as f64 / total.max(1) as f64).min(1.0);
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}
