//! The plain-text form of the command reports the library types ([`imgsearch::json`]): each
//! beside the record it shows, so a command builds one value and the printer picks the form.

use super::printer::{escaped, Report};
use imgsearch::json::{IgnoreRecord, IndexRecord, Place, ServeRecord};

/// How text names a store: its folder as paths are shown, or the URL without its password.
fn place(place: &Place) -> String {
    match (&place.index, &place.store) {
        (Some(index), _) => escaped(index),
        (None, Some(store)) => store.clone(),
        (None, None) => String::new(),
    }
}

impl Report for IndexRecord {
    fn text(&self) -> String {
        if self.queued {
            format!(
                "{} files queued in {} ({} new, {} changed), {} removed, {} skipped, {} images \
                 stored: `imgsearch worker --store URL` embeds them",
                self.added + self.updated,
                place(&self.place),
                self.added,
                self.updated,
                self.removed,
                self.skipped,
                self.total
            )
        } else {
            format!(
                "{} images in {}: {} added, {} updated, {} removed, {} skipped, {:.1} s",
                self.total,
                place(&self.place),
                self.added,
                self.updated,
                self.removed,
                self.skipped,
                self.seconds
            )
        }
    }
}

impl Report for ServeRecord {
    fn text(&self) -> String {
        format!(
            "serving {} images of {} at {} (Ctrl-C stops)",
            self.images,
            place(&self.place),
            self.url
        )
    }
}

impl Report for IgnoreRecord {
    fn text(&self) -> String {
        format!(
            "{} pairs ignored from now on, {} in all",
            self.ignored_new, self.ignored_total
        )
    }
}
