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
    /// A model folder, its config or its weights.
    #[error("{path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// A training checkpoint (`checkpoint.json` / `checkpoint.safetensors`).
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// The pixel cache of a training run.
    #[error("{path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("{path}: no images found")]
    NoImages { path: PathBuf },
    #[error("training diverged at epoch {epoch}, step {step}: the {term} loss is {value}; {}", kept(.checkpoint.as_deref()))]
    Diverged {
        epoch: usize,
        step: usize,
        term: &'static str,
        value: f32,
        /// The last good checkpoint, when one was written before.
        checkpoint: Option<PathBuf>,
    },
    /// A PostgreSQL store: `store` is its URL without the password.
    #[error("store {store}: {reason}")]
    Store { store: String, reason: String },
    /// Options that cannot work together (exit code 2, like a command-line usage error).
    #[error("{0}")]
    Usage(String),
    /// The HTTP server could not start or keep running: its address taken, its threads not
    /// started (a runtime failure, exit code 1).
    #[error("{0}")]
    Server(String),
    #[error(transparent)]
    Index(Box<crate::index::IndexError>),
    #[error("tensor error: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// What a diverged run left: its last good checkpoint, or none.
fn kept(checkpoint: Option<&std::path::Path>) -> String {
    match checkpoint {
        Some(path) => format!("the last good checkpoint is kept in {}", path.display()),
        None => "no checkpoint was written before it: try a lower --lr".into(),
    }
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set
/// (errors are one line).
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::index::IndexError> for Error {
    fn from(e: crate::index::IndexError) -> Self {
        Error::Index(Box::new(e))
    }
}

impl Error {
    /// The file or folder the error is about, if it names one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::Image { path, .. }
            | Error::Model { path, .. }
            | Error::Checkpoint { path, .. }
            | Error::Cache { path, .. }
            | Error::NoImages { path } => Some(path),
            _ => None,
        }
    }

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

    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn cache(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Cache {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
