//! Paths in JSON without loss: a path is written as its text (invalid UTF-8 replaced by
//! U+FFFD) and, when it is not valid UTF-8, a sibling `<key>_bytes` with its raw bytes in
//! standard base64, as ripgrep does; [`get_path`] reads the pair back.

use base64::Engine;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Sets `key` to the path's text, and `<key>_bytes` to its raw bytes when it is not UTF-8.
pub fn put_path(record: &mut Map<String, Value>, key: &str, path: &Path) {
    let text = path.to_string_lossy();
    record.insert(key.to_string(), Value::String(text.into_owned()));
    if path.to_str().is_none() {
        let bytes = path.as_os_str().as_encoded_bytes();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        record.insert(format!("{key}_bytes"), Value::String(encoded));
    }
}

/// The path `put_path` wrote under `key` (its bytes when present), if any.
pub fn get_path(record: &Value, key: &str) -> Option<PathBuf> {
    let bytes = record
        .get(format!("{key}_bytes"))
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    match bytes {
        Some(bytes) => Some(from_bytes(bytes)),
        None => record.get(key)?.as_str().map(PathBuf::from),
    }
}

#[cfg(unix)]
fn from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}
