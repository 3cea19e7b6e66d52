//! Copy-detection benchmark for `imgsearch dups` on real photos.
//!
//!     cargo run --release --example dups_bench -- [--data data] [--per-set 60] [--seed 1]
//!         [--thresholds 0.90,0.93,0.95,0.97] [--keep DIR]
//!
//! From each real photo set under `--data` (the test splits of clothing, signdigits, attfaces
//! and cifar10, extracted from ../shared/data as its README says), `--per-set` originals are
//! drawn (seeded); each gets one to three copies, each copy a seeded random edit a user makes:
//! resize (0.5–0.8), recompression (JPEG quality 30–60), a crop keeping about 70% of the area,
//! a horizontal flip, a 90-degree rotation, a colour change (brightness and saturation), or a
//! caption stamped on the image. Every other photo of the same classes is a distractor. The
//! ground truth is the pairs within each original's family. The real binary indexes the folder
//! and `imgsearch dups --json` is scored at each threshold: pair precision, recall and F1, per
//! edit kind (recall of the pairs original–copy) and overall, with its wall time.
//! Prints numbers; asserts nothing.

use anyhow::{bail, Context, Result};
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

struct Args {
    data: PathBuf,
    per_set: usize,
    seed: u64,
    thresholds: Vec<f32>,
    keep: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        data: PathBuf::from("data"),
        per_set: 60,
        seed: 1,
        thresholds: vec![0.90, 0.93, 0.95, 0.97],
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => a.data = PathBuf::from(value()?),
            "--per-set" => a.per_set = value()?.parse()?,
            "--seed" => a.seed = value()?.parse()?,
            "--keep" => a.keep = Some(PathBuf::from(value()?)),
            "--thresholds" => {
                a.thresholds = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
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
        "crop70" => {
            let side = 0.7f32.sqrt();
            let (cw, ch) = ((w as f32 * side) as u32, (h as f32 * side) as u32);
            let x = rng.random_range(0..=w - cw);
            let y = rng.random_range(0..=h - ch);
            (img.crop_imm(x, y, cw, ch), None)
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
    let tmp = std::env::temp_dir().join(format!("imgsearch-dups-bench-{}", std::process::id()));
    let root = args.keep.clone().unwrap_or_else(|| tmp.clone());
    let _ = std::fs::remove_dir_all(&root);
    let library = root.join("library");
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    // path -> (family, edit kind or "original"); distractors have no family.
    let mut truth: HashMap<PathBuf, (usize, &str)> = HashMap::new();
    let mut families = 0;
    let mut total = 0;
    for set in ["clothing", "signdigits", "attfaces", "cifar10"] {
        let dir = args.data.join(set).join("test");
        let mut files = files_under(&dir);
        if files.is_empty() {
            bail!(
                "{} has no images: extract ../shared/data/{set}-test.tar into {}",
                dir.display(),
                args.data.display()
            );
        }
        files.shuffle(&mut rng);
        // cifar10 test is 10,000 images: take 1,000 of them (originals and distractors).
        files.truncate(1000);
        for (i, file) in files.iter().enumerate() {
            let rel = file.strip_prefix(&dir)?;
            let to = library.join(set).join(rel);
            std::fs::create_dir_all(to.parent().context("parent")?)?;
            std::fs::copy(file, &to)?;
            total += 1;
            if i >= args.per_set {
                continue;
            }
            let family = families;
            families += 1;
            truth.insert(to.canonicalize()?, (family, "original"));
            let img = image::open(file).with_context(|| file.display().to_string())?;
            let mut kinds = EDITS.to_vec();
            kinds.shuffle(&mut rng);
            for kind in kinds.iter().take(rng.random_range(1..=3)) {
                let (copy, quality) = edit(&img, kind, &mut rng);
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
                truth.insert(out.canonicalize()?, (family, kind));
                total += 1;
            }
        }
    }
    let true_pairs: HashSet<(PathBuf, PathBuf)> = {
        let mut by_family: BTreeMap<usize, Vec<&PathBuf>> = BTreeMap::new();
        for (p, (f, _)) in &truth {
            by_family.entry(*f).or_default().push(p);
        }
        let mut pairs = HashSet::new();
        for members in by_family.values() {
            for a in members {
                for b in members {
                    if a < b {
                        pairs.insert(((*a).clone(), (*b).clone()));
                    }
                }
            }
        }
        pairs
    };
    println!(
        "set: {total} images in {} ({families} originals, {} copies, {} true pairs, the rest distractors)",
        library.display(),
        truth.len() - families,
        true_pairs.len()
    );

    let index = root.join("index");
    let started = Instant::now();
    let status = Command::new(&bin)
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
    let index_seconds = started.elapsed().as_secs_f64();
    println!("imgsearch index: {index_seconds:.2} s");
    println!(
        "{:>9} {:>6} {:>9} {:>7} {:>6} {:>7}  recall by edit (original-copy pairs)",
        "threshold", "groups", "precision", "recall", "F1", "dups s"
    );
    for &t in &args.thresholds {
        let started = Instant::now();
        let out = Command::new(&bin)
            .args([
                "dups",
                "--index",
                index.to_str().context("utf-8")?,
                "--json",
                "--threshold",
                &t.to_string(),
            ])
            .output()?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "imgsearch dups failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut predicted = HashSet::new();
        let mut groups = 0;
        for line in String::from_utf8(out.stdout)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["type"] != "group" {
                continue;
            }
            groups += 1;
            let mut members = vec![PathBuf::from(v["keep"].as_str().unwrap_or_default())];
            for d in v["duplicates"].as_array().into_iter().flatten() {
                members.push(PathBuf::from(d["path"].as_str().unwrap_or_default()));
            }
            for a in &members {
                for b in &members {
                    if a < b {
                        predicted.insert((a.clone(), b.clone()));
                    }
                }
            }
        }
        let hit = predicted.intersection(&true_pairs).count();
        let precision = hit as f64 / predicted.len().max(1) as f64;
        let recall = hit as f64 / true_pairs.len().max(1) as f64;
        let f1 = 2.0 * precision * recall / (precision + recall).max(1e-12);
        let mut by_kind = Vec::new();
        for kind in EDITS {
            let pairs: Vec<(PathBuf, PathBuf)> = truth
                .iter()
                .filter(|(_, (_, k))| *k == kind)
                .filter_map(|(copy, (f, _))| {
                    let original = truth
                        .iter()
                        .find(|(_, (g, k))| g == f && *k == "original")?
                        .0;
                    let pair = if original < copy {
                        (original.clone(), copy.clone())
                    } else {
                        (copy.clone(), original.clone())
                    };
                    Some(pair)
                })
                .collect();
            let found = pairs.iter().filter(|p| predicted.contains(*p)).count();
            by_kind.push(format!("{kind} {found}/{}", pairs.len()));
        }
        println!(
            "{t:>9.2} {groups:>6} {precision:>9.3} {recall:>7.3} {f1:>6.3} {seconds:>7.2}  {}",
            by_kind.join(", ")
        );
    }
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
