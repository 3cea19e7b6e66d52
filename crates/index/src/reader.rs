//! The read side: [`Index`] opens one generation and searches it; [`verify`] checks everything.
//!
//! What is checked when:
//!
//! - [`Index::open`], O(1) in the index's size: the manifest's own CRC, version and structure;
//!   every file it names is mapped (never read) and its magic, format version, header fields
//!   (counts, dimension, strides) against the manifest, and exact length. A truncated, missing
//!   or foreign file is reported here.
//! - While searching: graph ids and neighbour lists, and a hit's entry record, are bounds-checked
//!   as they are read, so a damaged byte gives [`IndexError::Corrupt`] naming the file, never a
//!   panic or a read outside a map.
//! - [`verify`] and [`super::IndexWriter::open`] (which rewrites from these files when it
//!   merges), O(size): every file's CRC32 against the manifest, every entry record, the graph's
//!   structure and the tombstones' bit count. A flipped byte inside a file is caught here.

use std::path::{Path, PathBuf};

use super::error::IndexError;
use super::exact::{self, Scored};
use super::fsutil::is_missing_file;
use super::lock::is_held;
use super::manifest::Manifest;
use super::segment::Segment;
use super::types::{normalized, Entry, Hit, ImageId, IndexMeta, SearchOptions, StoredPath};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How often `open` re-reads the manifest when a file it names vanished (a writer replaced the
/// generation and removed the superseded files between our two reads).
const OPEN_ATTEMPTS: usize = 5;

/// A read-only view of one committed generation of an index. Opening costs O(1) in the size of
/// the index (every file is mapped, not read; see the module docs for what is checked); later
/// commits by a writer do not affect an open `Index`.
pub struct Index {
    dir: PathBuf,
    manifest: Manifest,
    segments: Vec<Segment>,
    live: usize,
    /// Image id → (segment, row) of the live entries, built on the first lookup by id.
    ids: OnceLock<HashMap<ImageId, (u32, u32)>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("generation", &self.manifest.generation)
            .field("segments", &self.segments.len())
            .field("live", &self.live)
            .finish()
    }
}

/// Why there is no manifest in `dir`: a file where a folder should be, a first build still
/// running, or no index at all.
fn missing(dir: &Path) -> IndexError {
    if dir.exists() && !dir.is_dir() {
        IndexError::NotAFolder(dir.to_path_buf())
    } else if is_held(dir) {
        IndexError::Building(dir.to_path_buf())
    } else {
        IndexError::Missing(dir.to_path_buf())
    }
}

/// Open every segment of `manifest`; `full` also checksums the big files.
pub(crate) fn open_segments(
    dir: &Path,
    manifest: &Manifest,
    full: bool,
) -> Result<Vec<Segment>, IndexError> {
    manifest
        .segments
        .iter()
        .map(|r| Segment::open(dir, r, manifest.meta.dim, full))
        .collect()
}

/// Read the manifest and open its segments, retrying if a writer swapped generations meanwhile.
fn open_generation(dir: &Path, full: bool) -> Result<(Manifest, Vec<Segment>), IndexError> {
    if dir.exists() && !dir.is_dir() {
        return Err(IndexError::NotAFolder(dir.to_path_buf()));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let manifest = Manifest::read(dir)?.ok_or_else(|| missing(dir))?;
        match open_segments(dir, &manifest, full) {
            Ok(segments) => return Ok((manifest, segments)),
            Err(e) if is_missing_file(&e) && attempt < OPEN_ATTEMPTS => {
                let now = Manifest::read(dir)?;
                if now.is_some_and(|m| m.generation != manifest.generation) {
                    continue;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}

impl Index {
    /// Open the current generation of the index in `dir`.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        Self::open_with(dir, false)
    }

    /// [`open`](Self::open) with every file checked in full first, as [`verify`] checks it
    /// (O(size)): for a job that reads every vector and entry anyway, so that a flipped byte is
    /// an error naming the file instead of a wrong answer.
    pub fn open_verified(dir: &Path) -> Result<Index, IndexError> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, full: bool) -> Result<Index, IndexError> {
        let (manifest, segments) = open_generation(dir, full)?;
        let live = manifest.live() as usize;
        Ok(Index {
            dir: dir.to_path_buf(),
            manifest,
            segments,
            live,
            ids: OnceLock::new(),
        })
    }

    /// The generation now committed in `dir` (one small read of the manifest), or `None` if
    /// there is no index there: how a long-lived reader notices that it should reopen.
    pub fn current_generation(dir: &Path) -> Result<Option<u64>, IndexError> {
        Ok(Manifest::read(dir)?.map(|m| m.generation))
    }

    pub fn meta(&self) -> &IndexMeta {
        &self.manifest.meta
    }

    /// Live (non-deleted) entries.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The generation this view reads (incremented by every commit).
    pub fn generation(&self) -> u64 {
        self.manifest.generation
    }

    /// Number of segments in this generation.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folders the index was given (absolute, canonical); empty for indexes made before
    /// folders were recorded.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.manifest
            .roots
            .iter()
            .map(StoredPath::to_path)
            .collect()
    }

    /// When this generation was committed (seconds since the Unix epoch; 0 if unknown).
    pub fn committed_unix(&self) -> u64 {
        self.manifest.committed_unix
    }

    /// The `k` most similar live entries to `query` (cosine), best first. Segments with a graph
    /// are searched approximately unless `opts.exact`; the others are scanned.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit>, IndexError> {
        let dim = self.manifest.meta.dim;
        if query.len() != dim {
            return Err(IndexError::DimMismatch {
                dir: self.dir.clone(),
                expected: dim,
                found: query.len(),
            });
        }
        let q = normalized(query).ok_or_else(|| IndexError::Invalid {
            dir: self.dir.clone(),
            reason: "query vector is zero or not finite".into(),
        })?;
        let k = opts.k;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut all: Vec<(Scored, usize)> = Vec::new();
        for (si, seg) in self.segments.iter().enumerate() {
            let found = match (&seg.graph, opts.exact) {
                (Some(g), false) => g.search(&seg.vectors, &q, k, opts.ef, &seg.deleted)?,
                _ => exact::scan(seg.vectors.data(), dim, &q, k, &seg.deleted),
            };
            all.extend(found.into_iter().map(|s| (s, si)));
        }
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        if let Some(min) = opts.min_score {
            all.retain(|(s, _)| s.score >= min);
        }
        all.into_iter()
            .map(|(s, si)| {
                Ok(Hit {
                    path: self.segments[si].entries.path(s.row as usize)?,
                    score: s.score,
                })
            })
            .collect()
    }

    fn id_map(&self) -> Result<&HashMap<ImageId, (u32, u32)>, IndexError> {
        if let Some(map) = self.ids.get() {
            return Ok(map);
        }
        // Built outside `get_or_init` so that a damaged entry is an error, not a cached state;
        // two threads racing here build the same table and one of them is kept.
        let mut map = HashMap::with_capacity(self.live);
        for (si, seg) in self.segments.iter().enumerate() {
            for row in seg.live_rows() {
                let id = ImageId::of(&seg.entries.path(row)?);
                // Rows are u32 in every file format of the index.
                map.insert(id, (si as u32, row as u32));
            }
        }
        Ok(self.ids.get_or_init(|| map))
    }

    /// Builds the id table now (one pass over the entries) instead of on the first lookup: a
    /// server does it before it swaps a generation in, so no request waits for it.
    pub fn build_id_table(&self) -> Result<(), IndexError> {
        self.id_map().map(|_| ())
    }

    /// The live entry named `id` and its stored (L2-normalised) vector, or `None` if no live
    /// entry has that id. The first call builds the id table (one pass over the entries).
    pub fn lookup(&self, id: ImageId) -> Result<Option<(Entry, &[f32])>, IndexError> {
        let Some(&(si, row)) = self.id_map()?.get(&id) else {
            return Ok(None);
        };
        let seg = &self.segments[si as usize];
        let entry = seg.entries.entry(row as usize)?;
        Ok(Some((entry, seg.vectors.row(row as usize))))
    }

    /// The neighbours of the indexed image `id`, searched with its stored vector: what
    /// querying with that file returns (it comes first, cosine 1), with no decoding or
    /// embedding. `None` if no live entry has that id.
    pub fn search_by_id(
        &self,
        id: ImageId,
        opts: &SearchOptions,
    ) -> Result<Option<Vec<Hit>>, IndexError> {
        match self.lookup(id)? {
            Some((_, vector)) => self.search(vector, opts).map(Some),
            None => Ok(None),
        }
    }

    /// Live entries, segment by segment. An entry whose record is damaged yields
    /// [`IndexError::Corrupt`] naming the entries file.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry, IndexError>> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.live_rows().map(move |i| s.entries.entry(i)))
    }

    /// Live vectors (L2-normalised, as stored), in the order of [`Index::entries`].
    pub fn vectors(&self) -> impl Iterator<Item = &[f32]> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.live_rows().map(move |i| s.vectors.row(i)))
    }
}

/// Full integrity check of the index in `dir`: the manifest, every file's checksum (vectors and
/// graphs included), and the structure of every graph. The first damage found is the error;
/// [`verify_report`] lists all of it.
pub fn verify(dir: &Path) -> Result<(), IndexError> {
    open_generation(dir, true).map(|_| ())
}

/// What [`verify_report`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    pub generation: u64,
    pub segments: usize,
    /// Live entries of the segments that passed.
    pub entries: u64,
    /// Files whose checksums and structure were checked.
    pub files: usize,
    /// One line per damaged segment (or the manifest), naming the file and the problem.
    pub damaged: Vec<String>,
    /// Whether the manifest itself failed its checks (its line is then the first of
    /// `damaged`, and the segments are those it still names, if it could be read at all).
    pub manifest_damaged: bool,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Checks every segment of the index in `dir` in full and reports each damaged one. A
/// damaged manifest is itself a damage; the segments it still names, if its body can be read,
/// are checked too (as a repair would read them). Errors only when there is no index to check.
pub fn verify_report(dir: &Path) -> Result<VerifyReport, IndexError> {
    if dir.exists() && !dir.is_dir() {
        return Err(IndexError::NotAFolder(dir.to_path_buf()));
    }
    let (manifest, damaged) = match Manifest::read(dir) {
        Ok(Some(m)) => (m, None),
        Ok(None) => return Err(missing(dir)),
        Err(e @ IndexError::Io { .. }) => return Err(e),
        Err(e) => match Manifest::salvage(dir) {
            Some(m) => (m, Some(e.to_string())),
            None => {
                return Ok(VerifyReport {
                    generation: 0,
                    segments: 0,
                    entries: 0,
                    files: 1,
                    damaged: vec![e.to_string()],
                    manifest_damaged: true,
                })
            }
        },
    };
    let mut report = VerifyReport {
        generation: manifest.generation,
        segments: manifest.segments.len(),
        entries: 0,
        files: 1,
        manifest_damaged: damaged.is_some(),
        damaged: damaged.into_iter().collect(),
    };
    for record in &manifest.segments {
        report.files += record.files().count();
        match Segment::open(dir, record, manifest.meta.dim, true) {
            Ok(_) => report.entries += record.live(),
            Err(e) => report.damaged.push(e.to_string()),
        }
    }
    Ok(report)
}
