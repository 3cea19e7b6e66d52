//! Builds a segment's HNSW graph (Malkov and Yashunin, "Efficient and robust approximate nearest
//! neighbor search using Hierarchical Navigable Small World graphs") in memory, on every thread of
//! the rayon pool, and returns the neighbour lists `lists[node][layer]` that [`super::write_flat`]
//! lays out.
//!
//! Levels come from a seeded RNG, so the layer structure is reproducible; the links depend on the
//! order threads insert in. Each node's list on each layer sits behind its own mutex: a search
//! copies a list out under the lock and scores it outside, a new node's back-links are added (and
//! the list pruned when full) under the neighbour's lock. A node that raises the top layer holds
//! the promotion lock for its whole insertion, as in the paper's reference implementation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::common::{entry_of, with_visited, Near, Visited, MAX_NB_CONNECTION_0};
use crate::exact::{dot, prefetch};

/// How the graph is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BuildParams {
    /// Links a node keeps on the upper layers.
    pub m: usize,
    /// Links a node keeps on layer 0 (the paper's `M_max0`, `2 M`).
    pub m0: usize,
    /// Links a new node chooses on layer 0 (at most `m0`; the paper chooses `m`). Between the
    /// two: choosing 16 or 20 dropped recall@10 at the default ef (64) to 0.9885 / 0.989 on the
    /// wide clusters of `tests/index_engine.rs` (24: 0.9915); choosing all 32 built 1.3× slower
    /// than 24 on 100,000 uniform vectors (`examples/index_bench.rs`, A/B in one run: 14.2 s
    /// against 11.0 s, and 768 against 864 queries/s at recall@10 ≥ 0.99), because every
    /// back-link into a full list re-runs the selection heuristic.
    pub choose0: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Highest layer index a node may get.
    pub max_level: usize,
    /// Seed of the level draw.
    pub seed: u64,
}

/// Capacity of a neighbour list (`m0` and `m` are capped to it).
const MAX_LINKS: usize = MAX_NB_CONNECTION_0;

/// A neighbour list stored inline (no allocation, copied out by value).
#[derive(Clone, Copy)]
struct Links {
    len: usize,
    ids: [u32; MAX_LINKS],
}

impl Default for Links {
    fn default() -> Self {
        Links {
            len: 0,
            ids: [0; MAX_LINKS],
        }
    }
}

impl Links {
    fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    /// Append `id` if there is room; whether it was added.
    fn push(&mut self, id: u32) -> bool {
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Replace the list by (at most [`MAX_LINKS`] of) `ids`.
    fn set(&mut self, ids: impl IntoIterator<Item = u32>) {
        self.len = 0;
        for id in ids {
            if !self.push(id) {
                break;
            }
        }
    }
}

/// Vectors up to this long are copied next to their node's layer-0 list while building.
const INLINE_DIM: usize = 64;

/// A node's vector and layer-0 list side by side (one 64-byte-aligned block of 448 bytes), as in
/// the graph file: a build is bound by memory latency, and scoring a node then brings in the
/// lines its expansion reads next. Longer vectors stay in the segment's data. Measured on
/// 1,000,000 clustered 64-d vectors (`examples/index_bench.rs`, A/B in one run): 96.7 s against
/// 114.5 s with the vectors apart, for 300 MB more peak memory (1.61 against 1.31 GB).
#[repr(C, align(64))]
struct Slot0 {
    vector: [f32; INLINE_DIM],
    links: Mutex<Links>,
}

impl Slot0 {
    fn new(row: &[f32]) -> Slot0 {
        let mut vector = [0.0; INLINE_DIM];
        if row.len() <= INLINE_DIM {
            vector[..row.len()].copy_from_slice(row);
        }
        Slot0 {
            vector,
            links: Mutex::new(Links::default()),
        }
    }
}

/// Nodes a thread takes from the shared counter at a time.
const CLAIM: usize = 16;

/// `lists[node][layer]` of the graph over the `count` rows of `data` (`count × dim`, normalised).
pub(crate) fn build_lists(
    data: &[f32],
    dim: usize,
    count: usize,
    params: BuildParams,
) -> Vec<Vec<Vec<u32>>> {
    if count == 0 {
        return Vec::new();
    }
    let params = BuildParams {
        m0: params.m0.min(MAX_LINKS),
        choose0: params.choose0.min(params.m0).min(MAX_LINKS),
        m: params.m.min(MAX_LINKS),
        ..params
    };
    let levels = draw_levels(count, params);
    let builder = Builder {
        data,
        dim,
        count,
        params,
        layer0: (0..count)
            .map(|node| Slot0::new(&data[node * dim..(node + 1) * dim]))
            .collect(),
        upper: levels
            .iter()
            .map(|&l| (1..=l).map(|_| Mutex::new(Links::default())).collect())
            .collect(),
        top: RwLock::new(Top {
            node: 0,
            level: levels[0],
        }),
        promotion: Mutex::new(()),
        levels,
    };
    let next = AtomicUsize::new(1);
    rayon::broadcast(|_| loop {
        let start = next.fetch_add(CLAIM, Ordering::Relaxed);
        if start >= count {
            break;
        }
        for node in start..(start + CLAIM).min(count) {
            builder.insert(node as u32);
        }
    });
    let mut lists: Vec<Vec<Vec<u32>>> = builder
        .layer0
        .into_iter()
        .zip(builder.upper)
        .map(|(layer0, upper)| {
            std::iter::once(layer0.links)
                .chain(upper.into_vec())
                .map(|l| {
                    l.into_inner()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_slice()
                        .to_vec()
                })
                .collect()
        })
        .collect();
    connect_unreachable(&mut lists, params.m0);
    lists
}

/// Make every node reachable on layer 0 from the entry point (see [`entry_of`]): pruning
/// by concurrent insertions can, rarely, remove the last link into a node, which no search could
/// then return. Such a node is linked from one of its own neighbours that is reachable, one with
/// room if there is one (repeated until nothing changes, since each link can make more nodes
/// reachable); otherwise from the reachable neighbour with the shortest list, which then holds
/// one link more than `cap` (the file's slot width follows the longest list). Returns how many
/// nodes stay unreachable: only nodes none of whose neighbours is reachable.
fn connect_unreachable(lists: &mut [Vec<Vec<u32>>], cap: usize) -> usize {
    let Some(entry) = entry_of(lists) else {
        return 0;
    };
    let mut seen = vec![false; lists.len()];
    let mut stack = vec![entry];
    seen[entry] = true;
    let flood = |stack: &mut Vec<usize>, seen: &mut [bool], lists: &[Vec<Vec<u32>>]| {
        while let Some(v) = stack.pop() {
            for &w in &lists[v][0] {
                if !std::mem::replace(&mut seen[w as usize], true) {
                    stack.push(w as usize);
                }
            }
        }
    };
    flood(&mut stack, &mut seen, lists);
    for over_cap in [false, true] {
        loop {
            let mut linked = false;
            for node in 0..lists.len() {
                if seen[node] {
                    continue;
                }
                let host = lists[node][0]
                    .iter()
                    .map(|&v| v as usize)
                    .filter(|&v| seen[v] && (over_cap || lists[v][0].len() < cap))
                    .min_by_key(|&v| lists[v][0].len());
                if let Some(v) = host {
                    lists[v][0].push(node as u32);
                    seen[node] = true;
                    stack.push(node);
                    flood(&mut stack, &mut seen, lists);
                    linked = true;
                }
            }
            if !linked {
                break;
            }
        }
    }
    seen.iter().filter(|&&s| !s).count()
}

/// Each node's top layer: `floor(-ln(u) / ln(m))` for uniform `u` in (0, 1], capped.
fn draw_levels(count: usize, params: BuildParams) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let scale = 1.0 / (params.m.max(2) as f64).ln();
    (0..count)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>();
            ((-u.ln() * scale) as usize).min(params.max_level)
        })
        .collect()
}

/// The entry point: a node on the highest layer.
#[derive(Clone, Copy, Debug)]
struct Top {
    node: u32,
    level: usize,
}

struct Builder<'a> {
    data: &'a [f32],
    dim: usize,
    count: usize,
    params: BuildParams,
    levels: Vec<usize>,
    /// Every node's layer-0 list and (up to [`INLINE_DIM`]) vector, inline in one array: a
    /// search touches one place per node.
    layer0: Vec<Slot0>,
    /// `upper[node][layer - 1]` for layers `1..=levels[node]`.
    upper: Vec<Box<[Mutex<Links>]>>,
    top: RwLock<Top>,
    promotion: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a list is locked aborts the whole build anyway; the data is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Builder<'_> {
    fn vector(&self, node: u32) -> &[f32] {
        if self.dim <= INLINE_DIM {
            &self.layer0[node as usize].vector[..self.dim]
        } else {
            let at = node as usize * self.dim;
            &self.data[at..at + self.dim]
        }
    }

    fn distance(&self, query: &[f32], node: u32) -> f32 {
        1.0 - dot(query, self.vector(node))
    }

    fn links(&self, node: u32, layer: usize) -> &Mutex<Links> {
        if layer == 0 {
            &self.layer0[node as usize].links
        } else {
            &self.upper[node as usize][layer - 1]
        }
    }

    fn top(&self) -> Top {
        *self.top.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, node: u32) {
        let level = self.levels[node as usize];
        let mut top = self.top();
        let _promoting = if level > top.level {
            let guard = lock(&self.promotion);
            top = self.top();
            (level > top.level).then_some(guard)
        } else {
            None
        };
        let query = self.vector(node);
        let mut entry = Near {
            d: self.distance(query, top.node),
            id: top.node,
        };
        for layer in (level + 1..=top.level).rev() {
            entry = self.greedy(query, entry, layer);
        }
        let mut entries = vec![entry];
        for layer in (0..=level.min(top.level)).rev() {
            let found = with_visited(self.count, |visited| {
                // Threads inserting concurrently may already link to `node`: never find itself.
                visited.insert(node);
                self.search_layer(query, &entries, layer, visited)
            });
            let cap = if layer == 0 {
                self.params.m0
            } else {
                self.params.m
            };
            let choose = if layer == 0 {
                self.params.choose0
            } else {
                self.params.m
            };
            let chosen = self.select(&found, choose);
            self.set_links(node, &chosen, layer, cap);
            for n in &chosen {
                self.link_back(n.id, Near { d: n.d, id: node }, layer, cap);
            }
            entries = found;
        }
        if level > top.level {
            *self.top.write().unwrap_or_else(PoisonError::into_inner) = Top { node, level };
        }
    }

    /// Walk to the closest node to `query` on `layer`, starting at `entry`.
    fn greedy(&self, query: &[f32], mut entry: Near, layer: usize) -> Near {
        loop {
            let list = *lock(self.links(entry.id, layer));
            let before = entry.id;
            for &n in list.as_slice() {
                let d = self.distance(query, n);
                if d < entry.d {
                    entry = Near { d, id: n };
                }
            }
            if entry.id == before {
                return entry;
            }
        }
    }

    /// The `ef_construction` nodes closest to `query` on `layer` reachable from `entries`,
    /// closest first.
    fn search_layer(
        &self,
        query: &[f32],
        entries: &[Near],
        layer: usize,
        visited: &mut Visited,
    ) -> Vec<Near> {
        let ef = self.params.ef_construction.max(1);
        let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        let mut fresh: Vec<u32> = Vec::with_capacity(MAX_LINKS);
        for &e in entries {
            if visited.insert(e.id) {
                candidates.push(Reverse(e));
                results.push(e);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            let links = *lock(self.links(c.id, layer));
            // Request every unvisited neighbour's vector, then score them (as in the search).
            fresh.clear();
            for &n in links.as_slice() {
                if visited.insert(n) {
                    prefetch(self.vector(n));
                    fresh.push(n);
                }
            }
            for &n in &fresh {
                let d = self.distance(query, n);
                if results.len() < ef || results.peek().is_some_and(|w| d < w.d) {
                    candidates.push(Reverse(Near { d, id: n }));
                    results.push(Near { d, id: n });
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// The paper's neighbour-selection heuristic: walking `sorted` (closest first), keep a
    /// candidate only if it is closer to the base than to every candidate already kept, up to
    /// `m`. Keeps links pointing in different directions instead of `m` near-duplicates.
    fn select(&self, sorted: &[Near], m: usize) -> Vec<Near> {
        let mut kept: Vec<Near> = Vec::with_capacity(m);
        for &c in sorted {
            if kept.len() >= m {
                break;
            }
            let v = self.vector(c.id);
            if kept.iter().all(|k| self.distance(v, k.id) >= c.d) {
                kept.push(c);
            }
        }
        kept
    }

    /// Give `node` the links `chosen` on `layer`, keeping the back-links that threads inserting
    /// at the same time added meanwhile (dropping them could leave those nodes unreachable).
    fn set_links(&self, node: u32, chosen: &[Near], layer: usize, cap: usize) {
        let mut list = lock(self.links(node, layer));
        let base = self.vector(node);
        let mut all: Vec<Near> = chosen.to_vec();
        all.extend(
            list.as_slice()
                .iter()
                .filter(|id| !chosen.iter().any(|c| c.id == **id))
                .map(|&id| Near {
                    d: self.distance(base, id),
                    id,
                }),
        );
        if all.len() > cap {
            all.sort_unstable();
            all = self.select(&all, cap);
        }
        list.set(all.into_iter().map(|n| n.id));
    }

    /// Add `new` (its distance to `node` in `new.d`) to `node`'s list on `layer`, pruning the list
    /// with the selection heuristic when it would exceed `cap`.
    fn link_back(&self, node: u32, new: Near, layer: usize, cap: usize) {
        let mut list = lock(self.links(node, layer));
        if list.as_slice().contains(&new.id) {
            return;
        }
        if list.len < cap {
            list.push(new.id);
            return;
        }
        let base = self.vector(node);
        let mut candidates: Vec<Near> = list
            .as_slice()
            .iter()
            .map(|&id| Near {
                d: self.distance(base, id),
                id,
            })
            .chain(std::iter::once(new))
            .collect();
        candidates.sort_unstable();
        list.set(self.select(&candidates, cap).into_iter().map(|n| n.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let v: Vec<f32> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = dot(&v, &v).sqrt();
            data.extend(v.iter().map(|x| x / norm));
        }
        data
    }

    const PARAMS: BuildParams = BuildParams {
        m: 8,
        m0: 16,
        choose0: 12,
        ef_construction: 64,
        max_level: 15,
        seed: 7,
    };

    #[test]
    fn lists_respect_caps_and_layer0_reaches_every_node() {
        let (n, dim) = (3000, 12);
        let data = unit_rows(n, dim, 1);
        let lists = build_lists(&data, dim, n, PARAMS);
        assert_eq!(lists.len(), n);
        let levels = draw_levels(n, PARAMS);
        assert!(
            levels.iter().any(|&l| l > 0),
            "some node must reach layer 1"
        );
        let mut over_cap = 0;
        for (node, layers) in lists.iter().enumerate() {
            assert_eq!(layers.len(), levels[node] + 1, "node {node}");
            for (layer, ids) in layers.iter().enumerate() {
                let cap = if layer == 0 { PARAMS.m0 } else { PARAMS.m };
                // The reachability repair may add one link beyond the cap, rarely.
                let limit = if layer == 0 { cap + 1 } else { cap };
                assert!(
                    ids.len() <= limit,
                    "node {node} layer {layer}: {}",
                    ids.len()
                );
                over_cap += usize::from(ids.len() > cap);
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), ids.len(), "duplicate link at node {node}");
                for &id in ids {
                    assert!(id as usize != node, "self link at node {node}");
                    assert!(
                        levels[id as usize] >= layer,
                        "link to a node absent from {layer}"
                    );
                }
            }
        }
        // Every node is reachable on layer 0 from the entry point, so a search can find it.
        let top = levels.iter().max().copied().unwrap_or(0);
        let entry = levels.iter().position(|&l| l == top).unwrap_or(0);
        let mut seen = vec![false; n];
        let mut stack = vec![entry];
        seen[entry] = true;
        while let Some(v) = stack.pop() {
            for &w in &lists[v][0] {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push(w as usize);
                }
            }
        }
        let unreachable = seen.iter().filter(|&&s| !s).count();
        assert_eq!(unreachable, 0, "{unreachable} nodes unreachable on layer 0");
        assert!(over_cap <= n / 1000, "{over_cap} lists over the cap");
    }

    #[test]
    fn layer0_links_are_near_neighbours() {
        // Vectors kept next to their lists (dim 8) and left in the data (dim 70).
        for dim in [8, INLINE_DIM + 6] {
            layer0_links_are_near_neighbours_at(dim);
        }
    }

    fn layer0_links_are_near_neighbours_at(dim: usize) {
        // The links a node keeps on layer 0 are mostly among its true 16 nearest neighbours
        // (the heuristic trades some for diversity); random links would almost never be.
        let n = 2000;
        let data = unit_rows(n, dim, 2);
        let lists = build_lists(&data, dim, n, PARAMS);
        let row = |i: usize| &data[i * dim..(i + 1) * dim];
        let (mut near, mut total) = (0usize, 0usize);
        for node in (0..n).step_by(20) {
            let mut order: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != node)
                .map(|j| (-dot(row(node), row(j)), j))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<usize> = order[..16].iter().map(|p| p.1).collect();
            for &id in &lists[node][0] {
                total += 1;
                near += usize::from(truth.contains(&(id as usize)));
            }
        }
        let share = near as f64 / total as f64;
        assert!(
            share > 0.5,
            "dim {dim}: only {share:.2} of layer-0 links are true 16-NN"
        );
    }
}
