//! The indexing job: scan the folders, diff against what the index holds, embed what is new
//! or changed, remove what is gone, and commit as it goes; and the folder bookkeeping around
//! it (an index remembers the folders it was given, `forget` drops one).
//!
//! An index keeps its folders: indexing B after A adds B and leaves A's entries alone; a run
//! without folders re-scans every recorded one, and a recorded folder that is missing (an
//! unplugged drive) keeps its entries, with a warning. Removals only ever touch entries under
//! the folders being scanned.

use crate::data::{self, ScanOptions};
use crate::error::{Error, Result};
use crate::index::{Entry, IndexMeta, IndexWriter, RepairReport, DEFAULT_GRAPH_THRESHOLD};
use crate::model::Model;
use crate::progress::{Event, OnEvent, Verbosity};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name an index records for the bundled model.
pub const DEFAULT_MODEL_NAME: &str = "default";

/// Images embedded per batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 256;

/// When the indexing job commits what it has embedded so far: after `every` images or after
/// `interval`, whichever comes first, so a crash or kill loses little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    pub every: usize,
    pub interval: Duration,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            every: 5_000,
            interval: Duration::from_secs(30),
        }
    }
}

impl CommitPolicy {
    /// One commit at the end (a throwaway index, as `eval` makes).
    pub fn at_end() -> Self {
        CommitPolicy {
            every: usize::MAX,
            interval: Duration::MAX,
        }
    }
}

/// What to index, and how.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// The index folder.
    pub index: PathBuf,
    /// Folders (or files) to add or bring up to date; empty: every folder the index records.
    pub roots: Vec<PathBuf>,
    pub batch: usize,
    pub commit: CommitPolicy,
    /// Segments of at least this many images get an HNSW graph.
    pub graph_threshold: usize,
    pub scan: ScanOptions,
    /// Drop damaged segments (their images are embedded again) instead of refusing.
    pub repair: bool,
    pub verbosity: Verbosity,
}

impl IndexOptions {
    /// The defaults for indexing `roots` into `index`.
    pub fn new(index: PathBuf, roots: Vec<PathBuf>) -> Self {
        IndexOptions {
            index,
            roots,
            batch: DEFAULT_BATCH,
            commit: CommitPolicy::default(),
            graph_threshold: DEFAULT_GRAPH_THRESHOLD,
            scan: ScanOptions::default(),
            repair: false,
            verbosity: Verbosity::default(),
        }
    }
}

/// What an index run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexSummary {
    /// Live entries in the index afterwards.
    pub total: usize,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    /// Files skipped (each one also reported as an [`Event::Skipped`]).
    pub skipped: usize,
    /// Symbolic links below the folders that were not followed (no `--follow`).
    pub links_not_followed: usize,
    /// The folders scanned this run.
    pub scanned: Vec<PathBuf>,
    /// Recorded folders that were missing, whose entries were kept.
    pub missing: Vec<PathBuf>,
    /// What `--repair` dropped (entries embedded again are counted in `added`).
    pub repair: Option<RepairReport>,
    pub seconds: f64,
}

/// The metadata an index made with `model` records.
pub fn index_meta(model: &Model) -> IndexMeta {
    IndexMeta {
        model_id: model.id.clone(),
        model_name: model.name.clone(),
        dim: model.config.embedding_dim(),
        preprocess: serde_json::to_value(&model.config.preprocess).unwrap_or_default(),
    }
}

/// Brings the index in line with the images under the folders: new and changed files are
/// embedded, files no longer there are removed. Files that fail to decode are skipped,
/// reported through `on_event`, and counted.
pub fn index_folders(
    model: &Model,
    opts: &IndexOptions,
    on_event: OnEvent<'_>,
) -> Result<IndexSummary> {
    let started = Instant::now();
    if opts.batch == 0 {
        return Err(Error::Usage("the batch size must be at least 1".into()));
    }
    let mut summary = IndexSummary::default();
    // The folders given are checked before the index is opened: a repair drops nothing, and
    // no index folder is made, for a folder that is not there.
    for root in &opts.roots {
        data::canonical_root(root)?;
    }
    let mut writer = if opts.repair {
        let (writer, report) =
            IndexWriter::open_repairing(&opts.index, index_meta(model), !opts.roots.is_empty())?;
        summary.repair = Some(report);
        writer
    } else {
        IndexWriter::open(&opts.index, index_meta(model))?
    };
    writer.set_graph_threshold(opts.graph_threshold);

    let recorded = writer.roots();
    let owner = format!("the index {}", opts.index.display());
    let survey = survey(
        opts,
        &owner,
        &recorded,
        writer.existing().keys(),
        &mut summary,
        on_event,
    )?;
    for path in &survey.gone {
        writer.remove(path);
    }
    writer.set_roots(&merge_roots(&recorded, &survey.given));
    let scan_files = survey.files;

    let mut todo = Vec::new();
    for file in scan_files {
        match writer.existing().get(&file.path) {
            Some(old) if old.size == file.size && old.mtime_ns == file.mtime_ns => {}
            old => todo.push((old.is_some(), file)),
        }
    }

    let bar = opts.verbosity.bar(todo.len() as u64, "index");
    let paths: Vec<PathBuf> = todo.iter().map(|(_, f)| f.path.clone()).collect();
    let mut last_commit = Instant::now();
    let mut since_commit = 0;
    for batch in data::stream(paths, model.preprocess().clone(), opts.batch) {
        for (_, failure) in &batch.failures {
            let event = Event::Skipped {
                path: &failure.path,
                reason: &failure.reason,
            };
            opts.verbosity.report(&bar, on_event, event);
            // A changed file that no longer decodes must not keep its old vector.
            writer.remove(&failure.path);
        }
        summary.skipped += batch.failures.len();
        let vectors = model.embed(batch.items.iter().map(|d| d.rgb.as_slice()))?;
        for (item, vector) in batch.items.iter().zip(vectors) {
            let (replaces, file) = &todo[item.index];
            writer.add(
                Entry {
                    path: file.path.clone(),
                    size: file.size,
                    mtime_ns: file.mtime_ns,
                },
                &vector,
            )?;
            if *replaces {
                summary.updated += 1;
            } else {
                summary.added += 1;
            }
        }
        since_commit += batch.items.len();
        bar.inc((batch.items.len() + batch.failures.len()) as u64);
        if since_commit >= opts.commit.every || last_commit.elapsed() >= opts.commit.interval {
            writer.commit()?;
            since_commit = 0;
            last_commit = Instant::now();
        }
    }
    bar.finish_and_clear();
    let stats = writer.finish()?;
    summary.total = stats.total;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// What one run over the folders finds before anything is written, whatever the store.
pub(crate) struct Survey {
    /// The folders given this run (canonical); empty: every recorded one.
    pub given: Vec<PathBuf>,
    /// The files found under the folders scanned.
    pub files: Vec<data::FileInfo>,
    /// Stored entries under the folders scanned whose files are gone.
    pub gone: Vec<PathBuf>,
}

/// Scans the folders given (or, without any, the `recorded` ones that are present, warning of
/// the missing), reports unreadable files, and finds the `stored` entries whose files are gone.
/// Fills the summary's `missing`, `links_not_followed`, `skipped`, `removed` and `scanned`.
/// `owner` names the store in the error for a store that records no folders.
pub(crate) fn survey<'a>(
    opts: &IndexOptions,
    owner: &str,
    recorded: &[PathBuf],
    stored: impl Iterator<Item = &'a PathBuf>,
    summary: &mut IndexSummary,
    on_event: OnEvent<'_>,
) -> Result<Survey> {
    let given = opts
        .roots
        .iter()
        .map(|r| data::canonical_root(r))
        .collect::<Result<Vec<_>>>()?;
    let targets = if given.is_empty() {
        if recorded.is_empty() {
            return Err(Error::Usage(format!(
                "{owner} records no folders: give the folders to index"
            )));
        }
        let (present, missing): (Vec<PathBuf>, Vec<PathBuf>) =
            recorded.iter().cloned().partition(|r| r.exists());
        for root in &missing {
            let warning = format!(
                "folder {} is missing (moved, or a drive not connected?): its entries are kept",
                root.display()
            );
            on_event(Event::Warning(&warning));
        }
        summary.missing = missing;
        present
    } else {
        given.clone()
    };

    let scan = data::scan_with(&targets, opts.scan)?;
    summary.links_not_followed = scan.links_not_followed;
    for (path, reason) in &scan.unreadable {
        on_event(Event::Skipped { path, reason });
        summary.skipped += 1;
    }

    let present: HashSet<&Path> = scan.files.iter().map(|f| f.path.as_path()).collect();
    let gone: Vec<PathBuf> = stored
        .filter(|p| targets.iter().any(|root| p.starts_with(root)))
        .filter(|p| !present.contains(p.as_path()))
        .cloned()
        .collect();
    summary.removed = gone.len();
    summary.scanned = targets;
    Ok(Survey {
        given,
        files: scan.files,
        gone,
    })
}

/// The recorded folders after adding `given`: a folder inside a recorded one adds nothing; a
/// folder that contains recorded ones replaces them.
pub(crate) fn merge_roots(recorded: &[PathBuf], given: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = recorded.to_vec();
    for g in given {
        if roots.iter().any(|r| g.starts_with(r)) {
            continue;
        }
        roots.retain(|r| !r.starts_with(g));
        roots.push(g.clone());
    }
    roots
}

/// What `forget` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForgetSummary {
    /// The folders dropped from the index's record.
    pub folders: Vec<PathBuf>,
    /// Entries removed.
    pub removed: usize,
    /// Live entries left.
    pub total: usize,
}

/// Drops folders from the index: their entries are removed and later runs no longer scan
/// them. Each must be one of the index's recorded folders (any folder, for an index made
/// before folders were recorded). Nothing is embedded, so no model is needed.
pub fn forget(index: &Path, folders: &[PathBuf]) -> Result<ForgetSummary> {
    let mut writer = IndexWriter::open_existing(index)?;
    let recorded = writer.roots();
    let mut dropped = Vec::new();
    for folder in folders {
        // A folder that is gone can still be forgotten, by the path it was recorded under.
        let path = data::canonical_root(folder)
            .or_else(|_| std::path::absolute(folder).map_err(|e| Error::io(folder, e)))?;
        if !recorded.is_empty() && !recorded.contains(&path) {
            let list: Vec<String> = recorded.iter().map(|r| r.display().to_string()).collect();
            return Err(Error::Usage(format!(
                "{} is not a folder of the index {}; its folders are: {}",
                folder.display(),
                index.display(),
                list.join(", ")
            )));
        }
        dropped.push(path);
    }
    let gone: Vec<PathBuf> = writer
        .existing()
        .keys()
        .filter(|p| dropped.iter().any(|d| p.starts_with(d)))
        .cloned()
        .collect();
    for path in &gone {
        writer.remove(path);
    }
    let kept: Vec<PathBuf> = recorded
        .into_iter()
        .filter(|r| !dropped.contains(r))
        .collect();
    writer.set_roots(&kept);
    let stats = writer.finish()?;
    Ok(ForgetSummary {
        folders: dropped,
        removed: gone.len(),
        total: stats.total,
    })
}

#[cfg(test)]
mod tests {
    use super::merge_roots;
    use std::path::PathBuf;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn folders_accumulate_without_nesting() {
        let recorded = paths(&["/p/a", "/p/b/c"]);
        assert_eq!(
            merge_roots(&recorded, &paths(&["/q"])),
            paths(&["/p/a", "/p/b/c", "/q"])
        );
        // Inside a recorded folder: nothing new.
        assert_eq!(merge_roots(&recorded, &paths(&["/p/a/x"])), recorded);
        // Around a recorded folder: replaces it.
        assert_eq!(
            merge_roots(&recorded, &paths(&["/p/b"])),
            paths(&["/p/a", "/p/b"])
        );
        // `/p/ab` is not inside `/p/a`.
        assert_eq!(
            merge_roots(&recorded, &paths(&["/p/ab"])),
            paths(&["/p/a", "/p/b/c", "/p/ab"])
        );
    }
}
