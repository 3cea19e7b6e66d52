//! Decoding one file into pixels: format sniffed from the content, EXIF orientation applied,
//! size limits enforced so that a decompression bomb is refused instead of filling memory.
//!
//! The limit is a budget in bytes, [`DECODE_BUDGET`], checked against what the decoder says
//! the pixels will take before their buffer is allocated, and handed to the decoder for what it
//! allocates besides (a GIF frame that does not cover the whole screen, PNG's own buffers), so
//! that it holds for every format whatever its header claims: a small file that unpacks to
//! gigabytes is refused, with the size it asked for.

use super::preprocess::Preprocess;
use crate::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::path::Path;

/// Largest accepted side, in pixels.
const MAX_SIDE: u32 = 20_000;
/// Bytes one decode may allocate: the decoded pixels and the decoder's own buffers together
/// (256 MiB: an 89-megapixel RGB image, a 67-megapixel RGBA one).
pub const DECODE_BUDGET: u64 = 256 << 20;
/// Largest file read into memory to be decoded.
const MAX_FILE: u64 = 512 << 20;

/// The limits every decode runs under.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(DECODE_BUDGET);
    limits
}

/// Decodes an image file of any supported format, at full size.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    decode_scaled(path, None)
}

/// Decodes a file for a model input of `preprocess.size`: like [`decode`], except that a
/// JPEG at least 16 × `size` on its shorter side is decoded at 1/2, 1/4 or 1/8 scale straight
/// from its DCT blocks, keeping that side at least 8 × `size` (256 pixels for 32). The resize
/// to the model size then starts from a box-filtered thumbnail as it would from the full
/// image; a 12-megapixel photo decodes several times faster. Every command loads through
/// here, so training, indexing and querying still see identical pixels.
pub fn decode_for(path: &Path, preprocess: &Preprocess) -> Result<DynamicImage> {
    decode_scaled(path, Some(preprocess.size.saturating_mul(8)))
}

fn decode_scaled(path: &Path, min_short: Option<u32>) -> Result<DynamicImage> {
    let fail = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    if len > MAX_FILE {
        return Err(fail(format!("file of {len} bytes is too large")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut { file }, &mut bytes).map_err(|e| fail(e.to_string()))?;
    decode_bytes(bytes, path, min_short)
}

/// Decodes an image held in memory (an upload); `name` is what errors call it.
fn decode_bytes(bytes: Vec<u8>, name: &Path, min_short: Option<u32>) -> Result<DynamicImage> {
    let fail = |reason: String| Error::Image {
        path: name.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(fail("empty file".into()));
    }
    if bytes.len() as u64 > MAX_FILE {
        return Err(fail(format!("file of {} bytes is too large", bytes.len())));
    }
    if let Some(image) = min_short.and_then(|min| reduced_jpeg(&bytes, min)) {
        return Ok(image);
    }
    // No format from the file name: only the content decides.
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail("not an image in a supported format".into()));
    }
    let mut reader = reader;
    reader.limits(limits());
    let mut decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
    // `into_decoder` checks the sides only: the pixels' buffer is reserved from the budget
    // here, before `from_decoder` allocates it (as `ImageReader::decode` does), and the
    // decoder gets what is left for its own allocations.
    let needed = decoder.total_bytes();
    let mut budget = limits();
    if budget.reserve(needed).is_err() {
        let (w, h) = decoder.dimensions();
        return Err(fail(format!(
            "{w}x{h} pixels would take {} MiB to decode, over the budget of {} MiB",
            needed.div_ceil(1 << 20),
            DECODE_BUDGET >> 20
        )));
    }
    decoder
        .set_limits(budget)
        .map_err(|e| fail(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// A big baseline or progressive RGB or greyscale JPEG decoded at the smallest DCT scale
/// whose shorter side is still at least `min_short`, EXIF orientation applied. `None` for
/// anything else (other formats, small or odd JPEGs, errors): the full decoder then handles
/// it and reports any error in its own words.
fn reduced_jpeg(bytes: &[u8], min_short: u32) -> Option<DynamicImage> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) || min_short == 0 {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let short = w.min(h);
    // In u64: `min_short` comes from the caller's input size (8 × size), which may be large.
    if w.max(h) > MAX_SIDE || u64::from(short) < 2 * u64::from(min_short) {
        return None;
    }
    // The decoder picks the smallest scale that gives at least the requested size.
    let want = |side: u32| {
        u16::try_from((u64::from(side) * u64::from(min_short)).div_ceil(u64::from(short))).ok()
    };
    let (sw, sh) = decoder.scale(want(w)?, want(h)?).ok()?;
    if u32::from(sw.min(sh)) < min_short {
        return None;
    }
    decoder.set_max_decoding_buffer_size(usize::try_from(DECODE_BUDGET).ok()?);
    let pixels = decoder.decode().ok()?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let mut image = match decoder.info()?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            DynamicImage::ImageRgb8(image::RgbImage::from_raw(sw, sh, pixels)?)
        }
        jpeg_decoder::PixelFormat::L8 => {
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(sw, sh, pixels)?)
        }
        _ => return None,
    };
    if let Some(orientation) = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
    {
        image.apply_orientation(orientation);
    }
    Some(image)
}

/// Decodes and preprocesses a file into the model's input pixels (RGB8, `size × size`, HWC).
pub fn load(path: &Path, preprocess: &Preprocess) -> Result<Vec<u8>> {
    Ok(preprocess.to_rgb(&decode_for(path, preprocess)?))
}

/// [`load`] for an image held in memory (an upload): the same decoder, limits and
/// preprocessing, so an uploaded file embeds exactly as the same file on disk. `name` is what
/// errors call it.
pub fn load_bytes(bytes: Vec<u8>, name: &Path, preprocess: &Preprocess) -> Result<Vec<u8>> {
    let image = decode_bytes(bytes, name, Some(preprocess.size.saturating_mul(8)))?;
    Ok(preprocess.to_rgb(&image))
}

/// A file decoded and shrunk to fit a `side × side` box (aspect kept, EXIF orientation
/// applied; never enlarged): a big JPEG is decoded straight at a reduced DCT scale.
pub fn thumbnail(path: &Path, side: u32) -> Result<DynamicImage> {
    fit(decode_scaled(path, Some(side))?, side)
}

/// [`thumbnail`] of an image held in memory; `name` is what errors call it.
pub fn thumbnail_bytes(bytes: Vec<u8>, name: &Path, side: u32) -> Result<DynamicImage> {
    fit(decode_bytes(bytes, name, Some(side))?, side)
}

/// `image` shrunk to fit a `side × side` box, if it does not already.
fn fit(image: DynamicImage, side: u32) -> Result<DynamicImage> {
    Ok(if image.width() > side || image.height() > side {
        image.resize(side, side, image::imageops::FilterType::Triangle)
    } else {
        image
    })
}

#[cfg(test)]
mod tests {
    use super::reduced_jpeg;

    /// A big input size made `8 * size`, `2 * min_short` and `side * min_short` overflow u32
    /// (a panic with overflow checks; found with fuzz/, see fuzz/README.md): such sizes must
    /// simply not take the reduced path.
    #[test]
    fn reduced_jpeg_with_huge_sizes_declines() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/signdigits-0/IMG_1209.jpg"
        ))
        .unwrap();
        for min_short in [1 << 28, 1 << 31, u32::MAX, 32u32.saturating_mul(8)] {
            assert!(reduced_jpeg(&jpeg, min_short).is_none(), "{min_short}");
        }
    }
}
