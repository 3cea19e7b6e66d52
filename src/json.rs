//! The JSON Lines records of every command's `--json` output (and of the HTTP API's results):
//! a typed record (`Serialize`) or a builder per record type, schema version [`SCHEMA_VERSION`], documented in
//! `docs/JSON.md`. Every record is one object with a `"type"`; every command ends with a
//! `"summary"` record that names the command and the schema version.
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
use crate::train::{ProbeScore, TrainReport};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Version of the record types below; bumped when a field changes meaning or goes away
/// (new fields may be added within a version).
pub const SCHEMA_VERSION: u64 = 1;

/// An object under construction.
type Record = Map<String, Value>;

fn record(kind: &str) -> Record {
    let mut r = Map::new();
    r.insert("type".into(), Value::String(kind.into()));
    r
}

/// `{"path": ...}` objects for a list of paths.
fn path_list(paths: &[PathBuf]) -> Value {
    Value::Array(
        paths
            .iter()
            .map(|p| {
                let mut r = Map::new();
                put_path(&mut r, "path", p);
                Value::Object(r)
            })
            .collect(),
    )
}

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
}

impl Serialize for PathField {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut entries = Map::new();
        put_path(&mut entries, self.key, &self.path);
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in &entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
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

pub fn dups_summary(
    groups: &[Group],
    opts: &DupsOptions,
    action: &str,
    log: Option<&Path>,
) -> Value {
    let duplicates: usize = groups.iter().map(|g| g.duplicates().len()).sum();
    let mut f = fields(json!({
        "groups": groups.len(),
        "duplicates": duplicates,
        "threshold": setting(opts.threshold),
        "copy_score": opts.verify.map(setting),
        "rotations": opts.rotations,
        "action": action,
    }));
    match log {
        Some(log) => put_path(&mut f, "log", log),
        None => {
            f.insert("log".into(), Value::Null);
        }
    }
    summary("dups", f)
}

/// What one `imgsearch worker` did.
pub fn worker_summary(store: &str, worker: &str, s: &WorkSummary) -> Value {
    let f = fields(json!({
        "store": store,
        "worker": worker,
        "embedded": s.embedded,
        "skipped": s.skipped.len(),
        "batches": s.batches,
        "abandoned": s.abandoned,
        "seconds": s.seconds,
    }));
    summary("worker", f)
}

/// What `imgsearch store-init` set up.
pub fn store_init_summary(store: &str, shards: &[String], dim: usize) -> Value {
    summary(
        "store-init",
        fields(json!({"store": store, "shards": shards, "dim": dim})),
    )
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

pub fn undo_summary(restored: &[PathBuf], left: usize) -> Value {
    summary(
        "undo",
        fields(json!({"restored": path_list(restored), "left": left})),
    )
}

/// A file left out: `{"type": "skip", "path", "reason"}`.
pub fn skip(path: &Path, reason: &str) -> Value {
    let mut r = record("skip");
    put_path(&mut r, "path", path);
    r.insert("reason".into(), json!(reason));
    Value::Object(r)
}

/// `{"type": "warning", "message"}`.
pub fn warning(message: &str) -> Value {
    let mut r = record("warning");
    r.insert("message".into(), json!(message));
    Value::Object(r)
}

/// `{"type": "error", "message"}`, with the `path` it is about when there is one.
pub fn error(message: &str, path: Option<&Path>) -> Value {
    let mut r = record("error");
    r.insert("message".into(), json!(message));
    if let Some(path) = path {
        put_path(&mut r, "path", path);
    }
    Value::Object(r)
}

/// The last record of every command: `{"type": "summary", "command", "schema", ...}`.
fn summary(command: &str, fields: Record) -> Value {
    let mut r = record("summary");
    r.insert("command".into(), json!(command));
    r.insert("schema".into(), json!(SCHEMA_VERSION));
    r.extend(fields);
    Value::Object(r)
}

fn fields(value: Value) -> Record {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
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
    pub scanned: Value,
    pub missing: Value,
    pub repair: Value,
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
            scanned: path_list(&s.scanned),
            missing: path_list(&s.missing),
            repair: s.repair.as_ref().map_or(Value::Null, repair),
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

fn repair(report: &RepairReport) -> Value {
    json!({
        "manifest_lost": report.manifest_lost,
        "manifest_recovered": report.manifest_recovered,
        "dropped": report.dropped.iter().map(|d| json!({
            "files": d.files,
            "entries": d.entries,
            "reason": d.reason,
        })).collect::<Vec<_>>(),
    })
}

pub fn forget_summary(index: &Path, s: &ForgetSummary) -> Value {
    let mut f = fields(json!({
        "folders": path_list(&s.folders),
        "removed": s.removed,
        "total": s.total,
    }));
    put_path(&mut f, "index", index);
    summary("forget", f)
}

pub fn query_summary(answers: &[QueryAnswer]) -> Value {
    let failed = answers.iter().filter(|a| a.result.is_err()).count();
    summary(
        "query",
        fields(json!({"queries": answers.len(), "failed": failed})),
    )
}

pub fn grid_summary(rows: usize, out: &Path) -> Value {
    let mut f = fields(json!({ "rows": rows }));
    put_path(&mut f, "out", out);
    summary("grid", f)
}

pub fn train_summary(r: &TrainReport, eval: Option<(&EvalReport, &EvalReport)>) -> Value {
    let mut f = fields(json!({
        "images": r.images,
        "skipped": r.skipped,
        "start": r.start,
        "epochs": r.epochs,
        "steps": r.steps,
        "seconds": r.seconds,
        "out_of_time": r.out_of_time,
        "images_per_second": r.images_per_second,
        "load": load(&r.load),
        "epoch_images_per_second": r.epoch_images_per_second,
        "last_losses": {
            "global": r.last_losses.global,
            "local": r.last_losses.local,
            "prior": r.last_losses.prior,
            "total": r.last_losses.total,
        },
        "probe": {
            "images": r.probe.before.images,
            "before": probe_score(&r.probe.before),
            "last": probe_score(&r.probe.last),
            "kept": r.probe.kept.as_ref().map(probe_score),
            "kept_epoch": r.probe.kept_epoch,
        },
    }));
    let scores = |e: &EvalReport| json!({"precision_at_k": e.precision_at_k, "knn_accuracy": e.knn_accuracy});
    let eval = eval.map(|(before, after)| {
        json!({
            "images": after.images,
            "k": after.k,
            "knn": after.knn,
            "before": scores(before),
            "after": scores(after),
        })
    });
    f.insert("eval".into(), eval.unwrap_or(Value::Null));
    let projection = r.projection.map(|p| {
        json!({"dim": p.dim, "embedding_dim": p.embedding_dim, "images": p.images, "fitted": p.fitted})
    });
    f.insert("projection".into(), projection.unwrap_or(Value::Null));
    put_path(&mut f, "model", &r.model);
    summary("train", f)
}

fn probe_score(p: &ProbeScore) -> Value {
    json!({"survival_at_9": p.survival_at_9, "self_top1": p.self_top1})
}

fn load(stats: &LoadStats) -> Value {
    let mut f = fields(json!({
        "decoded": stats.decoded,
        "from_cache": stats.from_cache,
        "seconds": stats.seconds,
        "rebuilt": stats.rebuilt,
    }));
    match &stats.cache {
        Some(cache) => put_path(&mut f, "cache", cache),
        None => {
            f.insert("cache".into(), Value::Null);
        }
    }
    Value::Object(f)
}

pub fn eval_summary(r: &EvalReport) -> Value {
    let classes: Vec<Value> = r
        .classes
        .iter()
        .map(|c| {
            json!({
                "class": c.class,
                "images": c.images,
                "precision_at_k": c.precision_at_k,
                "knn_accuracy": c.knn_accuracy,
            })
        })
        .collect();
    summary(
        "eval",
        fields(json!({
            "what": r.what,
            "images": r.images,
            "queries": r.queries,
            "skipped": r.skipped,
            "k": r.k,
            "precision_at_k": r.precision_at_k,
            "knn": r.knn,
            "knn_accuracy": r.knn_accuracy,
            "classes": classes,
            "seconds": r.seconds,
        })),
    )
}

pub fn verify_summary(index: &Path, r: &VerifyReport) -> Value {
    let mut f = fields(json!({
        "ok": r.is_ok(),
        "generation": r.generation,
        "segments": r.segments,
        "entries": r.entries,
        "files": r.files,
        "damaged": r.damaged,
    }));
    put_path(&mut f, "index", index);
    summary("verify", f)
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
        let line = skip(path, "not an image");
        assert_eq!(line["path"], "/photos/a\u{fffd}b.jpg");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line["path_bytes"].as_str().expect("bytes"))
            .expect("base64");
        assert_eq!(bytes, b"/photos/a\xffb.jpg");
        let plain = skip(Path::new("/photos/ab.jpg"), "x");
        assert!(plain.get("path_bytes").is_none());
    }
}
