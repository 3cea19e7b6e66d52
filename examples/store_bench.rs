//! The PostgreSQL store beside the local index, on the same vectors, in one run: insert rate,
//! recall@10 against the exact top-10, and queries per second at 1 and 8 clients, for the local
//! index, pgvector on one node, and pgvector partitioned over two shards (postgres_fdw, through
//! a coordinator); then the embedding throughput of 1 and 2 `imgsearch worker`s on real images.
//!
//! ```text
//! cargo run --release --example store_bench -- --n 100000 [--dim 64] [--queries 500] \
//!     [--clustered 100 | --from-index DIR] [--images DIR] [--only local,one,bulk,two,workers] \
//!     [--load incremental|bulk]
//! ```
//!
//! PostgreSQL 15 with pgvector must be installed (`.ci/postgres-setup`); the benchmark starts its
//! own throw-away clusters (every one on this machine: the shards share its cores). Vectors go
//! in the way `imgsearch` puts them: queued as jobs, claimed and committed in batches of 256
//! through [`PgQueue`], with the HNSW index (m 16, ef_construction 64, pgvector's defaults)
//! maintained on every insert (`--load bulk`, and the `bulk` row: dropped first, built once
//! after the load, then 5,000 more rows inserted into the built index). Clusters run with
//! `shared_buffers` 2 GB, so that the HNSW index stays in PostgreSQL's memory. Searches go through [`Store::search`], each client with its own
//! connection. `--images DIR` (default data/cifar10/test) is queued and embedded by 1, then 2,
//! worker processes (`target/release/imgsearch worker`, built beforehand). Prints numbers;
//! asserts nothing.

#[path = "common/fail.rs"]
mod fail;
#[path = "../tests/common/postgres.rs"]
mod pg;
#[path = "common/vectors.rs"]
mod vectors;

use fail::{bail, Context, Result};
use imgsearch::data::FileInfo;
use imgsearch::index::{Entry, Index, IndexMeta, IndexWriter, SearchOptions};
use imgsearch::store::postgres::{create_sharded, Job, PgQueue};
use imgsearch::store::{PgStore, Store};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const K: usize = 10;
const BATCH: usize = 256;
const EFS: [usize; 4] = [40, 64, 128, 256];

struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    clustered: Option<usize>,
    from_index: Option<PathBuf>,
    images: PathBuf,
    only: Vec<String>,
    /// `incremental`: the HNSW index maintained on every insert; `bulk`: built after the load.
    load: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 100_000,
        dim: 64,
        queries: 500,
        clustered: None,
        from_index: None,
        images: PathBuf::from("data/cifar10/test"),
        only: ["local", "one", "bulk", "two", "workers"]
            .map(String::from)
            .to_vec(),
        load: "incremental".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.n = value()?.parse()?,
            "--dim" => a.dim = value()?.parse()?,
            "--queries" => a.queries = value()?.parse()?,
            "--clustered" => a.clustered = Some(value()?.parse()?),
            "--from-index" => a.from_index = Some(value()?.into()),
            "--images" => a.images = value()?.into(),
            "--only" => a.only = value()?.split(',').map(str::to_string).collect(),
            "--load" => a.load = value()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn row_path(i: usize) -> PathBuf {
    PathBuf::from(format!("/bench/{i:09}.jpg"))
}

fn row_of(path: &Path) -> Option<usize> {
    path.file_stem()?.to_str()?.parse().ok()
}

fn meta(dim: usize) -> IndexMeta {
    IndexMeta {
        model_id: "store-bench".into(),
        model_name: "store-bench".into(),
        dim,
        preprocess: serde_json::json!({}),
    }
}

/// The exact top-10 of each query (brute force, all cores).
fn exact(base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<usize>> {
    queries
        .par_iter()
        .map(|q| {
            let mut scored: Vec<(f32, usize)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (q.iter().zip(v).map(|(a, b)| a * b).sum(), i))
                .collect();
            scored.select_nth_unstable_by(K - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(K);
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// Recall@10 at `ef` and queries per second with `clients` threads, each with its own store
/// handle from `open` (its own connection for PostgreSQL).
fn measure(
    open: &(dyn Fn() -> Result<Box<dyn Store>> + Sync),
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
    ef: usize,
    clients: usize,
) -> Result<(f64, f64)> {
    let opts = SearchOptions {
        k: K,
        ef,
        ..SearchOptions::default()
    };
    let stores: Vec<Box<dyn Store>> = (0..clients).map(|_| open()).collect::<Result<_>>()?;
    let t = Instant::now();
    let found: Vec<Vec<Vec<usize>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(c, store)| {
                let opts = opts.clone();
                scope.spawn(move || -> Result<Vec<Vec<usize>>> {
                    queries
                        .iter()
                        .skip(c)
                        .step_by(clients)
                        .map(|q| {
                            Ok(store
                                .search(q, &opts)?
                                .iter()
                                .filter_map(|h| row_of(&h.path))
                                .collect())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect::<Result<_>>()
    })?;
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    // Back in query order: client c answered queries c, c + clients, ...
    let mut ordered = vec![Vec::new(); queries.len()];
    for (c, answers) in found.into_iter().enumerate() {
        for (j, a) in answers.into_iter().enumerate() {
            ordered[c + j * clients] = a;
        }
    }
    Ok((vectors::recall(&ordered, truth), qps))
}

/// Inserts `base` the way workers do: one job per vector, claimed and committed in batches.
fn insert(url: &str, base: &[Vec<f32>]) -> Result<f64> {
    insert_rows(url, base, 0..base.len())
}

/// Inserts the vectors `rows` of `base` (named by their row) as [`insert`] does.
fn insert_rows(url: &str, base: &[Vec<f32>], rows: std::ops::Range<usize>) -> Result<f64> {
    let count = rows.len();
    let mut queue = PgQueue::prepare(url, &meta(base[0].len()))?;
    let files: Vec<FileInfo> = rows
        .map(|i| FileInfo {
            path: row_path(i),
            size: i as u64,
            mtime_ns: i as i64,
        })
        .collect();
    queue.plan(&[], &[], &files)?;
    let t = Instant::now();
    loop {
        let jobs = queue.claim("store-bench", BATCH, Duration::from_secs(600))?;
        if jobs.is_empty() {
            break;
        }
        let done: Vec<(Job, Vec<f32>)> = jobs
            .into_iter()
            .map(|job| {
                let row = row_of(&job.path).expect("bench path");
                (job, base[row].clone())
            })
            .collect();
        queue.complete("store-bench", &done, &[])?;
    }
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

/// Rows inserted one by one into the HNSW index after a bulk load: the insert rate at this size.
const MARGINAL: usize = 5_000;

/// Loads `base` through the store at `url` with the HNSW index of each of `nodes` (the node
/// itself, or the shards) dropped, then builds the indexes (the shards' in parallel), then
/// inserts [`MARGINAL`] more rows into the built indexes. Returns the load rate, the index
/// build's seconds and the marginal rate.
fn bulk(url: &str, nodes: &[(&pg::Cluster, &str)], base: &[Vec<f32>]) -> Result<(f64, f64, f64)> {
    let loaded = base.len() - MARGINAL.min(base.len() / 10);
    for (node, db) in nodes {
        node.client(db)
            .batch_execute("DROP INDEX imgsearch_images_embedding")?;
    }
    let rate = insert_rows(url, base, 0..loaded)?;
    let t = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let builds: Vec<_> = nodes
            .iter()
            .map(|(node, db)| {
                scope.spawn(move || -> Result<()> {
                    node.client(db).batch_execute(&format!(
                        "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = {};
                         CREATE INDEX imgsearch_images_embedding ON imgsearch_images
                             USING hnsw (embedding vector_cosine_ops)",
                        (2 / nodes.len()).max(1)
                    ))?;
                    Ok(())
                })
            })
            .collect();
        for b in builds {
            b.join().expect("index build thread")?;
        }
        Ok(())
    })?;
    let built = t.elapsed().as_secs_f64();
    let marginal = insert_rows(url, base, loaded..base.len())?;
    Ok((rate, built, marginal))
}

/// Server settings of the benchmark's clusters: the HNSW index in memory (pgvector's advice).
const SETTINGS: &str = "-c shared_buffers=2GB -c max_wal_size=8GB";

fn report(
    name: &str,
    open: &(dyn Fn() -> Result<Box<dyn Store>> + Sync),
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> Result<()> {
    for ef in EFS {
        let (recall, qps1) = measure(open, queries, truth, ef, 1)?;
        let (_, qps8) = measure(open, queries, truth, ef, 8)?;
        println!("| {name} | {ef} | {recall:.4} | {qps1:.0} | {qps8:.0} |");
    }
    Ok(())
}

fn workers(url: &str, images: &Path, count: usize) -> Result<(usize, f64)> {
    let exe = Path::new("target/release/imgsearch");
    if !exe.exists() {
        bail!("build the binary first: cargo build --release");
    }
    let out = std::process::Command::new(exe)
        .args(["index", "--queue-only", "--json", "--store", url])
        .arg(images)
        .output()?;
    if !out.status.success() {
        bail!("queue: {}", String::from_utf8_lossy(&out.stderr));
    }
    let t = Instant::now();
    let children: Vec<_> = (0..count)
        .map(|_| {
            std::process::Command::new(exe)
                .args(["worker", "--quiet", "--store", url])
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            bail!("a worker failed: {status}");
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    let stored = PgStore::open(url)?.len();
    Ok((stored, stored as f64 / seconds))
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let bin =
        pg::pg_bin().context("PostgreSQL with pgvector is not installed (.ci/postgres-setup)")?;
    let (base, queries, what) = vectors::load(
        args.n,
        args.dim,
        args.queries,
        args.clustered,
        args.from_index.as_deref(),
    )?;
    let dim = base[0].len();
    println!(
        "{} {what} vectors of dimension {dim}, {} queries, k {K}; {} threads available",
        base.len(),
        queries.len(),
        rayon::current_num_threads()
    );
    let truth = exact(&base, &queries);
    println!("| store | ef | recall@10 | QPS 1 client | QPS 8 clients |");
    println!("|---|---|---|---|---|");
    let bench = Bench {
        bin: &bin,
        base: &base,
        queries: &queries,
        truth: &truth,
        dim,
    };
    let want = |what: &str| args.only.iter().any(|o| o == what);
    let (mut local_line, mut sizes_line) = (String::new(), String::new());

    if want("local") {
        local_line = bench.local()?;
    }
    let bulk_load = args.load == "bulk";
    if want("one") {
        sizes_line = bench.one_node(bulk_load)?;
    }
    if want("bulk") && !bulk_load {
        bench.one_node_index_after_load()?;
    }
    if want("two") {
        bench.two_shards(bulk_load)?;
    }
    for line in [&local_line, &sizes_line] {
        if !line.is_empty() {
            println!("{line}");
        }
    }
    if want("workers") {
        bench_workers(&bin, &args.images)?;
    }
    Ok(())
}

/// What every store's run shares: the PostgreSQL binaries, the vectors, the queries and their
/// exact neighbours.
struct Bench<'a> {
    bin: &'a Path,
    base: &'a [Vec<f32>],
    queries: &'a [Vec<f32>],
    truth: &'a [Vec<usize>],
    dim: usize,
}

impl Bench<'_> {
    /// Builds a local index of the vectors and reports its rows; returns its bytes-per-image line.
    fn local(&self) -> Result<String> {
        let base = self.base;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("index");
        let t = Instant::now();
        let mut writer = IndexWriter::open(&dir, meta(self.dim))?;
        for (i, v) in base.iter().enumerate() {
            let entry = Entry {
                path: row_path(i),
                size: i as u64,
                mtime_ns: i as i64,
            };
            writer.add(entry, v)?;
        }
        writer.finish()?;
        let rate = base.len() as f64 / t.elapsed().as_secs_f64();
        let bytes: u64 = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        let local_line = format!(
            "local index, bytes per image: {:.0} (vectors, entries and graph)",
            bytes as f64 / base.len() as f64
        );
        let open = || -> Result<Box<dyn Store>> { Ok(Box::new(Index::open(&dir)?)) };
        report(
            &format!("local index ({rate:.0} inserts/s)"),
            &open,
            self.queries,
            self.truth,
        )?;
        Ok(local_line)
    }

    /// Loads one pgvector node (row by row, or in bulk) and reports its rows; returns its
    /// bytes-per-image line.
    fn one_node(&self, bulk_load: bool) -> Result<String> {
        let base = self.base;
        let node = pg::Cluster::start_with(self.bin, SETTINGS);
        let url = node.database("bench");
        let name = if bulk_load {
            PgQueue::prepare(&url, &meta(self.dim))?;
            let (rate, built, marginal) = bulk(&url, &[(&node, "bench")], base)?;
            println!(
                "pgvector one node, bulk: {rate:.0} inserts/s without the index, CREATE INDEX {built:.1} s, \
                 then {marginal:.0} inserts/s into the built index"
            );
            format!("pgvector, one node (bulk load, {built:.0} s index build)")
        } else {
            let rate = insert(&url, base)?;
            format!("pgvector, one node ({rate:.0} inserts/s)")
        };
        let open = || -> Result<Box<dyn Store>> { Ok(Box::new(PgStore::open(&url)?)) };
        report(&name, &open, self.queries, self.truth)?;
        let sizes = node.client("bench").query_one(
            "SELECT pg_table_size('imgsearch_images'), pg_relation_size('imgsearch_images_embedding'),
                    pg_relation_size('imgsearch_images_pkey') + pg_relation_size('imgsearch_images_id')",
            &[],
        )?;
        let per_row = |i: usize| sizes.get::<_, i64>(i) as f64 / base.len() as f64;
        Ok(format!(
            "pgvector one node, bytes per image: table {:.0}, HNSW index {:.0}, path and id indexes {:.0}",
            per_row(0),
            per_row(1),
            per_row(2)
        ))
    }

    /// A first load of many images on one node, reported beside the row-by-row load.
    fn one_node_index_after_load(&self) -> Result<()> {
        // A first load of many images: without the HNSW index, built once at the end (pgvector
        // builds in parallel and in memory, much faster than maintaining it row by row).
        let node = pg::Cluster::start_with(self.bin, SETTINGS);
        let url = node.database("bench");
        PgQueue::prepare(&url, &meta(self.dim))?;
        let (rate, built, marginal) = bulk(&url, &[(&node, "bench")], self.base)?;
        println!(
            "pgvector one node, bulk: {rate:.0} inserts/s without the index, CREATE INDEX {built:.1} s, \
             then {marginal:.0} inserts/s into the built index"
        );
        let open = || -> Result<Box<dyn Store>> { Ok(Box::new(PgStore::open(&url)?)) };
        report(
            "pgvector, one node, index built after the load",
            &open,
            self.queries,
            self.truth,
        )
    }

    /// A coordinator over two pgvector shards, loaded row by row or in bulk, and its rows.
    fn two_shards(&self, bulk_load: bool) -> Result<()> {
        let (coord, a, b) = (
            pg::Cluster::start_with(self.bin, SETTINGS),
            pg::Cluster::start_with(self.bin, SETTINGS),
            pg::Cluster::start_with(self.bin, SETTINGS),
        );
        let url = coord.database("bench");
        let shards = [a.database("bench"), b.database("bench")];
        create_sharded(&url, &shards, self.dim)?;
        let name = if bulk_load {
            PgQueue::prepare(&url, &meta(self.dim))?;
            let (rate, built, marginal) = bulk(&url, &[(&a, "bench"), (&b, "bench")], self.base)?;
            println!(
                "pgvector two shards, bulk: {rate:.0} inserts/s without the index, CREATE INDEX {built:.1} s \
                 (both shards at once), then {marginal:.0} inserts/s into the built indexes"
            );
            format!("pgvector, two shards (bulk load, {built:.0} s index build)")
        } else {
            let rate = insert(&url, self.base)?;
            format!("pgvector, two shards ({rate:.0} inserts/s)")
        };
        let open = || -> Result<Box<dyn Store>> { Ok(Box::new(PgStore::open(&url)?)) };
        report(&name, &open, self.queries, self.truth)
    }
}

/// Embedding real images through the job queue with one and two workers, against a local
/// `imgsearch index` of the same images.
fn bench_workers(bin: &Path, images: &Path) -> Result<()> {
    if !images.exists() {
        println!(
            "workers: {} not found (fetch CIFAR-10: bench/data.sh cifar10/test)",
            images.display()
        );
        return Ok(());
    }
    println!();
    println!("| workers | images | images/s |");
    println!("|---|---|---|");
    for count in [1, 2] {
        let node = pg::Cluster::start(bin);
        let url = node.database("embed");
        let (embedded, rate) = workers(&url, images, count)?;
        println!("| {count} | {embedded} | {rate:.0} |");
    }
    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    let status = std::process::Command::new("target/release/imgsearch")
        .args(["index", "--quiet", "--index"])
        .arg(tmp.path().join("index"))
        .arg(images)
        .status()?;
    if status.success() {
        let n = Index::open(&tmp.path().join("index"))?.len();
        println!(
            "| local `imgsearch index` (same images) | {n} | {:.0} |",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
