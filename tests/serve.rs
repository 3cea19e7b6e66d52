//! `imgsearch serve`, the real binary on a loopback port over an index of real photos: the API
//! answers as `imgsearch query --json` does, hostile and bad requests get 4xx (never a file
//! outside the index, never a 5xx), slow clients are dropped, and a re-run of `imgsearch index`
//! is picked up without a restart. Then the page in a real Chromium (WebDriver): upload, click,
//! back, a bad upload.
//!
//! Requests are written by hand on a TCP socket, so that what a hostile client sends (`..`,
//! encoded or not, broken multipart) reaches the server unchanged by a client library.

mod common;

use common::cli::{copy_dir, fixtures, s};
use common::serve::{get, raw, serve, upload, Served};
use serde_json::Value;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `(path, id)` of each result of a `query` record.
fn results(record: &Value) -> Vec<(String, String)> {
    record["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {record}"))
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_string(),
                h["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cli_query(index: &Path, image: &Path, k: usize) -> Vec<(String, String)> {
    let out = common::cli::ok(&[
        "query",
        s(image),
        "--index",
        s(index),
        "-k",
        &k.to_string(),
        "--json",
    ]);
    let line = out.lines().next().unwrap();
    results(&serde_json::from_str(line).unwrap())
}

fn first_photo(served: &Served, folder: &str) -> PathBuf {
    let dir = served.tmp.path().join("photos").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .collect();
    files.sort();
    files.remove(0)
}

#[test]
fn the_api_answers_as_query_does() {
    let served = serve(&["photos"], &[]);
    let photo = first_photo(&served, "photos/signdigits-1");
    let expected = cli_query(&served.index, &photo, 7);
    assert_eq!(expected.len(), 7);

    // By upload: the same neighbours, in the same order, as the command line.
    let answer = upload(
        served.addr,
        "?k=7",
        "image",
        "photo.jpg",
        &std::fs::read(&photo).unwrap(),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let record = answer.json();
    assert_eq!(record["type"], "query");
    assert_eq!(results(&record), expected);

    // By id: the photo's own id gives the same list (it comes first, cosine 1).
    let id = &expected[0].1;
    assert_eq!(expected[0].0, s(&photo));
    let by_id = get(served.addr, &format!("/api/images/{id}/neighbours?k=7"));
    assert_eq!(by_id.status, 200);
    assert_eq!(results(&by_id.json()), expected);

    // min_score drops what is below it.
    let scores: Vec<f64> = by_id.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    let cut = (scores[2] + scores[3]) / 2.0;
    let fewer = get(
        served.addr,
        &format!("/api/images/{id}/neighbours?k=7&min_score={cut}"),
    );
    assert_eq!(results(&fewer.json()), expected[..3].to_vec());

    // The image record, the original's bytes, a thumbnail with caching headers.
    let info = get(served.addr, &format!("/api/images/{id}")).json();
    assert_eq!(info["path"], s(&photo));
    let original = get(served.addr, &format!("/api/images/{id}/original"));
    assert_eq!(original.status, 200);
    assert_eq!(original.header("content-type"), Some("image/jpeg"));
    assert_eq!(original.body, std::fs::read(&photo).unwrap());
    let thumb = get(served.addr, &format!("/api/images/{id}/thumbnail"));
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
    let decoded = image::load_from_memory(&thumb.body).unwrap();
    let full = image::open(&photo).unwrap();
    let longest = full.width().max(full.height());
    assert_eq!(decoded.width().max(decoded.height()), longest.min(256));
    let small = get(served.addr, &format!("/api/images/{id}/thumbnail?side=128"));
    let small = image::load_from_memory(&small.body).unwrap();
    assert_eq!(small.width().max(small.height()), longest.min(128));
    assert!(thumb.header("cache-control").unwrap().contains("max-age"));
    let etag = thumb.header("etag").unwrap().to_string();
    let again = raw(
        served.addr,
        &format!("GET /api/images/{id}/thumbnail HTTP/1.1\r\nIf-None-Match: {etag}"),
        b"",
    );
    assert_eq!(again.status, 304);
    assert!(served.index.join("thumbs").read_dir().unwrap().count() >= 1);

    // Stats, random rows, duplicate groups, the OpenAPI document, the page.
    let stats = get(served.addr, "/api/stats").json();
    assert_eq!(
        stats["images"].as_u64().unwrap() as usize,
        count_files(&served)
    );
    assert_eq!(stats["model"]["name"], "default");
    let rows = get(served.addr, "/api/random?rows=3&k=4&seed=5").json();
    assert_eq!(rows["rows"].as_array().unwrap().len(), 3);
    for row in rows["rows"].as_array().unwrap() {
        assert_eq!(row["results"].as_array().unwrap().len(), 4);
    }
    let dups = get(served.addr, "/api/dups?threshold=0.999").json();
    assert_eq!(dups["type"], "dups");

    // A decision recorded through the API is the one `imgsearch dups --ignore` records.
    let (a, b) = (&expected[1], &expected[2]);
    let body = format!("{{\"ids\": [\"{}\", \"{}\"]}}", a.1, b.1);
    let head = "POST /api/dups/ignore HTTP/1.1\r\nContent-Type: application/json";
    let said = raw(served.addr, head, body.as_bytes());
    assert_eq!(said.status, 200, "{}", String::from_utf8_lossy(&said.body));
    let said = said.json();
    assert_eq!(
        (said["command"].as_str(), said["ignored_new"].as_u64()),
        (Some("ignore"), Some(1))
    );
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(served.index.join("dups-ignored.json")).unwrap())
            .unwrap();
    let mut pair = vec![a.0.clone(), b.0.clone()];
    pair.sort();
    assert_eq!(recorded["pairs"], serde_json::json!([pair]));
    let openapi = get(served.addr, "/api/openapi.json").json();
    assert_eq!(openapi["openapi"], "3.0.3");
    let page = get(served.addr, "/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("/app.js"));
    assert!(page.header("content-security-policy").is_some());
}

fn count_files(served: &Served) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|f| {
                if f.file_type().unwrap().is_dir() {
                    walk(&f.path())
                } else {
                    1
                }
            })
            .sum()
    }
    walk(&served.tmp.path().join("photos"))
}

#[test]
fn hostile_and_bad_requests_get_clear_4xx_and_the_server_keeps_serving() {
    let served = serve(&["photos/signdigits-2"], &["--max-upload", "64KB"]);
    let photo = first_photo(&served, "photos/signdigits-2");
    let id = cli_query(&served.index, &photo, 1)[0].1.clone();

    // No request names a file: traversal, encoded or not, and unknown ids are 404.
    for target in [
        "/../../../../etc/passwd",
        "/api/images/../../../../etc/passwd",
        "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/original",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail",
        "/api/images/0000000000000000/original",
        "/api/images/zzzzzzzzzzzzzzzz/neighbours",
        "/api/images//original",
        "/etc/passwd",
        "/api/nothing",
    ] {
        let r = get(served.addr, target);
        assert_eq!(
            r.status,
            404,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{target}"
        );
    }
    // Parameters out of range are 400 with a message.
    for target in [
        format!("/api/images/{id}/neighbours?k=0"),
        format!("/api/images/{id}/neighbours?k=100000"),
        format!("/api/images/{id}/neighbours?k=abc"),
        format!("/api/images/{id}/neighbours?min_score=5"),
        format!("/api/images/{id}/thumbnail?side=99999"),
        "/api/random?rows=0".to_string(),
        "/api/dups?threshold=0".to_string(),
        "/api/dups?threshold=NaN".to_string(),
    ] {
        let r = get(served.addr, &target);
        assert_eq!(
            r.status,
            400,
            "{target}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    // Decisions that name too few or too many images, unknown ids, or no JSON at all.
    let many: Vec<String> = (0..65).map(|_| format!("\"{id}\"")).collect();
    for (body, status) in [
        (format!("{{\"ids\": [\"{id}\"]}}"), 400),
        (format!("{{\"ids\": [{}]}}", many.join(",")), 400),
        (format!("{{\"ids\": [\"{id}\", 7]}}"), 422),
        ("not json".to_string(), 400),
        (
            format!("{{\"ids\": [\"{id}\", \"0000000000000000\"]}}"),
            404,
        ),
    ] {
        let head = "POST /api/dups/ignore HTTP/1.1\r\nContent-Type: application/json";
        let r = common::serve::raw(served.addr, head, body.as_bytes());
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, status, "{body}: {text}");
        assert!(text.contains("\"type\":\"error\""), "{body}: {text}");
    }
    assert!(!served.index.join("dups-ignored.json").exists());

    // Uploads that are not images, truncated, missing or too large: 400/413 naming the problem.
    bad_uploads_are_named(&served, &photo);

    // Still serving.
    assert_eq!(get(served.addr, "/api/stats").status, 200);

    // A client that connects and sends nothing is dropped after the header timeout.
    let mut idle = TcpStream::connect(served.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "an idle connection was held {waited:?}"
    );
}

/// Uploads that are not images, truncated, missing or too large, and bodies that are not
/// multipart: 400/413 naming the problem.
fn bad_uploads_are_named(served: &Served, photo: &Path) {
    let jpeg = std::fs::read(photo).unwrap();
    let text = upload(served.addr, "", "image", "notes.txt", b"just some text");
    assert_eq!(text.status, 400);
    let message = text.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("notes.txt") && message.contains("cannot read image"),
        "{message}"
    );
    let truncated = upload(
        served.addr,
        "",
        "image",
        "cut.jpg",
        &jpeg[..jpeg.len().min(60 << 10) / 3],
    );
    assert_eq!(
        truncated.status,
        400,
        "{}",
        String::from_utf8_lossy(&truncated.body)
    );
    assert!(truncated.json()["message"]
        .as_str()
        .unwrap()
        .contains("cut.jpg"));
    let wrong_field = upload(served.addr, "", "file", "a.jpg", &jpeg);
    assert_eq!(wrong_field.status, 400);
    let big = vec![0xFFu8; 200 << 10];
    let too_big = upload(served.addr, "", "image", "big.jpg", &big);
    assert!(matches!(too_big.status, 400 | 413), "{}", too_big.status);
    let broken = raw(
        served.addr,
        "POST /api/search HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x",
        b"--x\r\nnonsense",
    );
    assert_eq!(
        broken.status,
        400,
        "{}",
        String::from_utf8_lossy(&broken.body)
    );
    let not_multipart = raw(served.addr, "POST /api/search HTTP/1.1", b"{}");
    assert!(not_multipart.status >= 400 && not_multipart.status < 500);
}

/// A port another server holds is a runtime failure (exit 1, as any runtime error; 2 is for
/// usage errors), said in one line that names the address.
#[test]
fn a_port_already_in_use_exits_1_naming_the_address() {
    let served = serve(&["photos/signdigits-3"], &[]);
    let addr = served.addr.to_string();
    let stderr = common::cli::fails(&["serve", "--index", s(&served.index), "--bind", &addr]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: cannot listen on "), "{stderr}");
    assert!(lines[0].contains(&addr), "{stderr}");
}

#[test]
fn a_new_generation_is_served_without_a_restart() {
    let served = serve(&["photos/signdigits-3"], &[]);
    let before = get(served.addr, "/api/stats").json();
    let extra = served.tmp.path().join("photos/photos/signdigits-4");
    copy_dir(&fixtures().join("photos/signdigits-4"), &extra);
    common::cli::ok(&["index", "--index", s(&served.index), "--quiet"]);
    wait_for_new_generation(&served, &before);
    // The new images are searchable, and answers name the new generation.
    let photo = first_photo(&served, "photos/signdigits-4");
    let answer = upload(
        served.addr,
        "?k=3",
        "image",
        "p.jpg",
        &std::fs::read(&photo).unwrap(),
    );
    let record = answer.json();
    assert_eq!(results(&record)[0].0, s(&photo));
    assert_eq!(
        record["generation"],
        get(served.addr, "/api/stats").json()["generation"]
    );
}

/// Waits until the server answers from a generation other than `before`'s stats name, holding
/// every file under the served folder.
fn wait_for_new_generation(served: &Served, before: &Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = get(served.addr, "/api/stats").json();
        if now["generation"] != before["generation"] {
            assert_eq!(
                now["images"].as_u64().unwrap() as usize,
                count_files(served)
            );
            return;
        }
        assert!(Instant::now() < deadline, "still serving {before}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The paths of each group of a `dups` record list (the API's `groups` or the command's lines),
/// kept image first.
fn group_paths<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<Vec<String>> {
    records
        .into_iter()
        .filter(|r| r["keep"].is_string())
        .map(|r| {
            let mut paths = vec![r["keep"].as_str().unwrap().to_string()];
            for d in r["duplicates"].as_array().unwrap() {
                paths.push(d["path"].as_str().unwrap().to_string());
            }
            paths
        })
        .collect()
}

#[test]
fn the_duplicates_view_groups_as_dups_does() {
    // A copy turned a quarter is found only through the turned views of `imgsearch dups`;
    // the page's groups are the command's, that copy's included.
    let served = serve(&["photos/signdigits-3"], &[]);
    let before = get(served.addr, "/api/stats").json();
    let original = first_photo(&served, "photos/signdigits-3");
    let turned = served.tmp.path().join("photos/turned.png");
    image::open(&original)
        .unwrap()
        .rotate90()
        .save(&turned)
        .unwrap();
    common::cli::ok(&["index", "--index", s(&served.index), "--quiet"]);
    wait_for_new_generation(&served, &before);
    let command = common::cli::lines(&common::cli::ok(&[
        "dups",
        "--index",
        s(&served.index),
        "--json",
    ]));
    let command = group_paths(&command);
    let page = get(served.addr, "/api/dups").json();
    let page = group_paths(page["groups"].as_array().unwrap());
    assert_eq!(page, command);
    assert!(
        command
            .iter()
            .any(|g| g.contains(&s(&original).to_string()) && g.contains(&s(&turned).to_string())),
        "{command:?}"
    );
    // A decision the command records while the server runs (the page's groups are cached)
    // shows on the page's next answer: the pair is left apart, as the command now leaves it.
    common::cli::ok(&[
        "dups",
        "--index",
        s(&served.index),
        "--ignore",
        s(&original),
        s(&turned),
    ]);
    let page = get(served.addr, "/api/dups").json();
    let page = group_paths(page["groups"].as_array().unwrap());
    assert!(
        !page
            .iter()
            .any(|g| g.contains(&s(&original).to_string()) && g.contains(&s(&turned).to_string())),
        "{page:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The page in a real browser.

/// Chromium and its WebDriver, as Debian's `chromium` and `chromium-driver` install them.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.exists());
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?;
    let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])?;
    Some((driver, chromium))
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_page_in_chromium_uploads_clicks_and_goes_back() {
    let Some((driver, chromium)) = browser() else {
        // CI installs both (.ci/run); there a missing browser is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: the browser test needs chromium and chromium-driver (see .ci/run)");
        return;
    };
    let served = serve(&["photos", "test/cat", "test/ship"], &[]);
    let port = free_port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,1000"],
            }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");
        let outcome = page_session(&client, &served).await;
        if let Err(e) = &outcome {
            let shot =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serve-browser-failure.png");
            if let Ok(png) = client.screenshot().await {
                let _ = std::fs::write(&shot, png);
            }
            eprintln!("browser test failed: {e}; screenshot: {}", shot.display());
        }
        let _ = client.close().await;
        outcome.unwrap();
    });
}

type Step<T> = Result<T, String>;

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> Step<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `data-path` of every result card on the page.
async fn grid_paths(client: &fantoccini::Client) -> Vec<String> {
    let Ok(cards) = client
        .find_all(fantoccini::Locator::Css("#grid .result"))
        .await
    else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for card in cards {
        if let Ok(Some(p)) = card.attr("data-path").await {
            paths.push(p);
        }
    }
    paths
}

async fn page_session(client: &fantoccini::Client, served: &Served) -> Step<()> {
    let base = format!("http://{}/", served.addr);
    client.goto(&base).await.map_err(failed("open the page"))?;
    let (expected, second, expected_clicked) = upload_then_click(client, served).await?;
    back_forward_and_reload(client, &expected, &expected_clicked).await?;
    a_bad_file_is_named(client, served).await?;
    the_other_views_draw(client, served, &base).await?;
    an_out_of_range_min_is_no_bound(client, &base, &second, &expected_clicked).await?;
    duplicates_fit_a_phone(client, served, &base, Path::new(&expected[0])).await?;
    a_group_judged_wrong_stays_apart(client, served, &base).await
}

/// Turns a WebDriver error into the step's message, saying what was being done.
fn failed(what: &str) -> impl FnOnce(fantoccini::error::CmdError) -> String {
    let what = what.to_string();
    move |err| format!("{what}: {err}")
}

/// Uploads a photo and clicks its second result, checking both grids against `imgsearch query`;
/// returns the upload's neighbours, the clicked id and the clicked image's neighbours.
async fn upload_then_click(
    client: &fantoccini::Client,
    served: &Served,
) -> Step<(Vec<String>, String, Vec<String>)> {
    use fantoccini::Locator::{Css, Id};
    // Upload a photo through the file picker: the page shows the neighbours that
    // `imgsearch query --json -k 12` prints.
    let photo = first_photo(served, "photos/signdigits-6");
    let expected: Vec<String> = cli_query(&served.index, &photo, 12)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let input = client
        .find(Id("file"))
        .await
        .map_err(failed("the file input"))?;
    input
        .send_keys(s(&photo))
        .await
        .map_err(failed("pick the photo"))?;
    let shown = wait_for("12 results", || async {
        let paths = grid_paths(client).await;
        (paths.len() == 12).then_some(paths)
    })
    .await?;
    if shown != expected {
        return Err(format!("page shows {shown:?}, query printed {expected:?}"));
    }
    let upload_url = client.current_url().await.map_err(failed("url"))?;
    if !upload_url.as_str().contains("view=upload") {
        return Err(format!("after an upload the URL is {upload_url}"));
    }

    // Click the second result: the URL names its id and the grid shows its neighbours.
    let cards = client
        .find_all(Css("#grid .result img"))
        .await
        .map_err(failed("cards"))?;
    let second = client
        .find_all(Css("#grid .result"))
        .await
        .map_err(failed("cards"))?[1]
        .attr("data-id")
        .await
        .map_err(failed("data-id"))?
        .ok_or("no data-id")?;
    cards[1].click().await.map_err(failed("click a result"))?;
    let clicked = wait_for("the clicked image's neighbours", || async {
        let url = client.current_url().await.ok()?;
        let paths = grid_paths(client).await;
        (url.as_str().contains(&format!("id={second}")) && paths.first() == Some(&expected[1]))
            .then_some(paths)
    })
    .await?;
    let expected_clicked: Vec<String> = cli_query(&served.index, Path::new(&expected[1]), 12)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if clicked != expected_clicked {
        return Err(format!(
            "after the click the page shows {clicked:?}, query printed {expected_clicked:?}"
        ));
    }
    Ok((expected, second, expected_clicked))
}

/// Back shows the upload's results and URL again; forward and a reload of the id URL show the
/// clicked image's neighbours.
async fn back_forward_and_reload(
    client: &fantoccini::Client,
    expected: &[String],
    expected_clicked: &[String],
) -> Step<()> {
    // Back: the upload's results again, and its URL.
    client.back().await.map_err(failed("back"))?;
    wait_for("the upload's results after back", || async {
        let url = client.current_url().await.ok()?;
        (url.as_str().contains("view=upload") && grid_paths(client).await == expected).then_some(())
    })
    .await?;
    // Forward and reload of an id URL: the same neighbours.
    client.forward().await.map_err(failed("forward"))?;
    client.refresh().await.map_err(failed("reload"))?;
    wait_for("the clicked image's neighbours after reload", || async {
        (grid_paths(client).await == expected_clicked).then_some(())
    })
    .await?;
    Ok(())
}

/// A file that is not an image: the page says so, naming it.
async fn a_bad_file_is_named(client: &fantoccini::Client, served: &Served) -> Step<()> {
    use fantoccini::Locator::Id;
    // A file that is not an image: the page says so.
    let bad = served.tmp.path().join("not-a-photo.jpg");
    std::fs::write(&bad, "this is text, not a JPEG").unwrap();
    let input = client
        .find(Id("file"))
        .await
        .map_err(failed("the file input"))?;
    input
        .send_keys(s(&bad))
        .await
        .map_err(failed("pick the bad file"))?;
    let message = wait_for("the error message", || async {
        let error = client.find(Id("error")).await.ok()?;
        let text = error.text().await.ok()?;
        (error.is_displayed().await.ok()? && !text.is_empty()).then_some(text)
    })
    .await?;
    if !(message.contains("not-a-photo.jpg") && message.contains("cannot read image")) {
        return Err(format!("the error shown is {message:?}"));
    }
    Ok(())
}

/// The random and index views draw from the API (and the random view is the screenshot).
async fn the_other_views_draw(
    client: &fantoccini::Client,
    served: &Served,
    base: &str,
) -> Step<()> {
    use fantoccini::Locator::Css;
    // The other views draw from the API.
    client
        .goto(&format!("{base}?view=random&seed=3"))
        .await
        .map_err(failed("random"))?;
    wait_for("random rows", || async {
        let rows = client.find_all(Css("#grid .row")).await.ok()?;
        (rows.len() == 8).then_some(())
    })
    .await?;
    if let Some(out) = std::env::var_os("IMGSEARCH_SCREENSHOT") {
        let png = client.screenshot().await.map_err(failed("screenshot"))?;
        std::fs::write(out, png).map_err(|err| err.to_string())?;
    }
    client
        .goto(&format!("{base}?view=index"))
        .await
        .map_err(failed("index view"))?;
    wait_for("the index view", || async {
        let text = client.find(Css(".stats")).await.ok()?.text().await.ok()?;
        text.contains(&count_files(served).to_string())
            .then_some(())
    })
    .await?;
    Ok(())
}

/// A min score from the URL outside [-1, 1] is no bound.
async fn an_out_of_range_min_is_no_bound(
    client: &fantoccini::Client,
    base: &str,
    second: &str,
    expected_clicked: &[String],
) -> Step<()> {
    use fantoccini::Locator::Id;
    // A min score from the URL outside [-1, 1] is no bound: the slider says "off" and the
    // neighbours are all there.
    client
        .goto(&format!("{base}?id={second}&min=7"))
        .await
        .map_err(failed("a URL with min=7"))?;
    wait_for("the neighbours without a bound", || async {
        let off = client.find(Id("min-value")).await.ok()?.text().await.ok()? == "off";
        (off && grid_paths(client).await == expected_clicked).then_some(())
    })
    .await?;
    Ok(())
}

/// A copy of `original` in a folder of a long name: the Duplicates view on a phone-sized window
/// tells the two apart and is no wider than the window.
async fn duplicates_fit_a_phone(
    client: &fantoccini::Client,
    served: &Served,
    base: &str,
    original: &Path,
) -> Step<()> {
    use fantoccini::Locator::{Css, Id};
    // A copy of a photo under the same name in a folder of a long name: the Duplicates view on
    // a phone-sized window shows the two apart (their folders) and nothing wider than it.
    let folder = served
        .tmp
        .path()
        .join("photos/a-folder-with-a-rather-long-name-that-does-not-wrap-on-its-own-anywhere");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(original, folder.join(original.file_name().unwrap())).unwrap();
    common::cli::ok(&["index", "--index", s(&served.index), "--quiet"]);
    client
        .set_window_size(390, 844)
        .await
        .map_err(failed("a 390 px window"))?;
    let names = wait_for("the copy's group", || async {
        client.goto(&format!("{base}?view=dups")).await.ok()?;
        for group in client.find_all(Css(".group")).await.ok()? {
            let mut names = Vec::new();
            let mut ours = false;
            for card in group.find_all(Css(".result")).await.ok()? {
                let path = card.attr("data-path").await.ok()??;
                ours |= path.contains("a-folder-with-a-rather-long-name");
                names.push(card.find(Css(".name")).await.ok()?.text().await.ok()?);
            }
            if ours && names.len() >= 2 {
                return Some(names);
            }
        }
        None
    })
    .await?;
    if names[0] == names[1] {
        return Err(format!("the copies' cards read alike: {names:?}"));
    }
    let status = client.find(Id("status")).await.map_err(failed("status"))?;
    let said = status.text().await.map_err(failed("status text"))?;
    if !said.contains("copy score ≥ 0.93 ") {
        return Err(format!("the Duplicates view says {said:?}"));
    }
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await
        .map_err(failed("the page's width"))?;
    let (scroll, width) = (widths[0].as_u64(), widths[1].as_u64());
    if scroll > width {
        return Err(format!(
            "the Duplicates view is {scroll:?} px wide in a {width:?} px window"
        ));
    }
    Ok(())
}

/// The paths of the Duplicates view's groups, one list per group.
async fn dups_groups(client: &fantoccini::Client) -> Option<Vec<Vec<String>>> {
    use fantoccini::Locator::Css;
    let mut groups = Vec::new();
    for group in client.find_all(Css(".group")).await.ok()? {
        let mut paths = Vec::new();
        for card in group.find_all(Css(".result")).await.ok()? {
            paths.push(card.attr("data-path").await.ok()??);
        }
        groups.push(paths);
    }
    Some(groups)
}

/// "not duplicates" on the group of the long-named folder's copy: the group leaves the page,
/// the decision is in the index folder's file, and neither a reload nor `imgsearch dups` shows
/// the group again.
async fn a_group_judged_wrong_stays_apart(
    client: &fantoccini::Client,
    served: &Served,
    base: &str,
) -> Step<()> {
    use fantoccini::Locator::{Css, Id};
    let ours = |paths: &Vec<String>| paths.iter().any(|p| p.contains("a-folder-with-a-rather"));
    client
        .goto(&format!("{base}?view=dups"))
        .await
        .map_err(failed("the Duplicates view"))?;
    let button = wait_for("the copy's group and its button", || async {
        for group in client.find_all(Css(".group")).await.ok()? {
            let text = group.html(false).await.ok()?;
            if text.contains("a-folder-with-a-rather-long-name") {
                return group.find(Css("button.apart")).await.ok();
            }
        }
        None
    })
    .await?;
    let before = dups_groups(client).await.ok_or("the groups before")?;
    button
        .click()
        .await
        .map_err(failed("click not duplicates"))?;
    wait_for("the decision recorded", || async {
        let said = client.find(Id("status")).await.ok()?.text().await.ok()?;
        let groups = dups_groups(client).await?;
        (said.contains("recorded as not duplicates") && !groups.iter().any(ours)).then_some(())
    })
    .await?;
    let recorded = std::fs::read_to_string(served.index.join("dups-ignored.json"))
        .map_err(|e| format!("the ignore file: {e}"))?;
    if !recorded.contains("a-folder-with-a-rather-long-name") {
        return Err(format!("the ignore file holds {recorded}"));
    }
    client.refresh().await.map_err(failed("reload"))?;
    let after = wait_for("the groups after a reload", || async {
        let said = client.find(Id("status")).await.ok()?.text().await.ok()?;
        if !said.contains("groups at cosine") {
            return None;
        }
        dups_groups(client).await
    })
    .await?;
    let expected: Vec<Vec<String>> = before.into_iter().filter(|g| !ours(g)).collect();
    if after != expected || after.iter().any(ours) {
        return Err(format!(
            "after a reload the groups are {after:?}, not {expected:?}"
        ));
    }
    let cli = common::cli::ok(&["dups", "--index", s(&served.index), "--json"]);
    if cli.contains("a-folder-with-a-rather-long-name") {
        return Err(format!("imgsearch dups still groups the copy: {cli}"));
    }
    Ok(())
}
