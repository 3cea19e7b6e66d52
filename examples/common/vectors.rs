//! The vectors the index and store benchmarks measure on: uniform on the sphere, around random
//! centres, or the live vectors of an existing index (real embeddings), with held-out queries;
//! and recall against the exact top-k. Shared by `index_bench` and `store_bench`.

#![allow(dead_code)] // each benchmark uses part of it

use crate::fail::{bail, Result};
use imgsearch::index::Index;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::path::Path;

pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
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

pub fn synthetic(
    rng: &mut ChaCha8Rng,
    n: usize,
    dim: usize,
    centres: &[Vec<f32>],
) -> Vec<Vec<f32>> {
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

/// Vectors to index, held-out queries, and a description.
pub type Vectors = (Vec<Vec<f32>>, Vec<Vec<f32>>, String);

/// `n` vectors and `queries` held-out queries of dimension `dim`: around `clustered` random
/// centres, uniform, or the (shuffled, fixed seed) live vectors of the index at `from_index`.
pub fn load(
    n: usize,
    dim: usize,
    queries: usize,
    clustered: Option<usize>,
    from_index: Option<&Path>,
) -> Result<Vectors> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    if let Some(dir) = from_index {
        let idx = Index::open(dir)?;
        let mut all: Vec<Vec<f32>> = idx.vectors().map(<[f32]>::to_vec).collect();
        if all.len() <= queries {
            bail!("{} holds {} vectors, too few", dir.display(), all.len());
        }
        all.shuffle(&mut rng);
        let queries: Vec<Vec<f32>> = all.drain(..queries).collect();
        all.truncate(n);
        let what = format!(
            "real embeddings of {} ({})",
            dir.display(),
            idx.meta().model_name
        );
        return Ok((all, queries, what));
    }
    let centres: Vec<Vec<f32>> = match clustered {
        Some(c) => (0..c)
            .map(|_| normalize((0..dim).map(|_| gaussian(&mut rng)).collect()))
            .collect(),
        None => Vec::new(),
    };
    let base = synthetic(&mut rng, n, dim, &centres);
    let queries = synthetic(&mut rng, queries, dim, &centres);
    let what = match clustered {
        Some(c) => format!("clustered ({c} centres) random"),
        None => "uniform random".into(),
    };
    Ok((base, queries, what))
}

/// Share of the exact top-k found.
pub fn recall(found: &[Vec<usize>], truth: &[Vec<usize>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| {
            let t: HashSet<&usize> = t.iter().collect();
            f.iter().filter(|i| t.contains(i)).count()
        })
        .sum();
    hits as f64 / truth.iter().map(Vec::len).sum::<usize>().max(1) as f64
}
