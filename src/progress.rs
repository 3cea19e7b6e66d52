//! What long jobs show and report while they work: progress bars on stderr (count, rate,
//! ETA), silenced by `--quiet` and `--json`; and [`Event`]s (a skipped file, a warning) that
//! the job hands to its caller, which prints them as text or JSON lines. A job passes events
//! through [`Verbosity::report`] so that a bar is suspended while the caller prints.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;

/// How much a command prints while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verbosity {
    pub quiet: bool,
}

/// Something a job tells its caller about while it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A file left out, and why (unreadable, not an image, a link loop, a duplicate path).
    Skipped { path: &'a Path, reason: &'a str },
    /// Anything else the user should know (a missing folder whose entries are kept, say).
    Warning(&'a str),
}

/// A caller's handler of events.
pub type OnEvent<'a> = &'a mut dyn FnMut(Event<'_>);

impl Verbosity {
    /// A bar over `len` items showing count, rate and ETA; hidden when quiet.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        self.styled(
            len,
            &format!("{what:>8} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}} {{msg}}"),
        )
    }

    /// A bar over a time budget of `seconds` (its position set to the seconds elapsed);
    /// hidden when quiet.
    pub fn seconds_bar(&self, seconds: u64, what: &str) -> ProgressBar {
        self.styled(
            seconds,
            &format!("{what:>8} [{{bar:30}}] {{elapsed_precise}} of {{len}} s budget {{msg}}"),
        )
    }

    fn styled(&self, len: u64, template: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    /// Hands `event` to the caller with `bar` out of the way.
    pub fn report(&self, bar: &ProgressBar, on_event: &mut dyn FnMut(Event<'_>), event: Event<'_>) {
        bar.suspend(|| on_event(event));
    }
}
