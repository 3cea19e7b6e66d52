//! The pixel check of a candidate pair: is one image a copy of the other, up to a resize,
//! recompression, colour change, caption or caption bar, watermark or logo, border, flip,
//! quarter turn, a crop down to about 40% of the area, or the picture shown inside a larger
//! one (a screenshot)?
//!
//! Embedding cosine finds candidates, but it also calls different photos of one scene close
//! (one person, one hand against one wall). A copy shares its pixels: after the right alignment
//! the two grey images correlate almost perfectly, while two shots of one scene do not. The
//! check places one image, whole, over windows of the other that have its shape (sides from 1
//! down to 0.42 of the largest that fits, on a grid of offsets), under the eight flips and
//! quarter turns, both ways round; the best placements are refined and then scored at a finer
//! resolution by Pearson's r of the grey levels (so brightness and contrast do not matter)
//! over the window less the band along one edge that matches worst, which is what a caption
//! bar, a caption or a border covers, or less a band across it where one image is the other
//! with a mark drawn over it (a watermark). The sizes, grids, rounds and the share of lines
//! left out were measured on the copy-detection sets of `examples/dups_bench.rs`
//! (docs/DUPS.md).

use crate::index::dot;
use image::DynamicImage;
use std::ops::Range;

/// A fingerprint is the image shrunk to fit a box of this side (aspect kept): enough for a
/// picture that fills a third of a phone screenshot to keep some detail.
pub const FINGERPRINT_SIDE: u32 = 96;
/// Placements are searched with windows resampled to `WINDOW × WINDOW`, and first to
/// `COARSE × COARSE`: a pair whose best coarse correlation is short of the score needed by more
/// than `COARSE_MARGIN` is not compared finely (most candidate pairs).
const WINDOW: usize = 24;
const COARSE: usize = 8;
const COARSE_MARGIN: f32 = 0.45;
/// The best placements are scored at `FINAL × FINAL`, with or without a band of rows or columns
/// along one edge, 1 / `TRIM_SHARE` of the window.
const FINAL: usize = 32;
const TRIM_SHARE: usize = 5;
/// A mark drawn across a picture (a watermark, a stamped caption) is looked for in a band of
/// 1 / `MARK_SHARE` of the rows (a line of text on a 32-pixel image takes 7), whose difference
/// leans to one sign by at least `MARK_LEAN` ([`overlay_rows`]). Chosen on the copy sets'
/// watermarks and bursts: 0.4 to 0.6 gave the same wrong pairs, 0.3 let bursts through.
const MARK_SHARE: usize = 4;
const MARK_LEAN: f32 = 0.5;
/// Nor is a mark looked for unless the placement covers at least this share of the host's
/// area: on 60,000 CIFAR-10 images, without it, pairs of different ships on one flat sea
/// passed where one picture lay over two fifths of the other; with it, only copies were added.
const MARK_MIN_COVER: f32 = 0.7;
/// The final score is no finer than `MIN_FINAL` when the pictures hold less; nor is a guest
/// placed over a window of fewer than `MIN_FINAL` pixels a side (bar the largest that fits):
/// so few pixels of a small image, scaled up, correlate with almost any smooth picture. Only
/// fingerprints under 29 pixels a side lose placements; among the 18,260 21-pixel tiles of
/// `examples/tile_library.rs` (docs/DUPS.md) the pairs of different tiles that pass fall by a
/// quarter.
const MIN_FINAL: usize = 12;
/// The final score samples a picture through a tent filter where it is shrunk more than this
/// many times as much as the other picture: a copy resized to half is smoother than its
/// original sampled bilinearly at every second pixel, and their edges (the score's detail
/// term) then differ as much as two shots of one scene do.
const SHRUNK: f32 = 1.5;
/// A guest shrunk to at most `SHRUNK_GUEST` of the side of the window it is placed over is also
/// scored with its detail at `COARSER_DETAIL` of the smaller picture's side (the square root of
/// its area), when that is coarser than the final score's: a 64-pixel photo cropped, shrunk to
/// 40 pixels and saved at JPEG quality 40 keeps its grey levels (r 0.96-0.99) but not the
/// detail of its pixels (0.78-0.88). Only the shrunk guest: two pictures of one size, such as
/// a plane and a ship on one flat grey, keep the finer detail that tells them apart (on 60,000
/// CIFAR-10 images, without that condition, 1,624 more pairs passed, among them such a plane
/// and ship; with it, 241, nearly all of a sample one photo twice). Not by the smaller side
/// alone (the narrower side): two different skirts, 400-pixel photos on plain backgrounds,
/// passed that way.
const SHRUNK_GUEST: f32 = 0.9;
const COARSER_DETAIL: f32 = 0.5;
/// Nor wider than this many pixels a sample: a picture shrunk to a quarter or less, smoothed,
/// matches any smooth window a few samples across (a garment on a bedspread, turned, over a
/// patch of the bedspread).
const WIDEST_TENT: f32 = 2.5;
/// How many of the best placements are refined and scored finally.
const TOP: usize = 4;
/// Rounds of refinement of each, at most: a round moves the placement one step (the best of
/// six moves) or halves the step, and refinement ends once a step is under `MIN_STEP` pixels
/// of the host. A coarse placement may lie half a grid step off in each direction and a scale
/// off, several moves from its place; six rounds left exact crops of small photos (a
/// 73-pixel crop of a 100-pixel one) short of it, scoring 0.74-0.93 (docs/DUPS.md).
const REFINE_ROUNDS: usize = 20;
/// Refinement ends once a step is under this many pixels of the host: with it, twenty rounds
/// took no longer than twelve without it on the extended copy set.
const MIN_STEP: f32 = 0.25;
/// A placement whose correlation at `WINDOW` is still under `ABANDON_BELOW` after
/// `ABANDON_AFTER` rounds is refined no further: a copy's has long passed it by then. On the
/// extended copy set the same groups, `dups` a sixth faster; the refinement of different
/// images' placements is most of the check's time among alike 21-pixel tiles.
const ABANDON_AFTER: usize = 6;
const ABANDON_BELOW: f32 = 0.8;
/// Window sides relative to the largest window of the other image's shape that fits.
const SCALES: [f32; 9] = [1.0, 0.92, 0.84, 0.77, 0.7, 0.62, 0.55, 0.48, 0.42];
/// Offsets along an axis are at most this share of the window's side apart (and at most
/// `MAX_STEPS` of them), refined later.
const STEP: f32 = 0.15;
const MAX_STEPS: usize = 8;
/// Grey levels (0–1) varying less than this are "flat": no pattern to correlate.
const FLAT: f32 = 1e-3;

/// An image as the check sees it: grey levels (0–1) in a box of [`FINGERPRINT_SIDE`].
#[derive(Debug, Clone)]
pub struct Fingerprint {
    width: usize,
    height: usize,
    grey: Vec<f32>,
}

/// A window resampled to `n × n`, zero-mean and unit-norm (all zero when flat).
type Window = Vec<f32>;

/// Where one image lies over another: the rectangle (x, y, w, h) in the host's pixels and which
/// of the eight flips and turns of the guest (`t = turns * 2 + mirrored`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Placement {
    rect: [f32; 4],
    view: usize,
}

impl Fingerprint {
    /// The fingerprint of a decoded image.
    pub fn of_image(image: &DynamicImage) -> Fingerprint {
        let side = FINGERPRINT_SIDE;
        let small = if image.width() > side || image.height() > side {
            image.resize(side, side, image::imageops::FilterType::Triangle)
        } else {
            image.clone()
        };
        let grey = small.to_luma8();
        Fingerprint {
            width: grey.width() as usize,
            height: grey.height() as usize,
            grey: grey.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect(),
        }
    }

    /// Mean grey level.
    fn mean(&self) -> f32 {
        self.grey.iter().sum::<f32>() / self.grey.len().max(1) as f32
    }

    /// The rectangle resampled bilinearly to `n × n` grey levels, as they are.
    fn sample(&self, rect: [f32; 4], n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * n);
        self.each_sample(rect, n, |v| out.push(v));
        out
    }

    /// Pearson's r of the rectangle resampled to `n × n` with `view`, a window as [`normalise`]
    /// leaves it (zero mean, unit norm): what `dot(&self.window(rect, n), view)` gives, in one
    /// pass and without allocating. The refinement scores thousands of rectangles per pair.
    fn correlation(&self, rect: [f32; 4], n: usize, view: &[f32]) -> f32 {
        // Against a zero-mean view the mean of the samples cancels out of the dot product;
        // sums in f64, since a nearly flat window's variance is a small difference of large
        // sums.
        let (mut sum, mut squares, mut dot) = (0f64, 0f64, 0f64);
        let mut views = view.iter();
        self.each_sample(rect, n, |v| {
            let (v, w) = (f64::from(v), f64::from(*views.next().unwrap_or(&0.0)));
            sum += v;
            squares += v * v;
            dot += v * w;
        });
        let count = (n * n) as f64;
        let norm = (squares - sum * sum / count).max(0.0).sqrt();
        if norm / count.sqrt() < f64::from(FLAT) {
            0.0
        } else {
            (dot / norm) as f32
        }
    }

    /// Each grey level of the rectangle resampled bilinearly to `n × n` (at most [`FINAL`]),
    /// row by row.
    fn each_sample(&self, [x, y, w, h]: [f32; 4], n: usize, mut emit: impl FnMut(f32)) {
        let (max_x, max_y) = ((self.width - 1) as f32, (self.height - 1) as f32);
        // Sample at the centre of each output cell. The columns are the same on every row:
        // where each falls is worked out once (the refinement samples thousands of windows
        // per pair, and this is most of its time).
        let mut columns = [(0usize, 0usize, 0f32); FINAL];
        let n = n.min(FINAL);
        for (i, column) in columns[..n].iter_mut().enumerate() {
            let sx = (x + (i as f32 + 0.5) * w / n as f32 - 0.5).clamp(0.0, max_x);
            let x0 = whole_part(sx);
            *column = (x0, (x0 + 1).min(self.width - 1), sx - x0 as f32);
        }
        for j in 0..n {
            let sy = (y + (j as f32 + 0.5) * h / n as f32 - 0.5).clamp(0.0, max_y);
            let y0 = whole_part(sy);
            let fy = sy - y0 as f32;
            let y1 = (y0 + 1).min(self.height - 1);
            let (row0, row1) = (
                &self.grey[y0 * self.width..(y0 + 1) * self.width],
                &self.grey[y1 * self.width..(y1 + 1) * self.width],
            );
            for &(x0, x1, fx) in &columns[..n] {
                let top = row0[x0] * (1.0 - fx) + row0[x1] * fx;
                let bottom = row1[x0] * (1.0 - fx) + row1[x1] * fx;
                emit(top * (1.0 - fy) + bottom * fy);
            }
        }
    }

    /// The rectangle resampled to `n × n` for comparing with a picture whose smaller side is
    /// `other_side` pixels: through a tent filter ([`Fingerprint::shrunk`]) when this one is
    /// shrunk by more than [`SHRUNK`] times as much as the other (a resized copy beside its
    /// original), and by at most [`WIDEST_TENT`] pixels a sample; else bilinearly.
    fn sample_beside(&self, rect: [f32; 4], n: usize, other_side: f32) -> Vec<f32> {
        let side = rect[2].min(rect[3]);
        if side > SHRUNK * other_side.max(n as f32) && side <= WIDEST_TENT * n as f32 {
            self.shrunk(rect, n)
        } else {
            self.sample(rect, n)
        }
    }

    /// The rectangle resampled to `n × n` through a tent filter as wide as the step between
    /// samples (at least a pixel, where it is bilinear interpolation): what resizing with a
    /// triangle filter gives, as most resizers do. Bilinear samples a step of two pixels or
    /// more apart alias: each takes two neighbours and skips the rest.
    fn shrunk(&self, [x, y, w, h]: [f32; 4], n: usize) -> Vec<f32> {
        let taps = |start: f32, side: f32, size: usize| -> Vec<Vec<(usize, f32)>> {
            let radius = (side / n as f32).max(1.0);
            (0..n)
                .map(|i| {
                    let centre = start + (i as f32 + 0.5) * side / n as f32 - 0.5;
                    let lo = (centre - radius).ceil() as isize;
                    let hi = (centre + radius).floor() as isize;
                    let mut taps: Vec<(usize, f32)> = (lo..=hi)
                        .map(|k| {
                            let weight = (1.0 - (k as f32 - centre).abs() / radius).max(0.0);
                            (k.clamp(0, size as isize - 1) as usize, weight)
                        })
                        .filter(|t| t.1 > 0.0)
                        .collect();
                    let total: f32 = taps.iter().map(|t| t.1).sum();
                    taps.iter_mut().for_each(|t| t.1 /= total.max(1e-9));
                    taps
                })
                .collect()
        };
        let (columns, rows) = (taps(x, w, self.width), taps(y, h, self.height));
        let mut out = Vec::with_capacity(n * n);
        for row in &rows {
            for column in &columns {
                let mut v = 0.0;
                for &(yy, wy) in row {
                    let line = &self.grey[yy * self.width..(yy + 1) * self.width];
                    for &(xx, wx) in column {
                        v += line[xx] * wx * wy;
                    }
                }
                out.push(v);
            }
        }
        out
    }

    /// The summed-area table: the sum of the grey levels above and left of each pixel corner,
    /// `(width + 1) × (height + 1)` of them, bilinear between corners.
    fn summed_area(&self) -> Vec<f32> {
        let w = self.width + 1;
        let mut table = vec![0f32; w * (self.height + 1)];
        for y in 0..self.height {
            let mut row = 0f32;
            for x in 0..self.width {
                row += self.grey[y * self.width + x];
                table[(y + 1) * w + x + 1] = table[y * w + x + 1] + row;
            }
        }
        table
    }

    /// The rectangle as a normalised `n × n` window of the mean grey level of each cell
    /// ([`Fingerprint::summed_area`] is `table`). The coarse placements are found with these:
    /// eight bilinear samples across a 45-pixel window lie six pixels apart, and each takes two
    /// neighbours, so a copy's window a quarter of a sample off correlated less than a wrong
    /// placement's (exact crops of 64-pixel photos to half their area scored 0.43-0.61).
    fn cell_means(&self, table: &[f32], [x, y, w, h]: [f32; 4], n: usize) -> Window {
        let tw = self.width + 1;
        // Where each of the n + 1 cell borders falls along an axis, between which two table
        // lines and how far: the table is bilinear between its lines.
        let borders = |start: f32, side: f32, size: usize| -> Vec<(usize, usize, f32)> {
            (0..=n)
                .map(|i| {
                    let v = (start + i as f32 * side / n as f32).clamp(0.0, size as f32);
                    let v0 = whole_part(v);
                    let v1 = (v0 + 1).min(size);
                    (v0, v1, v - v0 as f32)
                })
                .collect()
        };
        let (columns, rows) = (borders(x, w, self.width), borders(y, h, self.height));
        let mut corners = Vec::with_capacity((n + 1) * (n + 1));
        for &(y0, y1, fy) in &rows {
            for &(x0, x1, fx) in &columns {
                let top = table[y0 * tw + x0] * (1.0 - fx) + table[y0 * tw + x1] * fx;
                let bottom = table[y1 * tw + x0] * (1.0 - fx) + table[y1 * tw + x1] * fx;
                corners.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        let at = |i: usize, j: usize| corners[j * (n + 1) + i];
        let mut out = Vec::with_capacity(n * n);
        for j in 0..n {
            for i in 0..n {
                out.push(at(i + 1, j + 1) - at(i, j + 1) - at(i + 1, j) + at(i, j));
            }
        }
        normalise(&mut out);
        out
    }

    /// The rectangle as a normalised `n × n` window.
    fn window(&self, rect: [f32; 4], n: usize) -> Window {
        let mut out = self.sample(rect, n);
        normalise(&mut out);
        out
    }

    fn whole_rect(&self) -> [f32; 4] {
        [0.0, 0.0, self.width as f32, self.height as f32]
    }

    fn is_flat(&self) -> bool {
        self.window(self.whole_rect(), WINDOW)
            .iter()
            .all(|&v| v == 0.0)
    }

    /// Where a guest of width/height `aspect` may lie: at each of [`SCALES`] of the largest
    /// rectangle of that shape that fits here, on a grid of offsets; none smaller than
    /// [`MIN_FINAL`] pixels a side but the largest.
    fn rects(&self, aspect: f32) -> Vec<[f32; 4]> {
        let (width, height) = (self.width as f32, self.height as f32);
        let (full_w, full_h) = if aspect >= width / height {
            (width, width / aspect)
        } else {
            (height * aspect, height)
        };
        let mut out = Vec::new();
        for scale in SCALES {
            let (w, h) = (full_w * scale, full_h * scale);
            if scale < 1.0 && w.min(h) < MIN_FINAL as f32 {
                break;
            }
            let offsets = |slack: f32, side: f32| -> Vec<f32> {
                let steps = ((slack / (STEP * side)).ceil() as usize).min(MAX_STEPS);
                (0..=steps)
                    .map(|i| slack * i as f32 / steps.max(1) as f32)
                    .collect()
            };
            for y in offsets(height - h, h) {
                for x in offsets(width - w, w) {
                    out.push([x, y, w, h]);
                }
            }
        }
        out
    }

    /// This image as the host of others' placements, its coarse windows kept for each shape of
    /// guest it has met: one image compared with many samples them once.
    pub fn windows(&self) -> Windows<'_> {
        Windows {
            image: self,
            flat: self.is_flat(),
            coarse: Default::default(),
        }
    }
}

/// The placements of one shape of guest over a host and their coarse windows, as is and with
/// the guest's sides swapped (its quarter turns).
type CoarseWindows = [Vec<([f32; 4], Window)>; 2];

/// One image as the host of another's placements.
pub struct Windows<'a> {
    image: &'a Fingerprint,
    flat: bool,
    /// By the guest's aspect, in thousandths.
    coarse: std::cell::RefCell<std::collections::HashMap<u32, std::rc::Rc<CoarseWindows>>>,
}

impl Windows<'_> {
    /// How well `other`, whole, matches its best placement here (under the eight flips and
    /// turns): the final score of the best placements; or, when `enough` is finite, the coarse
    /// estimate when that is well short of it. Two flat images of about one grey level score 1,
    /// a flat one against a patterned one 0.
    pub fn match_whole(&self, other: &Fingerprint, enough: f32) -> f32 {
        let host = self.image;
        match (self.flat, other.is_flat()) {
            (true, true) if (host.mean() - other.mean()).abs() < 8.0 / 255.0 => 1.0,
            (true, _) | (_, true) => 0.0,
            (false, false) => {
                let coarse = best_placements(other, &self.coarse_windows(other), TOP);
                let best_coarse = coarse.first().map_or(-1.0, |c| c.0);
                if enough.is_finite() && best_coarse < enough - COARSE_MARGIN {
                    return best_coarse;
                }
                // Best coarse placement first: a copy is usually done after one.
                let mut best = -1.0f32;
                for (_, placement) in coarse {
                    best = best.max(final_score(host, other, refine(host, other, placement)));
                    if best >= enough {
                        break;
                    }
                }
                best
            }
        }
    }
}

impl Windows<'_> {
    /// The coarse windows for a guest of `guest`'s shape, sampled on first use.
    fn coarse_windows(&self, guest: &Fingerprint) -> std::rc::Rc<CoarseWindows> {
        let aspect = guest.width as f32 / guest.height as f32;
        let key = (aspect * 1000.0).round() as u32;
        let mut cache = self.coarse.borrow_mut();
        cache
            .entry(key)
            .or_insert_with(|| {
                // Quarter turns swap the guest's sides.
                let table = self.image.summed_area();
                std::rc::Rc::new([aspect, 1.0 / aspect].map(|aspect| {
                    let rects = self.image.rects(aspect);
                    rects
                        .into_iter()
                        .map(|rect| (rect, self.image.cell_means(&table, rect, COARSE)))
                        .collect()
                }))
            })
            .clone()
    }
}

/// The `top` best placements of `guest` over a host's coarse windows by correlation, best
/// first.
fn best_placements(
    guest: &Fingerprint,
    windows: &CoarseWindows,
    top: usize,
) -> Vec<(f32, Placement)> {
    let whole = guest.cell_means(&guest.summed_area(), guest.whole_rect(), COARSE);
    let views = dihedral(&whole, COARSE);
    let mut best: Vec<(f32, Placement)> = Vec::with_capacity(top + 1);
    for (turned, windows) in windows.iter().enumerate() {
        for (rect, window) in windows {
            let rect = *rect;
            for view in (0..8).filter(|t| (t / 2) % 2 == turned) {
                let r = dot(window, &views[view]);
                if best.len() < top || r > best[best.len() - 1].0 {
                    best.push((r, Placement { rect, view }));
                    best.sort_by(|a, b| b.0.total_cmp(&a.0));
                    best.truncate(top);
                }
            }
        }
    }
    best
}

/// A placement moved and scaled a little at a time while the correlation at `WINDOW` rises.
fn refine(host: &Fingerprint, guest: &Fingerprint, mut at: Placement) -> Placement {
    let view = dihedral_one(&guest.window(guest.whole_rect(), WINDOW), WINDOW, at.view);
    let score = |rect: [f32; 4]| host.correlation(rect, WINDOW, &view);
    let mut best = score(at.rect);
    let mut step = STEP / 2.0;
    for round in 0..REFINE_ROUNDS {
        let [x, y, w, h] = at.rect;
        let (dx, dy) = (w * step, h * step);
        if dx.min(dy) < MIN_STEP || (round >= ABANDON_AFTER && best < ABANDON_BELOW) {
            break;
        }
        let mut moved = false;
        for (sx, sy, grow) in [
            (-1.0, 0.0, 1.0),
            (1.0, 0.0, 1.0),
            (0.0, -1.0, 1.0),
            (0.0, 1.0, 1.0),
            (0.0, 0.0, 1.0 - step),
            (0.0, 0.0, 1.0 + step),
        ] {
            let (nw, nh) = (w * grow, h * grow);
            let rect = [
                x + sx * dx + (w - nw) / 2.0,
                y + sy * dy + (h - nh) / 2.0,
                nw,
                nh,
            ];
            let r = score(rect);
            if r > best {
                (best, at.rect, moved) = (r, rect, true);
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    at
}

/// Pearson's r of the placement at `FINAL × FINAL`, the best of: every pixel, a band of rows
/// along the top or bottom edge left out, a band of columns along the left or right edge left
/// out ([`trimmed`]): what a caption bar, a letterbox or a strip of interface covers does not
/// count, while two different pictures still disagree over most of the window. Where one
/// picture is the other with a mark drawn across it (a watermark, a caption stamped inside
/// the picture: [`overlay_rows`]), also without the mark's rows. A small guest shrunk from its
/// window is also scored with coarser detail ([`SHRUNK_GUEST`]).
fn final_score(host: &Fingerprint, guest: &Fingerprint, at: Placement) -> f32 {
    let host_side = at.rect[2].min(at.rect[3]);
    let guest_side = guest.width.min(guest.height) as f32;
    // No finer than the smaller picture holds: an upscaled thumbnail has no detail to match.
    let n = (host_side.min(guest_side) as usize).clamp(MIN_FINAL, FINAL);
    let host_at = |n| host.sample_beside(at.rect, n, guest_side);
    let guest_at = |n| {
        dihedral_one(
            &guest.sample_beside(guest.whole_rect(), n, host_side),
            n,
            at.view,
        )
    };
    let grey = (host_at(FINAL), guest_at(FINAL));
    let covered = at.rect[2] * at.rect[3] / (host.width * host.height) as f32;
    let mark = if covered >= MARK_MIN_COVER {
        overlay_rows(&grey.0, &grey.1, FINAL)
    } else {
        None
    };
    let grey_r = robust_r(&grey.0, &grey.1, FINAL);
    // The mark with the grey levels' r without its rows.
    let mark = mark.map(|m| {
        let grey_r = r_without(&grey.0, &grey.1, FINAL, m.rows(FINAL));
        (m, grey_r)
    });
    let score_at = |n: usize| {
        let edges = (detail(&host_at(n), n), detail(&guest_at(n), n));
        let score = (grey_r + robust_r(&edges.0, &edges.1, n)) / 2.0;
        match &mark {
            Some((mark, grey_r)) => {
                score.max((grey_r + r_without(&edges.0, &edges.1, n, mark.rows(n))) / 2.0)
            }
            None => score,
        }
    };
    // A small copy that lost pixels to its window (shrunk, then recompressed) is also scored
    // with its detail at half the smaller picture's side: JPEG's blocks, a fifth of such a
    // picture across, leave little of its own pixels' detail.
    let area_side = |f: &Fingerprint| ((f.width * f.height) as f32).sqrt();
    let smallest = area_side(host).min(area_side(guest));
    let coarser = ((smallest * COARSER_DETAIL) as usize).clamp(MIN_FINAL, FINAL);
    if coarser < n && guest_side <= SHRUNK_GUEST * host_side {
        score_at(n).max(score_at(coarser))
    } else {
        score_at(n)
    }
}

/// Each value less the mean of its 3 × 3 neighbourhood: the edges and texture of a square
/// `n × n` window, without its shading.
fn detail(values: &[f32], n: usize) -> Vec<f32> {
    let n = n as isize;
    let at = |x: isize, y: isize| values[(y.clamp(0, n - 1) * n + x.clamp(0, n - 1)) as usize];
    (0..n * n)
        .map(|i| {
            let (x, y) = (i % n, i / n);
            let mut sum = 0.0;
            for dy in -1..=1 {
                for dx in -1..=1 {
                    sum += at(x + dx, y + dy);
                }
            }
            at(x, y) - sum / 9.0
        })
        .collect()
}

/// The best of r over every pixel and r without an edge's band of rows or columns, of the
/// `n × n` windows `a` and `b`.
fn robust_r(a: &[f32], b: &[f32], n: usize) -> f32 {
    let (mut za, mut zb) = (a.to_vec(), b.to_vec());
    normalise(&mut za);
    normalise(&mut zb);
    let whole = dot(&za, &zb);
    let by_row = trimmed(a, b, &za, &zb, n, |i| i / n);
    let by_column = trimmed(a, b, &za, &zb, n, |i| i % n);
    whole.max(by_row).max(by_column)
}

/// r of `a` and `b` without a band of a fifth of their lines (`line_of` each pixel) along one
/// edge: the first lines or the last, whichever band's normalised values `za`, `zb` differ
/// more. A caption bar, a caption, a strip of interface or a border lies along an edge; the
/// worst lines wherever they lie would also leave out what tells two shots of one scene
/// apart (the fingers of one hand against one wall, a fifth of the columns in the middle).
fn trimmed(
    a: &[f32],
    b: &[f32],
    za: &[f32],
    zb: &[f32],
    n: usize,
    line_of: impl Fn(usize) -> usize,
) -> f32 {
    let mut misfit = vec![0f32; n];
    for i in 0..n * n {
        misfit[line_of(i)] += (za[i] - zb[i]).powi(2);
    }
    let band = n / TRIM_SHARE;
    let first: f32 = misfit[..band].iter().sum();
    let last: f32 = misfit[n - band..].iter().sum();
    let left_out = if first >= last { 0..band } else { n - band..n };
    r_without_pixels(a, b, |i| left_out.contains(&line_of(i)))
}

/// r of two `n × n` windows without the rows `left_out`.
fn r_without(a: &[f32], b: &[f32], n: usize, left_out: Range<usize>) -> f32 {
    r_without_pixels(a, b, |i| left_out.contains(&(i / n)))
}

/// r of `a` and `b` without the pixels `left_out` names (by their place in the window).
fn r_without_pixels(a: &[f32], b: &[f32], left_out: impl Fn(usize) -> bool) -> f32 {
    let (mut ka, mut kb): (Vec<f32>, Vec<f32>) = (0..a.len())
        .filter(|&i| !left_out(i))
        .map(|i| (a[i], b[i]))
        .unzip();
    normalise(&mut ka);
    normalise(&mut kb);
    dot(&ka, &kb)
}

/// A mark drawn across one picture: a band of rows, as shares of the height.
struct Mark {
    from: f32,
    to: f32,
}

impl Mark {
    /// The rows of an `n`-row window the mark covers, any row it touches included.
    fn rows(&self, n: usize) -> Range<usize> {
        let start = (self.from * n as f32).floor() as usize;
        let end = ((self.to * n as f32).ceil() as usize).min(n);
        start..end
    }
}

/// The band of rows where one grey window `b` (`n × n`) is the other, `a`, with something
/// drawn over it, if there is one: a band of 1 / `MARK_SHARE` of the rows, not along an edge
/// (an edge's band is [`trimmed`]'s), whose normalised difference leans to one sign, its sum
/// at least `MARK_LEAN` of the sum of its size. A watermark or a stamped caption is drawn
/// lighter (or darker) than what it covers wherever it covers it; where two shots of one
/// scene differ, the subject moved, and its edge lies darker on one side and lighter on the
/// other. On the second draw of the extended copy set, leaving out the worst band of rows
/// wherever it lay, without this test, let 41 more wrong pairs pass (shots of one sitting);
/// with it, none (docs/DUPS.md, "Watermarks, logos and captions stamped inside the picture").
fn overlay_rows(a: &[f32], b: &[f32], n: usize) -> Option<Mark> {
    let (mut za, mut zb) = (a.to_vec(), b.to_vec());
    normalise(&mut za);
    normalise(&mut zb);
    let (mut lean, mut size) = (vec![0f32; n], vec![0f32; n]);
    for i in 0..n * n {
        let difference = zb[i] - za[i];
        lean[i / n] += difference;
        size[i / n] += difference.abs();
    }
    let width = (n / MARK_SHARE).max(1);
    let sum = |v: &[f32], start: usize| v[start..start + width].iter().sum::<f32>();
    let start = (1..n.saturating_sub(width))
        .max_by(|&x, &y| sum(&lean, x).abs().total_cmp(&sum(&lean, y).abs()))?;
    let (lean, size) = (sum(&lean, start).abs(), sum(&size, start));
    (size > 0.0 && lean >= MARK_LEAN * size).then(|| Mark {
        from: start as f32 / n as f32,
        to: (start + width) as f32 / n as f32,
    })
}

/// The whole part of a coordinate that is never negative: `floor` without its call. On the
/// x86-64 baseline (no SSE4.1 rounding instruction) `f32::floor` and `fract` are calls into
/// the software maths library, which the window sampling made for every column and row.
fn whole_part(v: f32) -> usize {
    debug_assert!(v >= 0.0);
    v as usize
}

/// Zero mean and unit norm in place; all zero when the values barely vary.
fn normalise(values: &mut [f32]) {
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let norm = values
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum::<f32>()
        .sqrt();
    if norm / n.sqrt() < FLAT {
        values.fill(0.0);
    } else {
        values.iter_mut().for_each(|v| *v = (*v - mean) / norm);
    }
}

/// The eight flips and quarter turns of a square `n × n` window.
fn dihedral(window: &[f32], n: usize) -> [Window; 8] {
    std::array::from_fn(|t| dihedral_one(window, n, t))
}

/// Flip or turn `t` (`turns * 2 + mirrored`) of a square `n × n` window.
fn dihedral_one(window: &[f32], n: usize, t: usize) -> Window {
    let mut out = vec![0.0; n * n];
    for y in 0..n {
        for x in 0..n {
            let (mut sx, mut sy) = if t & 1 == 1 { (n - 1 - x, y) } else { (x, y) };
            for _ in 0..t / 2 {
                (sx, sy) = (sy, n - 1 - sx);
            }
            out[y * n + x] = window[sy * n + sx];
        }
    }
    out
}

/// The copy score of two images, in -1..=1: the best final score of either image placed over
/// the other (see [`Windows::match_whole`]). Once the score reaches `enough` the search stops.
pub fn copy_score(a: &Fingerprint, b: &Fingerprint, enough: f32) -> f32 {
    let first = a.windows().match_whole(b, enough);
    if first >= enough {
        first
    } else {
        first.max(b.windows().match_whole(a, enough))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> DynamicImage {
        image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/signdigits-0/IMG_1209.jpg"
        ))
        .unwrap()
    }

    /// A 64-pixel Tiny-ImageNet train photo of `tests/fixtures/tinyimagenet`, and its path.
    fn tiny_imagenet(name: &str) -> (std::path::PathBuf, DynamicImage) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tinyimagenet")
            .join(name);
        let img = image::open(&file).unwrap();
        (file, img)
    }

    fn score(a: &DynamicImage, b: &DynamicImage) -> f32 {
        copy_score(
            &Fingerprint::of_image(a),
            &Fingerprint::of_image(b),
            f32::INFINITY,
        )
    }

    /// The picture with a dark bar over its bottom eighth, light marks on it.
    fn caption_bar(img: &DynamicImage) -> DynamicImage {
        let mut rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        for y in h - h / 8..h {
            for x in 0..w {
                let mark = (x / 7 + y / 5) % 3 == 0;
                rgb.put_pixel(x, y, image::Rgb(if mark { [240; 3] } else { [20; 3] }));
            }
        }
        DynamicImage::ImageRgb8(rgb)
    }

    /// The picture at two thirds of its size on a white screen twice as tall, with grey bars
    /// above and below it.
    fn on_screen(img: &DynamicImage) -> DynamicImage {
        let (w, h) = (img.width() * 2 / 3, img.height() * 2 / 3);
        let mut screen = image::RgbImage::from_pixel(w + 20, h * 2, image::Rgb([255; 3]));
        for y in (10..h / 3).chain(h * 5 / 3..h * 2 - 10) {
            for x in 10..w {
                screen.put_pixel(x, y, image::Rgb([128; 3]));
            }
        }
        let small = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
        image::imageops::overlay(&mut screen, &small.to_rgb8(), 10, i64::from(h / 2));
        DynamicImage::ImageRgb8(screen)
    }

    #[test]
    fn copies_score_high_and_other_photos_low() {
        let img = photo();
        let (w, h) = (img.width(), img.height());
        let crop = img.crop_imm(w / 10, h / 8, w * 84 / 100, h * 84 / 100);
        for (name, copy) in [
            ("itself", img.clone()),
            (
                "half size",
                img.resize(w / 2, h / 2, image::imageops::FilterType::Triangle),
            ),
            ("mirrored", img.fliph()),
            ("turned", img.rotate90()),
            ("brighter", img.brighten(30)),
            ("cropped to 70%", crop),
            (
                "cropped to 45%",
                img.crop_imm(w / 5, h / 6, w * 67 / 100, h * 67 / 100),
            ),
            ("under a caption bar", caption_bar(&img)),
            ("inside a screen", on_screen(&img)),
        ] {
            let s = score(&img, &copy);
            assert!(
                s >= crate::pipeline::dups::DEFAULT_COPY_SCORE,
                "{name}: {s}"
            );
        }
        // Another photo of the same sign, same hand, same wall: close in embedding, not a copy.
        let other = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/signdigits-0/IMG_1260.jpg"
        ))
        .unwrap();
        let s = score(&img, &other);
        assert!(s < 0.9, "another photo of the same sign: {s}");
    }

    /// Exact crops to about half the area of small photos (73 of 100 pixels a side), wherever
    /// they were cut: the refinement takes each from its coarse placement, up to half a grid
    /// step and a scale off, to its place.
    #[test]
    fn exact_crops_of_small_photos_find_their_place() {
        // One photo of each sign, named: which file a folder lists first depends on the file
        // system. (The other photo of sign 1, IMG_1159, cropped at its corner scores 0.941: a
        // copy at the default copy score, under this test's bar.)
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/photos");
        for name in [
            "signdigits-0/IMG_1260.jpg",
            "signdigits-1/IMG_1261.jpg",
            "signdigits-2/IMG_1160.jpg",
            "signdigits-3/IMG_1212.jpg",
            "signdigits-4/IMG_1316.jpg",
            "signdigits-5/IMG_1163.jpg",
            "signdigits-6/IMG_1318.jpg",
            "signdigits-7/IMG_1165.jpg",
            "signdigits-8/IMG_1310.jpg",
            "signdigits-9/IMG_1168.jpg",
        ] {
            let file = std::path::Path::new(dir).join(name);
            let img = image::open(&file).unwrap();
            let side = img.width().min(img.height()) * 73 / 100;
            let (free_x, free_y) = (img.width() - side, img.height() - side);
            for (fx, fy) in [(0, 0), (1, 1), (1, 3), (3, 1), (2, 2), (5, 4)] {
                let (x, y) = (free_x * fx / 5, free_y * fy / 5);
                let s = score(&img, &img.crop_imm(x, y, side, side));
                assert!(
                    s >= 0.95,
                    "{}: a {side}-pixel crop at ({x}, {y}) scores {s}",
                    file.display()
                );
            }
        }
    }

    /// 64-pixel photos (Tiny-ImageNet train photos of a scorpion, a butterfly, an ox and a
    /// gazelle) resized to about half: sampled bilinearly at every second pixel, the original
    /// keeps edges the smoother copy lost, and these scored 0.88-0.93.
    #[test]
    fn small_photos_resized_to_half_are_copies() {
        for name in [
            "n01770393_101.JPEG",
            "n02279972_102.JPEG",
            "n02403003_102.JPEG",
            "n02423022_1.JPEG",
        ] {
            let (file, img) = tiny_imagenet(name);
            for side in [33, 36, 40] {
                let copy = img.resize_exact(side, side, image::imageops::FilterType::Triangle);
                let s = score(&img, &copy);
                assert!(
                    s >= crate::pipeline::dups::DEFAULT_COPY_SCORE,
                    "{}: resized to {side} pixels, scores {s}",
                    file.display()
                );
            }
        }
    }

    /// `img` saved as JPEG at `quality` and decoded again.
    fn recompressed(img: &DynamicImage, quality: u8) -> DynamicImage {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
            .encode_image(&img.to_rgb8())
            .unwrap();
        image::load_from_memory(&bytes).unwrap()
    }

    /// 64-pixel photos turned, cropped to 70% of their area, shrunk to 40 pixels and saved at
    /// JPEG quality 40, as a photo comes back from being shared: copies, their grey levels
    /// matching and the detail of their own pixels lost to JPEG's blocks (these four scored
    /// 0.83-0.89 with the detail at the copy's pixels only; three other fixture photos edited
    /// so still score 0.88-0.91). Another photo, shrunk and recompressed the same way, is not.
    #[test]
    fn small_photos_cropped_shrunk_and_recompressed_are_copies_and_others_are_not() {
        let names = [
            "n02423022_1.JPEG",
            "n02769748_104.JPEG",
            "n03089624_100.JPEG",
            "n07579787_100.JPEG",
        ];
        let shared = |img: &DynamicImage| {
            let cropped = img.rotate90().crop_imm(4, 7, 53, 53);
            recompressed(
                &cropped.resize_exact(40, 40, image::imageops::FilterType::Triangle),
                40,
            )
        };
        for (i, name) in names.iter().enumerate() {
            let (file, img) = tiny_imagenet(name);
            let s = score(&img, &shared(&img));
            assert!(
                s >= crate::pipeline::dups::DEFAULT_COPY_SCORE,
                "{}: shared, scores {s}",
                file.display()
            );
            let (other, other_img) = tiny_imagenet(names[(i + 1) % names.len()]);
            let s = score(&img, &shared(&other_img));
            assert!(
                s < crate::pipeline::dups::DEFAULT_COPY_SCORE,
                "{} and {} shared: {s}",
                file.display(),
                other.display()
            );
        }
    }

    /// Exact crops of 64-pixel photos to about half their area, where the copy set cut them:
    /// found with cell means, where eight bilinear samples across the window, six pixels apart,
    /// let wrong placements outscore the crop's (these scored 0.43, 0.86 and 0.61).
    #[test]
    fn crops_of_64_pixel_photos_to_half_find_their_place() {
        for (name, x, y, side) in [
            ("n03089624_100.JPEG", 2, 3, 49),
            ("n02769748_104.JPEG", 7, 6, 48),
            ("n07579787_100.JPEG", 12, 7, 46),
        ] {
            let (file, img) = tiny_imagenet(name);
            let s = score(&img, &img.crop_imm(x, y, side, side));
            assert!(
                s >= crate::pipeline::dups::DEFAULT_COPY_SCORE,
                "{}: a {side}-pixel crop at ({x}, {y}) scores {s}",
                file.display()
            );
        }
    }

    /// The band left out of the score lies along an edge, where captions, bars and borders
    /// are: the same photo with a sixth of its columns replaced by another shot's scores as a
    /// copy when they are along its left edge, and not when they are in its middle.
    #[test]
    fn only_a_band_along_an_edge_is_left_out() {
        let img = photo().to_rgb8();
        let other = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/signdigits-5/IMG_1163.jpg"
        ))
        .unwrap()
        .resize_exact(
            img.width(),
            img.height(),
            image::imageops::FilterType::Triangle,
        )
        .to_rgb8();
        let band = img.width() / 6;
        let with_band = |from: u32| {
            let mut out = img.clone();
            for y in 0..img.height() {
                for x in from..from + band {
                    out.put_pixel(x, y, *other.get_pixel(x, y));
                }
            }
            DynamicImage::ImageRgb8(out)
        };
        let original = DynamicImage::ImageRgb8(img.clone());
        let needed = crate::pipeline::dups::DEFAULT_COPY_SCORE;
        let edge = score(&original, &with_band(0));
        assert!(edge >= needed, "band along the edge: {edge}");
        let middle = score(&original, &with_band((img.width() - band) / 2));
        assert!(middle < needed, "band in the middle: {middle}");
    }

    /// A line of translucent white text across the middle rows (a watermark) does not keep a
    /// copy from scoring as one; the same rows shifted sideways (a subject that moved there)
    /// still part the two.
    #[test]
    fn a_mark_across_the_middle_is_left_out_but_other_content_there_is_not() {
        let needed = crate::pipeline::dups::DEFAULT_COPY_SCORE;
        let (_, small) = tiny_imagenet("n01770393_101.JPEG");
        for img in [photo(), small] {
            let original = img.to_rgb8();
            let (w, h) = original.dimensions();
            let (top, rows) = (h * 2 / 5, (h / 6).max(7));
            let watermarked = {
                let mut out = original.clone();
                for y in top..top + rows {
                    for x in w / 8..w * 7 / 8 {
                        if (x * 7 / rows + (y - top) * 3) % 5 < 3 {
                            let p = out.get_pixel(x, y).0;
                            let lighter = p.map(|v| (f32::from(v) * 0.4 + 255.0 * 0.6) as u8);
                            out.put_pixel(x, y, image::Rgb(lighter));
                        }
                    }
                }
                DynamicImage::ImageRgb8(out)
            };
            let moved = {
                let mut out = original.clone();
                for y in top..top + rows {
                    for x in 0..w {
                        out.put_pixel(x, y, *original.get_pixel((x + w / 8) % w, y));
                    }
                }
                DynamicImage::ImageRgb8(out)
            };
            let original = DynamicImage::ImageRgb8(original);
            let mark = score(&original, &watermarked);
            assert!(mark >= needed, "{w}x{h}: watermark {mark}");
            let other_rows = score(&original, &moved);
            assert!(other_rows < needed, "{w}x{h}: rows moved {other_rows}");
        }
    }

    /// The one-pass correlation of the refinement is the normalised window's dot product, on
    /// windows of every size and place, a nearly flat one included.
    #[test]
    fn correlation_is_the_windows_dot_product() {
        let host = Fingerprint::of_image(&photo());
        let guest = Fingerprint::of_image(&photo().fliph());
        let view = guest.window(guest.whole_rect(), WINDOW);
        let (w, h) = (host.width as f32, host.height as f32);
        for rect in [
            host.whole_rect(),
            [w * 0.1, h * 0.2, w * 0.6, h * 0.5],
            [w * 0.5, h * 0.5, w * 0.3, h * 0.45],
            [-2.0, -3.0, w + 4.0, h + 1.0],
        ] {
            let expected = dot(&host.window(rect, WINDOW), &view);
            let got = host.correlation(rect, WINDOW, &view);
            assert!(
                (got - expected).abs() < 1e-4,
                "{rect:?}: {got} vs {expected}"
            );
        }
        let nearly_flat = Fingerprint {
            width: 30,
            height: 30,
            grey: (0..900).map(|i| 0.5 + (i % 7) as f32 * 1e-5).collect(),
        };
        assert_eq!(
            nearly_flat.correlation(nearly_flat.whole_rect(), WINDOW, &view),
            0.0
        );
    }

    /// A small image offers no placement under `MIN_FINAL` pixels a side but the whole; a
    /// large one every scale.
    #[test]
    fn small_windows_are_not_placements() {
        let of_side = |side: u32| {
            Fingerprint::of_image(&photo().resize_exact(
                side,
                side,
                image::imageops::FilterType::Triangle,
            ))
        };
        let small = of_side(21).rects(1.0);
        assert!(small
            .iter()
            .all(|r| r[2] >= MIN_FINAL as f32 || r[2] == 21.0));
        assert!(small.len() > 1 && small.iter().any(|r| r[2] < 21.0));
        let sides = |rects: Vec<[f32; 4]>| {
            let mut sides: Vec<u32> = rects.iter().map(|r| r[2].round() as u32).collect();
            sides.dedup();
            sides.len()
        };
        assert_eq!(sides(of_side(96).rects(1.0)), SCALES.len());
    }

    #[test]
    fn dihedral_covers_eight_distinct_views() {
        let window: Window = (0..WINDOW * WINDOW).map(|i| i as f32).collect();
        let views = dihedral(&window, WINDOW);
        for a in 0..8 {
            for b in 0..a {
                assert_ne!(views[a], views[b], "views {a} and {b}");
            }
        }
    }

    #[test]
    fn flat_images() {
        let grey = |v: u8| {
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(40, 30, image::Luma([v])))
        };
        assert_eq!(score(&grey(100), &grey(102)), 1.0);
        assert_eq!(score(&grey(100), &grey(200)), 0.0);
        assert_eq!(score(&grey(100), &photo()), 0.0);
    }
}
