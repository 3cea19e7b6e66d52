//! `imgsearch serve` under a hostile client and a hostile neighbour, through the real binary
//! over an index of real photos: files swapped after indexing are not served, every error
//! answer is JSON with the status the README gives, and connections that send nothing do not
//! hold other clients up.

mod common;

use common::cli::s;
use common::serve::{get, raw, serve, upload, Response};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

/// The first indexed photo of a folder of the served index: (path, id).
fn indexed_photo(served: &common::serve::Served, folder: &str) -> (PathBuf, String) {
    let dir = served.tmp.path().join("photos").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .collect();
    files.sort();
    let path = std::fs::canonicalize(&files[0]).unwrap();
    let out = common::cli::ok(&[
        "query",
        s(&path),
        "--index",
        s(&served.index),
        "-k",
        "1",
        "--json",
    ]);
    let record: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = record["results"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(record["results"][0]["path"], s(&path));
    (path, id)
}

#[test]
fn a_file_swapped_after_indexing_is_not_served() {
    let served = serve(&["photos/signdigits-3"], &[]);
    let (path, id) = indexed_photo(&served, "photos/signdigits-3");
    let size = std::fs::metadata(&path).unwrap().len();
    let original = format!("/api/images/{id}/original");
    let thumbnail = format!("/api/images/{id}/thumbnail");
    assert_eq!(get(served.addr, &original).status, 200);
    assert_eq!(get(served.addr, &thumbnail).status, 200);

    // A link to a file outside the index, in the indexed file's place.
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    for target in [&original, &thumbnail] {
        let answer = get(served.addr, target);
        assert_eq!(answer.status, 404, "{target}");
        let body = String::from_utf8_lossy(&answer.body);
        assert!(!body.contains("root:"), "{body}");
        assert!(
            body.contains("no longer the file that was indexed"),
            "{body}"
        );
    }

    // Another photo, of another size, in its place: not the indexed file either.
    std::fs::remove_file(&path).unwrap();
    let other = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .find(|p| p != &path && std::fs::metadata(p).unwrap().len() != size)
        .unwrap();
    std::fs::copy(other, &path).unwrap();
    assert_eq!(get(served.addr, &original).status, 404);
    assert_eq!(get(served.addr, &thumbnail).status, 404);
}

/// The answer is a JSON error record with this status.
fn json_error(answer: &Response, status: u16, what: &str) -> String {
    assert_eq!(
        answer.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: {:?}",
        answer.header("content-type")
    );
    let record = answer.json();
    assert_eq!(record["type"], "error", "{what}");
    record["message"].as_str().unwrap().to_string()
}

#[test]
fn every_route_answers_errors_in_json_and_an_upload_too_large_with_413() {
    let served = serve(&["photos/signdigits-1"], &["--max-upload", "4KB"]);
    let (path, id) = indexed_photo(&served, "photos/signdigits-1");
    let photo = std::fs::read(&path).unwrap();

    // Over --max-upload, by a little and by more than the multipart framing's allowance:
    // 413, as the README says.
    for size in [5 << 10, 200 << 10] {
        let big: Vec<u8> = photo.iter().copied().cycle().take(size).collect();
        let message = json_error(
            &upload(served.addr, "", "image", "big.jpg", &big),
            413,
            "an upload over --max-upload",
        );
        assert!(
            message.contains("4096") && message.contains("--max-upload"),
            "{message}"
        );
    }

    // A multipart body cut 3 bytes into its file is malformed, not "larger than" anything.
    let cut = raw(
        served.addr,
        "POST /api/search HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=xyz",
        b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n\r\nabc",
    );
    let message = json_error(&cut, 400, "a truncated multipart body");
    assert!(message.contains("malformed upload"), "{message}");
    assert!(!message.contains("larger than"), "{message}");

    // Rejections made before any handler runs, on every route.
    let bad = [
        (
            "POST /api/search HTTP/1.1\r\nContent-Type: multipart/form-data",
            400,
        ),
        ("POST /api/search HTTP/1.1\r\nContent-Type: text/plain", 400),
        (
            "POST /api/search?k=-1 HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=b",
            400,
        ),
        ("GET /api/search HTTP/1.1", 405),
        ("GET /api/stats?x=1 HTTP/1.1", 200),
        ("POST /api/stats HTTP/1.1", 405),
        ("GET /api/openapi.json HTTP/1.1", 200),
        ("DELETE /api/openapi.json HTTP/1.1", 405),
        (
            &format!("GET /api/images/{id}/neighbours?k=-1 HTTP/1.1"),
            400,
        ),
        (
            &format!("GET /api/images/{id}/neighbours?min_score=2 HTTP/1.1"),
            400,
        ),
        (
            &format!("GET /api/images/{id}/neighbours?min_score=NaN HTTP/1.1"),
            400,
        ),
        (
            &format!("GET /api/images/{id}/thumbnail?side=-1 HTTP/1.1"),
            400,
        ),
        (
            &format!("GET /api/images/{id}/thumbnail?side=100 HTTP/1.1"),
            400,
        ),
        (&format!("PUT /api/images/{id}/original HTTP/1.1"), 405),
        (&format!("POST /api/images/{id} HTTP/1.1"), 405),
        ("GET /api/images/nothing HTTP/1.1", 404),
        ("GET /api/random?rows=-1 HTTP/1.1", 400),
        ("GET /api/random?seed=x HTTP/1.1", 400),
        ("GET /api/dups?threshold=x HTTP/1.1", 400),
        ("GET /api/dups?threshold=7 HTTP/1.1", 400),
        ("GET /api/nothing HTTP/1.1", 404),
    ];
    for (head, status) in bad {
        let answer = raw(served.addr, head, b"");
        if status == 200 {
            assert_eq!(answer.status, 200, "{head}");
            continue;
        }
        json_error(&answer, status, head);
    }
    // The duplicates' settings as the user would type them.
    let dups = get(served.addr, "/api/dups");
    assert_eq!(dups.status, 200);
    let text = String::from_utf8_lossy(&dups.body);
    assert!(text.contains("\"copy_score\":0.93"), "{text}");
    assert!(!text.contains("0.9300000"), "{text}");
}

#[test]
fn connections_that_send_nothing_do_not_hold_other_clients_up() {
    let served = serve(&["photos/signdigits-2"], &[]);
    // More silent connections than the server serves at once (512).
    let silent: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(served.addr).unwrap())
        .collect();
    // Another client is answered while most of them are still open: the server made room by
    // closing the oldest silent ones, instead of waiting for their header timeout to pass.
    let answer = get(served.addr, "/api/stats");
    assert_eq!(answer.status, 200);
    // Exactly as many as were needed to make room for the 88 beyond the cap and this client,
    // the oldest first; not the whole cap when its header timeout passes.
    let open: Vec<bool> = silent
        .iter()
        .map(|c| {
            c.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            matches!((&mut &*c).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
        })
        .collect();
    let closed = open.iter().filter(|o| !**o).count();
    assert!(
        closed <= 600 + 1 - 512,
        "{closed} of 600 silent connections were closed"
    );
    assert!(
        open[closed..].iter().all(|o| *o),
        "the closed ones are not the oldest: {open:?}"
    );
    // The silent ones that were kept are served once they speak.
    let mut last = silent.into_iter().last().unwrap();
    last.set_nonblocking(false).unwrap();
    write!(
        last,
        "GET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    last.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
