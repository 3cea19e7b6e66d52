//! The defects found when the binary was tried as a new user would, one test each, through the
//! real binary on real images (tests/fixtures). Each failed on the code before the fix.

mod common;

use base64::Engine;
use common::cli::{images, lines, ok, run, s, stderr, summary};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs with arguments that need not be UTF-8.
fn imgsearch(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(args)
        .output()
        .expect("run imgsearch")
}

/// Defect 1: `query --json` with paths that are not UTF-8: no panic; the bytes survive in base64.
#[cfg(unix)]
#[test]
fn paths_that_are_not_utf8_are_carried_losslessly() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    let real = images(&dir, "cat", 6);
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"a\xff\nb.jpg"));
    std::fs::copy(&real[0], &odd).expect("copy");
    let index = tmp.path().join("index");
    ok(&["index", s(&dir), "--index", s(&index)]);
    let out = imgsearch(&[
        "query".as_ref(),
        odd.as_os_str(),
        "--index".as_ref(),
        index.as_os_str(),
        "--json".as_ref(),
        "-k".as_ref(),
        "3".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).expect("JSON is UTF-8");
    let answer = &lines(&stdout)[0];
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 string"))
            .expect("base64")
    };
    assert_eq!(decode(&answer["query_bytes"]), odd.as_os_str().as_bytes());
    let top = &answer["results"][0];
    // The file and its copy share a vector; either may rank first, both carry their bytes.
    let found: Vec<Vec<u8>> = answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| match r.get("path_bytes") {
            Some(b) => decode(b),
            None => r["path"].as_str().expect("path").as_bytes().to_vec(),
        })
        .collect();
    assert!(
        found.contains(&odd.as_os_str().as_bytes().to_vec()),
        "{stdout}"
    );
    assert!(top["score"].as_f64().expect("score") > 0.999);
    // Plain output shows the path lossily, with the newline escaped: one line per hit.
    let plain = imgsearch(&[
        "query".as_ref(),
        odd.as_os_str(),
        "--index".as_ref(),
        index.as_os_str(),
        "-k".as_ref(),
        "3".as_ref(),
    ]);
    assert!(plain.status.success());
    let text = String::from_utf8_lossy(&plain.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains("a\u{fffd}\\nb.jpg"), "{text}");
}

/// Defect 2: A closed stdout ends the command quietly with exit 0; a full disk is exit 1.
#[cfg(unix)]
#[test]
fn a_closed_pipe_is_quiet_and_a_full_disk_is_an_error() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    images(&dir, "dog", 40);
    let index = tmp.path().join("index");
    ok(&["index", s(&dir), "--index", s(&index)]);
    let query = dir.join("0003.jpg");
    // 100 queries of 40 neighbours: about 300 KB, more than a pipe holds, so the writes
    // after the reader is gone fail (EPIPE).
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .arg("query")
        .args(std::iter::repeat_n(s(&query), 100))
        .args(["-k", "40", "--index", s(&index)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    // The reader is gone (`| head -1`).
    let out = child.wait_with_output().expect("wait");
    assert!(first.ends_with("0003.jpg\n"), "{first}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["index", s(&dir), "--index", s(&index), "--json"])
            .stdout(full)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
}

/// Defect 3: An index keeps the folders it was given; `forget` drops one; a missing one is kept.
#[test]
fn an_index_keeps_its_folders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let in_a = images(&a, "ship", 8);
    images(&b, "frog", 5);
    let index = tmp.path().join("index");
    let json = |args: &[&str]| summary(&ok(&[args, &["--json", "--index", s(&index)]].concat()));
    assert_eq!(json(&["index", s(&a)])["total"], 8);
    let second = json(&["index", s(&b)]);
    assert_eq!(
        (&second["total"], &second["removed"]),
        (&13.into(), &0.into())
    );
    // A's files are still found.
    let answer = lines(&ok(&["query", s(&in_a[2]), "--index", s(&index), "--json"]))[0].clone();
    let canonical = in_a[2].canonicalize().expect("canonical");
    assert_eq!(answer["results"][0]["path"], s(&canonical), "{answer}");
    // No folder: every recorded folder is brought up to date.
    std::fs::remove_file(&in_a[0]).expect("rm");
    let rescan = json(&["index"]);
    assert_eq!(
        (&rescan["removed"], &rescan["total"]),
        (&1.into(), &12.into())
    );
    assert_eq!(rescan["scanned"].as_array().map(Vec::len), Some(2));
    // A recorded folder that is missing keeps its entries, with a warning.
    let moved = tmp.path().join("b-unplugged");
    std::fs::rename(&b, &moved).expect("rename");
    let out = ok(&["index", "--index", s(&index), "--json"]);
    let warnings: Vec<Value> = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(warnings[0]["message"]
        .as_str()
        .expect("msg")
        .contains("missing"));
    assert_eq!(summary(&out)["total"], 12);
    // Forgetting a folder, by the path it was recorded under even though it is gone.
    let forgot = json(&["forget", s(&b)]);
    assert_eq!(
        (&forgot["removed"], &forgot["total"]),
        (&5.into(), &7.into())
    );
    // A folder the index does not record is a usage error.
    let out = run(&["forget", s(&moved), "--index", s(&index)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not a folder of the index"));
}

/// Defect 4: A folder and a link to it: every real file once; links only followed with --follow.
#[cfg(unix)]
#[test]
fn a_real_file_is_indexed_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    images(&root.join("real"), "deer", 10);
    std::os::unix::fs::symlink(root.join("real"), root.join("link")).expect("symlink");
    let index = tmp.path().join("index");
    let out = ok(&["index", s(&root), "--index", s(&index), "--json"]);
    let plain = summary(&out);
    assert_eq!(plain["total"], 10, "{out}");
    assert_eq!(plain["links_not_followed"], 1);
    // Following links reaches the same files by a second path: still 10, each double named.
    let index2 = tmp.path().join("index2");
    let out = ok(&[
        "index",
        s(&root),
        "--index",
        s(&index2),
        "--follow",
        "--json",
    ]);
    assert_eq!(summary(&out)["total"], 10, "{out}");
    let same: Vec<Value> = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "skip")
        .collect();
    assert_eq!(same.len(), 10, "{out}");
    assert!(same[0]["reason"]
        .as_str()
        .expect("reason")
        .contains("the same file as"));
    // A query for an image returns it once.
    let answer = &lines(&ok(&[
        "query",
        s(&root.join("real/0001.jpg")),
        "--index",
        s(&index2),
        "-k",
        "2",
        "--json",
    ]))[0];
    assert!(
        answer["results"][1]["score"].as_f64().expect("score") < 0.9999,
        "{answer}"
    );
}

/// Defect 5: Link loops, dangling links and undecodable files are named with their reasons.
#[cfg(unix)]
#[test]
fn every_skipped_file_is_named_with_its_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    images(&root.join("ok"), "bird", 4);
    std::os::unix::fs::symlink(&root, root.join("ok/loop")).expect("loop");
    std::os::unix::fs::symlink(root.join("nowhere.jpg"), root.join("dangling.jpg")).expect("ln");
    std::fs::write(root.join("notes.jpg"), b"a text file").expect("write");
    let index = tmp.path().join("index");
    let out = ok(&[
        "index",
        s(&root),
        "--index",
        s(&index),
        "--follow",
        "--json",
    ]);
    let skips: Vec<(String, String)> = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "skip")
        .map(|l| {
            let path = l["path"].as_str().expect("path").to_string();
            (path, l["reason"].as_str().expect("reason").to_string())
        })
        .collect();
    let reason = |name: &str| -> String {
        skips
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not named in {out}"))
    };
    assert!(reason("loop").contains("loop"));
    assert!(reason("dangling.jpg").contains("dangling"));
    assert!(!reason("notes.jpg").is_empty());
    assert_eq!(summary(&out)["skipped"], skips.len());
    // Plain output names them on stderr.
    let index2 = tmp.path().join("index2");
    let out = run(&["index", s(&root), "--index", s(&index2), "--follow"]);
    assert!(out.status.success());
    for name in ["loop", "dangling.jpg", "notes.jpg"] {
        assert!(stderr(&out).contains(name), "{}", stderr(&out));
    }
}

/// Defect 6: `verify` finds a flipped byte (exit 1); `index` refuses with advice; `--repair` mends.
#[test]
fn verify_finds_damage_and_index_repair_mends_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    let files = images(&dir, "truck", 20);
    let index = tmp.path().join("index");
    ok(&["index", s(&dir), "--index", s(&index)]);
    assert!(ok(&["verify", "--index", s(&index)]).contains("OK"));
    let vec = std::fs::read_dir(&index)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "vec"))
        .expect("a vectors file");
    let mut bytes = std::fs::read(&vec).expect("read");
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    std::fs::write(&vec, bytes).expect("write");

    let out = run(&["verify", "--index", s(&index)]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("DAMAGED") && text.contains(".vec"), "{text}");
    let out = run(&["index", s(&dir), "--index", s(&index)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("imgsearch index --repair"),
        "{}",
        stderr(&out)
    );

    let repaired = summary(&ok(&["index", "--repair", "--index", s(&index), "--json"]));
    assert_eq!(repaired["total"], files.len(), "{repaired}");
    assert_eq!(repaired["added"], files.len());
    assert_eq!(
        repaired["repair"]["dropped"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(ok(&["verify", "--index", s(&index)]).contains("OK"));
    let answer = &lines(&ok(&[
        "query",
        s(&files[7]),
        "--index",
        s(&index),
        "--json",
    ]))[0];
    assert!(answer["results"][0]["score"].as_f64().expect("score") > 0.999);
}

/// A copy of the bundled model as a model folder.
fn model_folder(at: &Path) -> PathBuf {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/default");
    std::fs::create_dir_all(at).expect("mkdir");
    for name in ["model.safetensors", "config.json"] {
        std::fs::copy(assets.join(name), at.join(name)).expect("copy");
    }
    at.to_path_buf()
}

/// A tensor read out of a safetensors file: name, bytes, shape, dtype.
type OwnedTensor = (String, Vec<u8>, Vec<usize>, safetensors::Dtype);

/// Write `tensors` as a safetensors file at `path`.
fn write_tensors(path: &Path, tensors: &[OwnedTensor]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, sh, dt)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, sh.clone(), d).expect("view"),
            )
        })
        .collect();
    std::fs::write(
        path,
        safetensors::serialize(views, None).expect("serialize"),
    )
    .expect("write");
}

/// Defect 7: Messages that name the problem, and bad numbers refused up front.
#[test]
fn messages_say_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    let files = images(&dir, "horse", 12);
    refuses_files_and_unbuilt_indexes(tmp.path(), &dir, &files[0]);
    let index = names_a_moved_model_folder(tmp.path(), &dir, &files[0]);
    names_a_truncated_config(tmp.path(), &dir);
    names_nan_and_missing_weights(tmp.path(), &dir);
    refuses_zero_sizes_and_tiny_inputs(tmp.path(), &dir, &files[0], &index);
}

/// Runs imgsearch, expecting exit status `code`, `needle` in its stderr and no panic.
fn fails_saying(args: &[&str], code: i32, needle: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

/// `--index` naming a regular file, and an index folder that is being built or was never built.
fn refuses_files_and_unbuilt_indexes(tmp: &Path, dir: &Path, query: &Path) {
    // --index naming a regular file.
    let file = tmp.join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    fails_saying(
        &["index", s(dir), "--index", s(&file)],
        1,
        "is a file, not an index folder",
    );
    fails_saying(
        &["query", s(query), "--index", s(&file)],
        1,
        "is a file, not an index folder",
    );
    // A query while the first build holds the lock and has not committed.
    let building = tmp.join("building");
    std::fs::create_dir_all(&building).expect("mkdir");
    let lock = std::fs::File::create(building.join("writer.lock")).expect("lock file");
    lock.try_lock().expect("lock");
    fails_saying(
        &["query", s(query), "--index", s(&building)],
        1,
        "being built",
    );
    drop(lock);
    fails_saying(
        &["query", s(query), "--index", s(&building)],
        1,
        "run `imgsearch index DIR` first",
    );
}

/// A model folder moved after indexing; returns the index built with it.
fn names_a_moved_model_folder(tmp: &Path, dir: &Path, query: &Path) -> PathBuf {
    let model = model_folder(&tmp.join("my-model"));
    let index = tmp.join("index");
    ok(&["index", s(dir), "--index", s(&index), "--model", s(&model)]);
    std::fs::rename(&model, tmp.join("elsewhere")).expect("move");
    fails_saying(
        &["query", s(query), "--index", s(&index)],
        1,
        "no longer there",
    );
    index
}

/// A truncated config.json is named as such.
fn names_a_truncated_config(tmp: &Path, dir: &Path) {
    let broken = model_folder(&tmp.join("broken"));
    let config = std::fs::read(broken.join("config.json")).expect("read");
    std::fs::write(broken.join("config.json"), &config[..config.len() / 2]).expect("truncate");
    fails_saying(
        &[
            "index",
            s(dir),
            "--index",
            s(&tmp.join("i2")),
            "--model",
            s(&broken),
        ],
        1,
        "config.json",
    );
}

/// NaN weights are the model's fault, not the first image's; missing weights are one line
/// naming the file and the tensor.
fn names_nan_and_missing_weights(tmp: &Path, dir: &Path) {
    let nan = model_folder(&tmp.join("nan"));
    let bytes = std::fs::read(nan.join("model.safetensors")).expect("read");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut owned: Vec<OwnedTensor> = tensors
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec(), v.shape().to_vec(), v.dtype()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    owned[0].1[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write_tensors(&nan.join("model.safetensors"), &owned);
    let out = run(&[
        "index",
        s(dir),
        "--index",
        s(&tmp.join("i3")),
        "--model",
        s(&nan),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("model.safetensors") && stderr(&out).contains("NaN"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("0000.jpg"));
    // Weights that lack a tensor the config needs: one line naming the file and the tensor, even
    // with RUST_BACKTRACE set (candle then attaches a backtrace to its errors).
    let partial = model_folder(&tmp.join("partial"));
    write_tensors(&partial.join("model.safetensors"), &owned[1..]);
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["eval", s(dir), "--model", s(&partial)])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run imgsearch");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("model.safetensors") && err.contains(&owned[0].0),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("\\n"), "{err}");
}

/// Zero is not a batch, a k or a beam width; training on one image, or at an input size the
/// encoder cannot use, fails before writing a pixel cache.
fn refuses_zero_sizes_and_tiny_inputs(tmp: &Path, dir: &Path, query: &Path, index: &Path) {
    fails_saying(
        &[
            "index",
            s(dir),
            "--index",
            s(&tmp.join("i4")),
            "--batch",
            "0",
        ],
        2,
        "0",
    );
    fails_saying(&["query", s(query), "--index", s(index), "-k", "0"], 2, "0");
    fails_saying(
        &["query", s(query), "--index", s(index), "--ef", "0"],
        2,
        "0",
    );
    // Training on one image fails before writing a pixel cache.
    let one = tmp.join("one");
    images(&one, "cat", 1);
    let out_dir = tmp.join("m1");
    fails_saying(
        &["train", s(&one), "--out", s(&out_dir)],
        2,
        "at least --batch",
    );
    assert!(!out_dir.join("pixels.cache").exists());
    // An input size the encoder cannot use is refused before any image is decoded.
    let m16 = tmp.join("m16");
    fails_saying(
        &[
            "train",
            s(dir),
            "--out",
            s(&m16),
            "--size",
            "16",
            "--batch",
            "4",
        ],
        2,
        "at least 24",
    );
    assert!(!m16.join("pixels.cache").exists());
}

/// Defect 8: kill -9 at any instant of a real `imgsearch index` run leaves an index that
/// verifies, opens and answers; a re-run completes it with every image exactly once.
#[cfg(unix)]
#[test]
fn kill_9_during_indexing_keeps_the_index_sound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = tmp.path().join("index");
    let mut expected = 0;
    let mut folders = Vec::new();
    for (round, class) in ["airplane", "automobile", "bird", "cat"].iter().enumerate() {
        // Each round adds a folder: 20 copies of each of the class's 20 images.
        let folder = tmp.path().join(format!("round-{round}"));
        let originals = images(&folder.join("0"), class, 20);
        for copy in 1..20 {
            let sub = folder.join(copy.to_string());
            std::fs::create_dir_all(&sub).expect("mkdir");
            for f in &originals {
                std::fs::copy(f, sub.join(f.file_name().expect("name"))).expect("copy");
            }
        }
        expected += 400;
        folders.push(folder.clone());
        let generation = |index: &Path| -> u64 {
            std::fs::read_to_string(index.join("manifest.json"))
                .ok()
                .and_then(|m| {
                    let at = m.find("\"generation\": ")? + 14;
                    m[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        let before = generation(&index);
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["index", s(&folder), "--index", s(&index), "--quiet"])
            .args(["--batch", "16", "--commit-every", "16"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // Wait until the run has committed at least once (observable), then kill it a
        // little later, at an instant that differs from round to round.
        let started = std::time::Instant::now();
        while generation(&index) == before && started.elapsed().as_secs() < 60 {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(5 * round as u64));
        // SIGKILL (a no-op if the run already ended).
        let _ = child.kill();
        child.wait().expect("reap");
        assert!(
            generation(&index) > before,
            "round {round}: no commit observed"
        );
        assert!(
            ok(&["verify", "--index", s(&index)]).contains("OK"),
            "round {round}"
        );
        let query = folder.join("0").join("0001.jpg");
        let answer = &lines(&ok(&["query", s(&query), "--index", s(&index), "--json"]))[0];
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(9));
    }
    // A re-run (the lock died with the process) finishes the job: every image once.
    let done = summary(&ok(&["index", "--index", s(&index), "--json"]));
    assert_eq!(done["total"], expected, "{done}");
    assert_eq!(
        done["scanned"].as_array().map(Vec::len),
        Some(folders.len())
    );
    assert!(ok(&["verify", "--index", s(&index)]).contains("OK"));
}
