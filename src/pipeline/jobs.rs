//! Filling a PostgreSQL store: the scan queues one job per new or changed file in the store's
//! jobs table, and workers claim batches of them, embed, and commit. A worker is this process
//! (`imgsearch index DIR --store URL` queues, then works until the queue is empty) or
//! `imgsearch worker --store URL` on any machine that sees the same files under the same paths.
//!
//! A worker killed mid-batch commits nothing of it; its lease runs out and another worker
//! claims the batch again. A file that does not decode is skipped, named and counted, and
//! loses any vector it had.

use super::indexing::{IndexOptions, IndexSummary};
use crate::data;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::{Event, OnEvent, Verbosity};
use crate::store::postgres::{Job, PgQueue};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Batches claimed at once by a worker.
pub const BATCHES_PER_CLAIM: usize = 4;

pub use crate::store::postgres::DEFAULT_LEASE;

/// How a worker works.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Files claimed, embedded and committed together.
    pub batch: usize,
    pub lease: Duration,
    /// The name the jobs table records for this worker (unique per process).
    pub name: String,
    /// Keep going while other workers hold leases (a batch whose worker dies is redone here),
    /// instead of stopping as soon as nothing is left to claim.
    pub wait_for_others: bool,
    /// Waits this long after claiming each batch (fault tests: a worker slow enough to be
    /// killed, or to lose its database, in the middle of a batch).
    pub pause: Duration,
    pub verbosity: Verbosity,
}

impl WorkerOptions {
    pub fn new(batch: usize) -> Self {
        WorkerOptions {
            batch,
            lease: DEFAULT_LEASE,
            name: worker_name(),
            wait_for_others: true,
            pause: Duration::ZERO,
            verbosity: Verbosity::default(),
        }
    }
}

/// `host-pid-nonce`: distinct for every process, on every machine.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let nonce: u32 = rand::random();
    format!(
        "{}-{}-{nonce:08x}",
        if host.is_empty() { "worker" } else { &host },
        std::process::id()
    )
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkSummary {
    /// Vectors this worker committed.
    pub embedded: usize,
    /// Files this worker could not decode (each reported as an [`Event::Skipped`]).
    pub skipped: Vec<PathBuf>,
    /// Batches committed.
    pub batches: usize,
    /// Jobs left in the queue because their workers died too often.
    pub abandoned: u64,
    pub seconds: f64,
}

/// Claims, embeds and commits batches until no job is left to claim (and, with
/// `wait_for_others`, no other worker holds one).
pub fn work(
    queue: &mut PgQueue,
    model: &Model,
    opts: &WorkerOptions,
    on_event: OnEvent<'_>,
) -> Result<WorkSummary> {
    if opts.batch == 0 {
        return Err(Error::Usage("the batch size must be at least 1".into()));
    }
    let started = Instant::now();
    let mut summary = WorkSummary::default();
    let waiting = queue.state()?;
    let bar = opts
        .verbosity
        .bar(waiting.claimable + waiting.leased, "embed");
    // Look at the queue again at most every half second (a quarter of a short lease).
    let pause = (opts.lease / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    loop {
        // A few batches per claim, so that decoding the next batch overlaps embedding this one
        // (`data::stream` reads ahead); each batch is committed as soon as it is embedded.
        let jobs = queue.claim(&opts.name, opts.batch * BATCHES_PER_CLAIM, opts.lease)?;
        if jobs.is_empty() {
            let state = queue.state()?;
            summary.abandoned = state.abandoned;
            if state.claimable == 0 && (state.leased == 0 || !opts.wait_for_others) {
                break;
            }
            std::thread::sleep(pause);
            continue;
        }
        if !opts.pause.is_zero() {
            std::thread::sleep(opts.pause);
        }
        let paths: Vec<PathBuf> = jobs.iter().map(|j| j.path.clone()).collect();
        for batch in data::stream(paths, model.preprocess().clone(), opts.batch) {
            let mut done: Vec<(Job, Vec<f32>)> = Vec::with_capacity(batch.items.len());
            let mut failed: Vec<Job> = Vec::new();
            for (at, failure) in &batch.failures {
                let event = Event::Skipped {
                    path: &failure.path,
                    reason: &failure.reason,
                };
                opts.verbosity.report(&bar, on_event, event);
                failed.push(jobs[*at].clone());
            }
            let vectors = model.embed(batch.items.iter().map(|d| d.rgb.as_slice()))?;
            for (item, vector) in batch.items.iter().zip(vectors) {
                done.push((jobs[item.index].clone(), vector));
            }
            summary.embedded += queue.complete(&opts.name, &done, &failed)?;
            summary.skipped.extend(failed.into_iter().map(|j| j.path));
            summary.batches += 1;
            bar.inc((done.len() + batch.failures.len()) as u64);
        }
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `imgsearch index --store URL`: brings the PostgreSQL store in line with the folders (new
/// and changed files queued, files no longer there removed), then works until the queue is
/// empty, other workers helping or not.
pub fn index_postgres(
    model: &Model,
    url: &str,
    opts: &IndexOptions,
    on_event: OnEvent<'_>,
) -> Result<IndexSummary> {
    index_postgres_with(
        model,
        url,
        opts,
        Some(&WorkerOptions::new(opts.batch)),
        on_event,
    )
}

/// [`index_postgres`], working as `worker` says, or only queueing when it is `None` (the
/// embedding left to `imgsearch worker`s).
pub fn index_postgres_with(
    model: &Model,
    url: &str,
    opts: &IndexOptions,
    worker: Option<&WorkerOptions>,
    on_event: OnEvent<'_>,
) -> Result<IndexSummary> {
    let started = Instant::now();
    if opts.batch == 0 {
        return Err(Error::Usage("the batch size must be at least 1".into()));
    }
    if opts.repair {
        return Err(Error::Usage(
            "--repair is for a local index; a PostgreSQL store is repaired by PostgreSQL".into(),
        ));
    }
    let mut queue = PgQueue::prepare(url, &super::indexing::index_meta(model))?;
    let mut summary = IndexSummary::default();
    let recorded = queue.roots().to_vec();
    let stored = queue.stored()?;
    let owner = format!("the store {}", queue.describe());
    let survey = super::indexing::survey(
        opts,
        &owner,
        &recorded,
        stored.keys(),
        &mut summary,
        on_event,
    )?;
    let mut replaced = HashSet::new();
    let todo: Vec<data::FileInfo> = survey
        .files
        .into_iter()
        .filter(|f| match stored.get(&f.path) {
            Some(&(size, mtime_ns)) if size == f.size && mtime_ns == f.mtime_ns => false,
            Some(_) => {
                replaced.insert(f.path.clone());
                true
            }
            None => true,
        })
        .collect();
    queue.plan(
        &super::indexing::merge_roots(&recorded, &survey.given),
        &survey.gone,
        &todo,
    )?;
    let Some(worker) = worker else {
        // Queued only: what the workers will add and update.
        summary.updated = replaced.len();
        summary.added = todo.len() - replaced.len();
        summary.total = queue.total()?;
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    };
    let worker = WorkerOptions {
        verbosity: opts.verbosity,
        batch: opts.batch,
        ..worker.clone()
    };
    let work = work(&mut queue, model, &worker, on_event)?;
    let skipped: HashSet<&PathBuf> = work.skipped.iter().collect();
    for file in &todo {
        if skipped.contains(&file.path) {
            continue;
        }
        if replaced.contains(&file.path) {
            summary.updated += 1;
        } else {
            summary.added += 1;
        }
    }
    summary.skipped += work.skipped.len();
    if work.abandoned > 0 {
        let warning = format!(
            "{} files were given up on: their workers died {} times each (see imgsearch_jobs)",
            work.abandoned,
            crate::store::postgres::MAX_ATTEMPTS
        );
        on_event(Event::Warning(&warning));
    }
    summary.total = queue.total()?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}
