//! Copy-detection benchmark for `imgsearch dups` on real photos, beside czkawka_cli and
//! imagededup on the same files in the same run.
//!
//!     cargo run --release --example dups_bench -- [--data data] [--per-set 60] [--seed 1]
//!         [--thresholds 0.85/0.93,0.97/none] [--keep DIR] [--edits basic|extended|KIND,...]
//!         [--czkawka PATH] [--imagededup PYTHON] [--imagededup-thresholds 4,6,8,10]
//!         [--sets clothing/test,signdigits/test,attfaces/test,cifar10/test]
//!     cargo run --release --example dups_bench -- --folder DIR [--czkawka PATH] [--imagededup PYTHON]
//!
//! From each real photo set under `--data` (`--sets`, by default the test splits of clothing,
//! signdigits, attfaces and cifar10: `bench/data.sh clothing signdigits attfaces cifar10`; at
//! most 1,000 photos of each), `--per-set` originals are
//! drawn (seeded); each gets one to three copies, each copy a seeded random edit a user makes:
//! resize (0.5–0.8), recompression (JPEG quality 30–60), a crop keeping about 70% of the area,
//! a horizontal flip, a 90-degree rotation, a colour change (brightness and saturation), or a
//! caption stamped on the image. `--edits extended` adds the edits photos shared from phones and
//! social media carry: a caption bar over the bottom or the top of the picture, a mirrored copy
//! with a caption bar, a border or letterbox, a screenshot of the photo inside a phone's interface,
//! and a crop keeping 50-60% of the area. `--edits` also takes a list of kinds, among them two
//! marks drawn only when named: `watermark` (a line of translucent text across the middle) and
//! `logo` (an opaque badge in a corner), and `combined` (`combined_BASE` for each BASE of crop70,
//! crop55, caption_bar, caption_top, border, screenshot, watermark and logo): the photo turned
//! or mirrored, then BASE, then resized to 60-90% and saved as JPEG at quality 40-75.
//! Every other photo of the same classes is a distractor. The
//! ground truth is the pairs within each original's family. The real binary indexes the folder
//! and `imgsearch dups --json` is scored at each setting ("T/V": cosine threshold T and copy
//! score V; "T/V/C": and C closest images below T, `--closest C`; "T/V/C/K": those at cosine K
//! or more, `--closest-cosine K`; "T/none": the cosine alone):
//! pair precision, recall and F1, per edit kind (recall of the pairs original–copy) and
//! overall, with its wall time. `--czkawka` runs czkawka_cli's
//! similar-images search at several settings, `--imagededup` (a Python with imagededup
//! installed) its four hash methods through bench/imagededup_dups.py at each Hamming threshold.
//!
//! `--folder DIR` instead times each tool finding duplicates in one big folder from nothing
//! (imgsearch: index + dups at its defaults, then each `--thresholds` setting if given, on the
//! same index; czkawka_cli: its defaults, empty cache; imagededup: PHash at its default
//! threshold).
//! Prints numbers; asserts nothing.

#[path = "common/fail.rs"]
mod fail;
use fail::{bail, Context, Result};
use image::{imageops, DynamicImage, Rgb, RgbImage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const EDITS: [&str; 7] = [
    "resize",
    "recompress",
    "crop70",
    "flip",
    "rotate90",
    "colour",
    "caption",
];

/// The edits `--edits extended` adds to [`EDITS`].
const EXTENDED_EDITS: [&str; 6] = [
    "caption_bar",
    "caption_top",
    "mirror_caption",
    "border",
    "screenshot",
    "crop55",
];

/// Edits drawn only when named (`--edits watermark,logo,combined`), so that the kinds `basic`
/// and `extended` draw from stay as they were, and so do their seeded sets: two marks laid over
/// the picture, and (`combined`, short for all of [`COMBINED_EDITS`]) an overlay or partial view
/// combined with a turn, a resize and JPEG.
const NAMED_ONLY_EDITS: [&str; 2] = ["watermark", "logo"];

/// `combined_BASE`: the photo turned or mirrored, then the edit BASE, then resized and
/// recompressed ([`combined`]).
const COMBINED_EDITS: [&str; 8] = [
    "combined_crop70",
    "combined_crop55",
    "combined_caption_bar",
    "combined_caption_top",
    "combined_border",
    "combined_screenshot",
    "combined_watermark",
    "combined_logo",
];

struct Args {
    data: PathBuf,
    per_set: usize,
    seed: u64,
    thresholds: Vec<String>,
    /// Whether --thresholds was given (with --folder, only then are settings timed one by one).
    thresholds_given: bool,
    keep: Option<PathBuf>,
    czkawka: Option<PathBuf>,
    imagededup: Option<PathBuf>,
    imagededup_thresholds: String,
    folder: Option<PathBuf>,
    /// The edit kinds drawn from.
    edits: Vec<&'static str>,
    /// The splits the photos come from, `SET/SPLIT` under `data`.
    sets: Vec<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        data: PathBuf::from("data"),
        per_set: 60,
        seed: 1,
        thresholds: ["0.85/0.93", "0.90/0.93", "0.90/0.95", "0.97/none"]
            .map(String::from)
            .to_vec(),
        thresholds_given: false,
        keep: None,
        czkawka: None,
        imagededup: None,
        imagededup_thresholds: "10".into(),
        folder: None,
        edits: EDITS.to_vec(),
        sets: [
            "clothing/test",
            "signdigits/test",
            "attfaces/test",
            "cifar10/test",
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = PathBuf::from(value()?),
            "--per-set" => a.per_set = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--keep" => a.keep = Some(PathBuf::from(value()?)),
            "--czkawka" => a.czkawka = Some(PathBuf::from(value()?)),
            "--imagededup" => a.imagededup = Some(PathBuf::from(value()?)),
            "--imagededup-thresholds" => a.imagededup_thresholds = value()?,
            "--folder" => a.folder = Some(PathBuf::from(value()?)),
            "--edits" => {
                a.edits = match value()?.as_str() {
                    "basic" => EDITS.to_vec(),
                    "extended" => EDITS.iter().chain(&EXTENDED_EDITS).copied().collect(),
                    list => {
                        let known: Vec<&'static str> = EDITS
                            .iter()
                            .chain(&EXTENDED_EDITS)
                            .chain(&NAMED_ONLY_EDITS)
                            .chain(&COMBINED_EDITS)
                            .copied()
                            .collect();
                        let mut kinds = Vec::new();
                        for name in list.split(',') {
                            if name == "combined" {
                                kinds.extend(COMBINED_EDITS);
                                continue;
                            }
                            match known.iter().find(|&&k| k == name) {
                                Some(&kind) => kinds.push(kind),
                                None => bail!(
                                    "--edits takes basic, extended or a list of {}, not {name}",
                                    known.join(", ")
                                ),
                            }
                        }
                        kinds
                    }
                }
            }
            "--thresholds" => {
                a.thresholds = value()?.split(',').map(String::from).collect();
                a.thresholds_given = true;
            }
            "--sets" => a.sets = value()?.split(',').map(String::from).collect(),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// A 5×7 bitmap glyph stamp: blocks of dark and light pixels shaped like a caption line.
fn caption(img: &mut RgbImage, rng: &mut ChaCha8Rng) {
    let (w, h) = img.dimensions();
    let scale = (w.min(h) / 60).max(1);
    let y0 = h - 10 * scale;
    let chars = rng.random_range(6..12);
    for c in 0..chars {
        for dy in 0..7 {
            for dx in 0..5 {
                if rng.random_bool(0.55) {
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let x = 2 * scale + (c * 6 + dx) * scale + sx;
                            let y = y0 + dy * scale + sy;
                            if x < w && y < h {
                                img.put_pixel(x, y, Rgb([255, 255, 40]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Glyph-like text (a 5×7 grid of blocks per character) in `colour` at opacity `alpha` from
/// (x0, y0), `chars` characters of `scale` pixels per block.
fn glyphs(
    img: &mut RgbImage,
    (x0, y0): (u32, u32),
    chars: u32,
    scale: u32,
    (colour, alpha): (Rgb<u8>, f32),
    rng: &mut ChaCha8Rng,
) {
    let (w, h) = img.dimensions();
    for c in 0..chars {
        for dy in 0..7 {
            for dx in 0..5 {
                if !rng.random_bool(0.55) {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let (x, y) = (x0 + (c * 6 + dx) * scale + sx, y0 + dy * scale + sy);
                        if x < w && y < h {
                            let under = *img.get_pixel(x, y);
                            let mixed = Rgb(std::array::from_fn(|i| {
                                (f32::from(under[i]) * (1.0 - alpha) + f32::from(colour[i]) * alpha)
                                    .round() as u8
                            }));
                            img.put_pixel(x, y, mixed);
                        }
                    }
                }
            }
        }
    }
}

/// A solid bar of 10-15% of the height over the bottom (or the top) of the picture, with a line
/// of text on it: the caption sharing apps put on a photo.
fn caption_bar(img: &DynamicImage, top: bool, rng: &mut ChaCha8Rng) -> DynamicImage {
    let mut rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let bar = ((h as f32 * rng.random_range(0.10..0.15)) as u32).max(4);
    let dark = rng.random_bool(0.7);
    let (fill, ink) = if dark {
        (Rgb([rng.random_range(0..50u8); 3]), Rgb([250, 250, 250]))
    } else {
        (Rgb([250, 250, 250]), Rgb([20, 20, 20]))
    };
    let y0 = if top { 0 } else { h - bar };
    for y in y0..y0 + bar {
        for x in 0..w {
            rgb.put_pixel(x, y, fill);
        }
    }
    let scale = (bar / 10).max(1);
    let chars = rng.random_range(8..20);
    glyphs(
        &mut rgb,
        (bar / 3, y0 + (bar - 7 * scale) / 2),
        chars,
        scale,
        (ink, 1.0),
        rng,
    );
    DynamicImage::ImageRgb8(rgb)
}

/// The picture on a solid canvas: a border of 4-12% on every side, or letterboxed to a square.
fn border(img: &DynamicImage, rng: &mut ChaCha8Rng) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let fill = Rgb([
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8),
    ]);
    let (cw, ch) = if rng.random_bool(0.5) {
        let f = rng.random_range(0.04..0.12);
        (w + 2 * (w as f32 * f) as u32, h + 2 * (h as f32 * f) as u32)
    } else {
        let side = w.max(h) + w.max(h) / 20;
        (side, side)
    };
    let mut canvas = RgbImage::from_pixel(
        cw,
        ch,
        if rng.random_bool(0.5) {
            Rgb([0, 0, 0])
        } else {
            fill
        },
    );
    imageops::overlay(
        &mut canvas,
        &img.to_rgb8(),
        i64::from((cw - w) / 2),
        i64::from((ch - h) / 2),
    );
    DynamicImage::ImageRgb8(canvas)
}

/// A phone screenshot showing the picture: a 540 × 1170 screen with a status bar, the picture
/// across the screen's width (less a margin), lines of text and buttons above and below.
fn screenshot(img: &DynamicImage, rng: &mut ChaCha8Rng) -> DynamicImage {
    let (sw, sh) = (540u32, 1170u32);
    let dark = rng.random_bool(0.5);
    let (bg, ink) = if dark {
        (Rgb([0, 0, 0]), Rgb([230, 230, 230]))
    } else {
        (Rgb([255, 255, 255]), Rgb([30, 30, 30]))
    };
    let mut screen = RgbImage::from_pixel(sw, sh, bg);
    glyphs(&mut screen, (20, 14), 5, 3, (ink, 1.0), rng);
    glyphs(&mut screen, (sw - 120, 14), 3, 3, (ink, 1.0), rng);
    let margin = rng.random_range(0..24);
    let pw = sw - 2 * margin;
    let ph = ((img.height() as f32 * pw as f32 / img.width() as f32) as u32).clamp(8, sh - 400);
    let photo = img
        .resize_exact(pw, ph, imageops::FilterType::Triangle)
        .to_rgb8();
    let top = rng.random_range(140..240);
    glyphs(&mut screen, (20, top - 60), 14, 3, (ink, 1.0), rng);
    imageops::overlay(&mut screen, &photo, i64::from(margin), i64::from(top));
    for line in 0..3 {
        glyphs(
            &mut screen,
            (20, top + ph + 30 + line * 34),
            rng.random_range(10..24),
            3,
            (ink, 1.0),
            rng,
        );
    }
    for b in 0..4 {
        for y in sh - 90..sh - 50 {
            for x in 40 + b * 130..100 + b * 130 {
                screen.put_pixel(x, y, Rgb([128, 128, 128]));
            }
        }
    }
    DynamicImage::ImageRgb8(screen)
}

/// A watermark: a line of text across the picture, white (or black) at 30-55% opacity, its
/// characters spanning half to four fifths of the width, somewhere in the middle rows.
fn watermark(img: &DynamicImage, rng: &mut ChaCha8Rng) -> DynamicImage {
    let mut rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let chars = rng.random_range(6..14u32);
    let span = w as f32 * rng.random_range(0.5..0.8);
    let scale = ((span / (6 * chars) as f32) as u32).max(1);
    let height = 7 * scale;
    let x0 = w.saturating_sub(6 * chars * scale) / 2;
    let y0 = (h as f32 * rng.random_range(0.3..0.6)) as u32;
    let y0 = y0.min(h.saturating_sub(height));
    let colour = if rng.random_bool(0.7) {
        Rgb([255, 255, 255])
    } else {
        Rgb([0, 0, 0])
    };
    let alpha = rng.random_range(0.3..0.55);
    glyphs(&mut rgb, (x0, y0), chars, scale, (colour, alpha), rng);
    DynamicImage::ImageRgb8(rgb)
}

/// A logo: an opaque badge of 10-18% of the shorter side, a square or a disc in a saturated
/// colour with a white glyph on it, in one corner a little in from the edges.
fn logo(img: &DynamicImage, rng: &mut ChaCha8Rng) -> DynamicImage {
    let mut rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let side = ((w.min(h) as f32 * rng.random_range(0.10..0.18)) as u32).max(5);
    let margin = (w.min(h) as f32 * 0.03) as u32;
    let x0 = if rng.random_bool(0.5) {
        margin
    } else {
        w - side - margin
    };
    let y0 = if rng.random_bool(0.5) {
        margin
    } else {
        h - side - margin
    };
    let mut colour = [0u8; 3];
    let full = rng.random_range(0..3);
    colour[full] = 255;
    colour[(full + rng.random_range(1..3)) % 3] = rng.random_range(0..=160);
    let disc = rng.random_bool(0.5);
    let r = side as f32 / 2.0;
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f32 + 0.5 - r, y as f32 + 0.5 - r);
            if !disc || dx * dx + dy * dy <= r * r {
                rgb.put_pixel(x0 + x, y0 + y, Rgb(colour));
            }
        }
    }
    let scale = (side / 10).max(1);
    let glyph = (x0 + (side - 5 * scale) / 2, y0 + (side - 7 * scale) / 2);
    glyphs(&mut rgb, glyph, 1, scale, (Rgb([255, 255, 255]), 1.0), rng);
    DynamicImage::ImageRgb8(rgb)
}

/// A crop keeping `area` of the picture, its aspect kept, at a random place.
fn crop(img: &DynamicImage, area: f32, rng: &mut ChaCha8Rng) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let side = area.sqrt();
    let (cw, ch) = ((w as f32 * side) as u32, (h as f32 * side) as u32);
    let x = rng.random_range(0..=w - cw);
    let y = rng.random_range(0..=h - ch);
    img.crop_imm(x, y, cw, ch)
}

/// What a photo goes through on its way from one phone to another: turned or mirrored, then the
/// overlay or partial view `base`, then resized to 60-90% and saved as JPEG at quality 40-75.
fn combined(img: &DynamicImage, base: &str, rng: &mut ChaCha8Rng) -> (DynamicImage, Option<u8>) {
    let turned = match rng.random_range(0..3) {
        0 => img.fliph(),
        1 => img.rotate90(),
        _ => img.rotate270(),
    };
    let (over, _) = edit(&turned, base, rng);
    let f = rng.random_range(0.6..0.9);
    let size = |v: u32| ((v as f32 * f) as u32).max(8);
    let shared = over.resize_exact(
        size(over.width()),
        size(over.height()),
        imageops::FilterType::Triangle,
    );
    (shared, Some(rng.random_range(40..76)))
}

/// Applies one edit; returns the image and whether to save it as JPEG (and at what quality).
fn edit(img: &DynamicImage, kind: &str, rng: &mut ChaCha8Rng) -> (DynamicImage, Option<u8>) {
    let (w, h) = (img.width(), img.height());
    match kind {
        "resize" => {
            let f = rng.random_range(0.5..0.8);
            let size = |v: u32| ((v as f32 * f) as u32).max(8);
            (
                img.resize_exact(size(w), size(h), imageops::FilterType::Triangle),
                None,
            )
        }
        "recompress" => (img.clone(), Some(rng.random_range(30..60))),
        "crop70" => (crop(img, 0.7, rng), None),
        "crop55" => {
            let area = rng.random_range(0.5..0.6);
            (crop(img, area, rng), None)
        }
        "caption_bar" => (caption_bar(img, false, rng), Some(85)),
        "caption_top" => (caption_bar(img, true, rng), Some(85)),
        "mirror_caption" => (caption_bar(&img.fliph(), false, rng), Some(85)),
        "border" => (border(img, rng), Some(85)),
        "screenshot" => (screenshot(img, rng), None),
        "watermark" => (watermark(img, rng), Some(85)),
        "logo" => (logo(img, rng), Some(85)),
        combination if combination.starts_with("combined_") => {
            combined(img, &combination["combined_".len()..], rng)
        }
        "flip" => (img.fliph(), None),
        "rotate90" => (
            if rng.random_bool(0.5) {
                img.rotate90()
            } else {
                img.rotate270()
            },
            None,
        ),
        "colour" => {
            let b = rng.random_range(-25..25);
            (
                img.brighten(b)
                    .adjust_contrast(rng.random_range(-15.0..15.0)),
                None,
            )
        }
        _ => {
            let mut rgb = img.to_rgb8();
            caption(&mut rgb, rng);
            (DynamicImage::ImageRgb8(rgb), None)
        }
    }
}

/// czkawka_cli 12's similar-images settings run: `--max-difference` (0–40 at its default hash
/// size 16; 5 is its default) and `--geometric-invariance` (off by default).
const CZKAWKA_SETTINGS: [(u32, &str); 9] = [
    (5, "off"),
    (10, "off"),
    (20, "off"),
    (40, "off"),
    (5, "mirror-flip-rotate90"),
    (10, "mirror-flip-rotate90"),
    (20, "mirror-flip-rotate90"),
    (30, "mirror-flip-rotate90"),
    (40, "mirror-flip-rotate90"),
];

/// Every unordered pair within each group, paths in order.
fn pairs_of_groups(groups: &[Vec<PathBuf>]) -> HashSet<(PathBuf, PathBuf)> {
    let mut pairs = HashSet::new();
    for members in groups {
        for a in members {
            for b in members {
                if a < b {
                    pairs.insert((a.clone(), b.clone()));
                }
            }
        }
    }
    pairs
}

/// Scores predicted pairs against the ground truth and prints one table row.
struct Scorer {
    true_pairs: HashSet<(PathBuf, PathBuf)>,
    /// Per edit kind, its original-copy pairs.
    by_edit: Vec<(&'static str, Vec<(PathBuf, PathBuf)>)>,
}

impl Scorer {
    fn new(truth: &HashMap<PathBuf, (usize, &'static str)>, kinds: &[&'static str]) -> Scorer {
        let mut families: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
        for (p, (f, _)) in truth {
            families.entry(*f).or_default().push(p.clone());
        }
        let originals: HashMap<usize, &PathBuf> = truth
            .iter()
            .filter(|(_, (_, k))| *k == "original")
            .map(|(p, (f, _))| (*f, p))
            .collect();
        let ordered = |a: &PathBuf, b: &PathBuf| {
            if a < b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            }
        };
        let by_edit = kinds
            .iter()
            .map(|&kind| {
                let pairs = truth
                    .iter()
                    .filter(|(_, (_, k))| *k == kind)
                    .map(|(copy, (f, _))| ordered(originals[f], copy))
                    .collect();
                (kind, pairs)
            })
            .collect();
        let groups: Vec<Vec<PathBuf>> = families.into_values().collect();
        Scorer {
            true_pairs: pairs_of_groups(&groups),
            by_edit,
        }
    }

    fn row(
        &self,
        label: &str,
        groups: Option<usize>,
        predicted: &HashSet<(PathBuf, PathBuf)>,
        seconds: f64,
    ) {
        let hit = predicted.intersection(&self.true_pairs).count();
        let precision = hit as f64 / predicted.len().max(1) as f64;
        let recall = hit as f64 / self.true_pairs.len().max(1) as f64;
        let f1 = 2.0 * precision * recall / (precision + recall).max(1e-12);
        let by_edit: Vec<String> = self
            .by_edit
            .iter()
            .map(|(kind, pairs)| {
                let found = pairs.iter().filter(|p| predicted.contains(*p)).count();
                format!("{kind} {found}/{}", pairs.len())
            })
            .collect();
        let groups = groups.map_or("-".to_string(), |g| g.to_string());
        println!(
            "{label:<28} {groups:>6} {precision:>9.3} {recall:>7.3} {f1:>6.3} {seconds:>8.2}  {}",
            by_edit.join(", ")
        );
    }
}

/// Runs czkawka_cli's similar-images search on `dir` with an empty cache of its own (a first
/// run, as imgsearch's) and no minimum file size (its default skips files under 16 KB, most of
/// this set's small images), and returns its groups and wall time.
fn run_czkawka(
    bin: &Path,
    dir: &Path,
    max_difference: u32,
    invariance: &str,
    scratch: &Path,
) -> Result<(Vec<Vec<PathBuf>>, f64)> {
    let home = scratch.join(format!("czkawka-{max_difference}-{invariance}"));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home)?;
    let json = home.join("groups.json");
    let started = Instant::now();
    let out = Command::new(bin)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .args(["image", "-d"])
        .arg(dir)
        .args(["--minimal-file-size", "1", "--max-difference"])
        .arg(max_difference.to_string())
        .args(["--geometric-invariance", invariance])
        .args([
            "--do-not-print-results",
            "--ignore-error-code-on-found",
            "-C",
        ])
        .arg(&json)
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "czkawka_cli failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let value: serde_json::Value = if json.exists() {
        serde_json::from_slice(&std::fs::read(&json)?)?
    } else {
        serde_json::Value::Array(Vec::new())
    };
    let mut groups = Vec::new();
    collect_groups(&value, &mut groups);
    Ok((groups, seconds))
}

/// The groups in czkawka's JSON: every array whose items are objects with a "path".
fn collect_groups(value: &serde_json::Value, groups: &mut Vec<Vec<PathBuf>>) {
    match value {
        serde_json::Value::Array(items) => {
            let paths: Vec<PathBuf> = items
                .iter()
                .filter_map(|i| i.get("path").and_then(|p| p.as_str()).map(PathBuf::from))
                .collect();
            if paths.len() >= 2 && paths.len() == items.len() {
                groups.push(paths);
            } else {
                for item in items {
                    collect_groups(item, groups);
                }
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values() {
                collect_groups(item, groups);
            }
        }
        _ => {}
    }
}

struct ImagededupRun {
    method: String,
    threshold: u32,
    encode_s: f64,
    find_s: f64,
    pairs: HashSet<(PathBuf, PathBuf)>,
}

/// Runs bench/imagededup_dups.py (its hash methods) on `dir`.
fn run_imagededup(
    python: &Path,
    dir: &Path,
    methods: &str,
    thresholds: &str,
) -> Result<Vec<ImagededupRun>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/imagededup_dups.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir)
        .args(["--methods", methods, "--thresholds", thresholds])
        .output()?;
    if !out.status.success() {
        bail!(
            "imagededup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut runs = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let pairs = v["pairs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let a = PathBuf::from(p.get(0)?.as_str()?);
                let b = PathBuf::from(p.get(1)?.as_str()?);
                Some((a.clone().min(b.clone()), a.max(b)))
            })
            .collect();
        runs.push(ImagededupRun {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            threshold: v["threshold"].as_u64().unwrap_or_default() as u32,
            encode_s: v["encode_s"].as_f64().unwrap_or_default(),
            find_s: v["find_s"].as_f64().unwrap_or_default(),
            pairs,
        });
    }
    Ok(runs)
}

/// Wall time of each tool finding duplicates in one large folder, from nothing (imgsearch:
/// index then dups; czkawka_cli: an empty cache; imagededup: hash then search).
fn time_folder(bin: &Path, folder: &Path, args: &Args) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("imgsearch-dups-time-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let index = scratch.join("index");
    let started = Instant::now();
    let status = Command::new(bin)
        .arg("index")
        .arg(folder)
        .arg("--index")
        .arg(&index)
        .arg("--quiet")
        .status()?;
    if !status.success() {
        bail!("imgsearch index failed");
    }
    let index_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["dups", "--json", "--index"])
        .arg(&index)
        .output()?;
    if !out.status.success() {
        bail!(
            "imgsearch dups failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dups_s = started.elapsed().as_secs_f64();
    let groups = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"type\":\"group\""))
        .count();
    println!(
        "imgsearch index + dups: {:.1} s ({index_s:.1} + {dups_s:.1}), {groups} groups",
        index_s + dups_s
    );
    // Each setting of --thresholds, when given, on the same index (the defaults' run is above).
    for setting in args.thresholds.iter().filter(|_| args.thresholds_given) {
        let (threshold, copy) = setting.split_once('/').context("T/C or T/none")?;
        let (found, seconds) = dups_groups(bin, &index, threshold, copy)?;
        println!(
            "imgsearch dups {threshold} / {copy}: {seconds:.1} s, {} groups",
            found.len()
        );
    }
    if let Some(czkawka) = &args.czkawka {
        let (groups, seconds) = run_czkawka(czkawka, folder, 5, "off", &scratch)?;
        println!(
            "czkawka_cli image (its defaults, but no minimal file size): {seconds:.1} s, {} groups",
            groups.len()
        );
    }
    if let Some(python) = &args.imagededup {
        for run in run_imagededup(python, folder, "PHash", "10")? {
            println!(
                "imagededup {} 10: {:.1} s ({:.1} + {:.1}), {} pairs",
                run.method,
                run.encode_s + run.find_s,
                run.encode_s,
                run.find_s,
                run.pairs.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// What complete linkage prevents, measured: at each cosine threshold, the connected
/// components (single linkage) of the pairs `imgsearch query` finds at or above it, beside the
/// largest group `imgsearch dups` made at that threshold.
fn chaining(bin: &Path, index: &Path, library: &Path, largest: &[(String, usize)]) -> Result<()> {
    let files = files_under(library);
    let position: HashMap<&Path, usize> = files
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_path(), i))
        .collect();
    let out = Command::new(bin)
        .args(["query", "--json", "-k", "17", "--index"])
        .arg(index)
        .args(&files)
        .output()?;
    let mut edges = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let Some(&q) = v["query"].as_str().and_then(|q| position.get(Path::new(q))) else {
            continue;
        };
        for hit in v["results"].as_array().into_iter().flatten() {
            let j = hit["path"]
                .as_str()
                .and_then(|p| position.get(Path::new(p)));
            if let (Some(&j), Some(score)) = (j, hit["score"].as_f64()) {
                if j != q {
                    edges.push((score, q, j));
                }
            }
        }
    }
    let mut thresholds: Vec<&str> = largest
        .iter()
        .map(|(s, _)| s.split('/').next().unwrap_or(s))
        .collect();
    thresholds.sort();
    thresholds.dedup();
    for t in thresholds {
        let t_value: f64 = t.parse()?;
        let mut parent: Vec<usize> = (0..files.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for &(score, a, b) in &edges {
            if score >= t_value {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra] = rb;
            }
        }
        let mut sizes: HashMap<usize, usize> = HashMap::new();
        for i in 0..files.len() {
            *sizes.entry(root(&mut parent, i)).or_default() += 1;
        }
        let biggest = sizes.values().max().copied().unwrap_or(0);
        let in_big: usize = sizes.values().filter(|&&n| n > 10).sum();
        let ours: Vec<String> = largest
            .iter()
            .filter(|(s, _)| s.split('/').next() == Some(t))
            .map(|(s, n)| format!("{n} ({s})"))
            .collect();
        println!(
            "chaining at cosine >= {t}: single linkage of the query pairs makes a largest component of {biggest} images ({in_big} images in components over 10); largest imgsearch dups group: {}",
            ours.join(", ")
        );
    }
    Ok(())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in list.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn main() -> Result<()> {
    let args = args()?;
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("imgsearch"))
        .context("binary path")?;
    if let Some(folder) = &args.folder {
        return time_folder(&bin, folder, &args);
    }
    let tmp = std::env::temp_dir().join(format!("imgsearch-dups-bench-{}", std::process::id()));
    let root = args.keep.clone().unwrap_or_else(|| tmp.clone());
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("library"))?;
    // Canonical, as every tool's output paths are compared with the ground truth's.
    let library = root.join("library").canonicalize()?;
    let set = build_copy_set(&args, &library)?;
    println!(
        "set: {} images in {} ({} originals, {} copies, {} true pairs, the rest distractors)",
        set.total,
        library.display(),
        set.families,
        set.truth.len() - set.families,
        Scorer::new(&set.truth, &args.edits).true_pairs.len()
    );

    let index = root.join("index");
    let index_seconds = index_library(&bin, &library, &index)?;
    println!("imgsearch index: {index_seconds:.2} s");
    let scorer = Scorer::new(&set.truth, &args.edits);
    println!(
        "{:<28} {:>6} {:>9} {:>7} {:>6} {:>8}  recall by edit (original-copy pairs)",
        "tool and setting", "groups", "precision", "recall", "F1", "seconds"
    );
    let mut largest_groups = Vec::new();
    for setting in &args.thresholds {
        // "T/V": cosine threshold T and copy score V ("T/V/C": C closest images, "T/V/C/K": at
        // cosine K or more); "T/none": cosine alone.
        let (threshold, copy) = setting.split_once('/').unwrap_or((setting, "none"));
        let (groups, seconds) = dups_groups(&bin, &index, threshold, copy)?;
        scorer.row(
            &format!("imgsearch dups {threshold} / {copy}"),
            Some(groups.len()),
            &pairs_of_groups(&groups),
            seconds,
        );
        largest_groups.push((
            setting.clone(),
            groups.iter().map(Vec::len).max().unwrap_or(0),
        ));
    }
    chaining(&bin, &index, &library, &largest_groups)?;
    against(&bin, &args, &library, &root, &set)?;
    score_peers(&args, &library, &root, &scorer)?;
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The copy-detection set: the ground truth of every original and copy, and the counts.
struct CopySet {
    /// path -> (family, edit kind or "original"); distractors have no family.
    truth: HashMap<PathBuf, (usize, &'static str)>,
    families: usize,
    total: usize,
}

/// Copies real test photos of every set into `library`: the first `per_set` of each set (in
/// a seeded order) become originals with one to three seeded edits each, the rest distractors.
fn build_copy_set(args: &Args, library: &Path) -> Result<CopySet> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut set = CopySet {
        truth: HashMap::new(),
        families: 0,
        total: 0,
    };
    for split in &args.sets {
        let name = split.split('/').next().unwrap_or(split);
        let dir = args.data.join(split);
        let mut files = files_under(&dir);
        if files.is_empty() {
            bail!(
                "{} has no images: fetch it with bench/data.sh {split} (into {})",
                dir.display(),
                args.data.display()
            );
        }
        files.shuffle(&mut rng);
        // cifar10 test is 10,000 images: take 1,000 of them (originals and distractors).
        files.truncate(1000);
        for (i, file) in files.iter().enumerate() {
            let rel = file.strip_prefix(&dir)?;
            let to = library.join(name).join(rel);
            std::fs::create_dir_all(to.parent().context("parent")?)?;
            std::fs::copy(file, &to)?;
            set.total += 1;
            if i >= args.per_set {
                continue;
            }
            let family = set.families;
            set.families += 1;
            set.truth.insert(to.canonicalize()?, (family, "original"));
            let img = image::open(file).with_context(|| file.display().to_string())?;
            let mut kinds = args.edits.clone();
            kinds.shuffle(&mut rng);
            for kind in kinds.iter().take(rng.random_range(1..=3)) {
                let out = write_edit(&img, kind, &to, &mut rng)?;
                set.truth.insert(out.canonicalize()?, (family, kind));
                set.total += 1;
            }
        }
    }
    Ok(set)
}

/// Writes the `kind` edit of `img` beside its original `to` (JPEG at the edit's quality, or
/// PNG) and returns its path.
fn write_edit(img: &DynamicImage, kind: &str, to: &Path, rng: &mut ChaCha8Rng) -> Result<PathBuf> {
    let (copy, quality) = edit(img, kind, rng);
    let stem = to.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
    let out = to.with_file_name(format!(
        "{stem}-{kind}.{}",
        if quality.is_some() { "jpg" } else { "png" }
    ));
    match quality {
        Some(q) => {
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q)
                .encode_image(&copy.to_rgb8())?;
            std::fs::write(&out, bytes)?;
        }
        None => copy.to_rgb8().save(&out)?,
    }
    Ok(out)
}

/// `imgsearch index` of the library; its seconds.
fn index_library(bin: &Path, library: &Path, index: &Path) -> Result<f64> {
    let started = Instant::now();
    let status = Command::new(bin)
        .args([
            "index",
            library.to_str().context("utf-8")?,
            "--index",
            index.to_str().context("utf-8")?,
            "--quiet",
        ])
        .status()?;
    if !status.success() {
        bail!("imgsearch index failed");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The groups `imgsearch dups` reports at cosine `threshold` and copy score `copy` ("none":
/// the cosine alone), each as its paths, and the seconds it took.
fn dups_groups(
    bin: &Path,
    index: &Path,
    threshold: &str,
    copy: &str,
) -> Result<(Vec<Vec<PathBuf>>, f64)> {
    dups_groups_with(bin, index, threshold, copy, &[])
}

/// [`dups_groups`] with more flags.
fn dups_groups_with(
    bin: &Path,
    index: &Path,
    threshold: &str,
    copy: &str,
    extra: &[&str],
) -> Result<(Vec<Vec<PathBuf>>, f64)> {
    let mut command = Command::new(bin);
    command.args([
        "dups",
        "--index",
        index.to_str().context("utf-8")?,
        "--json",
        "--threshold",
        threshold,
    ]);
    command.args(extra);
    // "V", "V/C" or "V/C/K": copy score V, C closest images below the threshold (--closest),
    // at cosine K or more (--closest-cosine).
    let parts: Vec<&str> = copy.split('/').collect();
    match parts[..] {
        ["none"] => command.arg("--no-verify"),
        [v] => command.args(["--copy-score", v]),
        [v, closest] => command.args(["--copy-score", v, "--closest", closest]),
        [v, closest, cosine] => command.args([
            "--copy-score",
            v,
            "--closest",
            closest,
            "--closest-cosine",
            cosine,
        ]),
        _ => bail!("a setting is T/V, T/V/C, T/V/C/K or T/none, not {threshold}/{copy}"),
    };
    let started = Instant::now();
    let out = command.output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "imgsearch dups failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut groups = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if v["type"] != "group" {
            continue;
        }
        let mut members = vec![PathBuf::from(v["keep"].as_str().unwrap_or_default())];
        for d in v["duplicates"].as_array().into_iter().flatten() {
            members.push(PathBuf::from(d["path"].as_str().unwrap_or_default()));
        }
        groups.push(members);
    }
    Ok((groups, seconds))
}

/// New photos against a library (`dups --against`): the copies go into a folder of new photos,
/// the originals and distractors into the library, each indexed on its own; a pair is right
/// when a copy is reported with its own original. Recall per edit kind as above.
fn against(bin: &Path, args: &Args, library: &Path, root: &Path, set: &CopySet) -> Result<()> {
    let (old_dir, new_dir) = (root.join("against/library"), root.join("against/new"));
    let mut originals: HashMap<usize, PathBuf> = HashMap::new();
    let mut copies: Vec<(PathBuf, usize, &'static str)> = Vec::new();
    for file in files_under(library) {
        let rel = file.strip_prefix(library)?;
        let kind = set.truth.get(&file).map(|&(family, kind)| (family, kind));
        let to = match kind {
            Some((_, kind)) if kind != "original" => new_dir.join(rel),
            _ => old_dir.join(rel),
        };
        std::fs::create_dir_all(to.parent().context("parent")?)?;
        std::fs::copy(&file, &to)?;
        match kind {
            Some((family, "original")) => {
                originals.insert(family, to.canonicalize()?);
            }
            Some((family, kind)) => copies.push((to.canonicalize()?, family, kind)),
            None => {}
        }
    }
    let truth: HashSet<(PathBuf, PathBuf)> = copies
        .iter()
        .map(|(copy, family, _)| (originals[family].clone(), copy.clone()))
        .collect();
    let (old_index, new_index) = (
        root.join("against/library-index"),
        root.join("against/new-index"),
    );
    index_library(bin, &old_dir, &old_index)?;
    index_library(bin, &new_dir, &new_index)?;
    println!(
        "\n--against: {} new photos (the copies) against a library of {} (originals and distractors)",
        copies.len(),
        files_under(&old_dir).len()
    );
    let old_flag = old_index.to_str().context("utf-8")?;
    for setting in &args.thresholds {
        let (threshold, copy) = setting.split_once('/').unwrap_or((setting, "none"));
        let flags = ["--against", old_flag];
        let (groups, seconds) = dups_groups_with(bin, &new_index, threshold, copy, &flags)?;
        let predicted: HashSet<(PathBuf, PathBuf)> = groups
            .iter()
            .flat_map(|g| g[1..].iter().map(|d| (g[0].clone(), d.clone())))
            .collect();
        let hit = predicted.intersection(&truth).count();
        let precision = hit as f64 / predicted.len().max(1) as f64;
        let recall = hit as f64 / truth.len().max(1) as f64;
        let f1 = 2.0 * precision * recall / (precision + recall).max(1e-12);
        let by_edit: Vec<String> = args
            .edits
            .iter()
            .map(|&kind| {
                let of_kind: Vec<_> = copies.iter().filter(|c| c.2 == kind).collect();
                let found = of_kind
                    .iter()
                    .filter(|(copy, family, _)| {
                        predicted.contains(&(originals[family].clone(), copy.clone()))
                    })
                    .count();
                format!("{kind} {found}/{}", of_kind.len())
            })
            .collect();
        println!(
            "{:<28} {:>6} {precision:>9.3} {recall:>7.3} {f1:>6.3} {seconds:>8.2}  {}",
            format!("dups --against {threshold} / {copy}"),
            groups.len(),
            by_edit.join(", ")
        );
    }
    Ok(())
}

/// The peers' rows, when their paths are given: czkawka_cli at each setting, imagededup at
/// each threshold of its hashes.
fn score_peers(args: &Args, library: &Path, root: &Path, scorer: &Scorer) -> Result<()> {
    if let Some(czkawka) = &args.czkawka {
        for (difference, invariance) in CZKAWKA_SETTINGS {
            let (groups, seconds) = run_czkawka(czkawka, library, difference, invariance, root)?;
            scorer.row(
                &format!("czkawka_cli {difference} {invariance}"),
                Some(groups.len()),
                &pairs_of_groups(&groups),
                seconds,
            );
        }
    }
    if let Some(python) = &args.imagededup {
        for run in run_imagededup(
            python,
            library,
            "PHash,DHash,WHash,AHash",
            &args.imagededup_thresholds,
        )? {
            scorer.row(
                &format!("imagededup {} {}", run.method, run.threshold),
                None,
                &run.pairs,
                run.encode_s + run.find_s,
            );
        }
    }
    Ok(())
}
