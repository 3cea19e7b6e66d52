//! End-to-end tests of the real `imgsearch` binary on real images from tests/fixtures
//! (CIFAR-10, sign-language digit photos and AT&T face PNGs).

mod common;

use common::cli::{copy_dir, first_file, fixtures, lines as json_lines, s, summary, walk};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// Every index here builds its search graph from 100 images up, so that the fixtures' small
/// indexes go through the graph as large ones do.
const GRAPH_FROM_100: &[(&str, &str)] = &[("IMGSEARCH_GRAPH_MIN", "100")];

fn imgsearch(args: &[&str]) -> Output {
    common::cli::run_with(args, GRAPH_FROM_100)
}

fn ok(args: &[&str]) -> String {
    common::cli::ok_with(args, GRAPH_FROM_100)
}

/// The `query` records of `query --json` output.
fn query_lines(stdout: &str) -> Vec<Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|l| l["type"] == "query")
        .collect()
}

/// A model trained once for 1 epoch on the fixture training images, shared by the tests.
fn trained_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-trained-model");
        let _ = std::fs::remove_dir_all(&dir);
        let train = fixtures().join("train");
        let stdout = ok(&[
            "train",
            s(&train),
            "--out",
            s(&dir),
            "--epochs",
            "1",
            "--batch",
            "32",
            "--json",
        ]);
        let report = summary(&stdout);
        assert_eq!(report["images"], 400);
        assert_eq!(report["epochs"], 1);
        assert!(report["last_losses"]["total"]
            .as_f64()
            .expect("loss")
            .is_finite());
        dir
    })
}

/// A folder with real test images plus a truncated JPEG, an empty file and a text file
/// named .jpg.
fn photo_folder(tmp: &Path) -> PathBuf {
    let root = tmp.join("photos");
    copy_dir(&fixtures().join("test"), &root.join("cifar"));
    copy_dir(&fixtures().join("photos"), &root.join("photos"));
    let bad = root.join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    let real = first_file(&fixtures().join("photos/signdigits-0"));
    let bytes = std::fs::read(real).expect("read jpeg");
    std::fs::write(bad.join("truncated.jpg"), &bytes[..bytes.len() / 3]).expect("write");
    std::fs::write(bad.join("empty.jpg"), b"").expect("write");
    std::fs::write(
        bad.join("notes.jpg"),
        b"this is a text file, not an image\n",
    )
    .expect("write");
    root
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

/// Checks one `query --json` line: k results, ranks 1..k, absolute paths, scores descending.
fn check_results(line: &Value, k: usize) -> Vec<(String, f64)> {
    let results = line["results"].as_array().expect("results array");
    assert_eq!(results.len(), k, "{line}");
    let mut out = Vec::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
        let path = r["path"].as_str().expect("path").to_string();
        assert!(Path::new(&path).is_absolute(), "{path}");
        out.push((path, r["score"].as_f64().expect("score")));
    }
    assert!(
        out.windows(2).all(|w| w[0].1 >= w[1].1),
        "not descending: {out:?}"
    );
    out
}

/// `model` indexes `images` (into `tmp/index`) and a query with one of them finds that image
/// first, at cosine 1.
fn indexes_and_finds_itself(tmp: &Path, images: &Path, model: &Path) {
    let index = tmp.join("index");
    ok(&[
        "index",
        s(images),
        "--index",
        s(&index),
        "--model",
        s(model),
    ]);
    let query = first_file(images);
    let answer = ok(&[
        "query",
        s(&query),
        "-k",
        "3",
        "--index",
        s(&index),
        "--model",
        s(model),
        "--json",
    ]);
    let answer = query_lines(&answer).remove(0);
    let top = &answer["results"][0];
    assert!(
        (top["score"].as_f64().expect("score") - 1.0).abs() < 1e-4,
        "{answer}"
    );
}

#[test]
fn train_index_query_with_a_trained_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(tmp.path());
    let index = tmp.path().join("index");
    let model = trained_model();
    let files = count_files(&photos);

    let summary = summary(&ok(&[
        "index",
        s(&photos),
        "--index",
        s(&index),
        "--model",
        s(model),
        "--json",
    ]));
    assert_eq!(summary["skipped"], 3, "{summary}");
    assert_eq!(summary["added"], files - 3, "{summary}");
    assert_eq!(summary["total"], files - 3, "{summary}");
    assert_eq!(summary["updated"], 0);
    assert_eq!(summary["removed"], 0);
    assert!(summary["seconds"].as_f64().is_some());

    // Each query image finds itself first with cosine ≈ 1, through the graph and exactly.
    let queries: Vec<PathBuf> = [
        "cifar/cat",
        "cifar/ship",
        "photos/signdigits-4",
        "photos/attfaces-s1",
    ]
    .iter()
    .map(|d| first_file(&photos.join(d)))
    .collect();
    for exact in [false, true] {
        let mut args = vec!["query"];
        args.extend(queries.iter().map(|q| s(q)));
        args.extend(["-k", "9", "--index", s(&index), "--json"]);
        if exact {
            args.push("--exact");
        }
        let lines = query_lines(&ok(&args));
        assert_eq!(lines.len(), queries.len());
        for (line, query) in lines.iter().zip(&queries) {
            let results = check_results(line, 9);
            assert_eq!(
                Path::new(&results[0].0),
                query.canonicalize().expect("canon")
            );
            assert!(results[0].1 > 0.999, "self-match score {}", results[0].1);
        }
    }

    // Plain output: one header line, then rank, score with 4 decimals, path.
    let plain = ok(&["query", s(&queries[0]), "-k", "3", "--index", s(&index)]);
    let rows: Vec<&str> = plain.lines().collect();
    assert_eq!(rows.len(), 4, "{plain}");
    let first: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(first[0], "1");
    assert_eq!(first[1].split('.').nth(1).map(str::len), Some(4), "{plain}");
}

#[test]
fn a_bad_query_image_is_reported_and_the_others_answered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(tmp.path());
    let index = tmp.path().join("index");
    ok(&[
        "index",
        s(&photos.join("cifar")),
        "--index",
        s(&index),
        "--quiet",
    ]);
    let good = first_file(&photos.join("cifar/dog"));
    let bad = photos.join("bad/truncated.jpg");
    let out = imgsearch(&[
        "query",
        s(&bad),
        s(&good),
        "--index",
        s(&index),
        "--json",
        "-k",
        "5",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated.jpg"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = query_lines(&stdout);
    assert_eq!(lines.len(), 1);
    check_results(&lines[0], 5);
    // The failed query is an error record on stdout too, naming the file.
    let errors: Vec<Value> = json_lines(&stdout)
        .into_iter()
        .filter(|l| l["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{stdout}");
    assert!(errors[0]["path"]
        .as_str()
        .expect("path")
        .ends_with("truncated.jpg"));
    assert_eq!(summary(&stdout)["failed"], 1);
}

#[test]
fn the_bundled_default_model_works_without_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(tmp.path());
    let index = tmp.path().join("index");
    let summary = summary(&ok(&["index", s(&photos), "--index", s(&index), "--json"]));
    assert_eq!(summary["skipped"], 3);
    let query = first_file(&photos.join("cifar/horse"));
    let lines = query_lines(&ok(&["query", s(&query), "--index", s(&index), "--json"]));
    let results = check_results(&lines[0], 9);
    assert_eq!(
        Path::new(&results[0].0),
        query.canonicalize().expect("canon")
    );
    assert!(results[0].1 > 0.999);
}

/// `--simd portable` (the x86-64 baseline) and the widest level this CPU has embed, index and
/// search alike: the same neighbours with the same scores to rounding, exact and through the
/// graph. On a CPU without AVX2 both runs are the portable path, and the test says so.
#[test]
fn every_simd_level_gives_the_same_answers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = photo_folder(tmp.path());
    if !std::is_x86_feature_detected!("avx2") {
        eprintln!("SKIPPED (partly): this CPU has no AVX2, so both runs take the portable path");
    }
    let query = first_file(&photos.join("cifar/horse"));
    let mut answers = Vec::new();
    for simd in ["portable", "avx512"] {
        let index = tmp.path().join(format!("index-{simd}"));
        ok(&[
            "index",
            s(&photos),
            "--index",
            s(&index),
            "--simd",
            simd,
            "--quiet",
        ]);
        for exact in [true, false] {
            let mut args = vec![
                "query",
                s(&query),
                "--index",
                s(&index),
                "-k",
                "9",
                "--json",
            ];
            args.extend(["--simd", simd]);
            if exact {
                args.push("--exact");
            }
            answers.push((simd, exact, check_results(&query_lines(&ok(&args))[0], 9)));
        }
    }
    let (portable, widest) = answers.split_at(2);
    for ((_, exact, a), (_, _, b)) in portable.iter().zip(widest) {
        for (x, y) in a.iter().zip(b) {
            assert!((x.1 - y.1).abs() < 1e-4, "exact {exact}: {a:?} vs {b:?}");
        }
        let paths =
            |r: &[(String, f64)]| -> Vec<String> { r.iter().map(|p| p.0.clone()).collect() };
        // Scores a rounding error apart may swap places; the first (the image itself) may not.
        assert_eq!(a[0].0, b[0].0);
        let (mut pa, mut pb) = (paths(a), paths(b));
        pa.sort();
        pb.sort();
        assert_eq!(pa, pb, "exact {exact}");
    }
}

#[test]
fn reindexing_adds_removes_and_never_returns_deleted_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = tmp.path().join("photos");
    copy_dir(&fixtures().join("test"), &photos);
    let index = tmp.path().join("index");
    let run = || summary(&ok(&["index", s(&photos), "--index", s(&index), "--json"]));
    assert_eq!(run()["added"], 200);
    let again = run();
    assert_eq!(
        (again["added"].clone(), again["removed"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(again["total"], 200);

    let deleted = first_file(&photos.join("frog"));
    let deleted_abs = deleted.canonicalize().expect("canon");
    std::fs::remove_file(&deleted).expect("rm");
    std::fs::copy(
        fixtures().join("train/frog").join("0000.jpg"),
        photos.join("frog/new.jpg"),
    )
    .expect("cp");
    let third = run();
    assert_eq!(third["added"], 1, "{third}");
    assert_eq!(third["removed"], 1, "{third}");
    assert_eq!(third["total"], 200);
    let query = photos.join("frog/new.jpg");
    for exact in [false, true] {
        let mut args = vec![
            "query",
            s(&query),
            "-k",
            "200",
            "--index",
            s(&index),
            "--json",
        ];
        if exact {
            args.push("--exact");
        }
        let lines = query_lines(&ok(&args));
        let results = check_results(&lines[0], 200);
        assert!(results.iter().all(|(p, _)| Path::new(p) != deleted_abs));
    }
}

#[test]
fn missing_index_and_model_mismatch_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let query = first_file(&fixtures().join("test/cat"));
    let missing = tmp.path().join("nothing-here");
    let out = imgsearch(&["query", s(&query), "--index", s(&missing)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no index") && stderr.contains("nothing-here"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let index = tmp.path().join("index");
    ok(&[
        "index",
        s(&fixtures().join("test/cat")),
        "--index",
        s(&index),
        "--quiet",
    ]);
    let out = imgsearch(&[
        "query",
        s(&query),
        "--index",
        s(&index),
        "--model",
        s(trained_model()),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("built with model"), "{stderr}");

    let out = imgsearch(&[
        "index",
        s(&fixtures().join("test/dog")),
        "--index",
        s(&index),
        "--model",
        s(trained_model()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("built with model"));

    let out = imgsearch(&[
        "index",
        s(&tmp.path().join("no-such-folder")),
        "--index",
        s(&index),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-folder"));
}

#[test]
fn training_is_reproducible_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/cat");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for out in [&a, &b] {
        train_at_a_constant_rate(&train, out, "1");
    }
    assert_eq!(
        model_weights(&a),
        model_weights(&b),
        "same seed, same data: same weights"
    );

    // Two epochs in one go equal one epoch then --resume to two. (A constant rate: the cosine
    // schedule's horizon is --epochs, so a first run of one epoch would decay to zero.)
    let full = tmp.path().join("full");
    train_at_a_constant_rate(&train, &full, "2");
    resuming_keeps_batch_seed_and_schedule(&train, &a);
    // The checkpoint holds the last epoch's parameters and moments (the model beside it is
    // the epoch the label-free probe liked best, which may be an earlier one).
    assert_eq!(
        checkpoint_weights(&a),
        checkpoint_weights(&full),
        "resume continues exactly"
    );
    assert_ne!(checkpoint_weights(&a), checkpoint_weights(&b));
    let kept_model = model_weights(&a);
    a_divergence_keeps_the_last_good_epoch(&train, &a, &full, &kept_model);
    a_corrupt_checkpoint_is_named(&train, &a);
}

/// The model file's bytes.
fn model_weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).expect("weights")
}

/// The checkpoint's bytes: the last epoch's parameters and Adam moments.
fn checkpoint_weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("checkpoint.safetensors")).expect("checkpoint")
}

/// Trains on `train` into `out` for `epochs` at batch 8, seed 3 and a constant rate.
fn train_at_a_constant_rate(train: &Path, out: &Path, epochs: &str) {
    ok(&[
        "train",
        s(train),
        "--out",
        s(out),
        "--epochs",
        epochs,
        "--batch",
        "8",
        "--seed",
        "3",
        "--lr-schedule",
        "constant",
        "--quiet",
    ]);
}

/// A resumed run keeps its batch, seed and schedule without being told them again, and refuses
/// a different batch; resuming `a` to two epochs records them.
fn resuming_keeps_batch_seed_and_schedule(train: &Path, a: &Path) {
    let out = imgsearch(&[
        "train",
        s(train),
        "--out",
        s(a),
        "--epochs",
        "2",
        "--batch",
        "16",
        "--resume",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--batch 16") && stderr.contains("batch 8") && stderr.contains(s(a)),
        "{stderr}"
    );
    ok(&[
        "train",
        s(train),
        "--out",
        s(a),
        "--epochs",
        "2",
        "--resume",
        "--quiet",
    ]);
    let state: Value =
        serde_json::from_slice(&std::fs::read(a.join("checkpoint.json")).expect("state"))
            .expect("json");
    assert_eq!(state["epochs_done"], 2);
    let record = &state["config"]["training"];
    assert_eq!(
        (&record["seed"], &record["batch"], &record["schedule"]),
        (&Value::from(3), &Value::from(8), &Value::from("constant"))
    );
}

/// A loss that blows up stops training with a clear error; the last good checkpoint and model
/// stay.
fn a_divergence_keeps_the_last_good_epoch(train: &Path, a: &Path, full: &Path, kept_model: &[u8]) {
    let out = imgsearch(&[
        "train",
        s(train),
        "--out",
        s(a),
        "--epochs",
        "3",
        "--batch",
        "8",
        "--resume",
        "--lr",
        "1e30",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("diverged") && stderr.contains("checkpoint"),
        "{stderr}"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(a.join("checkpoint.json")).expect("state"))
            .expect("json");
    assert_eq!(state["epochs_done"], 2);
    assert_eq!(
        checkpoint_weights(a),
        checkpoint_weights(full),
        "the checkpoint of the last good epoch is kept"
    );
    assert_eq!(model_weights(a), kept_model, "and so is the model");
}

/// A corrupt checkpoint is refused with a message naming it.
fn a_corrupt_checkpoint_is_named(train: &Path, a: &Path) {
    let ckpt = a.join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&ckpt).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&ckpt, bytes).expect("write");
    let out = imgsearch(&[
        "train",
        s(train),
        "--out",
        s(a),
        "--epochs",
        "3",
        "--resume",
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoint.safetensors"));
}

/// The adversarial prior trains its discriminator beside the model: its weights and Adam
/// state go into the checkpoint (so `--resume` works) but not into the inference model.
#[test]
fn adversarial_prior_trains_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/ship");
    let out = tmp.path().join("adv");
    let args = |epochs: &'static str| {
        vec![
            "train".to_string(),
            s(&train).to_string(),
            "--out".into(),
            s(&out).to_string(),
            "--epochs".into(),
            epochs.into(),
            "--batch".into(),
            "8".into(),
            "--prior".into(),
            "adversarial".into(),
            "--json".into(),
        ]
    };
    let first = args("1");
    ok(&first.iter().map(String::as_str).collect::<Vec<_>>());
    let mut second = args("2");
    second.push("--resume".into());
    let report = summary(&ok(&second.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(report["epochs"], 2);

    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["objective"]["prior"], "adversarial");
    let names = |file: &str| -> Vec<String> {
        let bytes = std::fs::read(out.join(file)).expect("safetensors");
        let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        tensors.names().into_iter().map(String::from).collect()
    };
    let checkpoint = names("checkpoint.safetensors");
    assert!(checkpoint.iter().any(|n| n == "param.prior.l0.weight"));
    assert!(checkpoint.iter().any(|n| n == "adam_v.prior.l2.bias"));
    assert!(names("model.safetensors")
        .iter()
        .all(|n| n.starts_with("encoder.")));

    // The trained model indexes and answers like any other.
    indexes_and_finds_itself(tmp.path(), &train, &out);
}

/// `--norm batch`: the running statistics are saved in the model and the checkpoint (not in
/// the optimiser state), `--resume` continues exactly (statistics included), and the model
/// (BatchNorm folded at load) indexes and answers like any other.
#[test]
fn batch_norm_trains_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/ship");
    let run = |out: &Path, epochs: &str, resume: bool| {
        let mut args = vec![
            "train",
            s(&train),
            "--out",
            s(out),
            "--epochs",
            epochs,
            "--batch",
            "8",
            "--seed",
            "5",
            "--lr-schedule",
            "constant",
            "--norm",
            "batch",
            "--quiet",
        ];
        if resume {
            args.push("--resume");
        }
        ok(&args);
    };
    let (full, split) = (tmp.path().join("full"), tmp.path().join("split"));
    run(&full, "2", false);
    run(&split, "1", false);
    run(&split, "2", true);
    let trained =
        |dir: &Path| std::fs::read(dir.join("checkpoint.safetensors")).expect("checkpoint");
    assert_eq!(trained(&split), trained(&full), "resume continues exactly");

    let config: Value =
        serde_json::from_slice(&std::fs::read(full.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["norm"], "batch");
    let tensors = |file: &str| -> Vec<(String, Vec<f32>)> {
        let bytes = std::fs::read(full.join(file)).expect("safetensors");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, values)
            })
            .collect()
    };
    let model = tensors("model.safetensors");
    let get = |name: &str| {
        model
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} missing from the model"))
    };
    for layer in ["down0", "down1", "down2", "refine"] {
        let mean = get(&format!("encoder.{layer}.bn.running_mean"));
        let var = get(&format!("encoder.{layer}.bn.running_var"));
        assert!(
            mean.iter().any(|&m| m != 0.0),
            "{layer}: running mean never moved"
        );
        assert!(var.iter().any(|&v| v != 1.0) && var.iter().all(|&v| v > 0.0));
        get(&format!("encoder.{layer}.bn.weight"));
        assert!(model
            .iter()
            .all(|(n, _)| n != &format!("encoder.{layer}.bias")));
    }
    let checkpoint: Vec<String> = tensors("checkpoint.safetensors")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(checkpoint
        .iter()
        .any(|n| n == "param.encoder.down1.bn.running_var"));
    assert!(checkpoint
        .iter()
        .any(|n| n == "adam_m.encoder.down1.bn.weight"));
    assert!(checkpoint
        .iter()
        .all(|n| !n.starts_with("adam_") || !n.contains("running_")));

    indexes_and_finds_itself(tmp.path(), &train, &full);
}

#[test]
fn training_decodes_once_into_the_pixel_cache() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/cat");
    let images = count_files(&train);
    let cache = tmp.path().join("cache");
    let model = tmp.path().join("model");
    let run = |out: &Path, extra: &[&str]| -> Value {
        let mut args = vec![
            "train",
            s(&train),
            "--out",
            s(out),
            "--batch",
            "8",
            "--json",
        ];
        args.extend(extra);
        summary(&ok(&args))
    };
    let cache_flag = ["--cache", s(&cache), "--epochs", "1"];
    let first = run(&model, &cache_flag);
    assert_eq!(first["load"]["decoded"], images, "{first}");
    assert_eq!(first["load"]["from_cache"], 0);
    assert_eq!(
        first["epoch_images_per_second"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(cache.join("pixels.cache").exists());
    assert!(
        !model.join("pixels.cache").exists(),
        "--cache puts it elsewhere"
    );

    // --resume reads the cache and decodes nothing.
    let resumed = run(&model, &["--cache", s(&cache), "--epochs", "2", "--resume"]);
    assert_eq!(resumed["load"]["decoded"], 0, "{resumed}");
    assert_eq!(resumed["load"]["from_cache"], images);
    assert_eq!(resumed["images"], images);

    // A truncated cache: one warning on stderr, then rebuilt.
    let file = cache.join("pixels.cache");
    let bytes = std::fs::read(&file).expect("read");
    std::fs::write(&file, &bytes[..bytes.len() - 100]).expect("truncate");
    let other = tmp.path().join("other");
    let out = imgsearch(&[
        "train",
        s(&train),
        "--out",
        s(&other),
        "--cache",
        s(&cache),
        "--epochs",
        "1",
        "--batch",
        "8",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("pixels.cache") && warnings[0].contains("truncated"));
    assert_eq!(run(&other, &cache_flag)["load"]["decoded"], 0);

    // The default place is beside the model; --no-cache writes none.
    let beside = tmp.path().join("beside");
    assert_eq!(run(&beside, &["--epochs", "1"])["load"]["decoded"], images);
    assert!(beside.join("pixels.cache").exists());
    let none = tmp.path().join("none");
    let report = run(&none, &["--epochs", "1", "--no-cache"]);
    assert_eq!(report["load"]["decoded"], images);
    assert!(report["load"]["cache"].is_null());
    assert!(!none.join("pixels.cache").exists());
}

/// `--stage-convs` deepens the encoder: the option is recorded in the model's config, the
/// model has more weights, and indexing and querying with it find each image first.
#[test]
fn a_deeper_encoder_trains_indexes_and_queries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/cat");
    let model = tmp.path().join("deep");
    ok(&[
        "train",
        s(&train),
        "--out",
        s(&model),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--stage-convs",
        "1",
        "--quiet",
    ]);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("config.json")).expect("config.json"),
    )
    .expect("config");
    assert_eq!(config["stage_convs"], 1, "{config}");
    let size = |dir: &Path| std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len());
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default");
    assert!(size(&model).expect("weights") > size(&bundled).expect("bundled weights"));

    let index = tmp.path().join("index");
    ok(&[
        "index",
        s(&train),
        "--index",
        s(&index),
        "--model",
        s(&model),
        "--quiet",
    ]);
    let query = first_file(&train);
    let lines = query_lines(&ok(&[
        "query",
        s(&query),
        "-k",
        "3",
        "--index",
        s(&index),
        "--json",
    ]));
    let results = check_results(&lines[0], 3);
    assert_eq!(
        Path::new(&results[0].0),
        query.canonicalize().expect("canon")
    );
    assert!(results[0].1 > 0.999, "self-match score {}", results[0].1);
}

/// `--channels` and `--occlude` reach the model: the config records them, the weights have the
/// asked widths, and the model indexes and answers like any other.
#[test]
fn width_and_occlusion_flags_train_a_working_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let train = fixtures().join("train/ship");
    let out = tmp.path().join("narrow");
    ok(&[
        "train",
        s(&train),
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--channels",
        "16,32,48",
        "--occlude",
        "0.5",
        "--quiet",
    ]);
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["channels"], serde_json::json!([16, 32, 48]));
    assert_eq!(config["objective"]["occlude"], 0.5);
    let bytes = std::fs::read(out.join("model.safetensors")).expect("weights");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let shape = |name: &str| tensors.tensor(name).expect(name).shape().to_vec();
    assert_eq!(shape("encoder.down2.weight")[0], 48);
    assert_eq!(shape("encoder.refine.weight")[0], 48);

    indexes_and_finds_itself(tmp.path(), &train, &out);

    // An occlusion that hides the whole image is refused before any work.
    let bad = imgsearch(&[
        "train",
        s(&train),
        "--out",
        s(&tmp.path().join("bad")),
        "--occlude",
        "1",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("occlusion"));
}

/// The RGB pixels of the `size × size` image drawn at (x, y) on a sheet with `tile`-pixel
/// tiles (nearest-neighbour scaling, so every `tile / size`-th pixel).
fn drawn_image(sheet: &image::RgbImage, x: u32, y: u32, tile: u32, size: u32) -> Vec<u8> {
    let step = tile / size;
    let mut out = Vec::with_capacity((size * size * 3) as usize);
    for j in 0..size {
        for i in 0..size {
            out.extend_from_slice(&sheet.get_pixel(x + i * step, y + j * step).0);
        }
    }
    out
}

/// The fixture image whose pixels `drawn` shows: the closest by mean absolute difference,
/// which must be within JPEG decoders' rounding of it.
fn identify<'a>(images: &'a [(Vec<u8>, PathBuf)], drawn: &[u8], what: &str) -> &'a Path {
    let distance = |a: &[u8]| {
        a.iter()
            .zip(drawn)
            .map(|(&p, &q)| (p as f64 - q as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    };
    let (best, path) = images
        .iter()
        .map(|(px, path)| (distance(px), path))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("fixtures");
    assert!(
        best < 2.0,
        "{what} is no indexed image (closest {path:?} at {best})"
    );
    path
}

#[test]
fn contact_sheets_draw_each_query_beside_its_neighbours() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = fixtures().join("test");
    let index = tmp.path().join("index");
    ok(&["--quiet", "index", s(&images), "--index", s(&index)]);
    let fixtures: Vec<(Vec<u8>, PathBuf)> = walk(&images)
        .into_iter()
        .map(|path| {
            let rgb = image::open(&path).expect("fixture decodes").to_rgb8();
            assert_eq!(rgb.dimensions(), (FIXTURE_SIDE, FIXTURE_SIDE));
            (rgb.into_raw(), path.canonicalize().expect("canon"))
        })
        .collect();
    let k = 4;
    query_sheet_shows_the_ranked_neighbours(tmp.path(), &images, &index, &fixtures, k);
    grid_sheet_rows_are_queries_and_their_neighbours(tmp.path(), &index, &fixtures, k);
}

// The sheet's layout, as grid.rs draws it: a 4 px gap, the query, a wider gap, the
// neighbours; 14 px of score under each row.
const SHEET_GAP: u32 = 4;
const SHEET_LABEL: u32 = 14;
/// The fixtures' CIFAR images' side.
const FIXTURE_SIDE: u32 = 32;

/// Where column `c` of a sheet of `tile` px tiles starts.
fn sheet_column_x(c: u32, tile: u32) -> u32 {
    SHEET_GAP + c * (tile + SHEET_GAP) + if c > 0 { 3 * SHEET_GAP } else { 0 }
}

/// Where row `r` of a sheet of `tile` px tiles starts.
fn sheet_row_y(r: u32, tile: u32) -> u32 {
    SHEET_GAP + r * (tile + SHEET_LABEL + SHEET_GAP)
}

/// `query --grid` (64 px tiles): one row, the query, then its neighbours in the order
/// `query --json` ranks them (the query itself first, as it is indexed), a frame round the
/// query and a score under each neighbour.
fn query_sheet_shows_the_ranked_neighbours(
    tmp: &Path,
    images: &Path,
    index: &Path,
    fixtures: &[(Vec<u8>, PathBuf)],
    k: usize,
) {
    let columns = k as u32 + 1;
    let tile = 64;
    let query = images.join("cat/0003.jpg").canonicalize().expect("canon");
    let sheet_path = tmp.join("query.png");
    let lines = query_lines(&ok(&[
        "query",
        s(&query),
        "-k",
        &k.to_string(),
        "--index",
        s(index),
        "--json",
        "--grid",
        s(&sheet_path),
    ]));
    let ranked: Vec<PathBuf> = check_results(&lines[0], k)
        .into_iter()
        .map(|(p, _)| PathBuf::from(p))
        .collect();
    let sheet = image::open(&sheet_path).expect("sheet decodes").to_rgb8();
    assert_eq!(
        sheet.dimensions(),
        (
            SHEET_GAP + columns * (tile + SHEET_GAP) + 3 * SHEET_GAP,
            SHEET_GAP + tile + SHEET_LABEL + SHEET_GAP
        )
    );
    let drawn: Vec<&Path> = (0..columns)
        .map(|c| {
            let px = drawn_image(
                &sheet,
                sheet_column_x(c, tile),
                sheet_row_y(0, tile),
                tile,
                FIXTURE_SIDE,
            );
            identify(fixtures, &px, &format!("column {c}"))
        })
        .collect();
    assert_eq!(drawn[0], query);
    for (c, path) in ranked.iter().enumerate() {
        assert_eq!(drawn[c + 1], path, "column {}", c + 1);
    }
    // The query's frame, and ink under each neighbour (its score).
    assert_eq!(
        sheet.get_pixel(SHEET_GAP - 2, SHEET_GAP - 2).0,
        [200, 30, 30]
    );
    for c in 1..columns {
        let inked = (0..SHEET_LABEL)
            .flat_map(|dy| (0..tile).map(move |dx| (dx, dy)))
            .filter(|&(dx, dy)| {
                let (x, y) = (
                    sheet_column_x(c, tile) + dx,
                    sheet_row_y(0, tile) + tile + dy,
                );
                sheet.get_pixel(x, y).0 != [255, 255, 255]
            })
            .count();
        assert!(inked > 0, "no score under column {c}");
    }
}

/// `grid` (32 px tiles here): random rows, each a query and its k nearest neighbours without
/// itself; the same seed draws the same sheet.
fn grid_sheet_rows_are_queries_and_their_neighbours(
    tmp: &Path,
    index: &Path,
    fixtures: &[(Vec<u8>, PathBuf)],
    k: usize,
) {
    let columns = k as u32 + 1;
    let tile = FIXTURE_SIDE;
    let rows = 3;
    let draw = |seed: &str, out: &Path| {
        ok(&[
            "--quiet",
            "grid",
            "--index",
            s(index),
            "--rows",
            &rows.to_string(),
            "-k",
            &k.to_string(),
            "--seed",
            seed,
            "--tile",
            &tile.to_string(),
            "--out",
            s(out),
        ]);
        image::open(out).expect("grid decodes").to_rgb8()
    };
    let sheet = draw("5", &tmp.join("a.png"));
    assert_eq!(sheet, draw("5", &tmp.join("b.png")));
    assert_eq!(
        sheet.dimensions(),
        (
            SHEET_GAP + columns * (tile + SHEET_GAP) + 3 * SHEET_GAP,
            SHEET_GAP + rows * (tile + SHEET_LABEL + SHEET_GAP)
        )
    );
    for r in 0..rows {
        let row: Vec<&Path> = (0..columns)
            .map(|c| {
                let px = drawn_image(
                    &sheet,
                    sheet_column_x(c, tile),
                    sheet_row_y(r, tile),
                    tile,
                    FIXTURE_SIDE,
                );
                identify(fixtures, &px, &format!("row {r} column {c}"))
            })
            .collect();
        let answer = query_lines(&ok(&[
            "query",
            s(row[0]),
            "-k",
            &(k + 1).to_string(),
            "--index",
            s(index),
            "--json",
        ]));
        let expected: Vec<PathBuf> = check_results(&answer[0], k + 1)
            .into_iter()
            .map(|(p, _)| PathBuf::from(p))
            .filter(|p| p != row[0])
            .take(k)
            .collect();
        assert_eq!(
            row[1..],
            expected.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
            "row {r}"
        );
    }
}

/// Every command's help ends with examples and the exit status; completion scripts name every
/// command.
#[test]
fn help_has_examples_and_completions_cover_every_command() {
    let commands = [
        "train",
        "index",
        "forget",
        "query",
        "grid",
        "eval",
        "verify",
        "completions",
    ];
    for command in commands {
        let help = ok(&[command, "--help"]);
        assert!(
            help.contains("Examples:\n  imgsearch "),
            "{command}: {help}"
        );
        assert!(
            help.trim_end().contains("Exit status: 0"),
            "{command}: {help}"
        );
    }
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = ok(&["completions", shell]);
        for command in commands {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let out = imgsearch(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `train --projection N` ends by fitting an N-component projection of the searched embedding
/// on the run's images: the model searches N-dim vectors and still finds each photo first; a
/// resumed run with no epochs left refits it over the same encoder; a projection longer than
/// the embedding is refused before anything runs; the default projection (128 components) is
/// not fitted from fewer than 256 photos, and the summary says so.
#[test]
fn training_fits_the_search_projection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = fixtures().join("photos");
    let images = count_files(&photos);
    let out = tmp.path().join("projected");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", s(&photos), "--out", s(&out), "--batch", "8"];
        args.extend_from_slice(extra);
        args.push("--json");
        summary(&ok(&args))
    };
    let config = || -> Value {
        serde_json::from_slice(&std::fs::read(out.join("config.json")).expect("config"))
            .expect("json")
    };
    let tensors = || std::fs::read(out.join("model.safetensors")).expect("model");
    train(&[
        "--epochs",
        "1",
        "--embedding",
        "pooled",
        "--projection",
        "8",
    ]);
    let first = config();
    assert_eq!(first["embedding"], "pooled", "{first}");
    assert_eq!(first["projection"]["dim"], 8, "{first}");
    assert_eq!(first["projection"]["images"], images as u64, "{first}");
    let weights = tensors();
    let model = safetensors::SafeTensors::deserialize(&weights).expect("valid safetensors");
    assert_eq!(
        model.tensor("projection.matrix").expect("matrix").shape(),
        [256, 8]
    );
    indexes_and_finds_itself(tmp.path(), &photos.join("signdigits-3"), &out);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("index").join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["manifest"]["meta"]["dim"], 8, "{manifest}");

    // Refit with 4 components: no step is taken, so the encoder stays tensor for tensor.
    train(&[
        "--resume",
        "--epochs",
        "1",
        "--embedding",
        "pooled",
        "--projection",
        "4",
    ]);
    assert_eq!(config()["projection"]["dim"], 4);
    let refitted = tensors();
    let refitted = safetensors::SafeTensors::deserialize(&refitted).expect("valid");
    for name in model
        .names()
        .into_iter()
        .filter(|n| n.starts_with("encoder."))
    {
        assert_eq!(
            model.tensor(name).expect("tensor").data(),
            refitted.tensor(name).expect("tensor").data(),
            "{name}"
        );
    }
    assert_eq!(
        refitted
            .tensor("projection.matrix")
            .expect("matrix")
            .shape(),
        [256, 4]
    );

    projection_refusals_and_fallbacks(tmp.path(), &photos, images);
}

/// A projection longer than the embedding is a usage error that writes no model; with no
/// `--projection` and fewer images than the default needs, none is fitted.
fn projection_refusals_and_fallbacks(tmp: &Path, photos: &Path, images: usize) {
    let refused = imgsearch(&[
        "train",
        s(photos),
        "--out",
        s(&tmp.join("too-long")),
        "--embedding",
        "mean",
        "--projection",
        "65",
    ]);
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("projection.dim 65"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!tmp.join("too-long").join("model.safetensors").exists());

    let few = tmp.join("few");
    let report = summary(&ok(&[
        "train",
        s(photos),
        "--out",
        s(&few),
        "--batch",
        "8",
        "--epochs",
        "1",
        "--json",
    ]));
    assert_eq!(report["projection"]["dim"], 128, "{report}");
    assert_eq!(report["projection"]["fitted"], false, "{report}");
    assert_eq!(report["projection"]["images"], images as u64, "{report}");
    let config: Value =
        serde_json::from_slice(&std::fs::read(few.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["embedding"], "pooled", "{config}");
    assert!(config.get("projection").is_none(), "{config}");
}

/// `train` starts from the bundled model unless told otherwise (`--from`), stops at a time
/// budget with the probe's pick saved, scores the labelled folder given to `--eval` before and
/// after exactly as `eval` does, and refuses a start whose weights do not fit.
#[test]
fn training_fine_tunes_the_bundled_model_within_a_budget() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = fixtures().join("photos");
    let images = count_files(&photos);
    let tuned = tmp.path().join("tuned");
    let report = summary(&ok(&[
        "train",
        s(&photos),
        "--out",
        s(&tuned),
        "--batch",
        "8",
        "--minutes",
        "0.05",
        "--eval",
        s(&photos),
        "--json",
    ]));
    assert_eq!(report["start"], "default", "{report}");
    assert_eq!(report["out_of_time"], true, "{report}");
    assert!(report["epochs"].as_u64().expect("epochs") >= 1);
    assert_eq!(report["probe"]["images"], images as u64);
    for key in ["before", "last", "kept"] {
        let probe = &report["probe"][key];
        for score in ["survival_at_9", "self_top1"] {
            let v = probe[score].as_f64().expect("probe score");
            assert!((0.0..=1.0).contains(&v), "{key} {score}: {probe}");
        }
    }
    // Before training the model is the bundled one, scored as `eval` scores it.
    assert!(
        same_scores(&report["eval"]["before"], &eval_scores(&photos, &[])),
        "{report}"
    );
    // After: the model saved in --out, which is the epoch the probe picked.
    assert!(
        same_scores(
            &report["eval"]["after"],
            &eval_scores(&photos, &["--model", s(&tuned)])
        ),
        "{report}"
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(tuned.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["training"]["start"], "default");
    assert_eq!(config["training"]["epochs"], report["probe"]["kept_epoch"]);
    indexes_and_finds_itself(tmp.path(), &photos.join("signdigits-3"), &tuned);

    // From scratch, "before" is the seeded random encoder: `eval --baseline random`.
    let scratch = tmp.path().join("scratch");
    let report = summary(&ok(&[
        "train",
        s(&photos),
        "--out",
        s(&scratch),
        "--from",
        "scratch",
        "--batch",
        "8",
        "--epochs",
        "1",
        "--eval",
        s(&photos),
        "--json",
    ]));
    assert_eq!(report["start"], "scratch");
    assert_eq!(report["out_of_time"], false);
    assert!(
        same_scores(
            &report["eval"]["before"],
            &eval_scores(&photos, &["--baseline", "random"])
        ),
        "{report}"
    );

    continuing_from_a_folder_keeps_the_last_epoch(tmp.path(), &photos, &tuned);
    other_architectures_and_bad_starts_are_refused(tmp.path(), &photos);
}

/// `imgsearch eval` of the photos with the extra arguments, as JSON.
fn eval_scores(photos: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["eval", s(photos), "--json"];
    args.extend_from_slice(extra);
    summary(&ok(&args))
}

/// The same scores up to the order of a floating-point sum.
fn same_scores(a: &Value, b: &Value) -> bool {
    ["precision_at_k", "knn_accuracy"]
        .iter()
        .all(|key| match (a[key].as_f64(), b[key].as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            _ => false,
        })
}

/// From a model folder: its weights go on training. `--keep last` leaves the last epoch in
/// --out: the checkpoint's encoder, tensor for tensor.
fn continuing_from_a_folder_keeps_the_last_epoch(tmp: &Path, photos: &Path, tuned: &Path) {
    let again = tmp.join("again");
    let report = summary(&ok(&[
        "train",
        s(photos),
        "--out",
        s(&again),
        "--from",
        s(tuned),
        "--batch",
        "8",
        "--epochs",
        "2",
        "--keep",
        "last",
        "--json",
    ]));
    assert!(
        report["start"]
            .as_str()
            .is_some_and(|p| p.ends_with("tuned")),
        "{report}"
    );
    assert_eq!(report["probe"]["kept_epoch"], 2, "{report}");
    assert_eq!(report["probe"]["kept"], report["probe"]["last"], "{report}");
    let model = std::fs::read(again.join("model.safetensors")).expect("model");
    let model = safetensors::SafeTensors::deserialize(&model).expect("valid safetensors");
    let checkpoint = std::fs::read(again.join("checkpoint.safetensors")).expect("checkpoint");
    let checkpoint = safetensors::SafeTensors::deserialize(&checkpoint).expect("valid");
    assert!(!model.names().is_empty());
    // The search projection is fitted after training: it is the one thing the checkpoint,
    // which holds what training trains, does not have.
    for name in model
        .names()
        .into_iter()
        .filter(|n| !n.starts_with("projection."))
    {
        let saved = checkpoint
            .tensor(&format!("param.{name}"))
            .expect("every model tensor is in the checkpoint");
        assert_eq!(
            model.tensor(name).expect("tensor").data(),
            saved.data(),
            "{name}"
        );
    }
}

/// Another architecture trains from scratch unless a start is named, which it cannot fit; a
/// missing start folder and a budget that is not a positive number of minutes are refused.
fn other_architectures_and_bad_starts_are_refused(tmp: &Path, photos: &Path) {
    let small = ["--channels", "16,32,64", "--dim", "16", "--batch", "8"];
    let mut args = vec!["train", s(photos), "--epochs", "1", "--json", "--out"];
    let small_out = tmp.join("small");
    args.push(s(&small_out));
    args.extend_from_slice(&small);
    assert_eq!(summary(&ok(&args))["start"], "scratch");
    args.extend_from_slice(&["--from", "default"]);
    let out = imgsearch(&args);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--from default") && stderr.contains("channels"),
        "{stderr}"
    );
    let missing = tmp.join("no-such-model");
    let out = imgsearch(&[
        "train",
        s(photos),
        "--out",
        s(&tmp.join("x")),
        "--from",
        s(&missing),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model"));
    for bad in ["0", "-1", "soon"] {
        let out = imgsearch(&["train", s(photos), "--minutes", bad]);
        assert_eq!(out.status.code(), Some(2), "--minutes {bad}");
    }
}
