//! The `imgsearch` binary: tune the process, parse the command line, run it through the
//! library ([`cli`]; `serve` runs the web front end, [`serve`]), and exit with its status.

mod cli;
mod serve;

use clap::Parser;
use imgsearch::device::{tune_allocator, tune_threads};
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    tune_threads();
    cli::run(cli::args::Cli::parse())
}
