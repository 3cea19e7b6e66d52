//! Complete linkage: candidate pairs merged into groups most similar pair first, two groups
//! only when every pair across them is a duplicate, so a group's diameter stays bounded and a
//! chain of images each close to the next cannot pull unrelated images into one group.
//! [`joined_through_hubs`] then lets an image left alone join a group through a hub: a member
//! that is a duplicate of it and of every other member. Two copies of one original, a crop of
//! its left side and one of its right, are no copies of each other, yet both are copies of the
//! original; the hub keeps the diameter at two steps.

use super::candidates::Pair;
use std::collections::{HashMap, HashSet};

/// The groups (of entry numbers) that `pairs`, sorted most similar first, link among `n`
/// images; `duplicates(a, b)` is asked of every pair across two groups before they merge.
pub(super) fn complete_linkage(
    n: usize,
    pairs: &[Pair],
    duplicates: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut group_of: Vec<usize> = (0..n).collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    // The groups each group was found apart from. Groups only grow, and the pair that kept two
    // apart stays across them, so they stay apart: on a library of many alike images, asking
    // again each time another passing pair lies across them made linking the longest stage.
    let mut apart: HashMap<usize, HashSet<usize>> = HashMap::new();
    for &(_, i, j) in pairs {
        let (gi, gj) = (group_of[i], group_of[j]);
        if gi == gj || apart.get(&gi).is_some_and(|a| a.contains(&gj)) {
            continue;
        }
        let close = members[gi]
            .iter()
            .all(|&a| members[gj].iter().all(|&b| duplicates(a, b)));
        if !close {
            apart.entry(gi).or_default().insert(gj);
            apart.entry(gj).or_default().insert(gi);
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
        // What was apart from the smaller group is apart from the merged one.
        for other in apart.remove(&small).unwrap_or_default() {
            if let Some(theirs) = apart.get_mut(&other) {
                theirs.remove(&small);
                theirs.insert(big);
            }
            apart.entry(big).or_default().insert(other);
        }
    }
    members.into_iter().filter(|m| m.len() > 1).collect()
}

/// `groups` (from [`complete_linkage`] over `pairs`), each joined by the images left alone that
/// one of its members, a hub, is a duplicate of, when the hub is a duplicate of every other
/// member too, and no member was said apart from it (`apart`). `pairs` are the passing pairs,
/// most similar first: each image joins at most one group, through its most similar hub.
pub(super) fn joined_through_hubs(
    groups: Vec<Vec<usize>>,
    pairs: &[Pair],
    duplicates: impl Fn(usize, usize) -> bool,
    apart: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut groups = groups;
    let group_of: std::collections::HashMap<usize, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, members)| members.iter().map(move |&m| (m, g)))
        .collect();
    let mut joined = std::collections::HashSet::new();
    // Whether each member is a hub, asked again only once its group has grown.
    let mut hubs: std::collections::HashMap<usize, (usize, bool)> = Default::default();
    for &(_, i, j) in pairs {
        let (single, hub, group) = match (group_of.get(&i), group_of.get(&j)) {
            (None, Some(&g)) => (i, j, g),
            (Some(&g), None) => (j, i, g),
            _ => continue,
        };
        if joined.contains(&single) || groups[group].iter().any(|&m| apart(single, m)) {
            continue;
        }
        // `hub` is a duplicate of `single`: the pair passed.
        let size = groups[group].len();
        let is_hub = match hubs.get(&hub) {
            Some(&(seen, verdict)) if seen == size => verdict,
            _ => {
                let verdict = groups[group]
                    .iter()
                    .all(|&m| m == hub || duplicates(hub, m));
                hubs.insert(hub, (size, verdict));
                verdict
            }
        };
        if is_hub {
            joined.insert(single);
            groups[group].push(single);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::{complete_linkage, joined_through_hubs};

    /// An original (0) with two copies (1, 2) that are not copies of each other, and a fourth
    /// image (3) that copies copy 1 alone: complete linkage groups 0 with one copy; the other
    /// copy joins through the original, and image 3 finds no hub (1 is no copy of 2).
    #[test]
    fn an_image_left_alone_joins_through_a_member_that_copies_every_other() {
        let duplicate = [(0, 1), (0, 2), (1, 3)];
        let duplicates = |a: usize, b: usize| duplicate.contains(&(a.min(b), a.max(b)));
        let pairs = [(0.9, 0, 1), (0.8, 0, 2), (0.7, 1, 3)];
        let groups = complete_linkage(4, &pairs, duplicates);
        assert_eq!(groups, [vec![0, 1]]);
        let mut joined = joined_through_hubs(groups.clone(), &pairs, duplicates, |_, _| false);
        joined[0].sort_unstable();
        assert_eq!(joined, [vec![0, 1, 2]]);
        // Said apart from copy 1, image 2 joins no group; copy 1, a copy of every member then,
        // is image 3's hub.
        let apart = |a: usize, b: usize| (a.min(b), a.max(b)) == (1, 2);
        let mut joined = joined_through_hubs(groups, &pairs, duplicates, apart);
        joined[0].sort_unstable();
        assert_eq!(joined, [vec![0, 1, 3]]);
    }

    /// Two groups of three (0-2 and 3-5, each all copies of one another) with every pair
    /// across them passing but one (2, 3): the first pair across finds them apart, and the
    /// eight other pairs across ask nothing more, so the pair that keeps them apart is checked
    /// once, not nine times.
    #[test]
    fn groups_found_apart_are_not_asked_about_again() {
        let asked = std::cell::Cell::new(0);
        let duplicates = |a: usize, b: usize| {
            let across = (a < 3) != (b < 3);
            asked.set(asked.get() + usize::from(across));
            !across || (a.min(b), a.max(b)) != (2, 3)
        };
        let mut pairs = vec![(0.99, 0, 1), (0.99, 1, 2), (0.99, 0, 2)];
        pairs.extend([(0.99, 3, 4), (0.99, 4, 5), (0.99, 3, 5)]);
        pairs.extend((0..3).flat_map(|a| (3..6).map(move |b| (0.9, a, b))));
        let groups = complete_linkage(6, &pairs, duplicates);
        assert_eq!(groups, [vec![0, 1, 2], vec![3, 4, 5]]);
        // The first pair across, (0, 3), asks its group's pairs in order until (2, 3) fails.
        assert_eq!(asked.get(), 7);
    }
}
