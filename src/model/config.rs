//! The model's JSON config: architecture, input and preprocessing, embedding size, the
//! objective's weights, and a record of how it was trained.

use super::projection::{ProjectionConfig, PROJECTION_POWER};
use crate::data::{Augment, Preprocess};
use serde::{Deserialize, Serialize};

/// Bumped whenever weights or config stop being readable by an older build.
pub const FORMAT_VERSION: u32 = 1;
pub const ARCHITECTURE: &str = "dim-conv";
/// Largest `preprocess.size` a config may ask for (50 MB of RGB8 a decoded image).
pub const MAX_INPUT_SIZE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// Jensen-Shannon: softplus(−T⁺) + softplus(T⁻).
    Jsd,
    /// Donsker-Varadhan: −(E[T⁺] − log E[exp T⁻]).
    Dv,
    /// InfoNCE: each code picks its image's features among all images of the batch
    /// (needs `--critic dot`, which scores every pair at once).
    Infonce,
}

/// How the critics score a (feature, code) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Critic {
    /// The features concatenated with the code, through an MLP (1×1 convolutions for the
    /// local critic): one pass per scored pair, so negatives are one shuffle of the batch.
    Concat,
    /// Encode-and-dot: features and code are embedded separately and scored by cosine / τ,
    /// so every image of the batch is a negative for every other at the cost of a matmul.
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorKind {
    /// γ · KL(N(mean, exp(logvar)) ‖ N(0, I)).
    Kl,
    /// The paper's adversarial prior: a discriminator between N(0, I) samples and the
    /// encoder's codes; γ weights the encoder's −log D(code).
    Adversarial,
    /// No prior term.
    None,
}

/// Which vector of the encoder is the search embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Embedding {
    /// The posterior mean (D dims).
    #[default]
    Mean,
    /// The globally pooled convolutional features before the heads (C dims).
    Pooled,
    /// The hidden layer the mean and log-variance heads read (`hidden` dims).
    Hidden,
}

/// Normalisation after each convolution of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// None: convolution with bias, then the leaky ReLU.
    #[default]
    None,
    /// BatchNorm (conv without bias → BN → leaky ReLU), as in the DIM paper's encoder;
    /// folded into the convolutions for inference.
    Batch,
}

/// Weights of the loss terms and how each is estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Global mutual information weight.
    pub alpha: f32,
    /// Local mutual information weight.
    pub beta: f32,
    /// Prior weight.
    pub gamma: f32,
    pub estimator: Estimator,
    pub prior: PriorKind,
    /// Configs written before the critic was recorded were all trained with concat critics.
    #[serde(default = "legacy_critic")]
    pub critic: Critic,
    /// Temperature τ of the dot critic's cosine scores.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// The DIM paper's occlusion: the side of a square hidden from the input of the global
    /// code, as a share of the image side (0: off). Local features still see the whole image,
    /// so the code must carry what the visible part says about the hidden part.
    #[serde(default)]
    pub occlude: f32,
}

fn legacy_critic() -> Critic {
    Critic::Concat
}

fn default_temperature() -> f32 {
    0.1
}

fn one() -> usize {
    1
}

/// The recipe of the bundled model (docs/RESULTS.md): encode-and-dot critics with InfoNCE.
/// The DIM paper's own is `critic: Concat, estimator: Jsd`.
impl Default for Objective {
    fn default() -> Self {
        Objective {
            alpha: 0.5,
            beta: 1.5,
            gamma: 0.01,
            estimator: Estimator::Infonce,
            prior: PriorKind::Kl,
            critic: Critic::Dot,
            temperature: default_temperature(),
            occlude: 0.0,
        }
    }
}

/// How a model was trained, kept for its model card and for `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub images: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// "constant" or "cosine".
    #[serde(default)]
    pub schedule: String,
    pub seed: u64,
    /// Augmented views of each image per step (2: features of one view, code of the other).
    #[serde(default = "one")]
    pub views: usize,
    pub augment: Augment,
    pub seconds: f64,
    /// Where the encoder started: "scratch", "default" or a model's path (absent in models
    /// trained before fine-tuning existed, which all started from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format_version: u32,
    pub architecture: String,
    pub preprocess: Preprocess,
    /// Output channels of the strided convolutions; the last is the local map's C.
    pub channels: Vec<usize>,
    /// 3×3 stride-1 convolutions after each strided one (0 in models before this option).
    #[serde(default)]
    pub stage_convs: usize,
    /// Width of the layer between global pooling and the Gaussian heads.
    pub hidden: usize,
    /// Embedding size D.
    pub dim: usize,
    /// Width of the discriminators' hidden layers.
    pub disc_hidden: usize,
    pub objective: Objective,
    #[serde(default)]
    pub embedding: Embedding,
    /// Normalisation in the encoder; absent in older configs (none).
    #[serde(default)]
    pub norm: Norm,
    /// The fitted projection applied to the embedding before search ([`ProjectionConfig`]);
    /// absent: the embedding itself, normalised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<ProjectionConfig>,
    pub training: Option<TrainingRecord>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            format_version: FORMAT_VERSION,
            architecture: ARCHITECTURE.into(),
            preprocess: Preprocess::default(),
            channels: vec![64, 128, 256],
            stage_convs: 0,
            hidden: 512,
            // 64 as in the DIM paper: a quarter of the KNN experiment's 256 keeps a million
            // vectors at 256 MB and scans 4× faster.
            dim: 64,
            disc_hidden: 512,
            objective: Objective::default(),
            // Retrieval reads the backbone's pooled features through a 128-dim projection:
            // both beat the code on every photo set measured (docs/RESULTS.md).
            embedding: Embedding::Pooled,
            norm: Norm::None,
            projection: Some(ProjectionConfig {
                dim: 128,
                power: PROJECTION_POWER,
                images: 0,
            }),
            training: None,
        }
    }
}

impl ModelConfig {
    /// Side of the local feature map: each strided convolution halves the input.
    pub fn local_size(&self) -> usize {
        u32::try_from(self.channels.len())
            .ok()
            .and_then(|n| (self.preprocess.size as usize).checked_shr(n))
            .unwrap_or(0)
    }

    /// Length of the search embedding: the projection's when the model has one.
    pub fn embedding_dim(&self) -> usize {
        match &self.projection {
            Some(projection) => projection.dim,
            None => self.encoder_embedding_dim(),
        }
    }

    /// Length of the vector the encoder embeds (what a projection reads).
    pub fn encoder_embedding_dim(&self) -> usize {
        match self.embedding {
            Embedding::Mean => self.dim,
            Embedding::Pooled => self.local_channels(),
            Embedding::Hidden => self.hidden,
        }
    }

    /// What differs between the weights this config and `other` describe (shapes and
    /// normalisation), if anything: a run can start from a model only when nothing does.
    pub fn weights_differ(&self, other: &ModelConfig) -> Option<String> {
        let fields = [
            (
                "channels",
                format!("{:?}", self.channels),
                format!("{:?}", other.channels),
            ),
            (
                "stage_convs",
                self.stage_convs.to_string(),
                other.stage_convs.to_string(),
            ),
            ("hidden", self.hidden.to_string(), other.hidden.to_string()),
            ("dim", self.dim.to_string(), other.dim.to_string()),
            (
                "norm",
                format!("{:?}", self.norm),
                format!("{:?}", other.norm),
            ),
        ];
        let differences: Vec<String> = fields
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("{name} {a} against {b}"))
            .collect();
        (!differences.is_empty()).then(|| differences.join(", "))
    }

    pub fn local_channels(&self) -> usize {
        self.channels.last().copied().unwrap_or(0)
    }

    /// What is wrong with this config, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "model format version {} is not supported by this build (it reads version {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.architecture != ARCHITECTURE {
            return Err(format!(
                "unknown architecture '{}' (this build knows '{ARCHITECTURE}')",
                self.architecture
            ));
        }
        if self.objective.estimator == Estimator::Infonce && self.objective.critic != Critic::Dot {
            return Err("the InfoNCE estimator needs the dot critic (--critic dot)".into());
        }
        let occlude = self.objective.occlude;
        if !(0.0..1.0).contains(&occlude) {
            return Err(format!(
                "occlusion {occlude} must be at least 0 and below 1"
            ));
        }
        let (mean, std) = (self.preprocess.mean, self.preprocess.std);
        if !mean.iter().all(|m| m.is_finite()) || !std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(format!(
                "preprocess mean {mean:?} must be finite and std {std:?} finite and above 0 \
                 (each pixel is divided by std)"
            ));
        }
        if self.channels.is_empty() || self.dim == 0 || self.hidden == 0 {
            return Err("channels, hidden and dim must be non-empty and positive".into());
        }
        if let Some(projection) = &self.projection {
            projection.validate(self.encoder_embedding_dim())?;
        }
        let size = self.preprocess.size as usize;
        // Each strided convolution halves the input: more than 30 cannot leave a 3×3 map of a
        // u32 size, and `1 << len` below would overflow from 64 on (found by fuzz/model_load).
        if self.channels.len() > 30 {
            return Err(format!(
                "{} strided convolutions (channels) leave no 3×3 local map: at most 30",
                self.channels.len()
            ));
        }
        // Every image is resized to size × size: a config from disk must not ask for gigabytes
        // a picture (a size of 65,536 made `data::load` allocate 12 GB; found by fuzz/model_load).
        if self.preprocess.size > MAX_INPUT_SIZE {
            return Err(format!(
                "input size {} is above the largest supported, {MAX_INPUT_SIZE}",
                self.preprocess.size
            ));
        }
        // The global critic summarises the local map with a 3×3 convolution without padding.
        let step = 1 << self.channels.len();
        if size == 0 || !size.is_multiple_of(step) || self.local_size() < 3 {
            return Err(format!(
                "input size {size} must be a multiple of {step} of at least {}: the local map \
                 (size / {step}) must be at least 3×3 for the global critic's 3×3 summary",
                3 * step
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ModelConfig;

    /// 64 or more channel entries made `1 << len` overflow in `validate`, a panic in builds with
    /// overflow checks (found by the fuzz target model_load; fuzz/regressions/): such a config
    /// is refused instead.
    #[test]
    fn too_many_strided_convolutions_is_an_error() {
        for n in [31, 64, 65, 1000] {
            let config = ModelConfig {
                channels: vec![8; n],
                ..ModelConfig::default()
            };
            assert_eq!(config.local_size(), 0);
            assert!(config.validate().is_err(), "{n} channels");
        }
        ModelConfig::default().validate().unwrap();
    }

    /// A config asking for a huge input size loaded (its weights do not depend on the size) and
    /// then made every image's preprocessing allocate size² × 3 bytes.
    #[test]
    fn huge_input_size_is_an_error() {
        let mut config = ModelConfig::default();
        for size in [4096 + 8, 65_536, 1 << 30] {
            config.preprocess.size = size;
            assert!(config.validate().is_err(), "size {size}");
        }
        config.preprocess.size = 4096;
        config.validate().unwrap();
    }

    /// A 16-pixel input leaves a 2×2 local map, too small for the global critic's 3×3 summary:
    /// refused by validation, not by a tensor error at the first step.
    #[test]
    fn an_input_too_small_for_the_critic_is_an_error() {
        let mut config = ModelConfig::default();
        config.preprocess.size = 16;
        let message = config.validate().unwrap_err();
        assert!(message.contains("at least 24"), "{message}");
        config.preprocess.size = 24;
        config.validate().unwrap();
    }
}
