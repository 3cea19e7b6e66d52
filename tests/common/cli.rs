//! Running the real binary: fixture paths, arguments, its JSON Lines output, and real images
//! copied into a test's folder.

#![allow(dead_code)] // each test crate uses part of it

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real photos and labelled images the tests use (tests/fixtures).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A path as an argument (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs the binary with `args`.
pub fn run(args: &[&str]) -> Output {
    run_with(args, &[])
}

/// Runs the binary with `args` and the variables `env` set. `IMGSEARCH_STORE` is removed so
/// that a store URL in the caller's environment never redirects a test's writes.
pub fn run_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(args)
        .env_remove("IMGSEARCH_STORE")
        .envs(env.iter().copied())
        .output()
        .expect("run imgsearch")
}

/// Runs the binary, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    ok_with(args, &[])
}

/// [`ok`] with the variables `env` set.
pub fn ok_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_with(args, env);
    assert!(
        out.status.success(),
        "imgsearch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs the binary, which must fail with exit 1 (a runtime error, not a usage error); its
/// stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "imgsearch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stderr(&out)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON Lines of `--json` output.
pub fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The last summary record of `--json` output.
pub fn summary(stdout: &str) -> Value {
    lines(stdout)
        .into_iter()
        .rfind(|l| l["type"] == "summary")
        .expect("summary")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// `n` real CIFAR-10 test images of `class` copied into `dir` (named as in the fixtures).
pub fn images(dir: &Path, class: &str, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("test").join(class))
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .take(n)
        .map(|f| {
            let to = dir.join(f.file_name().expect("name"));
            std::fs::copy(f, &to).expect("copy");
            to
        })
        .collect()
}

/// Every file under `dir`, in no particular order.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The first file of `dir` by name.
pub fn first_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.remove(0)
}
