//! The per-thread pool of scratch buffers the Winograd phases borrow, so that a buffer is
//! allocated and zero-filled once per thread, not once per call.

use std::cell::RefCell;

thread_local! {
    /// Buffers this thread reuses from call to call: a training step runs dozens of
    /// convolutions, and zero-filling fresh buffers of several MB each cost as much as the
    /// transforms.
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers a thread keeps for reuse: a backward holds four at once.
pub(super) const POOL_BUFFERS: usize = 6;

/// A buffer from the pool: the first `len` values of a vector whose contents are stale. The
/// vector keeps its whole length while it is lent, so a buffer that served a larger call
/// serves a smaller one and then a larger one again without being filled anew (refilling
/// the regrown part was 4% of an embedding).
pub(super) struct Scratch {
    pub(super) data: Vec<f32>,
    pub(super) len: usize,
}

impl std::ops::Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.data[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.len]
    }
}

/// A buffer of `len` values whose contents are stale: the caller writes every value before
/// reading it. The pool's shortest buffer that is long enough is reused, else its longest
/// grows (only the growth is filled).
pub(super) fn buffer(len: usize) -> Scratch {
    let mut data = POOL
        .with(|pool| {
            let mut pool = pool.borrow_mut();
            let fits = (0..pool.len())
                .filter(|&i| pool[i].len() >= len)
                .min_by_key(|&i| pool[i].len());
            let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
            pick.map(|i| pool.swap_remove(i))
        })
        .unwrap_or_default();
    if data.len() < len {
        data.resize(len, 0.0);
    }
    Scratch { data, len }
}

/// Returns a buffer from [`buffer`] for the next task on this thread.
pub(super) fn recycle(buffer: Scratch) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_BUFFERS {
            pool.push(buffer.data);
        }
    });
}
