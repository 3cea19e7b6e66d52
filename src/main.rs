//! The `imgsearch` binary: tune the process, parse the command line, run it through the
//! library ([`cli`]), and exit with its status.

mod cli;

use clap::Parser;
use imgsearch::device::{tune_allocator, tune_threads};
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    tune_threads();
    cli::run(cli::args::Cli::parse())
}
