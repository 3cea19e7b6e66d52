//! [`IndexError`], the index's error type: every message names the file or folder involved
//! and says what to do.

use std::path::{Path, PathBuf};

/// What to do about a damaged file.
const REPAIR: &str =
    "run `imgsearch index --repair` to drop what is damaged and embed those images again";
/// What to do about a format this build cannot read.
const REINDEX: &str = "use the imgsearch that made it, or index into a new folder";

/// Errors of the index. Every message names the file or folder involved.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {}: run `imgsearch index DIR` first", .0.display())]
    Missing(PathBuf),
    #[error("{} is a file, not an index folder: give --index a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error(
        "index {} is being built by another imgsearch process and has no commit yet: \
         try again in a moment (it commits every few thousand images or 30 s)",
        .0.display()
    )]
    Building(PathBuf),
    #[error("index file {} is corrupt ({reason}): {REPAIR}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "index file {} has format version {found} but this imgsearch reads version {expected}: {REINDEX}",
        path.display()
    )]
    Version {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error(
        "cannot repair index {}: {reason}, so the folders to embed again are not known: \
         nothing was changed; name them: `imgsearch index --repair --index {} FOLDER...`",
        dir.display(), dir.display()
    )]
    FoldersUnknown { dir: PathBuf, reason: String },
    #[error("another imgsearch process is writing {}", .0.display())]
    Locked(PathBuf),
    #[error(
        "index {} was built with model {index_model_id} ({index_model_name}) but the \
         current model is {model_id} ({model_name}): use the same model, or index into another folder",
        dir.display()
    )]
    ModelMismatch {
        dir: PathBuf,
        index_model_id: String,
        index_model_name: String,
        model_id: String,
        model_name: String,
    },
    #[error(
        "vector of dimension {found} given to index {} of dimension {expected}",
        dir.display()
    )]
    DimMismatch {
        dir: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("invalid input for index {}: {reason}", dir.display())]
    Invalid { dir: PathBuf, reason: String },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IndexError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// What is wrong, without the advice to repair (for what a repair itself reports).
    pub(crate) fn damage(&self) -> String {
        match self {
            IndexError::Corrupt { path, reason } => format!("{}: {reason}", path.display()),
            other => other.to_string(),
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        IndexError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
