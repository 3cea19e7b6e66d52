//! A PostgreSQL store partitioned over several databases: [`create_sharded`] makes each shard
//! a plain `imgsearch_images` with its HNSW index, and the coordinator a table hash-partitioned
//! on `path` with one postgres_fdw foreign partition per shard.

use super::schema::{
    column_dim, create_images_table, create_partitioned_images_table, read_meta,
    CREATE_IMAGES_INDEXES,
};
use super::{connect, db_error, store_error};
use crate::error::{Error, Result};
use crate::index::SearchOptions;

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
                 {images}
                 {indexes}
                 ALTER DATABASE {db} SET hnsw.iterative_scan = strict_order;
                 ALTER DATABASE {db} SET hnsw.ef_search = {ef};",
                images = create_images_table(dim),
                indexes = CREATE_IMAGES_INDEXES,
                db = quote_ident(&database),
                ef = SearchOptions::default().ef,
            ))
            .map_err(|e| db_error(shard, e))?;
    }
    let mut tx = coord.transaction().map_err(|e| db_error(coordinator, e))?;
    tx.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE EXTENSION IF NOT EXISTS postgres_fdw;
         {images}",
        images = create_partitioned_images_table(dim),
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
    fn quoting_doubles_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("my\"db"), "\"my\"\"db\"");
    }
}
