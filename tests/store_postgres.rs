//! The PostgreSQL store through the real binary on real images (tests/fixtures) against real
//! PostgreSQL 15 + pgvector clusters, each test starting its own throw-away clusters (initdb,
//! pg_ctl) on loopback ports: one node matching the local index; a coordinator over two
//! postgres_fdw shards giving the same top-k (k above `hnsw.ef_search`); a streaming replica
//! serving queries; two workers sharing a queue; a worker killed mid-batch; the server stopped
//! mid-index; refusals of another model, another dimension and a newer schema.
//!
//! Without PostgreSQL and pgvector (`.ci/postgres-setup` installs them) each test says SKIPPED;
//! under `CI` it fails instead.

mod common;

use common::cli::{fixtures, lines as records, ok, run as imgsearch, s, summary, walk};
use common::postgres::{free_port, postgres, Cluster};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `query --json` answers: for each query, its (path, score) list.
fn answers(stdout: &str) -> Vec<Vec<(String, f64)>> {
    records(stdout)
        .into_iter()
        .filter(|r| r["type"] == "query")
        .map(|r| {
            r["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|h| {
                    (
                        h["path"].as_str().expect("path").to_string(),
                        h["score"].as_f64().expect("score"),
                    )
                })
                .collect()
        })
        .collect()
}

/// The same neighbours in the same order, scores equal up to float summation order.
fn assert_same_answers(a: &[Vec<(String, f64)>], b: &[Vec<(String, f64)>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: number of answers");
    for (x, y) in a.iter().zip(b) {
        let paths = |v: &Vec<(String, f64)>| v.iter().map(|h| h.0.clone()).collect::<Vec<_>>();
        assert_eq!(paths(x), paths(y), "{what}");
        for (p, q) in x.iter().zip(y) {
            assert!((p.1 - q.1).abs() < 1e-4, "{what}: {p:?} vs {q:?}");
        }
    }
}

/// A copy of some fixture classes in a fresh folder (files a test may change).
fn library(tmp: &Path, classes: &[&str]) -> PathBuf {
    let root = tmp.join("library");
    for class in classes {
        let from = fixtures().join("test").join(class);
        let to = root.join(class);
        std::fs::create_dir_all(&to).expect("mkdir");
        for e in std::fs::read_dir(&from).expect("read fixtures") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
    root
}

fn query_images(root: &Path, n: usize) -> Vec<String> {
    let mut files: Vec<PathBuf> = walk(root);
    files.sort();
    let step = (files.len() / n).max(1);
    files
        .iter()
        .step_by(step)
        .take(n)
        .map(|p| s(p).to_string())
        .collect()
}

fn query_json(store: &[&str], images: &[String], k: usize) -> Vec<Vec<(String, f64)>> {
    let k = k.to_string();
    let mut args = vec!["query", "--json", "-k", &k];
    args.extend_from_slice(store);
    args.extend(images.iter().map(String::as_str));
    answers(&ok(&args))
}

#[test]
fn one_node_store_answers_as_the_local_index_does_and_stays_incremental() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = library(tmp.path(), &["cat", "dog", "ship", "truck", "frog"]);
    let local = tmp.path().join("index");

    let first = summary(&ok(&["index", s(&lib), "--store", &url, "--json"]));
    assert_eq!(first["added"], 100, "{first}");
    assert_eq!(first["total"], 100, "{first}");
    assert!(
        first["index"].is_null() && first["store"] == url.as_str(),
        "{first}"
    );
    ok(&["index", s(&lib), "--index", s(&local), "-q"]);

    // The same neighbours and scores as the local index, also for k above hnsw.ef_search (40).
    let images = query_images(&lib, 6);
    for k in [5, 60] {
        let exact = query_json(&["--index", s(&local), "--exact"], &images, k);
        let in_pg = query_json(&["--store", &url], &images, k);
        assert_same_answers(&in_pg, &exact, &format!("one node, k {k}"));
    }
    // The environment variable names the store too.
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["query", "--json", "-k", "3", &images[0]])
        .env("IMGSEARCH_STORE", &url)
        .current_dir(tmp.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_env = answers(&String::from_utf8_lossy(&out.stdout));
    assert_same_answers(
        &by_env,
        &query_json(&["--index", s(&local)], &images[..1], 3),
        "env",
    );

    // eval and dups read the store as they read the index.
    eval_and_dups_agree(&url, &lib, &local);

    // Incremental: nothing to do, then a removed and a changed file.
    let again = summary(&ok(&["index", "--store", &url, "--json"]));
    assert_eq!(
        (again["added"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
    let cats = walk(&lib.join("cat"));
    std::fs::remove_file(&cats[0]).expect("rm");
    std::fs::copy(&cats[2], &cats[1]).expect("overwrite");
    let changed = summary(&ok(&["index", s(&lib), "--store", &url, "--json"]));
    assert_eq!(
        (
            changed["added"].as_u64(),
            changed["updated"].as_u64(),
            changed["removed"].as_u64(),
            changed["total"].as_u64()
        ),
        (Some(0), Some(1), Some(1), Some(99)),
        "{changed}"
    );
    assert_eq!(pg.count("photos", "SELECT count(*) FROM imgsearch_jobs"), 0);
    assert_eq!(
        pg.count("photos", "SELECT count(*) FROM imgsearch_images"),
        99
    );
    // The recompressed copy now scores 1 against the file it was copied from.
    let twins = query_json(&["--store", &url], &[s(&cats[2]).to_string()], 2);
    assert!(twins[0][1].1 > 0.9999, "{twins:?}");
}

/// `eval` and `dups` read the store as they read the index: the same figures, the same groups.
fn eval_and_dups_agree(url: &str, lib: &Path, local: &Path) {
    let eval = |store: &[&str]| {
        let mut args = vec!["eval", s(lib), "--json"];
        args.extend_from_slice(store);
        let r = summary(&ok(&args));
        (r["precision_at_k"].as_f64(), r["knn_accuracy"].as_f64())
    };
    let (p_pg, knn_pg) = eval(&["--store", url]);
    let (p_local, knn_local) = eval(&[]);
    assert!(
        (p_pg.unwrap() - p_local.unwrap()).abs() < 1e-9,
        "P@9 {p_pg:?} vs {p_local:?}"
    );
    assert!(
        (knn_pg.unwrap() - knn_local.unwrap()).abs() < 1e-9,
        "kNN {knn_pg:?} vs {knn_local:?}"
    );
    let dups_pg = ok(&[
        "dups",
        "--store",
        url,
        "--csv",
        "--threshold",
        "0.9",
        "--no-rotations",
    ]);
    let dups_local = ok(&[
        "dups",
        "--index",
        s(local),
        "--csv",
        "--threshold",
        "0.9",
        "--no-rotations",
    ]);
    assert_eq!(dups_pg, dups_local);
}

#[test]
fn a_coordinator_over_two_shards_gives_the_same_top_k_as_one_node() {
    let Some(bin) = postgres() else { return };
    let (coord, one, two) = (
        Cluster::start(&bin),
        Cluster::start(&bin),
        Cluster::start(&bin),
    );
    let coord_url = coord.database("photos");
    let shards = [one.database("photos"), two.database("photos")];
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = library(
        tmp.path(),
        &["airplane", "automobile", "bird", "deer", "horse"],
    );
    let single = Cluster::start(&bin);
    let single_url = single.database("photos");

    let init = summary(&ok(&[
        "store-init",
        "--store",
        &coord_url,
        "--shard",
        &shards[0],
        "--shard",
        &shards[1],
        "--json",
    ]));
    assert_eq!(init["dim"], 128, "{init}");
    // Set up once: a second run is refused, naming the coordinator.
    let out = imgsearch(&[
        "store-init",
        "--store",
        &coord_url,
        "--shard",
        &shards[0],
        "--shard",
        &shards[1],
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds imgsearch tables"));

    ok(&["index", s(&lib), "--store", &coord_url, "-q"]);
    ok(&["index", s(&lib), "--store", &single_url, "-q"]);
    let (a, b) = (
        one.count("photos", "SELECT count(*) FROM imgsearch_images"),
        two.count("photos", "SELECT count(*) FROM imgsearch_images"),
    );
    assert_eq!(a + b, 100, "every image on exactly one shard");
    assert!(
        a > 20 && b > 20,
        "hash partitions split the images: {a} / {b}"
    );

    let images = query_images(&lib, 5);
    for k in [10, 60, 100] {
        let sharded = query_json(&["--store", &coord_url], &images, k);
        let one_node = query_json(&["--store", &single_url], &images, k);
        assert_same_answers(&sharded, &one_node, &format!("two shards, k {k}"));
        assert!(
            sharded.iter().all(|a| a.len() == k),
            "k {k} rows from two shards"
        );
    }
}

#[test]
fn a_streaming_replica_serves_queries_and_refuses_writes() {
    let Some(bin) = postgres() else { return };
    let primary = Cluster::start(&bin);
    let url = primary.database("photos");
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = library(tmp.path(), &["cat", "ship"]);
    ok(&["index", s(&lib), "--store", &url, "-q"]);
    let replica = Cluster::replica_of(&primary);
    let replica_url = replica.url("photos");
    let more = library(&tmp.path().join("more"), &["bird"]);
    ok(&["index", s(&more), "--store", &url, "-q"]);
    // Replayed within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.count("photos", "SELECT count(*) FROM imgsearch_images") != 60 {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let images = query_images(&tmp.path().join("more"), 4);
    assert_same_answers(
        &query_json(&["--store", &replica_url], &images, 12),
        &query_json(&["--store", &url], &images, 12),
        "replica",
    );
    let out = imgsearch(&["index", s(&lib), "--store", &replica_url]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("read-only") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}

fn worker(url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["worker", "--store", url, "--json"])
        .args(extra)
        .env_remove("IMGSEARCH_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start worker")
}

fn finished(child: Child) -> Value {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn two_workers_share_the_queue_and_store_each_image_once() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let lib = fixtures().join("train");
    let queued = summary(&ok(&[
        "index",
        s(&lib),
        "--store",
        &url,
        "--queue-only",
        "--json",
    ]));
    assert_eq!(
        (queued["added"].as_u64(), queued["total"].as_u64()),
        (Some(400), Some(0)),
        "{queued}"
    );
    assert_eq!(
        pg.count("photos", "SELECT count(*) FROM imgsearch_jobs"),
        400
    );
    let delay = ["--batch", "10", "--batch-delay-ms", "40"];
    let (a, b) = (worker(&url, &delay), worker(&url, &delay));
    let (a, b) = (finished(a), finished(b));
    let (na, nb) = (
        a["embedded"].as_u64().unwrap(),
        b["embedded"].as_u64().unwrap(),
    );
    assert_eq!(na + nb, 400, "{a} {b}");
    assert!(na > 0 && nb > 0, "both workers worked: {na} / {nb}");
    assert_ne!(a["worker"], b["worker"]);
    assert_eq!(
        pg.count("photos", "SELECT count(*) FROM imgsearch_images"),
        400
    );
    assert_eq!(
        pg.count("photos", "SELECT count(DISTINCT id) FROM imgsearch_images"),
        400
    );
    assert_eq!(pg.count("photos", "SELECT count(*) FROM imgsearch_jobs"), 0);
}

#[test]
fn a_worker_killed_mid_batch_loses_nothing() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let lib = fixtures().join("test");
    ok(&["index", s(&lib), "--store", &url, "--queue-only", "-q"]);
    // A lease far longer than the test: the batch comes back because the worker's session
    // closed when it died.
    let mut doomed = worker(
        &url,
        &["--batch", "10", "--lease", "600", "--batch-delay-ms", "300"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.stored("photos") < 20 {
        assert!(
            Instant::now() < deadline,
            "the first worker committed nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    doomed.kill().expect("kill -9");
    let _ = doomed.wait();
    let committed = pg.count("photos", "SELECT count(*) FROM imgsearch_images");
    let held = pg.count(
        "photos",
        "SELECT count(*) FROM imgsearch_jobs WHERE worker IS NOT NULL",
    );
    assert!(held > 0, "killed while holding a batch");
    assert!(committed < 200);
    // The next worker takes what is left, the dead worker's batch included.
    let started = Instant::now();
    let rest = finished(worker(&url, &["--batch", "10"]));
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "did not wait for the lease"
    );
    assert_eq!(
        rest["embedded"].as_i64().unwrap() + committed,
        200,
        "{rest}"
    );
    assert_eq!(
        pg.count("photos", "SELECT count(*) FROM imgsearch_images"),
        200
    );
    assert_eq!(pg.count("photos", "SELECT count(*) FROM imgsearch_jobs"), 0);
}

#[test]
fn the_server_stopped_mid_index_is_a_clear_error_and_a_rerun_completes() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let lib = fixtures().join("test");
    let child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args([
            "index",
            s(&lib),
            "--store",
            &url,
            "--batch",
            "10",
            "--batch-delay-ms",
            "200",
        ])
        .env_remove("IMGSEARCH_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start index");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if pg.stored("photos") >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.stop("immediate");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1), "a runtime error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&url) && stderr.contains("run the command again"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    pg.pg_ctl_start();
    let done = summary(&ok(&["index", s(&lib), "--store", &url, "--json"]));
    assert_eq!(done["total"], 200, "{done}");
    assert_eq!(
        pg.count("photos", "SELECT count(*) FROM imgsearch_images"),
        200
    );
    assert_eq!(pg.count("photos", "SELECT count(*) FROM imgsearch_jobs"), 0);
}

#[test]
fn another_model_another_dimension_and_a_newer_schema_are_refused() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let tmp = tempfile::tempdir().expect("tempdir");
    let photos = fixtures().join("photos");
    ok(&["index", s(&photos), "--store", &url, "-q"]);

    // A model of another dimension, then one of the same dimension but other weights.
    let small = tmp.path().join("small");
    ok(&[
        "train",
        s(&photos),
        "--out",
        s(&small),
        "--epochs",
        "1",
        "--channels",
        "16,32,64",
        "--dim",
        "16",
        "--batch",
        "8",
        "-q",
    ]);
    let out = imgsearch(&["index", s(&photos), "--store", &url, "--model", s(&small)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("128-dimensional") && stderr.contains("makes 64"),
        "{stderr}"
    );
    let tuned = tmp.path().join("tuned");
    ok(&[
        "train",
        s(&photos),
        "--out",
        s(&tuned),
        "--epochs",
        "1",
        "--batch",
        "8",
        // 128 pooled features, searched as they are: the store's dimension, other weights.
        "--channels",
        "64,128,128",
        "--projection",
        "none",
        "-q",
    ]);
    for args in [
        vec!["index", s(&photos), "--store", &url, "--model", s(&tuned)],
        vec![
            "query",
            "--store",
            &url,
            "--model",
            s(&tuned),
            s(&walk(&photos)[0]),
        ],
    ] {
        let out = imgsearch(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("was built with model") && stderr.contains(&url),
            "{stderr}"
        );
    }

    // A schema from a newer imgsearch: read and written by nobody here.
    pg.client("photos")
        .batch_execute("UPDATE imgsearch_meta SET value = '99' WHERE key = 'schema_version'")
        .expect("update");
    for args in [
        vec!["query", "--store", &url, s(&walk(&photos)[0])],
        vec!["index", s(&photos), "--store", &url],
        vec!["worker", "--store", &url],
    ] {
        let out = imgsearch(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("schema version 99") && stderr.contains("upgrade imgsearch"),
            "{stderr}"
        );
    }

    // No store there yet, and a database that is not up.
    let empty = pg.database("empty");
    let out = imgsearch(&["query", "--store", &empty, s(&walk(&photos)[0])]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no imgsearch store"));
    let down = format!("postgres://postgres@127.0.0.1:{}/photos", free_port());
    let out = imgsearch(&["query", "--store", &down, s(&walk(&photos)[0])]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run the command again"));
    // Not a URL: a usage error.
    let out = imgsearch(&["query", "--store", "photos-db", s(&walk(&photos)[0])]);
    assert_eq!(out.status.code(), Some(2));
}

/// One HTTP/1.1 GET: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, response[split + 4..].to_vec())
}

fn get_json(addr: &str, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

#[test]
fn serve_answers_from_the_store_and_follows_its_commits() {
    let Some(bin) = postgres() else { return };
    let pg = Cluster::start(&bin);
    let url = pg.database("photos");
    let tmp = tempfile::tempdir().expect("tempdir");
    let lib = library(tmp.path(), &["cat", "dog"]);
    ok(&["index", s(&lib), "--store", &url, "-q"]);
    let thumbs = tmp.path().join("thumbs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["serve", "--store", &url, "--bind", "127.0.0.1:0", "--json"])
        .arg("--thumbnails")
        .arg(&thumbs)
        .env_remove("IMGSEARCH_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("summary line");
    let started: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(
        (started["store"].as_str(), started["images"].as_u64()),
        (Some(url.as_str()), Some(40)),
        "{first}"
    );
    let addr = started["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    let stats = get_json(&addr, "/api/stats");
    assert_eq!(stats["images"], 40, "{stats}");
    // Neighbours by id: what `query --store` answers for that file.
    let image = query_images(&lib, 1).remove(0);
    let by_query = query_json(&["--store", &url], std::slice::from_ref(&image), 7);
    let id = records(&ok(&[
        "query", "--store", &url, "--json", "-k", "1", &image,
    ]))[0]["results"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let by_id = get_json(&addr, &format!("/api/images/{id}/neighbours?k=7"));
    let paths: Vec<&str> = by_id["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| h["path"].as_str().expect("path"))
        .collect();
    let expected: Vec<&str> = by_query[0].iter().map(|h| h.0.as_str()).collect();
    assert_eq!(paths, expected);
    let (status, jpeg) = get(&addr, &format!("/api/images/{id}/thumbnail"));
    assert_eq!(status, 200);
    assert!(image::load_from_memory(&jpeg).is_ok(), "a thumbnail");
    assert_eq!(get(&addr, "/api/images/0123456789abcdef/neighbours").0, 404);
    let rows = get_json(&addr, "/api/random?rows=3&k=4");
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(3), "{rows}");
    let dups = get_json(&addr, "/api/dups");
    assert_eq!(dups["type"], "dups");

    // A commit to the store is served within seconds.
    let more = library(&tmp.path().join("more"), &["ship"]);
    ok(&["index", s(&more), "--store", &url, "-q"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&addr, "/api/stats")["images"] != 60 {
        assert!(
            Instant::now() < deadline,
            "the new generation was not served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}
