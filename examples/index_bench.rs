//! Benchmark of the index engine on synthetic vectors: build time, open time, single-thread
//! QPS and recall@10 against the exact scan at several `ef`, and exact-scan QPS.
//!
//! ```text
//! cargo run --release --example index_bench -- --n 100000 --dim 64 --queries 200 [--clustered 100]
//! ```
//!
//! `--clustered C` draws vectors around C random centres instead of uniformly on the sphere.
//! Prints numbers; asserts nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use imgsearch::index::{Entry, Index, IndexMeta, IndexWriter, SearchOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Args {
    n: usize,
    dim: usize,
    queries: usize,
    clustered: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: 100_000,
        dim: 64,
        queries: 200,
        clustered: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--n" => a.n = value()?,
            "--dim" => a.dim = value()?,
            "--queries" => a.queries = value()?,
            "--clustered" => a.clustered = Some(value()?),
            other => bail!("unknown argument {other}"),
        }
    }
    if a.n == 0 || a.dim == 0 || a.queries == 0 {
        bail!("--n, --dim and --queries must be positive");
    }
    Ok(a)
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    // Box-Muller.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn vectors(rng: &mut ChaCha8Rng, n: usize, dim: usize, centres: &[Vec<f32>]) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let noise: Vec<f32> = (0..dim).map(|_| gaussian(rng)).collect();
            if centres.is_empty() {
                normalize(noise)
            } else {
                let c = &centres[rng.random_range(0..centres.len())];
                let scale = 0.6 / (dim as f32).sqrt();
                normalize(c.iter().zip(&noise).map(|(c, z)| c + scale * z).collect())
            }
        })
        .collect()
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let centres: Vec<Vec<f32>> = match args.clustered {
        Some(c) => (0..c)
            .map(|_| normalize((0..args.dim).map(|_| gaussian(&mut rng)).collect()))
            .collect(),
        None => Vec::new(),
    };
    let data = vectors(&mut rng, args.n, args.dim, &centres);
    let queries = vectors(&mut rng, args.queries, args.dim, &centres);
    println!(
        "data: {} × {}-d {} vectors, {} queries, {} threads",
        args.n,
        args.dim,
        if centres.is_empty() {
            "uniform".to_string()
        } else {
            format!("clustered ({} centres)", centres.len())
        },
        args.queries,
        rayon::current_num_threads()
    );

    let tmp = tempfile::tempdir()?;
    let dir: PathBuf = tmp.path().join("index");
    let meta = IndexMeta {
        model_id: "bench".into(),
        model_name: "bench".into(),
        dim: args.dim,
        preprocess: serde_json::json!({}),
    };

    let t = Instant::now();
    let mut w = IndexWriter::open(&dir, meta)?;
    for (i, v) in data.iter().enumerate() {
        let entry = Entry {
            path: PathBuf::from(format!("/bench/img-{i:08}.jpg")),
            size: i as u64,
            mtime_ns: i as i64,
        };
        w.add(entry, v)?;
    }
    let stats = w.finish()?;
    let build = t.elapsed().as_secs_f64();
    println!(
        "build: {build:.2} s ({} entries, {} segment(s), graph threshold default), {:.1} MB on disk",
        stats.total,
        stats.segments,
        dir_size(&dir) as f64 / 1e6
    );

    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let idx = Index::open(&dir)?;
        opens.push(t.elapsed().as_secs_f64() * 1e3);
        drop(idx);
    }
    opens.sort_by(f64::total_cmp);
    println!(
        "open: median {:.3} ms (min {:.3}, max {:.3})",
        opens[2], opens[0], opens[4]
    );
    let idx = Index::open(&dir)?;
    let t = Instant::now();
    idx.search(
        &queries[0],
        &SearchOptions {
            k: 10,
            ef: 64,
            exact: false,
        },
    )?;
    println!(
        "first query after open (ef 64): {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let exact_opts = SearchOptions {
        k: 10,
        ef: 64,
        exact: true,
    };
    let t = Instant::now();
    let truth: Vec<HashSet<PathBuf>> = queries
        .iter()
        .map(|q| {
            idx.search(q, &exact_opts)
                .map(|hits| hits.into_iter().map(|h| h.path).collect())
        })
        .collect::<Result<_, _>>()?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "exact scan ({} threads): {:.0} QPS ({:.3} ms/query)",
        rayon::current_num_threads(),
        args.queries as f64 / secs,
        secs * 1e3 / args.queries as f64
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let t = Instant::now();
    pool.install(|| -> Result<()> {
        for q in &queries {
            idx.search(q, &exact_opts)?;
        }
        Ok(())
    })?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "exact scan (1 thread): {:.0} QPS ({:.3} ms/query)",
        args.queries as f64 / secs,
        secs * 1e3 / args.queries as f64
    );

    println!("graph search, single thread:");
    for ef in [16, 32, 64, 128, 256] {
        let opts = SearchOptions {
            k: 10,
            ef,
            exact: false,
        };
        let t = Instant::now();
        let mut found = 0usize;
        let mut results = Vec::with_capacity(queries.len());
        for q in &queries {
            results.push(idx.search(q, &opts)?);
        }
        let secs = t.elapsed().as_secs_f64();
        for (hits, want) in results.iter().zip(&truth) {
            found += hits.iter().filter(|h| want.contains(&h.path)).count();
        }
        println!(
            "  ef {ef:>4}: {:>8.0} QPS ({:.3} ms/query), recall@10 {:.4}",
            args.queries as f64 / secs,
            secs * 1e3 / args.queries as f64,
            found as f64 / (10 * args.queries) as f64
        );
    }
    Ok(())
}
