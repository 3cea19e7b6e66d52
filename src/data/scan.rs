//! Recursive folder scan: every regular, non-hidden file is a candidate image.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A file found by a scan, with what incremental indexing needs to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Absolute path.
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The files under some roots, sorted by path, and the entries that could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<FileInfo>,
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Walks each root (a folder, or a single file). Hidden files and folders are left out.
/// A root that does not exist is an error; an unreadable entry below it is reported, not fatal.
pub fn scan(roots: &[PathBuf]) -> Result<Scan> {
    let mut out = Scan::default();
    for root in roots {
        let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
        std::fs::metadata(&root).map_err(|e| Error::io(&root, e))?;
        let walker = walkdir::WalkDir::new(&root)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone());
                    out.unreadable.push((path, e.to_string()));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => out.files.push(FileInfo {
                    path: entry.into_path(),
                    size: meta.len(),
                    mtime_ns: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos() as i64),
                }),
                Err(e) => out.unreadable.push((entry.into_path(), e.to_string())),
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}
