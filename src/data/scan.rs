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
/// one root). A root that does not exist, or is neither a folder nor a regular file (a device,
/// a FIFO), is an error naming it.
pub fn canonical_root(root: &Path) -> Result<PathBuf> {
    let path = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    let kind = std::fs::metadata(&path)
        .map_err(|e| Error::io(root, e))?
        .file_type();
    if !kind.is_dir() && !kind.is_file() {
        return Err(Error::io(
            root,
            std::io::Error::other(format!(
                "{}, not a folder or an image file",
                special_kind(&kind)
            )),
        ));
    }
    Ok(path)
}

/// What a file that is neither a folder nor a regular file is, in words.
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if kind.is_symlink() {
        return "a symbolic link";
    }
    "not a regular file"
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
            let kind = entry.file_type();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                // Reported as every other skip is: a FIFO would block a reader forever.
                let reason = format!("{}, not an image file", special_kind(&kind));
                out.unreadable.push((entry.into_path(), reason));
                continue;
            }
            match entry.metadata() {
                Ok(meta) => {
                    let info = FileInfo {
                        path: entry.into_path(),
                        size: meta.len(),
                        mtime_ns: mtime_ns(&meta),
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

/// A file's modification time as the index records it: nanoseconds since the Unix epoch, 0
/// when unknown.
fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A file found by a scan, opened only if it is still that file: a regular file of the size
/// and modification time the scan recorded, checked on the open file itself (so a file
/// replaced after the check is not read instead). A file swapped for a link to another one, or
/// replaced by something else, is an error saying so, and nothing of it is read.
pub fn open_unchanged(path: &Path, size: u64, mtime: i64) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() || meta.len() != size || mtime_ns(&meta) != mtime {
        return Err(Error::io(
            path,
            std::io::Error::other(
                "no longer the file that was indexed (its type, size or modification time \
                 changed): index its folder again",
            ),
        ));
    }
    Ok(file)
}

/// The bytes of [`open_unchanged`]'s file: at most the recorded size, so a file that grows
/// while it is read is not read past it.
pub fn read_unchanged(path: &Path, size: u64, mtime: i64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = open_unchanged(path, size, mtime)?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
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
