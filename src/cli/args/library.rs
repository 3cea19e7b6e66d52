//! The flags of the commands that read and write an index: index, forget, query, grid, eval and
//! dups, with `--store` and `--baseline` that several of them share.

use super::{checked, postgres_url};
use clap::{Args, ValueEnum};
use imgsearch::data::ScanOptions;
use imgsearch::index::{SearchOptions, DEFAULT_GRAPH_THRESHOLD};
use imgsearch::pipeline::{self, CommitPolicy, EvalOptions, IndexOptions};
use imgsearch::progress::Verbosity;
use imgsearch::store::Location;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum Baseline {
    /// Cosine on raw pixels at the model's input size, mean-centred.
    Pixels,
    /// A randomly initialised encoder of the same architecture.
    Random,
}

/// `--store URL`: the vectors in PostgreSQL instead of the local index folder.
#[derive(Args, Clone, Default)]
pub struct StoreFlag {
    /// A PostgreSQL store (postgres://user@host:port/db, with pgvector) instead of the
    /// --index folder: shared by many machines and workers (docs/SCALE.md).
    #[arg(long, env = "IMGSEARCH_STORE", value_name = "URL", value_parser = postgres_url)]
    pub store: Option<String>,
}

impl StoreFlag {
    pub fn location(&self, index: &std::path::Path) -> Location {
        Location::of(index, self.store.as_deref())
    }
}

#[derive(Args)]
pub struct IndexArgs {
    /// Folders (or files) of images to add or bring up to date [default: every folder the
    /// index records].
    pub dirs: Vec<PathBuf>,
    /// Index folder.
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model folder from `imgsearch train` (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Images embedded per batch.
    #[arg(long, default_value_t = pipeline::DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Follow symbolic links below the folders (loops are detected and skipped).
    #[arg(long, short = 'L')]
    pub follow: bool,
    /// Drop damaged index files (their images are embedded again) instead of refusing. A
    /// manifest that fails its checksum is read for its segments and folders; one that cannot be
    /// read at all is rebuilt only from the folders given (without them nothing is deleted).
    #[arg(long)]
    pub repair: bool,
    /// Segments of at least this many images get an HNSW graph; smaller ones are scanned.
    #[arg(long, hide = true, env = "IMGSEARCH_GRAPH_MIN", default_value_t = DEFAULT_GRAPH_THRESHOLD)]
    pub graph_min: usize,
    /// With --store: queue the new and changed files and stop; `imgsearch worker`s embed them.
    #[arg(long, requires = "store")]
    pub queue_only: bool,
    /// With --store: wait this long after claiming each batch (fault tests).
    #[arg(long, hide = true, default_value_t = 0)]
    pub batch_delay_ms: u64,
    /// Commit after this many embedded images (or 30 s), for crash tests.
    #[arg(long, hide = true, default_value_t = CommitPolicy::default().every as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_every: u64,
}

impl IndexArgs {
    pub fn options(&self, verbosity: Verbosity) -> IndexOptions {
        IndexOptions {
            batch: self.batch as usize,
            graph_threshold: self.graph_min,
            scan: ScanOptions {
                follow_links: self.follow,
            },
            repair: self.repair,
            commit: CommitPolicy {
                every: self.commit_every as usize,
                ..CommitPolicy::default()
            },
            verbosity,
            ..IndexOptions::new(self.index.clone(), self.dirs.clone())
        }
    }
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Recorded folders to drop.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
}

#[derive(Args)]
pub struct QueryArgs {
    /// Query images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Number of neighbours.
    #[arg(short, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model to embed the queries with; must be the index's (default: the index's own).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Brute force over all vectors instead of the graph (exact ground truth).
    #[arg(long)]
    pub exact: bool,
    /// Graph search beam width: higher is slower and more accurate.
    #[arg(long, default_value_t = SearchOptions::default().ef as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub ef: u32,
    /// Also draw the queries and their neighbours as a contact sheet (PNG).
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Only neighbours with at least this cosine, from -1 to 1 (as `dups --threshold`).
    #[arg(long, allow_negative_numbers = true, value_parser = checked(pipeline::limits::min_score))]
    pub min_score: Option<f32>,
}

impl QueryArgs {
    pub fn search(&self) -> SearchOptions {
        SearchOptions {
            k: self.k as usize,
            ef: self.ef as usize,
            exact: self.exact,
            min_score: self.min_score,
        }
    }
}

#[derive(Args)]
pub struct GridArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Number of random query images (rows).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rows: u32,
    /// Neighbours per row (the query itself is left out).
    #[arg(short, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "knn.png")]
    pub out: PathBuf,
    /// Thumbnail size in pixels.
    #[arg(long, default_value_t = pipeline::DEFAULT_TILE,
          value_parser = clap::value_parser!(u32).range(8..=1024))]
    pub tile: u32,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Labelled folder: DIR/CLASS/IMAGE.
    pub dir: PathBuf,
    /// Model folder (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Neighbours counted for P@k.
    #[arg(short, default_value_t = EvalOptions::new(PathBuf::new()).k as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Neighbours voting in the weighted kNN classifier.
    #[arg(long, default_value_t = EvalOptions::new(PathBuf::new()).knn as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub knn: u32,
    /// Query only this many images (evenly spaced); every image is still indexed.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub queries: Option<u32>,
    /// Score a floor instead of the model.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Index the labelled folder into this PostgreSQL store and search it there (what
    /// searches of that store return), instead of in a throw-away local index.
    #[command(flatten)]
    pub store: StoreFlag,
}

impl EvalArgs {
    pub fn options(&self, verbosity: Verbosity) -> EvalOptions {
        EvalOptions {
            store: self.store.store.clone(),
            k: self.k as usize,
            knn: self.knn as usize,
            queries: self.queries.map(|q| q as usize),
            verbosity,
            ..EvalOptions::new(self.dir.clone())
        }
    }
}

#[derive(Args)]
pub struct DupsArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Cosine at or above which two images are candidate duplicates [default: 0.85, or 0.97
    /// with --no-verify].
    #[arg(long, value_parser = checked(pipeline::limits::threshold))]
    pub threshold: Option<f32>,
    /// Below --threshold, each image's N most similar images are candidates too when their
    /// cosine reaches --closest-cosine: a copy under a caption bar or cropped deep is its
    /// original's nearest image long before its cosine reaches the threshold (0: off; only
    /// with the pixel check).
    #[arg(long, value_name = "N", default_value_t = pipeline::dups::DEFAULT_CLOSEST,
          conflicts_with = "no_verify")]
    pub closest: usize,
    /// The cosine the closest images (--closest) need; one standing apart, 0.1 above the first
    /// image after the closest, may fall 0.1 under it.
    #[arg(long, value_name = "COSINE", default_value_t = pipeline::dups::DEFAULT_CLOSEST_COSINE,
          conflicts_with = "no_verify", value_parser = checked(pipeline::limits::threshold))]
    pub closest_cosine: f32,
    /// The copy score a candidate pair needs: how well one image, placed over the other (crops,
    /// borders, screenshots, flips, quarter turns), correlates with it in grey levels and
    /// detail, the worse-matching band along an edge or a mark drawn across it (a watermark)
    /// left out (-1 to 1).
    #[arg(long, default_value_t = pipeline::dups::DEFAULT_COPY_SCORE, conflicts_with = "no_verify",
          allow_negative_numbers = true, value_parser = checked(pipeline::limits::copy_score))]
    pub copy_score: f32,
    /// Trust the cosine alone: no pixel check of candidate pairs (no second decode of them).
    #[arg(long)]
    pub no_verify: bool,
    /// Move every copy but the best one under this folder (keeping its path relative to the
    /// indexed folder), with an undo log there.
    #[arg(long, value_name = "DEST", conflicts_with_all = ["hardlink", "undo"])]
    pub r#move: Option<PathBuf>,
    /// Replace each copy whose bytes equal the best one's by a hard link to it.
    #[arg(long, conflicts_with = "undo")]
    pub hardlink: bool,
    /// Put back the files an earlier --move moved, from its undo log.
    #[arg(long, value_name = "LOG")]
    pub undo: Option<PathBuf>,
    /// Look for candidates with images as they are only, not also turned a quarter, mirrored,
    /// zoomed to their centre or a corner, or cut out of a border, caption bar or screenshot
    /// (faster: no second decode and eight to twelve fewer embeddings of every image).
    #[arg(long)]
    pub no_rotations: bool,
    /// CSV on stdout: group,keep,path,score,action.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Record these images (a pair or a whole group) as not duplicates of each other, in
    /// dups-ignored.json in the index folder: later runs never group them together.
    #[arg(long, value_name = "IMAGE", num_args = 2.., conflicts_with_all = ["move", "hardlink", "undo"])]
    pub ignore: Vec<PathBuf>,
    /// Also report groups of similar shots (bursts, re-takes of one scene) whose cosine reaches
    /// COSINE [default: 0.92] but which are not copies: for review only, never moved or
    /// linked.
    #[arg(
        long,
        value_name = "COSINE",
        num_args = 0..=1,
        default_missing_value = "0.92",
        value_parser = checked(pipeline::limits::threshold),
        conflicts_with_all = ["against", "csv", "undo", "ignore"]
    )]
    pub similar: Option<f32>,
    /// Report only the images of --index that copy an image of this library's index (each
    /// with its closest library copy, which is kept), without grouping the library's own
    /// images: new photos checked against the ones already kept.
    #[arg(long, value_name = "LIBRARY_INDEX", conflicts_with_all = ["undo", "ignore"])]
    pub against: Option<PathBuf>,
}
