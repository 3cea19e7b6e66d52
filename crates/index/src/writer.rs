//! The write side: [`IndexWriter`] holds the directory's lock, buffers adds and removes, and
//! commits them atomically as a new generation (new immutable segment + new tombstone files,
//! then a manifest swap). [`IndexWriter::finish`] also applies the merge policy and removes
//! files no manifest names.
//!
//! Merge policy (run by `finish`, again after each rewrite until it chooses nothing):
//! - a segment is *small* if its live rows are fewer than a quarter of the largest segment's,
//!   *dirty* if more than 20% of its rows are deleted, and *ungraphed* if it has no graph but
//!   reaches the graph threshold (the threshold was lowered); such segments are chosen;
//! - if that still leaves more than [`MAX_SEGMENTS`] segments, the smallest others are chosen too;
//! - the chosen segments are rewritten together (live rows only) into one new segment, which
//!   gets a graph if it reaches the graph threshold. A single chosen segment is rewritten only if
//!   it is dirty or ungraphed.
//!
//! So the largest segment is only rewritten when it is dirty or the segment count overflows, and
//! small incremental additions are folded into one small segment that is scanned exactly until it
//! grows past the threshold.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::error::IndexError;
use super::fsutil::sync_dir;
use super::graph;
use super::lock::{self, WriterLock, LOCK_FILE};
use super::manifest::{self, Manifest, SegmentRecord, MANIFEST_FILE};
use super::reader::open_segments;
use super::segment::{write_entries, write_vectors, Segment, VectorFile};
use super::types::{normalized, Entry, IndexMeta, StoredPath, DEFAULT_GRAPH_THRESHOLD};

/// `finish` merges until at most this many segments remain.
pub const MAX_SEGMENTS: usize = 4;

/// Summary returned by [`IndexWriter::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexStats {
    /// Live entries in the index.
    pub total: usize,
    /// Segments in the final generation.
    pub segments: usize,
}

/// The single writer of an index directory. Adds and removes are buffered in memory until
/// [`commit`](IndexWriter::commit) (the caller decides how often; each commit of pending adds
/// makes one segment). Dropping the writer discards uncommitted changes and releases the lock.
/// After an error from `commit` or `finish`, drop the writer: the last successful commit is
/// what the directory holds.
pub struct IndexWriter {
    dir: PathBuf,
    _lock: WriterLock,
    /// The last committed manifest (generation 0, not on disk, for a new index).
    manifest: Manifest,
    on_disk: bool,
    /// Open segments, in the order of `manifest.segments`.
    segments: Vec<Segment>,
    /// Segment ids with tombstones not yet committed.
    dirty: HashSet<u64>,
    existing: HashMap<PathBuf, Entry>,
    /// Committed live rows: path -> (segment id, row).
    location: HashMap<PathBuf, (u64, usize)>,
    pending: Vec<Option<Entry>>,
    pending_vecs: Vec<f32>,
    pending_index: HashMap<PathBuf, usize>,
    removed: Vec<PathBuf>,
    ops: usize,
    /// Commit even with nothing pending: the recorded folders changed, or a repair.
    force_commit: bool,
    graph_threshold: usize,
}

/// What [`IndexWriter::open_repairing`] dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepairReport {
    /// Why the manifest could not be read, when the index had to start afresh.
    pub manifest_lost: Option<String>,
    /// Why the manifest failed its checks, when its segments and folders could still be read
    /// from it (each segment then checked against its own checksums).
    pub manifest_recovered: Option<String>,
    pub dropped: Vec<DroppedSegment>,
}

/// A damaged segment that a repair removed from the index.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedSegment {
    pub files: Vec<String>,
    /// Live entries it held (embedded again by the next scan of their folders).
    pub entries: u64,
    pub reason: String,
}

/// An existing index must have been made by the same model with the same dimension.
fn check_model(dir: &Path, found: &IndexMeta, wanted: &IndexMeta) -> Result<(), IndexError> {
    if found.model_id != wanted.model_id || found.dim != wanted.dim {
        return Err(IndexError::ModelMismatch {
            dir: dir.to_path_buf(),
            index_model_id: found.model_id.clone(),
            index_model_name: found.model_name.clone(),
            model_id: wanted.model_id.clone(),
            model_name: wanted.model_name.clone(),
        });
    }
    Ok(())
}

impl std::fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("dir", &self.dir)
            .field("generation", &self.manifest.generation)
            .field("segments", &self.segments.len())
            .field("pending", &self.ops)
            .finish()
    }
}

impl IndexWriter {
    /// Lock `dir` (created if needed) for writing. An existing index must have been made by the
    /// same model (`model_id`) with the same `dim`, else [`IndexError::ModelMismatch`]. Every file
    /// of the current generation is checksummed, and unreferenced files are deleted.
    pub fn open(dir: &Path, meta: IndexMeta) -> Result<IndexWriter, IndexError> {
        let lock = Self::lock(dir, &meta)?;
        let (manifest, segments, on_disk) = match Manifest::read(dir)? {
            Some(m) => {
                check_model(dir, &m.meta, &meta)?;
                let segments = open_segments(dir, &m, true)?;
                (m, segments, true)
            }
            None => (Manifest::new(meta), Vec::new(), false),
        };
        Self::assemble(dir, lock, manifest, segments, on_disk)
    }

    /// Like [`open`](Self::open) on an index that may be damaged: segments whose files fail
    /// their checks are dropped (their images are no longer in the index, so the next scan
    /// embeds them again). A manifest that fails its checksum is read for what it still says
    /// (its segments, each checked on its own, and its folders); one that cannot be read at all
    /// starts the index afresh, but only when `folders_given` (the folders to embed again are
    /// then known). Nothing is deleted before that is settled: an index whose folders would be
    /// unknown after the repair is [`IndexError::FoldersUnknown`], with every file left as it
    /// was. The repaired state is committed at once; the report says what was dropped.
    pub fn open_repairing(
        dir: &Path,
        meta: IndexMeta,
        folders_given: bool,
    ) -> Result<(IndexWriter, RepairReport), IndexError> {
        let lock = Self::lock(dir, &meta)?;
        let mut report = RepairReport::default();
        let read = match Manifest::read(dir) {
            Ok(read) => read,
            Err(e @ IndexError::Version { .. }) => return Err(e),
            Err(e) => match Manifest::salvage(dir) {
                Some(m) => {
                    report.manifest_recovered = Some(e.damage());
                    Some(m)
                }
                None if folders_given => {
                    report.manifest_lost = Some(e.damage());
                    None
                }
                None => {
                    return Err(IndexError::FoldersUnknown {
                        dir: dir.to_path_buf(),
                        reason: format!("its manifest cannot be read ({})", e.damage()),
                    })
                }
            },
        };
        if let Some(m) = &read {
            if m.roots.is_empty() && !folders_given && !m.segments.is_empty() {
                return Err(IndexError::FoldersUnknown {
                    dir: dir.to_path_buf(),
                    reason: "it records no folders".into(),
                });
            }
        }
        let (manifest, segments, on_disk) = match read {
            Some(mut m) => {
                check_model(dir, &m.meta, &meta)?;
                let mut segments = Vec::new();
                let mut kept = Vec::new();
                for record in &m.segments {
                    match Segment::open(dir, record, m.meta.dim, true) {
                        Ok(segment) => {
                            kept.push(record.clone());
                            segments.push(segment);
                        }
                        Err(e) => report.dropped.push(DroppedSegment {
                            files: record.files().map(str::to_string).collect(),
                            entries: record.live(),
                            reason: e.damage(),
                        }),
                    }
                }
                m.segments = kept;
                (m, segments, true)
            }
            // A lost manifest starts afresh: garbage collection removes every segment file,
            // since the new manifest names none.
            None => (Manifest::new(meta), Vec::new(), false),
        };
        let damaged = !report.dropped.is_empty()
            || report.manifest_lost.is_some()
            || report.manifest_recovered.is_some();
        let mut writer = Self::assemble(dir, lock, manifest, segments, on_disk)?;
        if damaged {
            writer.force_commit = true;
            writer.commit()?;
            writer.collect_garbage();
        }
        Ok((writer, report))
    }

    /// Opens an existing index for changes that embed nothing (forgetting folders): its own
    /// model is taken from its manifest. A folder without an index is [`IndexError::Missing`].
    pub fn open_existing(dir: &Path) -> Result<IndexWriter, IndexError> {
        let manifest = match Manifest::read(dir) {
            Ok(Some(m)) => m,
            Ok(None) => return Err(IndexError::Missing(dir.to_path_buf())),
            Err(e) => return Err(e),
        };
        let lock = Self::lock(dir, &manifest.meta)?;
        // Read again under the lock: a writer may have committed in between.
        let manifest =
            Manifest::read(dir)?.ok_or_else(|| IndexError::Missing(dir.to_path_buf()))?;
        let segments = open_segments(dir, &manifest, true)?;
        Self::assemble(dir, lock, manifest, segments, true)
    }

    /// Checks `meta`, makes `dir` if needed and takes its lock.
    fn lock(dir: &Path, meta: &IndexMeta) -> Result<WriterLock, IndexError> {
        if meta.dim == 0 || meta.dim > u32::MAX as usize {
            return Err(IndexError::Invalid {
                dir: dir.to_path_buf(),
                reason: format!("vector dimension {} is out of range", meta.dim),
            });
        }
        if dir.exists() && !dir.is_dir() {
            return Err(IndexError::NotAFolder(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        lock::acquire(dir)
    }

    fn assemble(
        dir: &Path,
        lock: WriterLock,
        manifest: Manifest,
        segments: Vec<Segment>,
        on_disk: bool,
    ) -> Result<IndexWriter, IndexError> {
        let mut existing = HashMap::new();
        let mut location = HashMap::new();
        for seg in &segments {
            for row in seg.live_rows() {
                let e = seg.entries.entry(row)?;
                location.insert(e.path.clone(), (seg.record.id, row));
                existing.insert(e.path.clone(), e);
            }
        }
        let w = IndexWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            on_disk,
            segments,
            dirty: HashSet::new(),
            existing,
            location,
            pending: Vec::new(),
            pending_vecs: Vec::new(),
            pending_index: HashMap::new(),
            removed: Vec::new(),
            ops: 0,
            force_commit: false,
            graph_threshold: DEFAULT_GRAPH_THRESHOLD,
        };
        w.collect_garbage();
        Ok(w)
    }

    /// The folders recorded in the index (absolute, canonical), in the order they were added.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.manifest
            .roots
            .iter()
            .map(StoredPath::to_path)
            .collect()
    }

    /// Replaces the recorded folders; saved by the next commit.
    pub fn set_roots(&mut self, roots: &[PathBuf]) {
        let stored: Vec<StoredPath> = roots.iter().map(|r| StoredPath::of(r)).collect();
        if stored != self.manifest.roots {
            self.manifest.roots = stored;
            self.force_commit = true;
        }
    }

    /// The index's recorded meta (the one from the first commit for an existing index).
    pub fn meta(&self) -> &IndexMeta {
        &self.manifest.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Live entries at open, updated by every commit.
    pub fn existing(&self) -> &HashMap<PathBuf, Entry> {
        &self.existing
    }

    /// Segments of at least `n` vectors written from now on get an HNSW graph (default
    /// [`DEFAULT_GRAPH_THRESHOLD`]).
    pub fn set_graph_threshold(&mut self, n: usize) {
        self.graph_threshold = n;
    }

    pub fn graph_threshold(&self) -> usize {
        self.graph_threshold
    }

    /// Adds and removes not yet committed.
    pub fn pending(&self) -> usize {
        self.ops
    }

    /// Tombstone the committed live row of `path`, if any.
    fn tombstone_committed(&mut self, path: &Path) -> bool {
        let Some((id, row)) = self.location.remove(path) else {
            return false;
        };
        if let Some(seg) = self.segments.iter_mut().find(|s| s.record.id == id) {
            seg.deleted.delete(row);
            self.dirty.insert(id);
        }
        true
    }

    /// Remove `path` from the index (no-op if it is not there).
    pub fn remove(&mut self, path: &Path) {
        let mut hit = false;
        if let Some(slot) = self.pending_index.remove(path) {
            self.pending[slot] = None;
            hit = true;
        }
        hit |= self.tombstone_committed(path);
        if hit {
            self.removed.push(path.to_path_buf());
            self.ops += 1;
        }
    }

    /// Add (or replace) `entry` with its vector, which must have the index's dimension. The
    /// vector is L2-normalised before it is stored.
    pub fn add(&mut self, entry: Entry, vector: &[f32]) -> Result<(), IndexError> {
        let dim = self.manifest.meta.dim;
        if vector.len() != dim {
            return Err(IndexError::DimMismatch {
                dir: self.dir.clone(),
                expected: dim,
                found: vector.len(),
            });
        }
        let v = normalized(vector).ok_or_else(|| IndexError::Invalid {
            dir: self.dir.clone(),
            reason: format!(
                "the vector of {} is zero or not finite",
                entry.path.display()
            ),
        })?;
        if let Some(&slot) = self.pending_index.get(&entry.path) {
            self.pending_vecs[slot * dim..(slot + 1) * dim].copy_from_slice(&v);
            self.pending[slot] = Some(entry);
        } else {
            self.tombstone_committed(&entry.path);
            self.pending_index
                .insert(entry.path.clone(), self.pending.len());
            self.pending.push(Some(entry));
            self.pending_vecs.extend_from_slice(&v);
        }
        self.ops += 1;
        Ok(())
    }

    /// Commit pending changes as a new generation: write the new segment and tombstone files,
    /// fsync them, then atomically replace the manifest. A crash at any point leaves the
    /// previous generation intact. A no-op when nothing is pending (except that a new index's
    /// first commit always writes a manifest, even an empty one).
    pub fn commit(&mut self) -> Result<(), IndexError> {
        if self.ops == 0 && self.on_disk && !self.force_commit {
            return Ok(());
        }
        let dim = self.manifest.meta.dim;
        let generation = self.manifest.generation + 1;
        let mut next = self.manifest.clone();
        next.generation = generation;
        next.committed_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());

        let slots: Vec<usize> = (0..self.pending.len())
            .filter(|&i| self.pending[i].is_some())
            .collect();
        let mut new_segment = None;
        if !slots.is_empty() {
            let id = next.next_segment_id;
            next.next_segment_id += 1;
            let entries: Vec<&Entry> = slots
                .iter()
                .filter_map(|&i| self.pending[i].as_ref())
                .collect();
            let vecs = &self.pending_vecs;
            let record = write_segment(
                &self.dir,
                id,
                dim,
                &entries,
                |j| &vecs[slots[j] * dim..(slots[j] + 1) * dim],
                self.graph_threshold,
            )?;
            new_segment = Some(Segment::open(&self.dir, &record, dim, false)?);
            next.segments.push(record);
        }

        for seg in &self.segments {
            if !self.dirty.contains(&seg.record.id) {
                continue;
            }
            let Some(rec) = next.segments.iter_mut().find(|r| r.id == seg.record.id) else {
                continue;
            };
            let name = manifest::del_file(rec.id, generation);
            let crc = seg.deleted.write(&self.dir.join(&name))?;
            rec.del_file = Some(name);
            rec.del_crc32 = Some(crc);
            rec.deleted = seg.deleted.deleted() as u64;
        }
        next.segments.retain(|r| r.deleted < r.count);
        sync_dir(&self.dir)?;
        next.write(&self.dir)?;

        // The new generation is durable; bring the in-memory state up to it.
        self.segments
            .retain(|s| next.segments.iter().any(|r| r.id == s.record.id));
        for seg in &mut self.segments {
            if let Some(r) = next.segments.iter().find(|r| r.id == seg.record.id) {
                seg.record = r.clone();
            }
        }
        if let Some(seg) = new_segment {
            // Row `j` of the new segment is the `j`-th pending entry still present.
            let paths = self.pending.iter().flatten().map(|e| e.path.clone());
            for (row, path) in paths.enumerate() {
                self.location.insert(path, (seg.record.id, row));
            }
            self.segments.push(seg);
        }
        for p in self.removed.drain(..) {
            self.existing.remove(&p);
        }
        for e in self.pending.drain(..).flatten() {
            self.existing.insert(e.path.clone(), e);
        }
        self.pending_vecs.clear();
        self.pending_index.clear();
        self.dirty.clear();
        self.ops = 0;
        self.force_commit = false;
        self.manifest = next;
        self.on_disk = true;
        Ok(())
    }

    /// Commit, apply the merge policy (see the module docs), delete unreferenced files, and
    /// release the lock.
    pub fn finish(mut self) -> Result<IndexStats, IndexError> {
        self.commit()?;
        // Until the policy chooses nothing: a first rewrite that merges many equal segments
        // (a fresh index commits every 5,000 images) leaves the rest small next to the result,
        // and each segment left is one more graph search per query. Every rewrite leaves fewer
        // segments, or none dirty or ungraphed, so this ends; the bound is a guard.
        for _ in 0..MAX_SEGMENTS + 2 {
            let chosen = self.plan_merge();
            if chosen.is_empty() {
                break;
            }
            self.merge(&chosen)?;
        }
        self.collect_garbage();
        Ok(IndexStats {
            total: self.manifest.live() as usize,
            segments: self.manifest.segments.len(),
        })
    }

    /// Indices (into `self.segments`) of the segments to rewrite together; empty for none.
    fn plan_merge(&self) -> Vec<usize> {
        let segs = &self.segments;
        let max_live = segs.iter().map(|s| s.record.live()).max().unwrap_or(0);
        let dirty = |s: &Segment| s.record.deleted * 5 > s.record.count;
        let wants_graph =
            |s: &Segment| s.graph.is_none() && s.record.live() as usize >= self.graph_threshold;
        let mut chosen: Vec<bool> = segs
            .iter()
            .map(|s| s.record.live() * 4 < max_live || dirty(s) || wants_graph(s))
            .collect();
        let mut by_size: Vec<usize> = (0..segs.len()).collect();
        by_size.sort_by_key(|&i| segs[i].record.live());
        for &i in &by_size {
            let kept = chosen.iter().filter(|c| !**c).count();
            let merged = usize::from(chosen.iter().any(|c| *c));
            if kept + merged <= MAX_SEGMENTS {
                break;
            }
            chosen[i] = true;
        }
        let picked: Vec<usize> = (0..segs.len()).filter(|&i| chosen[i]).collect();
        match picked.as_slice() {
            [one] if !dirty(&segs[*one]) && !wants_graph(&segs[*one]) => Vec::new(),
            _ => picked,
        }
    }

    /// Rewrite the live rows of `chosen` segments into one new segment, in one commit.
    fn merge(&mut self, chosen: &[usize]) -> Result<(), IndexError> {
        let dim = self.manifest.meta.dim;
        let mut rows: Vec<(usize, usize)> = Vec::new();
        for &si in chosen {
            rows.extend(self.segments[si].live_rows().map(|r| (si, r)));
        }
        let entries: Vec<Entry> = rows
            .iter()
            .map(|&(si, r)| self.segments[si].entries.entry(r))
            .collect::<Result<_, _>>()?;
        let entry_refs: Vec<&Entry> = entries.iter().collect();
        let mut next = self.manifest.clone();
        next.generation += 1;
        let id = next.next_segment_id;
        next.next_segment_id += 1;
        let segs = &self.segments;
        let record = write_segment(
            &self.dir,
            id,
            dim,
            &entry_refs,
            |j| segs[rows[j].0].vectors.row(rows[j].1),
            self.graph_threshold,
        )?;
        let merged = Segment::open(&self.dir, &record, dim, false)?;
        let gone: HashSet<u64> = chosen.iter().map(|&i| self.segments[i].record.id).collect();
        next.segments.retain(|r| !gone.contains(&r.id));
        next.segments.push(record);
        sync_dir(&self.dir)?;
        next.write(&self.dir)?;

        self.segments.retain(|s| !gone.contains(&s.record.id));
        for (row, e) in entries.iter().enumerate() {
            self.location.insert(e.path.clone(), (id, row));
        }
        self.segments.push(merged);
        self.manifest = next;
        Ok(())
    }

    /// Best-effort removal of engine files that the current manifest does not name (leftovers of
    /// crashed writers, superseded tombstones, merged segments). Readers that still map a
    /// removed file keep their mapping; readers opening meanwhile retry on the new manifest.
    fn collect_garbage(&self) {
        let Ok(list) = fs::read_dir(&self.dir) else {
            return;
        };
        let named: HashSet<&str> = self
            .manifest
            .segments
            .iter()
            .flat_map(SegmentRecord::files)
            .chain([MANIFEST_FILE, LOCK_FILE])
            .collect();
        for item in list.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if manifest::is_engine_file(name) && !named.contains(name) {
                let _ = fs::remove_file(item.path());
            }
        }
    }
}

/// Write the files of a new segment `id` holding `entries` and their vectors (`row(j)` for entry
/// `j`); it gets a graph when it has at least `graph_threshold` rows. Returns its record.
fn write_segment<'a>(
    dir: &Path,
    id: u64,
    dim: usize,
    entries: &[&Entry],
    row: impl Fn(usize) -> &'a [f32],
    graph_threshold: usize,
) -> Result<SegmentRecord, IndexError> {
    let count = entries.len();
    if count == 0 || count >= u32::MAX as usize {
        return Err(IndexError::Invalid {
            dir: dir.to_path_buf(),
            reason: format!("a segment cannot hold {count} entries"),
        });
    }
    let vec_name = manifest::vec_file(id);
    let vec_path = dir.join(&vec_name);
    let vec_crc32 = write_vectors(&vec_path, dim, count, (0..count).map(row))?;
    let entries_name = manifest::entries_file(id);
    let entries_crc32 = write_entries(&dir.join(&entries_name), entries.iter().copied())?;
    let (graph_file, graph_crc32) = if count >= graph_threshold {
        let vectors = VectorFile::open(&vec_path, dim, count)?;
        let name = manifest::graph_file(id);
        let crc = graph::build(&dir.join(&name), vectors.data(), dim, count)?;
        (Some(name), Some(crc))
    } else {
        (None, None)
    };
    Ok(SegmentRecord {
        id,
        count: count as u64,
        vec_file: vec_name,
        vec_crc32,
        entries_file: entries_name,
        entries_crc32,
        graph_file,
        graph_crc32,
        del_file: None,
        del_crc32: None,
        deleted: 0,
    })
}
