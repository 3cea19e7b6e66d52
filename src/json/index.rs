//! The records of the commands that keep an index: what `index` did (with what `--repair`
//! dropped), what `forget` removed, and what `verify` found.

use super::fields::{FolderRecord, Head, PathField, Place};
use crate::index::{RepairReport, VerifyReport};
use crate::pipeline::{ForgetSummary, IndexSummary};
use crate::store::Location;
use serde::Serialize;
use std::path::Path;

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
