//! The order of a group and of the groups: the best copy first (most pixels, then largest
//! file, then oldest, then path), each member with its cosine and copy score against it;
//! largest groups first.

use super::candidates::Library;
use super::verdicts::Verdicts;
use super::{Group, Member};
use std::path::Path;

/// The groups of entry numbers as ordered [`Group`]s, largest first.
pub(super) fn ordered_groups(
    library: &Library,
    verdicts: &Verdicts,
    clusters: Vec<Vec<usize>>,
) -> Vec<Group> {
    let mut groups: Vec<Group> = clusters
        .into_iter()
        .map(|ids| ordered_group(library, verdicts, &ids))
        .collect();
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.keep().path.cmp(&b.keep().path))
    });
    groups
}

/// One group, best copy first, every other member scored against it.
fn ordered_group(library: &Library, verdicts: &Verdicts, ids: &[usize]) -> Group {
    let mut list: Vec<(usize, Member)> = ids
        .iter()
        .map(|&i| {
            let e = &library.entries[i];
            let member = Member {
                path: e.path.clone(),
                score: 1.0,
                copy_score: verdicts.checks_pixels().then_some(1.0),
                pixels: pixels(&e.path),
                size: e.size,
                mtime_ns: e.mtime_ns,
            };
            (i, member)
        })
        .collect();
    list.sort_by(|(_, a), (_, b)| {
        b.pixels
            .cmp(&a.pixels)
            .then(b.size.cmp(&a.size))
            .then(a.mtime_ns.cmp(&b.mtime_ns))
            .then(a.path.cmp(&b.path))
    });
    let keep = list[0].0;
    for (i, m) in list.iter_mut().skip(1) {
        m.score = library.similarity(keep, *i);
        // The best alignment, not just "enough".
        m.copy_score = verdicts.copy(keep, *i, f32::INFINITY);
    }
    Group {
        members: list.into_iter().map(|(_, m)| m).collect(),
    }
}

/// Width × height from the image's header (no decoding), or 0.
pub(super) fn pixels(path: &Path) -> u64 {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .ok()
        .and_then(|r| r.into_dimensions().ok())
        .map_or(0, |(w, h)| u64::from(w) * u64::from(h))
}
