//! The source tree's layering rules, checked on the files themselves: no import cycle between
//! files of `src/` or of the index engine (`crates/index/src/`); an index engine that depends on
//! no other crate of imgsearch's and on no image or model library (that its code cannot name
//! `imgsearch` the compiler guarantees once the manifest has no such dependency); CPU kernels
//! (`src/ops`) that know nothing of the model, training, index or command line; libraries free
//! of clap and of options read from the environment; a thin `main.rs`; and a doc comment at the
//! top of every module saying what it owns.
//!
//! Imports are read from `use` declarations and inline `crate::`/`super::`/`self::` paths
//! outside comments and the trailing `#[cfg(test)] mod tests`. A path resolves to the deepest
//! module file that exists along it, so `use super::{A, B}` in `src/x/y.rs` is an edge to
//! `src/x/mod.rs`: a child importing through its parent's re-exports while the parent
//! re-exports the child is a cycle, which is why children name their siblings directly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The index engine's crate (`crates/index`), a member of the workspace.
fn index_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/index")
}

/// Every crate's source folder: the main crate's, then the index engine's.
fn source_roots() -> [PathBuf; 2] {
    [src(), index_crate().join("src")]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files of a crate's source folder `root`, relative to it (`model/io.rs`), sorted.
fn files_in(root: &Path) -> Vec<String> {
    let mut all = Vec::new();
    rust_files(root, &mut all);
    let mut names: Vec<String> = all
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    names.sort();
    names
}

/// Every crate's files, each with its source folder.
fn all_files() -> Vec<(PathBuf, String)> {
    source_roots()
        .into_iter()
        .flat_map(|root| files_in(&root).into_iter().map(move |f| (root.clone(), f)))
        .collect()
}

/// The code of a file without comments and without its trailing test module.
fn code_in(root: &Path, file: &str) -> String {
    let text = std::fs::read_to_string(root.join(file)).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The binary's files (its own crate, rooted at `main.rs`).
fn in_binary(file: &str) -> bool {
    file == "main.rs" || file.starts_with("cli/")
}

/// The module path of a file: `model/io.rs` -> `[model, io]`, `model/mod.rs` -> `[model]`.
fn module_of(file: &str) -> Vec<String> {
    if file == "lib.rs" || file == "main.rs" {
        return Vec::new();
    }
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file that defines a module path, if any.
fn file_of(module: &[String], binary: bool, known: &BTreeSet<String>) -> Option<String> {
    if module.is_empty() {
        return Some(if binary { "main.rs" } else { "lib.rs" }.to_string());
    }
    let base = module.join("/");
    [format!("{base}.rs"), format!("{base}/mod.rs")]
        .into_iter()
        .find(|f| known.contains(f) && in_binary(f) == binary)
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or("").trim();
        return vec![path.trim_end_matches("::*").to_string()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.to_string()
            } else {
                format!("{prefix}::{p}")
            }
        })
        .collect()
}

/// Every `crate::`, `super::` or `self::` path the code of a file names.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` declarations (braces included), each from a line that starts one to its `;`.
    let mut rest = String::new();
    let mut statement: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim_start();
        let starts = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find(|p| trimmed.starts_with(*p));
        if let (None, Some(p)) = (&statement, starts) {
            statement = Some(trimmed[p.len()..].to_string());
        } else if let Some(s) = statement.as_mut() {
            s.push(' ');
            s.push_str(trimmed);
        } else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        }
        if let Some(s) = statement.take_if(|s| s.contains(';')) {
            let end = s.find(';').unwrap_or(s.len());
            out.extend(expand(&s[..end]));
        }
    }
    // Inline paths in the rest of the code.
    let bytes = rest.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = rest[from..].find(root) {
            let start = from + at;
            from = start + root.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let end = rest[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(rest.len(), |e| start + e);
            out.push(rest[start..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The file a path leads to from `file`: the deepest module file along it.
fn resolve(file: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let binary = in_binary(file);
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut module = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module_of(file),
        "super" => {
            let mut m = module_of(file);
            m.pop();
            m
        }
        _ => return None,
    };
    let mut target = file_of(&module, binary, known);
    for segment in segments {
        match segment {
            "super" => {
                module.pop();
                target = file_of(&module, binary, known);
            }
            "self" => {}
            name => {
                module.push(name.to_string());
                match file_of(&module, binary, known) {
                    Some(f) => target = Some(f),
                    None => break,
                }
            }
        }
    }
    target
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    import_graph_of(&src())
}

/// The import graph between the files of one crate's source folder `root`.
fn import_graph_of(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = files_in(root);
    let known: BTreeSet<String> = files.iter().cloned().collect();
    files
        .iter()
        .map(|file| {
            let targets = paths(&code_in(root, file))
                .iter()
                .filter_map(|p| resolve(file, p, &known))
                .filter(|t| t != file)
                .collect();
            (file.clone(), targets)
        })
        .collect()
}

/// One cycle of the graph, if it has any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    let known: BTreeSet<String> = ["lib.rs", "a/mod.rs", "a/b.rs", "a/c.rs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let resolved: Vec<_> = paths("use super::{b::{X, Y}, Z};\nfn f() { crate::a::c::g(); }")
        .iter()
        .filter_map(|p| resolve("a/c.rs", p, &known))
        .collect();
    assert_eq!(resolved, ["a/b.rs", "a/b.rs", "a/mod.rs", "a/c.rs"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a/mod.rs", vec!["a/b.rs"]),
        ("a/b.rs", vec!["a/c.rs"]),
        ("a/c.rs", vec!["a/mod.rs"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph).map(|c| c.len()),
        Some(4),
        "a 3-file cycle is found"
    );
}

#[test]
fn no_import_cycle_between_files_of_src() {
    let graph = import_graph();
    assert!(graph.len() > 40, "the checker read the tree");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
    let engine = import_graph_of(&index_crate().join("src"));
    assert!(engine.len() > 10, "the checker read the index engine");
    if let Some(cycle) = find_cycle(&engine) {
        panic!("import cycle in crates/index: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_index_engine_depends_on_no_crate_of_imgsearch_and_no_image_or_model_library() {
    let manifest =
        std::fs::read_to_string(index_crate().join("Cargo.toml")).expect("crates/index/Cargo.toml");
    let dependencies: Vec<&str> = manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(
        dependencies.contains(&"memmap2"),
        "the checker read {dependencies:?}"
    );
    assert!(
        !manifest.contains("path ="),
        "crates/index has a path dependency: the engine must not depend on the crates above it"
    );
    for name in dependencies {
        assert!(
            !name.starts_with("imgsearch"),
            "crates/index depends on {name}: the engine must not depend on the crates above it"
        );
        assert!(
            !["candle", "image", "jpeg", "gemm", "safetensors"]
                .iter()
                .any(|lib| name.starts_with(lib)),
            "crates/index depends on {name}: the engine knows vectors, not images or models"
        );
    }
}

#[test]
fn kernels_know_nothing_of_the_layers_above() {
    for (file, targets) in import_graph() {
        if !file.starts_with("ops/") {
            continue;
        }
        for t in targets {
            assert!(
                t.starts_with("ops/") || t == "lib.rs" || t == "error.rs" || t == "device.rs",
                "{file} imports {t}: kernels must not depend on the model, training or index"
            );
        }
    }
}

#[test]
fn the_library_is_free_of_clap_and_of_the_environment() {
    for (root, file) in all_files() {
        if in_binary(&file) {
            continue;
        }
        let code = code_in(&root, &file);
        assert!(!code.contains("clap"), "{file} uses clap");
        // The library takes every option as an argument; only the command line may read an
        // `IMGSEARCH_*` variable. (device.rs sets candle's own thread variable for `main`.)
        assert!(
            !code.contains("IMGSEARCH_"),
            "{file} reads an option from the environment: take it as an argument instead"
        );
    }
}

#[test]
fn main_is_thin_and_every_module_says_what_it_owns() {
    let main = std::fs::read_to_string(src().join("main.rs")).expect("main.rs");
    assert!(
        main.lines().count() <= 120,
        "main.rs has {} lines",
        main.lines().count()
    );
    for (root, file) in all_files() {
        let text = std::fs::read_to_string(root.join(&file)).expect("read");
        assert!(
            text.starts_with("//!"),
            "{file} does not open with a //! doc comment"
        );
    }
}
