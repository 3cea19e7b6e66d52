//! The command line's flags (clap), each command's help with examples, and their conversion
//! into the library's option structs. Defaults that the library owns are read from it, not
//! restated; the enums the flags name are mirrored here so the library stays free of clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use imgsearch::data::{Augment, ScanOptions};
use imgsearch::device::DeviceChoice;
use imgsearch::index::{SearchOptions, DEFAULT_GRAPH_THRESHOLD};
use imgsearch::model::{self, ModelConfig, ModelSource, Objective};
use imgsearch::pipeline::{self, CommitPolicy, EvalOptions, IndexOptions};
use imgsearch::progress::Verbosity;
use imgsearch::store::Location;
use imgsearch::train::{self, PixelCache, Start, TrainOptions};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit status: 0 success, 1 runtime error (a file, the index, a model), 2 usage error.";

#[derive(Parser)]
#[command(
    name = "imgsearch",
    version,
    about = "Image similarity search with Deep InfoMax embeddings",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalFlags,
}

#[derive(Args, Clone, Copy)]
pub struct GlobalFlags {
    /// No progress bars, warnings or skipped-file lines on stderr (errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// JSON Lines on stdout, one record per line (docs/JSON.md); implies --quiet on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where to run the model: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceChoice,
    /// Widest CPU vector instructions the hand-written kernels may use [default: the widest the
    /// CPU has]. For measuring one binary at each level; results are the same within rounding.
    #[arg(long, global = true, env = "IMGSEARCH_SIMD", value_enum)]
    pub simd: Option<SimdChoice>,
}

/// `--simd`: a ceiling on [`imgsearch::device::SimdLevel`].
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SimdChoice {
    /// The x86-64 baseline (SSE2) only.
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 F (where the CPU has it).
    Avx512,
}

impl From<SimdChoice> for imgsearch::device::SimdLevel {
    fn from(choice: SimdChoice) -> Self {
        match choice {
            SimdChoice::Portable => Self::Portable,
            SimdChoice::Avx2 => Self::Avx2Fma,
            SimdChoice::Avx512 => Self::Avx512,
        }
    }
}

impl GlobalFlags {
    pub fn verbosity(&self) -> Verbosity {
        Verbosity {
            quiet: self.quiet || self.json,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Learn a DIM encoder from unlabelled images (by default, fine-tune the bundled model).
    #[command(after_help = concat!("Examples:
  imgsearch train ~/Pictures --out my-model --minutes 10     # fine-tune the bundled model
  imgsearch train ~/Pictures --out my-model --minutes 10 --eval ~/Labelled   # scored before/after
  imgsearch train ~/Pictures --out my-model --epochs 30 --resume
  imgsearch train data/cifar10/train --out m --from scratch --epochs 30
  imgsearch train data/cifar10/train --out m --critic concat --estimator jsd --views 1 --augment none

", "Exit status: 0 success, 1 runtime error, 2 usage error (a different --batch on --resume is one)."))]
    Train(TrainArgs),
    /// Embed every image under the folders into an index. The index remembers its folders:
    /// new, changed and deleted files are brought up to date on re-runs, and a run without
    /// folders re-scans all of them.
    #[command(after_help = concat!("Examples:
  imgsearch index ~/Pictures                 # into ./index, with the bundled model
  imgsearch index ~/Scans --index index      # adds a second folder; ~/Pictures is kept
  imgsearch index                            # brings every recorded folder up to date
  imgsearch index --repair                   # drops damaged files and embeds their images again

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Index(IndexArgs),
    /// Drop folders from an index: their entries are removed and re-runs no longer scan them.
    #[command(after_help = concat!("Examples:
  imgsearch forget ~/Scans
  imgsearch forget /media/old-drive/photos --index index

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Forget(ForgetArgs),
    /// Find the nearest neighbours of images by cosine similarity.
    #[command(after_help = concat!("Examples:
  imgsearch query cat.png -k 9
  imgsearch query a.jpg b.jpg --json | jq -r '.results[]?.path'
  imgsearch query cat.png --exact            # brute force: the exact ranking
  imgsearch query cat.png --grid sheet.png   # also draw the neighbours

", "Exit status: 0 success, 1 runtime error (also when a query image cannot be read), 2 usage error."))]
    Query(QueryArgs),
    /// A contact sheet of random indexed images, each with its nearest neighbours.
    #[command(after_help = concat!("Examples:
  imgsearch grid --out knn.png
  imgsearch grid --rows 20 -k 12 --seed 7 --out sheet.png

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Grid(GridArgs),
    /// Retrieval quality on a labelled folder (class = parent folder): P@k and kNN accuracy.
    #[command(after_help = concat!("Examples:
  imgsearch eval data/cifar10/test
  imgsearch eval data/cifar10/test --model my-model --queries 2000
  imgsearch eval data/clothing/test --baseline pixels

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Eval(EvalArgs),
    /// Groups of near-duplicate images (resized, recompressed, cropped, edited copies), best
    /// copy first; reports only, unless --move or --hardlink.
    #[command(after_help = concat!("Examples:
  imgsearch dups                              # report the groups (a dry run)
  imgsearch dups --threshold 0.75 --json      # more crops found; slower on a big index
  imgsearch dups --move ~/dups                # move the copies; prints the undo log's path
  imgsearch dups --undo ~/dups/imgsearch-undo-1764550000.jsonl
  imgsearch dups --hardlink                   # byte-identical copies become hard links

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Dups(DupsArgs),
    /// A web page and JSON API over an index: search by upload or by clicking, browse random
    /// neighbours, duplicate groups and the index's state. Binds 127.0.0.1 unless told.
    #[command(after_help = concat!("Examples:
  imgsearch serve --open                      # http://127.0.0.1:7878/ in the browser
  imgsearch serve --index /srv/photos-index --bind 127.0.0.1:8080
  curl -F image=@cat.jpg 'http://127.0.0.1:7878/api/search?k=9'
  curl http://127.0.0.1:7878/api/openapi.json  # the API

", "Exit status: 0 after Ctrl-C or SIGTERM, 1 runtime error (no index, a model), 2 usage error \
(an address that cannot be bound is one)."))]
    Serve(ServeArgs),
    /// Check every file of an index against its checksums; exit 1 when anything is damaged.
    #[command(after_help = concat!("Examples:
  imgsearch verify
  imgsearch verify --index /srv/photos-index --json

", "Exit status: 0 the index is sound, 1 damage found (or no index), 2 usage error."))]
    Verify(VerifyArgs),
    /// Embed the files queued in a PostgreSQL store, until the queue is empty. Run any number,
    /// on any machines that see the files under the same paths; `imgsearch index DIR --store
    /// URL` queues them (and works too).
    #[command(after_help = concat!("Examples:
  imgsearch index ~/Pictures --store postgres://imgsearch@db/photos     # queue and work
  imgsearch worker --store postgres://imgsearch@db/photos               # on other machines
  IMGSEARCH_STORE=postgres://imgsearch@db/photos imgsearch worker --batch 512

", "Exit status: 0 the queue is empty, 1 runtime error (the database, a model), 2 usage error."))]
    Worker(WorkerArgs),
    /// Set up a PostgreSQL store whose images are hash-partitioned over shards (postgres_fdw):
    /// run once on an empty coordinator database, then index and search through it.
    #[command(after_help = concat!("Examples:
  imgsearch store-init --store postgres://coord/photos \\
      --shard postgres://imgsearch@shard1/photos --shard postgres://imgsearch@shard2/photos

", "Exit status: 0 success, 1 runtime error (a database), 2 usage error."))]
    StoreInit(StoreInitArgs),
    /// Print a shell completion script.
    #[command(after_help = concat!("Examples:
  imgsearch completions bash > ~/.local/share/bash-completion/completions/imgsearch
  imgsearch completions zsh > ~/.zfunc/_imgsearch
  imgsearch completions fish > ~/.config/fish/completions/imgsearch.fish

", "Exit status: 0 success, 2 usage error."))]
    Completions(CompletionsArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Baseline {
    /// Cosine on raw pixels at the model's input size, mean-centred.
    Pixels,
    /// A randomly initialised encoder of the same architecture.
    Random,
}

/// `--augment`.
#[derive(Clone, Copy, ValueEnum)]
pub enum AugmentChoice {
    None,
    Standard,
}

/// `--estimator`: [`model::Estimator`].
#[derive(Clone, Copy, ValueEnum)]
pub enum EstimatorChoice {
    /// InfoNCE: each code picks its image's features among the batch (needs --critic dot).
    Infonce,
    /// Jensen-Shannon: softplus(−T⁺) + softplus(T⁻).
    Jsd,
    /// Donsker-Varadhan: −(E[T⁺] − log E[exp T⁻]).
    Dv,
}

/// `--prior`: [`model::PriorKind`].
#[derive(Clone, Copy, ValueEnum)]
pub enum PriorChoice {
    /// γ · KL(N(mean, exp(logvar)) ‖ N(0, I)).
    Kl,
    /// A discriminator between N(0, I) samples and the codes; the encoder learns to fool it.
    Adversarial,
    None,
}

/// `--critic`: [`model::Critic`].
#[derive(Clone, Copy, ValueEnum)]
pub enum CriticChoice {
    /// Encode-and-dot: features and code embedded apart, scored by cosine / τ.
    Dot,
    /// Features ‖ code through an MLP.
    Concat,
}

/// `--norm`: [`model::Norm`].
#[derive(Clone, Copy, ValueEnum)]
pub enum NormChoice {
    None,
    /// BatchNorm, folded into the convolutions for inference.
    Batch,
}

/// `--keep`: [`train::Keep`].
#[derive(Clone, Copy, ValueEnum)]
pub enum KeepChoice {
    /// The epoch the label-free probe scored best (it rises while training helps on a
    /// folder of one kind of photo).
    Probe,
    /// The last epoch (for a long run on a large mixed folder, where the probe hardly moves).
    Last,
}

/// `--lr-schedule`: [`train::LrSchedule`].
#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleChoice {
    /// Half a cosine from --lr down to 0 over all steps.
    Cosine,
    Constant,
}

impl From<model::Estimator> for EstimatorChoice {
    fn from(e: model::Estimator) -> Self {
        match e {
            model::Estimator::Infonce => EstimatorChoice::Infonce,
            model::Estimator::Jsd => EstimatorChoice::Jsd,
            model::Estimator::Dv => EstimatorChoice::Dv,
        }
    }
}

impl From<model::PriorKind> for PriorChoice {
    fn from(p: model::PriorKind) -> Self {
        match p {
            model::PriorKind::Kl => PriorChoice::Kl,
            model::PriorKind::Adversarial => PriorChoice::Adversarial,
            model::PriorKind::None => PriorChoice::None,
        }
    }
}

impl From<model::Critic> for CriticChoice {
    fn from(c: model::Critic) -> Self {
        match c {
            model::Critic::Dot => CriticChoice::Dot,
            model::Critic::Concat => CriticChoice::Concat,
        }
    }
}

impl From<model::Norm> for NormChoice {
    fn from(n: model::Norm) -> Self {
        match n {
            model::Norm::None => NormChoice::None,
            model::Norm::Batch => NormChoice::Batch,
        }
    }
}

fn recipe() -> ModelConfig {
    ModelConfig::default()
}

fn objective() -> Objective {
    Objective::default()
}

#[derive(Args)]
pub struct TrainArgs {
    /// Folders (or files) of training images; labels are not used.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output folder: model.safetensors + config.json, and the checkpoint for --resume.
    #[arg(long, default_value = "model")]
    pub out: PathBuf,
    /// Where the encoder starts: default (the bundled model, fine-tuned), scratch (random
    /// weights), or a model folder from an earlier `train` [default: default, or scratch when
    /// --channels, --stage-convs, --dim or --norm ask for another architecture].
    #[arg(long, value_name = "default|scratch|MODEL")]
    pub from: Option<String>,
    /// Passes over the images [default: 10 but at least 3,000 steps (a small folder needs
    /// steps, not epochs); no limit with --minutes].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub epochs: Option<u64>,
    /// Wall-time budget: stop at the end of the step that crosses it (the learning rate decays
    /// over the budget), keeping the model --keep names (by default the best so far by the
    /// label-free probe).
    #[arg(long, value_parser = positive_minutes)]
    pub minutes: Option<f64>,
    /// Which epoch's model --out holds at the end (the checkpoint for --resume always holds
    /// the last).
    #[arg(long, value_enum, default_value = "probe")]
    pub keep: KeepChoice,
    /// Labelled folder (DIR/CLASS/IMAGE) scored before and after training: P@9 and kNN-200.
    #[arg(long, value_name = "LABELLED_DIR")]
    pub eval: Option<PathBuf>,
    /// Images per step [default: 64; with --resume, the run's own, which cannot change].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    pub batch: Option<u32>,
    /// Peak learning rate [default: 0.001; with --resume, the run's own].
    #[arg(long, allow_negative_numbers = true, value_parser = positive_rate)]
    pub lr: Option<f64>,
    /// Learning-rate schedule over all steps of all epochs [default: cosine; with --resume,
    /// the run's own].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleChoice>,
    /// Seed of the initial weights and of each epoch's order and augmentations [default: 0;
    /// with --resume, the run's own].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the run in --out from its checkpoint (same data; --epochs is the new total).
    /// The run keeps its architecture, objective, views, augmentation, batch, and (unless
    /// given) its learning rate, schedule and seed.
    #[arg(long)]
    pub resume: bool,
    /// Train on at most this many images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Random views of each image while training.
    #[arg(long, value_enum, default_value = "standard")]
    pub augment: AugmentChoice,
    /// Embedding size D.
    #[arg(long, default_value_t = recipe().dim)]
    pub dim: usize,
    /// Input size in pixels (a multiple of 8).
    #[arg(long, default_value_t = recipe().preprocess.size)]
    pub size: u32,
    /// Output channels of the encoder's strided convolutions, one per halving of the input
    /// (the last is the local feature map's depth).
    #[arg(long, value_delimiter = ',', default_values_t = recipe().channels)]
    pub channels: Vec<usize>,
    /// 3×3 stride-1 convolutions after each strided convolution of the encoder.
    #[arg(long, default_value_t = recipe().stage_convs)]
    pub stage_convs: usize,
    /// Weight of the global mutual information term.
    #[arg(long, default_value_t = objective().alpha)]
    pub alpha: f32,
    /// Weight of the local mutual information term.
    #[arg(long, default_value_t = objective().beta)]
    pub beta: f32,
    /// Weight of the prior term.
    #[arg(long, default_value_t = objective().gamma)]
    pub gamma: f32,
    #[arg(long, value_enum, default_value_t = objective().estimator.into())]
    pub estimator: EstimatorChoice,
    #[arg(long, value_enum, default_value_t = objective().prior.into())]
    pub prior: PriorChoice,
    /// How critics score pairs: dot (encode-and-dot) or concat (features ‖ code through an MLP).
    #[arg(long, value_enum, default_value_t = objective().critic.into())]
    pub critic: CriticChoice,
    /// Normalisation after each encoder convolution: none, or batch (BatchNorm, folded into
    /// the convolutions for inference).
    #[arg(long, value_enum, default_value_t = recipe().norm.into())]
    pub norm: NormChoice,
    /// Temperature of the dot critic's cosine scores.
    #[arg(long, default_value_t = objective().temperature)]
    pub temperature: f32,
    /// The DIM paper's occlusion: hide a square of this share of the image side from the
    /// global code's input (the local features see the whole image); 0 turns it off. Each
    /// step encodes every view twice.
    #[arg(long, default_value_t = objective().occlude)]
    pub occlude: f32,
    /// Augmented views per image and step (2: code of one view against features of the other).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub views: u8,
    /// Folder of the pixel cache (decoded images, reused by later runs and --resume)
    /// [default: --out].
    #[arg(long, conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
    /// Decode into memory only: no pixel cache is read or written.
    #[arg(long)]
    pub no_cache: bool,
    /// Which vector of the encoder is searched: the pooled backbone features, the code's
    /// mean, or the hidden layer between them.
    #[arg(long, value_enum, default_value_t = recipe().embedding.into())]
    pub embedding: EmbeddingChoice,
    /// Components of the search projection fitted on the run's images at its end (PCA of
    /// the embeddings, partly whitened), `none` to search the embedding itself, or `auto`:
    /// the bundled model's length, or the embedding's when that is shorter. A run of fewer
    /// images than twice the components fits none.
    #[arg(long, value_name = "DIM|auto|none", value_parser = parse_projection,
          default_value_t = ProjectionChoice::Auto)]
    pub projection: ProjectionChoice,
}

/// `--projection`: a number of components or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionChoice {
    None,
    Auto,
    Dim(usize),
}

fn parse_projection(s: &str) -> Result<ProjectionChoice, String> {
    match s {
        "none" => Ok(ProjectionChoice::None),
        "auto" => Ok(ProjectionChoice::Auto),
        n => match n.parse::<usize>() {
            Ok(d) if d > 0 => Ok(ProjectionChoice::Dim(d)),
            _ => Err(format!(
                "'{s}' is not a positive number of components, 'auto' or 'none'"
            )),
        },
    }
}

impl std::fmt::Display for ProjectionChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectionChoice::None => f.write_str("none"),
            ProjectionChoice::Auto => f.write_str("auto"),
            ProjectionChoice::Dim(dim) => write!(f, "{dim}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbeddingChoice {
    Pooled,
    Mean,
    Hidden,
}

impl From<model::Embedding> for EmbeddingChoice {
    fn from(e: model::Embedding) -> Self {
        match e {
            model::Embedding::Pooled => EmbeddingChoice::Pooled,
            model::Embedding::Mean => EmbeddingChoice::Mean,
            model::Embedding::Hidden => EmbeddingChoice::Hidden,
        }
    }
}

impl TrainArgs {
    pub fn options(self, verbosity: Verbosity) -> TrainOptions {
        let mut config = recipe();
        config.dim = self.dim;
        config.channels = self.channels;
        config.stage_convs = self.stage_convs;
        config.preprocess.size = self.size;
        config.norm = match self.norm {
            NormChoice::None => model::Norm::None,
            NormChoice::Batch => model::Norm::Batch,
        };
        config.embedding = match self.embedding {
            EmbeddingChoice::Pooled => model::Embedding::Pooled,
            EmbeddingChoice::Mean => model::Embedding::Mean,
            EmbeddingChoice::Hidden => model::Embedding::Hidden,
        };
        let projection_dim = match self.projection {
            ProjectionChoice::None => None,
            ProjectionChoice::Auto => recipe()
                .projection
                .map(|p| p.dim.min(config.encoder_embedding_dim())),
            ProjectionChoice::Dim(dim) => Some(dim),
        };
        config.projection = projection_dim.map(|dim| model::ProjectionConfig {
            dim,
            power: model::PROJECTION_POWER,
            images: 0,
        });
        config.objective = Objective {
            alpha: self.alpha,
            beta: self.beta,
            gamma: self.gamma,
            estimator: match self.estimator {
                EstimatorChoice::Infonce => model::Estimator::Infonce,
                EstimatorChoice::Jsd => model::Estimator::Jsd,
                EstimatorChoice::Dv => model::Estimator::Dv,
            },
            prior: match self.prior {
                PriorChoice::Kl => model::PriorKind::Kl,
                PriorChoice::Adversarial => model::PriorKind::Adversarial,
                PriorChoice::None => model::PriorKind::None,
            },
            critic: match self.critic {
                CriticChoice::Dot => model::Critic::Dot,
                CriticChoice::Concat => model::Critic::Concat,
            },
            temperature: self.temperature,
            occlude: self.occlude,
        };
        let cache = match (self.no_cache, self.cache) {
            (true, _) => PixelCache::Off,
            (false, Some(dir)) => PixelCache::In(dir),
            (false, None) => PixelCache::InOut,
        };
        let start = self.from.map(|from| match from.as_str() {
            "default" => Start::Model(ModelSource::Default),
            "scratch" => Start::Scratch,
            path => Start::Model(ModelSource::Path(PathBuf::from(path))),
        });
        TrainOptions {
            start,
            epochs: self.epochs.map(|e| e as usize),
            minutes: self.minutes,
            batch: self.batch.map(|b| b as usize),
            lr: self.lr,
            schedule: self.lr_schedule.map(|s| match s {
                ScheduleChoice::Cosine => train::LrSchedule::Cosine,
                ScheduleChoice::Constant => train::LrSchedule::Constant,
            }),
            seed: self.seed,
            resume: self.resume,
            keep: match self.keep {
                KeepChoice::Probe => train::Keep::BestProbe,
                KeepChoice::Last => train::Keep::Last,
            },
            limit: self.limit,
            augment: match self.augment {
                AugmentChoice::None => Augment::none(),
                AugmentChoice::Standard => Augment::standard(),
            },
            views: self.views as usize,
            config,
            cache,
            verbosity,
            ..TrainOptions::new(self.dirs, self.out)
        }
    }
}

/// `--store URL`: the vectors in PostgreSQL instead of the local index folder.
#[derive(Args, Clone, Default)]
pub struct StoreFlag {
    /// A PostgreSQL store (postgres://user@host:port/db, with pgvector) instead of the
    /// --index folder: shared by many machines and workers (docs/SCALE.md).
    #[arg(long, env = "IMGSEARCH_STORE", value_name = "URL", value_parser = postgres_url)]
    pub store: Option<String>,
}

impl StoreFlag {
    pub fn location(&self, index: &std::path::Path) -> Location {
        Location::of(index, self.store.as_deref())
    }
}

fn postgres_url(text: &str) -> Result<String, String> {
    if imgsearch::store::is_postgres_url(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a postgres:// URL (a local index is named with --index)"
        ))
    }
}

#[derive(Args)]
pub struct IndexArgs {
    /// Folders (or files) of images to add or bring up to date [default: every folder the
    /// index records].
    pub dirs: Vec<PathBuf>,
    /// Index folder.
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model folder from `imgsearch train` (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Images embedded per batch.
    #[arg(long, default_value_t = pipeline::DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Follow symbolic links below the folders (loops are detected and skipped).
    #[arg(long, short = 'L')]
    pub follow: bool,
    /// Drop damaged index files (their images are embedded again) instead of refusing. A
    /// manifest that fails its checksum is read for its segments and folders; one that cannot be
    /// read at all is rebuilt only from the folders given (without them nothing is deleted).
    #[arg(long)]
    pub repair: bool,
    /// Segments of at least this many images get an HNSW graph; smaller ones are scanned.
    #[arg(long, hide = true, env = "IMGSEARCH_GRAPH_MIN", default_value_t = DEFAULT_GRAPH_THRESHOLD)]
    pub graph_min: usize,
    /// With --store: queue the new and changed files and stop; `imgsearch worker`s embed them.
    #[arg(long, requires = "store")]
    pub queue_only: bool,
    /// With --store: wait this long after claiming each batch (fault tests).
    #[arg(long, hide = true, default_value_t = 0)]
    pub batch_delay_ms: u64,
    /// Commit after this many embedded images (or 30 s), for crash tests.
    #[arg(long, hide = true, default_value_t = CommitPolicy::default().every as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_every: u64,
}

impl IndexArgs {
    pub fn options(&self, verbosity: Verbosity) -> IndexOptions {
        IndexOptions {
            batch: self.batch as usize,
            graph_threshold: self.graph_min,
            scan: ScanOptions {
                follow_links: self.follow,
            },
            repair: self.repair,
            commit: CommitPolicy {
                every: self.commit_every as usize,
                ..CommitPolicy::default()
            },
            verbosity,
            ..IndexOptions::new(self.index.clone(), self.dirs.clone())
        }
    }
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Recorded folders to drop.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
}

#[derive(Args)]
pub struct QueryArgs {
    /// Query images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Number of neighbours.
    #[arg(short, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model to embed the queries with; must be the index's (default: the index's own).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Brute force over all vectors instead of the graph (exact ground truth).
    #[arg(long)]
    pub exact: bool,
    /// Graph search beam width: higher is slower and more accurate.
    #[arg(long, default_value_t = SearchOptions::default().ef as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ef: u32,
    /// Also draw the queries and their neighbours as a contact sheet (PNG).
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Only neighbours with at least this cosine, from -1 to 1 (as `dups --threshold`).
    #[arg(long, allow_negative_numbers = true, value_parser = checked(pipeline::limits::min_score))]
    pub min_score: Option<f32>,
}

impl QueryArgs {
    pub fn search(&self) -> SearchOptions {
        SearchOptions {
            k: self.k as usize,
            ef: self.ef as usize,
            exact: self.exact,
            min_score: self.min_score,
        }
    }
}

#[derive(Args)]
pub struct GridArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Number of random query images (rows).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rows: u32,
    /// Neighbours per row (the query itself is left out).
    #[arg(short, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "knn.png")]
    pub out: PathBuf,
    /// Thumbnail size in pixels.
    #[arg(long, default_value_t = pipeline::DEFAULT_TILE,
          value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub tile: u32,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Labelled folder: DIR/CLASS/IMAGE.
    pub dir: PathBuf,
    /// Model folder (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Neighbours counted for P@k.
    #[arg(short, default_value_t = EvalOptions::new(PathBuf::new()).k as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Neighbours voting in the weighted kNN classifier.
    #[arg(long, default_value_t = EvalOptions::new(PathBuf::new()).knn as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub knn: u32,
    /// Query only this many images (evenly spaced); every image is still indexed.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub queries: Option<u32>,
    /// Score a floor instead of the model.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Index the labelled folder into this PostgreSQL store and search it there (what
    /// searches of that store return), instead of in a throw-away local index.
    #[command(flatten)]
    pub store: StoreFlag,
}

impl EvalArgs {
    pub fn options(&self, verbosity: Verbosity) -> EvalOptions {
        EvalOptions {
            store: self.store.store.clone(),
            k: self.k as usize,
            knn: self.knn as usize,
            queries: self.queries.map(|q| q as usize),
            verbosity,
            ..EvalOptions::new(self.dir.clone())
        }
    }
}

#[derive(Args)]
pub struct DupsArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Cosine at or above which two images are candidate duplicates [default: 0.85, or 0.97
    /// with --no-verify].
    #[arg(long, value_parser = checked(pipeline::limits::threshold))]
    pub threshold: Option<f32>,
    /// The copy score a candidate pair needs: the best correlation of their grey levels over
    /// crops, flips and quarter turns (-1 to 1).
    #[arg(long, default_value_t = pipeline::dups::DEFAULT_COPY_SCORE, conflicts_with = "no_verify",
          allow_negative_numbers = true, value_parser = checked(pipeline::limits::copy_score))]
    pub copy_score: f32,
    /// Trust the cosine alone: no pixel check of candidate pairs (no second decode of them).
    #[arg(long)]
    pub no_verify: bool,
    /// Move every copy but the best one under this folder (keeping its path relative to the
    /// indexed folder), with an undo log there.
    #[arg(long, value_name = "DEST", conflicts_with_all = ["hardlink", "undo"])]
    pub r#move: Option<PathBuf>,
    /// Replace each copy whose bytes equal the best one's by a hard link to it.
    #[arg(long, conflicts_with = "undo")]
    pub hardlink: bool,
    /// Put back the files an earlier --move moved, from its undo log.
    #[arg(long, value_name = "LOG")]
    pub undo: Option<PathBuf>,
    /// Look for candidates with images as they are only, not also turned a quarter and
    /// mirrored (faster: no second decode and two fewer embeddings of every image).
    #[arg(long)]
    pub no_rotations: bool,
    /// CSV on stdout: group,keep,path,score,action.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model folder (default: the store's own; it must be the store's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Images claimed, embedded and committed together.
    #[arg(long, default_value_t = pipeline::DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Seconds a claimed batch stays this worker's; after that another worker may redo it.
    #[arg(long, default_value_t = pipeline::jobs::DEFAULT_LEASE.as_secs_f64(), value_parser = positive_seconds)]
    pub lease: f64,
    /// Stop as soon as nothing is left to claim, instead of waiting for other workers'
    /// batches (and redoing those whose worker died).
    #[arg(long)]
    pub no_wait: bool,
    /// Wait this long after claiming each batch (fault tests).
    #[arg(long, hide = true, default_value_t = 0)]
    pub batch_delay_ms: u64,
}

impl WorkerArgs {
    pub fn options(&self, verbosity: Verbosity) -> pipeline::jobs::WorkerOptions {
        pipeline::jobs::WorkerOptions {
            lease: std::time::Duration::from_secs_f64(self.lease),
            wait_for_others: !self.no_wait,
            pause: std::time::Duration::from_millis(self.batch_delay_ms),
            verbosity,
            ..pipeline::jobs::WorkerOptions::new(self.batch as usize)
        }
    }
}

#[derive(Args)]
pub struct StoreInitArgs {
    /// The coordinator: an empty database that will hold the partitioned table.
    #[command(flatten)]
    pub store: StoreFlag,
    /// A shard's database (give two or more); the coordinator connects to it as the URL's
    /// user, with its password if it has one.
    #[arg(long = "shard", value_name = "URL", required = true, value_parser = postgres_url)]
    pub shards: Vec<String>,
    /// The model whose vectors the store will hold (its dimension sizes the tables).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.1 to 86400"
        )),
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    pub shell: clap_complete::Shell,
}

/// A byte count: a number with an optional unit (`20MB`, `512KB`, `1GB`; powers of 1024).
/// A clap parser for a number checked by one of [`pipeline::limits`]'s functions (the checks
/// the HTTP API makes of the same values).
fn checked<T>(check: fn(T) -> Result<T, String>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr,
{
    move |text: &str| {
        let value = text
            .trim()
            .parse::<T>()
            .map_err(|_| format!("{text:?} is not a number"))?;
        check(value)
    }
}

/// A learning rate: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a learning rate (a finite number above 0)"
        )),
    }
}

fn positive_minutes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 && m <= 1e6 => Ok(m),
        _ => Err(format!("{text:?} is not a number of minutes above 0")),
    }
}

fn byte_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 20MB"))?;
    let scale: usize = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (B, KB, MB or GB)")),
    };
    n.checked_mul(scale)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?} is not a size above zero that fits"))
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model to embed uploads with; must be the index's (default: the index's own).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Anything but a loopback address makes the index's images
    /// reachable from other machines (a warning is printed); the API has no authentication.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub bind: std::net::SocketAddr,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Largest upload accepted.
    #[arg(long, default_value = "20MB", value_parser = byte_size)]
    pub max_upload: usize,
    /// Thumbnail cache folder (default: thumbs/ inside the index folder).
    #[arg(long)]
    pub thumbnails: Option<PathBuf>,
    /// Bound of the thumbnail cache; the oldest thumbnails go first.
    #[arg(long, default_value = "256MB", value_parser = byte_size)]
    pub thumbnail_cache: usize,
    /// Uploads decoded and embedded (and thumbnails made) at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
}
