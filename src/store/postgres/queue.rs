//! The writing side of a PostgreSQL store: [`PgQueue`], the jobs table that indexing runs fill
//! and workers on any number of machines drain, and the commits of the vectors they make.

use super::schema::{existing, prepare, Recorded};
use super::{connect, db_error, folder_bytes, path_bytes, path_of, redacted, store_error};
use crate::data::FileInfo;
use crate::error::Result;
use crate::index::{ImageId, IndexMeta};
use pgvector::Vector;
use postgres::{Client, Transaction};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A job that failed this many times (its worker died each time) is no longer handed out.
pub const MAX_ATTEMPTS: i32 = 5;

/// How long a claimed job is its worker's before another may take it over (unless the worker's
/// session is gone first); renewed at every commit of the claim.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// A job nobody holds: never claimed, its lease ran out, or its worker's session is gone.
macro_rules! free_job {
    () => {
        "lease_until IS NULL OR lease_until < now() \
         OR NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = holder_pid)"
    };
}

/// A claimed job: one file to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Jobs in the queue, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Waiting for a worker (never claimed, or their lease ran out).
    pub claimable: u64,
    /// Held by a worker whose lease is still running.
    pub leased: u64,
    /// Given up on: their workers died [`MAX_ATTEMPTS`] times.
    pub abandoned: u64,
}

/// The writing side of a PostgreSQL store: the queue of files to embed and the commits of
/// their vectors. One per worker or indexing run (one connection each).
pub struct PgQueue {
    url: String,
    client: Client,
    meta: IndexMeta,
    roots: Vec<PathBuf>,
    /// The lease of the last claim, renewed for the rest of it at every commit.
    lease: Duration,
}

impl PgQueue {
    /// Connects to `url` as a store for `meta`'s model: creates or migrates the schema, and
    /// refuses a store of another model, another dimension, or a newer schema.
    pub fn prepare(url: &str, meta: &IndexMeta) -> Result<PgQueue> {
        let mut client = connect(url)?;
        let recorded = prepare(url, &mut client, meta)?;
        Ok(PgQueue::on(url, client, recorded))
    }

    /// Connects to an existing store (a worker learns the model from it).
    pub fn open(url: &str) -> Result<PgQueue> {
        let mut client = connect(url)?;
        let recorded = existing(url, &mut client)?;
        Ok(PgQueue::on(url, client, recorded))
    }

    /// The queue on `client`, a connection to the store at `url` whose settings are `recorded`.
    fn on(url: &str, client: Client, recorded: Recorded) -> PgQueue {
        PgQueue {
            url: url.to_string(),
            client,
            meta: recorded.meta,
            roots: recorded.roots,
            lease: DEFAULT_LEASE,
        }
    }

    pub fn describe(&self) -> String {
        redacted(&self.url)
    }

    pub fn meta(&self) -> &IndexMeta {
        &self.meta
    }

    /// The folders the store was given.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Every stored entry's path, size and modification time.
    pub fn stored(&mut self) -> Result<HashMap<PathBuf, (u64, i64)>> {
        let rows = self
            .client
            .query("SELECT path, size, mtime_ns FROM imgsearch_images", &[])
            .map_err(|e| db_error(&self.url, e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    path_of(r.get(0)),
                    (r.get::<_, i64>(1).max(0) as u64, r.get(2)),
                )
            })
            .collect())
    }

    /// In one transaction: records `roots`, removes `gone` (entries and jobs), and queues
    /// `todo` (a queued file queued again keeps one job, with the newer size and time).
    pub fn plan(&mut self, roots: &[PathBuf], gone: &[PathBuf], todo: &[FileInfo]) -> Result<()> {
        let url = self.url.clone();
        let err = |e| db_error(&url, e);
        let roots_json = roots
            .iter()
            .map(|r| {
                r.to_str().map(str::to_string).ok_or_else(|| {
                    store_error(
                        &url,
                        format!(
                            "{}: a folder whose name is not UTF-8 cannot be recorded in a PostgreSQL store",
                            r.display()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<String>>>()?;
        let mut tx = self.client.transaction().map_err(err)?;
        tx.execute(
            "UPDATE imgsearch_meta SET value = $1 WHERE key = 'roots'",
            &[&serde_json::to_string(&roots_json).unwrap_or_else(|_| "[]".into())],
        )
        .map_err(err)?;
        for chunk in gone.chunks(10_000) {
            let paths: Vec<Vec<u8>> = chunk.iter().map(|p| path_bytes(p)).collect();
            tx.execute("DELETE FROM imgsearch_jobs WHERE path = ANY($1)", &[&paths])
                .map_err(err)?;
            tx.execute(
                "DELETE FROM imgsearch_images WHERE path = ANY($1)",
                &[&paths],
            )
            .map_err(err)?;
        }
        if !gone.is_empty() {
            bump_generation(&mut tx).map_err(err)?;
        }
        for chunk in todo.chunks(10_000) {
            let paths: Vec<Vec<u8>> = chunk.iter().map(|f| path_bytes(&f.path)).collect();
            let folders: Vec<Vec<u8>> = chunk.iter().map(|f| folder_bytes(&f.path)).collect();
            let sizes: Vec<i64> = chunk.iter().map(|f| f.size as i64).collect();
            let mtimes: Vec<i64> = chunk.iter().map(|f| f.mtime_ns).collect();
            tx.execute(
                "INSERT INTO imgsearch_jobs (path, folder, size, mtime_ns)
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[])
                 ON CONFLICT (path) DO UPDATE
                 SET folder = excluded.folder, size = excluded.size,
                     mtime_ns = excluded.mtime_ns, attempts = 0",
                &[&paths, &folders, &sizes, &mtimes],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.roots = roots.to_vec();
        Ok(())
    }

    /// Claims up to `count` jobs for `worker` for `lease`: jobs nobody holds, or whose
    /// worker's lease ran out or whose worker's session is gone. Concurrent workers never get
    /// the same job.
    pub fn claim(&mut self, worker: &str, count: usize, lease: Duration) -> Result<Vec<Job>> {
        self.lease = lease;
        let rows = self
            .client
            .query(
                concat!(
                    "WITH picked AS (
                         SELECT path FROM imgsearch_jobs
                         WHERE (",
                    free_job!(),
                    ") AND attempts < $4
                         ORDER BY path LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     UPDATE imgsearch_jobs AS j
                     SET worker = $1, holder_pid = pg_backend_pid(),
                         lease_until = now() + make_interval(secs => $2),
                         attempts = j.attempts + 1
                     FROM picked WHERE j.path = picked.path
                     RETURNING j.path, j.size, j.mtime_ns"
                ),
                &[
                    &worker,
                    &lease.as_secs_f64(),
                    &(count as i64),
                    &MAX_ATTEMPTS,
                ],
            )
            .map_err(|e| db_error(&self.url, e))?;
        let mut jobs: Vec<Job> = rows
            .into_iter()
            .map(|r| Job {
                path: path_of(r.get(0)),
                size: r.get::<_, i64>(1).max(0) as u64,
                mtime_ns: r.get(2),
            })
            .collect();
        jobs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(jobs)
    }

    /// Commits a worker's batch in one transaction: the vectors of `done` replace their
    /// entries, `failed` (files that no longer decode) lose theirs, and their jobs end. Jobs
    /// `worker` no longer holds (its lease ran out and another worker took them) are left to
    /// that worker. Returns how many vectors were stored.
    pub fn complete(
        &mut self,
        worker: &str,
        done: &[(Job, Vec<f32>)],
        failed: &[Job],
    ) -> Result<usize> {
        let url = self.url.clone();
        let err = |e| db_error(&url, e);
        let model_id = self.meta.model_id.clone();
        let dim = self.meta.dim;
        let lease = self.lease.as_secs_f64();
        let mut tx = self.client.transaction().map_err(err)?;
        let all: Vec<Vec<u8>> = done
            .iter()
            .map(|(job, _)| path_bytes(&job.path))
            .chain(failed.iter().map(|job| path_bytes(&job.path)))
            .collect();
        let held: std::collections::HashSet<Vec<u8>> = tx
            .query(
                "DELETE FROM imgsearch_jobs WHERE path = ANY($1) AND worker = $2 RETURNING path",
                &[&all, &worker],
            )
            .map_err(err)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let owned: Vec<Vec<u8>> = all.into_iter().filter(|p| held.contains(p)).collect();
        tx.execute(
            "DELETE FROM imgsearch_images WHERE path = ANY($1)",
            &[&owned],
        )
        .map_err(err)?;
        let kept: Vec<&(Job, Vec<f32>)> = done
            .iter()
            .filter(|(job, _)| held.contains(&path_bytes(&job.path)))
            .collect();
        let mut vectors = Vec::with_capacity(kept.len());
        for (job, vector) in &kept {
            if vector.len() != dim {
                return Err(store_error(
                    &url,
                    format!(
                        "{}: vector of dimension {} for a store of dimension {dim}",
                        job.path.display(),
                        vector.len()
                    ),
                ));
            }
            let v = crate::index::normalized(vector).ok_or_else(|| {
                store_error(
                    &url,
                    format!(
                        "{}: the embedding is zero or not finite",
                        job.path.display()
                    ),
                )
            })?;
            vectors.push(Vector::from(v));
        }
        let paths: Vec<Vec<u8>> = kept.iter().map(|(j, _)| path_bytes(&j.path)).collect();
        let ids: Vec<i64> = kept
            .iter()
            .map(|(j, _)| ImageId::of(&j.path).0 as i64)
            .collect();
        let folders: Vec<Vec<u8>> = kept.iter().map(|(j, _)| folder_bytes(&j.path)).collect();
        let sizes: Vec<i64> = kept.iter().map(|(j, _)| j.size as i64).collect();
        let mtimes: Vec<i64> = kept.iter().map(|(j, _)| j.mtime_ns).collect();
        if !kept.is_empty() {
            tx.execute(
                "INSERT INTO imgsearch_images (path, id, folder, size, mtime_ns, model_id, embedding)
                 SELECT p, i, f, s, m, $7, e
                 FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[], $5::int8[], $6::vector[])
                      AS u(p, i, f, s, m, e)",
                &[&paths, &ids, &folders, &sizes, &mtimes, &vectors, &model_id],
            )
            .map_err(err)?;
        }
        if !owned.is_empty() {
            bump_generation(&mut tx).map_err(err)?;
        }
        // What is left of the claim is still being worked on: its lease starts again.
        tx.execute(
            "UPDATE imgsearch_jobs SET lease_until = now() + make_interval(secs => $2)
             WHERE worker = $1",
            &[&worker, &lease],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(kept.len())
    }

    /// How many jobs wait, are held, or were given up on.
    pub fn state(&mut self) -> Result<QueueState> {
        let row = self
            .client
            .query_one(
                concat!(
                    "SELECT count(*) FILTER (WHERE (",
                    free_job!(),
                    ") AND attempts < $1),
                        count(*) FILTER (WHERE NOT (",
                    free_job!(),
                    ")),
                        count(*) FILTER (WHERE (",
                    free_job!(),
                    ") AND attempts >= $1)
                     FROM imgsearch_jobs"
                ),
                &[&MAX_ATTEMPTS],
            )
            .map_err(|e| db_error(&self.url, e))?;
        let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(QueueState {
            claimable: n(0),
            leased: n(1),
            abandoned: n(2),
        })
    }

    /// Entries stored now.
    pub fn total(&mut self) -> Result<usize> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM imgsearch_images", &[])
            .map_err(|e| db_error(&self.url, e))?
            .get(0);
        Ok(n.max(0) as usize)
    }
}

fn bump_generation(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    tx.batch_execute(
        "UPDATE imgsearch_meta SET value = (value::int8 + 1)::text WHERE key = 'generation';
         UPDATE imgsearch_meta SET value = extract(epoch FROM now())::int8::text
             WHERE key = 'committed_unix';",
    )
}
