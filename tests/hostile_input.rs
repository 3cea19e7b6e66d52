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
