//! The library's error type: every variant names the file it is about.

use std::path::PathBuf;

/// Errors of the data, model and training layers. The index has its own
/// [`crate::index::IndexError`], wrapped here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("{path}: no images found")]
    NoImages { path: PathBuf },
    #[error("training diverged at epoch {epoch}, step {step}: the {term} loss is {value}; the last good checkpoint is kept in {checkpoint}")]
    Diverged {
        epoch: usize,
        step: usize,
        term: &'static str,
        value: f32,
        checkpoint: PathBuf,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Index(Box<crate::index::IndexError>),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::index::IndexError> for Error {
    fn from(e: crate::index::IndexError) -> Self {
        Error::Index(Box::new(e))
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
