//! The plain-text form of the command reports the library types ([`imgsearch::json`]): each
//! beside the record it shows, so a command builds one value and the printer picks the form.

use super::printer::{escaped, shown, Report};
use imgsearch::json::{
    DupsRecord, ErrorRecord, EvalRecord, ForgetRecord, GridRecord, IgnoreRecord, IndexRecord,
    Place, ProbeRecord, ProjectionRecord, ServeRecord, SkipRecord, StoreInitRecord,
    TrainEvalRecord, TrainRecord, UndoRecord, VerifyRecord, WarningRecord, WorkerRecord,
};

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

impl Report for DupsRecord {
    fn text(&self) -> String {
        let (groups, copies) = (self.groups, self.duplicates);
        let similar = match self.similar {
            Some(n) => format!("; {n} groups of similar shots, for review"),
            None => String::new(),
        };
        let done = match (self.log.path(), self.action) {
            (Some(log), _) => format!(
                "{groups} groups, {copies} copies moved; undo with: imgsearch dups --undo {}",
                shown(log)
            ),
            (None, "hardlink") => {
                format!("{groups} groups, {copies} copies examined for hard links")
            }
            _ => format!(
                "{groups} groups, {copies} copies (a dry run: --move DEST would move the copies, \
                 --hardlink link identical ones)"
            ),
        };
        let work = &self.work;
        format!(
            "{done}{similar} ({} images, {} candidate pairs checked, {:.1} s)",
            work.images, work.candidate_pairs, work.seconds
        )
    }
}

impl Report for UndoRecord {
    fn text(&self) -> String {
        format!("{} files restored, {} not", self.restored.len(), self.left)
    }
}

impl Report for WorkerRecord {
    fn text(&self) -> String {
        format!(
            "worker {}: {} images embedded, {} skipped, {} batches in {:.1} s, into {}",
            self.worker, self.embedded, self.skipped, self.batches, self.seconds, self.store
        )
    }
}

impl Report for StoreInitRecord {
    fn text(&self) -> String {
        format!(
            "{} now partitions vector({}) images over {} shards: index into it with --store",
            self.store,
            self.dim,
            self.shards.len()
        )
    }
}

impl Report for SkipRecord {
    fn text(&self) -> String {
        format!(
            "skipped {}: {}",
            shown(self.path.path()),
            escaped(&self.reason)
        )
    }
}

impl Report for WarningRecord {
    fn text(&self) -> String {
        format!("warning: {}", escaped(&self.message))
    }
}

impl Report for ErrorRecord {
    fn text(&self) -> String {
        format!("error: {}", escaped(&self.message))
    }
}

impl Report for ForgetRecord {
    fn text(&self) -> String {
        let folders: Vec<String> = self.folders.iter().map(|f| shown(f.path.path())).collect();
        format!(
            "forgot {}: {} entries removed, {} left in {}",
            folders.join(", "),
            self.removed,
            self.total,
            shown(self.index.path())
        )
    }
}

impl Report for GridRecord {
    fn text(&self) -> String {
        format!("{} rows written to {}", self.rows, shown(self.out.path()))
    }
}

impl Report for EvalRecord {
    /// The scores as a table: a line per class, then all of them.
    fn text(&self) -> String {
        let mut lines = vec![format!(
            "{}: {} images, {} queries, {} skipped",
            self.what, self.images, self.queries, self.skipped
        )];
        let (pk, knn) = (format!("P@{}", self.k), format!("kNN-{}", self.knn));
        lines.push(format!(
            "{:<16} {:>7} {:>8} {:>8}",
            "class", "images", pk, knn
        ));
        for c in &self.classes {
            lines.push(format!(
                "{:<16} {:>7} {:>8.4} {:>8.4}",
                c.class, c.images, c.precision_at_k, c.knn_accuracy
            ));
        }
        lines.push(format!(
            "{:<16} {:>7} {:>8.4} {:>8.4}",
            "all", self.queries, self.precision_at_k, self.knn_accuracy
        ));
        lines.join("\n")
    }
}

impl Report for VerifyRecord {
    fn text(&self) -> String {
        let verdict = if self.ok {
            "OK".to_string()
        } else {
            let segments = self.damaged.len() - usize::from(self.manifest_damaged);
            let what = match (self.manifest_damaged, segments) {
                (true, 0) => "the manifest".to_string(),
                (true, n) => format!("the manifest and {n} of {} segments", self.segments),
                (false, n) => format!("{n} of {} segments", self.segments),
            };
            format!(
                "DAMAGED ({what}): run `imgsearch index --repair` to drop the damaged files and \
                 embed their images again"
            )
        };
        format!(
            "index {}: generation {}, {} segments, {} entries, {} files checked: {verdict}",
            shown(self.index.path()),
            self.generation,
            self.segments,
            self.entries,
            self.files
        )
    }
}

impl Report for TrainRecord {
    /// The run, the label-free probe, the search projection and, with `--eval`, the scores
    /// before and after.
    fn text(&self) -> String {
        let mut text = format!(
            "trained on {} images ({} skipped) from {}, {} epochs, {} steps in {:.1} s ({:.1} \
             images/s){}; model in {}",
            self.images,
            self.skipped,
            self.start.as_deref().unwrap_or("an earlier run"),
            self.epochs,
            self.steps,
            self.seconds,
            self.images_per_second,
            if self.out_of_time {
                ", stopped at the time budget"
            } else {
                ""
            },
            shown(self.model.path())
        );
        text.push_str(&probe_text(&self.probe, self.epochs));
        if let Some(projection) = &self.projection {
            text.push_str(&projection_text(projection));
        }
        if let Some(eval) = &self.eval {
            text.push_str(&train_eval_text(eval));
        }
        text
    }
}

/// The probe's lines: before the run and the model kept (with the last epoch's scores when
/// the kept model is an earlier one).
fn probe_text(probe: &ProbeRecord, epochs: usize) -> String {
    let kept = probe.kept.unwrap_or(probe.last);
    let which = match probe.kept_epoch {
        Some(epoch) if epoch != epochs => format!(
            " (epoch {epoch}, the probe's best; the last scored {:.3} / {:.3})",
            probe.last.survival_at_9, probe.last.self_top1
        ),
        Some(_) => String::new(),
        None => " (the model kept from before this run)".to_string(),
    };
    format!(
        "\nlabel-free probe on {} of the images (their 9 neighbours kept by an augmented view; \
         the view finding its image first):\n  before {:.3} / {:.3}\n  after  {:.3} / {:.3}{which}",
        probe.images,
        probe.before.survival_at_9,
        probe.before.self_top1,
        kept.survival_at_9,
        kept.self_top1,
    )
}

fn projection_text(p: &ProjectionRecord) -> String {
    if p.fitted {
        format!(
            "\nsearch projection: {} of the {} embedding dims, fitted on {} images",
            p.dim, p.embedding_dim, p.images
        )
    } else {
        format!(
            "\nsearch projection: not fitted ({} images, fewer than the {} that {} components \
             need); the model searches its {}-dim embedding as it is",
            p.images,
            imgsearch::train::min_fit_images(p.dim),
            p.dim,
            p.embedding_dim
        )
    }
}

fn train_eval_text(eval: &TrainEvalRecord) -> String {
    format!(
        "\n{}: P@{} {:.4} -> {:.4}, kNN-{} {:.4} -> {:.4}",
        shown(&eval.dir),
        eval.k,
        eval.before.precision_at_k,
        eval.after.precision_at_k,
        eval.knn,
        eval.before.knn_accuracy,
        eval.after.knn_accuracy
    )
}
