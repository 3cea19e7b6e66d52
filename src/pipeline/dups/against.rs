//! New photos against a library: which images of one store (the new photos) are copies of an
//! image of another (the library), without grouping the library's own images.
//!
//! Each new image is searched in the library with its vector and its turned and mirrored views
//! (both quarter turns, since the library's images bring no views of their own); candidate pairs
//! pass the same pixel check as [`super::find_groups`]'s. A new image that passes with one or more
//! library images forms one group with the closest of them: the library's image first (the one
//! kept), the new image as its copy, so that `--move` only ever moves new photos.

use super::candidates::{copy_candidates, probe_pairs, FoundAs, Library, Neighbours, Pair};
use super::verdicts::Verdicts;
use super::{views_only, DupsOptions, Found, Group, Ignored, Laps, Member, Work};
use crate::error::{Error, Result};
use crate::index::SearchOptions;
use crate::model::Model;
use crate::store::Store;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// The new images of `new` that copy an image of `library`, each with its closest library copy
/// (first), ordered by the new image's path, as [`Found::groups`]. No pair that `ignored` holds
/// is reported.
pub fn find_copies_against(
    new: &dyn Store,
    library: &dyn Store,
    model: Option<&Model>,
    opts: &DupsOptions,
    ignored: &Ignored,
) -> Result<Found> {
    super::check_threshold(opts)?;
    if new.meta().model_id != library.meta().model_id {
        return Err(Error::Usage(format!(
            "{} and {} were indexed with different models ({} and {}): their vectors cannot be \
             compared; index the new photos with the library's model (--model)",
            new.describe(),
            library.describe(),
            new.meta().model_name,
            library.meta().model_name
        )));
    }
    let mut laps = Laps::start();
    let fresh = Library::load_with_turns(new, model, opts, true)?;
    let loading = laps.lap();
    let new_count = fresh.len();
    let joined = fresh.followed_by(library.entries_with_vectors()?);
    // Reading the library's vectors counts in the whole only, not in a stage.
    laps.lap();
    let found = candidate_pairs(library, &joined, new_count, opts)?;
    let pairs = copy_candidates(&found, opts);
    let searching = laps.lap();
    let verdicts = Verdicts::judge(&joined, &pairs, opts);
    let mut work = Work::tally(
        &joined,
        new_count,
        [views_only(loading, opts), searching, laps.lap()],
        found.pairs.len(),
        &pairs,
        &verdicts,
    );
    let mut best: HashMap<usize, (f32, usize)> = HashMap::new();
    for &(similarity, fresh_id, old) in &pairs {
        let (a, b) = (&joined.entries[fresh_id].path, &joined.entries[old].path);
        if !verdicts.passed(fresh_id, old) || ignored.contains(a, b) {
            continue;
        }
        // Pairs come most similar first: the first that passes is the closest copy.
        best.entry(fresh_id).or_insert((similarity, old));
    }
    let mut groups: Vec<Group> = best
        .into_iter()
        .map(|(fresh_id, (similarity, old))| Group {
            members: vec![
                member(&joined, old, 1.0, verdicts.checks_pixels().then_some(1.0)),
                member(
                    &joined,
                    fresh_id,
                    similarity,
                    verdicts.copy(old, fresh_id, f32::INFINITY),
                ),
            ],
        })
        .collect();
    groups.sort_by(|a, b| a.members[1].path.cmp(&b.members[1].path));
    work.seconds = laps.total();
    Ok(Found {
        groups,
        similar: Vec::new(),
        work,
    })
}

/// Pairs (similarity, new id, library id) of each new image (ids `..new_count` of `joined`)
/// with the library's images (ids `new_count..`) at or above the reach ([`DupsOptions::reach`]),
/// most similar first.
/// A file in both stores is not its own copy.
fn candidate_pairs(
    library: &dyn Store,
    joined: &Library,
    new_count: usize,
    opts: &DupsOptions,
) -> Result<Neighbours> {
    let id_of: HashMap<&Path, usize> = joined.entries[new_count..]
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_path(), new_count + i))
        .collect();
    let search = SearchOptions {
        k: opts.neighbours,
        ef: opts.ef.max(opts.neighbours),
        exact: false,
        min_score: None,
    };
    let bar = opts.verbosity.bar(new_count as u64, "search");
    let found: Vec<Vec<(Pair, FoundAs)>> = (0..new_count)
        .into_par_iter()
        .map(|i| -> Result<Vec<(Pair, FoundAs)>> {
            let mut pairs = Vec::new();
            for (probe, closest) in joined.probes(i, opts.closest_searched()) {
                pairs.extend(probe_pairs(
                    i,
                    &library.search(probe, &search)?,
                    |hit| {
                        (hit.path != joined.entries[i].path)
                            .then(|| id_of.get(hit.path.as_path()).copied())
                            .flatten()
                    },
                    |j| joined.similarity(i, j),
                    (opts.reach(), opts.closest_cosine),
                    closest,
                ));
            }
            bar.inc(1);
            Ok(pairs)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    Ok(Neighbours::from_found(found))
}

fn member(joined: &Library, id: usize, score: f32, copy_score: Option<f32>) -> Member {
    let entry = &joined.entries[id];
    Member {
        path: entry.path.clone(),
        score,
        copy_score,
        pixels: super::ordering::pixels(&entry.path),
        size: entry.size,
        mtime_ns: entry.mtime_ns,
    }
}
