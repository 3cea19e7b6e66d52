//! Shared code of imgsearch's fuzz targets: the real files each target starts from (a tiny
//! index, a tiny model, a checkpoint), the decoding of a fuzz input into mutations of them, and
//! the seed corpora (written by any target when `IMGSEARCH_FUZZ_WRITE_SEEDS` names a folder,
//! see README.md).
//!
//! Every imgsearch call the targets make is in this file or in `fuzz_targets/*.rs`, so they can
//! be re-pointed in one place when the library's API moves.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use imgsearch::data::Preprocess;
use imgsearch::index::{verify, Entry, Index, IndexMeta, IndexWriter, SearchOptions};
use imgsearch::model::{safetensors_bytes, Dim, Encoder, ModelConfig, Norm, SeededInit};

/// Environment variable: when it names a folder, a target writes its seed corpus there at start.
pub const WRITE_SEEDS_ENV: &str = "IMGSEARCH_FUZZ_WRITE_SEEDS";

/// One thread for candle's element-wise pool and for rayon (gemm): a fuzzer is one process on
/// one core, and spinning workers would only steal the other fuzzer's core. A value already set
/// is kept. Called first thing in every target, while only libFuzzer's own threads exist (they
/// do not read the environment).
pub fn init_env() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
}

/// A scratch folder for one fuzzing process (kept for the life of the process): under `TMPDIR`
/// if set, else in `/dev/shm` where there is one (every iteration rewrites files; on a disk
/// `index_open` ran 5-8× fewer executions a second), else the system's temporary folder.
pub fn scratch() -> tempfile::TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("imgsearch-fuzz-");
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        if let Ok(dir) = b.tempdir_in(shm) {
            return dir;
        }
    }
    b.tempdir().expect("temporary folder")
}

/// If [`WRITE_SEEDS_ENV`] is set, write `seeds` (name, bytes) into that folder.
pub fn maybe_write_seeds(seeds: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(out) = std::env::var_os(WRITE_SEEDS_ENV) else {
        return;
    };
    let out = PathBuf::from(out);
    fs::create_dir_all(&out).expect("seed folder");
    for (name, bytes) in seeds() {
        fs::write(out.join(&name), &bytes).expect("write seed");
        eprintln!("seed {} ({} bytes)", out.join(&name).display(), bytes.len());
    }
}

fn write_u16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(u16::try_from(v).expect("fits u16")).to_le_bytes());
}

fn read_u16(b: &[u8]) -> usize {
    u16::from_le_bytes([b[0], b[1]]) as usize
}

// ---------------------------------------------------------------------------------------------
// index_open
// ---------------------------------------------------------------------------------------------

/// Dimension of the tiny index's vectors.
pub const DIM: usize = 8;
/// Rows of the first segment (it gets an HNSW graph: the writer's threshold is set to 16).
const GRAPH_ROWS: usize = 24;
/// Rows of the second segment (scanned exactly, no graph).
const SMALL_ROWS: usize = 6;
const GRAPH_THRESHOLD: usize = 16;
/// Rows removed by the third commit (two from the graph segment, one from the small one).
const REMOVED: [usize; 3] = [3, 17, 26];

const MANIFEST: &str = "manifest.json";
const MANIFEST_PREFIX: &[u8] = b"{\"crc32\":\"";
const MANIFEST_MIDDLE: &[u8] = b"\",\"manifest\":";

/// A small deterministic pseudo-random number in [-1, 1) (SplitMix64 of `seed`).
fn unit(seed: u64) -> f32 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

fn row_vector(row: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| unit((row * DIM + j) as u64) + if j == row % DIM { 0.5 } else { 0.0 })
        .collect()
}

fn entry(row: usize) -> Entry {
    Entry {
        path: PathBuf::from(format!("/photos/album-{}/img-{row:03}.jpg", row % 3)),
        size: 1000 + row as u64,
        mtime_ns: 1_700_000_000_000_000_000 + row as i64,
    }
}

pub fn index_meta() -> IndexMeta {
    IndexMeta {
        model_id: "fuzz0000fuzz0000".into(),
        model_name: "fuzz".into(),
        dim: DIM,
        preprocess: serde_json::to_value(Preprocess::default()).expect("preprocess json"),
    }
}

/// The files of a real tiny index, in memory: what every `index_open` iteration starts from.
pub struct PristineIndex {
    /// (file name, bytes), sorted by name; `manifest.json` is among them (`writer.lock` is not).
    pub files: Vec<(String, Vec<u8>)>,
    /// Position of `manifest.json` in `files`.
    pub manifest: usize,
    /// The manifest's body (the JSON inside the checksum wrapper).
    pub manifest_body: Vec<u8>,
}

/// Build a real index in `dir` with imgsearch's writer: a 24-row segment with an HNSW graph, a
/// 6-row segment without, and tombstones in both (third commit), then read its files back.
pub fn build_pristine_index(dir: &Path) -> PristineIndex {
    let mut w = IndexWriter::open(dir, index_meta()).expect("writer");
    w.set_graph_threshold(GRAPH_THRESHOLD);
    for row in 0..GRAPH_ROWS {
        w.add(entry(row), &row_vector(row)).expect("add");
    }
    w.commit().expect("commit 1");
    for row in GRAPH_ROWS..GRAPH_ROWS + SMALL_ROWS {
        w.add(entry(row), &row_vector(row)).expect("add");
    }
    w.commit().expect("commit 2");
    for row in REMOVED {
        w.remove(&entry(row).path);
    }
    w.commit().expect("commit 3");
    let stats = w.finish().expect("finish");
    assert_eq!(
        stats.segments, 2,
        "the tiny index should keep its two segments"
    );
    assert_eq!(stats.total, GRAPH_ROWS + SMALL_ROWS - REMOVED.len());
    verify(dir).expect("the pristine index verifies");

    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("read index dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "writer.lock")
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).expect("read index file");
            (name, bytes)
        })
        .collect();
    files.sort();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for suffix in [".hnsw", ".del-000003", ".vec", ".ent"] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix)),
            "the tiny index has no {suffix} file: {names:?}"
        );
    }
    let manifest = names.iter().position(|&n| n == MANIFEST).expect("manifest");
    let manifest_body = manifest_body(&files[manifest].1)
        .expect("pristine manifest wrapper")
        .to_vec();
    PristineIndex {
        files,
        manifest,
        manifest_body,
    }
}

/// The body of a `manifest.json` (see imgsearch's `index/manifest.rs`):
/// `{"crc32":"<8 hex>","manifest":<body>}` and a newline.
fn manifest_body(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MANIFEST_PREFIX)?;
    let rest = rest.get(8..)?.strip_prefix(MANIFEST_MIDDLE)?;
    rest.trim_ascii_end().strip_suffix(b"}")
}

/// A `manifest.json` around `body`, with the correct CRC32.
pub fn wrap_manifest(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(MANIFEST_PREFIX);
    out.extend_from_slice(format!("{:08x}", crc32fast::hash(body)).as_bytes());
    out.extend_from_slice(MANIFEST_MIDDLE);
    out.extend_from_slice(body);
    out.extend_from_slice(b"}\n");
    out
}

/// Set every per-file `*_crc32` of the manifest body to the CRC32 of the file it names as the
/// mutated directory holds it, so mutated segment bytes get past `verify`'s checksums. A body
/// that is not JSON is returned unchanged.
fn fix_file_crcs(body: &[u8], files: &[(String, Option<Vec<u8>>)]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    let Some(segments) = value
        .get_mut("segments")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return body.to_vec();
    };
    for seg in segments {
        for (file_key, crc_key) in [
            ("vec_file", "vec_crc32"),
            ("entries_file", "entries_crc32"),
            ("graph_file", "graph_crc32"),
            ("del_file", "del_crc32"),
        ] {
            let Some(name) = seg.get(file_key).and_then(serde_json::Value::as_str) else {
                continue;
            };
            let crc = files
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, b)| b.as_deref())
                .map(crc32fast::hash);
            if let (Some(crc), Some(obj)) = (crc, seg.as_object_mut()) {
                obj.insert(crc_key.into(), crc.into());
            }
        }
    }
    serde_json::to_vec_pretty(&value).unwrap_or_else(|_| body.to_vec())
}

/// `index_open` input flags (first byte).
pub mod flags {
    /// Operations on `manifest.json` act on its body, and the file is re-wrapped with a correct
    /// CRC32 (without it they act on the raw file, whose checksum then usually rejects them).
    pub const REWRAP: u8 = 0x01;
    /// Also set the per-file CRC32s in the manifest to the mutated files' (needs `REWRAP`).
    pub const FIX_CRCS: u8 = 0x02;
    /// Bits 2-3: k of the searches (1, 3, 10, 100); bits 4-5: ef (1, 8, 64, 300).
    pub const K_SHIFT: u8 = 2;
    pub const EF_SHIFT: u8 = 4;
    /// Also open an `IndexWriter` on the mutated directory (full checks, reads every entry).
    pub const WRITER: u8 = 0x40;
    /// Query with a stored vector instead of a fixed one.
    pub const STORED_QUERY: u8 = 0x80;
}

/// One mutation of one file, as read from the fuzz input: `[file] [kind] [len u16 LE] [payload]`.
#[derive(Debug)]
pub enum Op {
    /// Write `bytes` at `offset` (modulo the file's length + 1), extending the file if needed.
    Patch {
        file: u8,
        offset: u16,
        bytes: Vec<u8>,
    },
    /// Replace the whole file.
    Replace { file: u8, bytes: Vec<u8> },
    /// Truncate to, or zero-extend to, `len` bytes.
    Resize { file: u8, len: u16 },
    /// Delete the file.
    Delete { file: u8 },
}

impl Op {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (file, kind, payload): (u8, u8, Vec<u8>) = match self {
            Op::Patch {
                file,
                offset,
                bytes,
            } => {
                let mut p = offset.to_le_bytes().to_vec();
                p.extend_from_slice(bytes);
                (*file, 0, p)
            }
            Op::Replace { file, bytes } => (*file, 1, bytes.clone()),
            Op::Resize { file, len } => (*file, 2, len.to_le_bytes().to_vec()),
            Op::Delete { file } => (*file, 3, Vec::new()),
        };
        out.push(file);
        out.push(kind);
        write_u16(out, payload.len());
        out.extend_from_slice(&payload);
    }
}

/// Decode `data` (after the flags byte) into operations; a short tail is ignored.
pub fn decode_ops(mut data: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    while data.len() >= 4 {
        let (file, kind) = (data[0], data[1]);
        let len = read_u16(&data[2..4]).min(data.len() - 4);
        let payload = &data[4..4 + len];
        data = &data[4 + len..];
        let op = match kind % 4 {
            0 if payload.len() >= 2 => Op::Patch {
                file,
                offset: read_u16(payload) as u16,
                bytes: payload[2..].to_vec(),
            },
            1 => Op::Replace {
                file,
                bytes: payload.to_vec(),
            },
            2 if payload.len() >= 2 => Op::Resize {
                file,
                len: read_u16(payload) as u16,
            },
            3 => Op::Delete { file },
            _ => continue,
        };
        ops.push(op);
    }
    ops
}

/// The directory contents after `ops` (and the manifest fix-ups `flags` ask for):
/// (name, Some(bytes)) or (name, None) for a deleted file.
pub fn mutate(pristine: &PristineIndex, flags: u8, ops: &[Op]) -> Vec<(String, Option<Vec<u8>>)> {
    let rewrap = flags & flags::REWRAP != 0;
    let mut files: Vec<(String, Option<Vec<u8>>)> = pristine
        .files
        .iter()
        .map(|(n, b)| (n.clone(), Some(b.clone())))
        .collect();
    if rewrap {
        files[pristine.manifest].1 = Some(pristine.manifest_body.clone());
    }
    let n = files.len();
    for op in ops {
        let (file, new) = match op {
            Op::Patch {
                file,
                offset,
                bytes,
            } => {
                let mut b = files[*file as usize % n].1.clone().unwrap_or_default();
                let at = *offset as usize % (b.len() + 1);
                if b.len() < at + bytes.len() {
                    b.resize(at + bytes.len(), 0);
                }
                b[at..at + bytes.len()].copy_from_slice(bytes);
                (file, Some(b))
            }
            Op::Replace { file, bytes } => (file, Some(bytes.clone())),
            Op::Resize { file, len } => {
                let mut b = files[*file as usize % n].1.clone().unwrap_or_default();
                b.resize(*len as usize, 0);
                (file, Some(b))
            }
            Op::Delete { file } => (file, None),
        };
        files[*file as usize % n].1 = new;
    }
    if rewrap {
        if let Some(body) = files[pristine.manifest].1.take() {
            let body = if flags & flags::FIX_CRCS != 0 {
                fix_file_crcs(&body, &files)
            } else {
                body
            };
            files[pristine.manifest].1 = Some(wrap_manifest(&body));
        }
    }
    files
}

/// Write the mutated files into `dir` (a deleted file is removed).
pub fn write_index_files(dir: &Path, files: &[(String, Option<Vec<u8>>)]) {
    for (name, bytes) in files {
        let path = dir.join(name);
        match bytes {
            Some(b) => fs::write(&path, b).expect("write index file"),
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("remove {}: {e}", path.display()),
            },
        }
    }
}

/// Everything a reader does with an index directory: open, search (exact and graph), iterate
/// entries and vectors, verify, and (with [`flags::WRITER`]) open a writer on it. Errors are
/// expected; panics, hangs and out-of-bounds reads are the bugs.
pub fn exercise_index(dir: &Path, flags: u8, unchanged: bool) {
    let k = [1, 3, 10, 100][usize::from((flags >> flags::K_SHIFT) & 3)];
    let ef = [1, 8, 64, 300][usize::from((flags >> flags::EF_SHIFT) & 3)];
    match Index::open(dir) {
        Ok(index) => {
            let _ = (index.len(), index.generation(), index.segment_count());
            let _ = format!("{index:?}");
            let dim = index.meta().dim;
            // A huge dimension cannot come with matching vector files of a fuzz input's size;
            // the bound only keeps the query allocation small.
            if dim <= 1 << 16 {
                let query: Vec<f32> = if flags & flags::STORED_QUERY != 0 {
                    (0..dim).map(|j| row_vector(5)[j % DIM]).collect()
                } else {
                    (0..dim).map(|j| 1.0 + j as f32 * 0.25).collect()
                };
                for exact in [true, false] {
                    let opts = SearchOptions {
                        k,
                        ef,
                        exact,
                        min_score: None,
                    };
                    if let Ok(hits) = index.search(&query, &opts) {
                        assert!(hits.len() <= k, "{} hits for k = {k}", hits.len());
                    }
                }
            }
            let mut entries = 0usize;
            // A damaged entry is an error the target only needs not to panic on.
            for e in index.entries().flatten() {
                entries += e.path.as_os_str().len();
            }
            let mut sum = 0.0f32;
            for v in index.vectors() {
                sum += v.iter().sum::<f32>();
            }
            std::hint::black_box((entries, sum));
        }
        Err(e) => {
            assert!(!unchanged, "the unchanged index does not open: {e}");
            let _ = e.to_string();
        }
    }
    let verified = verify(dir);
    assert!(
        !unchanged || verified.is_ok(),
        "the unchanged index does not verify: {verified:?}"
    );
    if flags & flags::WRITER != 0 {
        if let Ok(w) = IndexWriter::open(dir, index_meta()) {
            std::hint::black_box(w.existing().len());
        }
    }
}

/// Seeds of `index_open`: the unchanged index (raw and re-wrapped), every file replaced by its
/// own bytes (the fuzzer mutates from real file contents), and a few typical damages.
pub fn index_seeds(pristine: &PristineIndex) -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let with = |flags: u8, ops: &[Op]| {
        let mut out = vec![flags];
        for op in ops {
            op.encode(&mut out);
        }
        out
    };
    let k10_ef64 = (2 << flags::K_SHIFT) | (2 << flags::EF_SHIFT);
    seeds.push(("seed-unchanged".into(), with(k10_ef64, &[])));
    seeds.push((
        "seed-unchanged-rewrap-writer".into(),
        with(
            flags::REWRAP | flags::FIX_CRCS | flags::WRITER | k10_ef64,
            &[],
        ),
    ));
    for (i, (name, bytes)) in pristine.files.iter().enumerate() {
        let bytes = if i == pristine.manifest {
            pristine.manifest_body.clone()
        } else {
            bytes.clone()
        };
        let op = Op::Replace {
            file: i as u8,
            bytes,
        };
        let fl = flags::REWRAP | flags::FIX_CRCS | ((i as u8 & 3) << flags::K_SHIFT);
        seeds.push((format!("seed-file-{name}"), with(fl, &[op])));
    }
    let file = |suffix: &str| {
        pristine
            .files
            .iter()
            .position(|(n, _)| n.ends_with(suffix))
            .expect("index file") as u8
    };
    // The graph's entry point (header offset 24) set to node 1 and a layer-0 neighbour list
    // (node 0's count word) overwritten, CRCs fixed: reaches graph search and check_structure.
    seeds.push((
        "seed-graph-entry-and-list".into(),
        with(
            flags::REWRAP | flags::FIX_CRCS | flags::WRITER | k10_ef64,
            &[
                Op::Patch {
                    file: file(".hnsw"),
                    offset: 24,
                    bytes: 1u32.to_le_bytes().to_vec(),
                },
                Op::Patch {
                    file: file(".hnsw"),
                    offset: 64,
                    bytes: 40u32.to_le_bytes().to_vec(),
                },
            ],
        ),
    ));
    // An entry record's path offset (row 2, field at 16) pointing elsewhere, CRC fixed.
    seeds.push((
        "seed-entry-path-offset".into(),
        with(
            flags::REWRAP | flags::FIX_CRCS | k10_ef64,
            &[Op::Patch {
                file: file("0001.ent"),
                offset: 64 + 2 * 32 + 16,
                bytes: 7u64.to_le_bytes().to_vec(),
            }],
        ),
    ));
    // A tombstone file removed and another truncated.
    seeds.push((
        "seed-del-missing-truncated".into(),
        with(
            flags::REWRAP | flags::FIX_CRCS | flags::STORED_QUERY,
            &[
                Op::Delete {
                    file: file("0002.del-000003"),
                },
                Op::Resize {
                    file: file("0001.del-000003"),
                    len: 70,
                },
            ],
        ),
    ));
    seeds
}

// ---------------------------------------------------------------------------------------------
// model_load and checkpoint_load
// ---------------------------------------------------------------------------------------------

/// The bundled default model, as `assets/default` holds it.
pub const DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../assets/default/model.safetensors");
pub const DEFAULT_CONFIG: &[u8] = include_bytes!("../../assets/default/config.json");

/// A tiny model of another shape than the default: batch normalisation (folded at load), a
/// stage convolution, an 8-pixel input. Its weights file is a few KB.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        preprocess: Preprocess {
            size: 12,
            ..Preprocess::default()
        },
        channels: vec![2, 4],
        stage_convs: 1,
        hidden: 4,
        dim: 2,
        disc_hidden: 4,
        norm: Norm::Batch,
        projection: None,
        training: None,
        ..ModelConfig::default()
    }
}

/// The tiny model's `model.safetensors` and `config.json`, made as `imgsearch::model::save_model`
/// makes them (encoder tensors named `encoder.*`, pretty JSON config).
pub fn tiny_model_files() -> (Vec<u8>, Vec<u8>) {
    let config = tiny_config();
    let init = std::sync::Arc::new(SeededInit::new(7, HashMap::new()));
    Encoder::for_inference(&config, init.var_builder(&Device::Cpu).pp("encoder"))
        .expect("tiny encoder");
    let tensors: HashMap<String, Tensor> = init
        .vars()
        .into_iter()
        .map(|(name, var)| (name, var.as_tensor().clone()))
        .collect();
    let weights = safetensors_bytes(&tensors).expect("tiny weights");
    let json = serde_json::to_vec_pretty(&config).expect("tiny config");
    (weights, json)
}

/// A checkpoint of the tiny model laid out as `imgsearch train` writes one (see
/// `write_checkpoint` in src/train.rs): `checkpoint.safetensors` holding `param.*`, `adam_m.*`
/// and `adam_v.*` (moments only for parameters, not batch-norm buffers); and `checkpoint.json`.
/// To keep the seeds a few KB, only part of the DIM model's variables are kept (the encoder's
/// strided convolutions, heads and first batch norm; not the stage convolutions or the
/// discriminators): the reader does not interpret tensor names, the trainer does.
pub fn tiny_checkpoint_files() -> (Vec<u8>, Vec<u8>) {
    let config = tiny_config();
    let init = std::sync::Arc::new(SeededInit::new(11, HashMap::new()));
    Dim::new(&config, init.var_builder(&Device::Cpu)).expect("tiny DIM model");
    let kept = |name: &str| {
        name.starts_with("encoder.")
            && !name.contains("stage")
            && (!name.contains(".bn.") || name.starts_with("encoder.down0."))
    };
    let mut tensors = HashMap::new();
    for (name, var) in init.vars().into_iter().filter(|(n, _)| kept(n)) {
        let t = var.as_tensor().clone();
        if !imgsearch::model::is_buffer(&name) {
            let zeros = t.zeros_like().expect("zeros");
            tensors.insert(format!("adam_m.{name}"), zeros.clone());
            tensors.insert(format!("adam_v.{name}"), (zeros + 1e-4).expect("add"));
        }
        tensors.insert(format!("param.{name}"), t);
    }
    let weights = safetensors_bytes(&tensors).expect("checkpoint weights");
    let state = serde_json::json!({
        "config": config,
        "epochs_done": 1,
        "steps": 4,
        "adam_step": 4,
        "seconds": 0.5,
        "weights_crc32": crc32fast::hash(&weights),
    });
    let json = serde_json::to_vec_pretty(&state).expect("checkpoint json");
    (json, weights)
}

/// What resuming from a checkpoint does with its tensors (`SeededInit`'s `get` converts a
/// parameter to f32, `Adam::restore_moments` copies the moments), for tensors small enough to
/// keep an iteration fast.
pub fn touch_tensors(tensors: &HashMap<String, Tensor>) {
    for t in tensors.values() {
        let _ = (t.dims(), t.dtype());
        if t.elem_count() <= 1 << 16 {
            if let Ok(f) = t.to_dtype(DType::F32) {
                let _ = f.copy();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// image_decode
// ---------------------------------------------------------------------------------------------

/// Seeds of `image_decode`: real fixture images (a 32×32 CIFAR JPEG, a 100×100 camera JPEG with
/// EXIF, a greyscale PNG) and tiny images of the other formats the indexer accepts, made with
/// the `image` crate, plus a 640×512 JPEG big enough for the reduced-scale JPEG path.
pub fn image_seeds() -> Vec<(String, Vec<u8>)> {
    use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        (
            "seed-cifar.jpg".into(),
            include_bytes!("../../tests/fixtures/test/bird/0000.jpg").to_vec(),
        ),
        (
            "seed-exif.jpg".into(),
            include_bytes!("../../tests/fixtures/photos/signdigits-0/IMG_1209.jpg").to_vec(),
        ),
        (
            "seed-grey.png".into(),
            include_bytes!("../../tests/fixtures/photos/attfaces-s1/09.png").to_vec(),
        ),
    ];
    let rgb = DynamicImage::ImageRgb8(RgbImage::from_fn(12, 10, |x, y| {
        Rgb([(x * 20) as u8, (y * 25) as u8, ((x + y) * 9) as u8])
    }));
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(9, 7, |x, y| {
        Rgba([(x * 28) as u8, (y * 36) as u8, 128, (x * y * 4) as u8])
    }));
    let encode = |img: &DynamicImage, format: ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode seed image");
        out.into_inner()
    };
    seeds.push(("seed-rgb.gif".into(), encode(&rgb, ImageFormat::Gif)));
    seeds.push(("seed-rgba.webp".into(), encode(&rgba, ImageFormat::WebP)));
    seeds.push(("seed-rgb.bmp".into(), encode(&rgb, ImageFormat::Bmp)));
    seeds.push(("seed-rgb.tiff".into(), encode(&rgb, ImageFormat::Tiff)));
    seeds.push((
        "seed-rgba16.png".into(),
        encode(
            &DynamicImage::ImageRgba16(rgba.to_rgba16()),
            ImageFormat::Png,
        ),
    ));
    // Shorter side 512 = 2 × 8 × 32: decoded at 1/2 scale by `reduced_jpeg`.
    let big = DynamicImage::ImageLuma8(image::GrayImage::from_fn(640, 512, |x, y| {
        image::Luma([((x / 64 + y / 64) * 20) as u8])
    }));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 5)
        .encode_image(&big)
        .expect("encode big jpeg");
    seeds.push(("seed-big-grey.jpg".into(), jpeg));
    seeds
}

// ---------------------------------------------------------------------------------------------
// The four targets. Each `run` is what its `fuzz_targets/*.rs` file hands libFuzzer, and what
// `tests/fuzz_replay.rs` (in imgsearch's own test suite) runs on the committed inputs.

pub mod index_open {
    //! An index directory whose files hold arbitrary bytes: the fuzz input mutates the files of a
    //! real tiny index (two segments, an HNSW graph, tombstones; see `build_pristine_index`), with
    //! modes that recompute the manifest's own CRC and the per-file CRCs it records so mutated bytes
    //! reach the segment, entries, graph and tombstone parsers. Then `Index::open`, exact and graph
    //! searches, `entries()`, `vectors()`, `verify` and optionally `IndexWriter::open`.
    //!
    //! Input: `[flags]` then operations `[file] [kind] [len u16 LE] [payload]` (see
    //! `imgsearch_fuzz::flags` and `imgsearch_fuzz::Op`).

    use std::path::PathBuf;
    use std::sync::LazyLock;

    use super::{
        build_pristine_index, decode_ops, exercise_index, index_seeds, init_env, maybe_write_seeds,
        mutate, scratch, write_index_files, PristineIndex,
    };

    struct State {
        _scratch: tempfile::TempDir,
        dir: PathBuf,
        pristine: PristineIndex,
    }

    static STATE: LazyLock<State> = LazyLock::new(|| {
        init_env();
        let scratch = scratch();
        let build = scratch.path().join("build");
        let pristine = build_pristine_index(&build);
        maybe_write_seeds(|| index_seeds(&pristine));
        let dir = scratch.path().join("index");
        std::fs::create_dir_all(&dir).expect("index dir");
        State {
            _scratch: scratch,
            dir,
            pristine,
        }
    });

    /// One input.
    pub fn run(data: &[u8]) {
        let state = &*STATE;
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let ops = decode_ops(rest);
        let files = mutate(&state.pristine, flags, &ops);
        write_index_files(&state.dir, &files);
        exercise_index(&state.dir, flags, ops.is_empty());
    }
}

pub mod model_load {
    //! Arbitrary bytes as a model's `config.json` or `model.safetensors`, next to the real other
    //! file, then `Model::load(&ModelSource::Path(dir), &Device::Cpu)`; with a model that loads, what
    //! the indexer does next: decode and preprocess a real image with the model's preprocessing
    //! (`data::load`), and embed it with a synthetic image (input sizes up to 64).
    //!
    //! Input: `[mode]` then the file's bytes. Mode bit 0: 0 = the bytes are `config.json` (next to
    //! real weights), 1 = they are `model.safetensors` (next to a real config). Bit 1: 0 = the real
    //! files are the bundled default model (assets/default), 1 = a tiny model (see `tiny_config`).

    use std::path::PathBuf;
    use std::sync::LazyLock;

    use super::{
        init_env, maybe_write_seeds, scratch, tiny_model_files, DEFAULT_CONFIG, DEFAULT_WEIGHTS,
    };
    use candle_core::Device;
    use imgsearch::data::load;
    use imgsearch::model::{model_files, Model, ModelSource};

    /// Largest input side embedded (the default model's is 32, the tiny one's 12): a config may ask
    /// for any multiple of 8, and embedding 4096×4096 images is slow, not wrong.
    const MAX_EMBED_SIZE: u32 = 64;

    const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/photos/signdigits-0/IMG_1209.jpg");

    struct State {
        _scratch: tempfile::TempDir,
        /// A real photo (100×100 JPEG with EXIF, from tests/fixtures).
        image: PathBuf,
        /// `dirs[mode & 3]`: the folder whose config (even) or weights (odd) the input replaces.
        dirs: Vec<PathBuf>,
    }

    static STATE: LazyLock<State> = LazyLock::new(|| {
        init_env();
        let scratch = scratch();
        let (tiny_weights, tiny_config) = tiny_model_files();
        maybe_write_seeds(|| {
            let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
            vec![
                ("seed-default-config".into(), with(0, DEFAULT_CONFIG)),
                ("seed-tiny-config".into(), with(2, &tiny_config)),
                ("seed-tiny-weights".into(), with(3, &tiny_weights)),
                // The tiny weights beside the default config: a shape mismatch.
                (
                    "seed-default-with-tiny-weights".into(),
                    with(1, &tiny_weights),
                ),
            ]
        });
        let mut dirs = Vec::new();
        for (mode, weights, config) in [
            (0, DEFAULT_WEIGHTS, DEFAULT_CONFIG),
            (1, DEFAULT_WEIGHTS, DEFAULT_CONFIG),
            (2, &tiny_weights[..], &tiny_config[..]),
            (3, &tiny_weights[..], &tiny_config[..]),
        ] {
            let dir = scratch.path().join(format!("mode{mode}"));
            std::fs::create_dir_all(&dir).expect("model dir");
            let (weights_path, config_path) = model_files(&dir);
            std::fs::write(weights_path, weights).expect("weights");
            std::fs::write(config_path, config).expect("config");
            // The pristine pair loads (else the harness, not the library, is broken).
            Model::load(&ModelSource::Path(dir.clone()), &Device::Cpu)
                .expect("pristine model loads");
            dirs.push(dir);
        }
        let image = scratch.path().join("photo.jpg");
        std::fs::write(&image, PHOTO).expect("photo");
        State {
            _scratch: scratch,
            image,
            dirs,
        }
    });

    /// One input.
    pub fn run(data: &[u8]) {
        let state = &*STATE;
        let Some((&mode, bytes)) = data.split_first() else {
            return;
        };
        let dir = &state.dirs[usize::from(mode & 3)];
        let (weights_path, config_path) = model_files(dir);
        let file = if mode & 1 == 0 {
            config_path
        } else {
            weights_path
        };
        std::fs::write(file, bytes).expect("write model file");
        let Ok(model) = Model::load(&ModelSource::Path(dir.clone()), &Device::Cpu) else {
            return;
        };
        let _ = (&model.id, &model.name);
        let size = model.preprocess().size;
        let side = size as usize;
        let photo = load(&state.image, model.preprocess()).expect("the fixture photo decodes");
        assert_eq!(photo.len(), side * side * 3);
        if size > MAX_EMBED_SIZE {
            return;
        }
        let synthetic: Vec<u8> = (0..side * side * 3)
            .map(|j| (j as u8).wrapping_mul(31))
            .collect();
        let images = [photo, synthetic];
        if let Ok(vectors) = model.embed(images.iter().map(Vec::as_slice)) {
            assert_eq!(vectors.len(), 2);
            for v in &vectors {
                assert_eq!(v.len(), model.config.embedding_dim());
            }
        }
    }
}

pub mod checkpoint_load {
    //! Arbitrary `checkpoint.json` / `checkpoint.safetensors` bytes through the checkpoint reader
    //! (`imgsearch::train::checkpoint::read`, what `train --resume` calls), then what resuming does
    //! with the tensors (convert parameters to f32, copy the moments).
    //!
    //! Input: `[mode]` then bytes. Mode bits 0-1: 0 or 1 = the bytes are `checkpoint.json` (next to
    //! real weights); 2 = they are `checkpoint.safetensors` (next to a real state file); 3 = both,
    //! split after a u16 LE length of the JSON. Bit 2: set the JSON's `weights_crc32` to the weights'
    //! real CRC32 (when the JSON parses), so mutated weights get past the checksum.

    use std::path::PathBuf;
    use std::sync::LazyLock;

    use super::{init_env, maybe_write_seeds, scratch, tiny_checkpoint_files, touch_tensors};
    use candle_core::Device;
    use imgsearch::train::checkpoint::read as read_checkpoint;
    use imgsearch::train::{CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};

    const FIX_CRC: u8 = 0x04;

    struct State {
        _scratch: tempfile::TempDir,
        dir: PathBuf,
        json: Vec<u8>,
        weights: Vec<u8>,
    }

    static STATE: LazyLock<State> = LazyLock::new(|| {
        init_env();
        let scratch = scratch();
        let (json, weights) = tiny_checkpoint_files();
        maybe_write_seeds(|| {
            let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
            let mut both = vec![3 | FIX_CRC];
            both.extend_from_slice(&(json.len() as u16).to_le_bytes());
            both.extend_from_slice(&json);
            both.extend_from_slice(&weights);
            vec![
                ("seed-state".into(), with(0, &json)),
                ("seed-weights-fixcrc".into(), with(2 | FIX_CRC, &weights)),
                ("seed-both-fixcrc".into(), both),
            ]
        });
        let dir = scratch.path().join("run");
        std::fs::create_dir_all(&dir).expect("checkpoint dir");
        std::fs::write(dir.join(CHECKPOINT_STATE), &json).expect("state");
        std::fs::write(dir.join(CHECKPOINT_WEIGHTS), &weights).expect("weights");
        // The pristine pair reads (else the harness, not the library, is broken).
        let (_, tensors) = read_checkpoint(&dir, &Device::Cpu).expect("pristine checkpoint reads");
        touch_tensors(&tensors);
        State {
            _scratch: scratch,
            dir,
            json,
            weights,
        }
    });

    fn with_weights_crc(json: &[u8], weights: &[u8]) -> Vec<u8> {
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(json) else {
            return json.to_vec();
        };
        let Some(obj) = v.as_object_mut() else {
            return json.to_vec();
        };
        obj.insert("weights_crc32".into(), crc32fast::hash(weights).into());
        serde_json::to_vec(&v).unwrap_or_else(|_| json.to_vec())
    }

    /// One input.
    pub fn run(data: &[u8]) {
        let state = &*STATE;
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let (json, weights): (&[u8], &[u8]) = match mode & 3 {
            0 | 1 => (rest, &state.weights),
            2 => (&state.json, rest),
            _ => {
                if rest.len() < 2 {
                    return;
                }
                let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
                (&rest[2..2 + n], &rest[2 + n..])
            }
        };
        let json = if mode & FIX_CRC != 0 {
            with_weights_crc(json, weights)
        } else {
            json.to_vec()
        };
        std::fs::write(state.dir.join(CHECKPOINT_STATE), &json).expect("write state");
        std::fs::write(state.dir.join(CHECKPOINT_WEIGHTS), weights).expect("write weights");
        if let Ok((_state, tensors)) = read_checkpoint(&state.dir, &Device::Cpu) {
            touch_tensors(&tensors);
        }
    }
}

pub mod image_decode {
    //! Arbitrary bytes as an image file, decoded and preprocessed as the indexer does:
    //! `imgsearch::data::load(&path, &Preprocess::default())` (content-sniffed format, EXIF
    //! orientation, the reduced-size JPEG path for big JPEGs, size limits, resize and centre crop).
    //! A success must give exactly `size × size × 3` bytes.
    //!
    //! Input: the file's bytes.

    use std::path::PathBuf;
    use std::sync::LazyLock;

    use super::{image_seeds, init_env, maybe_write_seeds, scratch};
    use imgsearch::data::{load, Preprocess};

    struct State {
        _scratch: tempfile::TempDir,
        path: PathBuf,
        preprocess: Preprocess,
    }

    static STATE: LazyLock<State> = LazyLock::new(|| {
        init_env();
        maybe_write_seeds(image_seeds);
        let scratch = scratch();
        let path = scratch.path().join("image");
        State {
            _scratch: scratch,
            path,
            preprocess: Preprocess::default(),
        }
    });

    /// One input.
    pub fn run(data: &[u8]) {
        let state = &*STATE;
        std::fs::write(&state.path, data).expect("write image file");
        if let Ok(pixels) = load(&state.path, &state.preprocess) {
            let side = state.preprocess.size as usize;
            assert_eq!(pixels.len(), side * side * 3);
        }
    }
}
