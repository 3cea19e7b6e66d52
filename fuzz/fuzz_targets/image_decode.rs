//! Arbitrary bytes as an image file, decoded and preprocessed as the indexer does:
//! `imgsearch::data::load(&path, &Preprocess::default())` (content-sniffed format, EXIF
//! orientation, the reduced-size JPEG path for big JPEGs, size limits, resize and centre crop).
//! A success must give exactly `size × size × 3` bytes.
//!
//! Input: the file's bytes.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use imgsearch::data::{load, Preprocess};
use imgsearch_fuzz::{image_seeds, init_env, maybe_write_seeds, scratch};
use libfuzzer_sys::fuzz_target;

struct State {
    _scratch: tempfile::TempDir,
    path: PathBuf,
    preprocess: Preprocess,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    init_env();
    maybe_write_seeds(image_seeds);
    let scratch = scratch();
    let path = scratch.path().join("image");
    State {
        _scratch: scratch,
        path,
        preprocess: Preprocess::default(),
    }
});

/// LeakSanitizer suppressions, read by the sanitizer runtime at start. `reduced_jpeg` decodes
/// with `jpeg-decoder`, which (without its `rayon` feature) spawns a detached thread per colour
/// component for each decode; such a thread frees its handle and thread-local records only as
/// it exits, after the decode has returned, so libFuzzer's per-input leak check sometimes ran
/// while one was still exiting and reported its `Thread` (48 B), its `__cxa_thread_atexit`
/// record (32 B) and its name (30 B) as leaked (once in 42,560 executions; the input does not
/// reproduce it when run alone). Nothing else is suppressed.
#[no_mangle]
pub extern "C" fn __lsan_default_suppressions() -> *const std::ffi::c_char {
    c"leak:jpeg_decoder::worker::multithreaded\nleak:__cxa_thread_atexit_impl\n".as_ptr()
}

fuzz_target!(|data: &[u8]| {
    let state = &*STATE;
    std::fs::write(&state.path, data).expect("write image file");
    if let Ok(pixels) = load(&state.path, &state.preprocess) {
        let side = state.preprocess.size as usize;
        assert_eq!(pixels.len(), side * side * 3);
    }
});
