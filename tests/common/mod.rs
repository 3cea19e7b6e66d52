//! Helpers shared by integration test crates (`mod common;`).

pub mod postgres;
