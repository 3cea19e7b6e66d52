//! What building and searching a graph share: the link limits, the entry point, the
//! candidate order, the per-thread visited set, and [`Rows`], the vectors a graph links.

use std::cell::RefCell;
use std::cmp::Ordering;

/// The vectors of a segment, row by row (normalised, `dim` long): what a graph is searched
/// over, whatever stores them.
pub(crate) trait Rows {
    fn row(&self, i: usize) -> &[f32];
}

/// Neighbours per node on upper layers, and the links each new node chooses.
pub(crate) const MAX_NB_CONNECTION: usize = 16;
/// Neighbours per node on layer 0 (twice the upper layers', as in the paper).
pub(crate) const MAX_NB_CONNECTION_0: usize = 2 * MAX_NB_CONNECTION;

/// The entry point of `lists[node][layer]`: the first node on the highest layer.
pub(super) fn entry_of(lists: &[Vec<Vec<u32>>]) -> Option<usize> {
    let top = lists.iter().map(Vec::len).max()?;
    lists.iter().position(|l| l.len() == top)
}

/// A node and its distance to the query, ordered by distance (total order).
#[derive(Clone, Copy, Debug)]
pub(super) struct Near {
    pub(super) d: f32,
    pub(super) id: u32,
}

impl PartialEq for Near {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Near {}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

thread_local! {
    /// Each thread's visited set, reused across searches (see [`Visited`]).
    static VISITED: RefCell<Visited> = const {
        RefCell::new(Visited { bits: Vec::new(), touched: Vec::new() })
    };
}

/// Run `f` with this thread's visited set, emptied, for a graph of `count` nodes.
pub(super) fn with_visited<R>(count: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with_borrow_mut(|visited| {
        visited.start(count);
        f(visited)
    })
}

/// The nodes one search has visited: one bit a node (125 KB for a 1M-node graph). Emptying
/// clears only the words the last search touched, so a search costs O(nodes touched), not
/// O(count), and allocates nothing after a thread's first search of a graph this big. Against
/// 4-byte epoch stamps (4 MB at 1M, page-faulted in by a cold process) the same QPS, and a cold
/// query on a 1M index took 2.4 instead of 4.4 ms (`examples/index_bench.rs`, A/B).
pub(super) struct Visited {
    bits: Vec<u64>,
    /// Indices of the non-zero words of `bits`.
    touched: Vec<u32>,
}

impl Visited {
    pub(super) fn start(&mut self, count: usize) {
        for &w in &self.touched {
            self.bits[w as usize] = 0;
        }
        self.touched.clear();
        let words = count.div_ceil(64);
        if self.bits.len() < words {
            self.bits = vec![0; words];
        }
    }

    /// Mark `id` (< the `count` given to `start`) visited; whether it was new.
    #[inline]
    pub(super) fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        match self.bits.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                if *w == 0 {
                    self.touched.push(word as u32);
                }
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}
