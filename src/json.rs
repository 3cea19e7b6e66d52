//! The JSON Lines records of every command's `--json` output (and of the HTTP API's results):
//! one typed record (`Serialize`) per record type, schema version [`SCHEMA_VERSION`], documented
//! in `docs/JSON.md`. Every record is one object with a `"type"`; every command ends with a
//! `"summary"` record that names the command and the schema version. A struct declares its
//! fields in the order the record writes its keys.
//!
//! Paths are carried losslessly: a path is its text (invalid UTF-8 replaced by U+FFFD), and
//! when it is not valid UTF-8 a sibling `<key>_bytes` holds its raw bytes in standard base64,
//! as ripgrep does.

use crate::data::LoadStats;
use crate::index::{Hit, ImageId, RepairReport, VerifyReport};
pub use crate::json_path::put_path;
use crate::pipeline::dups::{DupsOptions, Group, Outcome};
use crate::pipeline::jobs::WorkSummary;
use crate::pipeline::{EvalReport, ForgetSummary, IndexSummary, QueryAnswer, Row};
use crate::store::Location;
use crate::train::{Losses, ProbeReport, ProbeScore, ProjectionReport, TrainReport};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Version of the record types below; bumped when a field changes meaning or goes away
/// (new fields may be added within a version).
pub const SCHEMA_VERSION: u64 = 1;

/// A path under a record's key, with `<key>_bytes` beside it when the path is not UTF-8
/// ([`put_path`]); flattened into the record that holds it, so its keys keep their place.
pub struct PathField {
    key: &'static str,
    path: PathBuf,
}

impl PathField {
    pub fn new(key: &'static str, path: &Path) -> Self {
        PathField {
            key,
            path: path.to_path_buf(),
        }
    }

    /// The path itself, as the text form shows it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Serialize for PathField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        path_entries(serializer, self.key, Some(&self.path))
    }
}

/// A path a record may not have: `"<key>": null` then (the key is always there), else as a
/// [`PathField`]; flattened like one.
pub struct PathOrNull {
    key: &'static str,
    path: Option<PathBuf>,
}

impl PathOrNull {
    pub fn new(key: &'static str, path: Option<&Path>) -> Self {
        PathOrNull {
            key,
            path: path.map(Path::to_path_buf),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Serialize for PathOrNull {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        path_entries(serializer, self.key, self.path.as_deref())
    }
}

/// `key` (null without a path) and, for a path that is not UTF-8, `<key>_bytes`, as a map
/// that the record holding them flattens.
fn path_entries<S: Serializer>(
    serializer: S,
    key: &str,
    path: Option<&Path>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut entries = Map::new();
    match path {
        Some(path) => put_path(&mut entries, key, path),
        None => {
            entries.insert(key.into(), Value::Null);
        }
    }
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in &entries {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// A folder (or a file) in a list: `{"path"}`.
#[derive(Serialize)]
pub struct FolderRecord {
    #[serde(flatten)]
    pub path: PathField,
}

impl FolderRecord {
    fn list(paths: &[PathBuf]) -> Vec<FolderRecord> {
        paths
            .iter()
            .map(|p| FolderRecord {
                path: PathField::new("path", p),
            })
            .collect()
    }
}

/// An image's stable id as the HTTP API addresses it.
fn image_id(path: &Path) -> String {
    ImageId::of(path).to_string()
}

/// One ranked neighbour: `{"rank", "path", "score", "id"}` (`id`: the image's stable id, what
/// the HTTP API addresses it by).
#[derive(Serialize)]
pub struct HitRecord {
    pub rank: usize,
    #[serde(flatten)]
    pub path: PathField,
    /// The f32 cosine widened to f64, as every score is written.
    pub score: f64,
    pub id: String,
}

impl HitRecord {
    pub fn new(rank: usize, hit: &Hit) -> Self {
        HitRecord {
            rank,
            path: PathField::new("path", &hit.path),
            score: f64::from(hit.score),
            id: image_id(&hit.path),
        }
    }

    /// The records of a ranked list, ranks from 1.
    fn list(hits: &[Hit]) -> Vec<HitRecord> {
        hits.iter()
            .enumerate()
            .map(|(i, h)| HitRecord::new(i + 1, h))
            .collect()
    }
}

/// A query's neighbours: `{"type": "query", "query", "results": [hit]}`; the HTTP API adds the
/// `generation` the answer came from.
#[derive(Serialize)]
pub struct QueryRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    pub query: PathField,
    pub results: Vec<HitRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl QueryRecord {
    pub fn new(query: &Path, results: &[Hit]) -> Self {
        QueryRecord {
            kind: "query",
            query: PathField::new("query", query),
            results: HitRecord::list(results),
            generation: None,
        }
    }

    /// The record as the HTTP API answers it: with the store generation it came from.
    pub fn in_generation(self, generation: u64) -> Self {
        QueryRecord {
            generation: Some(generation),
            ..self
        }
    }
}

/// A contact-sheet row: `{"type": "row", "query", "query_id", "results": [hit]}`.
#[derive(Serialize)]
pub struct RowRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    pub query: PathField,
    pub query_id: String,
    pub results: Vec<HitRecord>,
}

impl RowRecord {
    pub fn new(row: &Row) -> Self {
        RowRecord {
            kind: "row",
            query: PathField::new("query", &row.query),
            query_id: image_id(&row.query),
            results: HitRecord::list(&row.neighbours),
        }
    }
}

/// A group of near-duplicates: `{"type": "group", "id", "keep", "keep_id", "duplicates"}`, the
/// kept file first.
#[derive(Serialize)]
pub struct GroupRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub id: usize,
    #[serde(flatten)]
    pub keep: PathField,
    pub keep_id: String,
    pub duplicates: Vec<DuplicateRecord>,
}

/// One copy of a group: `{"path", "id", "score", "copy_score", "action", "detail"}`
/// (`copy_score` null without the pixel check); `action` says what was done with it.
#[derive(Serialize)]
pub struct DuplicateRecord {
    #[serde(flatten)]
    pub path: PathField,
    pub id: String,
    pub score: f64,
    pub copy_score: Option<f64>,
    pub action: &'static str,
    pub detail: Option<String>,
}

impl GroupRecord {
    /// Group number `id`; `outcomes`, when given, what was done with each copy.
    pub fn new(id: usize, group: &Group, outcomes: Option<&[Outcome]>) -> Self {
        let duplicates = group
            .duplicates()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let outcome = outcomes
                    .and_then(|o| o.get(i))
                    .unwrap_or(&Outcome::Reported);
                let (action, detail) = match outcome {
                    Outcome::Reported => ("none", None),
                    Outcome::Moved(to) => ("moved", Some(to.to_string_lossy().into_owned())),
                    Outcome::Linked => ("linked", None),
                    Outcome::Left(why) => ("left", Some(why.clone())),
                };
                DuplicateRecord {
                    path: PathField::new("path", &m.path),
                    id: image_id(&m.path),
                    score: f64::from(m.score),
                    copy_score: m.copy_score.map(f64::from),
                    action,
                    detail,
                }
            })
            .collect();
        GroupRecord {
            kind: "group",
            id,
            keep: PathField::new("keep", &group.keep().path),
            keep_id: image_id(&group.keep().path),
            duplicates,
        }
    }
}

/// A setting the user typed as a short decimal, printed as one (0.85, not the f32's
/// 0.8500000238418579).
pub fn setting(value: f32) -> f64 {
    (f64::from(value) * 1e6).round() / 1e6
}

/// What `dups` found and did: `{"groups", "duplicates", "threshold", "copy_score",
/// "rotations", "action", "log"}` (`log`: the undo log of `--move`, else null).
#[derive(Serialize)]
pub struct DupsRecord {
    #[serde(flatten)]
    head: Head,
    pub groups: usize,
    pub duplicates: usize,
    pub threshold: f64,
    pub copy_score: Option<f64>,
    pub rotations: bool,
    pub action: &'static str,
    #[serde(flatten)]
    pub log: PathOrNull,
}

impl DupsRecord {
    pub fn new(
        groups: &[Group],
        opts: &DupsOptions,
        action: &'static str,
        log: Option<&Path>,
    ) -> Self {
        DupsRecord {
            head: Head::summary("dups"),
            groups: groups.len(),
            duplicates: groups.iter().map(|g| g.duplicates().len()).sum(),
            threshold: setting(opts.threshold),
            copy_score: opts.verify.map(setting),
            rotations: opts.rotations,
            action,
            log: PathOrNull::new("log", log),
        }
    }
}

/// What one `imgsearch worker` did: `{"store", "worker", "embedded", "skipped", "batches",
/// "abandoned", "seconds"}`.
#[derive(Serialize)]
pub struct WorkerRecord {
    #[serde(flatten)]
    head: Head,
    pub store: String,
    pub worker: String,
    pub embedded: usize,
    pub skipped: usize,
    pub batches: usize,
    pub abandoned: u64,
    pub seconds: f64,
}

impl WorkerRecord {
    pub fn new(store: String, worker: String, s: &WorkSummary) -> Self {
        WorkerRecord {
            head: Head::summary("worker"),
            store,
            worker,
            embedded: s.embedded,
            skipped: s.skipped.len(),
            batches: s.batches,
            abandoned: s.abandoned,
            seconds: s.seconds,
        }
    }
}

/// What `imgsearch store-init` set up: `{"store", "shards", "dim"}`, the URLs without their
/// passwords.
#[derive(Serialize)]
pub struct StoreInitRecord {
    #[serde(flatten)]
    head: Head,
    pub store: String,
    pub shards: Vec<String>,
    pub dim: usize,
}

impl StoreInitRecord {
    pub fn new(store: String, shards: Vec<String>, dim: usize) -> Self {
        StoreInitRecord {
            head: Head::summary("store-init"),
            store,
            shards,
            dim,
        }
    }
}

/// `serve` is listening: the one line it writes before serving (its summary comes first, as
/// the command then runs until stopped). `{"url", "images", "index"}`, and `"store"` for a
/// PostgreSQL store (its index then null).
#[derive(Serialize)]
pub struct ServeRecord {
    #[serde(flatten)]
    head: Head,
    pub url: String,
    pub images: usize,
    #[serde(flatten)]
    pub place: Place,
}

impl ServeRecord {
    pub fn new(location: &Location, url: String, images: usize) -> Self {
        ServeRecord {
            head: Head::summary("serve"),
            url,
            images,
            place: Place::of(location),
        }
    }
}

/// What `dups --ignore` recorded: `{"ignored_new", "ignored_total"}`, the pairs it added to
/// the index folder's ignore file and how many the file holds now.
#[derive(Serialize)]
pub struct IgnoreRecord {
    #[serde(flatten)]
    head: Head,
    pub ignored_new: usize,
    pub ignored_total: usize,
}

impl IgnoreRecord {
    pub fn new(ignored_new: usize, ignored_total: usize) -> Self {
        IgnoreRecord {
            head: Head::summary("ignore"),
            ignored_new,
            ignored_total,
        }
    }
}

/// What `dups --undo` did: `{"restored": [folder], "left"}`, the copies moved back and the
/// number that could not be.
#[derive(Serialize)]
pub struct UndoRecord {
    #[serde(flatten)]
    head: Head,
    pub restored: Vec<FolderRecord>,
    pub left: usize,
}

impl UndoRecord {
    pub fn new(restored: &[PathBuf], left: usize) -> Self {
        UndoRecord {
            head: Head::summary("undo"),
            restored: FolderRecord::list(restored),
            left,
        }
    }
}

/// A file left out: `{"type": "skip", "path", "reason"}`.
#[derive(Serialize)]
pub struct SkipRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    pub path: PathField,
    pub reason: String,
}

impl SkipRecord {
    pub fn new(path: &Path, reason: &str) -> Self {
        SkipRecord {
            kind: "skip",
            path: PathField::new("path", path),
            reason: reason.to_string(),
        }
    }
}

/// `{"type": "warning", "message"}`.
#[derive(Serialize)]
pub struct WarningRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub message: String,
}

impl WarningRecord {
    pub fn new(message: &str) -> Self {
        WarningRecord {
            kind: "warning",
            message: message.to_string(),
        }
    }
}

/// `{"type": "error", "message"}`, with the `path` it is about when there is one; the HTTP
/// API answers its errors with it too.
#[derive(Serialize)]
pub struct ErrorRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub message: String,
    #[serde(flatten)]
    pub path: Option<PathField>,
}

impl ErrorRecord {
    pub fn new(message: &str, path: Option<&Path>) -> Self {
        ErrorRecord {
            kind: "error",
            message: message.to_string(),
            path: path.map(|p| PathField::new("path", p)),
        }
    }
}

/// What `index` did: `{"total", "added", "updated", "removed", "skipped",
/// "links_not_followed", "scanned", "missing", "repair", "seconds", "index"}`, and for a
/// PostgreSQL store `"store"` and `"queued_only"` (its index then null).
#[derive(Serialize)]
pub struct IndexRecord {
    #[serde(flatten)]
    head: Head,
    pub total: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub skipped: usize,
    pub links_not_followed: usize,
    pub scanned: Vec<FolderRecord>,
    pub missing: Vec<FolderRecord>,
    pub repair: Option<RepairRecord>,
    pub seconds: f64,
    #[serde(flatten)]
    pub place: Place,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_only: Option<bool>,
    /// The files were queued for workers, not embedded (said in the text form).
    #[serde(skip)]
    pub queued: bool,
}

impl IndexRecord {
    pub fn new(location: &Location, s: &IndexSummary, queued: bool) -> Self {
        let place = Place::of(location);
        IndexRecord {
            head: Head::summary("index"),
            total: s.total,
            added: s.added,
            updated: s.updated,
            removed: s.removed,
            skipped: s.skipped,
            links_not_followed: s.links_not_followed,
            scanned: FolderRecord::list(&s.scanned),
            missing: FolderRecord::list(&s.missing),
            repair: s.repair.as_ref().map(RepairRecord::new),
            seconds: s.seconds,
            queued_only: place.store.is_some().then_some(queued),
            place,
            queued,
        }
    }
}

/// The first fields of a record: its `"type"`, and for a summary the `"command"` and the
/// `"schema"` version.
#[derive(Serialize)]
struct Head {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'static str,
    schema: u64,
}

impl Head {
    fn summary(command: &'static str) -> Self {
        Head {
            kind: "summary",
            command,
            schema: SCHEMA_VERSION,
        }
    }
}

/// Where a summary's store is: `"index"` (its folder; `"index_bytes"` when the path is not
/// UTF-8), or for a PostgreSQL store a null index and `"store"`, the URL without its password.
#[derive(Serialize)]
pub struct Place {
    pub index: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bytes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl Place {
    pub fn of(location: &Location) -> Self {
        match location {
            Location::Local(dir) => {
                let mut r = Map::new();
                put_path(&mut r, "index", dir);
                let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
                Place {
                    index: text("index"),
                    index_bytes: text("index_bytes"),
                    store: None,
                }
            }
            Location::Postgres(_) => Place {
                index: None,
                index_bytes: None,
                store: Some(location.describe()),
            },
        }
    }
}

/// What `index --repair` dropped: `{"manifest_lost", "manifest_recovered", "dropped"}`.
#[derive(Serialize)]
pub struct RepairRecord {
    pub manifest_lost: Option<String>,
    pub manifest_recovered: Option<String>,
    pub dropped: Vec<DroppedRecord>,
}

/// A damaged segment a repair removed: `{"files", "entries", "reason"}`.
#[derive(Serialize)]
pub struct DroppedRecord {
    pub files: Vec<String>,
    pub entries: u64,
    pub reason: String,
}

impl RepairRecord {
    fn new(report: &RepairReport) -> Self {
        RepairRecord {
            manifest_lost: report.manifest_lost.clone(),
            manifest_recovered: report.manifest_recovered.clone(),
            dropped: report
                .dropped
                .iter()
                .map(|d| DroppedRecord {
                    files: d.files.clone(),
                    entries: d.entries,
                    reason: d.reason.clone(),
                })
                .collect(),
        }
    }
}

/// What `forget` did: `{"folders": [folder], "removed", "total", "index"}`.
#[derive(Serialize)]
pub struct ForgetRecord {
    #[serde(flatten)]
    head: Head,
    pub folders: Vec<FolderRecord>,
    pub removed: usize,
    pub total: usize,
    #[serde(flatten)]
    pub index: PathField,
}

impl ForgetRecord {
    pub fn new(index: &Path, s: &ForgetSummary) -> Self {
        ForgetRecord {
            head: Head::summary("forget"),
            folders: FolderRecord::list(&s.folders),
            removed: s.removed,
            total: s.total,
            index: PathField::new("index", index),
        }
    }
}

/// The end of `query`: `{"queries", "failed"}`, the query images and those that could not be
/// used (the query records themselves come before it).
#[derive(Serialize)]
pub struct QuerySummaryRecord {
    #[serde(flatten)]
    head: Head,
    pub queries: usize,
    pub failed: usize,
}

impl QuerySummaryRecord {
    pub fn new(answers: &[QueryAnswer]) -> Self {
        QuerySummaryRecord {
            head: Head::summary("query"),
            queries: answers.len(),
            failed: answers.iter().filter(|a| a.result.is_err()).count(),
        }
    }
}

/// What `grid` wrote: `{"rows", "out"}`.
#[derive(Serialize)]
pub struct GridRecord {
    #[serde(flatten)]
    head: Head,
    pub rows: usize,
    #[serde(flatten)]
    pub out: PathField,
}

impl GridRecord {
    pub fn new(rows: usize, out: &Path) -> Self {
        GridRecord {
            head: Head::summary("grid"),
            rows,
            out: PathField::new("out", out),
        }
    }
}

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
    fn new(stats: &LoadStats) -> Self {
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

/// What `verify` found: `{"ok", "generation", "segments", "entries", "files", "damaged",
/// "index"}`.
#[derive(Serialize)]
pub struct VerifyRecord {
    #[serde(flatten)]
    head: Head,
    pub ok: bool,
    pub generation: u64,
    pub segments: usize,
    pub entries: u64,
    pub files: usize,
    pub damaged: Vec<String>,
    #[serde(flatten)]
    pub index: PathField,
    /// Whether the manifest is among the damaged (said in the text form).
    #[serde(skip)]
    pub manifest_damaged: bool,
}

impl VerifyRecord {
    pub fn new(index: &Path, r: &VerifyReport) -> Self {
        VerifyRecord {
            head: Head::summary("verify"),
            ok: r.is_ok(),
            generation: r.generation,
            segments: r.segments,
            entries: r.entries,
            files: r.files,
            damaged: r.damaged.clone(),
            index: PathField::new("index", index),
            manifest_damaged: r.manifest_damaged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine;

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_round_trips_through_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/photos/a\xffb.jpg"));
        let line = serde_json::to_value(SkipRecord::new(path, "not an image")).expect("json");
        assert_eq!(line["path"], "/photos/a\u{fffd}b.jpg");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line["path_bytes"].as_str().expect("bytes"))
            .expect("base64");
        assert_eq!(bytes, b"/photos/a\xffb.jpg");
        let plain =
            serde_json::to_value(SkipRecord::new(Path::new("/photos/ab.jpg"), "x")).expect("json");
        assert!(plain.get("path_bytes").is_none());
    }

    #[test]
    fn an_absent_path_is_left_out_or_null_as_its_record_says() {
        let error = serde_json::to_string(&ErrorRecord::new("gone", None)).expect("json");
        assert_eq!(error, r#"{"type":"error","message":"gone"}"#);
        let load = LoadRecord::new(&LoadStats::default());
        let load = serde_json::to_string(&load).expect("json");
        assert_eq!(
            load,
            r#"{"decoded":0,"from_cache":0,"seconds":0.0,"rebuilt":null,"cache":null}"#
        );
    }
}
