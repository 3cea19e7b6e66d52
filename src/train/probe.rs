//! Evidence without labels of whether training helped: how well an image's neighbourhood
//! survives an augmentation of the image.
//!
//! A fixed sample of the training images is embedded twice, as preprocessed (what `index`
//! stores) and once through a seeded random augmentation (a crop, a flip, a colour change).
//! For each image we ask whether the augmented view still finds the image itself first
//! (`self_top1`) and how many of the image's 9 nearest neighbours the augmented view shares
//! (`survival_at_9`). A model whose neighbours are about content, not about the exact
//! pixels, scores high on both; the sample and the augmentations are the same before and after
//! training, so the two scores compare.

use crate::data::{Augment, PixelSet, Preprocess};
use crate::error::Result;
use crate::model::Encoder;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Images in the probe sample (all of them when the folder holds fewer).
pub const PROBE_IMAGES: usize = 500;
/// Neighbours compared.
pub const PROBE_K: usize = 9;
const PROBE_SEED: u64 = 0x05EE_D0F9_A0BE;

/// The probe's two scores, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProbeScore {
    /// Share of augmented views whose nearest image (of the sample, as preprocessed) is the
    /// image they came from.
    pub self_top1: f64,
    /// Mean share of an image's 9 nearest neighbours that are also among its augmented
    /// view's 9 nearest (the image itself left out of both).
    pub survival_at_9: f64,
    pub images: usize,
}

/// The fixed sample and its views: made once per run, scored for any encoder.
pub struct Probe {
    /// Normalised HWC inputs: the sample as preprocessed, then its augmented views.
    clean: Vec<f32>,
    augmented: Vec<f32>,
    images: usize,
    size: usize,
}

impl Probe {
    /// The sample: [`PROBE_IMAGES`] evenly spaced images of `pixels`, each with one view
    /// drawn by `augment` from a fixed seed.
    pub fn new(pixels: &PixelSet, preprocess: &Preprocess, augment: &Augment) -> Self {
        let n = pixels.len().min(PROBE_IMAGES);
        let mut rng = ChaCha8Rng::seed_from_u64(PROBE_SEED);
        let (mut clean, mut augmented) = (Vec::new(), Vec::new());
        for j in 0..n {
            let image = pixels.get(j * pixels.len() / n);
            Augment::none().view_into(image, preprocess, &mut rng, &mut clean);
            augment.view_into(image, preprocess, &mut rng, &mut augmented);
        }
        Probe {
            clean,
            augmented,
            images: n,
            size: preprocess.size as usize,
        }
    }

    /// How `encoder` (its search embedding) does on the sample.
    pub fn score(&self, encoder: &Encoder, device: &Device) -> Result<ProbeScore> {
        let n = self.images;
        if n < 2 {
            return Ok(ProbeScore {
                images: n,
                ..ProbeScore::default()
            });
        }
        let clean = self.embed(encoder, &self.clean, device)?;
        let augmented = self.embed(encoder, &self.augmented, device)?;
        let k = PROBE_K.min(n - 1);
        let (mut found, mut shared) = (0usize, 0usize);
        for i in 0..n {
            let from_clean = nearest(&clean[i], &clean, i, k);
            let from_view = nearest(&augmented[i], &clean, usize::MAX, k + 1);
            if from_view.first() == Some(&i) {
                found += 1;
            }
            let view_neighbours: Vec<usize> =
                from_view.into_iter().filter(|&j| j != i).take(k).collect();
            shared += from_clean
                .iter()
                .filter(|j| view_neighbours.contains(j))
                .count();
        }
        Ok(ProbeScore {
            self_top1: found as f64 / n as f64,
            survival_at_9: shared as f64 / (n * k) as f64,
            images: n,
        })
    }

    /// L2-normalised embeddings of normalised inputs, in batches of 128.
    fn embed(&self, encoder: &Encoder, inputs: &[f32], device: &Device) -> Result<Vec<Vec<f32>>> {
        let per_image = self.size * self.size * 3;
        let mut out = Vec::with_capacity(self.images);
        for chunk in inputs.chunks(128 * per_image) {
            let rows = chunk.len() / per_image;
            let x = Tensor::from_slice(chunk, (rows, self.size, self.size, 3), device)?;
            let e = encoder.embed(&x)?;
            let norm = e.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            out.extend(e.broadcast_div(&norm)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

/// The `k` rows of `rows` nearest to `query` by dot product, best first, `skip` left out.
fn nearest(query: &[f32], rows: &[Vec<f32>], skip: usize, k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = rows
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != skip)
        .map(|(j, r)| (query.iter().zip(r).map(|(a, b)| a * b).sum::<f32>(), j))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, j)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn nearest_ranks_by_dot_product_and_skips() {
        let rows = vec![
            vec![1.0, 0.0],
            vec![0.8, 0.6],
            vec![0.0, 1.0],
            vec![0.6, 0.8],
        ];
        assert_eq!(nearest(&[1.0, 0.0], &rows, usize::MAX, 2), vec![0, 1]);
        assert_eq!(nearest(&[1.0, 0.0], &rows, 0, 2), vec![1, 3]);
        assert_eq!(nearest(&[0.0, 1.0], &rows, 2, 3), vec![3, 1, 0]);
    }
}
