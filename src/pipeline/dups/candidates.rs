//! Candidate pairs: each image's nearest neighbours in the store at cosine >= the threshold,
//! searched with its own vector and, by default, with the vectors of its turned and mirrored
//! views and of its picture without the chrome around it, so that turned and mirrored copies,
//! and copies inside borders, caption bars or screenshots, are found too.

use super::{content, DupsOptions};
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

/// The store's images as the search for duplicates sees them: entries, vectors, the vectors of
/// each image's views (none without rotations), and where each image's picture lies inside its
/// chrome, if it has any (found with the views).
pub(super) struct Library {
    pub(super) entries: Vec<Entry>,
    vectors: Vec<Vec<f32>>,
    views: Vec<Vec<Vec<f32>>>,
    pictures: Vec<Option<Share>>,
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
        let (views, pictures) = match (opts.rotations, model) {
            (true, Some(model)) => {
                let paths: Vec<PathBuf> = entries.iter().map(|e| e.path.clone()).collect();
                embed_views(model, &paths, both_turns)?
            }
            (true, None) => {
                return Err(Error::Usage(
                    "comparing rotations needs the index's model".into(),
                ))
            }
            (false, _) => (vec![Vec::new(); entries.len()], vec![None; entries.len()]),
        };
        Ok(Library {
            entries,
            vectors,
            views,
            pictures,
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
            self.pictures.push(None);
        }
        self
    }

    /// Where image `i`'s picture lies inside its chrome, if it has any.
    pub(super) fn picture(&self, i: usize) -> Option<Share> {
        self.pictures[i]
    }

    /// Image `i`'s vector, then the vectors of its views.
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

/// The embeddings of each indexed image's views, in entry order (empty for an image that no
/// longer decodes): turned a quarter clockwise, mirrored, its centre ([`CENTRE`]: finds crops
/// of it), and, when the image has chrome around its picture ([`content::content_box`]: a
/// border, a caption bar, a screenshot's interface), its picture alone and that mirrored; with
/// them, where each picture lies.
///
/// One turned view finds both turns: if B is A turned a quarter clockwise, A's view is B; if B
/// is A turned the other way, B's view is A. (A half turn, an upside-down copy, is not looked
/// for: rare in photos, and one more view would cost as much as each of these.) The mirrored
/// view finds mirrored copies the embedding alone puts under the threshold (61 of 65 found
/// without it on the benchmark, 65 with it). Turning the preprocessed square equals
/// preprocessing the turned image: the crop is centred and square. `both_turns` adds the
/// anticlockwise turn, for images compared with others that have no views.
fn embed_views(model: &Model, paths: &[PathBuf], both_turns: bool) -> Result<Views> {
    let preprocess = model.preprocess().clone();
    let side = preprocess.size as usize;
    let mut views = vec![Vec::new(); paths.len()];
    let mut pictures = vec![None; paths.len()];
    let load = move |path: &Path| -> Result<Squares> {
        let image = data::decode_for(path, &preprocess)?;
        let picture = content::content_box(&image).map(|(x, y, w, h)| {
            let share = Share::of((x, y, w, h), image.width(), image.height());
            (preprocess.to_rgb(&image.crop_imm(x, y, w, h)), share)
        });
        let (w, h) = (image.width(), image.height());
        let (cw, ch) = (
            ((w as f32 * CENTRE) as u32).max(1),
            ((h as f32 * CENTRE) as u32).max(1),
        );
        Ok(Squares {
            whole: preprocess.to_rgb(&image),
            centre: preprocess.to_rgb(&image.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch)),
            picture,
        })
    };
    for batch in data::stream_with(paths.to_vec(), QUERY_BATCH, load) {
        let mut counts = Vec::with_capacity(batch.items.len());
        let mut squares: Vec<Vec<u8>> = Vec::new();
        for item in &batch.items {
            let whole = &item.rgb.whole;
            let turned = rotate90(whole, side);
            let anticlockwise = both_turns.then(|| rotate90(&rotate90(&turned, side), side));
            let before = squares.len();
            squares.extend([turned, mirror(whole, side), item.rgb.centre.clone()]);
            squares.extend(anticlockwise);
            if let Some((picture, share)) = &item.rgb.picture {
                squares.extend([picture.clone(), mirror(picture, side)]);
                pictures[item.index] = Some(*share);
            }
            counts.push(squares.len() - before);
        }
        let vectors = model.embed(squares.iter().map(Vec::as_slice))?;
        let mut vectors = vectors.into_iter();
        for (item, count) in batch.items.iter().zip(counts) {
            views[item.index] = vectors.by_ref().take(count).collect();
        }
    }
    Ok((views, pictures))
}

/// Each image's view vectors and where its picture lies, in entry order.
type Views = (Vec<Vec<Vec<f32>>>, Vec<Option<Share>>);

/// A file as [`embed_views`] needs it: its square, the square of its centre, and its picture's
/// square and place when it has chrome around it.
struct Squares {
    whole: Vec<u8>,
    centre: Vec<u8>,
    picture: Option<(Vec<u8>, Share)>,
}

/// The centre view keeps this share of each side: about what a crop to 70% of the area keeps,
/// whose embedding is far from its original's but near the original's centre (on the copy set
/// of `examples/dups_bench.rs`, 38 of 44 such crops reach cosine 0.85 to it, 18 to the whole).
const CENTRE: f32 = 0.85;

/// A rectangle as shares of its image's width and height, `[x, y, w, h]`: the same place in
/// the image at any size it is decoded at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Share(pub(super) [f32; 4]);

impl Share {
    fn of((x, y, w, h): content::Rect, width: u32, height: u32) -> Self {
        let (fw, fh) = (width.max(1) as f32, height.max(1) as f32);
        Share([x as f32 / fw, y as f32 / fh, w as f32 / fw, h as f32 / fh])
    }

    /// The rectangle in an image of `width × height`, at least one pixel.
    pub(super) fn within(&self, width: u32, height: u32) -> content::Rect {
        let [x, y, w, h] = self.0;
        let (fw, fh) = (width as f32, height as f32);
        let x0 = ((x * fw).floor() as u32).min(width.saturating_sub(1));
        let y0 = ((y * fh).floor() as u32).min(height.saturating_sub(1));
        let x1 = (((x + w) * fw).ceil() as u32).clamp(x0 + 1, width.max(x0 + 1));
        let y1 = (((y + h) * fh).ceil() as u32).clamp(y0 + 1, height.max(y0 + 1));
        (x0, y0, x1 - x0, y1 - y0)
    }
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
