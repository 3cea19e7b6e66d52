//! The records of training and measuring a model: what `train` did, with its nested records
//! (pixel loading, last losses, the label-free probe, `--eval` retrieval, the fitted
//! projection), and what `eval` measured.

use super::fields::{Head, PathField, PathOrNull};
use crate::data::LoadStats;
use crate::pipeline::EvalReport;
use crate::train::{Losses, ProbeReport, ProbeScore, ProjectionReport, TrainReport};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `train` did: `{"images", "skipped", "start", "epochs", "steps", "seconds",
/// "out_of_time", "images_per_second", "load", "epoch_images_per_second", "last_losses",
/// "probe", "eval", "projection", "model"}`.
#[derive(Serialize)]
pub struct TrainRecord {
    #[serde(flatten)]
    head: Head,
    pub images: usize,
    pub skipped: usize,
    pub start: Option<String>,
    pub epochs: usize,
    pub steps: usize,
    pub seconds: f64,
    pub out_of_time: bool,
    pub images_per_second: f64,
    pub load: LoadRecord,
    pub epoch_images_per_second: Vec<f64>,
    pub last_losses: LossesRecord,
    pub probe: ProbeRecord,
    pub eval: Option<TrainEvalRecord>,
    pub projection: Option<ProjectionRecord>,
    #[serde(flatten)]
    pub model: PathField,
}

impl TrainRecord {
    /// `eval`, with `--eval DIR`: the folder and its scores before and after the run.
    pub fn new(r: &TrainReport, eval: Option<(&Path, &EvalReport, &EvalReport)>) -> Self {
        TrainRecord {
            head: Head::summary("train"),
            images: r.images,
            skipped: r.skipped,
            start: r.start.clone(),
            epochs: r.epochs,
            steps: r.steps,
            seconds: r.seconds,
            out_of_time: r.out_of_time,
            images_per_second: r.images_per_second,
            load: LoadRecord::new(&r.load),
            epoch_images_per_second: r.epoch_images_per_second.clone(),
            last_losses: LossesRecord::new(&r.last_losses),
            probe: ProbeRecord::new(&r.probe),
            eval: eval.map(|(dir, before, after)| TrainEvalRecord::new(dir, before, after)),
            projection: r.projection.as_ref().map(ProjectionRecord::new),
            model: PathField::new("model", &r.model),
        }
    }
}

/// How a training run's pixels were obtained: `{"decoded", "from_cache", "seconds",
/// "rebuilt", "cache"}`.
#[derive(Serialize)]
pub struct LoadRecord {
    pub decoded: usize,
    pub from_cache: usize,
    pub seconds: f64,
    pub rebuilt: Option<String>,
    #[serde(flatten)]
    pub cache: PathOrNull,
}

impl LoadRecord {
    pub(super) fn new(stats: &LoadStats) -> Self {
        LoadRecord {
            decoded: stats.decoded,
            from_cache: stats.from_cache,
            seconds: stats.seconds,
            rebuilt: stats.rebuilt.clone(),
            cache: PathOrNull::new("cache", stats.cache.as_deref()),
        }
    }
}

/// The last step's losses: `{"global", "local", "prior", "total"}`, the f32s widened to f64
/// (as the record has always written them, not as short decimals).
#[derive(Serialize)]
pub struct LossesRecord {
    pub global: f64,
    pub local: f64,
    pub prior: f64,
    pub total: f64,
}

impl LossesRecord {
    fn new(l: &Losses) -> Self {
        LossesRecord {
            global: f64::from(l.global),
            local: f64::from(l.local),
            prior: f64::from(l.prior),
            total: f64::from(l.total),
        }
    }
}

/// The label-free probe: `{"images", "before", "last", "kept", "kept_epoch"}`.
#[derive(Serialize)]
pub struct ProbeRecord {
    pub images: usize,
    pub before: ProbeScoreRecord,
    pub last: ProbeScoreRecord,
    pub kept: Option<ProbeScoreRecord>,
    pub kept_epoch: Option<usize>,
}

impl ProbeRecord {
    fn new(p: &ProbeReport) -> Self {
        ProbeRecord {
            images: p.before.images,
            before: ProbeScoreRecord::new(&p.before),
            last: ProbeScoreRecord::new(&p.last),
            kept: p.kept.as_ref().map(ProbeScoreRecord::new),
            kept_epoch: p.kept_epoch,
        }
    }
}

/// One probe's scores: `{"survival_at_9", "self_top1"}`.
#[derive(Serialize, Clone, Copy)]
pub struct ProbeScoreRecord {
    pub survival_at_9: f64,
    pub self_top1: f64,
}

impl ProbeScoreRecord {
    fn new(p: &ProbeScore) -> Self {
        ProbeScoreRecord {
            survival_at_9: p.survival_at_9,
            self_top1: p.self_top1,
        }
    }
}

/// `train --eval DIR`: `{"images", "k", "knn", "before": retrieval, "after": retrieval}`.
#[derive(Serialize)]
pub struct TrainEvalRecord {
    pub images: usize,
    pub k: usize,
    pub knn: usize,
    pub before: RetrievalRecord,
    pub after: RetrievalRecord,
    /// The labelled folder (named in the text form).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl TrainEvalRecord {
    fn new(dir: &Path, before: &EvalReport, after: &EvalReport) -> Self {
        TrainEvalRecord {
            images: after.images,
            k: after.k,
            knn: after.knn,
            before: RetrievalRecord::new(before),
            after: RetrievalRecord::new(after),
            dir: dir.to_path_buf(),
        }
    }
}

/// Retrieval scores: `{"precision_at_k", "knn_accuracy"}`.
#[derive(Serialize)]
pub struct RetrievalRecord {
    pub precision_at_k: f64,
    pub knn_accuracy: f64,
}

impl RetrievalRecord {
    fn new(e: &EvalReport) -> Self {
        RetrievalRecord {
            precision_at_k: e.precision_at_k,
            knn_accuracy: e.knn_accuracy,
        }
    }
}

/// The search projection a training run fitted: `{"dim", "embedding_dim", "images",
/// "fitted"}`.
#[derive(Serialize)]
pub struct ProjectionRecord {
    pub dim: usize,
    pub embedding_dim: usize,
    pub images: usize,
    pub fitted: bool,
}

impl ProjectionRecord {
    fn new(p: &ProjectionReport) -> Self {
        ProjectionRecord {
            dim: p.dim,
            embedding_dim: p.embedding_dim,
            images: p.images,
            fitted: p.fitted,
        }
    }
}

/// What `eval` measured: `{"what", "images", "queries", "skipped", "k", "precision_at_k",
/// "knn", "knn_accuracy", "classes": [class], "seconds"}`.
#[derive(Serialize)]
pub struct EvalRecord {
    #[serde(flatten)]
    head: Head,
    pub what: String,
    pub images: usize,
    pub queries: usize,
    pub skipped: usize,
    pub k: usize,
    pub precision_at_k: f64,
    pub knn: usize,
    pub knn_accuracy: f64,
    pub classes: Vec<ClassRecord>,
    pub seconds: f64,
}

/// One class's scores: `{"class", "images", "precision_at_k", "knn_accuracy"}`.
#[derive(Serialize)]
pub struct ClassRecord {
    pub class: String,
    pub images: usize,
    pub precision_at_k: f64,
    pub knn_accuracy: f64,
}

impl EvalRecord {
    pub fn new(r: &EvalReport) -> Self {
        EvalRecord {
            head: Head::summary("eval"),
            what: r.what.clone(),
            images: r.images,
            queries: r.queries,
            skipped: r.skipped,
            k: r.k,
            precision_at_k: r.precision_at_k,
            knn: r.knn,
            knn_accuracy: r.knn_accuracy,
            classes: r
                .classes
                .iter()
                .map(|c| ClassRecord {
                    class: c.class.clone(),
                    images: c.images,
                    precision_at_k: c.precision_at_k,
                    knn_accuracy: c.knn_accuracy,
                })
                .collect(),
            seconds: r.seconds,
        }
    }
}
