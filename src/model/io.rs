//! Models on disk: `model.safetensors` (encoder weights) + `config.json` in a folder, or the
//! default model embedded in the binary. Loading checks versions and shapes and names the file.

use super::{Encoder, ModelConfig};
use crate::data::Preprocess;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::io::Write;
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
    /// Content hash of weights and config: what an index records to detect a model mismatch.
    pub id: String,
    /// "default" or the path it was loaded from.
    pub name: String,
    pub device: Device,
}

impl Model {
    pub fn load(source: &ModelSource, device: &Device) -> Result<Model> {
        match source {
            ModelSource::Default => Self::from_bytes(
                DEFAULT_WEIGHTS,
                DEFAULT_CONFIG,
                Path::new("<embedded default model>"),
                "default".into(),
                device,
            ),
            ModelSource::Path(path) => {
                let (weights_path, config_path) = model_files(path);
                let weights =
                    std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
                let config = std::fs::read_to_string(&config_path)
                    .map_err(|e| Error::io(&config_path, e))?;
                let name = std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
                    .to_string();
                Self::from_bytes(&weights, &config, &weights_path, name, device)
            }
        }
    }

    fn from_bytes(
        weights: &[u8],
        config_json: &str,
        origin: &Path,
        name: String,
        device: &Device,
    ) -> Result<Model> {
        let config: ModelConfig = serde_json::from_str(config_json)
            .map_err(|e| Error::model(origin, format!("bad config.json: {e}")))?;
        config.validate().map_err(|e| Error::model(origin, e))?;
        let tensors = candle_core::safetensors::load_buffer(weights, device)
            .map_err(|e| Error::model(origin, format!("not a readable safetensors file: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let encoder = Encoder::for_inference(&config, vb.pp("encoder"))
            .map_err(|e| Error::model(origin, format!("weights do not match config.json: {e}")))?;
        let id = format!(
            "{:08x}{:08x}",
            crc32fast::hash(weights),
            crc32fast::hash(config_json.as_bytes())
        );
        Ok(Model {
            config,
            encoder,
            id,
            name,
            device: device.clone(),
        })
    }

    /// A randomly initialised encoder of `config`'s architecture: the floor a trained model
    /// must beat.
    pub fn random(config: ModelConfig, seed: u64, device: &Device) -> Result<Model> {
        let init = std::sync::Arc::new(super::SeededInit::new(seed, HashMap::new()));
        let encoder = Encoder::for_inference(&config, init.var_builder(device).pp("encoder"))?;
        Ok(Model {
            config,
            encoder,
            id: format!("random-init-seed-{seed}"),
            name: format!("random init (seed {seed})"),
            device: device.clone(),
        })
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.config.preprocess
    }

    /// L2-normalised embeddings of preprocessed images (RGB8 HWC at the model's input size).
    pub fn embed<'a>(
        &self,
        images: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<f32>>> {
        if images.len() == 0 {
            return Ok(Vec::new());
        }
        let x = self.preprocess().to_tensor(images, &self.device)?;
        let mean = self.encoder.embed(&x)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
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
    write_atomic(&path, &bytes)?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| Error::model(dir, e.to_string()))?;
    write_atomic(&dir.join(CONFIG_FILE), &json)
}

/// Serialises named tensors as safetensors bytes (names sorted, so output is deterministic).
pub fn safetensors_bytes(
    tensors: &HashMap<String, Tensor>,
) -> std::result::Result<Vec<u8>, String> {
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize(named, None).map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part:
/// a temporary file beside it, flushed to disk, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            if let Ok(dir) = std::fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
