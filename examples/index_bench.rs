//! Benchmark of the index engine, alone or side by side with its peers (hnswlib, faiss-cpu
//! `IndexHNSWFlat`, usearch) on the same vectors at the same recall target.
//!
//! ```text
//! cargo run --release --example index_bench -- --n 100000 --dim 64 --queries 500 \
//!     [--clustered 100 | --from-index DIR] [--recall 0.99] [--peers bench/.venv-peers/bin/python] \
//!     [--keep DIR [--reuse]] [--meta-from DIR] [--graph-min N]
//! ```
//!
//! Vectors: uniform on the sphere (default), around `--clustered C` random centres, or the live
//! vectors of an existing index (`--from-index DIR`, real embeddings; shuffled with a fixed
//! seed, the first `--queries` held out as queries, the next `--n` indexed).
//!
//! Measures for ours: build time (add + commit + graph), open time, exact-scan QPS, then the
//! smallest `ef` of a fixed ladder whose recall@10 against the exact scan reaches `--recall`, and
//! at that `ef` single-thread and parallel QPS; cold query: a new process opens the index and
//! answers one query (time of open + query, and its peak RSS). With `--peers PYTHON` the same
//! vectors and the exact top-10 are written as .npy files and `bench/peers.py` measures the peers
//! the same way; a table with ratios follows. `--keep DIR` keeps our index there; `--meta-from
//! DIR` stamps it with that index's model identity so `imgsearch query` can use it. `--graph-min N`
//! overrides the graph threshold (default `imgsearch::index::DEFAULT_GRAPH_THRESHOLD`, 5,000:
//! smaller segments are scanned exactly).
//! Prints numbers; asserts nothing.

#[path = "common/fail.rs"]
mod fail;
#[path = "common/simd.rs"]
mod simd;
#[path = "common/vectors.rs"]
mod vectors;

use vectors::{recall, Vectors};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fail::{bail, Context, Result};
use imgsearch::index::{Entry, Index, IndexMeta, IndexWriter, SearchOptions};
use rayon::prelude::*;

const K: usize = 10;
/// The `ef` values tried, in order, for ours and the peers alike.
const EF_LADDER: [usize; 14] = [
    10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
];
/// Graph parameters of the engine (`crates/index/src/graph/common.rs`, `crates/index/src/graph/mod.rs`),
/// passed to the peers.
const M: usize = 16;
const EF_CONSTRUCTION: usize = 200;

#[derive(Default)]
struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    clustered: Option<usize>,
    from_index: Option<PathBuf>,
    meta_from: Option<PathBuf>,
    recall: f64,
    peers: Option<String>,
    only: String,
    keep: Option<PathBuf>,
    graph_min: Option<usize>,
    reuse: bool,
    /// Internal: the cold-query child (`--cold-child DIR QUERIES_NPY EF`).
    cold_child: Option<(PathBuf, PathBuf, usize)>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 100_000,
        dim: 64,
        queries: 500,
        recall: 0.99,
        only: "hnswlib,faiss,usearch".into(),
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut text = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.n = text()?.parse().context("--n")?,
            "--dim" => a.dim = text()?.parse().context("--dim")?,
            "--queries" => a.queries = text()?.parse().context("--queries")?,
            "--clustered" => a.clustered = Some(text()?.parse().context("--clustered")?),
            "--recall" => a.recall = text()?.parse().context("--recall")?,
            "--from-index" => a.from_index = Some(text()?.into()),
            "--meta-from" => a.meta_from = Some(text()?.into()),
            "--peers" => a.peers = Some(text()?),
            "--only" => a.only = text()?,
            "--keep" => a.keep = Some(text()?.into()),
            "--reuse" => a.reuse = true,
            "--graph-min" => a.graph_min = Some(text()?.parse().context("--graph-min")?),
            "--cold-child" => {
                let dir = text()?.into();
                let queries = text()?.into();
                a.cold_child = Some((dir, queries, text()?.parse().context("ef")?));
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.n == 0 || a.dim == 0 || a.queries == 0 {
        bail!("--n, --dim and --queries must be positive");
    }
    Ok(a)
}

fn load_vectors(args: &Args) -> Result<Vectors> {
    vectors::load(
        args.n,
        args.dim,
        args.queries,
        args.clustered,
        args.from_index.as_deref(),
    )
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn row_path(i: usize) -> PathBuf {
    PathBuf::from(format!("/bench/img-{i:08}.jpg"))
}

fn row_of(path: &Path) -> Option<usize> {
    path.to_str()?
        .strip_prefix("/bench/img-")?
        .strip_suffix(".jpg")?
        .parse()
        .ok()
}

/// Write a little-endian `.npy` (format 1.0) of `shape` with element type `descr`.
fn write_npy(path: &Path, descr: &str, shape: (usize, usize), data: &[u8]) -> Result<()> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape.0, shape.1
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&u16::try_from(header.len())?.to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    f.flush()?;
    Ok(())
}

fn write_f32_npy(path: &Path, rows: &[Vec<f32>]) -> Result<()> {
    let dim = rows.first().map_or(0, Vec::len);
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_npy(path, "<f4", (rows.len(), dim), &bytes)
}

/// The first row of a float32 `.npy` written by [`write_f32_npy`].
fn read_first_row(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    let hlen = bytes
        .get(8..10)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .context("short .npy")?;
    let row = bytes
        .get(10 + hlen..10 + hlen + 4 * dim)
        .context("short .npy")?;
    Ok(row
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// From /proc/self/status: (VmRSS, VmHWM) in MB.
fn rss_mb() -> (f64, f64) {
    (status_mb("VmRSS:"), status_mb("VmHWM:"))
}

/// A field of /proc/self/status in MB (NaN where there is none).
fn status_mb(name: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The child process of the cold-query measurement: open the index and answer one query.
fn cold_child(dir: &Path, queries: &Path, ef: usize) -> Result<()> {
    let (rss_before, _) = rss_mb();
    let t = Instant::now();
    let idx = Index::open(dir)?;
    let q = read_first_row(queries, idx.meta().dim)?;
    let opened = t.elapsed().as_secs_f64() * 1e3;
    let (rss_open, _) = rss_mb();
    idx.search(
        &q,
        &SearchOptions {
            k: K,
            ef,
            exact: false,
            min_score: None,
        },
    )?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let (rss, hwm) = rss_mb();
    let (anon, file) = (status_mb("RssAnon:"), status_mb("RssFile:"));
    println!(
        "{}",
        serde_json::json!({"open_ms": opened, "cold_ms": ms, "rss_before_mb": rss_before, "rss_open_mb": rss_open,
                           "rss_mb": rss, "cold_rss_mb": hwm,
                           "anon_mb": anon, "file_mb": file})
    );
    Ok(())
}

struct Measured {
    name: String,
    build_s: f64,
    ef: usize,
    recall: f64,
    qps1: f64,
    qpsn: f64,
    cold_ms: f64,
    cold_rss_mb: f64,
}

fn search_rows(idx: &Index, q: &[f32], opts: &SearchOptions) -> Result<Vec<usize>> {
    Ok(idx
        .search(q, opts)?
        .iter()
        .filter_map(|h| row_of(&h.path))
        .collect())
}

/// Index `base` into `dir` (rows named by [`row_path`]) and print what was built.
fn build(args: &Args, dir: &Path, meta: IndexMeta, base: &[Vec<f32>]) -> Result<()> {
    let t = Instant::now();
    let mut w = IndexWriter::open(dir, meta)?;
    if let Some(g) = args.graph_min {
        w.set_graph_threshold(g);
    }
    let graph_min = w.graph_threshold();
    for (i, v) in base.iter().enumerate() {
        let entry = Entry {
            path: row_path(i),
            size: i as u64,
            mtime_ns: i as i64,
        };
        w.add(entry, v)?;
    }
    let stats = w.finish()?;
    let build_s = t.elapsed().as_secs_f64();
    println!(
        "ours: build {build_s:.2} s ({} entries, {} segment(s), {}), {:.1} MB on disk",
        stats.total,
        stats.segments,
        if stats.total >= graph_min {
            "HNSW graph"
        } else {
            "no graph: exact scan below the graph threshold"
        },
        dir_size(dir) as f64 / 1e6
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let simd = simd::limit_from_env();
    if let Some((dir, queries, ef)) = &args.cold_child {
        return cold_child(dir, queries, *ef);
    }
    let threads = rayon::current_num_threads();
    let (base, queries, what) = load_vectors(&args)?;
    let dim = base[0].len();
    let n = base.len();
    println!(
        "data: {n} × {dim}-d {what} vectors, {} held-out queries, k {K}, recall target {}, {threads} threads, simd {} (IMGSEARCH_SIMD lowers it)",
        queries.len(),
        args.recall,
        simd
    );

    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().join("index"));
    let meta = index_meta(&args, dim)?;
    // Not measured (NaN in the table) when a kept index is reused.
    let build_s = if args.reuse && dir.join("manifest.json").exists() {
        println!("ours: reusing the index in {} (no build)", dir.display());
        f64::NAN
    } else {
        let t = Instant::now();
        build(&args, &dir, meta, &base)?;
        t.elapsed().as_secs_f64()
    };

    time_opens(&dir)?;
    let idx = Index::open(&dir)?;
    let truth = exact_truth(&idx, &queries, threads)?;
    let (ef, rec, qps1, qpsn) = tune_and_time(&idx, &queries, &truth, args.recall)?;

    let out = tempfile::tempdir()?;
    let queries_npy = out.path().join("queries.npy");
    write_f32_npy(&queries_npy, &queries)?;
    let cold = cold_process(&dir, &queries_npy, ef)?;
    let mut rows = vec![Measured {
        name: "imgsearch".into(),
        build_s,
        ef,
        recall: rec,
        qps1,
        qpsn,
        cold_ms: num(&cold, "cold_ms"),
        cold_rss_mb: num(&cold, "cold_rss_mb"),
    }];
    drop(idx);

    if let Some(python) = &args.peers {
        run_peers(python, &args, out.path(), base, &truth, threads, &mut rows)?;
    }
    print_table(&rows, threads);
    Ok(())
}

/// A number from the JSON the cold child and the peers print; NaN where it is missing.
fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The index's metadata: copied from `--meta-from`'s index, or a stand-in for raw vectors.
fn index_meta(args: &Args, dim: usize) -> Result<IndexMeta> {
    Ok(match &args.meta_from {
        Some(d) => Index::open(d)?.meta().clone(),
        None => IndexMeta {
            model_id: "bench".into(),
            model_name: "bench".into(),
            dim,
            preprocess: serde_json::json!({}),
        },
    })
}

/// Opens the index five times with a warm page cache and prints the median, min and max.
fn time_opens(dir: &Path) -> Result<()> {
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        drop(Index::open(dir)?);
        opens.push(t.elapsed().as_secs_f64() * 1e3);
    }
    opens.sort_by(f64::total_cmp);
    println!(
        "ours: open (warm cache) median {:.3} ms (min {:.3}, max {:.3})",
        opens[2], opens[0], opens[4]
    );
    Ok(())
}

/// Each query's exact top-k rows (the recall reference), timing and printing the exact scan.
fn exact_truth(idx: &Index, queries: &[Vec<f32>], threads: usize) -> Result<Vec<Vec<usize>>> {
    let exact = SearchOptions {
        k: K,
        ef: 0,
        exact: true,
        min_score: None,
    };
    let t = Instant::now();
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| search_rows(idx, q, &exact))
        .collect::<Result<_>>()?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ours: exact scan ({threads} threads) {:.0} QPS ({:.3} ms/query)",
        queries.len() as f64 / secs,
        secs * 1e3 / queries.len() as f64
    );
    Ok(truth)
}

/// Climbs the ef ladder single-threaded until recall@10 reaches the target, then times that ef
/// on one thread and on all: returns (ef, its recall, single-thread QPS, all-thread QPS).
fn tune_and_time(
    idx: &Index,
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
    target: f64,
) -> Result<(usize, f64, f64, f64)> {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let run = |ef: usize| -> Result<Vec<Vec<usize>>> {
        let opts = SearchOptions {
            k: K,
            ef,
            exact: false,
            min_score: None,
        };
        one.install(|| queries.iter().map(|q| search_rows(idx, q, &opts)).collect())
    };
    let mut chosen = None;
    for ef in EF_LADDER {
        let t = Instant::now();
        let found = run(ef)?;
        let secs = t.elapsed().as_secs_f64();
        let r = recall(&found, truth);
        println!(
            "ours: ef {ef:>4}: {:>8.0} QPS single-thread, recall@10 {r:.4}",
            queries.len() as f64 / secs
        );
        chosen = Some((ef, r));
        if r >= target {
            break;
        }
    }
    let (ef, rec) = chosen.context("empty ef ladder")?;
    let reps = (2000 / queries.len()).max(1);
    let t = Instant::now();
    for _ in 0..reps {
        run(ef)?;
    }
    let qps1 = (reps * queries.len()) as f64 / t.elapsed().as_secs_f64();
    let opts = SearchOptions {
        k: K,
        ef,
        exact: false,
        min_score: None,
    };
    let t = Instant::now();
    for _ in 0..reps {
        queries
            .par_iter()
            .map(|q| idx.search(q, &opts).map(|_| ()))
            .collect::<Result<(), _>>()?;
    }
    let qpsn = (reps * queries.len()) as f64 / t.elapsed().as_secs_f64();
    Ok((ef, rec, qps1, qpsn))
}

/// Runs this bench again as a fresh process that opens the index and answers one query, prints
/// its times and memory, and returns its JSON.
fn cold_process(dir: &Path, queries_npy: &Path, ef: usize) -> Result<serde_json::Value> {
    let child = Command::new(std::env::current_exe()?)
        .arg("--cold-child")
        .arg(dir)
        .arg(queries_npy)
        .arg(ef.to_string())
        .output()?;
    if !child.status.success() {
        bail!(
            "cold-query child failed: {}",
            String::from_utf8_lossy(&child.stderr)
        );
    }
    let cold: serde_json::Value = serde_json::from_slice(&child.stdout)?;
    println!(
        "ours: cold process: open {:.2} ms, open + first query {:.2} ms, RSS {:.1} MB before open, \
         {:.1} MB after open, {:.1} MB after the query (private {:.1} MB, mapped index and binary \
         files {:.1} MB), peak {:.1} MB",
        num(&cold, "open_ms"),
        num(&cold, "cold_ms"),
        num(&cold, "rss_before_mb"),
        num(&cold, "rss_open_mb"),
        num(&cold, "rss_mb"),
        num(&cold, "anon_mb"),
        num(&cold, "file_mb"),
        num(&cold, "cold_rss_mb")
    );
    Ok(cold)
}

/// Writes the vectors and the exact top-k as .npy files, frees the vectors, and runs
/// bench/peers.py on them, printing each peer's ef ladder and adding its row to `rows`.
fn run_peers(
    python: &str,
    args: &Args,
    out: &Path,
    base: Vec<Vec<f32>>,
    truth: &[Vec<usize>],
    threads: usize,
    rows: &mut Vec<Measured>,
) -> Result<()> {
    write_f32_npy(&out.join("base.npy"), &base)?;
    let ids: Vec<u8> = truth
        .iter()
        .flat_map(|t| (0..K).map(move |j| t.get(j).map_or(-1, |&i| i as i64)))
        .flat_map(i64::to_le_bytes)
        .collect();
    write_npy(&out.join("truth.npy"), "<i8", (truth.len(), K), &ids)?;
    drop(base);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peers.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(out)
        .args(["--recall", &args.recall.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--m", &M.to_string()])
        .args(["--ef-construction", &EF_CONSTRUCTION.to_string()])
        .args(["--only", &args.only])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {python} {}", script.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let name = v["name"].as_str().unwrap_or("?").to_string();
        for step in v["ladder"].as_array().into_iter().flatten() {
            println!(
                "{name}: ef {:>4}: {:>8.0} QPS single-thread, recall@10 {:.4}",
                num(step, "ef"),
                num(step, "qps1"),
                num(step, "recall")
            );
        }
        rows.push(Measured {
            name,
            build_s: num(&v, "build_s"),
            ef: v["ef"].as_u64().unwrap_or(0) as usize,
            recall: num(&v, "recall"),
            qps1: num(&v, "qps1"),
            qpsn: num(&v, "qpsn"),
            cold_ms: num(&v, "cold_ms"),
            cold_rss_mb: num(&v, "cold_rss_mb"),
        });
    }
    if !child.wait()?.success() {
        bail!("{} failed", script.display());
    }
    Ok(())
}

fn print_table(rows: &[Measured], threads: usize) {
    println!();
    println!(
        "| library | build s | ef | recall@10 | QPS 1 thread | QPS {threads} threads | cold open+query ms | cold peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.1} | {} | {:.4} | {:.0} | {:.0} | {:.1} | {:.0} |",
            r.name, r.build_s, r.ef, r.recall, r.qps1, r.qpsn, r.cold_ms, r.cold_rss_mb
        );
    }
    let Some((ours, peers)) = rows.split_first() else {
        return;
    };
    if peers.is_empty() {
        return;
    }
    println!();
    println!("| imgsearch vs | build speed (peer s / ours s) | QPS 1 thread (ours / peer) | QPS {threads} threads (ours / peer) | cold time (peer / ours) |");
    println!("|---|---|---|---|---|");
    for p in peers {
        println!(
            "| {} | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            p.name,
            p.build_s / ours.build_s,
            ours.qps1 / p.qps1,
            ours.qpsn / p.qpsn,
            p.cold_ms / ours.cold_ms
        );
    }
}
