//! Near-duplicate groups from an index's own vectors, and what to do with them.
//!
//! Candidates come from each image's nearest neighbours at cosine >= the threshold. Groups are
//! merged most similar pair first, and two groups merge only if *every* pair across them is at
//! least the threshold (complete linkage): a group's diameter is bounded, so a chain of images
//! each close to the next can never pull unrelated images into one giant group. Each group is
//! ordered best copy first: most pixels, then largest file, then oldest, then path; every member
//! carries its cosine to that first one.
//!
//! Actions never delete. `--move DEST` moves every non-kept copy under DEST (its path relative to
//! the index folder that holds it), logging each move before and after it in an undo log, so a
//! `kill -9` leaves every file in place or moved and the log says which; [`undo`] restores them.
//! `--hardlink` replaces a copy by a hard link to the kept file only when the bytes are identical.

use super::query::QUERY_BATCH;
use crate::data;
use crate::error::{Error, Result};
use crate::fsx;
use crate::index::{Index, SearchOptions};
use crate::json_path::{get_path, put_path};
use crate::model::Model;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Cosine at or above which two images are called duplicates unless told otherwise: the best
/// F1 of the thresholds measured by `examples/dups_bench.rs` with the bundled model
/// (docs/DUPS.md).
pub const DEFAULT_THRESHOLD: f32 = 0.97;

/// How groups are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DupsOptions {
    pub threshold: f32,
    /// Also compare each image's 90, 180 and 270-degree rotations (decodes every image once
    /// more and embeds three views of it; needs the index's model).
    pub rotations: bool,
    /// Neighbours examined per image (candidates).
    pub neighbours: usize,
    /// Graph search beam width.
    pub ef: usize,
}

impl Default for DupsOptions {
    fn default() -> Self {
        DupsOptions {
            threshold: DEFAULT_THRESHOLD,
            rotations: true,
            neighbours: 32,
            ef: 128,
        }
    }
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub path: PathBuf,
    /// Cosine to the group's first (kept) member; 1 for that one.
    pub score: f32,
    /// Width × height (0 if the header cannot be read).
    pub pixels: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A group of near-duplicates, best copy first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub members: Vec<Member>,
}

impl Group {
    pub fn keep(&self) -> &Member {
        &self.members[0]
    }

    pub fn duplicates(&self) -> &[Member] {
        &self.members[1..]
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The embeddings of each indexed image's rotations by 90, 180 and 270 degrees, in entry
/// order (empty for an image that no longer decodes). Rotating the preprocessed square equals
/// preprocessing the rotated image: the crop is centred and square.
fn rotated_views(model: &Model, paths: &[PathBuf]) -> Result<Vec<Vec<Vec<f32>>>> {
    let side = model.preprocess().size as usize;
    let mut views = vec![Vec::new(); paths.len()];
    for batch in data::stream(paths.to_vec(), model.preprocess().clone(), QUERY_BATCH) {
        let mut squares = Vec::with_capacity(batch.items.len() * 3);
        for item in &batch.items {
            let mut square = item.rgb.clone();
            for _ in 0..3 {
                square = rotate90(&square, side);
                squares.push(square.clone());
            }
        }
        let vectors = model.embed(squares.iter().map(Vec::as_slice))?;
        for (item, three) in batch.items.iter().zip(vectors.chunks(3)) {
            views[item.index] = three.to_vec();
        }
    }
    Ok(views)
}

/// An RGB8 `side × side` square turned 90 degrees clockwise.
fn rotate90(rgb: &[u8], side: usize) -> Vec<u8> {
    let mut out = vec![0; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            let (from, to) = ((y * side + x) * 3, (x * side + (side - 1 - y)) * 3);
            out[to..to + 3].copy_from_slice(&rgb[from..from + 3]);
        }
    }
    out
}

/// The near-duplicate groups of the index, largest first. `model` (the index's own) is needed
/// for [`DupsOptions::rotations`].
pub fn find_groups(index: &Index, model: Option<&Model>, opts: &DupsOptions) -> Result<Vec<Group>> {
    if !(opts.threshold > 0.0 && opts.threshold <= 1.0) {
        return Err(Error::Usage(format!(
            "threshold {} must be above 0 and at most 1",
            opts.threshold
        )));
    }
    let entries = index
        .entries()
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let vectors: Vec<&[f32]> = index.vectors().collect();
    let id_of: HashMap<&Path, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_path(), i))
        .collect();
    let search = SearchOptions {
        k: opts.neighbours + 1,
        ef: opts.ef.max(opts.neighbours + 1),
        exact: false,
        min_score: None,
    };
    let views = match (opts.rotations, model) {
        (true, Some(model)) => {
            let paths: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
            rotated_views(model, &paths)?
        }
        (true, None) => {
            return Err(Error::Usage(
                "comparing rotations needs the index's model".into(),
            ))
        }
        (false, _) => vec![Vec::new(); entries.len()],
    };
    // The similarity of two images: their vectors' cosine, or the best of either's rotated
    // views against the other.
    let similarity = |a: usize, b: usize| -> f32 {
        let direct = dot(vectors[a], vectors[b]);
        let turned_a = views[a].iter().map(|v| dot(v, vectors[b]));
        let turned_b = views[b].iter().map(|v| dot(vectors[a], v));
        turned_a.chain(turned_b).fold(direct, f32::max)
    };
    let found: Vec<Vec<(f32, usize, usize)>> = (0..entries.len())
        .into_par_iter()
        .map(|i| -> Result<Vec<(f32, usize, usize)>> {
            let mut pairs = Vec::new();
            let probes = std::iter::once(vectors[i]).chain(views[i].iter().map(Vec::as_slice));
            for probe in probes {
                for h in index.search(probe, &search)? {
                    if h.score < opts.threshold {
                        continue;
                    }
                    if let Some(&j) = id_of.get(h.path.as_path()).filter(|&&j| j != i) {
                        pairs.push((similarity(i, j), i.min(j), i.max(j)));
                    }
                }
            }
            Ok(pairs)
        })
        .collect::<Result<_>>()?;
    let mut pairs: Vec<(f32, usize, usize)> = found.into_iter().flatten().collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    pairs.dedup_by(|a, b| (a.1, a.2) == (b.1, b.2));

    // Complete linkage: merge two groups only if every pair across them is close enough.
    let mut group_of: Vec<usize> = (0..entries.len()).collect();
    let mut members: Vec<Vec<usize>> = (0..entries.len()).map(|i| vec![i]).collect();
    for &(_, i, j) in &pairs {
        let (gi, gj) = (group_of[i], group_of[j]);
        if gi == gj {
            continue;
        }
        let close = members[gi].iter().all(|&a| {
            members[gj]
                .iter()
                .all(|&b| similarity(a, b) >= opts.threshold)
        });
        if !close {
            continue;
        }
        let (big, small) = if members[gi].len() >= members[gj].len() {
            (gi, gj)
        } else {
            (gj, gi)
        };
        let moved = std::mem::take(&mut members[small]);
        for &m in &moved {
            group_of[m] = big;
        }
        members[big].extend(moved);
    }

    let mut groups: Vec<Group> = members
        .into_iter()
        .filter(|m| m.len() > 1)
        .map(|ids| {
            let mut list: Vec<(usize, Member)> = ids
                .iter()
                .map(|&i| {
                    let e = &entries[i];
                    let member = Member {
                        path: e.path.clone(),
                        score: 1.0,
                        pixels: pixels(&e.path),
                        size: e.size,
                        mtime_ns: e.mtime_ns,
                    };
                    (i, member)
                })
                .collect();
            list.sort_by(|(_, a), (_, b)| {
                b.pixels
                    .cmp(&a.pixels)
                    .then(b.size.cmp(&a.size))
                    .then(a.mtime_ns.cmp(&b.mtime_ns))
                    .then(a.path.cmp(&b.path))
            });
            let keep = list[0].0;
            for (i, m) in list.iter_mut().skip(1) {
                m.score = similarity(keep, *i);
            }
            Group {
                members: list.into_iter().map(|(_, m)| m).collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.keep().path.cmp(&b.keep().path))
    });
    Ok(groups)
}

/// Width × height from the image's header (no decoding), or 0.
fn pixels(path: &Path) -> u64 {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or(0, |(w, h)| u64::from(w) * u64::from(h))
}

/// What happened to one duplicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Dry run: nothing done.
    Reported,
    Moved(PathBuf),
    Linked,
    /// Left in place, and why.
    Left(String),
}

/// The files of the groups moved under `dest`, each at its path relative to the index folder
/// that holds it (`roots`); every move is logged in `log` (JSON Lines) before and after it.
pub fn move_duplicates(
    groups: &[Group],
    roots: &[PathBuf],
    dest: &Path,
    log: &Path,
) -> Result<Vec<Vec<Outcome>>> {
    fs::create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    let mut journal = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(log, e))?;
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut outcomes = Vec::new();
        for dup in group.duplicates() {
            let relative = roots
                .iter()
                .find_map(|r| dup.path.strip_prefix(r).ok())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| {
                    dup.path
                        .components()
                        .filter(|c| matches!(c, std::path::Component::Normal(_)))
                        .collect()
                });
            let target = dest.join(&relative);
            if target.exists() {
                outcomes.push(Outcome::Left(format!("{} exists", target.display())));
                continue;
            }
            let record = |state: &str| {
                let mut r = serde_json::Map::new();
                r.insert("op".into(), json!("move"));
                r.insert("state".into(), json!(state));
                put_path(&mut r, "from", &dup.path);
                put_path(&mut r, "to", &target);
                Value::Object(r)
            };
            let write = |journal: &mut fs::File, value: Value, sync: bool| -> Result<()> {
                // One write call per record (an appended line is then whole or absent, but for
                // a kill inside the call itself, which `undo` tolerates on the last line).
                let line = format!("{value}\n");
                journal
                    .write_all(line.as_bytes())
                    .and_then(|()| if sync { journal.sync_all() } else { Ok(()) })
                    .map_err(|e| Error::io(log, e))
            };
            // Logged (and on disk) before the move: after a kill the log names every file
            // that may have moved, and where to.
            write(&mut journal, record("started"), true)?;
            move_file(&dup.path, &target)?;
            write(&mut journal, record("done"), false)?;
            outcomes.push(Outcome::Moved(target));
        }
        out.push(outcomes);
    }
    journal.sync_all().map_err(|e| Error::io(log, e))?;
    Ok(out)
}

/// Moves a file: a rename, or across file systems a copy (fsynced) then removal.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    match fs::rename(from, to) {
        Ok(()) => {
            fsx::sync_dir(to.parent().unwrap_or(Path::new("."))).map_err(|e| Error::io(to, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let bytes = fs::read(from).map_err(|e| Error::io(from, e))?;
            fsx::write_atomic(to, &bytes).map_err(|e| Error::io(to, e))?;
            fs::remove_file(from).map_err(|e| Error::io(from, e))
        }
        Err(e) => Err(Error::io(from, e)),
    }
}

/// What [`undo`] did: the files put back, and those it could not, with why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Undone {
    pub restored: Vec<PathBuf>,
    pub left: Vec<(PathBuf, String)>,
}

/// Restores the files an undo log says were moved (or may have been, when a run was killed):
/// each goes back to where it was unless something is there again.
pub fn undo(log: &Path) -> Result<Undone> {
    let file = fs::File::open(log).map_err(|e| Error::io(log, e))?;
    let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(log, e))?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A line cut by a kill is the last one (skipped: a "started" record is fsynced before
        // its move, so a cut one names no file that moved); a damaged line elsewhere is an error.
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if Some(n) == last => continue,
            Err(e) => {
                return Err(Error::Usage(format!(
                    "{}: line {} is not an undo record: {e}",
                    log.display(),
                    n + 1
                )))
            }
        };
        if value["op"] == "move" && value["state"] == "started" {
            moves.push((path_of(&value, "from"), path_of(&value, "to")));
        }
    }
    let (mut restored, mut left) = (Vec::new(), Vec::new());
    for (from, to) in moves.into_iter().rev() {
        if from.exists() {
            // Never moved (killed before the rename), or already restored.
            if to.exists() && same_bytes(&from, &to) {
                // A cross-device copy that was not yet removed from its source.
                let _ = fs::remove_file(&to);
            }
            continue;
        }
        if !to.exists() {
            left.push((from, "not found where it was moved".into()));
            continue;
        }
        move_file(&to, &from)?;
        restored.push(from);
    }
    Ok(Undone { restored, left })
}

fn path_of(record: &Value, key: &str) -> PathBuf {
    get_path(record, key).unwrap_or_default()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y)
        }
        _ => false,
    }
}

/// Replaces each duplicate whose bytes equal the kept file's by a hard link to it (made beside
/// the copy, then renamed over it); the others are left, with the reason.
pub fn hardlink_duplicates(groups: &[Group]) -> Result<Vec<Vec<Outcome>>> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let keep = &group.keep().path;
        let mut outcomes = Vec::new();
        for dup in group.duplicates() {
            if !same_bytes(keep, &dup.path) {
                outcomes.push(Outcome::Left("its bytes differ from the kept file".into()));
                continue;
            }
            let name = dup
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dup.path.with_file_name(format!(".{name}.imgsearch-link"));
            let _ = fs::remove_file(&tmp);
            fs::hard_link(keep, &tmp).map_err(|e| Error::io(&tmp, e))?;
            if let Err(e) = fs::rename(&tmp, &dup.path) {
                let _ = fs::remove_file(&tmp);
                return Err(Error::io(&dup.path, e));
            }
            outcomes.push(Outcome::Linked);
        }
        out.push(outcomes);
    }
    Ok(out)
}
