//! Training-step and embedding throughput of the default architecture on CPU, on real images.
//!
//!     cargo run --release --example train_bench -- [IMAGE_DIR] [--steps N]
//!
//! IMAGE_DIR defaults to `data/cifar10/train` (see the README for extracting it). Prints
//! milliseconds per step and images per second; nothing is asserted.

use candle_core::{Device, Tensor};
use imgsearch::data::{self, Preprocess};
use imgsearch::model::{objective, ModelConfig, SeededInit};
use imgsearch::train::{Adam, Dim};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    imgsearch::device::tune_allocator();
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("data/cifar10/train");
    let mut steps = 5usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--steps" => steps = args.next().ok_or("--steps needs a value")?.parse()?,
            other => dir = PathBuf::from(other),
        }
    }
    let device = Device::Cpu;
    let config = ModelConfig::default();
    let preprocess = Preprocess::default();

    let scan = data::scan(std::slice::from_ref(&dir))?;
    let paths: Vec<PathBuf> = scan.files.into_iter().take(1024).map(|f| f.path).collect();
    let mut images = Vec::new();
    for batch in data::stream(paths, preprocess.clone(), 256) {
        images.extend(batch.items.into_iter().map(|d| d.rgb));
    }
    if images.len() < 256 {
        return Err(format!("need at least 256 images in {}", dir.display()).into());
    }
    println!(
        "{} real images from {}, threads {}",
        images.len(),
        dir.display(),
        rayon::current_num_threads()
    );

    let init = Arc::new(SeededInit::new(0, Default::default()));
    let model = Dim::new(&config, init.var_builder(&device))?;
    let mut adam = Adam::new(init.vars(), 1e-3)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let input = |n: usize, offset: usize| {
        preprocess.to_tensor(
            images[offset..offset + n].iter().map(|v| v.as_slice()),
            &device,
        )
    };

    for batch in [64usize, 128] {
        let mut times = Vec::new();
        for step in 0..steps + 2 {
            let x = input(batch, (step * batch) % (images.len() - batch))?;
            let noise: Vec<f32> = (0..batch * config.dim)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let eps = Tensor::from_vec(noise, (batch, config.dim), &device)?;
            let perm = Tensor::new(objective::derangement(batch, &mut rng), &device)?;
            let started = Instant::now();
            let (g, l, p) = model.losses(&x, &eps, &perm)?;
            let total = (((g * 0.5)? + (l * 1.5)?)? + (p * 0.01)?)?;
            let grads = total.backward()?;
            adam.step(&grads)?;
            if step >= 2 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        let ms = median(&mut times) * 1e3;
        println!(
            "train  batch {batch:>3}: {ms:8.1} ms/step  {:8.1} images/s",
            batch as f64 / ms * 1e3
        );
    }

    let batch = 256;
    let mut times = Vec::new();
    for step in 0..steps + 1 {
        let x = input(batch, (step * batch) % (images.len() - batch + 1))?;
        let started = Instant::now();
        let z = model.encoder.embed(&x)?;
        let _ = z.to_vec2::<f32>()?;
        if step >= 1 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let ms = median(&mut times) * 1e3;
    println!(
        "embed  batch {batch}: {ms:8.1} ms/batch {:8.1} images/s",
        batch as f64 / ms * 1e3
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
