//! Verdicts on candidate pairs: the pixel check ([`super::verify`]) of each pair, asked once
//! and kept, since complete linkage asks again about most pairs. An image with chrome around
//! its picture ([`super::content`]) is checked both whole and as its picture alone: a caption
//! bar or a screenshot's interface then no longer stands between a copy and its original.

use super::candidates::{Library, Pair, Share};
use super::verify::{copy_score, Fingerprint, FINGERPRINT_SIDE};
use super::DupsOptions;
use crate::data;
use crate::error::Result;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// An image's fingerprints: of the whole image, then of its picture alone when it has chrome.
type Prints = Vec<Fingerprint>;

/// The fingerprints of a file whose picture, if it has chrome, lies at `picture`. It is decoded
/// at twice the fingerprint's side, so that a picture filling a third of a screenshot keeps its
/// detail when cut out.
fn fingerprints(path: &Path, picture: Option<Share>) -> Result<Prints> {
    let image = data::thumbnail(path, 2 * FINGERPRINT_SIDE)?;
    let mut prints = vec![Fingerprint::of_image(&image)];
    if let Some(share) = picture {
        let (x, y, w, h) = share.within(image.width(), image.height());
        prints.push(Fingerprint::of_image(&image.crop_imm(x, y, w, h)));
    }
    Ok(prints)
}

/// Whether fingerprint `k` of one image is compared with fingerprint `l` of another: all but
/// whole against whole when both have chrome. Two screenshots of one phone share their
/// interface, two letterboxed pictures their bars: whole, such images correlate whatever
/// their pictures show, while copies still match picture against picture.
fn compared(k: usize, l: usize, xs: &[Fingerprint], ys: &[Fingerprint]) -> bool {
    !(k == 0 && l == 0 && xs.len() > 1 && ys.len() > 1)
}

/// The copy check's fingerprints and each candidate pair's verdict.
pub(super) struct Verdicts {
    /// The copy score a pair needs and the fingerprints of every image in a candidate pair;
    /// `None` without the pixel check.
    check: Option<(f32, HashMap<usize, Prints>)>,
    decided: HashMap<(usize, usize), bool>,
    /// The verdicts on pairs that were no candidates, asked while linking: complete linkage
    /// may ask about one pair many times (each time a passing pair lies across its two
    /// groups), and each asking is a full pixel check.
    asked: std::sync::Mutex<HashMap<(usize, usize), bool>>,
    /// The cosine a pair that was not a candidate needs without the pixel check
    /// ([`DupsOptions::reach`]).
    reach: f32,
}

impl Verdicts {
    /// Checks every candidate pair (all pass without the pixel check).
    pub(super) fn judge(library: &Library, pairs: &[Pair], opts: &DupsOptions) -> Self {
        let check = opts.verify.map(|needed| {
            let mut involved: Vec<usize> = pairs.iter().flat_map(|&(_, i, j)| [i, j]).collect();
            involved.sort_unstable();
            involved.dedup();
            // An image that no longer decodes cannot be checked: its pairs fail.
            let bar = opts.verbosity.bar(involved.len() as u64, "prints");
            let prints: HashMap<usize, Prints> = involved
                .par_iter()
                .filter_map(|&i| {
                    let path = &library.entries[i].path;
                    let made = fingerprints(path, library.picture(i)).ok();
                    bar.inc(1);
                    Some((i, made?))
                })
                .collect();
            bar.finish_and_clear();
            (needed, prints)
        });
        let decided = match &check {
            None => pairs.iter().map(|&(_, i, j)| ((i, j), true)).collect(),
            Some((needed, prints)) => {
                let bar = opts.verbosity.bar(pairs.len() as u64, "check");
                let passed = passing_pairs(pairs, prints, *needed, &bar);
                bar.finish_and_clear();
                pairs
                    .iter()
                    .map(|&(_, i, j)| ((i, j), passed.contains(&(i, j))))
                    .collect()
            }
        };
        Verdicts {
            check,
            decided,
            asked: Default::default(),
            reach: opts.reach(),
        }
    }

    /// How many images were fingerprinted for the check.
    pub(super) fn fingerprinted(&self) -> usize {
        self.check.as_ref().map_or(0, |(_, prints)| prints.len())
    }

    /// Whether the pixel check runs at all.
    pub(super) fn checks_pixels(&self) -> bool {
        self.check.is_some()
    }

    /// The verdict on candidate pair `i < j`.
    pub(super) fn passed(&self, i: usize, j: usize) -> bool {
        self.decided.get(&(i, j)).copied().unwrap_or(false)
    }

    /// Whether `a` and `b` are copies: the kept verdict of a candidate pair, else, for a pair
    /// that was not a candidate (met while linking groups), the pixel check asked now, or
    /// without it their similarity. Two copies of one photo edited apart, one turned and one
    /// inside a screenshot, may embed far apart (cosine 0.49) and still be copies of each
    /// other: with the check, the cosine does not stand between their two groups.
    pub(super) fn duplicates(&self, library: &Library, a: usize, b: usize) -> bool {
        let pair = (a.min(b), a.max(b));
        match self.decided.get(&pair) {
            Some(&verdict) => verdict,
            None if self.checks_pixels() => {
                // A poisoned lock only means another thread panicked mid-insert; the map of
                // verdicts is still whole.
                let lock = || self.asked.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(&verdict) = lock().get(&pair) {
                    return verdict;
                }
                let verdict = self.passes(a, b);
                lock().insert(pair, verdict);
                verdict
            }
            None => library.similarity(a, b) >= self.reach,
        }
    }

    fn passes(&self, a: usize, b: usize) -> bool {
        match &self.check {
            Some((needed, _)) => self.copy(a, b, *needed).is_some_and(|s| s >= *needed),
            None => true,
        }
    }

    /// The copy score of `a` and `b`, the best over their fingerprints (the search stops once
    /// it reaches `enough`); −1 when an image could not be fingerprinted, `None` without the
    /// pixel check.
    pub(super) fn copy(&self, a: usize, b: usize, enough: f32) -> Option<f32> {
        let (_, prints) = self.check.as_ref()?;
        let (Some(xs), Some(ys)) = (prints.get(&a), prints.get(&b)) else {
            return Some(-1.0);
        };
        let mut best = -1.0f32;
        for (k, x) in xs.iter().enumerate() {
            for (l, y) in ys.iter().enumerate() {
                if !compared(k, l, xs, ys) {
                    continue;
                }
                best = best.max(copy_score(x, y, enough));
                if best >= enough {
                    return Some(best);
                }
            }
        }
        Some(best)
    }
}

/// The candidate pairs (index order within each) whose copy score reaches `needed` with any of
/// their fingerprints. The check runs both ways round (either image may be the crop of the
/// other); the work is grouped by the image whose windows are compared, so that each image's
/// windows are made once.
fn passing_pairs(
    pairs: &[Pair],
    prints: &HashMap<usize, Prints>,
    needed: f32,
    bar: &indicatif::ProgressBar,
) -> HashSet<(usize, usize)> {
    let mut against: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(_, i, j) in pairs {
        against.entry(i).or_default().push(j);
        against.entry(j).or_default().push(i);
    }
    against
        .par_iter()
        .flat_map_iter(|(&big, smalls)| {
            let hosts = prints.get(&big).map_or(&[][..], Vec::as_slice);
            let windows: Vec<_> = hosts.iter().map(Fingerprint::windows).collect();
            smalls
                .iter()
                .filter(move |&&small| {
                    // Each pair is checked both ways round and counted once.
                    if big < small {
                        bar.inc(1);
                    }
                    let guests = prints.get(&small).map_or(&[][..], Vec::as_slice);
                    windows.iter().enumerate().any(|(k, w)| {
                        guests.iter().enumerate().any(|(l, p)| {
                            compared(k, l, hosts, guests) && w.match_whole(p, needed) >= needed
                        })
                    })
                })
                .map(move |&small| (big.min(small), big.max(small)))
                .collect::<Vec<_>>()
        })
        .collect()
}
