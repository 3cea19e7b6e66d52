//! Every command's `--json` output, run through the real binary on real images, checked line by
//! line against the schemas in docs/JSON.md: every line has a documented `"type"`, every field
//! is documented with its JSON type, none is missing, and every documented record type is seen.

mod common;

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

type Fields = Vec<(String, String)>;

/// The schemas of docs/JSON.md: line types, summaries by command, and named records.
#[derive(Default)]
struct Schema {
    lines: HashMap<String, Fields>,
    summaries: HashMap<String, Fields>,
    common: Fields,
    records: HashMap<String, Fields>,
}

fn fields(value: &Value) -> Fields {
    value
        .as_object()
        .expect("fields object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("type name").to_string()))
        .collect()
}

fn schema() -> Schema {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md"))
        .expect("docs/JSON.md");
    let mut schema = Schema::default();
    for block in doc.split("```schema\n").skip(1) {
        let body = block.split("```").next().expect("block");
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            if let Some(common) = v.get("common") {
                schema.common = fields(common);
            } else {
                schema.lines.insert(t.into(), fields(&v["fields"]));
            }
        } else if let Some(name) = v.get("summary").and_then(Value::as_str) {
            schema.summaries.insert(name.into(), fields(&v["fields"]));
        } else if let Some(name) = v.get("record").and_then(Value::as_str) {
            schema.records.insert(name.into(), fields(&v["fields"]));
        } else {
            panic!("unknown schema block {body}");
        }
    }
    schema
}

impl Schema {
    fn check_value(&self, value: &Value, spec: &str, at: &str) -> Result<(), String> {
        let mut why = Vec::new();
        for alt in spec.split('|') {
            match self.check_one(value, alt, at) {
                Ok(()) => return Ok(()),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    fn check_one(&self, value: &Value, spec: &str, at: &str) -> Result<(), String> {
        let ok = match spec {
            "string" | "path" => value.is_string(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => {
                if let Some(inner) = spec
                    .strip_prefix("array<")
                    .and_then(|s| s.strip_suffix('>'))
                {
                    let items = value.as_array().ok_or(format!("{at}: not an array"))?;
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(item, inner, &format!("{at}[{i}]"))?;
                    }
                    return Ok(());
                }
                let record = self
                    .records
                    .get(spec)
                    .ok_or(format!("{at}: undocumented type {spec}"))?;
                return self.check_object(value, record, &[], at);
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{at}: {value} is not {spec}"))
        }
    }

    /// Every field of `fields` (and `extra`) present with its type, and nothing else but the
    /// `_bytes` twins of path fields.
    fn check_object(
        &self,
        value: &Value,
        fields: &Fields,
        extra: &[&str],
        at: &str,
    ) -> Result<(), String> {
        let object = value.as_object().ok_or(format!("{at}: not an object"))?;
        let mut allowed: BTreeSet<String> = extra.iter().map(|s| s.to_string()).collect();
        for (name, spec) in fields {
            allowed.insert(name.clone());
            let optional = spec.ends_with('?');
            let spec = spec.trim_end_matches('?');
            if spec.split('|').any(|s| s == "path") {
                allowed.insert(format!("{name}_bytes"));
            }
            match object.get(name) {
                Some(v) => self.check_value(v, spec, &format!("{at}.{name}"))?,
                None if optional => {}
                None => return Err(format!("{at}: missing field {name} in {value}")),
            }
        }
        for key in object.keys() {
            if !allowed.contains(key) {
                return Err(format!("{at}: undocumented field {key} in {value}"));
            }
        }
        Ok(())
    }

    /// Checks one output line; returns its kind (`query`, `summary:index`, ...).
    fn check_line(&self, line: &str) -> String {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let kind = value["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {line}"))
            .to_string();
        let result = if kind == "summary" {
            let command = value["command"].as_str().unwrap_or_default();
            let mut all = self.common.clone();
            all.extend(
                self.summaries
                    .get(command)
                    .unwrap_or_else(|| panic!("undocumented summary {command}"))
                    .clone(),
            );
            assert_eq!(value["schema"], 1, "{line}");
            self.check_object(&value, &all, &["type"], "summary")
                .map(|()| format!("summary:{command}"))
        } else {
            let fields = self
                .lines
                .get(&kind)
                .unwrap_or_else(|| panic!("undocumented line type {kind}: {line}"));
            self.check_object(&value, fields, &["type"], &kind)
                .map(|()| kind.clone())
        };
        result.unwrap_or_else(|e| panic!("{e}\nline: {line}"))
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run imgsearch");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    (out.status.code().unwrap_or(-1), stdout)
}

/// The query image, under wherever the photos folder now is.
fn query_in(photos: &Path) -> PathBuf {
    photos.join("cifar/cat/0003.jpg")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn every_command_speaks_the_documented_schema() {
    let schema = schema();
    assert!(schema.lines.len() >= 5 && schema.summaries.len() >= 7);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut seen = BTreeSet::new();
    let dest = run_local_commands(&schema, tmp.path(), &mut seen);
    undo_the_move(&schema, &dest, &mut seen);
    index_with_a_missing_folder(&schema, tmp.path(), &mut seen);
    serve_summary(&schema, tmp.path(), &mut seen);
    // Every documented record was produced at least once.
    let mut documented: BTreeSet<String> = schema.lines.keys().cloned().collect();
    documented.remove("summary");
    documented.extend(schema.summaries.keys().map(|c| format!("summary:{c}")));
    let _cluster = postgres_commands(&schema, tmp.path(), &mut documented, &mut seen);
    let missing: Vec<_> = documented.difference(&seen).collect();
    assert!(missing.is_empty(), "never produced: {missing:?}");
}

/// Every local command on a folder of real photos (with an unreadable file, a byte-identical
/// copy for `dups`, and a second folder to forget), each line checked against the schema;
/// returns the folder `dups --move` moved the copy into.
fn run_local_commands(schema: &Schema, tmp: &Path, seen: &mut BTreeSet<String>) -> PathBuf {
    let photos = tmp.join("photos");
    copy_dir(&fixtures().join("test"), &photos.join("cifar"));
    let extra = tmp.join("extra");
    copy_dir(&fixtures().join("photos/attfaces-s1"), &extra);
    std::fs::write(photos.join("notes.jpg"), b"not an image").expect("write");
    // A byte-identical copy: a group for `dups`.
    std::fs::copy(photos.join("cifar/cat/0003.jpg"), photos.join("copy.jpg")).expect("copy");
    let index = tmp.join("index");
    let (i, m, out) = (s(&index), s(&photos), tmp.join("sheet.png"));
    let query = photos.join("cifar/cat/0003.jpg");
    let model = tmp.join("model");
    let (notes, nowhere) = (photos.join("notes.jpg"), tmp.join("nowhere"));
    let dest = tmp.join("dups");
    let (dog0, dog1) = (
        photos.join("cifar/dog/0000.jpg"),
        photos.join("cifar/dog/0001.jpg"),
    );
    let (test_set, train_set) = (fixtures().join("test"), fixtures().join("train"));

    let runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["index", m, "--index", i], 0),
        (vec!["index", s(&extra), "--index", i], 0),
        (vec!["query", s(&query), s(&notes), "--index", i], 1),
        (
            vec![
                "grid",
                "--index",
                i,
                "--rows",
                "2",
                "-k",
                "3",
                "--out",
                s(&out),
            ],
            0,
        ),
        (vec!["verify", "--index", i], 0),
        (vec!["dups", "--index", i, "--threshold", "0.9"], 0),
        // The two faces of one person: similar shots, not copies.
        (vec!["dups", "--index", i, "--similar", "0.8"], 0),
        (
            vec![
                "dups",
                "--index",
                i,
                "--threshold",
                "0.9",
                "--move",
                s(&dest),
            ],
            0,
        ),
        (
            vec!["dups", "--index", i, "--ignore", s(&dog0), s(&dog1)],
            0,
        ),
        (vec!["forget", s(&extra), "--index", i], 0),
        (vec!["eval", s(&test_set), "--queries", "20"], 0),
        (vec!["query", s(&query), "--index", s(&nowhere)], 1),
        (
            vec![
                "train",
                s(&train_set),
                "--out",
                s(&model),
                "--epochs",
                "1",
                "--limit",
                "64",
                "--batch",
                "32",
                "--eval",
                s(&test_set),
            ],
            0,
        ),
    ];
    for (args, code) in &runs {
        let (status, stdout) = run(args);
        assert_eq!(status, *code, "imgsearch {args:?}: {stdout}");
        assert!(!stdout.is_empty(), "imgsearch {args:?} printed nothing");
        for line in stdout.lines() {
            seen.insert(schema.check_line(line));
        }
        let last = stdout.lines().last().unwrap_or_default();
        if *code == 0 {
            assert!(last.contains("\"type\":\"summary\""), "{args:?}: {last}");
        }
    }
    dest
}

/// `dups --undo` of the move, from the log it left.
fn undo_the_move(schema: &Schema, dest: &Path, seen: &mut BTreeSet<String>) {
    let log = std::fs::read_dir(dest)
        .expect("dest")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("undo log");
    let (status, stdout) = run(&["dups", "--undo", s(&log)]);
    assert_eq!(status, 0, "{stdout}");
    for line in stdout.lines() {
        seen.insert(schema.check_line(line));
    }
}

/// A recorded folder gone missing is a warning record.
fn index_with_a_missing_folder(schema: &Schema, tmp: &Path, seen: &mut BTreeSet<String>) {
    let (photos, index) = (tmp.join("photos"), tmp.join("index"));
    let i = s(&index);
    std::fs::rename(&photos, tmp.join("moved")).expect("rename");
    let (status, stdout) = run(&["index", "--index", i]);
    assert_eq!(status, 0, "{stdout}");
    for line in stdout.lines() {
        seen.insert(schema.check_line(line));
    }
}

/// `serve` writes its summary first (it then serves until stopped).
fn serve_summary(schema: &Schema, tmp: &Path, seen: &mut BTreeSet<String>) {
    let index = tmp.join("index");
    let i = s(&index);
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["serve", "--index", i, "--bind", "127.0.0.1:0", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("serve's first line");
    let _ = server.kill();
    let _ = server.wait();
    seen.insert(schema.check_line(line.trim_end()));
}

/// The PostgreSQL store's commands and fields (without PostgreSQL, said SKIPPED, and their
/// summaries are not expected); the cluster lives as long as the value returned.
fn postgres_commands(
    schema: &Schema,
    tmp: &Path,
    documented: &mut BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) -> Option<common::postgres::Cluster> {
    match common::postgres::postgres() {
        Some(bin) => {
            let pg = common::postgres::Cluster::start(&bin);
            let (one, coord) = (pg.database("one"), pg.database("coord"));
            let shards = [pg.database("shard1"), pg.database("shard2")];
            let photos = tmp.join("moved");
            let query = query_in(&photos);
            let runs: Vec<Vec<&str>> = vec![
                vec![
                    "store-init",
                    "--store",
                    &coord,
                    "--shard",
                    &shards[0],
                    "--shard",
                    &shards[1],
                ],
                vec!["index", s(&photos), "--store", &coord],
                vec!["index", s(&photos), "--store", &one, "--queue-only"],
                vec!["worker", "--store", &one],
                vec!["query", s(&query), "--store", &one],
            ];
            for args in &runs {
                let (status, stdout) = run(args);
                assert_eq!(status, 0, "imgsearch {args:?}: {stdout}");
                for line in stdout.lines() {
                    seen.insert(schema.check_line(line));
                }
            }
            Some(pg)
        }
        None => {
            documented.remove("summary:worker");
            documented.remove("summary:store-init");
            None
        }
    }
}
