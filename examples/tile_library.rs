//! A library of about a million real-photo images with known copies, for measuring `imgsearch
//! dups` at that scale: every photo of the given folders is cut into a 3×3 grid of tiles, which
//! share no pixel with each other, so no two tiles are copies; then `--copies N` seeded tiles get
//! a mirrored copy and a recompressed one (JPEG quality 50). `score` reads `imgsearch dups
//! --json` and reports the copy pairs found, the groups that hold two different tiles, and the
//! group sizes.
//!
//!     (source bench/data.sh && carve_tinyimagenet_tune && extract tinyimagenet/val)
//!     cargo run --release --example tile_library -- make --out data/tiles --copies 1000 \
//!         data/tinyimagenet/train data/tinyimagenet/tune data/tinyimagenet/val
//!     imgsearch index data/tiles --index TILES && imgsearch dups --index TILES --json > dups.jsonl
//!     cargo run --release --example tile_library -- score data/tiles dups.jsonl
//!
//! Tiles keep their photo's folder (`OUT/CLASS/STEM-K.png`, K = 0..8 row by row); copies are
//! `OUT/copies/CLASS-STEM-K-mirror.png` and `...-q50.jpg`. The tiles are PNG, so a tile's pixels
//! are its photo's decoded pixels.

#[path = "common/fail.rs"]
mod fail;
#[path = "common/labelled.rs"]
mod labelled;

use fail::{bail, Result};
use image::{DynamicImage, GenericImageView};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Tiles per side of a photo.
const GRID: u32 = 3;

/// The tiles of one photo, row by row.
fn tiles(image: &DynamicImage) -> Vec<DynamicImage> {
    let (w, h) = image.dimensions();
    let (tw, th) = (w / GRID, h / GRID);
    (0..GRID * GRID)
        .map(|k| image.crop_imm((k % GRID) * tw, (k / GRID) * th, tw, th))
        .collect()
}

/// `OUT/CLASS/STEM-K.png` for tile `k` of `photo`.
fn tile_path(out: &Path, photo: &Path, k: u32) -> PathBuf {
    let class = photo
        .parent()
        .and_then(Path::file_name)
        .map_or("photos".into(), |c| c.to_string_lossy().into_owned());
    let stem = photo.file_stem().unwrap_or_default().to_string_lossy();
    out.join(class).join(format!("{stem}-{k}.png"))
}

fn make(out: &Path, copies: usize, roots: &[PathBuf]) -> Result<()> {
    let mut all = Vec::new();
    for root in roots {
        all.extend(labelled::read(root)?.files);
    }
    eprintln!("{} photos → {} tiles", all.len(), all.len() * 9);
    let written: Vec<Vec<PathBuf>> = all
        .par_iter()
        .map(|photo| -> Result<Vec<PathBuf>> {
            let image = image::open(photo).map_err(|e| format!("{}: {e}", photo.display()))?;
            let mut paths = Vec::new();
            for (k, tile) in tiles(&image).into_iter().enumerate() {
                let path = tile_path(out, photo, k as u32);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                tile.to_rgb8().save(&path)?;
                paths.push(path);
            }
            Ok(paths)
        })
        .collect::<Result<_>>()?;
    let written: Vec<PathBuf> = written.into_iter().flatten().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let chosen: Vec<&PathBuf> = written.choose_multiple(&mut rng, copies).collect();
    let dir = out.join("copies");
    std::fs::create_dir_all(&dir)?;
    for tile in chosen {
        let image = image::open(tile)?;
        let name = copy_stem(out, tile);
        image
            .fliph()
            .to_rgb8()
            .save(dir.join(format!("{name}-mirror.png")))?;
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 50)
            .encode_image(&image.to_rgb8())?;
        std::fs::write(dir.join(format!("{name}-q50.jpg")), bytes)?;
    }
    eprintln!(
        "{} tiles and {} copies in {}",
        written.len(),
        2 * copies,
        out.display()
    );
    Ok(())
}

/// `CLASS-STEM-K` of a tile `OUT/CLASS/STEM-K.png`.
fn copy_stem(out: &Path, tile: &Path) -> String {
    let relative = tile.strip_prefix(out).unwrap_or(tile);
    relative
        .with_extension("")
        .to_string_lossy()
        .replace(std::path::MAIN_SEPARATOR, "-")
}

/// The tile a library file is, or is a copy of: `CLASS-STEM-K`.
fn family(path: &str) -> String {
    let path = Path::new(path);
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let parent = path.parent().unwrap_or(Path::new(""));
    if parent.file_name().is_some_and(|d| d == "copies") {
        stem.trim_end_matches("-mirror")
            .trim_end_matches("-q50")
            .to_string()
    } else {
        let class = parent.file_name().unwrap_or_default().to_string_lossy();
        format!("{class}-{stem}")
    }
}

fn score(library: &Path, dups: &Path) -> Result<()> {
    let seeded = std::fs::read_dir(library.join("copies"))?.count() / 2;
    let text = std::fs::read_to_string(dups)?;
    let mut groups: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        if record["type"] != "group" {
            continue;
        }
        let mut members = vec![record["keep"].as_str().unwrap_or_default().to_string()];
        for d in record["duplicates"].as_array().into_iter().flatten() {
            members.push(d["path"].as_str().unwrap_or_default().to_string());
        }
        groups.push(members);
    }
    let (mut right, mut wrong, mut wrong_groups) = (0usize, 0usize, 0usize);
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for group in &groups {
        *sizes.entry(group.len()).or_default() += 1;
        let mut by_family: HashMap<String, usize> = HashMap::new();
        for member in group {
            *by_family.entry(family(member)).or_default() += 1;
        }
        let pairs = group.len() * (group.len() - 1) / 2;
        let same: usize = by_family.values().map(|n| n * (n - 1) / 2).sum();
        right += same;
        wrong += pairs - same;
        wrong_groups += usize::from(by_family.len() > 1);
    }
    let truth = 3 * seeded;
    let precision = right as f64 / (right + wrong).max(1) as f64;
    let recall = right as f64 / truth.max(1) as f64;
    let sizes: Vec<String> = sizes.iter().map(|(s, n)| format!("{n}×{s}")).collect();
    println!(
        "groups {} (sizes: {}); groups holding two different tiles {wrong_groups}; pairs right \
         {right} of {truth} (3 per seeded tile: it, its mirror image, its recompression), wrong \
         {wrong}; precision {precision:.4}, recall {recall:.4}",
        groups.len(),
        sizes.join(", ")
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("make") => {
            let (mut out, mut copies, mut roots) = (None, 1000, Vec::new());
            let mut rest = args[1..].iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--out" => out = rest.next().map(PathBuf::from),
                    "--copies" => copies = rest.next().ok_or("--copies N")?.parse()?,
                    _ => roots.push(PathBuf::from(arg)),
                }
            }
            let Some(out) = out else {
                bail!("make needs --out DIR");
            };
            if out.exists() {
                bail!("{} exists: remove it first", out.display());
            }
            make(&out, copies, &roots)
        }
        Some("score") if args.len() == 3 => score(Path::new(&args[1]), Path::new(&args[2])),
        _ => bail!(
            "usage: tile_library make --out DIR [--copies N] FOLDER... | score LIBRARY DUPS.jsonl"
        ),
    }
}
