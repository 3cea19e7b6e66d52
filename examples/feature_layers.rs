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
    let (r, l, s1, s0) = (refined, refined - 1, refined - 2, refined - 3);
    let mean = |map: usize| ((map, Pool::Mean), 1.0);
    let table: [(&str, Vec<(Part, f32)>); 12] = [
        ("pooled (refined mean)", vec![mean(r)]),
        ("refined gem", vec![((r, Pool::Gem), 1.0)]),
        ("refined max", vec![((r, Pool::Max), 1.0)]),
        ("local mean", vec![mean(l)]),
        ("stage1 mean", vec![mean(s1)]),
        ("pooled + stage1", vec![mean(r), mean(s1)]),
        ("pooled + stage1/2", vec![mean(r), ((s1, Pool::Mean), 0.5)]),
        ("pooled + local", vec![mean(r), mean(l)]),
        ("pooled + local + stage1", vec![mean(r), mean(l), mean(s1)]),
        (
            "pooled + stage1 + stage0",
            vec![mean(r), mean(s1), mean(s0)],
        ),
        (
            "gem + stage1 gem",
            vec![((r, Pool::Gem), 1.0), ((s1, Pool::Gem), 1.0)],
        ),
        ("pooled + refined max", vec![mean(r), ((r, Pool::Max), 1.0)]),
    ];
    table
        .into_iter()
        .map(|(name, parts)| (name.to_string(), parts))
        .collect()
}

/// One image's `(positions, channels)` map pooled over its positions.
fn pool(map: &[f32], channels: usize, how: Pool) -> Vec<f32> {
    let positions = map.chunks_exact(channels);
    let count = positions.len() as f32;
    let mut out = vec![if how == Pool::Max { f32::MIN } else { 0.0 }; channels];
    for position in positions {
        for (o, &v) in out.iter_mut().zip(position) {
            match how {
                Pool::Mean => *o += v,
                Pool::Gem => *o += v.max(0.0).powi(3),
                Pool::Max => *o = o.max(v),
            }
        }
    }
    match how {
        Pool::Mean => out.iter_mut().for_each(|v| *v /= count),
        Pool::Gem => out.iter_mut().for_each(|v| *v = (*v / count).cbrt()),
        Pool::Max => {}
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
                parts[slot].push(pool(one, *channels, how));
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
