//! The one place that writes files whole and maps them: atomic replacement (a temporary file
//! beside the target, flushed and fsynced, renamed over it, then the folder fsynced), so a
//! reader or a crash sees the old file or the new one, never a part; and read-only maps of
//! files that nothing rewrites in place. Every layer that saves a file goes through here:
//! models and checkpoints, the pixel cache, the index manifest, contact sheets.

use memmap2::Mmap;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file being written beside its final path, which it replaces only on [`commit`]. Dropped
/// without a commit (an error, a panic), it removes its temporary file and leaves the old one.
///
/// [`commit`]: AtomicFile::commit
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing the replacement of `path` (a hidden `.NAME.PID.tmp` beside it).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Process id and a per-process counter: two threads (two server requests making the
        // same thumbnail) never share a temporary file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let file = File::create(&tmp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already committed"))
    }

    /// Flushes and fsyncs the new file, renames it over the final path and fsyncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("committed twice"))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out()?.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.out()?.seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs a folder so that a rename or a file created in it is durable. A no-op where
/// folders cannot be opened (Windows). An empty path is the current folder.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Maps a whole file read-only.
///
/// Callers only map files that nothing rewrites in place: committed index files (immutable
/// once a manifest names them: new data always goes to new names, old files are only deleted)
/// and files replaced through [`AtomicFile`] (a rename leaves an existing map on the old
/// inode). Deleting a mapped file keeps the map valid.
pub fn map_readonly(file: &File) -> io::Result<Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the map aliases the file: if another process
    // wrote to or truncated the file while it is mapped, the bytes behind the slices would
    // change or the access would fault (SIGBUS). imgsearch never writes into a file after it
    // is complete (see above: immutable index files, atomic replacement everywhere else), so
    // the contents are fixed for the life of the map; the borrow checker keeps every slice
    // from outliving the `Mmap` it borrows. A file changed behind imgsearch's back by another
    // program is outside what any mmap-based reader can defend against.
    unsafe { Mmap::map(file) }
}
