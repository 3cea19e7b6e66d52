//! Embedding uploads in batches: requests put their decoded pixels on a bounded queue, and a few
//! worker threads each take everything waiting (up to [`MAX_BATCH`]) and embed it in one call.
//! One image at a time pays the model's fixed cost per call for each upload; under load, a
//! batch shares it (dynamic batching, as inference servers do). A full queue is refused at once
//! (the caller answers 503) rather than making every waiting client slower.

use imgsearch::model::Model;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most images embedded in one call.
pub const MAX_BATCH: usize = 32;
/// Most uploads waiting for a worker.
const QUEUE: usize = 256;

/// One upload's embedding and what it cost.
pub struct Embedded {
    pub vector: Vec<f32>,
    /// Time on the queue before its batch started.
    pub queued: Duration,
    /// Time its batch took to embed.
    pub embed: Duration,
    /// Images in its batch.
    pub batch: usize,
}

struct Job {
    model: Arc<Model>,
    rgb: Vec<u8>,
    queued: Instant,
    reply: oneshot::Sender<Result<Embedded, String>>,
}

pub struct Embedder {
    queue: SyncSender<Job>,
}

/// Why an upload was not queued.
pub enum Refused {
    Busy,
    Stopped,
}

impl Embedder {
    /// Starts `workers` embedding threads.
    pub fn start(workers: usize) -> std::io::Result<Embedder> {
        let (queue, jobs) = sync_channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..workers.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("imgsearch-embed-{i}"))
                .spawn(move || work(&jobs))?;
        }
        Ok(Embedder { queue })
    }

    /// Queues `rgb` (the model's preprocessed input) for embedding with `model`.
    pub fn submit(
        &self,
        model: Arc<Model>,
        rgb: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Embedded, String>>, Refused> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            rgb,
            queued: Instant::now(),
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Refused::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// A worker: take what is waiting, embed it per model, answer each job; until the queue closes.
fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let mut batch = {
            let Ok(jobs) = jobs.lock() else { return };
            let Ok(first) = jobs.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        // Normally one model; after a re-index with another model, older jobs keep theirs.
        while !batch.is_empty() {
            let model = batch[0].model.clone();
            let (same, rest): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|j| Arc::ptr_eq(&j.model, &model));
            batch = rest;
            let start = Instant::now();
            let result = model.embed(same.iter().map(|j| j.rgb.as_slice()));
            let embed = start.elapsed();
            let size = same.len();
            match result {
                Ok(vectors) => {
                    for (job, vector) in same.into_iter().zip(vectors) {
                        let _ = job.reply.send(Ok(Embedded {
                            vector,
                            queued: start.duration_since(job.queued),
                            embed,
                            batch: size,
                        }));
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    for job in same {
                        let _ = job.reply.send(Err(message.clone()));
                    }
                }
            }
        }
    }
}
