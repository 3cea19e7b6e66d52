//! End-to-end tests of the index engine on real files in temporary directories.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use imgsearch::index::{
    verify, Entry, Index, IndexError, IndexMeta, IndexStats, IndexWriter, SearchOptions,
    MAX_SEGMENTS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn meta(model_id: &str, dim: usize) -> IndexMeta {
    IndexMeta {
        model_id: model_id.to_string(),
        model_name: format!("model {model_id}"),
        dim,
        preprocess: serde_json::json!({"size": 32, "mean": [0.485, 0.456, 0.406], "resize": "triangle"}),
    }
}

fn entry(i: usize) -> Entry {
    Entry {
        path: PathBuf::from(format!("/photos/album-{}/img-{i:05}.jpg", i % 7)),
        size: 1000 + i as u64,
        mtime_ns: 1_700_000_000_000_000_000 + i as i64,
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn random_unit(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    normalize((0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
}

fn random_vectors(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| random_unit(&mut rng, dim)).collect()
}

/// `n` unit vectors around `clusters` random centres (plus `queries` more from the same law).
fn clustered(seed: u64, n: usize, dim: usize, clusters: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.random_range(0..clusters)];
            normalize(
                c.iter()
                    .map(|x| x + 0.35 * rng.random_range(-1.0f32..1.0))
                    .collect(),
            )
        })
        .collect()
}

fn build(dir: &Path, vecs: &[Vec<f32>], threshold: usize) -> IndexStats {
    let mut w = IndexWriter::open(dir, meta("m1", vecs[0].len())).unwrap();
    w.set_graph_threshold(threshold);
    for (i, v) in vecs.iter().enumerate() {
        w.add(entry(i), v).unwrap();
    }
    w.finish().unwrap()
}

fn manifest_segments(dir: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    v["manifest"]["segments"].as_array().unwrap().clone()
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x5a;
    fs::write(path, b).unwrap();
}

fn opts(k: usize, exact: bool) -> SearchOptions {
    SearchOptions {
        k,
        ef: 64,
        exact,
        min_score: None,
    }
}

fn expect_corrupt(r: Result<impl std::fmt::Debug, IndexError>, file_suffix: &str) -> String {
    match r {
        Err(e @ IndexError::Corrupt { .. }) => {
            let msg = e.to_string();
            if let IndexError::Corrupt { path, .. } = &e {
                assert!(
                    path.to_string_lossy().ends_with(file_suffix),
                    "error names {path:?}, expected *{file_suffix}"
                );
            }
            assert!(msg.contains(file_suffix), "{msg}");
            assert!(msg.contains("imgsearch index --repair"), "{msg}");
            msg
        }
        other => panic!("expected Corrupt naming *{file_suffix}, got {other:?}"),
    }
}

#[test]
fn create_commit_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(1, 300, 16);
    let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    for (i, v) in vecs.iter().enumerate().take(200) {
        w.add(entry(i), v).unwrap();
    }
    assert_eq!(w.pending(), 200);
    w.commit().unwrap();
    assert_eq!(w.pending(), 0);
    assert_eq!(w.existing().len(), 200);
    assert_eq!(Index::open(dir.path()).unwrap().len(), 200);
    for (i, v) in vecs.iter().enumerate().skip(200) {
        w.add(entry(i), v).unwrap();
    }
    let stats = w.finish().unwrap();
    // 100 is not below 200 / 4: both segments are kept.
    assert_eq!(
        stats,
        IndexStats {
            total: 300,
            segments: 2
        }
    );

    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 300);
    assert!(!idx.is_empty());
    assert_eq!(idx.meta(), &meta("m1", 16));
    let mut got: Vec<Entry> = idx.entries().map(Result::unwrap).collect();
    got.sort_by(|a, b| a.path.cmp(&b.path));
    let mut want: Vec<Entry> = (0..300).map(entry).collect();
    want.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(got, want);
    verify(dir.path()).unwrap();

    // A writer reopening sees the same entries.
    let w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    assert_eq!(w.existing().len(), 300);
    assert_eq!(w.existing()[&entry(5).path], entry(5));
}

#[test]
fn empty_index_opens_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let stats = IndexWriter::open(dir.path(), meta("m1", 8))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(
        stats,
        IndexStats {
            total: 0,
            segments: 0
        }
    );
    let idx = Index::open(dir.path()).unwrap();
    assert!(idx.is_empty());
    assert!(idx.search(&[1.0; 8], &opts(5, false)).unwrap().is_empty());
}

#[test]
fn missing_index_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = Index::open(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, IndexError::Missing(_)), "{err:?}");
    assert!(err.to_string().contains("imgsearch index"), "{err}");
}

#[test]
fn search_finds_inserted_vector_first() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(2, 2000, 32);
    // Threshold below the size: the segment has a graph; also check the exact path.
    build(dir.path(), &vecs, 500);
    assert!(manifest_segments(dir.path())[0]["graph_file"].is_string());
    let idx = Index::open(dir.path()).unwrap();
    for exact in [false, true] {
        for i in (0..2000).step_by(97) {
            let hits = idx.search(&vecs[i], &opts(5, exact)).unwrap();
            assert_eq!(hits.len(), 5);
            assert_eq!(hits[0].path, entry(i).path, "exact={exact}");
            assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
    // Queries need not be normalised by us; k larger than the index is fine.
    let scaled: Vec<f32> = vecs[3].iter().map(|x| x * 10.0).collect();
    let hits = idx.search(&scaled, &opts(5000, true)).unwrap();
    assert_eq!(hits.len(), 2000);
    assert_eq!(hits[0].path, entry(3).path);
    assert!(idx.search(&vecs[3], &opts(0, false)).unwrap().is_empty());
}

#[test]
fn graph_recall_matches_exact() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 64;
    let all = clustered(3, 5200, dim, 40);
    let (data, queries) = all.split_at(5000);
    // One build thread: the graph's links depend on the order of concurrent insertions, so
    // a single thread makes the graph, and the recall below, the same on every run.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let stats = pool.install(|| build(dir.path(), data, 1000));
    assert_eq!(stats.segments, 1);
    assert!(manifest_segments(dir.path())[0]["graph_file"].is_string());
    verify(dir.path()).unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let mut found = 0;
    for q in queries {
        let exact: HashSet<PathBuf> = idx
            .search(q, &opts(10, true))
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect();
        let approx = idx.search(q, &opts(10, false)).unwrap();
        assert_eq!(approx.len(), 10);
        found += approx.iter().filter(|h| exact.contains(&h.path)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    eprintln!("recall@10 = {recall}");
    assert!(recall >= 0.99, "recall@10 = {recall}");
}

#[test]
fn removed_entries_are_never_returned() {
    for threshold in [usize::MAX, 100] {
        let dir = tempfile::tempdir().unwrap();
        let vecs = random_vectors(4, 400, 16);
        build(dir.path(), &vecs, threshold);
        let removed: Vec<usize> = (0..400).step_by(4).collect();
        let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
        w.set_graph_threshold(threshold);
        for &i in &removed {
            w.remove(&entry(i).path);
        }
        w.remove(Path::new("/not/indexed.jpg"));
        assert_eq!(w.pending(), removed.len());
        w.commit().unwrap();
        assert_eq!(w.existing().len(), 300);
        drop(w); // no finish: the tombstones alone must hide the rows

        let idx = Index::open(dir.path()).unwrap();
        assert_eq!(idx.len(), 300);
        let gone: HashSet<PathBuf> = removed.iter().map(|&i| entry(i).path).collect();
        assert!(idx.entries().all(|e| !gone.contains(&e.unwrap().path)));
        for &i in removed.iter().take(30) {
            for exact in [false, true] {
                let hits = idx.search(&vecs[i], &opts(20, exact)).unwrap();
                assert!(!hits.is_empty());
                assert!(
                    hits.iter().all(|h| !gone.contains(&h.path)),
                    "threshold {threshold}"
                );
            }
        }
        // After finish (25% deleted: the segment is compacted) the same holds.
        let stats = IndexWriter::open(dir.path(), meta("m1", 16))
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(stats.total, 300);
        assert_eq!(manifest_segments(dir.path())[0]["deleted"], 0);
        let idx = Index::open(dir.path()).unwrap();
        assert_eq!(idx.len(), 300);
        let hits = idx.search(&vecs[0], &opts(400, true)).unwrap();
        assert_eq!(hits.len(), 300);
        assert!(hits.iter().all(|h| !gone.contains(&h.path)));
    }
}

#[test]
fn adding_an_existing_path_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(5, 100, 16);
    build(dir.path(), &vecs, usize::MAX);
    let newv = random_vectors(6, 1, 16).remove(0);
    let mut changed = entry(7);
    changed.size = 42;
    let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    w.add(changed.clone(), &newv).unwrap();
    // Replacing twice before a commit keeps only the last one.
    w.add(changed.clone(), &newv).unwrap();
    w.commit().unwrap();
    assert_eq!(w.existing()[&changed.path], changed);
    assert_eq!(w.existing().len(), 100);
    w.finish().unwrap();

    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 100);
    let matching: Vec<Entry> = idx
        .entries()
        .map(Result::unwrap)
        .filter(|e| e.path == changed.path)
        .collect();
    assert_eq!(matching, vec![changed.clone()]);
    let hits = idx.search(&newv, &opts(3, true)).unwrap();
    assert_eq!(hits[0].path, changed.path);
    assert!(hits[0].score > 0.9999);
    let hits = idx.search(&vecs[7], &opts(100, true)).unwrap();
    assert_eq!(hits.iter().filter(|h| h.path == changed.path).count(), 1);
    assert!(hits.iter().find(|h| h.path == changed.path).unwrap().score < 0.999);

    // Remove then re-add within one commit; add then remove.
    let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    w.remove(&entry(8).path);
    w.add(entry(8), &vecs[8]).unwrap();
    w.add(entry(1000), &vecs[9]).unwrap();
    w.remove(&entry(1000).path);
    w.remove(&entry(9).path);
    w.finish().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 99);
    let paths: HashSet<PathBuf> = idx.entries().map(|e| e.unwrap().path).collect();
    assert!(paths.contains(&entry(8).path));
    assert!(!paths.contains(&entry(9).path));
    assert!(!paths.contains(&entry(1000).path));
}

#[test]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let w1 = IndexWriter::open(dir.path(), meta("m1", 4)).unwrap();
    let err = IndexWriter::open(dir.path(), meta("m1", 4)).unwrap_err();
    assert!(matches!(err, IndexError::Locked(_)), "{err:?}");
    assert!(
        err.to_string().contains("another imgsearch process"),
        "{err}"
    );
    drop(w1);
    IndexWriter::open(dir.path(), meta("m1", 4)).unwrap();
}

#[test]
fn model_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(7, 10, 8), usize::MAX);
    let err = IndexWriter::open(dir.path(), meta("m2", 8)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IndexError::ModelMismatch { .. }), "{err:?}");
    assert!(msg.contains("m1") && msg.contains("m2"), "{msg}");
    let err = IndexWriter::open(dir.path(), meta("m1", 9)).unwrap_err();
    assert!(matches!(err, IndexError::ModelMismatch { .. }), "{err:?}");
    // The index is untouched.
    assert_eq!(Index::open(dir.path()).unwrap().len(), 10);
}

#[test]
fn wrong_dimensions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(8, 10, 8), usize::MAX);
    let mut w = IndexWriter::open(dir.path(), meta("m1", 8)).unwrap();
    let err = w.add(entry(99), &[1.0; 7]).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::DimMismatch {
                expected: 8,
                found: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        w.add(entry(99), &[0.0; 8]),
        Err(IndexError::Invalid { .. })
    ));
    assert!(matches!(
        w.add(entry(99), &[f32::NAN; 8]),
        Err(IndexError::Invalid { .. })
    ));
    assert_eq!(w.pending(), 0);
    drop(w);
    let idx = Index::open(dir.path()).unwrap();
    let err = idx.search(&[1.0; 9], &opts(3, false)).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::DimMismatch {
                expected: 8,
                found: 9,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_vectors_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(9, 50, 8), usize::MAX);
    let vec_file = files_ending(dir.path(), ".vec").remove(0);
    let len = fs::metadata(&vec_file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&vec_file)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let msg = expect_corrupt(Index::open(dir.path()), ".vec");
    assert!(msg.contains("truncated"), "{msg}");
    expect_corrupt(IndexWriter::open(dir.path(), meta("m1", 8)), ".vec");
    expect_corrupt(verify(dir.path()), ".vec");
    // Truncated into the header.
    fs::OpenOptions::new()
        .write(true)
        .open(&vec_file)
        .unwrap()
        .set_len(20)
        .unwrap();
    expect_corrupt(Index::open(dir.path()), ".vec");
    fs::write(&vec_file, b"").unwrap();
    expect_corrupt(Index::open(dir.path()), ".vec");
    fs::remove_file(&vec_file).unwrap();
    expect_corrupt(Index::open(dir.path()), ".vec");
}

#[test]
fn flipped_byte_in_vectors_caught_by_verify_and_writer() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(10, 50, 8), usize::MAX);
    let vec_file = files_ending(dir.path(), ".vec").remove(0);
    flip_byte(&vec_file, 64 + 4 * 17 + 1);
    // Readers only check headers and lengths (O(1) open) ...
    let idx = Index::open(dir.path()).unwrap();
    idx.search(&[0.5; 8], &opts(5, true)).unwrap();
    // ... the full check and writers checksum the data.
    let msg = expect_corrupt(verify(dir.path()), ".vec");
    assert!(msg.contains("checksum"), "{msg}");
    expect_corrupt(IndexWriter::open(dir.path(), meta("m1", 8)), ".vec");
    // A bad magic is caught on the reader's open.
    flip_byte(&vec_file, 2);
    expect_corrupt(Index::open(dir.path()), ".vec");
}

#[test]
fn flipped_byte_in_entries_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(11, 50, 8);
    build(dir.path(), &vecs, usize::MAX);
    let ent = files_ending(dir.path(), ".ent").remove(0);
    let good = fs::read(&ent).unwrap();
    let restore = || fs::write(&ent, &good).unwrap();

    // The header (entry count) is checked on open.
    flip_byte(&ent, 20);
    expect_corrupt(Index::open(dir.path()), ".ent");
    restore();

    // A path byte: open is O(1) and does not checksum; verify and the writer do.
    flip_byte(&ent, good.len() - 3);
    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.entries().filter(Result::is_ok).count(), 50);
    drop(idx);
    let msg = expect_corrupt(verify(dir.path()), ".ent");
    assert!(msg.contains("checksum"), "{msg}");
    expect_corrupt(IndexWriter::open(dir.path(), meta("m1", 8)), ".ent");
    restore();

    // Row 3's path offset pointing past the path table: a clean error when that row is read
    // (a hit or an entry), never a panic or an out-of-bounds read.
    flip_byte(&ent, 64 + 32 * 3 + 17);
    let idx = Index::open(dir.path()).unwrap();
    for exact in [true, false] {
        expect_corrupt(idx.search(&vecs[3], &opts(1, exact)), ".ent");
    }
    let bad: Vec<_> = idx.entries().filter_map(Result::err).collect();
    assert_eq!(bad.len(), 1);
    expect_corrupt(Err::<(), _>(bad.into_iter().next().unwrap()), ".ent");
    assert_eq!(
        idx.search(&vecs[4], &opts(1, true)).unwrap()[0].path,
        entry(4).path
    );
    drop(idx);
    expect_corrupt(verify(dir.path()), ".ent");
    restore();

    // Truncated: caught on open by the length check.
    fs::write(&ent, &good[..good.len() - 1]).unwrap();
    let msg = expect_corrupt(Index::open(dir.path()), ".ent");
    assert!(msg.contains("truncated"), "{msg}");
    restore();
    verify(dir.path()).unwrap();
}

#[test]
fn damaged_tombstones_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(15, 200, 8);
    build(dir.path(), &vecs, usize::MAX);
    let mut w = IndexWriter::open(dir.path(), meta("m1", 8)).unwrap();
    for i in [1, 70, 199] {
        w.remove(&entry(i).path);
    }
    w.commit().unwrap();
    drop(w);
    let del = files_ending(dir.path(), ".del-000002").remove(0);
    let good = fs::read(&del).unwrap();
    // Mapped on open, not copied: the deleted rows stay hidden.
    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 197);
    let hit = idx.search(&vecs[70], &opts(1, true)).unwrap();
    assert_ne!(hit[0].path, entry(70).path);
    drop(idx);

    // Truncated, or a header that disagrees with the manifest: caught on open.
    fs::write(&del, &good[..good.len() - 8]).unwrap();
    expect_corrupt(Index::open(dir.path()), ".del-000002");
    fs::write(&del, &good).unwrap();
    flip_byte(&del, 24);
    expect_corrupt(Index::open(dir.path()), ".del-000002");
    fs::write(&del, &good).unwrap();

    // A flipped bit: open is O(1); verify and the writer checksum the file.
    flip_byte(&del, 64 + 1);
    Index::open(dir.path()).unwrap();
    let msg = expect_corrupt(verify(dir.path()), ".del-000002");
    assert!(msg.contains("checksum"), "{msg}");
    expect_corrupt(IndexWriter::open(dir.path(), meta("m1", 8)), ".del-000002");
    fs::write(&del, &good).unwrap();
    verify(dir.path()).unwrap();
}

#[test]
fn damaged_manifest_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(12, 20, 8), usize::MAX);
    let m = dir.path().join("manifest.json");
    let good = fs::read(&m).unwrap();
    for at in [good.len() / 2, 5, good.len() - 4] {
        flip_byte(&m, at);
        expect_corrupt(Index::open(dir.path()), "manifest.json");
        expect_corrupt(
            IndexWriter::open(dir.path(), meta("m1", 8)),
            "manifest.json",
        );
        fs::write(&m, &good).unwrap();
    }
    fs::write(&m, &good[..good.len() / 3]).unwrap();
    expect_corrupt(Index::open(dir.path()), "manifest.json");
    fs::write(&m, b"").unwrap();
    expect_corrupt(Index::open(dir.path()), "manifest.json");
    fs::write(&m, &good).unwrap();
    Index::open(dir.path()).unwrap();
}

#[test]
fn future_format_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &random_vectors(13, 20, 8), usize::MAX);
    let m = dir.path().join("manifest.json");
    let text = fs::read_to_string(&m).unwrap();
    // Re-wrap a body claiming version 99 with a correct checksum.
    let body_start = text.find("\"manifest\":").unwrap() + "\"manifest\":".len();
    let body = text[body_start..].trim_end().strip_suffix('}').unwrap();
    let body = body.replace("\"format_version\": 1", "\"format_version\": 99");
    let wrapped = format!(
        "{{\"crc32\":\"{:08x}\",\"manifest\":{body}}}\n",
        crc32fast::hash(body.as_bytes())
    );
    fs::write(&m, wrapped).unwrap();
    let err = Index::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Version {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[test]
fn damaged_graph_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(14, 600, 16);
    build(dir.path(), &vecs, 100);
    let graph = files_ending(dir.path(), ".hnsw").remove(0);
    let mut bytes = fs::read(&graph).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..2000 {
        let at = rng.random_range(64..bytes.len());
        bytes[at] = 0xff;
    }
    fs::write(&graph, &bytes).unwrap();
    expect_corrupt(verify(dir.path()), ".hnsw");
    // A reader's open is O(1) and may not notice; searching must fail cleanly or succeed.
    if let Ok(idx) = Index::open(dir.path()) {
        for v in vecs.iter().take(50) {
            match idx.search(v, &opts(10, false)) {
                Ok(hits) => assert!(hits.len() <= 10),
                Err(e) => {
                    assert!(matches!(e, IndexError::Corrupt { .. }), "{e:?}");
                    assert!(e.to_string().contains(".hnsw"), "{e}");
                }
            }
        }
    }
    // Truncation is caught on open.
    fs::write(&graph, &bytes[..bytes.len() - 4]).unwrap();
    expect_corrupt(Index::open(dir.path()), ".hnsw");
}

#[test]
fn reader_keeps_its_generation_across_commits() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(15, 300, 16);
    build(dir.path(), &vecs[..100], usize::MAX);
    let old = Index::open(dir.path()).unwrap();
    let old_gen = old.generation();

    let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    for i in 0..40 {
        w.remove(&entry(i).path);
    }
    w.commit().unwrap();
    // Mid-way: the old reader is unaffected, a new one sees the commit.
    assert_eq!(old.len(), 100);
    assert_eq!(Index::open(dir.path()).unwrap().len(), 60);
    for (i, v) in vecs.iter().enumerate().skip(100) {
        w.add(entry(i), v).unwrap();
    }
    // finish merges and deletes the superseded files.
    w.finish().unwrap();
    assert!(!dir.path().join("seg-000001.vec").exists());

    assert_eq!(old.generation(), old_gen);
    assert_eq!(old.len(), 100);
    assert_eq!(old.entries().count(), 100);
    let hits = old.search(&vecs[3], &opts(1, true)).unwrap();
    assert_eq!(hits[0].path, entry(3).path);
    let hits = old.search(&vecs[150], &opts(1, true)).unwrap();
    assert_ne!(hits[0].path, entry(150).path);

    let new = Index::open(dir.path()).unwrap();
    assert!(new.generation() > old_gen);
    assert_eq!(new.len(), 260);
    assert_eq!(
        new.search(&vecs[150], &opts(1, true)).unwrap()[0].path,
        entry(150).path
    );
}

#[test]
fn stale_files_are_cleaned_and_crashed_commits_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(16, 50, 8);
    build(dir.path(), &vecs, usize::MAX);
    // Leftovers of a writer killed mid-commit, and a file that is not ours.
    for name in [
        ".manifest.json.4242.tmp",
        "seg-000099.vec",
        "seg-000099.ent",
        "seg-000001.del-000077",
    ] {
        fs::write(dir.path().join(name), b"partial").unwrap();
    }
    fs::write(dir.path().join("notes.txt"), b"keep me").unwrap();
    // Uncommitted work of a dropped writer is not visible.
    let mut w = IndexWriter::open(dir.path(), meta("m1", 8)).unwrap();
    for name in [
        ".manifest.json.4242.tmp",
        "seg-000099.vec",
        "seg-000099.ent",
        "seg-000001.del-000077",
    ] {
        assert!(!dir.path().join(name).exists(), "{name} not cleaned");
    }
    assert!(dir.path().join("notes.txt").exists());
    w.add(entry(500), &vecs[0]).unwrap();
    w.remove(&entry(1).path);
    drop(w);
    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 50);
    verify(dir.path()).unwrap();
}

#[test]
fn merge_policy_bounds_segment_count() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = random_vectors(17, 1000, 8);
    let sizes = [500, 30, 40, 50, 60, 70, 80, 90, 80];
    let mut w = IndexWriter::open(dir.path(), meta("m1", 8)).unwrap();
    w.set_graph_threshold(usize::MAX);
    let mut next = 0;
    for s in sizes {
        for _ in 0..s {
            w.add(entry(next), &vecs[next]).unwrap();
            next += 1;
        }
        w.commit().unwrap();
    }
    assert_eq!(
        Index::open(dir.path()).unwrap().segment_count(),
        sizes.len()
    );
    let stats = w.finish().unwrap();
    assert_eq!(stats.total, 1000);
    assert!(stats.segments <= MAX_SEGMENTS, "{stats:?}");
    // The small ones (< 500 / 4) were folded together; the big one was kept as is.
    assert_eq!(stats.segments, 2, "{stats:?}");
    assert!(manifest_segments(dir.path()).iter().any(|s| s["id"] == 1));
    let idx = Index::open(dir.path()).unwrap();
    assert_eq!(idx.len(), 1000);
    for i in [0, 499, 500, 777, 999] {
        assert_eq!(
            idx.search(&vecs[i], &opts(1, false)).unwrap()[0].path,
            entry(i).path
        );
    }
    verify(dir.path()).unwrap();
    // Only the manifest's files remain.
    let vec_files = files_ending(dir.path(), ".vec");
    assert_eq!(vec_files.len(), 2);

    // Many similar-sized segments are capped at MAX_SEGMENTS.
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path(), meta("m1", 8)).unwrap();
    for (i, v) in vecs.iter().enumerate() {
        w.add(entry(i), v).unwrap();
        if i % 100 == 99 {
            w.commit().unwrap();
        }
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.total, 1000);
    assert!(stats.segments <= MAX_SEGMENTS, "{stats:?}");
    // Ten equal segments: seven merge into one of 700, which makes the other three small next
    // to it, so they merge too (one finish, not a second run): 700 + 300.
    assert_eq!(stats.segments, 2, "{stats:?}");
}

#[test]
fn big_segment_gets_graph_after_merge() {
    let dir = tempfile::tempdir().unwrap();
    let vecs = clustered(18, 900, 16, 10);
    let mut w = IndexWriter::open(dir.path(), meta("m1", 16)).unwrap();
    w.set_graph_threshold(600);
    for (i, v) in vecs.iter().enumerate() {
        w.add(entry(i), v).unwrap();
        if i % 300 == 299 {
            w.commit().unwrap(); // 300-row segments: no graph yet
        }
    }
    assert!(files_ending(dir.path(), ".hnsw").is_empty());
    let stats = w.finish().unwrap();
    // Three equal segments fit within MAX_SEGMENTS, so nothing is merged ...
    assert_eq!(stats.segments, 3);
    // ... until the threshold rule asks for a graph: a lone un-graphed big segment is rebuilt.
    let dir2 = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir2.path(), meta("m1", 16)).unwrap();
    w.set_graph_threshold(usize::MAX);
    for (i, v) in vecs.iter().enumerate() {
        w.add(entry(i), v).unwrap();
    }
    w.commit().unwrap();
    w.set_graph_threshold(600);
    let stats = w.finish().unwrap();
    assert_eq!(
        stats,
        IndexStats {
            total: 900,
            segments: 1
        }
    );
    assert_eq!(files_ending(dir2.path(), ".hnsw").len(), 1);
    let idx = Index::open(dir2.path()).unwrap();
    assert_eq!(
        idx.search(&vecs[10], &opts(1, false)).unwrap()[0].path,
        entry(10).path
    );
}
