//! Progress bars for long jobs, silenced by `--quiet` and `--json`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much a command prints while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verbosity {
    pub quiet: bool,
}

impl Verbosity {
    /// A bar over `len` items showing count, rate and ETA; hidden when quiet.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template =
            format!("{what:>8} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}} {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    /// A warning line (a skipped file, say), printed above any bar.
    pub fn warn(&self, bar: &ProgressBar, line: &str) {
        if !self.quiet {
            bar.suspend(|| eprintln!("warning: {line}"));
        }
    }
}
