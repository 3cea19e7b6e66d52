//! Near-duplicate groups from an index's own vectors, and what to do with them.
//!
//! Candidates come from each image's nearest neighbours at cosine >= the threshold (and, by
//! default, those of its turned and mirrored views). Each candidate pair then passes a pixel check
//! ([`verify`]): aligned grey levels of a copy correlate almost perfectly, those of another
//! photo of the same scene do not; this is what keeps precision while the cosine threshold is
//! low enough to catch crops and captions. Groups are
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

mod verify;

pub use verify::{copy_score, Fingerprint};

use super::query::QUERY_BATCH;
use crate::data;
use crate::error::{Error, Result};
use crate::fsx;
use crate::index::{dot, SearchOptions};
use crate::json_path::{get_path, put_path};
use crate::model::Model;
use crate::store::Store;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Cosine at or above which two images are candidates unless told otherwise, and the copy
/// score a candidate pair needs, chosen on `examples/dups_bench.rs` with the bundled model
/// (docs/DUPS.md: F1 0.900; 0.75 reached 0.915 but passes many more candidates to the check,
/// the cost on a large library).
pub const DEFAULT_THRESHOLD: f32 = 0.85;
pub const DEFAULT_COPY_SCORE: f32 = 0.93;
/// The default cosine threshold without the pixel check: the cosine alone has to hold
/// precision up (best F1 of the cosine alone on the same benchmark).
pub const UNVERIFIED_THRESHOLD: f32 = 0.97;

/// How groups are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DupsOptions {
    pub threshold: f32,
    /// Also compare each image turned a quarter and mirrored (decodes every image once more
    /// and embeds those two views; needs the index's model).
    pub rotations: bool,
    /// The copy score ([`copy_score`]) a candidate pair needs; `None`: cosine alone.
    pub verify: Option<f32>,
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
            verify: Some(DEFAULT_COPY_SCORE),
            neighbours: 16,
            ef: 64,
        }
    }
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub path: PathBuf,
    /// Cosine to the group's first (kept) member; 1 for that one.
    pub score: f32,
    /// Copy score against the first member (1 for that one); `None` without the pixel check.
    pub copy_score: Option<f32>,
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

/// The embeddings of each indexed image turned a quarter clockwise and mirrored, in entry
/// order (empty for an image that no longer decodes). One turned view finds both turns: if B
/// is A turned a quarter clockwise, A's view is B; if B is A turned the other way, B's view is
/// A. (A half turn, an upside-down copy, is not looked for: rare in photos, and one more view
/// would cost as much as each of these.) The mirrored view finds mirrored copies the embedding
/// alone puts under the threshold (61 of 65 found without it on the benchmark, 65 with it).
/// Turning the preprocessed square equals preprocessing the turned image: the crop is centred
/// and square.
fn rotated_views(model: &Model, paths: &[PathBuf]) -> Result<Vec<Vec<Vec<f32>>>> {
    let side = model.preprocess().size as usize;
    let mut views = vec![Vec::new(); paths.len()];
    for batch in data::stream(paths.to_vec(), model.preprocess().clone(), QUERY_BATCH) {
        let squares: Vec<Vec<u8>> = batch
            .items
            .iter()
            .flat_map(|item| [rotate90(&item.rgb, side), mirror(&item.rgb, side)])
            .collect();
        let vectors = model.embed(squares.iter().map(Vec::as_slice))?;
        for (item, two) in batch.items.iter().zip(vectors.chunks(2)) {
            views[item.index] = two.to_vec();
        }
    }
    Ok(views)
}

/// An RGB8 `side × side` square mirrored left to right.
fn mirror(rgb: &[u8], side: usize) -> Vec<u8> {
    moved_pixels(rgb, side, |x, y| (side - 1 - x, y))
}

/// An RGB8 `side × side` square turned 90 degrees clockwise.
fn rotate90(rgb: &[u8], side: usize) -> Vec<u8> {
    moved_pixels(rgb, side, |x, y| (side - 1 - y, x))
}

/// An RGB8 `side × side` square whose pixel (x, y) moves to `to(x, y)`.
fn moved_pixels(rgb: &[u8], side: usize, to: impl Fn(usize, usize) -> (usize, usize)) -> Vec<u8> {
    let mut out = vec![0; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            let (tx, ty) = to(x, y);
            let (from, into) = ((y * side + x) * 3, (ty * side + tx) * 3);
            out[into..into + 3].copy_from_slice(&rgb[from..from + 3]);
        }
    }
    out
}

/// The near-duplicate groups of the index, largest first. `model` (the index's own) is needed
/// for [`DupsOptions::rotations`].
pub fn find_groups(
    store: &dyn Store,
    model: Option<&Model>,
    opts: &DupsOptions,
) -> Result<Vec<Group>> {
    if !(opts.threshold > 0.0 && opts.threshold <= 1.0) {
        return Err(Error::Usage(format!(
            "threshold {} must be above 0 and at most 1",
            opts.threshold
        )));
    }
    let (entries, vectors): (Vec<_>, Vec<Vec<f32>>) =
        store.entries_with_vectors()?.into_iter().unzip();
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
    // The similarity of two images: their vectors' cosine, or the best of either's turned
    // views against the other.
    let similarity = |a: usize, b: usize| -> f32 {
        let direct = dot(&vectors[a], &vectors[b]);
        let turned_a = views[a].iter().map(|v| dot(v, &vectors[b]));
        let turned_b = views[b].iter().map(|v| dot(&vectors[a], v));
        turned_a.chain(turned_b).fold(direct, f32::max)
    };
    let found: Vec<Vec<(f32, usize, usize)>> = (0..entries.len())
        .into_par_iter()
        .map(|i| -> Result<Vec<(f32, usize, usize)>> {
            let mut pairs = Vec::new();
            let probes =
                std::iter::once(vectors[i].as_slice()).chain(views[i].iter().map(Vec::as_slice));
            for probe in probes {
                for h in store.search(probe, &search)? {
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

    // The pixel check of every candidate pair, on fingerprints of the images in one.
    let check = opts.verify.map(|needed| {
        let mut involved: Vec<usize> = pairs.iter().flat_map(|&(_, i, j)| [i, j]).collect();
        involved.sort_unstable();
        involved.dedup();
        // An image that no longer decodes cannot be checked: its pairs fail.
        let prints: HashMap<usize, Fingerprint> = involved
            .par_iter()
            .filter_map(|&i| Some((i, Fingerprint::load(&entries[i].path).ok()?)))
            .collect();
        (needed, prints)
    });
    let copy = |a: usize, b: usize, enough: f32| -> Option<f32> {
        let (_, prints) = check.as_ref()?;
        match (prints.get(&a), prints.get(&b)) {
            (Some(x), Some(y)) => Some(copy_score(x, y, enough)),
            _ => Some(-1.0),
        }
    };
    let passes = |a: usize, b: usize| match &check {
        Some((needed, _)) => copy(a, b, *needed).is_some_and(|s| s >= *needed),
        None => true,
    };
    // Each candidate's verdict, kept: complete linkage below asks again for most of them.
    let verdicts: HashMap<(usize, usize), bool> = match &check {
        None => pairs.iter().map(|&(_, i, j)| ((i, j), true)).collect(),
        Some((needed, prints)) => {
            let passed = passing_pairs(&pairs, prints, *needed);
            pairs
                .iter()
                .map(|&(_, i, j)| ((i, j), passed.contains(&(i, j))))
                .collect()
        }
    };
    pairs.retain(|&(_, i, j)| verdicts[&(i, j)]);
    let duplicates = |a: usize, b: usize| match verdicts.get(&(a.min(b), a.max(b))) {
        Some(&verdict) => verdict,
        None => similarity(a, b) >= opts.threshold && passes(a, b),
    };

    // Complete linkage: merge two groups only if every pair across them is close enough.
    let mut group_of: Vec<usize> = (0..entries.len()).collect();
    let mut members: Vec<Vec<usize>> = (0..entries.len()).map(|i| vec![i]).collect();
    for &(_, i, j) in &pairs {
        let (gi, gj) = (group_of[i], group_of[j]);
        if gi == gj {
            continue;
        }
        let close = members[gi]
            .iter()
            .all(|&a| members[gj].iter().all(|&b| duplicates(a, b)));
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
                        copy_score: check.as_ref().map(|_| 1.0),
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
                // The best alignment, not just "enough".
                m.copy_score = copy(keep, *i, f32::INFINITY);
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

/// The candidate pairs (index order within each) whose copy score reaches `needed`. The check
/// runs both ways round (either image may be the crop of the other); the work is grouped by
/// the image whose windows are compared, so that each image's windows are made once.
fn passing_pairs(
    pairs: &[(f32, usize, usize)],
    prints: &HashMap<usize, Fingerprint>,
    needed: f32,
) -> HashSet<(usize, usize)> {
    let mut against: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(_, i, j) in pairs {
        against.entry(i).or_default().push(j);
        against.entry(j).or_default().push(i);
    }
    against
        .par_iter()
        .flat_map_iter(|(&big, smalls)| {
            let windows = prints.get(&big).map(Fingerprint::windows);
            smalls
                .iter()
                .filter(move |&&small| match (&windows, prints.get(&small)) {
                    (Some(w), Some(p)) => w.match_whole(p, needed) >= needed,
                    _ => false,
                })
                .map(move |&small| (big.min(small), big.max(small)))
                .collect::<Vec<_>>()
        })
        .collect()
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
    let mut moved = 0;
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
            let step = write(&mut journal, record("started"), true)
                .and_then(|()| move_file(&dup.path, &target))
                .and_then(|()| write(&mut journal, record("done"), false));
            if let Err(e) = step {
                return Err(stopped(e, moved, log));
            }
            moved += 1;
            outcomes.push(Outcome::Moved(target));
        }
        out.push(outcomes);
    }
    journal
        .sync_all()
        .map_err(|e| stopped(Error::io(log, e), moved, log))?;
    Ok(out)
}

/// The error that stopped a run of moves (moves fail with I/O errors only), told with what the
/// run had done and how to undo it.
fn stopped(error: Error, moved: usize, log: &Path) -> Error {
    match error {
        Error::Io { path, source } => Error::Io {
            path,
            source: std::io::Error::new(
                source.kind(),
                format!(
                    "{source}; stopped after moving {moved} files: `imgsearch dups --undo {}` \
                     puts them back",
                    log.display()
                ),
            ),
        },
        other => other,
    }
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
        let moved_here = to.exists();
        if from.exists() {
            if !moved_here {
                // Never moved (killed before the rename), or already restored.
                continue;
            }
            if same_bytes(&from, &to) {
                // A cross-device copy that was not yet removed from its source.
                let _ = fs::remove_file(&to);
                continue;
            }
            left.push((
                from,
                format!(
                    "something else is at its path now: the file is kept at {}",
                    to.display()
                ),
            ));
            continue;
        }
        if !moved_here {
            left.push((from, "not found where it was moved".into()));
            continue;
        }
        match move_file(&to, &from) {
            Ok(()) => restored.push(from),
            Err(e) => left.push((from, format!("{e}: the file is kept at {}", to.display()))),
        }
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

#[cfg(test)]
mod tests {
    use super::{mirror, rotate90};

    /// A 2 × 2 square with pixels a b / c d (one grey level each).
    fn square(pixels: [u8; 4]) -> Vec<u8> {
        pixels.iter().flat_map(|&p| [p, p, p]).collect()
    }

    #[test]
    fn views_move_pixels_as_named() {
        let abcd = square([1, 2, 3, 4]);
        // Turned clockwise: c a / d b.
        assert_eq!(rotate90(&abcd, 2), square([3, 1, 4, 2]));
        // Mirrored: b a / d c.
        assert_eq!(mirror(&abcd, 2), square([2, 1, 4, 3]));
        assert_eq!(
            rotate90(&rotate90(&rotate90(&rotate90(&abcd, 2), 2), 2), 2),
            abcd
        );
    }
}
