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
//!
//! The submodules, one job each: [`schema`] (the tables, their migrations, and reading and
//! checking the recorded settings), [`store`] (searching: [`PgStore`]), [`queue`] (the jobs
//! workers drain: [`PgQueue`]), and [`shards`] (a store partitioned over several databases:
//! [`create_sharded`]). This file holds what they share: connecting, naming the store in
//! messages, and turning database errors and paths into what imgsearch reports and stores.

mod queue;
mod schema;
mod shards;
mod store;

pub use queue::{Job, PgQueue, QueueState, DEFAULT_LEASE, MAX_ATTEMPTS};
pub use schema::SCHEMA_VERSION;
pub use shards::create_sharded;
pub use store::PgStore;

use crate::error::{Error, Result};
use postgres::{Client, NoTls};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}
