//! The PostgreSQL store's schema: the one definition of its tables, the migrations that bring
//! a database up to [`SCHEMA_VERSION`] (in one transaction, concurrent first runs waiting for
//! each other), and reading and checking the settings recorded in `imgsearch_meta`.

use super::{db_error, store_error};
use crate::error::Result;
use crate::index::IndexMeta;
use postgres::{Client, Transaction};
use std::collections::HashMap;
use std::path::PathBuf;

/// The schema this build writes and reads. A store with a newer one is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// The advisory lock that serialises schema migrations of concurrent first runs.
const MIGRATION_LOCK: i64 = 0x696d_6773_6561_7263; // "imgsearc"

/// The columns of `imgsearch_images` after `path`, for vectors of dimension `dim`: the one
/// definition of the table, which migration 0, each shard and a sharded coordinator create.
/// A later change to it is a new migration, not an edit here.
fn image_columns(dim: usize) -> String {
    format!(
        "id int8 NOT NULL,
         folder bytea NOT NULL,
         size int8 NOT NULL,
         mtime_ns int8 NOT NULL,
         model_id text NOT NULL,
         embedding vector({dim}) NOT NULL"
    )
}

/// `imgsearch_images` as a plain table (a store's own, or one shard's), if it is not there yet.
pub(super) fn create_images_table(dim: usize) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS imgsearch_images (
             path bytea PRIMARY KEY,
             {});",
        image_columns(dim)
    )
}

/// `imgsearch_images` as a table hash-partitioned on `path` (a sharded store's coordinator):
/// the primary key lives on each shard, a partitioned table cannot have one across foreign
/// partitions.
pub(super) fn create_partitioned_images_table(dim: usize) -> String {
    format!(
        "CREATE TABLE imgsearch_images (
             path bytea NOT NULL,
             {}) PARTITION BY HASH (path);",
        image_columns(dim)
    )
}

/// The indexes of a plain `imgsearch_images`: HNSW on the vectors, and the id lookups.
pub(super) const CREATE_IMAGES_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS imgsearch_images_embedding
         ON imgsearch_images USING hnsw (embedding vector_cosine_ops);
     CREATE INDEX IF NOT EXISTS imgsearch_images_id ON imgsearch_images (id);";

/// The store's recorded settings, read from `imgsearch_meta`.
pub(super) struct Recorded {
    pub(super) schema_version: u32,
    pub(super) meta: IndexMeta,
    pub(super) generation: u64,
    pub(super) committed_unix: u64,
    pub(super) roots: Vec<PathBuf>,
}

pub(super) fn read_meta(
    url: &str,
    client: &mut impl postgres::GenericClient,
) -> Result<Option<Recorded>> {
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
pub(super) fn column_dim(
    url: &str,
    client: &mut impl postgres::GenericClient,
) -> Result<Option<usize>> {
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
                    "{images}
                     CREATE TABLE imgsearch_jobs (
                         path bytea PRIMARY KEY,
                         folder bytea NOT NULL,
                         size int8 NOT NULL,
                         mtime_ns int8 NOT NULL,
                         worker text,
                         holder_pid int4,
                         lease_until timestamptz,
                         attempts int4 NOT NULL DEFAULT 0);",
                    images = create_images_table(dim),
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
                    tx.batch_execute(CREATE_IMAGES_INDEXES)
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
pub(super) fn prepare(url: &str, client: &mut Client, meta: &IndexMeta) -> Result<Recorded> {
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
pub(super) fn existing(url: &str, client: &mut Client) -> Result<Recorded> {
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
