//! Near-duplicate groups from an index's own vectors, and what to do with them.
//!
//! Candidates come from each image's nearest neighbours at cosine >= the threshold, and its few
//! closest images down to a lower cosine (searched, by default, with its views too: turned,
//! mirrored, its centre, deep centre and corners, its picture without chrome).
//! Each candidate pair then passes a pixel check ([`verify`]): aligned grey levels of a copy
//! correlate almost perfectly, those of another photo of the same scene do not; this is what
//! keeps precision while the cosine threshold is low enough to catch crops and captions.
//! Groups are merged most similar pair first, and two groups merge only if *every* pair across
//! them is a copy (complete linkage; with the pixel check off, at least the threshold): a
//! group's diameter is bounded, so a chain of images each close to the next can never pull
//! unrelated images into one giant group. Each group is ordered best copy first: most pixels,
//! then largest file, then oldest, then path; every member carries its cosine to that first
//! one.
//!
//! The steps, one file each: [`candidates`] (neighbour search with each image's views, the
//! picture inside its chrome found by [`content`]), [`verdicts`] (the pixel check of each
//! candidate pair), [`linking`] (complete linkage), [`ordering`] (best copy first); [`similar`]
//! groups similar shots that are not copies; [`actions`] moves, hard-links and undoes;
//! [`against`] finds the copies of new photos among a library's instead of grouping one store.

mod actions;
mod against;
mod candidates;
mod content;
mod ignored;
mod linking;
mod ordering;
mod similar;
mod verdicts;
mod verify;

pub use actions::{hardlink_duplicates, move_duplicates, undo, Outcome, Undone};
pub use against::find_copies_against;
pub use ignored::{record_ignored, Ignored, IGNORED_FILE};
pub use verify::{copy_score, Fingerprint};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::progress::Verbosity;
use crate::store::Store;
use candidates::Library;
use std::path::PathBuf;
use verdicts::Verdicts;

/// Cosine at or above which two images are candidates unless told otherwise, and the copy
/// score a candidate pair needs, measured on `examples/dups_bench.rs` (docs/DUPS.md).
pub const DEFAULT_THRESHOLD: f32 = 0.85;
pub const DEFAULT_COPY_SCORE: f32 = 0.93;
/// Below the threshold, each image's this many most similar images are candidates too, down to
/// [`DEFAULT_CLOSEST_COSINE`] (a little further for one standing apart from the rest): a copy
/// under a caption bar, or a deep crop, is its original's nearest image long before its cosine
/// reaches 0.85 (docs/DUPS.md, "The closest images").
pub const DEFAULT_CLOSEST: usize = 2;
pub const DEFAULT_CLOSEST_COSINE: f32 = 0.65;
/// The default cosine threshold without the pixel check: the cosine alone has to hold
/// precision up (best F1 of the cosine alone on the same benchmark).
pub const UNVERIFIED_THRESHOLD: f32 = 0.97;

/// How groups are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DupsOptions {
    /// Every pair at or above this cosine is a candidate.
    pub threshold: f32,
    /// Each image's this many most similar images are candidates too when their cosine
    /// reaches `closest_cosine` (only with the pixel check, which decides).
    pub closest: usize,
    pub closest_cosine: f32,
    /// Also search with each image's views: turned a quarter, mirrored, its centres and
    /// corners, and its picture cut out of a border, caption bar or screenshot (decodes every
    /// image once more and embeds eight to twelve views; needs the index's model).
    pub rotations: bool,
    /// The copy score ([`copy_score`]) a candidate pair needs; `None`: cosine alone.
    pub verify: Option<f32>,
    /// Neighbours examined per image (candidates).
    pub neighbours: usize,
    /// Graph search beam width.
    pub ef: usize,
    /// Also group similar shots (bursts, re-takes) at this cosine: [`Found::similar`].
    pub similar: Option<f32>,
    /// Progress bars of the long stages (views, search, pixel check) on stderr, or none.
    pub verbosity: Verbosity,
}

impl Default for DupsOptions {
    fn default() -> Self {
        DupsOptions {
            threshold: DEFAULT_THRESHOLD,
            closest: DEFAULT_CLOSEST,
            closest_cosine: DEFAULT_CLOSEST_COSINE,
            rotations: true,
            verify: Some(DEFAULT_COPY_SCORE),
            neighbours: 16,
            ef: 64,
            similar: None,
            verbosity: Verbosity::default(),
        }
    }
}

impl DupsOptions {
    /// The lowest cosine a candidate pair may have: the threshold, or the closest images'
    /// cosine when that is lower and the pixel check runs (bar a closest image standing apart
    /// from the rest, up to [`candidates::STANDING_APART`] under it).
    pub fn reach(&self) -> f32 {
        if self.closest_searched() > 0 {
            self.threshold.min(self.closest_cosine)
        } else {
            self.threshold
        }
    }

    /// How many closest images below the threshold are candidates: none without the pixel
    /// check, or when the threshold is already at or below their cosine.
    pub fn closest_searched(&self) -> usize {
        match self.verify {
            Some(_) if self.closest_cosine < self.threshold => self.closest,
            _ => 0,
        }
    }
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub path: PathBuf,
    /// Cosine to the group's first (kept) member; 1 for that one.
    pub score: f32,
    /// Copy score against the first member (1 for that one); `None` without the pixel check.
    pub copy_score: Option<f32>,
    /// Width × height (0 if the header cannot be read).
    pub pixels: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A group of near-duplicates, best copy first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub members: Vec<Member>,
}

impl Group {
    pub fn keep(&self) -> &Member {
        &self.members[0]
    }

    pub fn duplicates(&self) -> &[Member] {
        &self.members[1..]
    }
}

fn check_threshold(opts: &DupsOptions) -> Result<()> {
    for (name, value) in [
        ("threshold", opts.threshold),
        ("closest cosine", opts.closest_cosine),
    ] {
        if !(value > 0.0 && value <= 1.0) {
            return Err(Error::Usage(format!(
                "{name} {value} must be above 0 and at most 1"
            )));
        }
    }
    Ok(())
}

/// What [`find_groups`] found: the groups of copies, largest first, and, with
/// [`DupsOptions::similar`], the groups of similar shots (never copies of each other), for review;
/// and what finding them took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub groups: Vec<Group>,
    pub similar: Vec<Group>,
    pub work: Work,
}

/// What each stage of a search for duplicates did and how long it took: where the time of a
/// large library goes, and how many candidates its images bring (docs/DUPS.md). Written as
/// is as the `work` field of `dups --json`'s summary (docs/JSON.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Work {
    /// Images searched for copies (the new ones with `--against`).
    pub images: usize,
    /// Of those, the images with chrome around their picture (a border, caption bar or
    /// screenshot's interface), whose picture cut out of it was searched too (0 without the
    /// views).
    pub pictures: usize,
    /// Decoding the images again and embedding their views (0 without them).
    pub views_seconds: f64,
    /// The neighbour searches of every image and view.
    pub search_seconds: f64,
    /// Pairs the searches found at the lowest cosine looked at.
    pub pairs_found: usize,
    /// Of those, the pairs the pixel check was asked about.
    pub candidate_pairs: usize,
    /// Images fingerprinted for the pixel check.
    pub fingerprinted: usize,
    /// Fingerprints and the pixel check of every candidate pair (0 without the check).
    pub check_seconds: f64,
    /// Candidate pairs that passed the check.
    pub copy_pairs: usize,
    /// Everything, from loading the store to the ordered groups.
    pub seconds: f64,
}

impl Work {
    /// The account of a search of `images` images, with the seconds of its views, search and
    /// check stages, the pairs it found, the candidates checked and their verdicts; `seconds`
    /// is set when the search ends.
    fn tally(
        library: &Library,
        images: usize,
        [views_seconds, search_seconds, check_seconds]: [f64; 3],
        pairs_found: usize,
        candidates: &[candidates::Pair],
        verdicts: &Verdicts,
    ) -> Work {
        Work {
            images,
            pictures: (0..library.len())
                .filter(|&i| library.picture(i).is_some())
                .count(),
            views_seconds,
            search_seconds,
            pairs_found,
            candidate_pairs: candidates.len(),
            fingerprinted: verdicts.fingerprinted(),
            check_seconds,
            copy_pairs: candidates
                .iter()
                .filter(|&&(_, i, j)| verdicts.passed(i, j))
                .count(),
            seconds: 0.0,
        }
    }
}

/// The clock of a search's stages: seconds of each stage since the last, and of the whole.
struct Laps {
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Laps {
    fn start() -> Self {
        let now = std::time::Instant::now();
        Laps {
            start: now,
            last: now,
        }
    }

    /// Seconds since the last lap (or the start), kept to the millisecond.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let seconds = now - self.last;
        self.last = now;
        millis(seconds)
    }

    /// Seconds since the start, kept to the millisecond.
    fn total(&self) -> f64 {
        millis(self.start.elapsed())
    }
}

/// The seconds of loading the store that went to its views: all of them with views, none
/// without.
fn views_only(loading: f64, opts: &DupsOptions) -> f64 {
    if opts.rotations {
        loading
    } else {
        0.0
    }
}

fn millis(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The near-duplicate groups of the index, largest first. `model` (the index's own) is needed
/// for [`DupsOptions::rotations`]. No group holds a pair that `ignored` says is not a duplicate.
pub fn find_groups(
    store: &dyn Store,
    model: Option<&Model>,
    opts: &DupsOptions,
    ignored: &Ignored,
) -> Result<Found> {
    check_threshold(opts)?;
    let mut laps = Laps::start();
    let library = Library::load(store, model, opts)?;
    let loading = laps.lap();
    // Similar shots may sit below the copies' reach: the search reaches the lower of the two,
    // the pixel check only the copies' candidates.
    let floor = opts.similar.map_or(opts.reach(), |s| s.min(opts.reach()));
    let candidates = candidates::candidate_pairs(store, &library, floor, opts)?;
    let mut pairs = candidates::copy_candidates(&candidates, opts);
    let searching = laps.lap();
    let verdicts = Verdicts::judge(&library, &pairs, opts);
    let mut work = Work::tally(
        &library,
        library.len(),
        [views_only(loading, opts), searching, laps.lap()],
        candidates.pairs.len(),
        &pairs,
        &verdicts,
    );
    let said_apart =
        |a: usize, b: usize| ignored.contains(&library.entries[a].path, &library.entries[b].path);
    pairs.retain(|&(_, i, j)| verdicts.passed(i, j) && !said_apart(i, j));
    let duplicates = |a: usize, b: usize| !said_apart(a, b) && verdicts.duplicates(&library, a, b);
    let clusters = linking::complete_linkage(library.len(), &pairs, duplicates);
    let clusters = linking::joined_through_hubs(clusters, &pairs, duplicates, said_apart);
    let groups = ordering::ordered_groups(&library, &verdicts, clusters);
    let similar = match opts.similar {
        None => Vec::new(),
        Some(threshold) => {
            let copied: std::collections::HashSet<&std::path::Path> = groups
                .iter()
                .flat_map(|g| g.duplicates().iter().map(|m| m.path.as_path()))
                .collect();
            let copies = (0..library.len())
                .filter(|&i| copied.contains(library.entries[i].path.as_path()))
                .collect();
            similar::similar_groups(
                &library,
                &candidates.pairs,
                &verdicts,
                &copies,
                threshold,
                said_apart,
            )
        }
    };
    work.seconds = laps.total();
    Ok(Found {
        groups,
        similar,
        work,
    })
}
