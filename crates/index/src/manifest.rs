//! `manifest.json`: the one mutable file of an index. It names every file of the current
//! generation and carries a CRC32 of its own body; it is replaced atomically (temp file, fsync,
//! rename, fsync of the directory).
//!
//! On disk: `{"crc32":"<8 hex digits>","manifest":<body>}` followed by a newline, where the CRC is
//! over the exact bytes of `<body>` (pretty-printed JSON of [`Manifest`]).

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::IndexError;
use super::types::{IndexMeta, StoredPath};
use crate::fsx;

/// Version of the whole on-disk format (manifest and every binary file).
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

const PREFIX: &str = "{\"crc32\":\"";
const MIDDLE: &str = "\",\"manifest\":";

/// The body of `manifest.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Manifest {
    pub format_version: u32,
    /// Incremented by every commit.
    pub generation: u64,
    /// Id for the next segment a writer creates (ids are never reused once committed).
    pub next_segment_id: u64,
    pub meta: IndexMeta,
    pub segments: Vec<SegmentRecord>,
    /// The folders (or files) the index was given, absolute and canonical: a re-run without
    /// folders scans these. Absent in indexes made before folders were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<StoredPath>,
    /// When the generation was committed, in seconds since the Unix epoch.
    #[serde(default)]
    pub committed_unix: u64,
}

/// One segment of a generation: its immutable files and their checksums.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct SegmentRecord {
    pub id: u64,
    /// Rows in the segment, deleted ones included.
    pub count: u64,
    pub vec_file: String,
    pub vec_crc32: u32,
    pub entries_file: String,
    pub entries_crc32: u32,
    #[serde(default)]
    pub graph_file: Option<String>,
    #[serde(default)]
    pub graph_crc32: Option<u32>,
    #[serde(default)]
    pub del_file: Option<String>,
    #[serde(default)]
    pub del_crc32: Option<u32>,
    /// Rows marked deleted in `del_file`.
    #[serde(default)]
    pub deleted: u64,
}

impl SegmentRecord {
    pub(crate) fn live(&self) -> u64 {
        self.count - self.deleted
    }

    /// Every file this record names.
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.vec_file.as_str()),
            Some(self.entries_file.as_str()),
            self.graph_file.as_deref(),
            self.del_file.as_deref(),
        ]
        .into_iter()
        .flatten()
    }
}

impl Manifest {
    pub(crate) fn new(meta: IndexMeta) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            generation: 0,
            next_segment_id: 1,
            meta,
            segments: Vec::new(),
            roots: Vec::new(),
            committed_unix: 0,
        }
    }

    /// Read and verify `dir/manifest.json`; `Ok(None)` if there is none.
    pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>, IndexError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IndexError::io(&path, e)),
        };
        Manifest::decode(&path, &bytes).map(Some)
    }

    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest, IndexError> {
        let corrupt = |reason: &str| IndexError::corrupt(path, reason);
        let rest = bytes
            .strip_prefix(PREFIX.as_bytes())
            .ok_or_else(|| corrupt("does not start with the checksum field"))?;
        let (hex, rest) = rest
            .split_at_checked(8)
            .ok_or_else(|| corrupt("too short"))?;
        let crc = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| corrupt("unreadable checksum"))?;
        let rest = rest
            .strip_prefix(MIDDLE.as_bytes())
            .ok_or_else(|| corrupt("malformed checksum wrapper"))?;
        let body = rest
            .trim_ascii_end()
            .strip_suffix(b"}")
            .ok_or_else(|| corrupt("truncated (no closing brace)"))?;
        let found = crc32fast::hash(body);
        if found != crc {
            return Err(IndexError::corrupt(
                path,
                format!("checksum mismatch: crc32 {found:08x}, file says {crc:08x}"),
            ));
        }
        Manifest::decode_body(path, body)
    }

    /// What can still be read of a manifest that [`read`](Self::read) refuses: its body, if it
    /// is whole, valid JSON of a manifest that passes the structural checks, whatever its
    /// checksum and wrapper say. A repair starts from it (each segment it names is then checked
    /// against its own checksums, and the folders it records are scanned again); `None` when
    /// even that cannot be read.
    pub(crate) fn salvage(dir: &Path) -> Option<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = fs::read(&path).ok()?;
        let key = b"\"manifest\":";
        let start = bytes.windows(key.len()).position(|w| w == key)? + key.len();
        let body = bytes[start..].trim_ascii_end().strip_suffix(b"}")?;
        Manifest::decode_body(&path, body).ok()
    }

    /// The manifest in `body` (the JSON inside the checksum wrapper), checked.
    fn decode_body(path: &Path, body: &[u8]) -> Result<Manifest, IndexError> {
        let corrupt = |reason: &str| IndexError::corrupt(path, reason);
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| corrupt(&format!("invalid JSON: {e}")))?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt("no format_version"))?;
        if version != u64::from(FORMAT_VERSION) {
            return Err(IndexError::Version {
                path: path.to_path_buf(),
                found: version,
                expected: FORMAT_VERSION.into(),
            });
        }
        let m: Manifest =
            serde_json::from_value(value).map_err(|e| corrupt(&format!("bad manifest: {e}")))?;
        m.validate(path)?;
        Ok(m)
    }

    /// Structural checks that keep later code free of surprises (and of path traversal).
    fn validate(&self, path: &Path) -> Result<(), IndexError> {
        let corrupt = |reason: String| Err(IndexError::corrupt(path, reason));
        if self.meta.dim == 0 || self.meta.dim > u32::MAX as usize {
            return corrupt(format!("invalid dimension {}", self.meta.dim));
        }
        let mut ids = HashSet::new();
        for s in &self.segments {
            if !ids.insert(s.id) || s.id >= self.next_segment_id {
                return corrupt(format!("segment id {} duplicated or out of range", s.id));
            }
            if s.count == 0 || s.count > u64::from(u32::MAX) || s.deleted > s.count {
                return corrupt(format!("segment {} has bad counts", s.id));
            }
            if s.graph_file.is_some() != s.graph_crc32.is_some()
                || s.del_file.is_some() != s.del_crc32.is_some()
                || (s.del_file.is_none() && s.deleted != 0)
            {
                return corrupt(format!("segment {} names files without checksums", s.id));
            }
            for f in s.files() {
                if !is_plain_name(f) {
                    return corrupt(format!("segment {} names an invalid file {f:?}", s.id));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let body = serde_json::to_vec_pretty(self)?;
        let crc = crc32fast::hash(&body);
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(PREFIX.as_bytes());
        out.extend_from_slice(format!("{crc:08x}").as_bytes());
        out.extend_from_slice(MIDDLE.as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(b"}\n");
        Ok(out)
    }

    /// Atomically replace `dir/manifest.json` with this manifest.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), IndexError> {
        let dest = dir.join(MANIFEST_FILE);
        let bytes = self
            .encode()
            .map_err(|e| IndexError::io(&dest, std::io::Error::other(e)))?;
        fsx::write_atomic(&dest, &bytes).map_err(|e| IndexError::io(&dest, e))
    }

    /// Live (non-deleted) rows over all segments.
    pub(crate) fn live(&self) -> u64 {
        self.segments.iter().map(SegmentRecord::live).sum()
    }
}

/// A file name without directories, dots-only names or odd characters.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(crate) fn vec_file(id: u64) -> String {
    format!("seg-{id:06}.vec")
}

pub(crate) fn entries_file(id: u64) -> String {
    format!("seg-{id:06}.ent")
}

pub(crate) fn graph_file(id: u64) -> String {
    format!("seg-{id:06}.hnsw")
}

pub(crate) fn del_file(id: u64, generation: u64) -> String {
    format!("seg-{id:06}.del-{generation:06}")
}

/// Whether a file in an index directory is one the engine writes (and so may garbage-collect
/// when no manifest names it).
pub(crate) fn is_engine_file(name: &str) -> bool {
    // `.manifest.json.PID.tmp`: a manifest replacement that never landed (`fsx::AtomicFile`).
    let manifest_tmp = name.starts_with(".manifest.json.") && name.ends_with(".tmp");
    manifest_tmp || (name.starts_with("seg-") && is_plain_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(IndexMeta {
            model_id: "abc".into(),
            model_name: "default".into(),
            dim: 4,
            preprocess: serde_json::json!({"size": 32, "mean": [0.5, 0.25]}),
        });
        m.generation = 3;
        m.next_segment_id = 2;
        m.segments.push(SegmentRecord {
            id: 1,
            count: 10,
            vec_file: vec_file(1),
            vec_crc32: 7,
            entries_file: entries_file(1),
            entries_crc32: 8,
            graph_file: None,
            graph_crc32: None,
            del_file: Some(del_file(1, 3)),
            del_crc32: Some(9),
            deleted: 2,
        });
        m
    }

    #[test]
    fn roundtrip_and_checksum() {
        let m = sample();
        let bytes = m.encode().unwrap();
        let p = Path::new("manifest.json");
        assert_eq!(Manifest::decode(p, &bytes).unwrap(), m);
        let mut flipped = bytes.clone();
        let i = bytes.len() / 2;
        flipped[i] ^= 0x01;
        assert!(matches!(
            Manifest::decode(p, &flipped),
            Err(IndexError::Corrupt { .. })
        ));
        assert!(matches!(
            Manifest::decode(p, &bytes[..bytes.len() - 5]),
            Err(IndexError::Corrupt { .. })
        ));
    }

    #[test]
    fn rejects_path_traversal() {
        let mut m = sample();
        m.segments[0].vec_file = "../etc/passwd".into();
        let bytes = m.encode().unwrap();
        assert!(Manifest::decode(Path::new("m"), &bytes).is_err());
    }
}
