//! Candidate pairs: each image's nearest neighbours in the store at cosine >= the threshold,
//! and its closest few down to a lower cosine, searched with its own vector and, by default,
//! with the vectors of its turned and mirrored views, its centres and corners and its picture
//! without the chrome around it, so that turned and mirrored copies, crops, and copies inside
//! borders, caption bars or screenshots, are found too.

use super::{content, DupsOptions};
use crate::data;
use crate::error::{Error, Result};
use crate::index::{dot, Entry, SearchOptions};
use crate::model::Model;
use crate::pipeline::query::QUERY_BATCH;
use crate::progress::Verbosity;
use crate::store::Store;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
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
                embed_views(model, &paths, both_turns, opts.verbosity)?
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

    /// Image `i`'s vector, then the vectors of its views, each with how many of its closest
    /// images it looks for, of `closest` ([`DupsOptions::closest_searched`]): each corner looks
    /// for one (the second closest images of the four corners made a tenth more pixel checks
    /// on the extended copy set's second draw and found no more copies), every other view for
    /// all of them. The turned and mirrored views look too: a copy cropped, or given a caption
    /// bar, after it was turned or mirrored falls under the threshold like any crop, and only
    /// its turned or mirrored view has it among its closest images (on the combined copy set
    /// of `examples/dups_bench.rs` F1 0.764 -> 0.870 with the picture's turns; on 60,000
    /// CIFAR-10 photos 48% more candidate pairs; docs/DUPS.md, "Combined edits").
    pub(super) fn probes(&self, i: usize, closest: usize) -> impl Iterator<Item = (&[f32], usize)> {
        // embed_views puts the corners right after the two centres.
        let corners = 2..2 + CORNERS;
        std::iter::once((self.vectors[i].as_slice(), closest)).chain(
            self.views[i].iter().enumerate().map(move |(k, v)| {
                let looks = if corners.contains(&k) {
                    closest.min(1)
                } else {
                    closest
                };
                (v.as_slice(), looks)
            }),
        )
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

/// What the neighbour search found: every pair at or above its floor, most similar first,
/// each pair once, and which of them were among the closest images of a probe (an image or one
/// of its views: [`DupsOptions::closest`]).
pub(super) struct Neighbours {
    pub(super) pairs: Vec<Pair>,
    closest: HashSet<(usize, usize)>,
    standing_apart: HashSet<(usize, usize)>,
}

/// How a probe found a pair: among its closest images at the closest images' cosine, among
/// them below it but standing apart from the rest ([`STANDING_APART`]), or neither.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum FoundAs {
    Closest,
    StandingApart,
    Neighbour,
}

/// A probe's closest image may fall this far under `--closest-cosine` when it stands this far
/// above the first image after the closest: the original of a copy under a caption bar is
/// often its nearest image by far (cosine 0.60-0.64, the next under 0.47), where alike photos
/// crowd together within a few hundredths. Lowering `--closest-cosine` to 0.55 for every
/// closest image found a few copies more on the extended copy sets, but made 3.7 times the
/// candidate pairs on 60,000 CIFAR-10 images; standing apart finds most of those copies for 4%
/// more (docs/DUPS.md, "The closest images").
pub(super) const STANDING_APART: f32 = 0.1;

impl Neighbours {
    /// The pairs found per image, each with how a probe found it.
    pub(super) fn from_found(found: Vec<Vec<(Pair, FoundAs)>>) -> Self {
        let found: Vec<(Pair, FoundAs)> = found.into_iter().flatten().collect();
        let marked = |how: FoundAs| -> HashSet<(usize, usize)> {
            found
                .iter()
                .filter(|(_, by)| *by == how)
                .map(|&((_, i, j), _)| (i, j))
                .collect()
        };
        let (closest, standing_apart) = (marked(FoundAs::Closest), marked(FoundAs::StandingApart));
        let mut pairs: Vec<Pair> = found.into_iter().map(|(pair, _)| pair).collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        pairs.dedup_by(|a, b| (a.1, a.2) == (b.1, b.2));
        Neighbours {
            pairs,
            closest,
            standing_apart,
        }
    }
}

/// One probe's hits as pairs of image `i` (`partner` names the hit's image, `None` for `i`
/// itself or an image not compared): those at `floor` or more, the first `closest` of them
/// found as closest at `closest_cosine` or more; and, under it by at most [`STANDING_APART`]
/// and above the image after the closest by at least as much, those standing apart, even
/// under `floor` (only they: the pairs of alike images just under it would be many).
pub(super) fn probe_pairs(
    i: usize,
    hits: &[crate::index::Hit],
    partner: impl Fn(&crate::index::Hit) -> Option<usize>,
    similarity: impl Fn(usize) -> f32,
    (floor, closest_cosine): (f32, f32),
    closest: usize,
) -> Vec<(Pair, FoundAs)> {
    // The partners of the hits (most similar first) that may make pairs, and of those down to
    // the first image after the closest.
    let lowest = floor.min(closest_cosine - STANDING_APART);
    let mut partners: Vec<(f32, usize)> = Vec::new();
    for h in hits {
        if h.score < lowest && partners.len() > closest {
            break;
        }
        partners.extend(partner(h).map(|j| (h.score, j)));
    }
    let after_closest = partners.get(closest).map_or(-1.0, |&(score, _)| score);
    let mut taken = 0;
    partners
        .into_iter()
        .filter_map(|(score, j)| {
            let apart =
                score >= closest_cosine - STANDING_APART && score - after_closest >= STANDING_APART;
            let how = if taken >= closest {
                FoundAs::Neighbour
            } else if score >= closest_cosine {
                FoundAs::Closest
            } else if apart {
                FoundAs::StandingApart
            } else {
                FoundAs::Neighbour
            };
            taken += usize::from(score >= closest_cosine || apart);
            (score >= floor || how == FoundAs::StandingApart)
                .then(|| ((similarity(j), i.min(j), i.max(j)), how))
        })
        .collect()
}

/// The pairs of the library at cosine `floor` or more among each image's (and view's)
/// `opts.neighbours` nearest.
pub(super) fn candidate_pairs(
    store: &dyn Store,
    library: &Library,
    floor: f32,
    opts: &DupsOptions,
) -> Result<Neighbours> {
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
    let bar = opts.verbosity.bar(library.len() as u64, "search");
    let found: Vec<Vec<(Pair, FoundAs)>> = (0..library.len())
        .into_par_iter()
        .map(|i| -> Result<Vec<(Pair, FoundAs)>> {
            let mut pairs = Vec::new();
            for (probe, closest) in library.probes(i, opts.closest_searched()) {
                pairs.extend(probe_pairs(
                    i,
                    &store.search(probe, &search)?,
                    |h| id_of.get(h.path.as_path()).copied().filter(|&j| j != i),
                    |j| library.similarity(i, j),
                    (floor, opts.closest_cosine),
                    closest,
                ));
            }
            bar.inc(1);
            Ok(pairs)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    Ok(Neighbours::from_found(found))
}

/// The pairs the pixel check sees among those found: those at or above the threshold, and
/// those among the `opts.closest` nearest images of one probe (an image or one of its views)
/// whose cosine reaches `opts.closest_cosine`, or comes within [`STANDING_APART`] of it where
/// the probe found them standing apart. A copy under a caption bar, or cropped deep,
/// falls far under the threshold but stays among its original's nearest images (its picture's
/// or centre's, if not its own); the closest images find it at a few more pixel checks per
/// image, where lowering the threshold to their cosine checks every pair of similar photos
/// (docs/DUPS.md, "The closest images").
pub(super) fn copy_candidates(found: &Neighbours, opts: &DupsOptions) -> Vec<Pair> {
    // Without closest images searched, `reach` is the threshold and both sets are empty.
    let reach = opts.reach();
    found
        .pairs
        .iter()
        .filter(|&&(similarity, i, j)| {
            similarity >= opts.threshold
                || (similarity >= reach && found.closest.contains(&(i, j)))
                || (similarity >= reach - STANDING_APART && found.standing_apart.contains(&(i, j)))
        })
        .copied()
        .collect()
}

/// The embeddings of each indexed image's views, in entry order (empty for an image that no
/// longer decodes): turned a quarter clockwise, mirrored, its centre, its deep centre and its
/// four corners ([`CENTRE`], [`DEEP_CENTRE`], [`CORNER`]: they find crops of it), and, when
/// the image has chrome around its picture ([`content::content_box`]: a border, a caption bar,
/// a screenshot's interface), its picture alone, mirrored and turned a quarter either way;
/// with them, where each picture lies. (The picture needs both turns: its original has no
/// picture of its own whose turned view would find the other turn.)
///
/// One turned view finds both turns: if B is A turned a quarter clockwise, A's view is B; if B
/// is A turned the other way, B's view is A. (A half turn, an upside-down copy, is not looked
/// for: rare in photos, and one more view would cost as much as each of these.) The mirrored
/// view finds mirrored copies the embedding alone puts under the threshold (61 of 65 found
/// without it on the benchmark, 65 with it). Turning the preprocessed square equals
/// preprocessing the turned image: the crop is centred and square. `both_turns` adds the
/// anticlockwise turn, for images compared with others that have no views.
fn embed_views(
    model: &Model,
    paths: &[PathBuf],
    both_turns: bool,
    verbosity: Verbosity,
) -> Result<Views> {
    let bar = verbosity.bar(paths.len() as u64, "views");
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
        // The window keeping `share` of each side, its left edge `across` halves of the room
        // left beside it from the image's (0: at the left edge, 1: centred, 2: at the right
        // edge), its top edge likewise `down` halves.
        let window = |share: f32, (across, down): (u32, u32)| {
            let (cw, ch) = (
                ((w as f32 * share) as u32).max(1),
                ((h as f32 * share) as u32).max(1),
            );
            let (x, y) = ((w - cw) * across / 2, (h - ch) * down / 2);
            preprocess.to_rgb(&image.crop_imm(x, y, cw, ch))
        };
        Ok(Squares {
            whole: preprocess.to_rgb(&image),
            centre: window(CENTRE, (1, 1)),
            deep_centre: window(DEEP_CENTRE, (1, 1)),
            corners: [(0, 0), (2, 0), (0, 2), (2, 2)].map(|at| window(CORNER, at)),
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
            // The centres, then the corners (Library::probes counts on this order).
            squares.extend([item.rgb.centre.clone(), item.rgb.deep_centre.clone()]);
            squares.extend(item.rgb.corners.iter().cloned());
            if let Some((picture, share)) = &item.rgb.picture {
                let clockwise = rotate90(picture, side);
                let anticlockwise = rotate90(&rotate90(&clockwise, side), side);
                squares.extend([picture.clone(), mirror(picture, side)]);
                squares.extend([clockwise, anticlockwise]);
                pictures[item.index] = Some(*share);
            }
            squares.extend([turned, mirror(whole, side)]);
            squares.extend(anticlockwise);
            counts.push(squares.len() - before);
        }
        let vectors = model.embed(squares.iter().map(Vec::as_slice))?;
        let mut vectors = vectors.into_iter();
        for (item, count) in batch.items.iter().zip(counts) {
            views[item.index] = vectors.by_ref().take(count).collect();
        }
        bar.inc((batch.items.len() + batch.failures.len()) as u64);
    }
    bar.finish_and_clear();
    Ok((views, pictures))
}

/// Each image's view vectors and where its picture lies, in entry order.
type Views = (Vec<Vec<Vec<f32>>>, Vec<Option<Share>>);

/// A file as [`embed_views`] needs it: its square, the squares of its centres and corners,
/// and its picture's square and place when it has chrome around it.
struct Squares {
    whole: Vec<u8>,
    centre: Vec<u8>,
    deep_centre: Vec<u8>,
    corners: [Vec<u8>; CORNERS],
    picture: Option<(Vec<u8>, Share)>,
}

/// The centre view keeps this share of each side: about what a crop to 70% of the area keeps,
/// whose embedding is far from its original's but near the original's centre (on the copy set
/// of `examples/dups_bench.rs`, 38 of 44 such crops reach cosine 0.85 to it, 18 to the whole).
const CENTRE: f32 = 0.85;
/// The deep centre keeps this share of each side, for crops to half the area, which a crop
/// anywhere in the picture shares most of: among its closest images it finds 31 of the
/// extended copy set's 37 such crops where the centre alone finds 26 (0.70 found 29).
const DEEP_CENTRE: f32 = 0.62;
/// Each corner view keeps this share of each side (55% of the area) at one of the image's
/// [`CORNERS`] corners. A crop to half the area may lie anywhere: the original's deep centre
/// lies wholly inside it only when it was cut near the middle, while one of the corner views
/// lies within an eighth of a side of it. On the second draw of the extended copy set
/// (docs/DUPS.md, "Corners") they find 5 of the 7 crops to half the area the other views
/// missed.
const CORNER: f32 = 0.74;
const CORNERS: usize = 4;

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
    use super::{copy_candidates, mirror, probe_pairs, rotate90, Neighbours};
    use crate::pipeline::dups::DupsOptions;

    /// A search hit on image `name` (its path "/name") at cosine `score`.
    fn hit(name: usize, score: f32) -> crate::index::Hit {
        crate::index::Hit {
            path: format!("/{name}").into(),
            score,
        }
    }

    /// The image a hit names; image 0 is the probe's own, no partner.
    fn partner(h: &crate::index::Hit) -> Option<usize> {
        h.path.to_str()?[1..].parse().ok().filter(|&j| j != 0)
    }

    /// Above the threshold every pair; below it the pairs among a probe's closest images down
    /// to the closest images' cosine; nothing below that, and nothing below the threshold
    /// without the pixel check.
    #[test]
    fn candidates_are_the_pairs_over_the_threshold_and_each_probes_closest() {
        let opts = DupsOptions::default();
        // Image 0's probes: its own vector, then a view.
        let own = [hit(1, 0.95), hit(2, 0.80), hit(3, 0.75), hit(4, 0.60)];
        let view = [hit(4, 0.70), hit(5, 0.69), hit(6, 0.66)];
        let similarity = |j: usize| [0.0, 0.95, 0.80, 0.75, 0.70, 0.69, 0.66][j];
        let kept = |opts: &DupsOptions| -> Vec<(usize, usize)> {
            let probes = [&own[..], &view[..]]
                .iter()
                .flat_map(|hits| {
                    let closest = opts.closest_searched();
                    let cosines = (opts.reach(), opts.closest_cosine);
                    probe_pairs(0, hits, partner, similarity, cosines, closest)
                })
                .collect();
            copy_candidates(&Neighbours::from_found(vec![probes]), opts)
                .iter()
                .map(|p| (p.1, p.2))
                .collect()
        };
        // Own: 1 (over the threshold) and 2 are the two closest; the view's: 4 and 5.
        assert_eq!(kept(&opts), [(0, 1), (0, 2), (0, 4), (0, 5)]);
        let one = DupsOptions { closest: 1, ..opts };
        assert_eq!(kept(&one), [(0, 1), (0, 4)]);
        let off = DupsOptions { closest: 0, ..opts };
        assert_eq!(kept(&off), [(0, 1)]);
        let unverified = DupsOptions {
            verify: None,
            ..opts
        };
        assert_eq!(kept(&unverified), [(0, 1)]);
    }

    /// Under the closest images' cosine, a probe's closest image is a candidate only when it
    /// stands apart: at most 0.1 under that cosine, and at least 0.1 above the first image
    /// after the closest. Among alike images crowding together, none is.
    #[test]
    fn a_closest_image_standing_apart_from_the_rest_is_a_candidate_under_the_cosine() {
        let opts = DupsOptions::default();
        let kept = |hits: &[crate::index::Hit], similarity: f32| -> Vec<usize> {
            let cosines = (opts.reach(), opts.closest_cosine);
            let closest = opts.closest_searched();
            let found = probe_pairs(0, hits, partner, |_| similarity, cosines, closest);
            copy_candidates(&Neighbours::from_found(vec![found]), &opts)
                .iter()
                .map(|p| p.2)
                .collect()
        };
        // Image 1 at 0.60, 0.16 above the third, image 3; image 2 is closest but under 0.55.
        let apart = [hit(1, 0.60), hit(2, 0.45), hit(3, 0.44)];
        assert_eq!(kept(&apart, 0.60), [1]);
        // The probe itself among its hits does not count as the image after the closest.
        let with_itself = [hit(0, 0.99), hit(1, 0.60), hit(2, 0.45), hit(3, 0.44)];
        assert_eq!(kept(&with_itself, 0.60), [1]);
        // Crowded: the third is within 0.1 of it.
        let crowded = [hit(1, 0.60), hit(2, 0.58), hit(3, 0.57)];
        assert_eq!(kept(&crowded, 0.60), Vec::<usize>::new());
        // More than 0.1 under the cosine, or the pair itself under it (the image's own vector
        // found it through a view), is too far.
        let far = [hit(1, 0.54), hit(2, 0.30), hit(3, 0.29)];
        assert_eq!(kept(&far, 0.54), Vec::<usize>::new());
        assert_eq!(kept(&apart, 0.50), Vec::<usize>::new());
    }

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
