//! Output: plain text for people or JSON Lines for programs (records from
//! [`imgsearch::json`]), results on stdout, diagnostics on stderr. Every write to stdout
//! returns its error so that a closed pipe ends the command quietly and a full disk is an
//! error, never a panic; writes to stderr are best effort.
//!
//! In plain output a path is shown lossily (invalid UTF-8 as U+FFFD) with control
//! characters escaped, so a newline in a file name cannot forge a line.

use imgsearch::index::Hit;
use imgsearch::json;
use imgsearch::progress::Event;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;

/// A command's result as one value: its JSON record, or the text people read.
pub trait Report: Serialize {
    /// The plain form, without a final line break.
    fn text(&self) -> String;
}

/// Where a command's output goes, and in which form.
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    out: io::BufWriter<io::Stdout>,
    /// The first failed write of an event (events come from callbacks that cannot fail);
    /// [`Printer::flush`] returns it.
    failed: Option<io::Error>,
}

/// A path as plain output shows it.
pub fn shown(path: &Path) -> String {
    escaped(&path.to_string_lossy())
}

/// Control characters as escapes (`\n`, `\t`, `\u{1b}`), everything else as is.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Printer {
    pub fn new(json: bool, quiet: bool) -> Self {
        Printer {
            json,
            quiet: quiet || json,
            out: io::BufWriter::new(io::stdout()),
            failed: None,
        }
    }

    /// One line of plain text on stdout.
    pub fn line(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "{text}")
    }

    /// One JSON record on stdout.
    pub fn record(&mut self, value: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }

    /// A diagnostic on stderr (not shown with `--quiet` or `--json`).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr(), "{text}");
        }
    }

    /// An event of a long job: a JSON record, or a line on stderr. A failed write is kept
    /// for [`Printer::flush`].
    pub fn event(&mut self, event: Event<'_>) {
        if self.failed.is_none() {
            self.failed = self.write_event(event).err();
        }
    }

    fn write_event(&mut self, event: Event<'_>) -> io::Result<()> {
        match event {
            Event::Skipped { path, reason } => {
                self.diagnostic(&json::SkipRecord::new(path, reason))
            }
            Event::Warning(message) => self.diagnostic(&json::WarningRecord::new(message)),
        }
    }

    /// A diagnostic: its record on stdout with `--json`, else its text on stderr (not shown
    /// with `--quiet`).
    fn diagnostic(&mut self, report: &impl Report) -> io::Result<()> {
        if self.json {
            self.record(report)
        } else {
            self.note(&report.text());
            Ok(())
        }
    }

    /// An error: always on stderr, and as a record on stdout with `--json`.
    pub fn error(&mut self, message: &str, path: Option<&Path>) -> io::Result<()> {
        let record = json::ErrorRecord::new(message, path);
        let _ = writeln!(io::stderr(), "{}", record.text());
        if self.json {
            self.record(&record)?;
        }
        Ok(())
    }

    /// A query's ranked neighbours.
    pub fn hits(&mut self, query: &Path, hits: &[Hit]) -> io::Result<()> {
        if self.json {
            return self.record(&json::QueryRecord::new(query, hits));
        }
        writeln!(self.out, "{}", shown(query))?;
        for (i, hit) in hits.iter().enumerate() {
            writeln!(
                self.out,
                "{:>4}  {:.4}  {}",
                i + 1,
                hit.score,
                shown(&hit.path)
            )?;
        }
        Ok(())
    }

    /// A command's report: its record with `--json`, else its text unless quiet.
    pub fn report(&mut self, report: &impl Report) -> io::Result<()> {
        if self.json {
            self.record(report)
        } else if !self.quiet {
            self.line(&report.text())
        } else {
            Ok(())
        }
    }

    /// A command's result, which is all it has to say: its record with `--json`, else its
    /// text, even with `--quiet`.
    pub fn result(&mut self, report: &impl Report) -> io::Result<()> {
        if self.json {
            self.record(report)
        } else {
            self.line(&report.text())
        }
    }

    /// Flushes stdout; the first error of any write so far.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// Raw bytes on stdout (a completion script).
    pub fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }
}
