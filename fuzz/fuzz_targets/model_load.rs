//! Arbitrary bytes as a model's `config.json` or `model.safetensors`, next to the real other
//! file, then `Model::load(&ModelSource::Path(dir), &Device::Cpu)`; with a model that loads, what
//! the indexer does next: decode and preprocess a real image with the model's preprocessing
//! (`data::load`), and embed it with a synthetic image (input sizes up to 64).
//!
//! Input: `[mode]` then the file's bytes. Mode bit 0: 0 = the bytes are `config.json` (next to
//! real weights), 1 = they are `model.safetensors` (next to a real config). Bit 1: 0 = the real
//! files are the bundled default model (assets/default), 1 = a tiny model (see `tiny_config`).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use candle_core::Device;
use imgsearch::data::load;
use imgsearch::model::{model_files, Model, ModelSource};
use imgsearch_fuzz::{
    init_env, maybe_write_seeds, scratch, tiny_model_files, DEFAULT_CONFIG, DEFAULT_WEIGHTS,
};
use libfuzzer_sys::fuzz_target;

/// Largest input side embedded (the default model's is 32, the tiny one's 12): a config may ask
/// for any multiple of 8, and embedding 4096×4096 images is slow, not wrong.
const MAX_EMBED_SIZE: u32 = 64;

const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/photos/signdigits-0/IMG_1209.jpg");

struct State {
    _scratch: tempfile::TempDir,
    /// A real photo (100×100 JPEG with EXIF, from tests/fixtures).
    image: PathBuf,
    /// `dirs[mode & 3]`: the folder whose config (even) or weights (odd) the input replaces.
    dirs: Vec<PathBuf>,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    init_env();
    let scratch = scratch();
    let (tiny_weights, tiny_config) = tiny_model_files();
    maybe_write_seeds(|| {
        let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
        vec![
            ("seed-default-config".into(), with(0, DEFAULT_CONFIG)),
            ("seed-tiny-config".into(), with(2, &tiny_config)),
            ("seed-tiny-weights".into(), with(3, &tiny_weights)),
            // The tiny weights beside the default config: a shape mismatch.
            (
                "seed-default-with-tiny-weights".into(),
                with(1, &tiny_weights),
            ),
        ]
    });
    let mut dirs = Vec::new();
    for (mode, weights, config) in [
        (0, DEFAULT_WEIGHTS, DEFAULT_CONFIG),
        (1, DEFAULT_WEIGHTS, DEFAULT_CONFIG),
        (2, &tiny_weights[..], &tiny_config[..]),
        (3, &tiny_weights[..], &tiny_config[..]),
    ] {
        let dir = scratch.path().join(format!("mode{mode}"));
        std::fs::create_dir_all(&dir).expect("model dir");
        let (weights_path, config_path) = model_files(&dir);
        std::fs::write(weights_path, weights).expect("weights");
        std::fs::write(config_path, config).expect("config");
        // The pristine pair loads (else the harness, not the library, is broken).
        Model::load(&ModelSource::Path(dir.clone()), &Device::Cpu).expect("pristine model loads");
        dirs.push(dir);
    }
    let image = scratch.path().join("photo.jpg");
    std::fs::write(&image, PHOTO).expect("photo");
    State {
        _scratch: scratch,
        image,
        dirs,
    }
});

fuzz_target!(|data: &[u8]| {
    let state = &*STATE;
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let dir = &state.dirs[usize::from(mode & 3)];
    let (weights_path, config_path) = model_files(dir);
    let file = if mode & 1 == 0 {
        config_path
    } else {
        weights_path
    };
    std::fs::write(file, bytes).expect("write model file");
    let Ok(model) = Model::load(&ModelSource::Path(dir.clone()), &Device::Cpu) else {
        return;
    };
    let _ = (&model.id, &model.name);
    let size = model.preprocess().size;
    let side = size as usize;
    let photo = load(&state.image, model.preprocess()).expect("the fixture photo decodes");
    assert_eq!(photo.len(), side * side * 3);
    if size > MAX_EMBED_SIZE {
        return;
    }
    let synthetic: Vec<u8> = (0..side * side * 3)
        .map(|j| (j as u8).wrapping_mul(31))
        .collect();
    let images = [photo, synthetic];
    if let Ok(vectors) = model.embed(images.iter().map(Vec::as_slice)) {
        assert_eq!(vectors.len(), 2);
        for v in &vectors {
            assert_eq!(v.len(), model.config.embedding_dim());
        }
    }
});
