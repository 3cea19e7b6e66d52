//! The command line given what a careless user or an attacker would give it, through the real
//! binary on real images (tests/fixtures): a damaged index and the repair it advises, files
//! that decode to far more than they weigh, undo and moves that cannot finish, and values out
//! of range. Each answer is a clear error or the right result; nothing written is lost.

mod common;

use common::cli::{fails, fixtures, images, lines, ok, run, s, stderr, summary};
use std::path::{Path, PathBuf};

/// An index of 40 real CIFAR-10 images in four folders: (images folder, index folder).
fn indexed(tmp: &Path) -> (PathBuf, PathBuf) {
    let photos = std::fs::canonicalize(tmp).unwrap().join("photos");
    for class in ["cat", "ship", "frog", "truck"] {
        images(&photos.join(class), class, 10);
    }
    let index = tmp.join("index");
    ok(&["index", s(&photos), "--index", s(&index), "--quiet"]);
    (photos, index)
}

/// Every file of an index folder with its bytes.
fn snapshot(index: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(index)
        .unwrap()
        .flatten()
        .filter(|f| f.file_type().unwrap().is_file() && f.file_name() != "writer.lock")
        .map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(f.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The live entries and recorded folders `verify` and `query` see.
fn entries(index: &Path) -> u64 {
    let out = ok(&["verify", "--index", s(index), "--json"]);
    summary(&out)["entries"].as_u64().unwrap()
}

/// Flips one byte of `file` at `at` (counted from its start).
fn flip(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn repair_as_advised_recovers_a_manifest_with_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, index) = indexed(tmp.path());
    let query = fixtures().join("test/cat/0000.jpg");
    let before = ok(&["query", s(&query), "--index", s(&index), "--json"]);
    let manifest = index.join("manifest.json");
    // A digit of the commit time: the body is still JSON, its checksum fails.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let at = text.find("\"committed_unix\": ").unwrap() + "\"committed_unix\": ".len() + 3;
    flip(&manifest, at);

    let damaged = run(&["verify", "--index", s(&index)]);
    assert_eq!(damaged.status.code(), Some(1));
    let said = String::from_utf8_lossy(&damaged.stdout);
    assert!(said.contains("DAMAGED (the manifest)"), "{said}");
    assert!(!said.contains("of 0 segments"), "{said}");

    // As advised, no folder given: the segments and the folders are read from the damaged
    // manifest, nothing is lost.
    let out = run(&["index", "--repair", "--index", s(&index), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let repair = &summary(&String::from_utf8_lossy(&out.stdout))["repair"];
    assert!(repair["manifest_recovered"]
        .as_str()
        .unwrap()
        .contains("checksum"));
    assert_eq!(entries(&index), 40);
    let after = ok(&["query", s(&query), "--index", s(&index), "--json"]);
    assert_eq!(lines(&after)[0]["results"], lines(&before)[0]["results"]);
    let stats = ok(&["index", "--index", s(&index), "--json"]);
    let scanned = &summary(&stats)["scanned"];
    assert_eq!(scanned[0]["path"], s(&photos));
}

#[test]
fn repair_refuses_without_deleting_when_the_folders_cannot_be_known() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, index) = indexed(tmp.path());
    let manifest = index.join("manifest.json");
    // The body's opening brace: nothing of the manifest can be read.
    let text = std::fs::read_to_string(&manifest).unwrap();
    flip(
        &manifest,
        text.find("\"manifest\":").unwrap() + "\"manifest\":".len(),
    );
    let kept = snapshot(&index);

    let said = fails(&["index", "--repair", "--index", s(&index)]);
    assert!(said.contains("nothing was changed"), "{said}");
    assert!(
        said.contains("--repair") && said.contains("FOLDER"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    // Not one file touched: the segments are still there, byte for byte.
    assert_eq!(snapshot(&index), kept);

    // Given the folder, the repair starts afresh from it.
    ok(&[
        "index",
        "--repair",
        s(&photos),
        "--index",
        s(&index),
        "--quiet",
    ]);
    assert_eq!(entries(&index), 40);
}

#[test]
fn dups_checks_the_index_it_reads_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = indexed(tmp.path());
    let vectors = std::fs::read_dir(&index)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "vec"))
        .unwrap();
    // A byte inside the vectors, past the 64-byte header.
    flip(&vectors, 64 + 1000);
    let said = fails(&["dups", "--index", s(&index), "--no-rotations"]);
    assert!(said.contains(".vec") && said.contains("--repair"), "{said}");
}

/// A GIF whose logical screen is 16000 × 16000 (a gigabyte of RGBA) holding one 1 × 1 frame:
/// 35 bytes.
fn gif_bomb() -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&16000u16.to_le_bytes());
    gif.extend_from_slice(&16000u16.to_le_bytes());
    // A global colour table of two entries, black and white.
    gif.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    // One 1 × 1 frame at the origin: LZW code size 2, codes clear, 0, end.
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
    gif.extend_from_slice(&[0x02, 0x02, 0x44, 0x01, 0x00, 0x3B]);
    gif
}

/// The start of a PNG that says it is 20000 × 20000 RGB (1.2 GB of pixels).
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&20000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x01";
    png.extend_from_slice(&2u32.to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
    png
}

#[test]
fn images_that_decode_past_the_budget_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = indexed(tmp.path());
    for (name, bytes) in [("screen.gif", gif_bomb()), ("huge.png", png_bomb())] {
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let said = fails(&["query", s(&file), "--index", s(&index)]);
        assert!(said.contains(name), "{said}");
        assert!(said.contains("over the budget of 256 MiB"), "{said}");
    }
}

/// A folder of copies: the same CIFAR-10 photo at a/, b/ and c/, and others beside them.
fn copies(tmp: &Path) -> (PathBuf, PathBuf) {
    let photos = std::fs::canonicalize(tmp).unwrap().join("photos");
    images(&photos.join("others"), "ship", 8);
    let photo = fixtures().join("test/frog/0000.jpg");
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(photos.join(sub)).unwrap();
        std::fs::copy(&photo, photos.join(sub).join("frog.jpg")).unwrap();
    }
    let index = tmp.join("index");
    ok(&["index", s(&photos), "--index", s(&index), "--quiet"]);
    (photos, index)
}

#[test]
fn undo_keeps_and_reports_every_file_it_cannot_put_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (photos, index) = copies(tmp.path());
    let dest = tmp.path().join("dest");
    let out = ok(&["dups", "--index", s(&index), "--move", s(&dest), "--json"]);
    let log = PathBuf::from(summary(&out)["log"].as_str().unwrap());
    let moved: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|sub| photos.join(sub).join("frog.jpg"))
        .filter(|p| !p.exists())
        .collect();
    assert_eq!(moved.len(), 2);
    // Something new at one of the moved files' places.
    std::fs::write(&moved[0], b"a new file").unwrap();

    let out = run(&["dups", "--undo", s(&log)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(s(&moved[0])) && said.contains("kept at"),
        "{said}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 files restored, 1 not"), "{text}");
    // Nothing lost: the new file stays, the moved one is still in DEST, the other is back.
    assert_eq!(std::fs::read(&moved[0]).unwrap(), b"a new file");
    assert!(moved[1].exists());
    let kept = dest.join(moved[0].strip_prefix(&photos).unwrap());
    assert!(kept.exists(), "{}", kept.display());
}

#[test]
fn a_move_that_stops_says_what_it_did_and_how_to_undo_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = copies(tmp.path());
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    // Files where the copies' folders would go: every move fails, as on a full disk.
    for sub in ["a", "b", "c"] {
        std::fs::write(dest.join(sub), b"in the way").unwrap();
    }
    let said = fails(&["dups", "--index", s(&index), "--move", s(&dest)]);
    assert!(said.contains("stopped after moving 0 files"), "{said}");
    assert!(
        said.contains("imgsearch dups --undo ") && said.contains("imgsearch-undo-"),
        "{said}"
    );
}

/// Runs `args`, which must be refused as a usage error (exit 2) saying `words`.
fn refused(args: &[&str], words: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
}

#[test]
fn query_refuses_a_min_score_that_is_not_a_cosine() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = indexed(tmp.path());
    let query = fixtures().join("test/cat/0000.jpg");
    for bad in ["2", "NaN", "-1.5"] {
        refused(
            &["query", s(&query), "--index", s(&index), "--min-score", bad],
            "must be a cosine from -1 to 1",
        );
    }
    // A negative bound is a bound, not a flag.
    let out = ok(&[
        "query",
        s(&query),
        "--index",
        s(&index),
        "--min-score",
        "-0.5",
    ]);
    assert!(!out.is_empty());
}

#[test]
fn dups_refuses_scores_out_of_range_as_the_api_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = indexed(tmp.path());
    refused(
        &["dups", "--index", s(&index), "--copy-score", "5"],
        "must be a correlation from -1 to 1",
    );
    refused(
        &["dups", "--index", s(&index), "--threshold", "0"],
        "must be above 0 and at most 1",
    );
    let answer = get_dups_threshold_error();
    assert!(answer.contains("must be above 0 and at most 1"), "{answer}");
}

/// What the HTTP API answers to `threshold=0`.
fn get_dups_threshold_error() -> String {
    let served = common::serve::serve(&["photos/signdigits-7"], &[]);
    let answer = common::serve::get(served.addr, "/api/dups?threshold=0");
    assert_eq!(answer.status, 400);
    answer.json()["message"].as_str().unwrap().to_string()
}

#[test]
fn train_refuses_zero_epochs_and_a_learning_rate_that_is_not_a_number() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    images(&photos, "cat", 4);
    let out = tmp.path().join("model");
    for (flag, bad) in [
        ("--epochs", "0"),
        ("--lr", "NaN"),
        ("--lr", "-1"),
        ("--lr", "inf"),
    ] {
        refused(
            &["train", s(&photos), "--out", s(&out), flag, bad],
            "invalid value",
        );
        assert!(!out.exists());
    }
}

#[test]
fn a_run_that_diverges_before_any_checkpoint_names_none() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    images(&photos, "cat", 4);
    let out = tmp.path().join("model");
    let said = fails(&[
        "train",
        s(&photos),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--lr",
        "1e30",
        "--quiet",
    ]);
    assert!(said.contains("diverged"), "{said}");
    assert!(said.contains("no checkpoint was written"), "{said}");
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn a_device_is_not_a_folder_to_record() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let said = fails(&["index", "/dev/null", "--index", s(&index)]);
    assert!(said.contains("/dev/null: a device, not a folder"), "{said}");
    assert!(!index.exists());
}

#[test]
fn a_fifo_among_the_photos_is_skipped_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let photos = tmp.path().join("photos");
    images(&photos, "cat", 3);
    let fifo = photos.join("pipe.jpg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let out = run(&["index", s(&photos), "--index", s(&index)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("pipe.jpg") && said.contains("FIFO"), "{said}");
    let out = ok(&["index", s(&photos), "--index", s(&index), "--json"]);
    let skips: Vec<_> = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "skip")
        .collect();
    assert_eq!(skips.len(), 1, "{out}");
    assert_eq!(summary(&out)["skipped"], 1);
}

#[test]
fn an_image_given_as_the_model_is_named_as_not_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, index) = indexed(tmp.path());
    let photo = fixtures().join("test/cat/0000.jpg");
    let said = fails(&[
        "query",
        s(&photo),
        "--index",
        s(&index),
        "--model",
        s(&photo),
    ]);
    assert!(said.contains("0000.jpg: not a model"), "{said}");
    assert!(!said.contains("config.json"), "{said}");
}

#[test]
fn a_model_config_with_zero_std_is_refused_before_an_index_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    images(&photos, "cat", 3);
    let model = tmp.path().join("zero-std");
    std::fs::create_dir_all(&model).unwrap();
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default");
    std::fs::copy(
        assets.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(assets.join("config.json")).unwrap()).unwrap();
    config["preprocess"]["std"] = serde_json::json!([0.0, 0.0, 0.0]);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let index = tmp.path().join("index");
    let said = fails(&[
        "index",
        s(&photos),
        "--index",
        s(&index),
        "--model",
        s(&model),
    ]);
    assert!(
        said.contains("config.json") && said.contains("std"),
        "{said}"
    );
    assert!(!index.exists());
}
