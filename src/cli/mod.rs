//! The command line over the library: [`args`] parses flags into the library's options,
//! [`commands`] runs one command through [`imgsearch::pipeline`] or [`imgsearch::train`],
//! [`printer`] writes plain text or JSON Lines. [`run`] turns the outcome into the exit status:
//! 0 success, 1 runtime error, 2 usage error; a closed stdout (`| head`) is a quiet success.

pub mod args;
mod commands;
mod printer;
mod reports;

use args::Cli;
use printer::Printer;
use std::io;
use std::process::ExitCode;

/// Exit status of a usage error (as clap's own).
const USAGE: u8 = 2;

/// Why a command stopped.
pub enum Failure {
    /// The library said no: a file, the index, a model, or options that cannot work.
    Library(imgsearch::Error),
    /// Writing the output failed (a closed pipe, a full disk).
    Output(io::Error),
}

impl From<imgsearch::Error> for Failure {
    fn from(e: imgsearch::Error) -> Self {
        Failure::Library(e)
    }
}

impl From<imgsearch::index::IndexError> for Failure {
    fn from(e: imgsearch::index::IndexError) -> Self {
        Failure::Library(e.into())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

/// Runs the parsed command line and says how the process should exit.
pub fn run(cli: Cli) -> ExitCode {
    if let Some(simd) = cli.global.simd {
        imgsearch::device::limit_simd(simd.into());
    }
    let mut printer = Printer::new(cli.global.json, cli.global.quiet);
    let result = commands::run(cli, &mut printer).and_then(|code| {
        printer.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            let _ = printer.error(&format!("cannot write the output: {e}"), None);
            ExitCode::FAILURE
        }
        Err(Failure::Library(e)) => {
            let code = match e {
                imgsearch::Error::Usage(_) => ExitCode::from(USAGE),
                _ => ExitCode::FAILURE,
            };
            let written = printer.error(&e.to_string(), e.path());
            match written.and_then(|()| printer.flush()) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
                _ => code,
            }
        }
    }
}
