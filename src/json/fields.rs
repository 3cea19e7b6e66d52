//! The pieces every record is built from: the schema version and the `"type"`/`"command"`/
//! `"schema"` head of a summary ([`Head`]), paths carried without loss ([`PathField`],
//! [`PathOrNull`], [`FolderRecord`]), where a summary's store is ([`Place`]), an image's stable
//! id, and settings written as the short decimals the user typed ([`setting`]).

use crate::index::ImageId;
use crate::json_path::put_path;
use crate::store::Location;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Version of the record types below; bumped when a field changes meaning or goes away
/// (new fields may be added within a version).
pub const SCHEMA_VERSION: u64 = 1;

/// A path under a record's key, with `<key>_bytes` beside it when the path is not UTF-8
/// ([`put_path`]); flattened into the record that holds it, so its keys keep their place.
pub struct PathField {
    key: &'static str,
    path: PathBuf,
}

impl PathField {
    pub fn new(key: &'static str, path: &Path) -> Self {
        PathField {
            key,
            path: path.to_path_buf(),
        }
    }

    /// The path itself, as the text form shows it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Serialize for PathField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        path_entries(serializer, self.key, Some(&self.path))
    }
}

/// A path a record may not have: `"<key>": null` then (the key is always there), else as a
/// [`PathField`]; flattened like one.
pub struct PathOrNull {
    key: &'static str,
    path: Option<PathBuf>,
}

impl PathOrNull {
    pub fn new(key: &'static str, path: Option<&Path>) -> Self {
        PathOrNull {
            key,
            path: path.map(Path::to_path_buf),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Serialize for PathOrNull {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        path_entries(serializer, self.key, self.path.as_deref())
    }
}

/// `key` (null without a path) and, for a path that is not UTF-8, `<key>_bytes`, as a map
/// that the record holding them flattens.
fn path_entries<S: Serializer>(
    serializer: S,
    key: &str,
    path: Option<&Path>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut entries = Map::new();
    match path {
        Some(path) => put_path(&mut entries, key, path),
        None => {
            entries.insert(key.into(), Value::Null);
        }
    }
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in &entries {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// A folder (or a file) in a list: `{"path"}`.
#[derive(Serialize)]
pub struct FolderRecord {
    #[serde(flatten)]
    pub path: PathField,
}

impl FolderRecord {
    pub(super) fn list(paths: &[PathBuf]) -> Vec<FolderRecord> {
        paths
            .iter()
            .map(|p| FolderRecord {
                path: PathField::new("path", p),
            })
            .collect()
    }
}

/// An image's stable id as the HTTP API addresses it.
pub(super) fn image_id(path: &Path) -> String {
    ImageId::of(path).to_string()
}

/// A setting the user typed as a short decimal, printed as one (0.85, not the f32's
/// 0.8500000238418579).
pub fn setting(value: f32) -> f64 {
    (f64::from(value) * 1e6).round() / 1e6
}

/// The first fields of a record: its `"type"`, and for a summary the `"command"` and the
/// `"schema"` version.
#[derive(Serialize)]
pub(super) struct Head {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'static str,
    schema: u64,
}

impl Head {
    pub(super) fn summary(command: &'static str) -> Self {
        Head {
            kind: "summary",
            command,
            schema: SCHEMA_VERSION,
        }
    }
}

/// Where a summary's store is: `"index"` (its folder; `"index_bytes"` when the path is not
/// UTF-8), or for a PostgreSQL store a null index and `"store"`, the URL without its password.
#[derive(Serialize)]
pub struct Place {
    pub index: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_bytes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl Place {
    pub fn of(location: &Location) -> Self {
        match location {
            Location::Local(dir) => {
                let mut r = Map::new();
                put_path(&mut r, "index", dir);
                let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
                Place {
                    index: text("index"),
                    index_bytes: text("index_bytes"),
                    store: None,
                }
            }
            Location::Postgres(_) => Place {
                index: None,
                index_bytes: None,
                store: Some(location.describe()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::LoadStats;
    use crate::json::{ErrorRecord, LoadRecord, SkipRecord};

    use base64::Engine;

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_round_trips_through_its_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/photos/a\xffb.jpg"));
        let line = serde_json::to_value(SkipRecord::new(path, "not an image")).expect("json");
        assert_eq!(line["path"], "/photos/a\u{fffd}b.jpg");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line["path_bytes"].as_str().expect("bytes"))
            .expect("base64");
        assert_eq!(bytes, b"/photos/a\xffb.jpg");
        let plain =
            serde_json::to_value(SkipRecord::new(Path::new("/photos/ab.jpg"), "x")).expect("json");
        assert!(plain.get("path_bytes").is_none());
    }

    #[test]
    fn an_absent_path_is_left_out_or_null_as_its_record_says() {
        let error = serde_json::to_string(&ErrorRecord::new("gone", None)).expect("json");
        assert_eq!(error, r#"{"type":"error","message":"gone"}"#);
        let load = LoadRecord::new(&LoadStats::default());
        let load = serde_json::to_string(&load).expect("json");
        assert_eq!(
            load,
            r#"{"decoded":0,"from_cache":0,"seconds":0.0,"rebuilt":null,"cache":null}"#
        );
    }
}
