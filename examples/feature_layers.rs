//! Which of the encoder's features retrieve best: each resolution's feature map pooled
//! (average, generalised mean with p = 3, maximum), alone and concatenated (each part
//! L2-normalised first), searched as they are and through a projection (PCA, 128 components,
//! each divided by the fourth root of its variance, as `train --projection` fits it) fitted on
//! unlabelled photos. Exact leave-one-out P@9 / kNN-200 per labelled folder.
//!
//!   cargo run --release --example feature_layers -- [--model DIR] \
//!       --fit data/tinyimagenet/train:10000 --fit data/cifar10/train:10000 FOLDER...
//!
//! `--fit FOLDER:N` takes N files evenly spaced through the folder (sorted by path).

#[path = "common/fail.rs"]
mod fail;
#[path = "common/labelled.rs"]
mod labelled;

use candle_core::{DType, Device, Tensor};
use fail::{bail, Result};
use imgsearch::data;
use imgsearch::model::{
    features_tensor, normalise_rows, Model, ModelSource, Projection, ProjectionConfig,
    PROJECTION_POWER,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One pooled part: which map (0 = finest stage, last = the refined local map) and how.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pool {
    Mean,
    Gem,
    Max,
}

type Part = (usize, Pool);

/// The combinations scored: name, then (part, weight) list.
fn combos(refined: usize) -> Vec<(String, Vec<(Part, f32)>)> {
    let r = refined;
    let l = refined - 1;
    let s1 = refined - 2;
    let s0 = refined - 3;
    let one = |name: &str, parts: &[(Part, f32)]| (name.to_string(), parts.to_vec());
    vec![
        one("pooled (refined mean)", &[((r, Pool::Mean), 1.0)]),
        one("refined gem", &[((r, Pool::Gem), 1.0)]),
        one("refined max", &[((r, Pool::Max), 1.0)]),
        one("local mean", &[((l, Pool::Mean), 1.0)]),
        one("stage1 mean", &[((s1, Pool::Mean), 1.0)]),
        one(
            "pooled + stage1",
            &[((r, Pool::Mean), 1.0), ((s1, Pool::Mean), 1.0)],
        ),
        one(
            "pooled + stage1/2",
            &[((r, Pool::Mean), 1.0), ((s1, Pool::Mean), 0.5)],
        ),
        one(
            "pooled + local",
            &[((r, Pool::Mean), 1.0), ((l, Pool::Mean), 1.0)],
        ),
        one(
            "pooled + local + stage1",
            &[
                ((r, Pool::Mean), 1.0),
                ((l, Pool::Mean), 1.0),
                ((s1, Pool::Mean), 1.0),
            ],
        ),
        one(
            "pooled + stage1 + stage0",
            &[
                ((r, Pool::Mean), 1.0),
                ((s1, Pool::Mean), 1.0),
                ((s0, Pool::Mean), 1.0),
            ],
        ),
        one(
            "gem + stage1 gem",
            &[((r, Pool::Gem), 1.0), ((s1, Pool::Gem), 1.0)],
        ),
        one(
            "pooled + refined max",
            &[((r, Pool::Mean), 1.0), ((r, Pool::Max), 1.0)],
        ),
    ]
}

fn pool(map: &[f32], positions: usize, channels: usize, how: Pool) -> Vec<f32> {
    let mut out = vec![0f32; channels];
    match how {
        Pool::Mean => {
            for p in 0..positions {
                for c in 0..channels {
                    out[c] += map[p * channels + c];
                }
            }
            out.iter_mut().for_each(|v| *v /= positions as f32);
        }
        Pool::Gem => {
            for p in 0..positions {
                for c in 0..channels {
                    out[c] += map[p * channels + c].max(0.0).powi(3);
                }
            }
            out.iter_mut()
                .for_each(|v| *v = (*v / positions as f32).cbrt());
        }
        Pool::Max => {
            out.iter_mut().for_each(|v| *v = f32::MIN);
            for p in 0..positions {
                for c in 0..channels {
                    out[c] = out[c].max(map[p * channels + c]);
                }
            }
        }
    }
    out
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Every part each combination needs, for each file: `parts[part][image]`.
fn embed_parts(model: &Model, files: &[PathBuf], wanted: &[Part]) -> Result<Vec<Vec<Vec<f32>>>> {
    let pre = model.preprocess();
    let mut parts: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(files.len()); wanted.len()];
    for chunk in files.chunks(256) {
        let pixels: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|p| data::load(p, pre).map_err(|e| format!("{}: {e}", p.display())))
            .collect::<std::result::Result<_, _>>()?;
        let x = pre.to_tensor(pixels.iter().map(|p| p.as_slice()), &Device::Cpu)?;
        let maps = model.encoder.stage_maps(&x)?;
        let maps: Vec<(Vec<f32>, usize, usize)> = maps
            .iter()
            .map(|m| {
                let (_, h, w, c) = m.dims4()?;
                Ok((m.flatten_all()?.to_vec1::<f32>()?, h * w, c))
            })
            .collect::<candle_core::Result<_>>()?;
        for (slot, &(map, how)) in wanted.iter().enumerate() {
            let (values, positions, channels) = &maps[map];
            let per_image = positions * channels;
            for i in 0..chunk.len() {
                let one = &values[i * per_image..(i + 1) * per_image];
                parts[slot].push(pool(one, *positions, *channels, how));
            }
        }
    }
    Ok(parts)
}

fn combine(parts: &[Vec<Vec<f32>>], wanted: &[Part], combo: &[(Part, f32)]) -> Vec<Vec<f32>> {
    let n = parts[0].len();
    (0..n)
        .map(|i| {
            let mut v = Vec::new();
            for (part, weight) in combo {
                let slot = wanted.iter().position(|w| w == part).unwrap_or(0);
                v.extend(unit(parts[slot][i].clone()).into_iter().map(|x| x * weight));
            }
            unit(v)
        })
        .collect()
}

fn project(p: &Projection, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let x = features_tensor(rows, &Device::Cpu)?;
    Ok(normalise_rows(&p.forward(&x)?)?.to_vec2::<f32>()?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut source = ModelSource::Default;
    let mut fit: Vec<(PathBuf, usize)> = Vec::new();
    let mut folders: Vec<PathBuf> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => source = ModelSource::Path(args.next().ok_or("--model DIR")?.into()),
            "--fit" => {
                let spec = args.next().ok_or("--fit FOLDER:N")?;
                let (folder, n) = spec.rsplit_once(':').ok_or("--fit FOLDER:N")?;
                fit.push((folder.into(), n.parse()?));
            }
            _ => folders.push(arg.into()),
        }
    }
    if fit.is_empty() || folders.is_empty() {
        bail!("usage: feature_layers [--model DIR] --fit FOLDER:N... FOLDER...");
    }
    let model = Model::load(&source, &Device::Cpu)?;
    let side = model.preprocess().size as usize;
    let probe = Tensor::zeros((1, side, side, 3), DType::F32, &Device::Cpu)?;
    let refined = model.encoder.stage_maps(&probe)?.len() - 1;
    let combos = combos(refined);
    let mut wanted: Vec<Part> = Vec::new();
    for (_, combo) in &combos {
        for (part, _) in combo {
            if !wanted.contains(part) {
                wanted.push(*part);
            }
        }
    }
    let mut fit_files = Vec::new();
    for (folder, n) in &fit {
        let all = labelled::read(folder)?.files;
        let step = (all.len() as f64 / *n as f64).max(1.0);
        fit_files.extend((0..*n).filter_map(|i| all.get((i as f64 * step) as usize).cloned()));
    }
    eprintln!("fitting on {} photos", fit_files.len());
    let fit_parts = embed_parts(&model, &fit_files, &wanted)?;
    let cfg = ProjectionConfig {
        dim: 128,
        power: PROJECTION_POWER,
        images: fit_files.len(),
    };
    let mut projections: HashMap<String, Projection> = HashMap::new();
    for (name, combo) in &combos {
        let rows = combine(&fit_parts, &wanted, combo);
        let tensors = Projection::fit(&features_tensor(&rows, &Device::Cpu)?, &cfg)?;
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let dim = rows[0].len();
        projections.insert(
            name.clone(),
            Projection::new(&cfg, dim, vb.pp("projection"))?,
        );
    }
    drop(fit_parts);
    println!("folder\tfeatures\tdims\tP@9 / kNN-200\tprojected P@9 / kNN-200");
    for folder in &folders {
        let set = labelled::read(Path::new(folder))?;
        let parts = embed_parts(&model, &set.files, &wanted)?;
        for (name, combo) in &combos {
            let rows = combine(&parts, &wanted, combo);
            let (p9, knn) = labelled::score(&rows, &set.labels, set.classes.len());
            let projected = project(&projections[name], &rows)?;
            let (pp9, pknn) = labelled::score(&projected, &set.labels, set.classes.len());
            println!(
                "{}\t{name}\t{}\t{p9:.4} / {knn:.4}\t{pp9:.4} / {pknn:.4}",
                folder.display(),
                rows[0].len()
            );
        }
    }
    Ok(())
}
