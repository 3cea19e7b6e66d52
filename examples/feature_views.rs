//! Test-time views: does averaging the embeddings of several views of a photo (flip, crops)
//! retrieve better than the single centre view? Exact leave-one-out P@9 and kNN-200 per labelled
//! folder (class = parent folder), for each combination of views.
//!
//!   cargo run --release --example feature_views -- [--model DIR] FOLDER...

use candle_core::{Device, Tensor};
use image::{imageops, imageops::FilterType, RgbImage};
use imgsearch::data::{self, Preprocess};
use imgsearch::model::{normalise_rows, Model, ModelSource, Projection, ProjectionConfig};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

type Fail = Box<dyn std::error::Error>;

const VIEWS: [&str; 8] = ["full", "flip", "c75", "c75f", "tl", "tr", "bl", "br"];

fn view(src: &RgbImage, name: &str, side: u32) -> Vec<u8> {
    let s = src.width();
    let c = s * 3 / 4;
    let (x, y, w, flip) = match name {
        "full" => (0, 0, s, false),
        "flip" => (0, 0, s, true),
        "c75" => ((s - c) / 2, (s - c) / 2, c, false),
        "c75f" => ((s - c) / 2, (s - c) / 2, c, true),
        "tl" => (0, 0, c, false),
        "tr" => (s - c, 0, c, false),
        "bl" => (0, s - c, c, false),
        "br" => (s - c, s - c, c, false),
        _ => unreachable!(),
    };
    let crop = imageops::crop_imm(src, x, y, w, w).to_image();
    let mut out = imageops::resize(&crop, side, side, FilterType::Triangle);
    if flip {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out.into_raw()
}

fn files(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut classes: Vec<_> = std::fs::read_dir(root).unwrap().flatten().collect();
    classes.sort_by_key(|e| e.path());
    for class in classes.into_iter().filter(|e| e.path().is_dir()) {
        let mut names: Vec<_> = std::fs::read_dir(class.path()).unwrap().flatten().collect();
        names.sort_by_key(|e| e.path());
        for f in names {
            out.push((f.path(), class.file_name().to_string_lossy().into_owned()));
        }
    }
    out
}

/// Raw (unprojected) pooled embeddings of each view, `[view][image]`.
fn embed_views(model: &Model, sources: &[RgbImage], side: u32) -> Result<Vec<Tensor>, Fail> {
    let pre = model.preprocess();
    let mut out = Vec::new();
    for name in VIEWS {
        let pixels: Vec<Vec<u8>> = sources.par_iter().map(|s| view(s, name, side)).collect();
        let mut rows = Vec::new();
        for chunk in pixels.chunks(256) {
            let x = pre.to_tensor(chunk.iter().map(|p| p.as_slice()), &Device::Cpu)?;
            rows.push(model.encoder.embed(&x)?);
        }
        out.push(Tensor::cat(&rows, 0)?);
    }
    Ok(out)
}

fn score(v: &[Vec<f32>], labels: &[usize], classes: usize) -> (f64, f64) {
    let n = v.len();
    let (mut p9, mut knn) = (0.0, 0.0);
    let per: Vec<(f64, bool)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut sims: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum(), j))
                .collect();
            let k = 200.min(sims.len());
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            sims.truncate(k);
            sims.sort_by(|a, b| b.0.total_cmp(&a.0));
            let hit = sims[..9.min(k)]
                .iter()
                .filter(|s| labels[s.1] == labels[i])
                .count() as f64
                / 9.0;
            let mut votes = vec![0f64; classes];
            for (s, j) in &sims {
                votes[labels[*j]] += ((*s as f64) / 0.07).exp();
            }
            let best = (0..classes)
                .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
                .unwrap();
            (hit, best == labels[i])
        })
        .collect();
    for (h, k) in per {
        p9 += h;
        knn += k as u8 as f64;
    }
    (p9 / n as f64, knn / n as f64)
}

fn combine(
    model: &Model,
    raw: &[Tensor],
    pick: &[usize],
    project: bool,
) -> Result<Vec<Vec<f32>>, Fail> {
    let mut sum: Option<Tensor> = None;
    for &i in pick {
        let mut e = normalise_rows(&raw[i])?;
        if project {
            if let Some(p) = &model.projection {
                e = normalise_rows(&p.forward(&e)?)?;
            }
        }
        sum = Some(match sum {
            None => e,
            Some(s) => (s + e)?,
        });
    }
    Ok(normalise_rows(&sum.unwrap())?.to_vec2::<f32>()?)
}

fn main() -> Result<(), Fail> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut source = ModelSource::Default;
    if args.first().map(String::as_str) == Some("--model") {
        source = ModelSource::Path(PathBuf::from(args.remove(1)));
        args.remove(0);
    }
    let model = Model::load(&source, &Device::Cpu)?;
    let side = model.preprocess().size;
    let big = Preprocess {
        size: side * 2,
        ..model.preprocess().clone()
    };
    let combos: Vec<(&str, Vec<usize>)> = vec![
        ("full", vec![0]),
        ("full+flip", vec![0, 1]),
        ("c75", vec![2]),
        ("full+flip+c75+c75f", vec![0, 1, 2, 3]),
        ("full+flip+4corners", vec![0, 1, 4, 5, 6, 7]),
        ("all8", (0..8).collect()),
    ];
    for folder in &args {
        let list = files(Path::new(folder));
        let mut names: Vec<String> = list.iter().map(|f| f.1.clone()).collect();
        names.dedup();
        let labels: Vec<usize> = list
            .iter()
            .map(|f| names.iter().position(|n| *n == f.1).unwrap())
            .collect();
        let sources: Vec<RgbImage> = list
            .par_iter()
            .map(|(p, _)| {
                let raw = data::load(p, &big).expect("decode");
                RgbImage::from_raw(big.size, big.size, raw).unwrap()
            })
            .collect();
        let raw = embed_views(&model, &sources, side)?;
        for power in [0.0f32, 0.25, 0.5] {
            for dim in [64usize, 128] {
                let full = normalise_rows(&raw[0])?;
                let cfg = ProjectionConfig {
                    dim,
                    power,
                    images: 0,
                };
                let fitted = Projection::fit(&full, &cfg)?;
                let vb = candle_nn::VarBuilder::from_tensors(
                    fitted,
                    candle_core::DType::F32,
                    &Device::Cpu,
                );
                let own = Projection::new(&cfg, full.dims2()?.1, vb.pp("projection"))?;
                for (name, pick) in [
                    ("full", vec![0usize]),
                    ("full+flip+4corners", vec![0, 1, 4, 5, 6, 7]),
                ] {
                    let mut sum: Option<Tensor> = None;
                    for &i in &pick {
                        let e = normalise_rows(&own.forward(&normalise_rows(&raw[i])?)?)?;
                        sum = Some(match sum {
                            None => e,
                            Some(s) => (s + e)?,
                        });
                    }
                    let v = normalise_rows(&sum.unwrap())?.to_vec2::<f32>()?;
                    let (p9, knn) = score(&v, &labels, names.len());
                    println!(
                        "{folder}\t{name}\town-pca {dim} p{power}\tP@9 {p9:.4}\tkNN-200 {knn:.4}"
                    );
                }
            }
        }
        for (name, pick) in &combos {
            for project in [false, true] {
                let v = combine(&model, &raw, pick, project)?;
                let (p9, knn) = score(&v, &labels, names.len());
                println!(
                    "{folder}\t{name}\t{}\tP@9 {p9:.4}\tkNN-200 {knn:.4}",
                    if project { "projected" } else { "pooled" }
                );
            }
        }
    }
    Ok(())
}
