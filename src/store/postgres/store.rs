//! Searching a PostgreSQL store: [`PgStore`], the [`Store`] of a primary
//! or a read replica, with the nearest-neighbour query for a plain or a sharded table.

use super::schema::existing;
use super::{connect, db_error, path_of, redacted, store_error};
use crate::error::Result;
use crate::index::{Entry, Hit, ImageId, IndexMeta, SearchOptions};
use crate::store::{Store, StoreKind};
use pgvector::Vector;
use postgres::Client;
use std::path::PathBuf;
use std::sync::Mutex;

/// pgvector's own cap on `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

/// The searching side of a PostgreSQL store (a primary or a read replica).
pub struct PgStore {
    url: String,
    /// `None` only while being dropped.
    client: Mutex<Option<Client>>,
    meta: IndexMeta,
    len: usize,
    generation: u64,
    roots: Vec<PathBuf>,
    /// The foreign partitions of a table sharded by [`create_sharded`](super::create_sharded),
    /// quoted; empty for a plain table.
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

impl Store for PgStore {
    fn describe(&self) -> String {
        redacted(&self.url)
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
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

    fn reopen(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(PgStore::open(&self.url)?))
    }

    fn blocks(&self) -> bool {
        true
    }
}
