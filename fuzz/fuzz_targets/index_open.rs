//! An index directory whose files hold arbitrary bytes: the fuzz input mutates the files of a
//! real tiny index (two segments, an HNSW graph, tombstones; see `build_pristine_index`), with
//! modes that recompute the manifest's own CRC and the per-file CRCs it records so mutated bytes
//! reach the segment, entries, graph and tombstone parsers. Then `Index::open`, exact and graph
//! searches, `entries()`, `vectors()`, `verify` and optionally `IndexWriter::open`.
//!
//! Input: `[flags]` then operations `[file] [kind] [len u16 LE] [payload]` (see
//! `imgsearch_fuzz::flags` and `imgsearch_fuzz::Op`).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use imgsearch_fuzz::{
    build_pristine_index, decode_ops, exercise_index, index_seeds, init_env, maybe_write_seeds,
    mutate, scratch, write_index_files, PristineIndex,
};
use libfuzzer_sys::fuzz_target;

struct State {
    _scratch: tempfile::TempDir,
    dir: PathBuf,
    pristine: PristineIndex,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    init_env();
    let scratch = scratch();
    let build = scratch.path().join("build");
    let pristine = build_pristine_index(&build);
    maybe_write_seeds(|| index_seeds(&pristine));
    let dir = scratch.path().join("index");
    std::fs::create_dir_all(&dir).expect("index dir");
    State {
        _scratch: scratch,
        dir,
        pristine,
    }
});

fuzz_target!(|data: &[u8]| {
    let state = &*STATE;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let ops = decode_ops(rest);
    let files = mutate(&state.pristine, flags, &ops);
    write_index_files(&state.dir, &files);
    exercise_index(&state.dir, flags, ops.is_empty());
});
