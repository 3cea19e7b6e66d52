//! The bounds of the numbers a search or a duplicate scan takes, checked here once for every
//! front end: the command line parses its flags through these, the HTTP API its query strings,
//! so a value one refuses the other refuses too, in the same words. Each check returns the
//! value, or what is wrong with it (the caller names the flag or parameter).

/// Most neighbours the HTTP API returns for one request.
pub const MAX_K: usize = 1000;

/// A cosine bound (`--min-score`, `min_score`): a finite number from -1 to 1.
pub fn min_score(value: f32) -> Result<f32, String> {
    if (-1.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be a cosine from -1 to 1, not {value}"))
    }
}

/// The cosine at which two images are candidate duplicates (`dups --threshold`, `threshold`):
/// above 0 and at most 1.
pub fn threshold(value: f32) -> Result<f32, String> {
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!("must be above 0 and at most 1, not {value}"))
    }
}

/// The copy score a candidate pair needs (`dups --copy-score`): a correlation, from -1 to 1.
pub fn copy_score(value: f32) -> Result<f32, String> {
    if (-1.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be a correlation from -1 to 1, not {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_and_nan_is_refused() {
        assert!(min_score(-1.0).is_ok() && min_score(1.0).is_ok());
        assert!(min_score(2.0).is_err() && min_score(f32::NAN).is_err());
        assert!(threshold(1.0).is_ok() && threshold(0.0).is_err());
        assert!(threshold(f32::NAN).is_err() && copy_score(f32::INFINITY).is_err());
        assert!(copy_score(5.0).is_err() && copy_score(0.9).is_ok());
    }
}
