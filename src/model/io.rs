//! Models on disk: `model.safetensors` (encoder weights) + `config.json` in a folder, or the
//! default model embedded in the binary. Loading checks versions and shapes and names the file.

use super::config::ModelConfig;
use super::encoder::Encoder;
use super::init::SeededInit;
use super::projection::{normalise_rows, Projection, PROJECTION_PREFIX};
use crate::data::Preprocess;
use crate::error::{candle_message, Error, Result};
use crate::fsx;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../assets/default/model.safetensors");
static DEFAULT_CONFIG: &str = include_str!("../../assets/default/config.json");

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The small trained encoder shipped inside the binary.
    Default,
    /// A folder holding `model.safetensors` and `config.json` (or the weights file itself).
    Path(PathBuf),
}

impl ModelSource {
    pub fn from_flag(flag: Option<PathBuf>) -> Self {
        flag.map_or(ModelSource::Default, ModelSource::Path)
    }
}

/// An encoder ready to embed, with its config and identity.
pub struct Model {
    pub config: ModelConfig,
    pub encoder: Encoder,
    /// Applied to the normalised embedding when the config has one.
    pub projection: Option<Projection>,
    /// Content hash of weights and config: what an index records to detect a model mismatch.
    pub id: String,
    /// "default" or the path it was loaded from.
    pub name: String,
    pub device: Device,
}

impl Model {
    pub fn load(source: &ModelSource, device: &Device) -> Result<Model> {
        let stored = StoredModel::read(source)?;
        let (config, tensors) = stored.parse(device)?;
        let id = format!(
            "{:08x}{:08x}",
            crc32fast::hash(&stored.weights),
            crc32fast::hash(stored.config.as_bytes())
        );
        Self::from_parameters(config, tensors, id, stored.name, device).map_err(|e| {
            Error::model(
                &stored.weights_path,
                format!("weights do not match config.json: {}", candle_message(&e)),
            )
        })
    }

    /// A model from named tensors (`encoder.*`, as training names them) and its config.
    pub fn from_parameters(
        config: ModelConfig,
        tensors: HashMap<String, Tensor>,
        id: String,
        name: String,
        device: &Device,
    ) -> candle_core::Result<Model> {
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let encoder = Encoder::for_inference(&config, vb.pp("encoder"))?;
        let projection = match &config.projection {
            Some(p) => Some(Projection::new(
                p,
                config.encoder_embedding_dim(),
                vb.pp(PROJECTION_PREFIX),
            )?),
            None => None,
        };
        Ok(Model {
            config,
            encoder,
            projection,
            id,
            name,
            device: device.clone(),
        })
    }

    /// A randomly initialised encoder of `config`'s architecture: the floor a trained model
    /// must beat.
    pub fn random(mut config: ModelConfig, seed: u64, device: &Device) -> Result<Model> {
        // A projection is fitted to trained features: the floor is the raw embedding.
        config.projection = None;
        let init = std::sync::Arc::new(SeededInit::new(seed, HashMap::new()));
        let encoder = Encoder::for_inference(&config, init.var_builder(device).pp("encoder"))?;
        Ok(Model {
            config,
            encoder,
            projection: None,
            id: format!("random-init-seed-{seed}"),
            name: format!("random init (seed {seed})"),
            device: device.clone(),
        })
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.config.preprocess
    }

    /// L2-normalised embeddings of preprocessed images (RGB8 HWC at the model's input size).
    ///
    /// ```
    /// use imgsearch::model::{Model, ModelSource};
    /// # fn main() -> imgsearch::Result<()> {
    /// let model = Model::load(&ModelSource::Default, &candle_core::Device::Cpu)?;
    /// let photo = std::path::Path::new("tests/fixtures/test/dog/0000.jpg");
    /// let pixels = imgsearch::data::load(photo, model.preprocess())?;
    /// let vectors = model.embed([pixels.as_slice()].into_iter())?;
    /// assert_eq!(vectors[0].len(), model.config.embedding_dim());
    /// let norm: f32 = vectors[0].iter().map(|v| v * v).sum();
    /// assert!((norm - 1.0).abs() < 1e-4);
    /// # Ok(())
    /// # }
    /// ```
    pub fn embed<'a>(
        &self,
        images: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<f32>>> {
        if images.len() == 0 {
            return Ok(Vec::new());
        }
        let x = self.preprocess().to_tensor(images, &self.device)?;
        let mut embedding = normalise_rows(&self.encoder.embed(&x)?)?;
        if let Some(projection) = &self.projection {
            embedding = normalise_rows(&projection.forward(&embedding)?)?;
        }
        Ok(embedding.to_vec2::<f32>()?)
    }
}

/// A model's files as read, before they are checked.
struct StoredModel {
    weights: std::borrow::Cow<'static, [u8]>,
    config: String,
    weights_path: PathBuf,
    config_path: PathBuf,
    /// "default" or the absolute path it was read from.
    name: String,
}

impl StoredModel {
    fn read(source: &ModelSource) -> Result<StoredModel> {
        match source {
            ModelSource::Default => {
                let origin = PathBuf::from("<bundled default model>");
                Ok(StoredModel {
                    weights: DEFAULT_WEIGHTS.into(),
                    config: DEFAULT_CONFIG.to_string(),
                    weights_path: origin.clone(),
                    config_path: origin,
                    name: "default".into(),
                })
            }
            ModelSource::Path(path) => {
                if !path.exists() {
                    return Err(Error::model(
                        path,
                        "no such model folder (give the folder `imgsearch train --out` wrote)",
                    ));
                }
                let (weights_path, config_path) = model_files(path);
                let weights =
                    std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
                // A file given instead of a folder must be the weights themselves: an image or
                // anything else is named as what it is not, before its folder's config is read.
                if !path.is_dir() && safetensors::SafeTensors::read_metadata(&weights).is_err() {
                    return Err(Error::model(
                        path,
                        "not a model: give the folder `imgsearch train --out` wrote, or the \
                         model.safetensors in it",
                    ));
                }
                let config = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
                let config = String::from_utf8(config)
                    .map_err(|_| Error::model(&config_path, "not UTF-8 text"))?;
                let name = std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
                    .to_string();
                Ok(StoredModel {
                    weights: weights.into(),
                    config,
                    weights_path,
                    config_path,
                    name,
                })
            }
        }
    }

    /// The validated config and the weights, every tensor finite.
    fn parse(&self, device: &Device) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
        let origin = self.weights_path.as_path();
        let config: ModelConfig = serde_json::from_str(&self.config)
            .map_err(|e| Error::model(&self.config_path, format!("not a model config: {e}")))?;
        config
            .validate()
            .map_err(|e| Error::model(&self.config_path, e))?;
        let tensors = candle_core::safetensors::load_buffer(&self.weights, device)
            .map_err(|e| Error::model(origin, format!("not a readable safetensors file: {e}")))?;
        for (name, tensor) in &tensors {
            if !all_finite(tensor)? {
                return Err(Error::model(
                    origin,
                    format!("tensor {name} holds NaN or infinite values: the model is damaged (a diverged training run?)"),
                ));
            }
        }
        Ok((config, tensors))
    }
}

/// A trained model's config and weights (`encoder.*`, as training names its parameters) and
/// its name, for a training run that starts from it.
pub fn load_parameters(
    source: &ModelSource,
    device: &Device,
) -> Result<(ModelConfig, HashMap<String, Tensor>, String)> {
    let stored = StoredModel::read(source)?;
    let (config, tensors) = stored.parse(device)?;
    Ok((config, tensors, stored.name))
}

/// The bundled default model's config.
pub fn default_config() -> Result<ModelConfig> {
    serde_json::from_str(DEFAULT_CONFIG).map_err(|e| {
        Error::model(
            Path::new("<bundled default model>"),
            format!("not a model config: {e}"),
        )
    })
}

/// Whether every value of a floating-point tensor is finite (other dtypes always are).
fn all_finite(tensor: &Tensor) -> Result<bool> {
    if !tensor.dtype().is_float() {
        return Ok(true);
    }
    let values = tensor
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(values.iter().all(|v| v.is_finite()))
}

/// The weights and config paths for a `--model` argument (a folder or the weights file).
pub fn model_files(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.join(WEIGHTS_FILE), path.join(CONFIG_FILE))
    } else {
        let dir = path.parent().unwrap_or(Path::new("."));
        (path.to_path_buf(), dir.join(CONFIG_FILE))
    }
}

/// Writes an inference model (encoder weights named `encoder.*`) and its config to `dir`.
pub fn save_model(
    dir: &Path,
    config: &ModelConfig,
    encoder: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes = safetensors_bytes(encoder).map_err(|e| Error::model(&path, e))?;
    fsx::write_atomic(&path, &bytes).map_err(|e| Error::io(&path, e))?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| Error::model(dir, e.to_string()))?;
    let config_path = dir.join(CONFIG_FILE);
    fsx::write_atomic(&config_path, &json).map_err(|e| Error::io(&config_path, e))
}

/// Serialises named tensors as safetensors bytes (names sorted, so output is deterministic).
pub fn safetensors_bytes(
    tensors: &HashMap<String, Tensor>,
) -> std::result::Result<Vec<u8>, String> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize(named, None).map_err(|e| e.to_string())
}
