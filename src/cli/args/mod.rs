//! The command line's flags (clap), each command's help with examples, and their conversion
//! into the library's option structs. Defaults that the library owns are read from it, not
//! restated; the enums the flags name are mirrored here so the library stays free of clap.
//! The top level and the shared value parsers live here; each command family's flags in
//! [`training`] (train), [`library`] (index, forget, query, grid, eval, dups) and [`service`]
//! (worker, store-init, verify, serve, completions).

mod library;
mod service;
mod training;

pub use library::*;
pub use service::*;
pub use training::*;

use clap::{Args, Parser, Subcommand, ValueEnum};
use imgsearch::device::DeviceChoice;
use imgsearch::progress::Verbosity;

const EXIT_CODES: &str = "\
Exit status: 0 success, 1 runtime error (a file, the index, a model), 2 usage error.";

#[derive(Parser)]
#[command(
    name = "imgsearch",
    version,
    about = "Image similarity search with Deep InfoMax embeddings",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalFlags,
}

#[derive(Args, Clone, Copy)]
pub struct GlobalFlags {
    /// No progress bars, warnings or skipped-file lines on stderr (errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// JSON Lines on stdout, one record per line (docs/JSON.md); implies --quiet on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where to run the model: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceChoice,
    /// Widest CPU vector instructions the hand-written kernels may use [default: the widest the
    /// CPU has]. For measuring one binary at each level; results are the same within rounding.
    #[arg(long, global = true, env = "IMGSEARCH_SIMD", value_enum)]
    pub simd: Option<SimdChoice>,
}

/// `--simd`: a ceiling on [`imgsearch::device::SimdLevel`].
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SimdChoice {
    /// The x86-64 baseline (SSE2) only.
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 F (where the CPU has it).
    Avx512,
}

impl From<SimdChoice> for imgsearch::device::SimdLevel {
    fn from(choice: SimdChoice) -> Self {
        match choice {
            SimdChoice::Portable => Self::Portable,
            SimdChoice::Avx2 => Self::Avx2Fma,
            SimdChoice::Avx512 => Self::Avx512,
        }
    }
}

impl GlobalFlags {
    pub fn verbosity(&self) -> Verbosity {
        Verbosity {
            quiet: self.quiet || self.json,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Learn a DIM encoder from unlabelled images (by default, fine-tune the bundled model).
    #[command(after_help = concat!("Examples:
  imgsearch train ~/Pictures --out my-model --minutes 10     # fine-tune the bundled model
  imgsearch train ~/Pictures --out my-model --minutes 10 --eval ~/Labelled   # scored before/after
  imgsearch train ~/Pictures --out my-model --epochs 30 --resume
  imgsearch train data/cifar10/train --out m --from scratch --epochs 30
  imgsearch train data/cifar10/train --out m --critic concat --estimator jsd --views 1 --augment none

", "Exit status: 0 success, 1 runtime error, 2 usage error (a different --batch on --resume is one)."))]
    Train(TrainArgs),
    /// Embed every image under the folders into an index. The index remembers its folders:
    /// new, changed and deleted files are brought up to date on re-runs, and a run without
    /// folders re-scans all of them.
    #[command(after_help = concat!("Examples:
  imgsearch index ~/Pictures                 # into ./index, with the bundled model
  imgsearch index ~/Scans --index index      # adds a second folder; ~/Pictures is kept
  imgsearch index                            # brings every recorded folder up to date
  imgsearch index --repair                   # drops damaged files and embeds their images again

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Index(IndexArgs),
    /// Drop folders from an index: their entries are removed and re-runs no longer scan them.
    #[command(after_help = concat!("Examples:
  imgsearch forget ~/Scans
  imgsearch forget /media/old-drive/photos --index index

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Forget(ForgetArgs),
    /// Find the nearest neighbours of images by cosine similarity.
    #[command(after_help = concat!("Examples:
  imgsearch query cat.png -k 9
  imgsearch query a.jpg b.jpg --json | jq -r '.results[]?.path'
  imgsearch query cat.png --exact            # brute force: the exact ranking
  imgsearch query cat.png --grid sheet.png   # also draw the neighbours

", "Exit status: 0 success, 1 runtime error (also when a query image cannot be read), 2 usage error."))]
    Query(QueryArgs),
    /// A contact sheet of random indexed images, each with its nearest neighbours.
    #[command(after_help = concat!("Examples:
  imgsearch grid --out knn.png
  imgsearch grid --rows 20 -k 12 --seed 7 --out sheet.png

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Grid(GridArgs),
    /// Retrieval quality on a labelled folder (class = parent folder): P@k and kNN accuracy.
    #[command(after_help = concat!("Examples:
  imgsearch eval data/cifar10/test
  imgsearch eval data/cifar10/test --model my-model --queries 2000
  imgsearch eval data/clothing/test --baseline pixels

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Eval(EvalArgs),
    /// Groups of near-duplicate images (resized, recompressed, cropped, edited copies), best
    /// copy first; reports only, unless --move or --hardlink.
    #[command(after_help = concat!("Examples:
  imgsearch dups                              # report the groups (a dry run)
  imgsearch dups --threshold 0.75 --json      # more crops found; slower on a big index
  imgsearch dups --move ~/dups                # move the copies; prints the undo log's path
  imgsearch dups --undo ~/dups/imgsearch-undo-1764550000.jsonl
  imgsearch dups --hardlink                   # byte-identical copies become hard links
  imgsearch dups --index new-index --against index   # which new photos the library has

", "Exit status: 0 success, 1 runtime error, 2 usage error."))]
    Dups(DupsArgs),
    /// A web page and JSON API over an index: search by upload or by clicking, browse random
    /// neighbours, duplicate groups and the index's state. Binds 127.0.0.1 unless told.
    #[command(after_help = concat!("Examples:
  imgsearch serve --open                      # http://127.0.0.1:7878/ in the browser
  imgsearch serve --index /srv/photos-index --bind 127.0.0.1:8080
  curl -F image=@cat.jpg 'http://127.0.0.1:7878/api/search?k=9'
  curl http://127.0.0.1:7878/api/openapi.json  # the API

", "Exit status: 0 after Ctrl-C or SIGTERM, 1 runtime error (no index, a model), 2 usage error \
(an address that cannot be bound is one)."))]
    Serve(ServeArgs),
    /// Check every file of an index against its checksums; exit 1 when anything is damaged.
    #[command(after_help = concat!("Examples:
  imgsearch verify
  imgsearch verify --index /srv/photos-index --json

", "Exit status: 0 the index is sound, 1 damage found (or no index), 2 usage error."))]
    Verify(VerifyArgs),
    /// Embed the files queued in a PostgreSQL store, until the queue is empty. Run any number,
    /// on any machines that see the files under the same paths; `imgsearch index DIR --store
    /// URL` queues them (and works too).
    #[command(after_help = concat!("Examples:
  imgsearch index ~/Pictures --store postgres://imgsearch@db/photos     # queue and work
  imgsearch worker --store postgres://imgsearch@db/photos               # on other machines
  IMGSEARCH_STORE=postgres://imgsearch@db/photos imgsearch worker --batch 512

", "Exit status: 0 the queue is empty, 1 runtime error (the database, a model), 2 usage error."))]
    Worker(WorkerArgs),
    /// Set up a PostgreSQL store whose images are hash-partitioned over shards (postgres_fdw):
    /// run once on an empty coordinator database, then index and search through it.
    #[command(after_help = concat!("Examples:
  imgsearch store-init --store postgres://coord/photos \\
      --shard postgres://imgsearch@shard1/photos --shard postgres://imgsearch@shard2/photos

", "Exit status: 0 success, 1 runtime error (a database), 2 usage error."))]
    StoreInit(StoreInitArgs),
    /// Print a shell completion script.
    #[command(after_help = concat!("Examples:
  imgsearch completions bash > ~/.local/share/bash-completion/completions/imgsearch
  imgsearch completions zsh > ~/.zfunc/_imgsearch
  imgsearch completions fish > ~/.config/fish/completions/imgsearch.fish

", "Exit status: 0 success, 2 usage error."))]
    Completions(CompletionsArgs),
}

/// A byte count: a number with an optional unit (`20MB`, `512KB`, `1GB`; powers of 1024).
/// A clap parser for a number checked by one of [`imgsearch::pipeline::limits`]'s functions (the checks
/// the HTTP API makes of the same values).
fn checked<T>(check: fn(T) -> Result<T, String>) -> impl Fn(&str) -> Result<T, String> + Clone
where
    T: std::str::FromStr,
{
    move |text: &str| {
        let value = text
            .trim()
            .parse::<T>()
            .map_err(|_| format!("{text:?} is not a number"))?;
        check(value)
    }
}

/// A learning rate: a finite number above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a learning rate (a finite number above 0)"
        )),
    }
}

fn positive_minutes(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 && m <= 1e6 => Ok(m),
        _ => Err(format!("{text:?} is not a number of minutes above 0")),
    }
}

fn byte_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 20MB"))?;
    let scale: usize = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (B, KB, MB or GB)")),
    };
    n.checked_mul(scale)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?} is not a size above zero that fits"))
}

fn postgres_url(text: &str) -> Result<String, String> {
    if imgsearch::store::is_postgres_url(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a postgres:// URL (a local index is named with --index)"
        ))
    }
}
