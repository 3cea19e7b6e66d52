//! Load on `imgsearch serve`: search by id and by upload at 1, 8 and 64 concurrent clients on
//! loopback, against an index of the 60,000 CIFAR-10 images. Prints requests/s, p50 and p99
//! latency, the server's resident memory, and for uploads the share of the latency spent
//! decoding, embedding and searching (from the server's `Server-Timing` header).
//!
//! ```sh
//! cargo build --release && cargo run --release --example serve_bench -- [SECONDS_PER_RUN]
//! ```
//!
//! Builds `target/bench-cifar60k-index` from data/cifar10/{train,test} the first time (fetch
//! them with `bench/data.sh cifar10`). The clients run in this process on the same
//! machine as the server: on 2 cores they take CPU from it, so the figures are a floor.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const BOUNDARY: &str = "imgsearch-bench";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    root().join("target/release/imgsearch")
}

fn multipart(name: &str, bytes: &[u8]) -> Bytes {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Bytes::from(body)
}

/// What one request costs: wall latency and, for uploads, the server's own phases (ms).
struct Sample {
    latency: Duration,
    phases: Vec<(String, f64)>,
}

fn server_timing(header: Option<&hyper::header::HeaderValue>) -> Vec<(String, f64)> {
    let Some(text) = header.and_then(|h| h.to_str().ok()) else {
        return Vec::new();
    };
    let mut phases: Vec<(String, f64)> = Vec::new();
    for part in text.split(',') {
        let mut items = part.trim().split(';');
        let Some(name) = items.next() else { continue };
        for item in items {
            let item = item.trim();
            if let Some(dur) = item.strip_prefix("dur=").and_then(|d| d.parse().ok()) {
                phases.push((name.to_string(), dur));
            }
            if let Some(n) = item
                .strip_prefix("desc=\"batch of ")
                .and_then(|d| d.trim_end_matches('"').parse().ok())
            {
                phases.push(("batch".to_string(), n));
            }
        }
    }
    phases
}

enum Mode {
    ById(Arc<Vec<String>>),
    ByUpload(Arc<Vec<Bytes>>),
}

async fn one(client: &HttpClient, base: &str, mode: &Mode, i: usize) -> Sample {
    let request = match mode {
        Mode::ById(ids) => hyper::Request::get(format!(
            "{base}api/images/{}/neighbours?k=10",
            ids[i % ids.len()]
        ))
        .body(Full::new(Bytes::new())),
        Mode::ByUpload(bodies) => hyper::Request::post(format!("{base}api/search?k=10"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(Full::new(bodies[i % bodies.len()].clone())),
    }
    .expect("request");
    let start = Instant::now();
    let response = client.request(request).await.expect("response");
    let status = response.status();
    let phases = server_timing(response.headers().get("server-timing"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    Sample {
        latency: start.elapsed(),
        phases,
    }
}

async fn run_level(
    client: &HttpClient,
    base: &str,
    mode: Arc<Mode>,
    clients: usize,
    secs: f64,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let base = base.to_string();
        let mode = mode.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = c * 7919;
            while Instant::now() < deadline {
                samples.push(one(&client, &base, &mode, i).await);
                i += 1;
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (in parentheses, which may hold spaces): utime and
    // stime are the 12th and 13th of them, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) * 10.0
}

fn ensure_index(index: &Path) {
    if index.join("manifest.json").exists() {
        return;
    }
    let data = root().join("data/cifar10");
    for split in ["train", "test"] {
        assert!(
            data.join(split).is_dir(),
            "fetch CIFAR-10 first: bench/data.sh cifar10/{split}"
        );
    }
    eprintln!("building the 60,000-image index (once)...");
    let status = Command::new(binary())
        .args(["index", "--quiet", "--index"])
        .arg(index)
        .arg(data.join("train"))
        .arg(data.join("test"))
        .status()
        .expect("run imgsearch index");
    assert!(status.success());
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10.0);
    assert!(binary().exists(), "build first: cargo build --release");
    let index = root().join("target/bench-cifar60k-index");
    ensure_index(&index);
    let (_server, pid, base, images) = start_server(&index);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Idle connections are dropped before the server's 10 s header timeout closes them.
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(128)
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build_http();
        // 512 ids from random rows, 64 CIFAR-10 test images to upload.
        let ids = random_ids(&client, &base).await;
        let uploads = cat_uploads();

        println!(
            "imgsearch serve, {images} images, {secs} s per run, {} cores ({}); clients in the same process",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model()
        );
        println!();
        println!("| search | clients | requests | req/s | p50 ms | p99 ms | server RSS MB | server CPU ms/request | upload: wait / decode / queue / embed / search (mean ms, share of mean latency), mean batch |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        let modes = [
            ("by id", Arc::new(Mode::ById(Arc::new(ids)))),
            ("by upload", Arc::new(Mode::ByUpload(Arc::new(uploads)))),
        ];
        for (name, mode) in modes {
            // Warm-up: thread pools, the id table, caches.
            run_level(&client, &base, mode.clone(), 4, 1.0).await;
            for clients in [1, 8, 64] {
                let cpu_before = cpu_ms(pid);
                let samples = run_level(&client, &base, mode.clone(), clients, secs).await;
                let cpu = (cpu_ms(pid) - cpu_before) / samples.len().max(1) as f64;
                let mut ms: Vec<f64> = samples.iter().map(|s| s.latency.as_secs_f64() * 1e3).collect();
                ms.sort_by(f64::total_cmp);
                let p50 = percentile(&ms, 0.5);
                let phases = if matches!(*mode, Mode::ByUpload(_)) {
                    upload_phases(&samples, &ms)
                } else {
                    String::new()
                };
                println!(
                    "| {name} | {clients} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {cpu:.3} | {phases} |",
                    samples.len(),
                    samples.len() as f64 / secs,
                    p50,
                    percentile(&ms, 0.99),
                    rss_kb(pid, "VmRSS:") as f64 / 1024.0,
                );
            }
        }
        println!();
        println!("server peak RSS: {:.0} MB", rss_kb(pid, "VmHWM:") as f64 / 1024.0);
    });
}

/// Starts `imgsearch serve` on the index and reads its listening line: the server (stopped when
/// dropped), its pid, its base URL and how many images it serves.
fn start_server(index: &Path) -> (ServerProcess, u32, String, u64) {
    let mut server = ServerProcess(
        Command::new(binary())
            .args([
                "serve",
                "--json",
                "--quiet",
                "--bind",
                "127.0.0.1:0",
                "--index",
            ])
            .arg(index)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server"),
    );
    let pid = server.0.id();
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let summary: Value = serde_json::from_str(&line).expect("summary");
    let base = summary["url"].as_str().expect("url").to_string();
    let images = summary["images"].as_u64().unwrap_or(0);
    (server, pid, base, images)
}

/// The query and result ids of 100 random rows of 5: the ids the by-id clients search for.
async fn random_ids(client: &HttpClient, base: &str) -> Vec<String> {
    let rows = client
        .get(
            format!("{base}api/random?rows=100&k=5&seed=1")
                .parse()
                .unwrap(),
        )
        .await
        .expect("random rows");
    let rows: Value =
        serde_json::from_slice(&rows.into_body().collect().await.unwrap().to_bytes()).unwrap();
    rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            std::iter::once(r["query_id"].as_str().unwrap().to_string()).chain(
                r["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["id"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// The first 64 CIFAR-10 test cats as multipart bodies: what the by-upload clients send.
fn cat_uploads() -> Vec<Bytes> {
    let test = root().join("data/cifar10/test/cat");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&test)
        .expect("data/cifar10/test/cat")
        .flatten()
        .map(|f| f.path())
        .collect();
    files.sort();
    files
        .iter()
        .take(64)
        .map(|f| multipart("cat.jpg", &std::fs::read(f).unwrap()))
        .collect()
}

/// The CPU's model name from /proc/cpuinfo, for the table's heading.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

/// The upload column: mean milliseconds of each server phase, each one's share of the mean
/// latency, and the mean embedding batch.
fn upload_phases(samples: &[Sample], ms: &[f64]) -> String {
    let mean = |key: &str| {
        samples
            .iter()
            .filter_map(|s| s.phases.iter().find(|(n, _)| n == key).map(|(_, d)| *d))
            .sum::<f64>()
            / samples.len().max(1) as f64
    };
    let mean_ms = ms.iter().sum::<f64>() / ms.len() as f64;
    let share = |key: &str| 100.0 * mean(key) / mean_ms;
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} / {:.2} of {:.2} ({:.0}% / {:.0}% / {:.0}% / {:.0}% / {:.0}%), batch {:.1}",
        mean("wait"),
        mean("decode"),
        mean("queue"),
        mean("embed"),
        mean("search"),
        mean_ms,
        share("wait"),
        share("decode"),
        share("queue"),
        share("embed"),
        share("search"),
        mean("batch"),
    )
}

/// The server, stopped when this goes out of scope (a panicking run included).
struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
