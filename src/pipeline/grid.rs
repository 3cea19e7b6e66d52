//! Contact sheets: each row a query image, then its neighbours with their cosine scores, as
//! in the DIM paper's CIFAR-10 KNN figure.

use super::query::QueryAnswer;
use crate::data;
use crate::error::{Error, Result};
use crate::index::{Hit, ImageId, SearchOptions};
use crate::store::Store;
use image::{imageops::FilterType, Rgb, RgbImage};
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Thumbnail side in pixels unless told otherwise.
pub const DEFAULT_TILE: u32 = 64;

/// A query and its ranked neighbours.
pub struct Row {
    pub query: PathBuf,
    pub neighbours: Vec<Hit>,
}

/// The rows of the answered queries (an unreadable query image has no row).
pub fn query_rows(answers: &[QueryAnswer]) -> Vec<Row> {
    answers
        .iter()
        .filter_map(|a| {
            a.result.as_ref().ok().map(|hits| Row {
                query: a.query.clone(),
                neighbours: hits.clone(),
            })
        })
        .collect()
}

/// `rows` indexed images drawn at random (reproducibly from `seed`), each with its `k` nearest
/// neighbours other than itself: the rows of the KNN figure. The neighbours are searched with
/// the stored vectors (what querying with each file gives, without decoding it again).
pub fn random_rows(store: &dyn Store, rows: usize, k: usize, seed: u64) -> Result<Vec<Row>> {
    let mut entries: Vec<PathBuf> = store
        .entries_with_vectors()?
        .into_iter()
        .map(|(e, _)| e.path)
        .collect();
    // Sorted so that a seed picks the same images whatever order the segments list them in.
    entries.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let picks: Vec<PathBuf> =
        rand::seq::IndexedRandom::choose_multiple(entries.as_slice(), &mut rng, rows)
            .cloned()
            .collect();
    let options = SearchOptions {
        k: k + 1,
        ..SearchOptions::default()
    };
    let mut out = Vec::with_capacity(picks.len());
    for query in picks {
        if let Some(hits) = store.search_by_id(ImageId::of(&query), &options)? {
            let neighbours = hits
                .into_iter()
                .filter(|h| h.path != query)
                .take(k)
                .collect();
            out.push(Row { query, neighbours });
        }
    }
    Ok(out)
}

const GAP: u32 = 4;
const LABEL: u32 = 14;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const QUERY_FRAME: Rgb<u8> = Rgb([200, 30, 30]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// Renders rows of `tile × tile` thumbnails: the query (framed), a wider gap, then the
/// neighbours, each with its score underneath. Unreadable images are drawn grey.
pub fn contact_sheet(rows: &[Row], tile: u32) -> RgbImage {
    let columns = rows.iter().map(|r| r.neighbours.len()).max().unwrap_or(0) as u32 + 1;
    let width = GAP + columns * (tile + GAP) + 3 * GAP;
    let height = GAP + rows.len() as u32 * (tile + LABEL + GAP);
    let mut sheet = RgbImage::from_pixel(width, height, BACKGROUND);
    for (r, row) in rows.iter().enumerate() {
        let y = GAP + r as u32 * (tile + LABEL + GAP);
        let x = GAP;
        draw_frame(&mut sheet, x, y, tile);
        paste(&mut sheet, &thumbnail(&row.query, tile), x, y);
        for (c, hit) in row.neighbours.iter().enumerate() {
            let x = GAP + (c as u32 + 1) * (tile + GAP) + 3 * GAP;
            paste(&mut sheet, &thumbnail(&hit.path, tile), x, y);
            draw_text(
                &mut sheet,
                &format!("{:.3}", hit.score),
                x + 2,
                y + tile + 3,
            );
        }
    }
    sheet
}

/// Writes a sheet as PNG (temp file + rename, so a reader never sees half an image).
pub fn save(sheet: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(sheet.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    crate::fsx::write_atomic(path, &bytes).map_err(|e| Error::io(path, e))
}

fn thumbnail(path: &Path, tile: u32) -> RgbImage {
    match data::decode(path) {
        // Nearest keeps tiny images (CIFAR's 32 px) crisp when enlarged.
        Ok(img) => img
            .resize_to_fill(tile, tile, FilterType::Nearest)
            .to_rgb8(),
        Err(_) => RgbImage::from_pixel(tile, tile, Rgb([128, 128, 128])),
    }
}

fn paste(sheet: &mut RgbImage, img: &RgbImage, x: u32, y: u32) {
    image::imageops::replace(sheet, img, x as i64, y as i64);
}

fn draw_frame(sheet: &mut RgbImage, x: u32, y: u32, tile: u32) {
    for i in 0..tile + 4 {
        for (px, py) in [
            (x + i, y),
            (x + i, y + tile + 3),
            (x, y + i),
            (x + tile + 3, y + i),
        ] {
            if px >= 2 && py >= 2 && px - 2 < sheet.width() && py - 2 < sheet.height() {
                sheet.put_pixel(px - 2, py - 2, QUERY_FRAME);
            }
        }
    }
}

/// 3×5 glyphs for the characters of a score, one row of bits per line (MSB left).
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0, 0, 0, 0, 0b010],
        '-' => [0, 0, 0b111, 0, 0],
        _ => [0; 5],
    }
}

/// Draws `text` with 3×5 glyphs at scale 2.
fn draw_text(sheet: &mut RgbImage, text: &str, x: u32, y: u32) {
    const SCALE: u32 = 2;
    for (i, ch) in text.chars().enumerate() {
        let bits = glyph(ch);
        let gx = x + i as u32 * 4 * SCALE;
        for (row, line) in bits.iter().enumerate() {
            for col in 0..3 {
                if line & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let (px, py) = (gx + col * SCALE + dx, y + row as u32 * SCALE + dy);
                        if px < sheet.width() && py < sheet.height() {
                            sheet.put_pixel(px, py, INK);
                        }
                    }
                }
            }
        }
    }
}
