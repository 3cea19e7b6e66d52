//! Verdicts on candidate pairs: the pixel check ([`super::verify`]) of each pair, asked once
//! and kept, since complete linkage asks again about most pairs.

use super::candidates::{Library, Pair};
use super::verify::{copy_score, Fingerprint};
use super::DupsOptions;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// The copy check's fingerprints and each candidate pair's verdict.
pub(super) struct Verdicts {
    /// The copy score a pair needs and the fingerprints of every image in a candidate pair;
    /// `None` without the pixel check.
    check: Option<(f32, HashMap<usize, Fingerprint>)>,
    decided: HashMap<(usize, usize), bool>,
    threshold: f32,
}

impl Verdicts {
    /// Checks every candidate pair (all pass without the pixel check).
    pub(super) fn judge(library: &Library, pairs: &[Pair], opts: &DupsOptions) -> Self {
        let check = opts.verify.map(|needed| {
            let mut involved: Vec<usize> = pairs.iter().flat_map(|&(_, i, j)| [i, j]).collect();
            involved.sort_unstable();
            involved.dedup();
            // An image that no longer decodes cannot be checked: its pairs fail.
            let prints: HashMap<usize, Fingerprint> = involved
                .par_iter()
                .filter_map(|&i| Some((i, Fingerprint::load(&library.entries[i].path).ok()?)))
                .collect();
            (needed, prints)
        });
        let decided = match &check {
            None => pairs.iter().map(|&(_, i, j)| ((i, j), true)).collect(),
            Some((needed, prints)) => {
                let passed = passing_pairs(pairs, prints, *needed);
                pairs
                    .iter()
                    .map(|&(_, i, j)| ((i, j), passed.contains(&(i, j))))
                    .collect()
            }
        };
        Verdicts {
            check,
            decided,
            threshold: opts.threshold,
        }
    }

    /// Whether the pixel check runs at all.
    pub(super) fn checks_pixels(&self) -> bool {
        self.check.is_some()
    }

    /// The verdict on candidate pair `i < j`.
    pub(super) fn passed(&self, i: usize, j: usize) -> bool {
        self.decided.get(&(i, j)).copied().unwrap_or(false)
    }

    /// Whether `a` and `b` are copies: the kept verdict of a candidate pair, else both tests
    /// asked now (a pair that was not a candidate, met while linking groups).
    pub(super) fn duplicates(&self, library: &Library, a: usize, b: usize) -> bool {
        match self.decided.get(&(a.min(b), a.max(b))) {
            Some(&verdict) => verdict,
            None => library.similarity(a, b) >= self.threshold && self.passes(a, b),
        }
    }

    fn passes(&self, a: usize, b: usize) -> bool {
        match &self.check {
            Some((needed, _)) => self.copy(a, b, *needed).is_some_and(|s| s >= *needed),
            None => true,
        }
    }

    /// The copy score of `a` and `b` (the search stops once it reaches `enough`); −1 when an
    /// image could not be fingerprinted, `None` without the pixel check.
    pub(super) fn copy(&self, a: usize, b: usize, enough: f32) -> Option<f32> {
        let (_, prints) = self.check.as_ref()?;
        match (prints.get(&a), prints.get(&b)) {
            (Some(x), Some(y)) => Some(copy_score(x, y, enough)),
            _ => Some(-1.0),
        }
    }
}

/// The candidate pairs (index order within each) whose copy score reaches `needed`. The check
/// runs both ways round (either image may be the crop of the other); the work is grouped by
/// the image whose windows are compared, so that each image's windows are made once.
fn passing_pairs(
    pairs: &[Pair],
    prints: &HashMap<usize, Fingerprint>,
    needed: f32,
) -> HashSet<(usize, usize)> {
    let mut against: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(_, i, j) in pairs {
        against.entry(i).or_default().push(j);
        against.entry(j).or_default().push(i);
    }
    against
        .par_iter()
        .flat_map_iter(|(&big, smalls)| {
            let windows = prints.get(&big).map(Fingerprint::windows);
            smalls
                .iter()
                .filter(move |&&small| match (&windows, prints.get(&small)) {
                    (Some(w), Some(p)) => w.match_whole(p, needed) >= needed,
                    _ => false,
                })
                .map(move |&small| (big.min(small), big.max(small)))
                .collect::<Vec<_>>()
        })
        .collect()
}
