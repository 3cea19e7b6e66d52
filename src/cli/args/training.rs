//! `imgsearch train`'s flags: the recipe's choices mirrored from [`imgsearch::model`] and
//! [`imgsearch::train`], and their conversion into [`TrainOptions`].

use super::{positive_minutes, positive_rate};
use clap::{Args, ValueEnum};
use imgsearch::data::Augment;
use imgsearch::model::{self, ModelConfig, ModelSource, Objective};
use imgsearch::progress::Verbosity;
use imgsearch::train::{self, PixelCache, Start, TrainOptions};
use std::path::PathBuf;

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
