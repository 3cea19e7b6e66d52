//! The `image_decode` fuzz target: the body is `imgsearch_fuzz::image_decode::run` (fuzz/src/lib.rs), which
//! `tests/fuzz_replay.rs` also runs on the committed seeds and regression inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| imgsearch_fuzz::image_decode::run(data));
