//! Decoding one file into pixels: format sniffed from the content, EXIF orientation applied,
//! size limits enforced so that a decompression bomb is refused instead of filling memory.

use super::Preprocess;
use crate::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::path::Path;

/// Largest accepted side, in pixels.
const MAX_SIDE: u32 = 20_000;
/// Largest buffer a decoder may allocate.
const MAX_ALLOC: u64 = 512 << 20;

/// Decodes an image file of any supported format.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let fail = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    if file.metadata().is_ok_and(|m| m.len() == 0) {
        return Err(fail("empty file".into()));
    }
    // No format from the file name: only the content decides.
    let reader = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail("not an image in a supported format".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Decodes and preprocesses a file into the model's input pixels (RGB8, `size × size`, HWC).
pub fn load(path: &Path, preprocess: &Preprocess) -> Result<Vec<u8>> {
    Ok(preprocess.to_rgb(&decode(path)?))
}
