//! Retrieval metrics on a labelled folder (class = parent folder name), as in the DIM KNN
//! experiment: P@k of the leave-one-out neighbours and similarity-weighted kNN accuracy.
//! Models are measured through the same index and query path users run; the raw-pixel floor
//! is an exact scan over mean-centred pixels.

use super::indexing::{self, CommitPolicy, IndexOptions};
use super::query;
use crate::data::{self, Preprocess};
use crate::error::{Error, Result};
use crate::index::{Hit, Index, SearchOptions};
use crate::model::Model;
use crate::progress::{OnEvent, Verbosity};
use crate::store::{PgStore, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub root: PathBuf,
    /// Neighbours counted for P@k.
    pub k: usize,
    /// Neighbours voting in the kNN classifier.
    pub knn: usize,
    /// Vote weight exp(cosine / temperature).
    pub temperature: f32,
    /// Query at most this many images (evenly spaced); all are indexed.
    pub queries: Option<usize>,
    /// Index into this PostgreSQL store and search it there, instead of in a throw-away
    /// local index.
    pub store: Option<String>,
    pub verbosity: Verbosity,
}

impl EvalOptions {
    /// The DIM KNN experiment's measures on `root`: P@9 and the kNN-200 vote weighted by
    /// exp(cosine / 0.07), every image a query.
    pub fn new(root: PathBuf) -> Self {
        EvalOptions {
            root,
            k: 9,
            knn: 200,
            temperature: 0.07,
            queries: None,
            store: None,
            verbosity: Verbosity::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClassScore {
    pub class: String,
    pub images: usize,
    pub precision_at_k: f64,
    pub knn_accuracy: f64,
}

#[derive(Debug, Clone)]
pub struct EvalReport {
    pub what: String,
    pub images: usize,
    pub queries: usize,
    pub skipped: usize,
    pub k: usize,
    pub precision_at_k: f64,
    pub knn: usize,
    pub knn_accuracy: f64,
    pub classes: Vec<ClassScore>,
    pub seconds: f64,
}

/// The class of an image: its parent folder's name.
pub fn class_of(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn query_subset(paths: &[PathBuf], limit: Option<usize>) -> Vec<PathBuf> {
    match limit.filter(|&l| l < paths.len()) {
        Some(l) => (0..l).map(|i| paths[i * paths.len() / l].clone()).collect(),
        None => paths.to_vec(),
    }
}

/// Indexes `opts.root` with `model` in a temporary index, queries every image, and scores
/// the neighbours (the query itself excluded).
pub fn evaluate_model(
    model: &Model,
    opts: &EvalOptions,
    on_event: OnEvent<'_>,
) -> Result<EvalReport> {
    if opts.k == 0 || opts.knn == 0 {
        return Err(Error::Usage("k and knn must be at least 1".into()));
    }
    let started = Instant::now();
    let tmp = std::env::temp_dir().join(format!(
        "imgsearch-eval-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    let _cleanup = RemoveOnDrop(tmp.clone());
    let index_opts = IndexOptions {
        commit: CommitPolicy::at_end(),
        verbosity: opts.verbosity,
        ..IndexOptions::new(tmp.clone(), vec![opts.root.clone()])
    };
    let (summary, store): (_, Box<dyn Store>) = match &opts.store {
        None => (
            indexing::index_folders(model, &index_opts, on_event)?,
            Box::new(Index::open(&tmp)?),
        ),
        Some(url) => (
            super::jobs::index_postgres(model, url, &index_opts, on_event)?,
            Box::new(PgStore::open(url)?),
        ),
    };
    let root = crate::data::canonical_root(&opts.root)?;
    let mut paths: Vec<PathBuf> = store
        .entries_with_vectors()?
        .into_iter()
        .map(|(e, _)| e.path)
        .filter(|p| p.starts_with(&root))
        .collect();
    paths.sort();
    let images = paths.len();
    let queries = query_subset(&paths, opts.queries);
    let search_opts = SearchOptions {
        k: opts.knn.max(opts.k) + 1,
        ef: 256,
        exact: false,
        min_score: None,
    };
    let bar = opts.verbosity.bar(queries.len() as u64, "query");
    let mut ranked = Vec::with_capacity(queries.len());
    for chunk in queries.chunks(1024) {
        for answer in query::query(model, store.as_ref(), chunk, &search_opts)? {
            let hits = answer.result.map_err(|reason| Error::Image {
                path: answer.query.clone(),
                reason,
            })?;
            ranked.push((answer.query, hits));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut report = score(&ranked, opts, started);
    report.what = model.name.clone();
    report.images = images;
    report.skipped = summary.skipped;
    Ok(report)
}

/// The raw-pixel floor: cosine on mean-centred pixels at the preprocessing's size.
pub fn evaluate_pixels(
    preprocess: &Preprocess,
    opts: &EvalOptions,
    on_event: OnEvent<'_>,
) -> Result<EvalReport> {
    let started = Instant::now();
    let scan = data::scan(std::slice::from_ref(&opts.root))?;
    for (path, reason) in &scan.unreadable {
        on_event(crate::progress::Event::Skipped { path, reason });
    }
    let paths: Vec<PathBuf> = scan.files.into_iter().map(|f| f.path).collect();
    let mut kept = Vec::new();
    let mut vectors: Vec<Vec<f32>> = Vec::new();
    let mut skipped = 0;
    for batch in data::stream(paths.clone(), preprocess.clone(), indexing::DEFAULT_BATCH) {
        skipped += batch.failures.len();
        for (_, f) in &batch.failures {
            on_event(crate::progress::Event::Skipped {
                path: &f.path,
                reason: &f.reason,
            });
        }
        for item in batch.items {
            kept.push(paths[item.index].clone());
            vectors.push(item.rgb.iter().map(|&p| p as f32 / 255.0).collect());
        }
    }
    if vectors.is_empty() {
        return Err(Error::NoImages {
            path: opts.root.clone(),
        });
    }
    let dim = vectors[0].len();
    let mut mean = vec![0f32; dim];
    for v in &vectors {
        mean.iter_mut().zip(v).for_each(|(m, x)| *m += x);
    }
    mean.iter_mut().for_each(|m| *m /= vectors.len() as f32);
    for v in vectors.iter_mut() {
        v.iter_mut().zip(&mean).for_each(|(x, m)| *x -= m);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    let position: HashMap<&PathBuf, usize> = kept.iter().enumerate().map(|(i, p)| (p, i)).collect();
    let queries = query_subset(&kept, opts.queries);
    let want = opts.knn.max(opts.k) + 1;
    let ranked: Vec<(PathBuf, Vec<Hit>)> = {
        use rayon::prelude::*;
        queries
            .par_iter()
            .map(|q| {
                let qv = &vectors[position[q]];
                let mut scored: Vec<(f32, usize)> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (qv.iter().zip(v).map(|(a, b)| a * b).sum(), i))
                    .collect();
                let cut = want.min(scored.len());
                scored.select_nth_unstable_by(cut - 1, |a, b| b.0.total_cmp(&a.0));
                scored.truncate(cut);
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                let hits = scored
                    .into_iter()
                    .map(|(score, i)| Hit {
                        path: kept[i].clone(),
                        score,
                    })
                    .collect();
                (q.clone(), hits)
            })
            .collect()
    };
    let mut report = score(&ranked, opts, started);
    report.what = format!(
        "pixels ({}×{}, mean-centred)",
        preprocess.size, preprocess.size
    );
    report.images = kept.len();
    report.skipped = skipped;
    Ok(report)
}

/// P@k and weighted kNN accuracy from each query's ranked neighbours.
fn score(ranked: &[(PathBuf, Vec<Hit>)], opts: &EvalOptions, started: Instant) -> EvalReport {
    #[derive(Default)]
    struct Tally {
        images: usize,
        precision: f64,
        correct: usize,
    }
    let mut per_class: HashMap<String, Tally> = HashMap::new();
    for (query, hits) in ranked {
        let class = class_of(query);
        let neighbours: Vec<&Hit> = hits.iter().filter(|h| &h.path != query).collect();
        let top_k = neighbours.iter().take(opts.k);
        let same = top_k.filter(|h| class_of(&h.path) == class).count();
        let mut votes: HashMap<String, f64> = HashMap::new();
        for hit in neighbours.iter().take(opts.knn) {
            *votes.entry(class_of(&hit.path)).or_default() +=
                ((hit.score / opts.temperature) as f64).exp();
        }
        let predicted = votes
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c);
        let tally = per_class.entry(class.clone()).or_default();
        tally.images += 1;
        tally.precision += same as f64 / opts.k as f64;
        tally.correct += usize::from(predicted.as_deref() == Some(class.as_str()));
    }
    let queries: usize = per_class.values().map(|t| t.images).sum();
    let mut classes: Vec<ClassScore> = per_class
        .iter()
        .map(|(class, t)| ClassScore {
            class: class.clone(),
            images: t.images,
            precision_at_k: t.precision / t.images as f64,
            knn_accuracy: t.correct as f64 / t.images as f64,
        })
        .collect();
    classes.sort_by(|a, b| a.class.cmp(&b.class));
    let total =
        |f: fn(&Tally) -> f64| per_class.values().map(f).sum::<f64>() / queries.max(1) as f64;
    EvalReport {
        what: String::new(),
        images: 0,
        queries,
        skipped: 0,
        k: opts.k,
        precision_at_k: total(|t| t.precision),
        knn: opts.knn,
        knn_accuracy: total(|t| t.correct as f64),
        classes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
