//! The pixel check of a candidate pair: is one image a copy of the other, up to a resize,
//! recompression, colour change, caption, flip, 90-degree turn or a crop down to about 60% of
//! the area?
//!
//! Embedding cosine finds candidates, but it also calls different photos of one scene close
//! (one person, one hand against one wall). A copy shares its pixels: after the right alignment
//! the two grey images correlate almost perfectly, while two shots of one scene do not. The
//! check tries one image whole against windows of the other (side 1, 0.92, 0.84 and 0.77 of
//! it, 5 × 5 offsets each), under the eight flips and quarter turns, both ways round, and
//! returns the best normalised cross-correlation (Pearson's r of the grey levels, so a change of
//! brightness or contrast does not matter). The grid and sizes were measured on the
//! copy-detection set of `examples/dups_bench.rs` (docs/DUPS.md).

use crate::data;
use crate::error::Result;
use crate::index::dot;
use image::DynamicImage;
use std::path::Path;

/// A fingerprint is the image shrunk to fit a box of this side (aspect kept).
pub const FINGERPRINT_SIDE: u32 = 64;
/// Windows are resampled to `WINDOW × WINDOW` before they are compared, and first to
/// `COARSE × COARSE`: a pair whose best coarse correlation is short of the score needed by more
/// than `COARSE_MARGIN` is not compared finely (most candidate pairs; the margin was measured
/// to change no verdict on the benchmark).
const WINDOW: usize = 24;
const COARSE: usize = 8;
const COARSE_MARGIN: f32 = 0.12;
/// Window sides relative to the image's, and offsets per axis for the smaller ones.
const SCALES: [f32; 4] = [1.0, 0.92, 0.84, 0.77];
const STEPS: usize = 5;
/// Grey levels (0–1) varying less than this are "flat": no pattern to correlate.
const FLAT: f32 = 1e-3;

/// An image as the check sees it: grey levels (0–1) in a box of [`FINGERPRINT_SIDE`].
#[derive(Debug, Clone)]
pub struct Fingerprint {
    width: usize,
    height: usize,
    grey: Vec<f32>,
}

/// A window resampled to `WINDOW × WINDOW`, zero-mean and unit-norm (all zero when flat).
type Window = Vec<f32>;

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

    /// Decodes a file into its fingerprint (a big JPEG at a reduced DCT scale).
    pub fn load(path: &Path) -> Result<Fingerprint> {
        Ok(Fingerprint::of_image(&data::thumbnail(
            path,
            FINGERPRINT_SIDE,
        )?))
    }

    /// Mean grey level.
    fn mean(&self) -> f32 {
        self.grey.iter().sum::<f32>() / self.grey.len().max(1) as f32
    }

    /// The rectangle (x, y, w, h), in pixels, resampled bilinearly to a normalised window of
    /// `n × n`.
    fn window(&self, x: f32, y: f32, w: f32, h: f32, n: usize) -> Window {
        let mut out = Vec::with_capacity(n * n);
        let (max_x, max_y) = ((self.width - 1) as f32, (self.height - 1) as f32);
        for j in 0..n {
            // Sample at the centre of each output cell.
            let sy = (y + (j as f32 + 0.5) * h / n as f32 - 0.5).clamp(0.0, max_y);
            let (y0, fy) = (sy.floor() as usize, sy.fract());
            let y1 = (y0 + 1).min(self.height - 1);
            for i in 0..n {
                let sx = (x + (i as f32 + 0.5) * w / n as f32 - 0.5).clamp(0.0, max_x);
                let (x0, fx) = (sx.floor() as usize, sx.fract());
                let x1 = (x0 + 1).min(self.width - 1);
                let at = |xx: usize, yy: usize| self.grey[yy * self.width + xx];
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        normalise(&mut out);
        out
    }

    /// The whole image as one window of `n × n`.
    fn whole(&self, n: usize) -> Window {
        self.window(0.0, 0.0, self.width as f32, self.height as f32, n)
    }

    /// Every window the check aligns another image with: the whole image, then each smaller
    /// side on a grid of offsets.
    pub fn windows(&self) -> Windows<'_> {
        Windows {
            image: self,
            coarse: self.aligned(COARSE),
            fine: std::cell::OnceCell::new(),
            flat: self.is_flat(),
            mean: self.mean(),
        }
    }

    /// The image whole, then each smaller side on a grid of offsets, as `n × n` windows.
    fn aligned(&self, n: usize) -> Vec<Window> {
        let (width, height) = (self.width as f32, self.height as f32);
        let mut out = Vec::with_capacity(1 + (SCALES.len() - 1) * STEPS * STEPS);
        for scale in SCALES {
            let (w, h) = (width * scale, height * scale);
            let steps = if scale < 1.0 { STEPS } else { 1 };
            for yi in 0..steps {
                for xi in 0..steps {
                    let along = |i: usize| i as f32 / (steps.max(2) - 1) as f32;
                    let (x, y) = ((width - w) * along(xi), (height - h) * along(yi));
                    out.push(self.window(x, y, w, h, n));
                }
            }
        }
        out
    }

    fn is_flat(&self) -> bool {
        self.whole(WINDOW).iter().all(|&v| v == 0.0)
    }
}

/// One image's windows, made once and compared with many others (the fine ones only when a
/// comparison gets past the coarse ones).
pub struct Windows<'a> {
    image: &'a Fingerprint,
    coarse: Vec<Window>,
    fine: std::cell::OnceCell<Vec<Window>>,
    flat: bool,
    mean: f32,
}

impl Windows<'_> {
    /// How well `other`, whole, matches its best-aligned window here (under the eight flips
    /// and turns): the best correlation; or, when `enough` is finite, a value of at least
    /// `enough` once one reaches it, or the coarse estimate when that is well short of it.
    /// Two flat images of about one grey level score 1, a flat one against a patterned one 0.
    pub fn match_whole(&self, other: &Fingerprint, enough: f32) -> f32 {
        match (self.flat, other.is_flat()) {
            (true, true) if (self.mean - other.mean()).abs() < 8.0 / 255.0 => 1.0,
            (true, _) | (_, true) => 0.0,
            (false, false) => {
                if enough.is_finite() {
                    let views = dihedral(&other.whole(COARSE), COARSE);
                    let coarse = best_of(&self.coarse, &views, f32::INFINITY);
                    if coarse < enough - COARSE_MARGIN {
                        return coarse;
                    }
                }
                let fine = self.fine.get_or_init(|| self.image.aligned(WINDOW));
                best_of(fine, &dihedral(&other.whole(WINDOW), WINDOW), enough)
            }
        }
    }
}

/// The best correlation of any window with any view; stops once it reaches `enough`.
fn best_of(windows: &[Window], views: &[Window; 8], enough: f32) -> f32 {
    let mut best = -1.0f32;
    for window in windows {
        for view in views {
            best = best.max(dot(window, view));
            if best >= enough {
                return best;
            }
        }
    }
    best
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
    std::array::from_fn(|t| {
        let mut out = vec![0.0; n * n];
        for y in 0..n {
            for x in 0..n {
                // t = turns * 2 + mirrored.
                let (mut sx, mut sy) = if t & 1 == 1 { (n - 1 - x, y) } else { (x, y) };
                for _ in 0..t / 2 {
                    (sx, sy) = (sy, n - 1 - sx);
                }
                out[y * n + x] = window[sy * n + sx];
            }
        }
        out
    })
}

/// The copy score of two images, in -1..=1: the best correlation of their grey levels over
/// the alignments above, either image as the crop of the other (see [`Windows::match_whole`]).
/// Once the score reaches `enough` the search stops (the answer is then at least `enough`).
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

    fn score(a: &DynamicImage, b: &DynamicImage) -> f32 {
        copy_score(&Fingerprint::of_image(a), &Fingerprint::of_image(b), 2.0)
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
        ] {
            let s = score(&img, &copy);
            assert!(s > 0.95, "{name}: {s}");
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
