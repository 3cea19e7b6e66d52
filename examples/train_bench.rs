//! Training-step and embedding throughput of the default architecture on CPU, on real images.
//!
//!     cargo run --release --example train_bench -- [IMAGE_DIR] [--steps N] [--rounds N]
//!         [--recipe R] [--embed-only] [--torch]
//!
//! IMAGE_DIR defaults to `data/cifar10/train` (fetch it with `bench/data.sh cifar10/train`). The recipe is
//! `default` (what `imgsearch train` runs: encode-and-dot critics, InfoNCE, two views of each
//! image per step) or `paper` (the DIM paper's concat critics with JSD, one view). Images per
//! second count images, not views: a two-view step of batch 64 encodes 128 rows. Prints
//! milliseconds per step (median of `--steps`, default 10) and images per second; nothing is
//! asserted. With `--torch` it also exports the model's weights and one real batch, runs
//! `bench/torch_reference.py` (a PyTorch twin of the same network; `$IMGSEARCH_PYTHON` or
//! `python3`), which first checks that it computes the same losses from the same weights and
//! input, and prints the candle/PyTorch ratios. `--rounds` (default 3) repeats both in turn and
//! reports the median ratio of each figure. `bench/run.sh` installs PyTorch for the CPU and runs
//! all of it.

#[path = "common/simd.rs"]
mod simd;
use candle_core::{Device, Tensor};
use imgsearch::data::{self, Preprocess};
use imgsearch::model::{objective, Critic, Dim, DimBatch, Estimator, ModelConfig, SeededInit};
use imgsearch::train::Adam;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    imgsearch::device::tune_allocator();
    imgsearch::device::tune_threads();
    println!(
        "kernels: simd {} (IMGSEARCH_SIMD lowers it; gemm picks its own from the CPU)",
        simd::limit_from_env()
    );
    let args = Args::parse()?;
    let (steps, torch, rounds, recipe) = (args.steps, args.torch, args.rounds, args.recipe);
    let device = Device::Cpu;
    let mut config = ModelConfig::default();
    let views = match recipe {
        Recipe::Default => 2,
        Recipe::Paper => {
            config.objective.critic = Critic::Concat;
            config.objective.estimator = Estimator::Jsd;
            1
        }
    };
    let preprocess = Preprocess::default();
    let images = load_images(&args.dir, &preprocess)?;
    println!(
        "{} real images from {}, threads {}, recipe {recipe:?} ({views} view(s) per image)",
        images.len(),
        args.dir.display(),
        rayon::current_num_threads()
    );

    let init = Arc::new(SeededInit::new(0, Default::default()));
    let model = Dim::new(&config, init.var_builder(&device))?;
    let mut bench = Steps {
        adam: Adam::new(init.vars(), 1e-3)?,
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
        model: &model,
        config: &config,
        views,
        steps,
        images: &images,
        preprocess: &preprocess,
        device: &device,
    };

    let export = std::env::temp_dir().join(format!(
        "imgsearch-torch-reference-{}.safetensors",
        std::process::id()
    ));
    if torch {
        export_reference(
            &model,
            &init,
            &bench.input(256, 0)?,
            &config,
            views,
            &export,
            &mut bench.rng,
        )?;
    }

    // Rounds alternate candle and PyTorch, so a drift of the machine's speed (a shared
    // host's clock) lands on both; the ratios reported are the medians over rounds.
    let mut ratios: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for round in 1..=rounds {
        println!("\nround {round} of {rounds}");
        let mut candle = std::collections::BTreeMap::new();
        let train_batches: &[usize] = if args.embed_only { &[] } else { &[64, 128] };
        for &batch in train_batches {
            candle.insert(
                format!("train_b{batch}_images_per_s"),
                bench.train_steps(batch)?,
            );
        }
        let rss = peak_rss_mb();
        println!("peak RSS after training steps: {rss:.0} MB");
        candle.insert("embed_b256_images_per_s".into(), bench.embed_batches()?);

        if torch {
            let reference = run_reference(&export, steps, recipe)?;
            compare_with_torch(&reference, &candle, rss, &mut ratios);
        }
    }
    let _ = std::fs::remove_file(&export);
    if torch {
        println!("\ncandle / PyTorch, median of {rounds} round(s) (all rounds):");
        for (key, values) in &mut ratios {
            let all: Vec<String> = values.iter().map(|r| format!("{r:.2}")).collect();
            println!("{key:<28} {:>8.2}   ({})", median(values), all.join(", "));
        }
    }
    Ok(())
}

/// The command line: the image folder, steps per timing, whether to compare with PyTorch, whether
/// to time embedding alone, how many rounds, and which training recipe.
struct Args {
    dir: PathBuf,
    steps: usize,
    torch: bool,
    embed_only: bool,
    rounds: usize,
    recipe: Recipe,
}

impl Args {
    /// Reads the flags and the folder (any other argument), with the bench's defaults.
    fn parse() -> Result<Self, Box<dyn std::error::Error>> {
        let mut args = std::env::args().skip(1);
        let mut parsed = Self {
            dir: PathBuf::from("data/cifar10/train"),
            steps: 10,
            torch: false,
            embed_only: false,
            rounds: 3,
            recipe: Recipe::Default,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--steps" => parsed.steps = args.next().ok_or("--steps needs a value")?.parse()?,
                "--recipe" => {
                    parsed.recipe = match args.next().as_deref() {
                        Some("default") => Recipe::Default,
                        Some("paper") => Recipe::Paper,
                        other => {
                            return Err(format!("--recipe default|paper, not {other:?}").into())
                        }
                    }
                }
                "--torch" => parsed.torch = true,
                "--embed-only" => parsed.embed_only = true,
                "--rounds" => {
                    parsed.rounds = args.next().ok_or("--rounds needs a value")?.parse()?;
                }
                other => parsed.dir = PathBuf::from(other),
            }
        }
        Ok(parsed)
    }
}

/// Decodes up to 1024 images of the folder into preprocessed pixels; at least 256 are needed.
fn load_images(
    dir: &Path,
    preprocess: &Preprocess,
) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let scan = data::scan(&[dir.to_path_buf()])?;
    let paths: Vec<PathBuf> = scan.files.into_iter().take(1024).map(|f| f.path).collect();
    let mut images = Vec::new();
    for batch in data::stream(paths, preprocess.clone(), 256) {
        images.extend(batch.items.into_iter().map(|d| d.rgb));
    }
    if images.len() < 256 {
        return Err(format!("need at least 256 images in {}", dir.display()).into());
    }
    Ok(images)
}

/// What the timed training and embedding steps share: the model, its optimiser, the noise's
/// generator and the real images the batches are cut from.
struct Steps<'a> {
    adam: Adam,
    rng: rand_chacha::ChaCha8Rng,
    model: &'a Dim,
    config: &'a ModelConfig,
    views: usize,
    steps: usize,
    images: &'a [Vec<u8>],
    preprocess: &'a Preprocess,
    device: &'a Device,
}

impl Steps<'_> {
    /// `n` images from `offset` on as one input tensor.
    fn input(&self, n: usize, offset: usize) -> candle_core::Result<Tensor> {
        self.preprocess.to_tensor(
            self.images[offset..offset + n].iter().map(|v| v.as_slice()),
            self.device,
        )
    }

    /// Times training steps (forward, backward, Adam) at one batch size after two warm-up steps;
    /// prints the median and its parts and returns images per second.
    fn train_steps(&mut self, batch: usize) -> Result<f64, Box<dyn std::error::Error>> {
        let (config, views) = (self.config, self.views);
        let mut times = Vec::new();
        let mut parts = Vec::new();
        let rows = batch * views;
        for step in 0..self.steps + 2 {
            // Distinct real images stand in for the augmented views: the step's cost
            // does not depend on what the pixels show.
            let x = self.input(rows, (step * rows) % (self.images.len() - rows))?;
            let noise: Vec<f32> = (0..rows * config.dim)
                .map(|_| StandardNormal.sample(&mut self.rng))
                .collect();
            let eps = Tensor::from_vec(noise, (rows, config.dim), self.device)?;
            let perm = objective::derangement(batch, &mut self.rng);
            let started = Instant::now();
            let losses = self.model.losses(&DimBatch {
                x: &x,
                x_code: None,
                views,
                eps: &eps,
                perm: &perm,
                prior_samples: None,
            })?;
            let total = losses.total(config)?;
            let _ = total.to_scalar::<f32>()?;
            let forward = started.elapsed().as_secs_f64();
            let grads = total.backward()?;
            let backward = started.elapsed().as_secs_f64();
            self.adam.step(&grads)?;
            let all = started.elapsed().as_secs_f64();
            if step >= 2 {
                times.push(all);
                parts.push([forward, backward - forward, all - backward]);
            }
        }
        let ms = median(&mut times) * 1e3;
        let share = |i: usize| parts.iter().map(|p| p[i]).sum::<f64>() / parts.len() as f64 * 1e3;
        println!(
            "train  batch {batch:>3}: {ms:8.1} ms/step  {:8.1} images/s  (forward {:.0} ms, backward {:.0} ms, Adam {:.0} ms)",
            batch as f64 / ms * 1e3,
            share(0),
            share(1),
            share(2)
        );
        Ok(batch as f64 / ms * 1e3)
    }

    /// Times embedding batches of 256 after one warm-up batch; prints the median and returns
    /// images per second.
    fn embed_batches(&self) -> Result<f64, Box<dyn std::error::Error>> {
        let batch = 256;
        let mut times = Vec::new();
        for step in 0..self.steps + 1 {
            let x = self.input(batch, (step * batch) % (self.images.len() - batch + 1))?;
            let started = Instant::now();
            let z = self.model.encoder.embed(&x)?;
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
        Ok(batch as f64 / ms * 1e3)
    }
}

/// Prints one round's candle rates beside PyTorch's and their ratios (kept in `ratios` for the
/// medians over rounds), then both peak RSS figures.
fn compare_with_torch(
    reference: &serde_json::Value,
    candle: &std::collections::BTreeMap<String, f64>,
    rss: f64,
    ratios: &mut std::collections::BTreeMap<String, Vec<f64>>,
) {
    println!(
        "PyTorch {} on {} threads; same losses from the same weights and batch: {}",
        reference["torch"], reference["threads"], reference["check"]
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "images/s", "candle", "PyTorch", "ratio"
    );
    for (key, ours) in candle {
        let theirs = reference[key].as_f64().unwrap_or(f64::NAN);
        println!(
            "{key:<28} {ours:>12.1} {theirs:>12.1} {:>8.2}",
            ours / theirs
        );
        ratios.entry(key.clone()).or_default().push(ours / theirs);
    }
    let torch_rss = reference["peak_rss_mb_after_train"]
        .as_f64()
        .unwrap_or(f64::NAN);
    println!(
        "{:<28} {rss:>12.0} {torch_rss:>12.0} {:>8.2}",
        "peak RSS MB (train b128)",
        rss / torch_rss
    );
}

/// Runs `bench/torch_reference.py` on the exported model and batch; its JSON report.
fn run_reference(
    export: &Path,
    steps: usize,
    recipe: Recipe,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let python = std::env::var("IMGSEARCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torch_reference.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(export)
        .arg(steps.to_string())
        .arg(recipe.name())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{python} {} failed: {stdout}{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_str(stdout.trim())?)
}

#[derive(Debug, Clone, Copy)]
enum Recipe {
    Default,
    Paper,
}

impl Recipe {
    fn name(self) -> &'static str {
        match self {
            Recipe::Default => "default",
            Recipe::Paper => "paper",
        }
    }
}

/// Writes the parameters, one batch of real images, the noise, the shuffle and the losses
/// candle computes for them, for the PyTorch twin to check itself against.
fn export_reference(
    model: &Dim,
    init: &SeededInit,
    x: &Tensor,
    config: &ModelConfig,
    views: usize,
    path: &Path,
    rng: &mut impl rand::Rng,
) -> Result<(), Box<dyn std::error::Error>> {
    let batch = 64;
    let rows = batch * views;
    let noise: Vec<f32> = (0..rows * config.dim)
        .map(|_| StandardNormal.sample(rng))
        .collect();
    let eps = Tensor::from_vec(noise, (rows, config.dim), x.device())?;
    let perm = objective::derangement(batch, rng);
    let l = model.losses(&DimBatch {
        x: &x.narrow(0, 0, rows)?,
        x_code: None,
        views,
        eps: &eps,
        perm: &perm,
        prior_samples: None,
    })?;
    let losses = Tensor::stack(&[l.global, l.local, l.prior], 0)?;
    let mut tensors: std::collections::HashMap<String, Tensor> = init
        .vars()
        .into_iter()
        .map(|(name, var)| (format!("param.{name}"), var.as_tensor().clone()))
        .collect();
    tensors.insert("input".into(), x.clone());
    tensors.insert("eps".into(), eps);
    tensors.insert(
        "perm".into(),
        Tensor::new(
            perm.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            x.device(),
        )?,
    );
    tensors.insert("losses".into(), losses);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
