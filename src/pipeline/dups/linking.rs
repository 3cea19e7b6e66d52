//! Complete linkage: candidate pairs merged into groups most similar pair first, two groups
//! only when every pair across them is a duplicate, so a group's diameter stays bounded and a
//! chain of images each close to the next cannot pull unrelated images into one group.

use super::candidates::Pair;

/// The groups (of entry numbers) that `pairs`, sorted most similar first, link among `n`
/// images; `duplicates(a, b)` is asked of every pair across two groups before they merge.
pub(super) fn complete_linkage(
    n: usize,
    pairs: &[Pair],
    duplicates: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut group_of: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    for &(_, i, j) in pairs {
        let (gi, gj) = (group_of[i], group_of[j]);
        if gi == gj {
            continue;
        }
        let close = members[gi]
            .iter()
            .all(|&a| members[gj].iter().all(|&b| duplicates(a, b)));
        if !close {
            continue;
        }
        let (big, small) = if members[gi].len() >= members[gj].len() {
            (gi, gj)
        } else {
            (gj, gi)
        };
        let moved = std::mem::take(&mut members[small]);
        for &m in &moved {
            group_of[m] = big;
        }
        members[big].extend(moved);
    }
    members.into_iter().filter(|m| m.len() > 1).collect()
}
