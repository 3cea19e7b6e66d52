//! Arbitrary `checkpoint.json` / `checkpoint.safetensors` bytes through the checkpoint reader
//! (`imgsearch::train::checkpoint::read`, what `train --resume` calls), then what resuming does
//! with the tensors (convert parameters to f32, copy the moments).
//!
//! Input: `[mode]` then bytes. Mode bits 0-1: 0 or 1 = the bytes are `checkpoint.json` (next to
//! real weights); 2 = they are `checkpoint.safetensors` (next to a real state file); 3 = both,
//! split after a u16 LE length of the JSON. Bit 2: set the JSON's `weights_crc32` to the weights'
//! real CRC32 (when the JSON parses), so mutated weights get past the checksum.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use candle_core::Device;
use imgsearch::train::checkpoint::read as read_checkpoint;
use imgsearch::train::{CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
use imgsearch_fuzz::{init_env, maybe_write_seeds, scratch, tiny_checkpoint_files, touch_tensors};
use libfuzzer_sys::fuzz_target;

const FIX_CRC: u8 = 0x04;

struct State {
    _scratch: tempfile::TempDir,
    dir: PathBuf,
    json: Vec<u8>,
    weights: Vec<u8>,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    init_env();
    let scratch = scratch();
    let (json, weights) = tiny_checkpoint_files();
    maybe_write_seeds(|| {
        let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
        let mut both = vec![3 | FIX_CRC];
        both.extend_from_slice(&(json.len() as u16).to_le_bytes());
        both.extend_from_slice(&json);
        both.extend_from_slice(&weights);
        vec![
            ("seed-state".into(), with(0, &json)),
            ("seed-weights-fixcrc".into(), with(2 | FIX_CRC, &weights)),
            ("seed-both-fixcrc".into(), both),
        ]
    });
    let dir = scratch.path().join("run");
    std::fs::create_dir_all(&dir).expect("checkpoint dir");
    std::fs::write(dir.join(CHECKPOINT_STATE), &json).expect("state");
    std::fs::write(dir.join(CHECKPOINT_WEIGHTS), &weights).expect("weights");
    // The pristine pair reads (else the harness, not the library, is broken).
    let (_, tensors) = read_checkpoint(&dir, &Device::Cpu).expect("pristine checkpoint reads");
    touch_tensors(&tensors);
    State {
        _scratch: scratch,
        dir,
        json,
        weights,
    }
});

fn with_weights_crc(json: &[u8], weights: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return json.to_vec();
    };
    let Some(obj) = v.as_object_mut() else {
        return json.to_vec();
    };
    obj.insert("weights_crc32".into(), crc32fast::hash(weights).into());
    serde_json::to_vec(&v).unwrap_or_else(|_| json.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let state = &*STATE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (json, weights): (&[u8], &[u8]) = match mode & 3 {
        0 | 1 => (rest, &state.weights),
        2 => (&state.json, rest),
        _ => {
            if rest.len() < 2 {
                return;
            }
            let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
            (&rest[2..2 + n], &rest[2 + n..])
        }
    };
    let json = if mode & FIX_CRC != 0 {
        with_weights_crc(json, weights)
    } else {
        json.to_vec()
    };
    std::fs::write(state.dir.join(CHECKPOINT_STATE), &json).expect("write state");
    std::fs::write(state.dir.join(CHECKPOINT_WEIGHTS), weights).expect("write weights");
    if let Ok((_state, tensors)) = read_checkpoint(&state.dir, &Device::Cpu) {
        touch_tensors(&tensors);
    }
});
