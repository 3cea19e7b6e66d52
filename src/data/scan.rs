//! Recursive folder scan: every regular, non-hidden file is a candidate image.
//!
//! As fd and ripgrep do, symbolic links below a root are not followed unless asked
//! ([`ScanOptions::follow_links`], `--follow`); a root given as a link is always followed.
//! Following links, a loop or a dangling link is skipped with its reason. One real file
//! (device and inode) is listed once, under the first of its paths in sorted order, however
//! many links or folders lead to it.

use crate::error::{Error, Result};
use std::collections::HashMap;
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

/// How to walk the roots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Follow symbolic links below the roots (with loop detection).
    pub follow_links: bool,
}

/// The files under some roots, sorted by path, and what was left out.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<FileInfo>,
    /// Entries that could not be read, or were left out, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Symbolic links not followed (without [`ScanOptions::follow_links`]).
    pub links_not_followed: usize,
}

/// The absolute, canonical form of a root (links resolved, so a folder and a link to it are
/// one root). A root that does not exist is an error naming it.
pub fn canonical_root(root: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(root).map_err(|e| Error::io(root, e))
}

/// Walks each root (a folder, or a single file). Hidden files and folders are left out.
/// A root that does not exist is an error; an unreadable entry below it is reported, not fatal.
pub fn scan(roots: &[PathBuf]) -> Result<Scan> {
    scan_with(roots, ScanOptions::default())
}

/// [`scan`] with options.
pub fn scan_with(roots: &[PathBuf], options: ScanOptions) -> Result<Scan> {
    let mut out = Scan::default();
    // (device, inode) of every file kept, so that no real file is listed twice.
    let mut seen: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut found: Vec<(FileInfo, Option<(u64, u64)>)> = Vec::new();
    for root in roots {
        let root = canonical_root(root)?;
        let walker = walkdir::WalkDir::new(&root)
            .follow_links(options.follow_links)
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
                    out.unreadable.push((path, walk_error(&e)));
                    continue;
                }
            };
            if entry.path_is_symlink() && !options.follow_links && entry.depth() > 0 {
                out.links_not_followed += 1;
                continue;
            }
            if !entry.file_type().is_file() {
                continue;
            }
            match entry.metadata() {
                Ok(meta) => {
                    let info = FileInfo {
                        path: entry.into_path(),
                        size: meta.len(),
                        mtime_ns: meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos() as i64),
                    };
                    found.push((info, file_id(&meta)));
                }
                Err(e) => out.unreadable.push((entry.into_path(), e.to_string())),
            }
        }
    }
    found.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    found.dedup_by(|a, b| a.0.path == b.0.path);
    for (info, id) in found {
        if let Some(id) = id {
            if let Some(first) = seen.get(&id) {
                let reason = format!("the same file as {}", first.display());
                out.unreadable.push((info.path, reason));
                continue;
            }
            seen.insert(id, info.path.clone());
        }
        out.files.push(info);
    }
    Ok(out)
}

/// A walk error in words: loops and dangling links say so.
fn walk_error(e: &walkdir::Error) -> String {
    if let Some(ancestor) = e.loop_ancestor() {
        return format!(
            "symbolic link loop (leads back to {}): not followed",
            ancestor.display()
        );
    }
    match e.io_error() {
        Some(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "dangling symbolic link (its target does not exist)".into()
        }
        Some(io) => io.to_string(),
        None => e.to_string(),
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}
