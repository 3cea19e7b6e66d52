//! What `dups` does with groups. Actions never delete: `--move DEST` moves every non-kept
//! copy under DEST (its path relative to the index folder that holds it), logging each move
//! before and after it in an undo log, so a `kill -9` leaves every file in place or moved and
//! the log says which; [`undo`] restores them. `--hardlink` replaces a copy by a hard link to
//! the kept file only when the bytes are identical.

use super::Group;
use crate::error::{Error, Result};
use crate::fsx;
use crate::json_path::{get_path, put_path};
use serde_json::{json, Value};
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

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
