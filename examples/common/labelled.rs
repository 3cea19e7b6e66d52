//! Labelled folders (class = parent folder) and exact leave-one-out retrieval scores on them:
//! P@9 (share of the 9 nearest in the query's class) and kNN-200 (cosine-weighted vote of the
//! 200 nearest, temperature 0.07). Shared by `feature_views` and `feature_layers`; the scores
//! are exact (every pair compared), so they differ from `imgsearch eval` only by the graph's
//! approximation.

#![allow(dead_code)] // each example uses part of it

use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// A labelled folder's files, sorted, with each file's class index and the class names.
pub struct Labelled {
    pub files: Vec<PathBuf>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

pub fn read(root: &Path) -> std::io::Result<Labelled> {
    let mut out = Labelled {
        files: Vec::new(),
        labels: Vec::new(),
        classes: Vec::new(),
    };
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    classes.retain(|p| p.is_dir());
    classes.sort();
    for class in classes {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&class)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.retain(|p| p.is_file());
        names.sort();
        let label = out.classes.len();
        out.classes.push(
            class
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        out.labels.extend(std::iter::repeat_n(label, names.len()));
        out.files.extend(names);
    }
    Ok(out)
}

/// Exact leave-one-out (P@9, kNN-200) of unit vectors `v` with classes `labels`.
pub fn score(v: &[Vec<f32>], labels: &[usize], classes: usize) -> (f64, f64) {
    let n = v.len();
    let per: Vec<(f64, bool)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut sims: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum(), j))
                .collect();
            let k = 200.min(sims.len());
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            sims.truncate(k);
            sims.sort_by(|a, b| b.0.total_cmp(&a.0));
            let hit = sims[..9.min(k)]
                .iter()
                .filter(|s| labels[s.1] == labels[i])
                .count() as f64
                / 9.0;
            let mut votes = vec![0f64; classes];
            for (s, j) in &sims {
                votes[labels[*j]] += ((*s as f64) / 0.07).exp();
            }
            let best = (0..classes)
                .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
                .unwrap_or(0);
            (hit, best == labels[i])
        })
        .collect();
    let p9: f64 = per.iter().map(|p| p.0).sum();
    let knn = per.iter().filter(|p| p.1).count() as f64;
    (p9 / n as f64, knn / n as f64)
}
