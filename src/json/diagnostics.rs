//! The records of what went wrong along the way: a file left out (`skip`), a `warning`, and the
//! `error` a failed command ends with (also the body of the HTTP API's errors).

use super::fields::PathField;
use serde::Serialize;
use std::path::Path;

/// A file left out: `{"type": "skip", "path", "reason"}`.
#[derive(Serialize)]
pub struct SkipRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    pub path: PathField,
    pub reason: String,
}

impl SkipRecord {
    pub fn new(path: &Path, reason: &str) -> Self {
        SkipRecord {
            kind: "skip",
            path: PathField::new("path", path),
            reason: reason.to_string(),
        }
    }
}

/// `{"type": "warning", "message"}`.
#[derive(Serialize)]
pub struct WarningRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub message: String,
}

impl WarningRecord {
    pub fn new(message: &str) -> Self {
        WarningRecord {
            kind: "warning",
            message: message.to_string(),
        }
    }
}

/// `{"type": "error", "message"}`, with the `path` it is about when there is one; the HTTP
/// API answers its errors with it too.
#[derive(Serialize)]
pub struct ErrorRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    pub message: String,
    #[serde(flatten)]
    pub path: Option<PathField>,
}

impl ErrorRecord {
    pub fn new(message: &str, path: Option<&Path>) -> Self {
        ErrorRecord {
            kind: "error",
            message: message.to_string(),
            path: path.map(|p| PathField::new("path", p)),
        }
    }
}
