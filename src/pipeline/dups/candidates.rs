//! Candidate pairs: each image's nearest neighbours in the store at cosine >= the threshold,
//! searched with its own vector and, by default, with the vectors of its turned and mirrored
//! views, so that turned and mirrored copies are found too.

use super::DupsOptions;
use crate::data;
use crate::error::{Error, Result};
use crate::index::{dot, Entry, SearchOptions};
use crate::model::Model;
use crate::pipeline::query::QUERY_BATCH;
use crate::store::Store;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A candidate pair: the similarity of images `.1 < .2` (entry order).
pub(super) type Pair = (f32, usize, usize);

/// The store's images as the search for duplicates sees them: entries, vectors, and the
/// vectors of each image's turned and mirrored views (none without rotations).
pub(super) struct Library {
    pub(super) entries: Vec<Entry>,
    vectors: Vec<Vec<f32>>,
    views: Vec<Vec<Vec<f32>>>,
}

impl Library {
    /// Every image of `store`; the views are embedded with `model` when `opts.rotations`.
    pub(super) fn load(
        store: &dyn Store,
        model: Option<&Model>,
        opts: &DupsOptions,
    ) -> Result<Self> {
        Self::load_with_turns(store, model, opts, false)
    }

    /// [`Self::load`], with `both_turns` also embedding each image turned anticlockwise: when
    /// the images it is compared with have no views of their own, one turned view no longer
    /// finds both turns.
    pub(super) fn load_with_turns(
        store: &dyn Store,
        model: Option<&Model>,
        opts: &DupsOptions,
        both_turns: bool,
    ) -> Result<Self> {
        let (entries, vectors): (Vec<_>, Vec<Vec<f32>>) =
            store.entries_with_vectors()?.into_iter().unzip();
        let views = match (opts.rotations, model) {
            (true, Some(model)) => {
                let paths: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
                rotated_views(model, &paths, both_turns)?
            }
            (true, None) => {
                return Err(Error::Usage(
                    "comparing rotations needs the index's model".into(),
                ))
            }
            (false, _) => vec![Vec::new(); entries.len()],
        };
        Ok(Library {
            entries,
            vectors,
            views,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// This library followed by `others` (entries with their vectors, no views): ids
    /// `len()..` are the others'.
    pub(super) fn followed_by(mut self, others: Vec<(Entry, Vec<f32>)>) -> Self {
        for (entry, vector) in others {
            self.entries.push(entry);
            self.vectors.push(vector);
            self.views.push(Vec::new());
        }
        self
    }

    /// Image `i`'s vector, then the vectors of its turned and mirrored views.
    pub(super) fn probes(&self, i: usize) -> impl Iterator<Item = &[f32]> {
        std::iter::once(self.vectors[i].as_slice()).chain(self.views[i].iter().map(Vec::as_slice))
    }

    /// The similarity of two images: their vectors' cosine, or the best of either's turned
    /// views against the other.
    pub(super) fn similarity(&self, a: usize, b: usize) -> f32 {
        let (vectors, views) = (&self.vectors, &self.views);
        let direct = dot(&vectors[a], &vectors[b]);
        let turned_a = views[a].iter().map(|v| dot(v, &vectors[b]));
        let turned_b = views[b].iter().map(|v| dot(&vectors[a], v));
        turned_a.chain(turned_b).fold(direct, f32::max)
    }
}

/// The candidate pairs of the library, most similar first, each pair once.
pub(super) fn candidate_pairs(
    store: &dyn Store,
    library: &Library,
    opts: &DupsOptions,
) -> Result<Vec<Pair>> {
    let id_of: HashMap<&Path, usize> = library
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_path(), i))
        .collect();
    let search = SearchOptions {
        k: opts.neighbours + 1,
        ef: opts.ef.max(opts.neighbours + 1),
        exact: false,
        min_score: None,
    };
    let found: Vec<Vec<Pair>> = (0..library.len())
        .into_par_iter()
        .map(|i| -> Result<Vec<Pair>> {
            let mut pairs = Vec::new();
            for probe in library.probes(i) {
                for h in store.search(probe, &search)? {
                    if h.score < opts.threshold {
                        continue;
                    }
                    if let Some(&j) = id_of.get(h.path.as_path()).filter(|&&j| j != i) {
                        pairs.push((library.similarity(i, j), i.min(j), i.max(j)));
                    }
                }
            }
            Ok(pairs)
        })
        .collect::<Result<_>>()?;
    Ok(most_similar_first(found))
}

/// The pairs found per image, most similar first, each pair once.
pub(super) fn most_similar_first(found: Vec<Vec<Pair>>) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = found.into_iter().flatten().collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    pairs.dedup_by(|a, b| (a.1, a.2) == (b.1, b.2));
    pairs
}

/// The embeddings of each indexed image turned a quarter clockwise and mirrored, in entry
/// order (empty for an image that no longer decodes). One turned view finds both turns: if B
/// is A turned a quarter clockwise, A's view is B; if B is A turned the other way, B's view is
/// A. (A half turn, an upside-down copy, is not looked for: rare in photos, and one more view
/// would cost as much as each of these.) The mirrored view finds mirrored copies the embedding
/// alone puts under the threshold (61 of 65 found without it on the benchmark, 65 with it).
/// Turning the preprocessed square equals preprocessing the turned image: the crop is centred
/// and square. `both_turns` adds the anticlockwise turn, for images compared with others that
/// have no views.
fn rotated_views(model: &Model, paths: &[PathBuf], both_turns: bool) -> Result<Vec<Vec<Vec<f32>>>> {
    let side = model.preprocess().size as usize;
    let per_image = if both_turns { 3 } else { 2 };
    let mut views = vec![Vec::new(); paths.len()];
    for batch in data::stream(paths.to_vec(), model.preprocess().clone(), QUERY_BATCH) {
        let squares: Vec<Vec<u8>> = batch
            .items
            .iter()
            .flat_map(|item| {
                let turned = rotate90(&item.rgb, side);
                let mut views = vec![mirror(&item.rgb, side)];
                if both_turns {
                    views.push(rotate90(&rotate90(&turned, side), side));
                }
                views.insert(0, turned);
                views
            })
            .collect();
        let vectors = model.embed(squares.iter().map(Vec::as_slice))?;
        for (item, own) in batch.items.iter().zip(vectors.chunks(per_image)) {
            views[item.index] = own.to_vec();
        }
    }
    Ok(views)
}

/// An RGB8 `side × side` square mirrored left to right.
fn mirror(rgb: &[u8], side: usize) -> Vec<u8> {
    moved_pixels(rgb, side, |x, y| (side - 1 - x, y))
}

/// An RGB8 `side × side` square turned 90 degrees clockwise.
fn rotate90(rgb: &[u8], side: usize) -> Vec<u8> {
    moved_pixels(rgb, side, |x, y| (side - 1 - y, x))
}

/// An RGB8 `side × side` square whose pixel (x, y) moves to `to(x, y)`.
fn moved_pixels(rgb: &[u8], side: usize, to: impl Fn(usize, usize) -> (usize, usize)) -> Vec<u8> {
    let mut out = vec![0; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            let (tx, ty) = to(x, y);
            let (from, into) = ((y * side + x) * 3, (ty * side + tx) * 3);
            out[into..into + 3].copy_from_slice(&rgb[from..from + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{mirror, rotate90};

    /// A 2 × 2 square with pixels a b / c d (one grey level each).
    fn square(pixels: [u8; 4]) -> Vec<u8> {
        pixels.iter().flat_map(|&p| [p, p, p]).collect()
    }

    #[test]
    fn views_move_pixels_as_named() {
        let abcd = square([1, 2, 3, 4]);
        // Turned clockwise: c a / d b.
        assert_eq!(rotate90(&abcd, 2), square([3, 1, 4, 2]));
        // Mirrored: b a / d c.
        assert_eq!(mirror(&abcd, 2), square([2, 1, 4, 3]));
        assert_eq!(
            rotate90(&rotate90(&rotate90(&rotate90(&abcd, 2), 2), 2), 2),
            abcd
        );
    }
}
