//! Training's pixel cache on real fixture photos: filled once, then read without decoding;
//! brought up to date when a file or the preprocessing changes; rebuilt when damaged.

mod common;

use common::cli::fixtures;

use imgsearch::data::{self, Event, Loaded, Preprocess, CACHE_FILE};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Real photos plus one unreadable file, copied where the test may change them.
fn photos(tmp: &Path) -> PathBuf {
    let root = tmp.join("photos");
    for dir in ["signdigits-3", "signdigits-7", "attfaces-s1"] {
        let to = root.join(dir);
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(fixtures().join("photos").join(dir)).expect("read_dir") {
            let from = entry.expect("entry").path();
            std::fs::copy(&from, to.join(from.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(root.join("notes.jpg"), b"a text file, not an image\n").expect("write");
    root
}

struct Run {
    loaded: Loaded,
    warnings: Vec<String>,
    skipped: usize,
}

fn load(root: &Path, cache: &Path, preprocess: &Preprocess) -> Run {
    let files = data::scan(&[root.to_path_buf()]).expect("scan").files;
    let mut warnings = Vec::new();
    let mut skipped = 0;
    let loaded = data::load_pixels(&files, preprocess, Some(cache), &mut |event| match event {
        Event::Warning(line) => warnings.push(line),
        Event::Skipped(_) => skipped += 1,
        Event::Done(_) => {}
    })
    .expect("load pixels");
    Run {
        loaded,
        warnings,
        skipped,
    }
}

/// Every record, exact and augmentation source, as one byte vector per image.
fn records(loaded: &Loaded) -> Vec<Vec<u8>> {
    (0..loaded.pixels.len())
        .map(|i| {
            let p = loaded.pixels.get(i);
            [p.exact, p.aug].concat()
        })
        .collect()
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(time)
        .expect("set mtime");
}

fn first_jpeg(root: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = data::scan(&[root.join("signdigits-3")])
        .expect("scan")
        .files
        .into_iter()
        .map(|f| f.path)
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn second_load_reads_the_cache_and_decodes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = photos(tmp.path());
    let cache = tmp.path().join("cache").join(CACHE_FILE);
    let preprocess = Preprocess::default();

    let first = load(&root, &cache, &preprocess);
    let n = data::scan(std::slice::from_ref(&root))
        .expect("scan")
        .files
        .len();
    assert_eq!(first.loaded.stats.decoded, n);
    assert_eq!(first.loaded.stats.from_cache, 0);
    assert_eq!(first.skipped, 1, "the text file");
    assert_eq!(first.loaded.pixels.len(), n - 1);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    assert!(cache.exists());

    // Garbage in place of a photo, with its size and mtime kept: only a run that decodes
    // would notice. The cache answers, so every image still loads as before.
    let photo = first_jpeg(&root);
    let meta = std::fs::metadata(&photo).expect("metadata");
    let original = std::fs::read(&photo).expect("read");
    std::fs::write(&photo, vec![0x5a; original.len()]).expect("write");
    set_mtime(&photo, meta.modified().expect("mtime"));

    let second = load(&root, &cache, &preprocess);
    assert_eq!(second.loaded.stats.decoded, 0);
    assert_eq!(second.loaded.stats.from_cache, n);
    assert_eq!(second.loaded.stats.rebuilt, None);
    assert_eq!(second.skipped, 1, "a failure is remembered, not retried");
    assert_eq!(records(&second.loaded), records(&first.loaded));

    // The same garbage with a new mtime is noticed: that file alone is decoded (and fails).
    set_mtime(
        &photo,
        meta.modified().expect("mtime") + Duration::from_secs(60),
    );
    let third = load(&root, &cache, &preprocess);
    assert_eq!(third.loaded.stats.decoded, 1);
    assert_eq!(third.loaded.stats.from_cache, n - 1);
    assert_eq!(third.skipped, 2);
    assert_eq!(third.loaded.pixels.len(), n - 2);
}

#[test]
fn a_changed_photo_is_decoded_again_and_the_rest_reused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = photos(tmp.path());
    let cache = tmp.path().join(CACHE_FILE);
    let preprocess = Preprocess::default();
    let first = load(&root, &cache, &preprocess);

    // Another real photo's content, and a later mtime.
    let photo = first_jpeg(&root);
    let other = data::scan(&[root.join("signdigits-7")])
        .expect("scan")
        .files[0]
        .path
        .clone();
    std::fs::copy(&other, &photo).expect("copy");
    set_mtime(&photo, SystemTime::now() + Duration::from_secs(60));

    let second = load(&root, &cache, &preprocess);
    assert_eq!(second.loaded.stats.decoded, 1);
    assert_eq!(
        second.loaded.stats.rebuilt.as_deref(),
        Some("files changed")
    );
    let files = data::scan(std::slice::from_ref(&root)).expect("scan").files;
    let at = files
        .iter()
        .filter(|f| !f.path.ends_with("notes.jpg"))
        .position(|f| f.path == photo)
        .expect("photo listed");
    let changed = second.loaded.pixels.get(at);
    assert_eq!(
        changed.exact,
        data::load(&other, &preprocess).expect("load")
    );
    assert_ne!(records(&second.loaded)[at], records(&first.loaded)[at]);
    let unchanged = |run: &Run| {
        let mut all = records(&run.loaded);
        all.remove(at);
        all
    };
    assert_eq!(unchanged(&second), unchanged(&first));

    // And the updated cache is read as it is by the next run.
    let third = load(&root, &cache, &preprocess);
    assert_eq!(third.loaded.stats.decoded, 0);
    assert_eq!(records(&third.loaded), records(&second.loaded));
}

#[test]
fn a_different_input_size_rebuilds_the_whole_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = photos(tmp.path());
    let cache = tmp.path().join(CACHE_FILE);
    let first = load(&root, &cache, &Preprocess::default());
    let bigger = Preprocess {
        size: 40,
        ..Default::default()
    };
    let second = load(&root, &cache, &bigger);
    assert_eq!(second.loaded.stats.decoded, first.loaded.stats.decoded);
    assert_eq!(second.loaded.stats.from_cache, 0);
    assert_eq!(
        second.loaded.stats.rebuilt.as_deref(),
        Some("preprocessing changed")
    );
    let image = second.loaded.pixels.get(0);
    assert_eq!(image.exact.len(), 40 * 40 * 3);
    assert_eq!((image.aug_size, image.aug.len()), (45, 45 * 45 * 3));
    // Mean and std are applied after the cache: changing them keeps it.
    let renormalised = Preprocess {
        size: 40,
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    assert_eq!(load(&root, &cache, &renormalised).loaded.stats.decoded, 0);
}

#[test]
fn a_damaged_cache_is_rebuilt_with_one_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = photos(tmp.path());
    let cache = tmp.path().join(CACHE_FILE);
    let preprocess = Preprocess::default();
    let first = load(&root, &cache, &preprocess);
    let (decoded, expected) = (first.loaded.stats.decoded, records(&first.loaded));
    // Unmapped before the file is damaged in place (see the SAFETY note in the cache).
    drop(first);
    let bytes = std::fs::read(&cache).expect("read cache");

    let mut flipped_header = bytes.clone();
    flipped_header[20] ^= 1;
    let mut flipped_manifest = bytes.clone();
    let last = flipped_manifest.len() - 2;
    flipped_manifest[last] ^= 1;
    let damages: [(&str, Vec<u8>); 5] = [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("truncated", bytes[..10].to_vec()),
        ("header checksum", flipped_header),
        ("manifest checksum", flipped_manifest),
        ("not a pixel cache", b"something else entirely".repeat(8)),
    ];
    for (reason, damaged) in damages {
        std::fs::write(&cache, &damaged).expect("write");
        let run = load(&root, &cache, &preprocess);
        assert_eq!(run.warnings.len(), 1, "{reason}: {:?}", run.warnings);
        assert!(
            run.warnings[0].contains(reason) && run.warnings[0].contains(CACHE_FILE),
            "{reason}: {}",
            run.warnings[0]
        );
        assert_eq!(run.loaded.stats.decoded, decoded);
        assert_eq!(records(&run.loaded), expected);
        drop(run);
        // Rebuilt: the next run reads it without a word.
        let again = load(&root, &cache, &preprocess);
        assert!(again.warnings.is_empty());
        assert_eq!(again.loaded.stats.decoded, 0);
        drop(again);
    }
}
