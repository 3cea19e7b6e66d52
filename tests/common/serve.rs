//! `imgsearch serve` started on a loopback port over an index of real photos, and requests
//! written by hand on a TCP socket, so that what a hostile client sends (`..`, encoded or not,
//! broken multipart) reaches the server unchanged by a client library.

#![allow(dead_code)] // each test crate uses part of it

use super::cli::{copy_dir, fixtures, ok, s};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A served index of some fixture photo folders, in its own temporary folder.
pub struct Served {
    pub tmp: tempfile::TempDir,
    pub index: PathBuf,
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Indexes the given fixture folders (copied) and starts `imgsearch serve` on a free port.
pub fn serve(folders: &[&str], extra: &[&str]) -> Served {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    for folder in folders {
        copy_dir(&fixtures().join(folder), &photos.join(folder));
    }
    let index = tmp.path().join("index");
    ok(&["index", s(&photos), "--index", s(&index), "--quiet"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args([
            "serve",
            "--index",
            s(&index),
            "--bind",
            "127.0.0.1:0",
            "--json",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start imgsearch serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let summary: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(summary["command"], "serve", "{first}");
    let url = summary["url"].as_str().unwrap();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    Served {
        tmp,
        index,
        child,
        addr,
    }
}

/// One HTTP/1.1 response: status, headers (lower-case names), body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` exactly as given.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

pub fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&bytes[line_end + 2..line_end + 2 + size]);
        bytes = &bytes[line_end + 2 + size + 2..];
    }
}

pub fn get(addr: SocketAddr, target: &str) -> Response {
    raw(addr, &format!("GET {target} HTTP/1.1"), b"")
}

/// A multipart upload of `bytes` as field `field`, file name `name`.
pub fn upload(addr: SocketAddr, query: &str, field: &str, name: &str, bytes: &[u8]) -> Response {
    let boundary = "imgsearch-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    raw(
        addr,
        &format!(
            "POST /api/search{query} HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
        ),
        &body,
    )
}
