//! Streaming decode: a producer thread decodes one batch at a time in parallel (rayon) while
//! the consumer embeds the previous one. At most two decoded batches exist at once.

use super::decode::load;
use super::preprocess::Preprocess;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, IntoIter, Receiver};
use std::thread::JoinHandle;

/// One decoded image: its position in the input list and its preprocessed RGB8 pixels (or,
/// from [`stream_with`], what its loader made of the file).
pub struct Decoded<T = Vec<u8>> {
    pub index: usize,
    pub rgb: T,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub path: PathBuf,
    pub reason: String,
}

/// The images of one chunk of the input that decoded, and those that did not (with their
/// positions in the input list).
pub struct Batch<T = Vec<u8>> {
    pub items: Vec<Decoded<T>>,
    pub failures: Vec<(usize, Failure)>,
}

/// Batches in input order; dropping the iterator stops the producer after its current batch.
pub struct Batches<T = Vec<u8>> {
    receiver: IntoIter<Batch<T>>,
    _producer: JoinHandle<()>,
}

impl<T> Iterator for Batches<T> {
    type Item = Batch<T>;
    fn next(&mut self) -> Option<Batch<T>> {
        self.receiver.next()
    }
}

/// Decodes `paths` in chunks of `batch_size`.
pub fn stream(paths: Vec<PathBuf>, preprocess: Preprocess, batch_size: usize) -> Batches {
    stream_with(paths, batch_size, move |path| load(path, &preprocess))
}

/// Like [`stream`], with `load` turning each file into what the consumer needs.
pub fn stream_with<T, F>(paths: Vec<PathBuf>, batch_size: usize, load: F) -> Batches<T>
where
    T: Send + 'static,
    F: Fn(&Path) -> crate::Result<T> + Send + Sync + 'static,
{
    let batch_size = batch_size.max(1);
    let (sender, receiver) = sync_channel::<Batch<T>>(1);
    let producer = std::thread::spawn(move || {
        for (chunk_no, chunk) in paths.chunks(batch_size).enumerate() {
            let results: Vec<_> = chunk.par_iter().map(|path| load(path)).collect();
            let mut batch = Batch {
                items: Vec::with_capacity(chunk.len()),
                failures: Vec::new(),
            };
            for (offset, (result, path)) in results.into_iter().zip(chunk).enumerate() {
                let index = chunk_no * batch_size + offset;
                match result {
                    Ok(rgb) => batch.items.push(Decoded { index, rgb }),
                    Err(e) => batch.failures.push((
                        index,
                        Failure {
                            path: path.clone(),
                            reason: match e {
                                crate::Error::Image { reason, .. } => reason,
                                other => other.to_string(),
                            },
                        },
                    )),
                }
            }
            if sender.send(batch).is_err() {
                return;
            }
        }
    });
    let receiver: Receiver<Batch<T>> = receiver;
    Batches {
        receiver: receiver.into_iter(),
        _producer: producer,
    }
}
