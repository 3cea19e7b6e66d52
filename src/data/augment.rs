//! Training-time views of a preprocessed image: random resized crop, horizontal flip, colour
//! jitter, and the DIM paper's occlusion of the global code's input; all sampled from the
//! caller's seeded RNG so that runs are reproducible.
//!
//! Without augmentation a view is the model-size pixels themselves; with it, crops are read
//! from the cache's finer augmentation source (see [`super::Pixels`]).

use super::cache::Pixels;
use super::preprocess::Preprocess;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How strongly views of one image differ. `Augment::none()` gives the image itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Smallest crop area as a share of the image (1.0 disables cropping).
    pub min_crop: f32,
    pub flip: bool,
    /// Brightness, contrast and saturation jitter strength (0 disables).
    pub jitter: f32,
    /// Chance of turning the view grey.
    pub grey: f32,
}

impl Augment {
    pub fn none() -> Self {
        Augment {
            min_crop: 1.0,
            flip: false,
            jitter: 0.0,
            grey: 0.0,
        }
    }

    pub fn standard() -> Self {
        Augment {
            min_crop: 0.25,
            flip: true,
            jitter: 0.4,
            grey: 0.2,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Augment::none()
    }

    /// Appends one normalised HWC view (`size × size`) of `image` to `out`.
    pub fn view_into(
        &self,
        image: Pixels<'_>,
        preprocess: &Preprocess,
        rng: &mut impl Rng,
        out: &mut Vec<f32>,
    ) {
        if self.is_none() {
            preprocess.normalise_into(image.exact, out);
            return;
        }
        let s = preprocess.size as usize;
        let sf = s as f32;
        // The crop box is drawn in model-size units, then read from the finer source.
        let (rgb, a) = (image.aug, image.aug_size);
        let (af, k) = (a as f32, a as f32 / sf);
        // Crop box in source pixels.
        let (mut cw, mut ch) = (sf, sf);
        if self.min_crop < 1.0 {
            let area = rng.random_range(self.min_crop..=1.0) * sf * sf;
            let log_ratio = rng.random_range((3.0f32 / 4.0).ln()..=(4.0f32 / 3.0).ln());
            let ratio = log_ratio.exp();
            cw = (area * ratio).sqrt().min(sf);
            ch = (area / ratio).sqrt().min(sf);
        }
        let x0 = rng.random_range(0.0..=(sf - cw));
        let y0 = rng.random_range(0.0..=(sf - ch));
        let flip = self.flip && rng.random_bool(0.5);
        let j = self.jitter;
        let factor = |rng: &mut dyn rand::RngCore| {
            if j > 0.0 {
                rng.random_range((1.0 - j)..=(1.0 + j))
            } else {
                1.0
            }
        };
        let brightness = factor(rng);
        let contrast = factor(rng);
        let saturation = factor(rng);
        let grey = self.grey > 0.0 && rng.random_bool(self.grey as f64);

        let mut pixels = vec![[0f32; 3]; s * s];
        let mut mean_luma = 0.0;
        for oy in 0..s {
            let sy = ((y0 + (oy as f32 + 0.5) * ch / sf) * k - 0.5).clamp(0.0, af - 1.0);
            let (y_lo, ty) = (sy.floor() as usize, sy.fract());
            let y_hi = (y_lo + 1).min(a - 1);
            for ox in 0..s {
                let ox_src = if flip { s - 1 - ox } else { ox };
                let sx = ((x0 + (ox_src as f32 + 0.5) * cw / sf) * k - 0.5).clamp(0.0, af - 1.0);
                let (x_lo, tx) = (sx.floor() as usize, sx.fract());
                let x_hi = (x_lo + 1).min(a - 1);
                let mut px = [0f32; 3];
                for (c, value) in px.iter_mut().enumerate() {
                    let at = |y: usize, x: usize| rgb[(y * a + x) * 3 + c] as f32 / 255.0;
                    let top = at(y_lo, x_lo) * (1.0 - tx) + at(y_lo, x_hi) * tx;
                    let bottom = at(y_hi, x_lo) * (1.0 - tx) + at(y_hi, x_hi) * tx;
                    *value = (top * (1.0 - ty) + bottom * ty) * brightness;
                }
                mean_luma += luma(&px);
                pixels[oy * s + ox] = px;
            }
        }
        mean_luma /= (s * s) as f32;
        for px in pixels.iter_mut() {
            let l = luma(px);
            for v in px.iter_mut() {
                let saturated = if grey { l } else { l + (*v - l) * saturation };
                *v = (mean_luma + (saturated - mean_luma) * contrast).clamp(0.0, 1.0);
            }
        }
        let inv_std = preprocess.std.map(|s| 1.0 / s);
        out.extend(
            pixels
                .iter()
                .flat_map(|px| [0, 1, 2].map(|c| (px[c] - preprocess.mean[c]) * inv_std[c])),
        );
    }
}

/// Hides a random square of side `share × size` (at least one pixel) of a normalised HWC view
/// (`size × size × 3`) by setting it to 0, which is the dataset's mean colour after
/// normalisation.
pub fn occlude(view: &mut [f32], size: usize, share: f32, rng: &mut impl Rng) {
    let side = ((share * size as f32).round() as usize).clamp(1, size);
    let x0 = rng.random_range(0..=size - side);
    let y0 = rng.random_range(0..=size - side);
    for y in y0..y0 + side {
        view[(y * size + x0) * 3..(y * size + x0 + side) * 3].fill(0.0);
    }
}

fn luma(px: &[f32; 3]) -> f32 {
    0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Exactly one square of the asked side is zeroed, in all three channels, and it moves
    /// from draw to draw.
    #[test]
    fn occlusion_hides_one_square_of_the_asked_side() {
        let size = 8;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut corners = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut view = vec![1.0f32; size * size * 3];
            occlude(&mut view, size, 0.5, &mut rng);
            let hidden: Vec<(usize, usize)> = (0..size * size)
                .filter(|&p| view[p * 3..p * 3 + 3].iter().all(|&v| v == 0.0))
                .map(|p| (p / size, p % size))
                .collect();
            assert_eq!(hidden.len(), 16, "a 4×4 square");
            assert_eq!(view.iter().filter(|&&v| v == 0.0).count(), 16 * 3);
            let (y0, x0) = hidden[0];
            assert!(hidden
                .iter()
                .all(|&(y, x)| (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x)));
            corners.insert((y0, x0));
        }
        assert!(corners.len() > 3, "{corners:?}");
    }
}
