//! The records of searches and what they found: ranked neighbours (`query`, its hits and its
//! summary), contact-sheet rows and what `grid` wrote, and near-duplicate groups with what
//! `dups`, `dups --ignore` and `dups --undo` did.

use super::fields::{image_id, setting, FolderRecord, Head, PathField, PathOrNull};
use crate::index::Hit;
use crate::pipeline::dups::{DupsOptions, Found, Group, Outcome, Work};
use crate::pipeline::{QueryAnswer, Row};
use serde::Serialize;
use std::path::{Path, PathBuf};

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

/// A group of similar shots (`dups --similar`): `{"id", "members"}`, oldest first, each member
/// `{"path", "id", "score"}` with its cosine to the first.
#[derive(Serialize)]
pub struct SimilarRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub id: usize,
    pub members: Vec<SimilarMemberRecord>,
}

/// One shot of a [`SimilarRecord`].
#[derive(Serialize)]
pub struct SimilarMemberRecord {
    #[serde(flatten)]
    pub path: PathField,
    pub id: String,
    pub score: f64,
}

impl SimilarRecord {
    pub fn new(id: usize, group: &Group) -> Self {
        let members = group
            .members
            .iter()
            .map(|m| SimilarMemberRecord {
                path: PathField::new("path", &m.path),
                id: image_id(&m.path),
                score: f64::from(m.score),
            })
            .collect();
        SimilarRecord {
            kind: "similar",
            id,
            members,
        }
    }
}

/// What `dups` found and did: `{"groups", "duplicates", "similar", "threshold", "closest",
/// "closest_cosine", "copy_score", "rotations", "action", "log"}` (`similar`: the groups of
/// similar shots, null without `--similar`; `closest_cosine`: null when the closest images are
/// not searched; `log`: the undo log of `--move`, else null; `work`: [`Work`]).
#[derive(Serialize)]
pub struct DupsRecord {
    #[serde(flatten)]
    head: Head,
    pub groups: usize,
    pub duplicates: usize,
    pub similar: Option<usize>,
    pub threshold: f64,
    pub closest: usize,
    pub closest_cosine: Option<f64>,
    pub copy_score: Option<f64>,
    pub rotations: bool,
    pub action: &'static str,
    #[serde(flatten)]
    pub log: PathOrNull,
    pub work: Work,
}

impl DupsRecord {
    pub fn new(
        found: &Found,
        opts: &DupsOptions,
        action: &'static str,
        log: Option<&Path>,
    ) -> Self {
        DupsRecord {
            head: Head::summary("dups"),
            groups: found.groups.len(),
            duplicates: found.groups.iter().map(|g| g.duplicates().len()).sum(),
            similar: opts.similar.map(|_| found.similar.len()),
            threshold: setting(opts.threshold),
            closest: opts.closest_searched(),
            closest_cosine: (opts.closest_searched() > 0).then(|| setting(opts.closest_cosine)),
            copy_score: opts.verify.map(setting),
            rotations: opts.rotations,
            action,
            log: PathOrNull::new("log", log),
            work: found.work,
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
