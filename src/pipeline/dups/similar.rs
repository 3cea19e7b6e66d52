//! Similar shots (`dups --similar`): groups of distinct photos of one scene, a burst or a
//! re-take, kept apart from the groups of copies and reported for review only: no action ever
//! applies to them.
//!
//! They come from the same candidate pairs as the copies: pairs whose cosine reaches the
//! similar threshold but which failed the pixel check. An image that is another's copy is left
//! out (the copy kept stands for it), and groups form by complete linkage at that cosine, as
//! copies do, so a slow pan cannot chain a whole album into one group. Each group is ordered
//! oldest first (the order the shots were taken, where the files keep it), each member with its
//! cosine to the first.

use super::candidates::{Library, Pair};
use super::linking::complete_linkage;
use super::ordering::pixels;
use super::verdicts::Verdicts;
use super::{Group, Member};
use std::collections::HashSet;

/// The similar-shot groups among `pairs` (all candidate pairs, most similar first) at cosine
/// `threshold`: pairs that are not copies (`verdicts`), neither image in `copies` (images that
/// are another's copy), and not said apart.
pub(super) fn similar_groups(
    library: &Library,
    pairs: &[Pair],
    verdicts: &Verdicts,
    copies: &HashSet<usize>,
    threshold: f32,
    said_apart: impl Fn(usize, usize) -> bool,
) -> Vec<Group> {
    let eligible =
        |a: usize, b: usize| !copies.contains(&a) && !copies.contains(&b) && !said_apart(a, b);
    let similar: Vec<Pair> = pairs
        .iter()
        .filter(|&&(s, i, j)| s >= threshold && !verdicts.passed(i, j) && eligible(i, j))
        .copied()
        .collect();
    let clusters = complete_linkage(library.len(), &similar, |a, b| {
        eligible(a, b) && library.similarity(a, b) >= threshold
    });
    let mut groups: Vec<Group> = clusters
        .into_iter()
        .map(|ids| oldest_first(library, &ids))
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.members[0].path.cmp(&b.members[0].path))
    });
    groups
}

/// One group, oldest file first, then by path; every member with its cosine to the first.
fn oldest_first(library: &Library, ids: &[usize]) -> Group {
    let mut ids = ids.to_vec();
    ids.sort_by(|&a, &b| {
        let (ea, eb) = (&library.entries[a], &library.entries[b]);
        ea.mtime_ns.cmp(&eb.mtime_ns).then(ea.path.cmp(&eb.path))
    });
    let first = ids[0];
    let members = ids
        .iter()
        .map(|&i| {
            let e = &library.entries[i];
            Member {
                path: e.path.clone(),
                score: if i == first {
                    1.0
                } else {
                    library.similarity(first, i)
                },
                copy_score: None,
                pixels: pixels(&e.path),
                size: e.size,
                mtime_ns: e.mtime_ns,
            }
        })
        .collect();
    Group { members }
}
