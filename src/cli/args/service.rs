//! The flags of the long-running and set-up commands: worker, store-init, verify, serve and
//! completions.

use super::{byte_size, postgres_url, StoreFlag};
use clap::Args;
use imgsearch::pipeline;
use imgsearch::progress::Verbosity;
use std::path::PathBuf;

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model folder (default: the store's own; it must be the store's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Images claimed, embedded and committed together.
    #[arg(long, default_value_t = pipeline::DEFAULT_BATCH as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Seconds a claimed batch stays this worker's; after that another worker may redo it.
    #[arg(long, default_value_t = pipeline::jobs::DEFAULT_LEASE.as_secs_f64(), value_parser = positive_seconds)]
    pub lease: f64,
    /// Stop as soon as nothing is left to claim, instead of waiting for other workers'
    /// batches (and redoing those whose worker died).
    #[arg(long)]
    pub no_wait: bool,
    /// Wait this long after claiming each batch (fault tests).
    #[arg(long, hide = true, default_value_t = 0)]
    pub batch_delay_ms: u64,
}

impl WorkerArgs {
    pub fn options(&self, verbosity: Verbosity) -> pipeline::jobs::WorkerOptions {
        pipeline::jobs::WorkerOptions {
            lease: std::time::Duration::from_secs_f64(self.lease),
            wait_for_others: !self.no_wait,
            pause: std::time::Duration::from_millis(self.batch_delay_ms),
            verbosity,
            ..pipeline::jobs::WorkerOptions::new(self.batch as usize)
        }
    }
}

#[derive(Args)]
pub struct StoreInitArgs {
    /// The coordinator: an empty database that will hold the partitioned table.
    #[command(flatten)]
    pub store: StoreFlag,
    /// A shard's database (give two or more); the coordinator connects to it as the URL's
    /// user, with its password if it has one.
    #[arg(long = "shard", value_name = "URL", required = true, value_parser = postgres_url)]
    pub shards: Vec<String>,
    /// The model whose vectors the store will hold (its dimension sizes the tables).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.1 to 86400"
        )),
    }
}

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "index")]
    pub index: PathBuf,
    #[command(flatten)]
    pub store: StoreFlag,
    /// Model to embed uploads with; must be the index's (default: the index's own).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Anything but a loopback address makes the index's images
    /// reachable from other machines (a warning is printed); the API has no authentication.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub bind: std::net::SocketAddr,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Largest upload accepted.
    #[arg(long, default_value = "20MB", value_parser = byte_size)]
    pub max_upload: usize,
    /// Thumbnail cache folder (default: thumbs/ inside the index folder).
    #[arg(long)]
    pub thumbnails: Option<PathBuf>,
    /// Bound of the thumbnail cache; the oldest thumbnails go first.
    #[arg(long, default_value = "256MB", value_parser = byte_size)]
    pub thumbnail_cache: usize,
    /// Uploads decoded and embedded (and thumbnails made) at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
}
