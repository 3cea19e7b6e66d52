//! The PostgreSQL store: vectors in a pgvector `vector(D)` column with an HNSW index
//! (`vector_cosine_ops`), entries beside them, and a jobs table that workers on any number of
//! machines drain. This module owns the schema (versioned, migrated in one transaction), every
//! SQL statement imgsearch sends, and the messages for a database that is missing, gone, newer,
//! or written by another model.
//!
//! Tables (schema version [`SCHEMA_VERSION`]):
//!
//! ```text
//! imgsearch_meta    key text primary key, value text      schema_version, model_id, model_name,
//!                                                        dim, preprocess, generation, roots
//! imgsearch_images  path bytea primary key, id int8, folder bytea, size int8, mtime_ns int8,
//!                   model_id text, embedding vector(D)   HNSW index, vector_cosine_ops
//! imgsearch_jobs    path bytea primary key, folder bytea, size int8, mtime_ns int8,
//!                   worker text, holder_pid int4, lease_until timestamptz, attempts int4
//! ```
//!
//! Paths are stored as their bytes (a file name need not be UTF-8). `imgsearch_images` may
//! instead be a table hash-partitioned on `path` over shards (postgres_fdw): see
//! [`create_sharded`]; every statement here works on either.
//!
//! A job is claimed with `FOR UPDATE SKIP LOCKED` and a lease; completing it deletes the job
//! row only if this worker still holds it and replaces the image's row, in one transaction. A
//! worker that dies loses its batch, to another worker, when its lease runs out or as soon as
//! its database session is gone (`holder_pid` no longer in `pg_stat_activity`: a killed
//! process's connection closes at once); the primary key on `path`
//! (hash partitions keep one path on one shard) means no image is stored twice.

use crate::data::FileInfo;
use crate::error::{Error, Result};
use crate::index::{Entry, Hit, ImageId, IndexMeta, SearchOptions};
use pgvector::Vector;
use postgres::{Client, NoTls, Transaction};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The schema this build writes and reads. A store with a newer one is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// A job that failed this many times (its worker died each time) is no longer handed out.
pub const MAX_ATTEMPTS: i32 = 5;

/// How long a claimed job is its worker's before another may take it over (unless the worker's
/// session is gone first); renewed at every commit of the claim.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// pgvector's own cap on `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// A job nobody holds: never claimed, its lease ran out, or its worker's session is gone.
macro_rules! free_job {
    () => {
        "lease_until IS NULL OR lease_until < now() \
         OR NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = holder_pid)"
    };
}

/// The advisory lock that serialises schema migrations of concurrent first runs.
const MIGRATION_LOCK: i64 = 0x696d_6773_6561_7263; // "imgsearc"

/// The URL with its password replaced, for messages.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{}{user}{hidden}{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

fn store_error(url: &str, reason: impl Into<String>) -> Error {
    Error::Store {
        store: redacted(url),
        reason: reason.into(),
    }
}

/// A database error in words, and what to do when the connection is gone.
fn db_error(url: &str, e: postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let mut reason = db.message().to_string();
        if let Some(detail) = db.detail() {
            reason.push_str(&format!(" ({detail})"));
        }
        // Class 08 (connection exception) and 57 (operator intervention: a shutdown, a
        // restart): the server is going away, not refusing the work.
        let code = db.code().code();
        if code.starts_with("08") || code.starts_with("57") {
            reason.push_str(
                ": the server went away; when it is back, run the command again: \
                 it carries on where it stopped",
            );
        }
        return store_error(url, reason);
    }
    if e.is_closed() || std::error::Error::source(&e).is_some() {
        return store_error(
            url,
            format!(
                "the connection to the database failed or was lost ({e}): check that the \
                 server is up, then run the command again; it carries on where it stopped"
            ),
        );
    }
    store_error(url, e.to_string())
}

fn connect(url: &str) -> Result<Client> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| store_error(url, format!("not a valid PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("imgsearch");
    }
    config.connect(NoTls).map_err(|e| db_error(url, e))
}

fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

fn path_of(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

fn folder_bytes(path: &Path) -> Vec<u8> {
    path.parent().map(path_bytes).unwrap_or_default()
}

/// The store's recorded settings, read from `imgsearch_meta`.
struct Recorded {
    schema_version: u32,
    meta: IndexMeta,
    generation: u64,
    committed_unix: u64,
    roots: Vec<PathBuf>,
}

fn read_meta(url: &str, client: &mut impl postgres::GenericClient) -> Result<Option<Recorded>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('imgsearch_meta') IS NOT NULL", &[])
        .map_err(|e| db_error(url, e))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query("SELECT key, value FROM imgsearch_meta", &[])
        .map_err(|e| db_error(url, e))?;
    let values: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let get = |key: &str| {
        values.get(key).cloned().ok_or_else(|| {
            store_error(
                url,
                format!("imgsearch_meta has no '{key}': not a store imgsearch made, or damaged"),
            )
        })
    };
    let number = |key: &str| -> Result<u64> {
        get(key)?
            .parse()
            .map_err(|_| store_error(url, format!("imgsearch_meta '{key}' is not a number")))
    };
    let schema_version = number("schema_version")? as u32;
    if schema_version > SCHEMA_VERSION {
        return Err(store_error(
            url,
            format!(
                "the store has schema version {schema_version}, written by a newer imgsearch; \
                 this one reads up to version {SCHEMA_VERSION}: upgrade imgsearch (or use another database)"
            ),
        ));
    }
    let preprocess = serde_json::from_str(&get("preprocess")?)
        .map_err(|e| store_error(url, format!("imgsearch_meta 'preprocess' is not JSON: {e}")))?;
    let roots: Vec<String> = serde_json::from_str(&get("roots")?)
        .map_err(|e| store_error(url, format!("imgsearch_meta 'roots' is not JSON: {e}")))?;
    Ok(Some(Recorded {
        schema_version,
        meta: IndexMeta {
            model_id: get("model_id")?,
            model_name: get("model_name")?,
            dim: number("dim")? as usize,
            preprocess,
        },
        generation: number("generation")?,
        committed_unix: number("committed_unix")?,
        roots: roots.into_iter().map(PathBuf::from).collect(),
    }))
}

/// The `vector(D)` dimension of `imgsearch_images.embedding`, if the table exists.
fn column_dim(url: &str, client: &mut impl postgres::GenericClient) -> Result<Option<usize>> {
    let row = client
        .query_opt(
            "SELECT atttypmod FROM pg_attribute \
             WHERE attrelid = to_regclass('imgsearch_images') AND attname = 'embedding'",
            &[],
        )
        .map_err(|e| db_error(url, e))?;
    Ok(row.map(|r| r.get::<_, i32>(0).max(0) as usize))
}

/// Migration `n` takes the schema from version `n` to `n + 1`; each runs in the migrating
/// transaction. Version 0 is an empty database.
fn migrate(url: &str, tx: &mut Transaction<'_>, from: u32, dim: usize) -> Result<()> {
    for version in from..SCHEMA_VERSION {
        match version {
            0 => {
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS imgsearch_images (
                         path bytea PRIMARY KEY,
                         id int8 NOT NULL,
                         folder bytea NOT NULL,
                         size int8 NOT NULL,
                         mtime_ns int8 NOT NULL,
                         model_id text NOT NULL,
                         embedding vector({dim}) NOT NULL);
                     CREATE TABLE imgsearch_jobs (
                         path bytea PRIMARY KEY,
                         folder bytea NOT NULL,
                         size int8 NOT NULL,
                         mtime_ns int8 NOT NULL,
                         worker text,
                         holder_pid int4,
                         lease_until timestamptz,
                         attempts int4 NOT NULL DEFAULT 0);"
                ))
                .map_err(|e| db_error(url, e))?;
                // A table partitioned over shards carries its HNSW indexes on the shards.
                let plain: bool = tx
                    .query_one(
                        "SELECT relkind = 'r' FROM pg_class WHERE oid = 'imgsearch_images'::regclass",
                        &[],
                    )
                    .map_err(|e| db_error(url, e))?
                    .get(0);
                if plain {
                    tx.batch_execute(
                        "CREATE INDEX IF NOT EXISTS imgsearch_images_embedding
                             ON imgsearch_images USING hnsw (embedding vector_cosine_ops);
                         CREATE INDEX IF NOT EXISTS imgsearch_images_id ON imgsearch_images (id);",
                    )
                    .map_err(|e| db_error(url, e))?;
                }
            }
            other => unreachable!("no migration from schema version {other}"),
        }
    }
    tx.execute(
        "UPDATE imgsearch_meta SET value = $1 WHERE key = 'schema_version'",
        &[&SCHEMA_VERSION.to_string()],
    )
    .map_err(|e| db_error(url, e))?;
    Ok(())
}

/// Refuses a store whose vectors another model (or another dimension) made.
fn check_model(url: &str, stored: &IndexMeta, meta: &IndexMeta) -> Result<()> {
    if stored.dim != meta.dim {
        return Err(store_error(
            url,
            format!(
                "the store holds {}-dimensional vectors (model {}) but this model makes {}: \
                 use the store's model, or another database",
                stored.dim, stored.model_name, meta.dim
            ),
        ));
    }
    if stored.model_id != meta.model_id {
        return Err(store_error(
            url,
            format!(
                "the store was built with model {} ({}) but the current model is {} ({}): \
                 use the same model, or another database",
                stored.model_id, stored.model_name, meta.model_id, meta.model_name
            ),
        ));
    }
    Ok(())
}

/// Makes the database at `url` an imgsearch store for `meta`'s model, or checks that it is
/// one: creates or migrates the schema in one transaction (concurrent first runs wait for each
/// other), and refuses a store of another model or dimension or of a newer schema.
fn prepare(url: &str, client: &mut Client, meta: &IndexMeta) -> Result<Recorded> {
    let standby: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|e| db_error(url, e))?
        .get(0);
    if standby {
        return Err(store_error(
            url,
            "this server is a read-only replica: it serves searches; index into the primary",
        ));
    }
    let mut tx = client.transaction().map_err(|e| db_error(url, e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| db_error(url, e))?;
    let recorded = match read_meta(url, &mut tx)? {
        Some(recorded) => {
            check_model(url, &recorded.meta, meta)?;
            if recorded.schema_version < SCHEMA_VERSION {
                migrate(url, &mut tx, recorded.schema_version, meta.dim)?;
            }
            recorded
        }
        None => {
            let has_vector: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')",
                    &[],
                )
                .map_err(|e| db_error(url, e))?
                .get(0);
            if !has_vector {
                return Err(store_error(
                    url,
                    "the pgvector extension is not installed on this server: install it \
                     (docs/SCALE.md, or .ci/postgres-setup), then run again",
                ));
            }
            tx.batch_execute(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TABLE imgsearch_meta (key text PRIMARY KEY, value text NOT NULL);",
            )
            .map_err(|e| db_error(url, e))?;
            if let Some(dim) = column_dim(url, &mut tx)? {
                if dim != meta.dim {
                    return Err(store_error(
                        url,
                        format!(
                            "imgsearch_images holds vector({dim}) but this model makes {}-dimensional vectors: \
                             create the shards for dimension {} (imgsearch store-init), or use another database",
                            meta.dim, meta.dim
                        ),
                    ));
                }
            }
            let preprocess = meta.preprocess.to_string();
            let dim = meta.dim.to_string();
            for (key, value) in [
                ("schema_version", "0"),
                ("model_id", meta.model_id.as_str()),
                ("model_name", meta.model_name.as_str()),
                ("dim", dim.as_str()),
                ("preprocess", preprocess.as_str()),
                ("generation", "0"),
                ("committed_unix", "0"),
                ("roots", "[]"),
            ] {
                tx.execute(
                    "INSERT INTO imgsearch_meta (key, value) VALUES ($1, $2)",
                    &[&key, &value],
                )
                .map_err(|e| db_error(url, e))?;
            }
            migrate(url, &mut tx, 0, meta.dim)?;
            Recorded {
                schema_version: SCHEMA_VERSION,
                meta: meta.clone(),
                generation: 0,
                committed_unix: 0,
                roots: Vec::new(),
            }
        }
    };
    tx.commit().map_err(|e| db_error(url, e))?;
    Ok(recorded)
}

/// Reads an existing store's settings; never writes (a read replica serves this).
fn existing(url: &str, client: &mut Client) -> Result<Recorded> {
    let recorded = read_meta(url, client)?.ok_or_else(|| {
        store_error(
            url,
            "no imgsearch store in this database: run `imgsearch index DIR --store URL` first",
        )
    })?;
    if recorded.schema_version < SCHEMA_VERSION {
        return Err(store_error(
            url,
            format!(
                "the store has schema version {}; this imgsearch needs {SCHEMA_VERSION}: \
                 run `imgsearch index --store URL` (on the primary) once to migrate it",
                recorded.schema_version
            ),
        ));
    }
    Ok(recorded)
}

/// The searching side of a PostgreSQL store (a primary or a read replica).
pub struct PgStore {
    url: String,
    /// `None` only while being dropped.
    client: Mutex<Option<Client>>,
    meta: IndexMeta,
    len: usize,
    generation: u64,
    roots: Vec<PathBuf>,
    /// The foreign partitions of a table sharded by [`create_sharded`], quoted; empty for a
    /// plain table.
    partitions: Vec<String>,
    /// The nearest-neighbour query for this table's layout.
    search_sql: String,
    committed_unix: u64,
    /// pgvector 0.8's iterative index scans: a search for more rows than `hnsw.ef_search`
    /// keeps going instead of returning fewer.
    iterative_scan: bool,
}

impl PgStore {
    /// Connects to the store at `url` for searching. Nothing is written.
    pub fn open(url: &str) -> Result<PgStore> {
        let mut client = connect(url)?;
        let recorded = existing(url, &mut client)?;
        let len: i64 = client
            .query_one("SELECT count(*) FROM imgsearch_images", &[])
            .map_err(|e| db_error(url, e))?
            .get(0);
        let version: Option<String> = client
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
                &[],
            )
            .map_err(|e| db_error(url, e))?
            .map(|r| r.get(0));
        let iterative_scan = version.as_deref().is_some_and(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (0, 8)
        });
        let partitions: Vec<String> = client
            .query(
                "SELECT quote_ident(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = to_regclass('imgsearch_images') ORDER BY c.relname",
                &[],
            )
            .map_err(|e| db_error(url, e))?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(PgStore {
            url: url.to_string(),
            client: Mutex::new(Some(client)),
            meta: recorded.meta,
            len: len.max(0) as usize,
            generation: recorded.generation,
            roots: recorded.roots,
            search_sql: search_sql(&partitions),
            partitions,
            committed_unix: recorded.committed_unix,
            iterative_scan,
        })
    }

    /// The store's generation now (it grows with every commit of any worker).
    pub fn current_generation(&self) -> Result<u64> {
        self.with_client(|client| {
            let value: String = client
                .query_one(
                    "SELECT value FROM imgsearch_meta WHERE key = 'generation'",
                    &[],
                )
                .map_err(|e| db_error(&self.url, e))?
                .get(0);
            Ok(value.parse().unwrap_or(0))
        })
    }

    /// Runs `work` on the connection, reconnecting first if the last one was lost.
    fn with_client<T>(&self, work: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client = match slot.take() {
            Some(client) if !client.is_closed() => client,
            _ => connect(&self.url)?,
        };
        let client = slot.insert(client);
        work(client)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The synchronous client closes its connection on its own runtime, which cannot start
        // on a thread driving tokio (the server drops old generations there): close it on a
        // thread of its own then.
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(client) = client {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

/// An entry and its vector from a `SELECT path, size, mtime_ns, embedding` row.
fn entry_of(row: &postgres::Row) -> (Entry, Vec<f32>) {
    let vector: Vector = row.get(3);
    (
        Entry {
            path: path_of(row.get(0)),
            size: row.get::<_, i64>(1).max(0) as u64,
            mtime_ns: row.get(2),
        },
        vector.to_vec(),
    )
}

/// The top-k query: straight on a plain table; on a sharded one, each shard's top-k (postgres_fdw
/// pushes ORDER BY and LIMIT down to a single foreign table, where the shard's HNSW index answers
/// them; through the partitioned parent it would push neither), merged.
fn search_sql(partitions: &[String]) -> String {
    if partitions.is_empty() {
        return "SELECT path, (1 - (embedding <=> $1))::float4 FROM imgsearch_images \
                ORDER BY embedding <=> $1 LIMIT $2"
            .to_string();
    }
    let each: Vec<String> = partitions
        .iter()
        .map(|p| {
            format!(
                "(SELECT path, embedding <=> $1 AS distance FROM {p} ORDER BY embedding <=> $1 LIMIT $2)"
            )
        })
        .collect();
    format!(
        "SELECT path, (1 - distance)::float4 FROM ({}) AS shards ORDER BY distance LIMIT $2",
        each.join(" UNION ALL ")
    )
}

impl super::Store for PgStore {
    fn describe(&self) -> String {
        redacted(&self.url)
    }
    fn meta(&self) -> &IndexMeta {
        &self.meta
    }
    fn len(&self) -> usize {
        self.len
    }
    fn generation(&self) -> u64 {
        self.generation
    }

    fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit>> {
        if query.len() != self.meta.dim {
            return Err(store_error(
                &self.url,
                format!(
                    "query vector of dimension {} for a store of dimension {}",
                    query.len(),
                    self.meta.dim
                ),
            ));
        }
        if opts.k == 0 {
            return Ok(Vec::new());
        }
        let q = crate::index::normalized(query)
            .ok_or_else(|| store_error(&self.url, "query vector is zero or not finite"))?;
        let ef = opts.ef.max(opts.k).clamp(1, MAX_EF_SEARCH);
        let mut settings = format!("SET LOCAL hnsw.ef_search = {ef};");
        if self.iterative_scan {
            // Without it an HNSW scan returns at most ef_search rows, and a table partitioned
            // over shards gets no LIMIT pushed down to each shard.
            settings.push_str("SET LOCAL hnsw.iterative_scan = strict_order;");
        }
        if opts.exact {
            settings.push_str("SET LOCAL enable_indexscan = off;");
        }
        let k = opts.k as i64;
        let rows = self.with_client(|client| {
            let mut tx = client
                .build_transaction()
                .read_only(true)
                .start()
                .map_err(|e| db_error(&self.url, e))?;
            tx.batch_execute(&settings)
                .map_err(|e| db_error(&self.url, e))?;
            let rows = tx
                .query(&self.search_sql, &[&Vector::from(q), &k])
                .map_err(|e| db_error(&self.url, e))?;
            tx.commit().map_err(|e| db_error(&self.url, e))?;
            Ok(rows)
        })?;
        let mut hits: Vec<Hit> = rows
            .into_iter()
            .map(|r| Hit {
                path: path_of(r.get(0)),
                score: r.get(1),
            })
            .collect();
        if let Some(min) = opts.min_score {
            hits.retain(|h| h.score >= min);
        }
        Ok(hits)
    }

    fn entries_with_vectors(&self) -> Result<Vec<(Entry, Vec<f32>)>> {
        let rows = self.with_client(|client| {
            client
                .query(
                    "SELECT path, size, mtime_ns, embedding FROM imgsearch_images ORDER BY path",
                    &[],
                )
                .map_err(|e| db_error(&self.url, e))
        })?;
        Ok(rows.iter().map(entry_of).collect())
    }

    fn roots(&self) -> Vec<PathBuf> {
        self.roots.clone()
    }

    fn lookup(&self, id: ImageId) -> Result<Option<(Entry, Vec<f32>)>> {
        let row = self.with_client(|client| {
            client
                .query_opt(
                    "SELECT path, size, mtime_ns, embedding FROM imgsearch_images WHERE id = $1 LIMIT 1",
                    &[&(id.0 as i64)],
                )
                .map_err(|e| db_error(&self.url, e))
        })?;
        Ok(row.as_ref().map(entry_of))
    }

    fn segment_count(&self) -> usize {
        self.partitions.len().max(1)
    }

    fn committed_unix(&self) -> u64 {
        self.committed_unix
    }

    fn latest_generation(&self) -> Result<Option<u64>> {
        self.current_generation().map(Some)
    }

    fn reopen(&self) -> Result<Box<dyn super::Store>> {
        Ok(Box::new(PgStore::open(&self.url)?))
    }

    fn blocks(&self) -> bool {
        true
    }
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
        Ok(PgQueue {
            url: url.to_string(),
            client,
            meta: recorded.meta,
            roots: recorded.roots,
            lease: DEFAULT_LEASE,
        })
    }

    /// Connects to an existing store (a worker learns the model from it).
    pub fn open(url: &str) -> Result<PgQueue> {
        let mut client = connect(url)?;
        let recorded = existing(url, &mut client)?;
        Ok(PgQueue {
            url: url.to_string(),
            client,
            meta: recorded.meta,
            roots: recorded.roots,
            lease: DEFAULT_LEASE,
        })
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

/// Makes `coordinator` the entry point of a store whose images are hash-partitioned on `path`
/// over `shards` (postgres_fdw): on each shard a plain `imgsearch_images` table with its HNSW
/// index and iterative index scans on; on the coordinator the partitioned table, one foreign
/// partition per shard. Run it once, before the first `imgsearch index --store COORDINATOR`.
/// `user` and `password` are what the coordinator logs into the shards with.
pub fn create_sharded(coordinator: &str, shards: &[String], dim: usize) -> Result<()> {
    if shards.is_empty() {
        return Err(Error::Usage("give at least one --shard URL".into()));
    }
    let mut coord = connect(coordinator)?;
    if read_meta(coordinator, &mut coord)?.is_some()
        || column_dim(coordinator, &mut coord)?.is_some()
    {
        return Err(store_error(
            coordinator,
            "already holds imgsearch tables: shards are set up on an empty database",
        ));
    }
    let modulus = shards.len();
    for shard in shards {
        let mut client = connect(shard)?;
        let database: String = client
            .query_one("SELECT current_database()", &[])
            .map_err(|e| db_error(shard, e))?
            .get(0);
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS vector;
                 CREATE TABLE IF NOT EXISTS imgsearch_images (
                     path bytea PRIMARY KEY,
                     id int8 NOT NULL,
                     folder bytea NOT NULL,
                     size int8 NOT NULL,
                     mtime_ns int8 NOT NULL,
                     model_id text NOT NULL,
                     embedding vector({dim}) NOT NULL);
                 CREATE INDEX IF NOT EXISTS imgsearch_images_embedding
                     ON imgsearch_images USING hnsw (embedding vector_cosine_ops);
                 CREATE INDEX IF NOT EXISTS imgsearch_images_id ON imgsearch_images (id);
                 ALTER DATABASE {db} SET hnsw.iterative_scan = strict_order;
                 ALTER DATABASE {db} SET hnsw.ef_search = {ef};",
                db = quote_ident(&database),
                ef = SearchOptions::default().ef,
            ))
            .map_err(|e| db_error(shard, e))?;
    }
    let mut tx = coord.transaction().map_err(|e| db_error(coordinator, e))?;
    tx.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE EXTENSION IF NOT EXISTS postgres_fdw;
         CREATE TABLE imgsearch_images (
             path bytea NOT NULL,
             id int8 NOT NULL,
             folder bytea NOT NULL,
             size int8 NOT NULL,
             mtime_ns int8 NOT NULL,
             model_id text NOT NULL,
             embedding vector({dim}) NOT NULL) PARTITION BY HASH (path);"
    ))
    .map_err(|e| db_error(coordinator, e))?;
    for (remainder, shard) in shards.iter().enumerate() {
        let config: postgres::Config = shard
            .parse()
            .map_err(|e| store_error(shard, format!("not a valid PostgreSQL URL: {e}")))?;
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = config.get_dbname().unwrap_or("postgres").to_string();
        let user = config.get_user().unwrap_or("postgres").to_string();
        let server = format!("imgsearch_shard_{remainder}");
        let mut mapping = format!("user {}", quote_literal(&user));
        if let Some(password) = config.get_password() {
            mapping.push_str(&format!(
                ", password {}",
                quote_literal(&String::from_utf8_lossy(password))
            ));
        }
        tx.batch_execute(&format!(
            "CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw
                 OPTIONS (host {}, port {}, dbname {}, extensions 'vector',
                          fetch_size '1000', batch_size '1000');
             CREATE USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS ({mapping});
             CREATE FOREIGN TABLE imgsearch_images_{remainder}
                 PARTITION OF imgsearch_images FOR VALUES WITH (MODULUS {modulus}, REMAINDER {remainder})
                 SERVER {server} OPTIONS (table_name 'imgsearch_images');",
            quote_literal(&host),
            quote_literal(&port.to_string()),
            quote_literal(&dbname),
        ))
        .map_err(|e| db_error(coordinator, e))?;
    }
    tx.commit().map_err(|e| db_error(coordinator, e))?;
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_hides_only_the_password() {
        assert_eq!(
            redacted("postgres://me:secret@db.example:5432/photos?sslmode=disable"),
            "postgres://me:***@db.example:5432/photos?sslmode=disable"
        );
        assert_eq!(
            redacted("postgresql://me@host/db"),
            "postgresql://me@host/db"
        );
        assert_eq!(redacted("postgres://host/db"), "postgres://host/db");
        assert_eq!(redacted("postgres://a:b@c"), "postgres://a:***@c");
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("my\"db"), "\"my\"\"db\"");
    }
}
