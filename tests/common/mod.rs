//! Helpers shared by integration test crates (`mod common;`).

pub mod cli;
pub mod postgres;
pub mod serve;
