//! Checkpoints: after every epoch the run in `--out` saves its parameters, buffers and
//! Adam's moments (`checkpoint.safetensors`), its state (`checkpoint.json`, with the weights'
//! CRC32) and the exported model, each file replaced atomically, so `--resume` continues
//! exactly where the last complete epoch ended.

use super::adam::Adam;
use crate::error::{Error, Result};
use crate::fsx;
use crate::model::{is_buffer, safetensors_bytes, save_model, ModelConfig};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const CHECKPOINT_WEIGHTS: &str = "checkpoint.safetensors";
pub const CHECKPOINT_STATE: &str = "checkpoint.json";

/// Saved beside the checkpoint weights; `--resume` starts after `epochs_done`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub config: ModelConfig,
    pub epochs_done: usize,
    pub steps: usize,
    pub adam_step: usize,
    pub seconds: f64,
    pub weights_crc32: u32,
    /// The probe score (survival@9) of the model exported beside the checkpoint, which may be
    /// an earlier epoch's; absent in checkpoints from before the probe.
    #[serde(default)]
    pub best_probe: Option<f64>,
}

/// What one checkpoint holds.
pub(crate) struct Saved<'a> {
    pub config: &'a ModelConfig,
    pub params: &'a HashMap<String, Tensor>,
    pub adam: &'a Adam,
    pub epochs_done: usize,
    pub steps: usize,
    pub seconds: f64,
    pub best_probe: Option<f64>,
}

/// Writes the checkpoint, and with `export` the model (`model.safetensors`, `config.json`).
pub(crate) fn write(out: &Path, saved: &Saved<'_>, export: bool) -> Result<()> {
    let Saved {
        config,
        params,
        adam,
        epochs_done,
        steps,
        seconds,
        best_probe,
    } = *saved;
    let weights_path = out.join(CHECKPOINT_WEIGHTS);
    let mut state = adam.state_tensors();
    // Buffers (not in the optimiser) go with the parameters ("param." prefix), so --resume
    // loads them alike.
    for (name, tensor) in params.iter().filter(|(name, _)| is_buffer(name)) {
        state.insert(format!("param.{name}"), tensor.clone());
    }
    let bytes = safetensors_bytes(&state).map_err(|e| Error::checkpoint(&weights_path, e))?;
    let state = CheckpointState {
        config: config.clone(),
        epochs_done,
        steps,
        adam_step: adam.steps(),
        seconds,
        weights_crc32: crc32fast::hash(&bytes),
        best_probe,
    };
    fsx::write_atomic(&weights_path, &bytes).map_err(|e| Error::io(&weights_path, e))?;
    let json =
        serde_json::to_vec_pretty(&state).map_err(|e| Error::checkpoint(out, e.to_string()))?;
    let state_path = out.join(CHECKPOINT_STATE);
    fsx::write_atomic(&state_path, &json).map_err(|e| Error::io(&state_path, e))?;
    if !export {
        return Ok(());
    }
    let encoder: HashMap<String, Tensor> = params
        .iter()
        .filter(|(k, _)| k.starts_with("encoder."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    save_model(out, config, &encoder)
}

/// Reads the checkpoint of the run in `out`: its state (validated config included) and the
/// tensors it saved (parameters `param.*`, moments `adam_m.*` / `adam_v.*`), their checksum
/// checked against the state.
pub fn read(out: &Path, device: &Device) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
    let state_path = out.join(CHECKPOINT_STATE);
    let json = std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: CheckpointState = serde_json::from_slice(&json)
        .map_err(|e| Error::checkpoint(&state_path, format!("unreadable checkpoint state: {e}")))?;
    state
        .config
        .validate()
        .map_err(|e| Error::checkpoint(&state_path, e))?;
    let weights_path = out.join(CHECKPOINT_WEIGHTS);
    let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    if crc32fast::hash(&bytes) != state.weights_crc32 {
        return Err(Error::checkpoint(
            &weights_path,
            "checksum does not match checkpoint.json: the checkpoint is corrupt",
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::checkpoint(&weights_path, e.to_string()))?;
    Ok((state, tensors))
}
