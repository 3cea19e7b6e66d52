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

#[path = "common/labelled.rs"]
mod labelled;

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
        let set = labelled::read(Path::new(folder))?;
        let (labels, classes) = (&set.labels, set.classes.len());
        let sources: Vec<RgbImage> = set
            .files
            .par_iter()
            .map(|p| {
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
                    let (p9, knn) = labelled::score(&v, labels, classes);
                    println!(
                        "{folder}\t{name}\town-pca {dim} p{power}\tP@9 {p9:.4}\tkNN-200 {knn:.4}"
                    );
                }
            }
        }
        for (name, pick) in &combos {
            for project in [false, true] {
                let v = combine(&model, &raw, pick, project)?;
                let (p9, knn) = labelled::score(&v, labels, classes);
                println!(
                    "{folder}\t{name}\t{}\tP@9 {p9:.4}\tkNN-200 {knn:.4}",
                    if project { "projected" } else { "pooled" }
                );
            }
        }
    }
    Ok(())
}
