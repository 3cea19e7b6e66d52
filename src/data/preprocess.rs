//! The one preprocessing definition, recorded in each model's config so that training,
//! indexing and querying see identical pixels.

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage};
use serde::{Deserialize, Serialize};

/// Resize the shorter side to `size`, crop the centre square, then normalise each channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Preprocess {
    fn default() -> Self {
        // CIFAR-10's channel statistics; close to those of photos in general.
        Preprocess {
            size: 32,
            mean: [0.4914, 0.4822, 0.4465],
            std: [0.2470, 0.2435, 0.2616],
        }
    }
}

impl Preprocess {
    /// RGB8 pixels, `size × size × 3`, row-major (HWC). Greyscale, alpha and 16-bit become RGB8.
    pub fn to_rgb(&self, image: &DynamicImage) -> Vec<u8> {
        square_rgb(image, self.size)
    }

    /// Normalises HWC RGB8 pixels into HWC floats, appending to `out`.
    pub fn normalise_into(&self, rgb: &[u8], out: &mut Vec<f32>) {
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        out.extend(
            rgb.chunks_exact(3)
                .flat_map(|px| [0, 1, 2].map(|c| px[c] as f32 * scale[c] - shift[c])),
        );
    }

    /// A `(B, size, size, 3)` channels-last tensor from preprocessed pixel buffers.
    pub fn to_tensor<'a>(
        &self,
        images: impl ExactSizeIterator<Item = &'a [u8]>,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = images.len();
        let s = self.size as usize;
        let mut data = Vec::with_capacity(n * 3 * s * s);
        for rgb in images {
            self.normalise_into(rgb, &mut data);
        }
        Tensor::from_vec(data, (n, s, s, 3), device)
    }
}

/// The centre square of `image`, its shorter side resized to `size`: RGB8, `size × size × 3`, HWC.
pub(crate) fn square_rgb(image: &DynamicImage, size: u32) -> Vec<u8> {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let short = w.min(h);
    // A box-filtered thumbnail first keeps big photos cheap; the final triangle filter then
    // works from at most twice the target size.
    let image = if short > 4 * size {
        let scale = (2 * size) as f64 / short as f64;
        let tw = ((w as f64 * scale).round() as u32).max(size);
        let th = ((h as f64 * scale).round() as u32).max(size);
        image.thumbnail_exact(tw, th)
    } else {
        image.clone()
    };
    image
        .resize_to_fill(size, size, FilterType::Triangle)
        .to_rgb8()
        .into_raw()
}
