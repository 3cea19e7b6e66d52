//! The fuzz targets' committed inputs, replayed in the ordinary test suite: every seed
//! (`fuzz/corpus/<target>/seed-*`) and every saved finding (`fuzz/regressions/<target>/`) goes
//! through the same code libFuzzer runs (`fuzz/src/lib.rs`, compiled here as a module), on the
//! stable toolchain, on every machine. A fixed finding that comes back, or a library change
//! that breaks a harness, fails here; exploring for new findings is `fuzz/ci.sh` with a nightly
//! toolchain (fuzz/README.md).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod imgsearch_fuzz;

use std::path::{Path, PathBuf};

/// The committed inputs of one target: seeds, then regressions, by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(fuzz.join("corpus").join(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .flatten()
        .map(|f| f.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    let mut regressions: Vec<PathBuf> = std::fs::read_dir(fuzz.join("regressions").join(target))
        .map(|list| list.flatten().map(|f| f.path()).collect())
        .unwrap_or_default();
    regressions.sort();
    seeds.extend(regressions);
    seeds
}

/// A target's name and its body.
type Target = (&'static str, fn(&[u8]));

/// One test, the targets one after another: each target sets candle's and rayon's thread counts
/// in the environment on first use, which must not race another thread.
#[test]
fn every_committed_fuzz_input_runs_clean() {
    let targets: [Target; 4] = [
        ("index_open", imgsearch_fuzz::index_open::run),
        ("model_load", imgsearch_fuzz::model_load::run),
        ("checkpoint_load", imgsearch_fuzz::checkpoint_load::run),
        ("image_decode", imgsearch_fuzz::image_decode::run),
    ];
    let mut replayed = 0;
    for (name, run) in targets {
        let files = inputs(name);
        assert!(!files.is_empty(), "no committed inputs for {name}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            eprintln!("{name}: {}", file.display());
            run(&data);
            replayed += 1;
        }
    }
    // 13 + 7 + 3 + 10 when this was written; fewer means inputs went missing.
    assert!(replayed >= 33, "replayed only {replayed} inputs");
}
