//! The pixel check's copy score of pairs of image files, whole against whole, as `imgsearch
//! dups` computes it for a candidate pair (docs/DUPS.md, step 2): for looking into why a pair
//! is or is not called a copy. `dups` also compares the picture cut out of an image's chrome;
//! and a pair that scores as a copy here may still be missing from its groups, when the
//! embedding never made it a candidate or complete linkage kept it apart.
//!
//!     cargo run --release --example copy_score -- A.jpg B.jpg [C.jpg D.jpg ...]
//!
//! Prints one line per pair: the score and the two paths.

#[path = "common/fail.rs"]
mod fail;

use fail::{bail, Result};
use imgsearch::pipeline::dups::{copy_score, Fingerprint};

fn main() -> Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || !files.len().is_multiple_of(2) {
        bail!("usage: copy_score A B [C D ...] (pairs of image files)");
    }
    for pair in files.chunks(2) {
        let [a, b] = [&pair[0], &pair[1]].map(|f| {
            image::open(f)
                .map(|img| Fingerprint::of_image(&img))
                .map_err(|e| format!("{f}: {e}"))
        });
        let score = copy_score(&a?, &b?, f32::INFINITY);
        println!("{score:.4}  {}  {}", pair[0], pair[1]);
    }
    Ok(())
}
