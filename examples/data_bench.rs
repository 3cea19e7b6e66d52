//! Loading throughput on real images: decode-only (decode + preprocess on all rayon threads,
//! nothing else) against the real `imgsearch index` job with the bundled model, and training
//! epoch 1 (which decodes into the pixel cache) against epoch 2 and a `--resume` (which read it).
//!
//!     cargo run --release --example data_bench -- [--index DIR]... [--train DIR] [--epochs N]
//!
//! Defaults: `--index data/cifar10/test --index data/signdigits/test --train
//! data/signdigits/test --epochs 2`. Files are read once before timing, so every figure is
//! with the files in the page cache. Prints numbers; asserts nothing.

use candle_core::Device;
use imgsearch::data::{self, Preprocess};
use imgsearch::model::{Model, ModelSource};
use imgsearch::pipeline::{index_folders, IndexOptions};
use imgsearch::progress::Verbosity;
use imgsearch::train::{self, TrainOptions};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    imgsearch::device::tune_allocator();
    imgsearch::device::tune_threads();
    let args = Args::parse()?;
    let device = Device::Cpu;
    let tmp = std::env::temp_dir().join(format!("imgsearch-data-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    println!("rayon threads: {}", rayon::current_num_threads());

    let started = Instant::now();
    let model = Model::load(&ModelSource::Default, &device)?;
    println!(
        "bundled model loaded in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for (n, dir) in args.index_dirs.iter().enumerate() {
        bench_indexing(&model, dir, &tmp.join(format!("index-{n}")))?;
    }
    bench_training(&args, &device, &tmp.join("model"))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// The command line: folders to index, the folder to train on and for how many epochs.
struct Args {
    index_dirs: Vec<PathBuf>,
    train_dir: PathBuf,
    epochs: usize,
}

impl Args {
    /// Reads `--index DIR` (repeatable), `--train DIR` and `--epochs N`, with the bench's defaults.
    fn parse() -> Result<Self, Box<dyn std::error::Error>> {
        let mut index_dirs = Vec::new();
        let mut train_dir = PathBuf::from("data/signdigits/test");
        let mut epochs = 2usize;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--index" => index_dirs.push(PathBuf::from(value()?)),
                "--train" => train_dir = PathBuf::from(value()?),
                "--epochs" => epochs = value()?.parse()?,
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if index_dirs.is_empty() {
            index_dirs = vec!["data/cifar10/test".into(), "data/signdigits/test".into()];
        }
        Ok(Self {
            index_dirs,
            train_dir,
            epochs,
        })
    }
}

/// Times decoding alone, embedding alone and the whole index job over one folder, and prints one
/// line of rates for it.
fn bench_indexing(
    model: &Model,
    dir: &Path,
    index_dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<PathBuf> = data::scan(&[dir.to_path_buf()])?
        .files
        .into_iter()
        .map(|f| f.path)
        .collect();
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::read(p).map_or(0, |b| b.len() as u64))
        .sum();
    let (ok, decode) = time(|| decode_only(&paths, model.preprocess()));
    let (_, full) = time(|| full_decode_only(&paths, model.preprocess()));
    let opts = IndexOptions {
        verbosity: Verbosity { quiet: true },
        ..IndexOptions::new(index_dir.to_path_buf(), vec![dir.to_path_buf()])
    };
    let (summary, index) = time(|| index_folders(model, &opts, &mut |_| {}));
    let summary = summary?;
    let embed = embed_only(model, &paths)?;
    println!(
        "{}: {} files, {:.1} MB; decode-only {:.0} images/s ({ok} decoded; {:.0} with every \
         JPEG decoded at full size); embed-only {:.0} images/s; index job {:.0} images/s \
         ({} added, {} skipped, {:.2} s)",
        dir.display(),
        paths.len(),
        bytes as f64 / 1e6,
        paths.len() as f64 / decode,
        paths.len() as f64 / full,
        embed,
        paths.len() as f64 / index,
        summary.added,
        summary.skipped,
        index
    );
    Ok(())
}

/// Trains from scratch for the asked epochs, then resumes for one more, printing how long loading
/// (decoding into the cache, then reading the cache back) and the training steps took.
fn bench_training(
    args: &Args,
    device: &Device,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let (train_dir, epochs) = (&args.train_dir, args.epochs);
    let mut opts = TrainOptions {
        start: Some(train::Start::Scratch),
        epochs: Some(epochs),
        batch: Some(64),
        lr: Some(1e-3),
        schedule: Some(train::LrSchedule::Constant),
        seed: Some(0),
        augment: data::Augment::none(),
        views: 1,
        verbosity: Verbosity { quiet: true },
        ..TrainOptions::new(vec![train_dir.clone()], out.to_path_buf())
    };
    let first = train::train(&opts, device, &mut |_| {})?;
    let per_epoch = &first.epoch_images_per_second;
    let images = first.images as f64;
    let epoch1 = images / (first.load.seconds + images / per_epoch[0]);
    println!(
        "train {}: {} images; load (decode into cache) {:.2} s = {:.0} images/s, {} decoded",
        train_dir.display(),
        first.images,
        first.load.seconds,
        images / first.load.seconds,
        first.load.decoded
    );
    println!(
        "  epoch 1 incl. load {epoch1:.1} images/s; steps alone per epoch: {}",
        per_epoch
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    opts.resume = true;
    opts.epochs = Some(epochs + 1);
    let resumed = train::train(&opts, device, &mut |_| {})?;
    println!(
        "  --resume: load from cache {:.4} s, {} decoded, {} from cache; epoch {} {:.1} images/s",
        resumed.load.seconds,
        resumed.load.decoded,
        resumed.load.from_cache,
        epochs + 1,
        resumed
            .epoch_images_per_second
            .first()
            .copied()
            .unwrap_or(0.0)
    );
    Ok(())
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed().as_secs_f64())
}

/// Decodes and preprocesses every file on all rayon threads; returns how many decoded.
fn decode_only(paths: &[PathBuf], preprocess: &Preprocess) -> usize {
    paths
        .par_iter()
        .filter(|p| data::load(p, preprocess).is_ok())
        .count()
}

/// The same with every image decoded at full size (no reduced-scale JPEG decode).
fn full_decode_only(paths: &[PathBuf], preprocess: &Preprocess) -> usize {
    paths
        .par_iter()
        .filter(|p| data::decode(p).map(|i| preprocess.to_rgb(&i)).is_ok())
        .count()
}

/// Embedding alone, on pixels decoded beforehand (at most 2,048 images), in images/s.
fn embed_only(model: &Model, paths: &[PathBuf]) -> Result<f64, Box<dyn std::error::Error>> {
    let pixels: Vec<Vec<u8>> = paths
        .par_iter()
        .take(2048)
        .filter_map(|p| data::load(Path::new(p), model.preprocess()).ok())
        .collect();
    let (result, seconds) = time(|| {
        pixels
            .chunks(256)
            .try_for_each(|chunk| model.embed(chunk.iter().map(Vec::as_slice)).map(drop))
    });
    result?;
    Ok(pixels.len() as f64 / seconds)
}
