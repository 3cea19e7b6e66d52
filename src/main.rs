//! The `imgsearch` binary: tune the process, parse the command line, run it through the
//! library ([`cli`]; `serve` runs the web front end, [`serve`]), and exit with its status.

mod cli;
mod serve;

use clap::Parser;
use imgsearch::device::{tune_allocator, tune_threads};
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_threads();
    let cli = cli::args::Cli::parse();
    // Batch jobs keep freed tensor memory for reuse (faster); a server that runs for days gives
    // it back (its embeddings are small, and a kept gigabyte per thread arena is not).
    if !matches!(cli.command, cli::args::Command::Serve(_)) {
        tune_allocator();
    }
    cli::run(cli)
}
