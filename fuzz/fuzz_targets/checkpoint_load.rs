//! The `checkpoint_load` fuzz target: the body is `imgsearch_fuzz::checkpoint_load::run` (fuzz/src/lib.rs), which
//! `tests/fuzz_replay.rs` also runs on the committed seeds and regression inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| imgsearch_fuzz::checkpoint_load::run(data));
