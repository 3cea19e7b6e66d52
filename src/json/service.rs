//! The records of the commands that run a service or set one up: `serve` listening, what one
//! queue `worker` did, and what `store-init` set up.

use super::fields::{Head, Place};
use crate::pipeline::jobs::WorkSummary;
use crate::store::Location;
use serde::Serialize;

/// What one `imgsearch worker` did: `{"store", "worker", "embedded", "skipped", "batches",
/// "abandoned", "seconds"}`.
#[derive(Serialize)]
pub struct WorkerRecord {
    #[serde(flatten)]
    head: Head,
    pub store: String,
    pub worker: String,
    pub embedded: usize,
    pub skipped: usize,
    pub batches: usize,
    pub abandoned: u64,
    pub seconds: f64,
}

impl WorkerRecord {
    pub fn new(store: String, worker: String, s: &WorkSummary) -> Self {
        WorkerRecord {
            head: Head::summary("worker"),
            store,
            worker,
            embedded: s.embedded,
            skipped: s.skipped.len(),
            batches: s.batches,
            abandoned: s.abandoned,
            seconds: s.seconds,
        }
    }
}

/// What `imgsearch store-init` set up: `{"store", "shards", "dim"}`, the URLs without their
/// passwords.
#[derive(Serialize)]
pub struct StoreInitRecord {
    #[serde(flatten)]
    head: Head,
    pub store: String,
    pub shards: Vec<String>,
    pub dim: usize,
}

impl StoreInitRecord {
    pub fn new(store: String, shards: Vec<String>, dim: usize) -> Self {
        StoreInitRecord {
            head: Head::summary("store-init"),
            store,
            shards,
            dim,
        }
    }
}

/// `serve` is listening: the one line it writes before serving (its summary comes first, as
/// the command then runs until stopped). `{"url", "images", "index"}`, and `"store"` for a
/// PostgreSQL store (its index then null).
#[derive(Serialize)]
pub struct ServeRecord {
    #[serde(flatten)]
    head: Head,
    pub url: String,
    pub images: usize,
    #[serde(flatten)]
    pub place: Place,
}

impl ServeRecord {
    pub fn new(location: &Location, url: String, images: usize) -> Self {
        ServeRecord {
            head: Head::summary("serve"),
            url,
            images,
            place: Place::of(location),
        }
    }
}
