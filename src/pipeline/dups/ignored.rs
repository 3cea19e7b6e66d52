//! Decisions that last: pairs of images a person said are not duplicates, kept in
//! `dups-ignored.json` in the index folder so that later runs never group them again.
//!
//! The file (written atomically through `fsx`) is JSON:
//! `{"version": 1, "pairs": [["/abs/a.jpg", "/abs/b.jpg"], ...]}`, each pair's paths as the
//! index stores them (absolute), in sorted order, each pair once.

use crate::error::{Error, Result};
use crate::fsx;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The file's name inside the index folder.
pub const IGNORED_FILE: &str = "dups-ignored.json";

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    pairs: Vec<(PathBuf, PathBuf)>,
}

/// The pairs never to be grouped together.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ignored {
    pairs: BTreeSet<(PathBuf, PathBuf)>,
}

fn ordered(a: &Path, b: &Path) -> (PathBuf, PathBuf) {
    if a <= b {
        (a.to_path_buf(), b.to_path_buf())
    } else {
        (b.to_path_buf(), a.to_path_buf())
    }
}

impl Ignored {
    /// The decisions kept in `index_dir` (none if the file does not exist yet).
    pub fn load(index_dir: &Path) -> Result<Self> {
        let path = index_dir.join(IGNORED_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let file: File = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!("{}: not a dups ignore file: {e}", path.display()))
        })?;
        if file.version != 1 {
            return Err(Error::Usage(format!(
                "{}: unknown version {}",
                path.display(),
                file.version
            )));
        }
        let pairs = file.pairs.iter().map(|(a, b)| ordered(a, b)).collect();
        Ok(Ignored { pairs })
    }

    /// Records every pair among `paths` (a group, or a pair) as not duplicates; returns how
    /// many pairs were new. Paths are made absolute, as the index stores them.
    pub fn add_group(&mut self, paths: &[PathBuf]) -> Result<usize> {
        if paths.len() < 2 {
            return Err(Error::Usage(
                "--ignore needs at least two images (a pair or a whole group)".into(),
            ));
        }
        let absolute: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::fs::canonicalize(p).map_err(|e| Error::io(p, e)))
            .collect::<Result<_>>()?;
        let before = self.pairs.len();
        for (i, a) in absolute.iter().enumerate() {
            for b in &absolute[i + 1..] {
                if a != b {
                    self.pairs.insert(ordered(a, b));
                }
            }
        }
        Ok(self.pairs.len() - before)
    }

    /// Writes the decisions into `index_dir`, replacing the file atomically.
    pub fn save(&self, index_dir: &Path) -> Result<()> {
        let path = index_dir.join(IGNORED_FILE);
        let file = File {
            version: 1,
            pairs: self.pairs.iter().cloned().collect(),
        };
        // A path that is not UTF-8 cannot be written as JSON text: an error, not a panic.
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        fsx::write_atomic(&path, &json).map_err(|e| Error::io(&path, e))
    }

    /// The decisions of both: those of a library's index folder beside those of the new photos'.
    pub fn merged(mut self, other: Ignored) -> Ignored {
        self.pairs.extend(other.pairs);
        self
    }

    /// Whether `a` and `b` were said not to be duplicates.
    pub fn contains(&self, a: &Path, b: &Path) -> bool {
        !self.pairs.is_empty() && self.pairs.contains(&ordered(a, b))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Records every pair among `paths` (a pair, or a whole group a person judged wrong) as not
/// duplicates in `index_dir`'s file: loaded, extended and replaced atomically. What `dups
/// --ignore` and the web page's "not duplicates" button both do. Returns the pairs added and
/// the pairs recorded in all.
pub fn record_ignored(index_dir: &Path, paths: &[PathBuf]) -> Result<(usize, usize)> {
    let mut ignored = Ignored::load(index_dir)?;
    let added = ignored.add_group(paths)?;
    ignored.save(index_dir)?;
    Ok((added, ignored.len()))
}
