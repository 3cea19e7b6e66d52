//! The `imgsearch` command line: parse flags, call the library, print plain text or JSON.

use clap::{Args, Parser, Subcommand, ValueEnum};
use imgsearch::data::Augment;
use imgsearch::device::{tune_allocator, tune_threads, DeviceChoice};
use imgsearch::eval::{self, EvalOptions};
use imgsearch::grid::{self, Row};
use imgsearch::index::{Index, SearchOptions};
use imgsearch::model::{Critic, Estimator, Model, ModelConfig, ModelSource, Norm, PriorKind};
use imgsearch::progress::Verbosity;
use imgsearch::search::{self, IndexOptions};
use imgsearch::train::{self, LrSchedule, TrainOptions};
use imgsearch::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "imgsearch",
    version,
    about = "Image similarity search with Deep InfoMax embeddings"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalFlags,
}

#[derive(Args, Clone, Copy)]
struct GlobalFlags {
    /// No progress bars or warnings on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Machine-readable output on stdout (implies --quiet for progress).
    #[arg(long, global = true)]
    json: bool,
    /// Where to run the model: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceChoice,
}

impl GlobalFlags {
    fn verbosity(&self) -> Verbosity {
        Verbosity {
            quiet: self.quiet || self.json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Learn a DIM encoder from unlabelled images.
    Train(TrainArgs),
    /// Embed every image under the folders into an index (new, changed and deleted files are
    /// brought up to date on re-runs).
    Index(IndexArgs),
    /// Find the nearest neighbours of images by cosine similarity.
    Query(QueryArgs),
    /// A contact sheet of random indexed images, each with its nearest neighbours.
    Grid(GridArgs),
    /// Retrieval quality on a labelled folder (class = parent folder): P@k and kNN accuracy.
    Eval(EvalArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Baseline {
    /// Cosine on raw pixels at the model's input size, mean-centred.
    Pixels,
    /// A randomly initialised encoder of the same architecture.
    Random,
}

#[derive(Args)]
struct GridArgs {
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// Number of random query images (rows).
    #[arg(long, default_value_t = 10)]
    rows: usize,
    /// Neighbours per row (the query itself is left out).
    #[arg(short, default_value_t = 9)]
    k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "knn.png")]
    out: PathBuf,
    /// Thumbnail size in pixels.
    #[arg(long, default_value_t = 64)]
    tile: u32,
}

#[derive(Args)]
struct EvalArgs {
    /// Labelled folder: DIR/CLASS/IMAGE.
    dir: PathBuf,
    /// Model folder (default: the bundled model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Neighbours counted for P@k.
    #[arg(short, default_value_t = 9)]
    k: usize,
    /// Neighbours voting in the weighted kNN classifier.
    #[arg(long, default_value_t = 200)]
    knn: usize,
    /// Query only this many images (evenly spaced); every image is still indexed.
    #[arg(long)]
    queries: Option<usize>,
    /// Score a floor instead of the model.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AugmentChoice {
    None,
    Standard,
}

#[derive(Args)]
struct TrainArgs {
    /// Folders (or files) of training images; labels are not used.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output folder: model.safetensors + config.json, and the checkpoint for --resume.
    #[arg(long, default_value = "model")]
    out: PathBuf,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per step [default: 64; with --resume, the run's own, which cannot change].
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate [default: 0.001; with --resume, the run's own].
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate schedule over all steps of all epochs [default: cosine; with --resume,
    /// the run's own].
    #[arg(long, value_enum)]
    lr_schedule: Option<LrSchedule>,
    /// Seed of the initial weights and of each epoch's order and augmentations [default: 0;
    /// with --resume, the run's own].
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its checkpoint (same data; --epochs is the new total).
    /// The run keeps its architecture, objective, views, augmentation, batch, and (unless
    /// given) its learning rate, schedule and seed.
    #[arg(long)]
    resume: bool,
    /// Train on at most this many images.
    #[arg(long)]
    limit: Option<usize>,
    /// Random views of each image while training.
    #[arg(long, value_enum, default_value = "standard")]
    augment: AugmentChoice,
    /// Embedding size D.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Input size in pixels (a multiple of 8).
    #[arg(long, default_value_t = 32)]
    size: u32,
    /// Output channels of the encoder's strided convolutions, one per halving of the input
    /// (the last is the local feature map's depth).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 128, 256])]
    channels: Vec<usize>,
    /// 3×3 stride-1 convolutions after each strided convolution of the encoder.
    #[arg(long, default_value_t = 0)]
    stage_convs: usize,
    /// Weight of the global mutual information term.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Weight of the local mutual information term.
    #[arg(long, default_value_t = 1.5)]
    beta: f32,
    /// Weight of the prior term.
    #[arg(long, default_value_t = 0.01)]
    gamma: f32,
    #[arg(long, value_enum, default_value = "infonce")]
    estimator: Estimator,
    #[arg(long, value_enum, default_value = "kl")]
    prior: PriorKind,
    /// How critics score pairs: concat (features ‖ code through an MLP) or dot (encode-and-dot).
    #[arg(long, value_enum, default_value = "dot")]
    critic: Critic,
    /// Normalisation after each encoder convolution: none, or batch (BatchNorm, folded into
    /// the convolutions for inference).
    #[arg(long, value_enum, default_value = "none")]
    norm: Norm,
    /// Temperature of the dot critic's cosine scores.
    #[arg(long, default_value_t = 0.1)]
    temperature: f32,
    /// The DIM paper's occlusion: hide a square of this share of the image side from the
    /// global code's input (the local features see the whole image); 0 turns it off. Each
    /// step encodes every view twice.
    #[arg(long, default_value_t = 0.0)]
    occlude: f32,
    /// Augmented views per image and step (2: code of one view against features of the other).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    views: u8,
    /// Folder of the pixel cache (decoded images, reused by later runs and --resume)
    /// [default: --out].
    #[arg(long, conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Decode into memory only: no pixel cache is read or written.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Args)]
struct IndexArgs {
    /// Folders (or files) of images to index.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Index folder.
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// Model folder from `imgsearch train` (default: the bundled model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Images embedded per batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

#[derive(Args)]
struct QueryArgs {
    /// Query images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Number of neighbours.
    #[arg(short, default_value_t = 9)]
    k: usize,
    #[arg(long, default_value = "index")]
    index: PathBuf,
    /// Model to embed the queries with; must be the index's (default: the index's own).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Brute force over all vectors instead of the graph (exact ground truth).
    #[arg(long)]
    exact: bool,
    /// Graph search beam width: higher is slower and more accurate.
    #[arg(long, default_value_t = 64)]
    ef: usize,
    /// Also draw the queries and their neighbours as a contact sheet (PNG).
    #[arg(long)]
    grid: Option<PathBuf>,
}

fn main() -> ExitCode {
    tune_allocator();
    tune_threads();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let flags = cli.global;
    let device = flags.device.resolve()?;
    match cli.command {
        Command::Train(args) => {
            let config = ModelConfig {
                dim: args.dim,
                channels: args.channels,
                stage_convs: args.stage_convs,
                preprocess: imgsearch::data::Preprocess {
                    size: args.size,
                    ..Default::default()
                },
                objective: imgsearch::model::Objective {
                    alpha: args.alpha,
                    beta: args.beta,
                    gamma: args.gamma,
                    estimator: args.estimator,
                    prior: args.prior,
                    critic: args.critic,
                    temperature: args.temperature,
                    occlude: args.occlude,
                },
                norm: args.norm,
                ..Default::default()
            };
            let cache = (!args.no_cache).then(|| {
                args.cache
                    .unwrap_or_else(|| args.out.clone())
                    .join(imgsearch::data::CACHE_FILE)
            });
            let opts = TrainOptions {
                roots: args.dirs,
                out: args.out,
                epochs: args.epochs,
                batch: args.batch,
                lr: args.lr,
                schedule: args.lr_schedule,
                seed: args.seed,
                resume: args.resume,
                limit: args.limit,
                augment: match args.augment {
                    AugmentChoice::None => Augment::none(),
                    AugmentChoice::Standard => Augment::standard(),
                },
                views: args.views as usize,
                config,
                cache,
                verbosity: flags.verbosity(),
            };
            let report = train::train(&opts, &device)?;
            if flags.json {
                println!("{}", json!(report));
            } else if !flags.quiet {
                println!(
                    "trained on {} images ({} skipped), {} epochs, {} steps in {:.1} s ({:.1} images/s); model in {}",
                    report.images,
                    report.skipped,
                    report.epochs,
                    report.steps,
                    report.seconds,
                    report.images_per_second,
                    report.model.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Index(args) => {
            let model = Model::load(&ModelSource::from_flag(args.model), &device)?;
            let opts = IndexOptions {
                roots: args.dirs,
                index: args.index,
                batch: args.batch.max(1),
                commit_every: 5_000,
                commit_interval: Duration::from_secs(30),
                verbosity: flags.verbosity(),
            };
            let summary = search::index_folders(&model, &opts, |_| {})?;
            if flags.json {
                println!("{}", json!(summary));
            } else if !flags.quiet {
                println!(
                    "{} images in {}: {} added, {} updated, {} removed, {} skipped, {:.1} s",
                    summary.total,
                    opts.index.display(),
                    summary.added,
                    summary.updated,
                    summary.removed,
                    summary.skipped,
                    summary.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Grid(args) => {
            let index = Index::open(&args.index)?;
            let model = search::model_for_index(&index, &args.index, None, &device)?;
            let rows = grid::random_rows(&model, &index, args.rows, args.k, args.seed)?;
            grid::save(&grid::contact_sheet(&rows, args.tile), &args.out)?;
            if !flags.quiet && !flags.json {
                println!("{} rows written to {}", rows.len(), args.out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let model = Model::load(&ModelSource::from_flag(args.model), &device)?;
            let opts = EvalOptions {
                root: args.dir,
                k: args.k,
                knn: args.knn,
                temperature: 0.07,
                queries: args.queries,
                verbosity: flags.verbosity(),
            };
            let report = match args.baseline {
                None => eval::evaluate_model(&model, &opts)?,
                Some(Baseline::Random) => {
                    let random = Model::random(model.config.clone(), 0, &device)?;
                    eval::evaluate_model(&random, &opts)?
                }
                Some(Baseline::Pixels) => eval::evaluate_pixels(model.preprocess(), &opts)?,
            };
            if flags.json {
                println!("{}", json!(report));
            } else {
                println!(
                    "{}: {} images, {} queries, {} skipped",
                    report.what, report.images, report.queries, report.skipped
                );
                println!(
                    "{:<16} {:>7} {:>8} {:>8}",
                    "class",
                    "images",
                    format!("P@{}", report.k),
                    format!("kNN-{}", report.knn)
                );
                for c in &report.classes {
                    println!(
                        "{:<16} {:>7} {:>8.4} {:>8.4}",
                        c.class, c.images, c.precision_at_k, c.knn_accuracy
                    );
                }
                println!(
                    "{:<16} {:>7} {:>8.4} {:>8.4}",
                    "all", report.queries, report.precision_at_k, report.knn_accuracy
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Query(args) => {
            let index = Index::open(&args.index)?;
            let model = search::model_for_index(&index, &args.index, args.model, &device)?;
            let options = SearchOptions {
                k: args.k,
                ef: args.ef,
                exact: args.exact,
            };
            let answers = search::query(&model, &index, &args.images, &options, 256)?;
            let mut failed = false;
            for answer in &answers {
                match &answer.result {
                    Err(message) => {
                        failed = true;
                        eprintln!("error: {message}");
                    }
                    Ok(hits) if flags.json => {
                        let results: Vec<_> = hits
                            .iter()
                            .enumerate()
                            .map(|(i, h)| json!({"rank": i + 1, "path": h.path, "score": h.score}))
                            .collect();
                        println!("{}", json!({"query": answer.query, "results": results}));
                    }
                    Ok(hits) => {
                        println!("{}", answer.query.display());
                        for (i, hit) in hits.iter().enumerate() {
                            println!("{:>4}  {:.4}  {}", i + 1, hit.score, hit.path.display());
                        }
                    }
                }
            }
            if let Some(path) = &args.grid {
                let rows: Vec<Row> = answers
                    .iter()
                    .filter_map(|a| {
                        a.result.as_ref().ok().map(|hits| Row {
                            query: a.query.clone(),
                            neighbours: hits.clone(),
                        })
                    })
                    .collect();
                grid::save(&grid::contact_sheet(&rows, 64), path)?;
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
