//! How the benchmarks fail: one boxed error type, `bail!` to stop with a message, and
//! `context` / `with_context` to say what was being done when a call failed. Enough for
//! programs that print the error and exit, without an error crate.

#![allow(dead_code)] // each benchmark uses part of it

use std::fmt::Display;

/// Any error, sendable across the benchmark's threads.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns an error made of a formatted message.
macro_rules! bail {
    ($($message:tt)*) => {
        return Err(format!($($message)*).into())
    };
}
pub(crate) use bail;

/// A failure, or a missing value, as an error that says what was being done.
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}").into())
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| format!("{}: {e}", what()).into())
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| what.to_string().into())
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| what().to_string().into())
    }
}
