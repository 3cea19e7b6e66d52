//! One function per command: call the library with the parsed options and hand what comes
//! back to the printer. No work of the library's is done here.

use super::args::{
    Baseline, Cli, Command, DupsArgs, EvalArgs, ForgetArgs, GridArgs, IndexArgs, QueryArgs,
    ServeArgs, StoreInitArgs, TrainArgs, VerifyArgs, WorkerArgs,
};
use super::printer::{shown, Printer};
use super::Failure;
use candle_core::Device;
use clap::CommandFactory;
use imgsearch::index;
use imgsearch::json;
use imgsearch::model::{Model, ModelSource};
use imgsearch::pipeline::{self, grid, jobs, EvalOptions, EvalReport};
use imgsearch::progress::Verbosity;
use imgsearch::store::{self, postgres::PgQueue, Location};
use imgsearch::train;
use std::path::Path;
use std::process::ExitCode;

type Outcome = Result<ExitCode, Failure>;

pub fn run(cli: Cli, printer: &mut Printer) -> Outcome {
    let flags = cli.global;
    let verbosity = flags.verbosity();
    if let Command::Completions(args) = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut Cli::command(), "imgsearch", &mut script);
        printer.bytes(&script)?;
        return Ok(ExitCode::SUCCESS);
    }
    let device = flags.device.resolve()?;
    match cli.command {
        Command::Train(args) => train_model(args, verbosity, &device, printer),
        Command::Index(args) => index_folders(&args, verbosity, &device, printer),
        Command::Forget(args) => forget(&args, printer),
        Command::Query(args) => query(&args, &device, printer),
        Command::Grid(args) => contact_sheet(&args, printer),
        Command::Eval(args) => eval(&args, verbosity, &device, printer),
        Command::Verify(args) => verify(&args, printer),
        Command::Dups(args) => dups(&args, &device, printer),
        Command::Serve(args) => serve(args, verbosity, device, printer),
        Command::Worker(args) => worker(&args, verbosity, &device, printer),
        Command::StoreInit(args) => store_init(&args, &device, printer),
        Command::Completions(_) => Ok(ExitCode::SUCCESS),
    }
}

fn train_model(args: TrainArgs, verbosity: Verbosity, device: &Device, p: &mut Printer) -> Outcome {
    let labelled = args.eval.clone();
    let opts = args.options(verbosity);
    let scored = |model: &Model, p: &mut Printer| -> imgsearch::Result<Option<EvalReport>> {
        let Some(dir) = &labelled else {
            return Ok(None);
        };
        let eval_opts = EvalOptions {
            verbosity,
            ..EvalOptions::new(dir.clone())
        };
        pipeline::evaluate_model(model, &eval_opts, &mut |e| p.event(e)).map(Some)
    };
    let before = match &labelled {
        Some(_) => scored(&train::start_model(&opts, device)?, p)?,
        None => None,
    };
    let report = train::train(&opts, device, &mut |e| p.event(e))?;
    let after = match &labelled {
        Some(_) => scored(
            &Model::load(&ModelSource::Path(report.model.clone()), device)?,
            p,
        )?,
        None => None,
    };
    let eval = before.as_ref().zip(after.as_ref());
    let mut text = format!(
        "trained on {} images ({} skipped) from {}, {} epochs, {} steps in {:.1} s ({:.1} images/s){}; model in {}",
        report.images,
        report.skipped,
        report.start.as_deref().unwrap_or("an earlier run"),
        report.epochs,
        report.steps,
        report.seconds,
        report.images_per_second,
        if report.out_of_time { ", stopped at the time budget" } else { "" },
        shown(&report.model)
    );
    let probe = &report.probe;
    let kept = probe.kept.unwrap_or(probe.last);
    text.push_str(&format!(
        "\nlabel-free probe on {} of the images (their 9 neighbours kept by an augmented view; the view finding its image first):\n  before {:.3} / {:.3}\n  after  {:.3} / {:.3}{}",
        probe.before.images,
        probe.before.survival_at_9,
        probe.before.self_top1,
        kept.survival_at_9,
        kept.self_top1,
        match probe.kept_epoch {
            Some(epoch) if epoch != report.epochs => format!(" (epoch {epoch}, the probe's best; the last scored {:.3} / {:.3})", probe.last.survival_at_9, probe.last.self_top1),
            Some(_) => String::new(),
            None => " (the model kept from before this run)".to_string(),
        }
    ));
    match report.projection {
        Some(p) if p.fitted => text.push_str(&format!(
            "\nsearch projection: {} of the {} embedding dims, fitted on {} images",
            p.dim, p.embedding_dim, p.images
        )),
        Some(p) => text.push_str(&format!(
            "\nsearch projection: not fitted ({} images, fewer than the {} that {} components need); the model searches its {}-dim embedding as it is",
            p.images,
            train::min_fit_images(p.dim),
            p.dim,
            p.embedding_dim
        )),
        None => {}
    }
    if let Some((before, after)) = eval {
        text.push_str(&format!(
            "\n{}: P@{} {:.4} -> {:.4}, kNN-{} {:.4} -> {:.4}",
            shown(labelled.as_deref().unwrap_or(Path::new(""))),
            after.k,
            before.precision_at_k,
            after.precision_at_k,
            after.knn,
            before.knn_accuracy,
            after.knn_accuracy
        ));
    }
    p.summary(json::train_summary(&report, eval), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn index_folders(
    args: &IndexArgs,
    verbosity: Verbosity,
    device: &Device,
    p: &mut Printer,
) -> Outcome {
    let model = Model::load(&ModelSource::from_flag(args.model.clone()), device)?;
    let opts = args.options(verbosity);
    let location = args.store.location(&opts.index);
    let worker = jobs::WorkerOptions {
        pause: std::time::Duration::from_millis(args.batch_delay_ms),
        ..jobs::WorkerOptions::new(opts.batch)
    };
    let writer = pipeline::writer(&location, (!args.queue_only).then_some(worker));
    let s = writer.index_folders(&model, &opts, &mut |e| p.event(e))?;
    if let Some(repair) = &s.repair {
        if let Some(reason) = &repair.manifest_lost {
            p.note(&format!(
                "repair: the manifest was unreadable ({reason}); the index starts afresh"
            ));
        }
        if let Some(reason) = &repair.manifest_recovered {
            p.note(&format!(
                "repair: the manifest was damaged ({reason}); its segments and folders were read from it"
            ));
        }
        for d in &repair.dropped {
            let files = d.files.join(", ");
            p.note(&format!(
                "repair: dropped {files} ({} entries): {}",
                d.entries, d.reason
            ));
        }
    }
    if s.links_not_followed > 0 {
        p.note(&format!(
            "{} symbolic links not followed (use --follow to follow them)",
            s.links_not_followed
        ));
    }
    p.report(&json::IndexRecord::new(&location, &s, args.queue_only))?;
    Ok(ExitCode::SUCCESS)
}

fn forget(args: &ForgetArgs, p: &mut Printer) -> Outcome {
    let writer = pipeline::writer(&Location::Local(args.index.clone()), None);
    let s = writer.forget(&args.dirs)?;
    let folders: Vec<String> = s.folders.iter().map(|f| shown(f)).collect();
    let text = format!(
        "forgot {}: {} entries removed, {} left in {}",
        folders.join(", "),
        s.removed,
        s.total,
        shown(&args.index)
    );
    p.summary(json::forget_summary(&args.index, &s), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn query(args: &QueryArgs, device: &Device, p: &mut Printer) -> Outcome {
    let store = store::open(&args.store.location(&args.index))?;
    let model = pipeline::model_for_store(store.as_ref(), args.model.as_deref(), device)?;
    let answers = pipeline::query(&model, store.as_ref(), &args.images, &args.search())?;
    let mut failed = false;
    for answer in &answers {
        match &answer.result {
            Ok(hits) => p.hits(&answer.query, hits)?,
            Err(message) => {
                failed = true;
                p.error(message, Some(&answer.query))?;
            }
        }
    }
    if let Some(path) = &args.grid {
        let sheet = grid::contact_sheet(&pipeline::query_rows(&answers), pipeline::DEFAULT_TILE);
        grid::save(&sheet, path)?;
    }
    if p.json {
        p.record(&json::query_summary(&answers))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn contact_sheet(args: &GridArgs, p: &mut Printer) -> Outcome {
    let store = store::open(&args.store.location(&args.index))?;
    let rows = pipeline::random_rows(
        store.as_ref(),
        args.rows as usize,
        args.k as usize,
        args.seed,
    )?;
    grid::save(&grid::contact_sheet(&rows, args.tile), &args.out)?;
    if p.json {
        for row in &rows {
            p.record(&json::RowRecord::new(row))?;
        }
    }
    let text = format!("{} rows written to {}", rows.len(), shown(&args.out));
    p.summary(json::grid_summary(rows.len(), &args.out), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn eval(args: &EvalArgs, verbosity: Verbosity, device: &Device, p: &mut Printer) -> Outcome {
    let model = Model::load(&ModelSource::from_flag(args.model.clone()), device)?;
    let opts = args.options(verbosity);
    let mut events = |e: imgsearch::progress::Event<'_>| p.event(e);
    let report = match args.baseline {
        None => pipeline::evaluate_model(&model, &opts, &mut events)?,
        Some(Baseline::Random) => {
            let random = Model::random(model.config.clone(), 0, device)?;
            pipeline::evaluate_model(&random, &opts, &mut events)?
        }
        Some(Baseline::Pixels) => {
            pipeline::evaluate_pixels(model.preprocess(), &opts, &mut events)?
        }
    };
    if p.json {
        p.record(&json::eval_summary(&report))?;
        return Ok(ExitCode::SUCCESS);
    }
    p.line(&format!(
        "{}: {} images, {} queries, {} skipped",
        report.what, report.images, report.queries, report.skipped
    ))?;
    let (pk, knn) = (format!("P@{}", report.k), format!("kNN-{}", report.knn));
    p.line(&format!(
        "{:<16} {:>7} {:>8} {:>8}",
        "class", "images", pk, knn
    ))?;
    for c in &report.classes {
        p.line(&format!(
            "{:<16} {:>7} {:>8.4} {:>8.4}",
            c.class, c.images, c.precision_at_k, c.knn_accuracy
        ))?;
    }
    p.line(&format!(
        "{:<16} {:>7} {:>8.4} {:>8.4}",
        "all", report.queries, report.precision_at_k, report.knn_accuracy
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs, p: &mut Printer) -> Outcome {
    let report = index::verify_report(&args.index)?;
    let verdict = if report.is_ok() {
        "OK".to_string()
    } else {
        for damage in &report.damaged {
            p.error(damage, None)?;
        }
        let segments = report.damaged.len() - usize::from(report.manifest_damaged);
        let what = match (report.manifest_damaged, segments) {
            (true, 0) => "the manifest".to_string(),
            (true, n) => format!("the manifest and {n} of {} segments", report.segments),
            (false, n) => format!("{n} of {} segments", report.segments),
        };
        format!(
            "DAMAGED ({what}): run `imgsearch index --repair` to drop the damaged files and embed their images again"
        )
    };
    let text = format!(
        "index {}: generation {}, {} segments, {} entries, {} files checked: {verdict}",
        shown(&args.index),
        report.generation,
        report.segments,
        report.entries,
        report.files
    );
    // The verdict is the result of this command: printed even with --quiet.
    if p.json {
        p.record(&json::verify_summary(&args.index, &report))?;
    } else {
        p.line(&text)?;
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn dups(args: &DupsArgs, device: &Device, p: &mut Printer) -> Outcome {
    if let Some(log) = &args.undo {
        return undo_dups(log, p);
    }
    let mut ignored = pipeline::dups::Ignored::load(&args.index)?;
    if !args.ignore.is_empty() {
        return ignore_pairs(args, &mut ignored, p);
    }
    let store = store::open_verified(&args.store.location(&args.index))?;
    let opts = dups_options(args);
    let model = if opts.rotations {
        Some(pipeline::model_for_store(store.as_ref(), None, device)?)
    } else {
        None
    };
    let groups = match &args.against {
        None => pipeline::dups::find_groups(store.as_ref(), model.as_ref(), &opts, &ignored)?,
        Some(library) => {
            let location = match library.to_str() {
                Some(url) if store::is_postgres_url(url) => store::Location::Postgres(url.into()),
                _ => store::Location::Local(library.clone()),
            };
            let library_store = store::open_verified(&location)?;
            let ignored = match library_store.folder() {
                Some(folder) => ignored.merged(pipeline::dups::Ignored::load(folder)?),
                None => ignored,
            };
            pipeline::dups::find_copies_against(
                store.as_ref(),
                library_store.as_ref(),
                model.as_ref(),
                &opts,
                &ignored,
            )?
        }
    };
    let done = act_on_duplicates(args, &groups, &store.roots())?;
    print_groups(args, &groups, done.outcomes.as_deref(), p)?;
    if !args.csv {
        let text = dups_text(&groups, &done);
        let record = json::dups_summary(&groups, &opts, done.action, done.log.as_deref());
        p.summary(record, &text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `dups --ignore A B ...`: every pair among the images named is recorded as "not duplicates"
/// in the index folder, so later runs never group them.
fn ignore_pairs(
    args: &DupsArgs,
    ignored: &mut pipeline::dups::Ignored,
    p: &mut Printer,
) -> Outcome {
    let added = ignored.add_group(&args.ignore)?;
    ignored.save(&args.index)?;
    p.report(&json::IgnoreRecord::new(added, ignored.len()))?;
    Ok(ExitCode::SUCCESS)
}

/// `dups --undo LOG`: moves the copies a `--move` run moved back where they were.
fn undo_dups(log: &Path, p: &mut Printer) -> Outcome {
    let pipeline::dups::Undone { restored, left } = pipeline::dups::undo(log)?;
    for (path, why) in &left {
        p.error(&format!("{} not restored: {why}", shown(path)), Some(path))?;
    }
    let text = format!("{} files restored, {} not", restored.len(), left.len());
    p.summary(json::undo_summary(&restored, left.len()), &text)?;
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The finder's options from the flags: a lower threshold when the pixel check is off.
fn dups_options(args: &DupsArgs) -> pipeline::dups::DupsOptions {
    use pipeline::dups::{DupsOptions, DEFAULT_THRESHOLD, UNVERIFIED_THRESHOLD};
    DupsOptions {
        threshold: args.threshold.unwrap_or(if args.no_verify {
            UNVERIFIED_THRESHOLD
        } else {
            DEFAULT_THRESHOLD
        }),
        rotations: !args.no_rotations,
        verify: (!args.no_verify).then_some(args.copy_score),
        ..DupsOptions::default()
    }
}

/// What was done with the copies: per group and copy an outcome (none for a dry run), the
/// action's name, and the undo log of a move.
struct Acted {
    outcomes: Option<Vec<Vec<pipeline::dups::Outcome>>>,
    action: &'static str,
    log: Option<std::path::PathBuf>,
}

/// Moves or hard-links the copies as the flags ask; nothing for a dry run.
fn act_on_duplicates(
    args: &DupsArgs,
    groups: &[pipeline::dups::Group],
    roots: &[std::path::PathBuf],
) -> imgsearch::Result<Acted> {
    use pipeline::dups;
    Ok(if let Some(dest) = &args.r#move {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let log = dest.join(format!("imgsearch-undo-{stamp}.jsonl"));
        let done = dups::move_duplicates(groups, roots, dest, &log)?;
        Acted {
            outcomes: Some(done),
            action: "move",
            log: Some(log),
        }
    } else if args.hardlink {
        Acted {
            outcomes: Some(dups::hardlink_duplicates(groups)?),
            action: "hardlink",
            log: None,
        }
    } else {
        Acted {
            outcomes: None,
            action: "none",
            log: None,
        }
    })
}

/// Each group as a JSON record, CSV rows, or a `group N keep PATH` line and its copies.
fn print_groups(
    args: &DupsArgs,
    groups: &[pipeline::dups::Group],
    outcomes: Option<&[Vec<pipeline::dups::Outcome>]>,
    p: &mut Printer,
) -> Result<(), Failure> {
    use pipeline::dups::Outcome as Done;
    if args.csv {
        p.line("group,keep,path,score,action")?;
    }
    for (g, group) in groups.iter().enumerate() {
        let done = outcomes.map(|o| o[g].as_slice());
        if p.json {
            p.record(&json::GroupRecord::new(g + 1, group, done))?;
            continue;
        }
        let keep = shown(&group.keep().path);
        if !args.csv {
            p.line(&format!("group {} keep {keep}", g + 1))?;
        }
        for (d, dup) in group.duplicates().iter().enumerate() {
            let action = match done.and_then(|o| o.get(d)) {
                None | Some(Done::Reported) => "none".to_string(),
                Some(Done::Moved(to)) => format!("moved to {}", shown(to)),
                Some(Done::Linked) => "linked".to_string(),
                Some(Done::Left(why)) => format!("left: {why}"),
            };
            let line = if args.csv {
                format!(
                    "{},{},{},{:.4},{}",
                    g + 1,
                    csv_field(&keep),
                    csv_field(&shown(&dup.path)),
                    dup.score,
                    csv_field(&action)
                )
            } else {
                format!("  {:.4}  {}  [{action}]", dup.score, shown(&dup.path))
            };
            p.line(&line)?;
        }
    }
    Ok(())
}

/// The closing line of `dups`: how many groups and copies, and what was done with them.
fn dups_text(groups: &[pipeline::dups::Group], done: &Acted) -> String {
    let copies: usize = groups.iter().map(|g| g.duplicates().len()).sum();
    match (&done.log, done.action) {
        (Some(log), _) => format!(
            "{} groups, {copies} copies moved; undo with: imgsearch dups --undo {}",
            groups.len(),
            shown(log)
        ),
        (None, "hardlink") => format!("{} groups, {copies} copies examined for hard links", groups.len()),
        _ => format!(
            "{} groups, {copies} copies (a dry run: --move DEST would move the copies, --hardlink link identical ones)",
            groups.len()
        ),
    }
}

fn worker(args: &WorkerArgs, verbosity: Verbosity, device: &Device, p: &mut Printer) -> Outcome {
    let Some(url) = &args.store.store else {
        return Err(imgsearch::Error::Usage(
            "a worker needs a PostgreSQL store: --store URL or IMGSEARCH_STORE".into(),
        )
        .into());
    };
    let mut queue = PgQueue::open(url)?;
    let model = {
        let store = store::PgStore::open(url)?;
        pipeline::model_for_store(&store, args.model.as_deref(), device)?
    };
    let opts = args.options(verbosity);
    let s = jobs::work(&mut queue, &model, &opts, &mut |e| p.event(e))?;
    if s.abandoned > 0 {
        p.note(&format!(
            "{} queued files were given up on: their workers died {} times each",
            s.abandoned,
            imgsearch::store::postgres::MAX_ATTEMPTS
        ));
    }
    let text = format!(
        "worker {}: {} images embedded, {} skipped, {} batches in {:.1} s, into {}",
        opts.name,
        s.embedded,
        s.skipped.len(),
        s.batches,
        s.seconds,
        queue.describe()
    );
    p.summary(
        json::worker_summary(&queue.describe(), &opts.name, &s),
        &text,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn store_init(args: &StoreInitArgs, device: &Device, p: &mut Printer) -> Outcome {
    let Some(url) = &args.store.store else {
        return Err(imgsearch::Error::Usage(
            "store-init needs the coordinator: --store URL or IMGSEARCH_STORE".into(),
        )
        .into());
    };
    let model = Model::load(&ModelSource::from_flag(args.model.clone()), device)?;
    let dim = model.config.embedding_dim();
    imgsearch::store::postgres::create_sharded(url, &args.shards, dim)?;
    let shards: Vec<String> = args
        .shards
        .iter()
        .map(|s| imgsearch::store::postgres::redacted(s))
        .collect();
    let text = format!(
        "{} now partitions vector({dim}) images over {} shards: index into it with --store",
        imgsearch::store::postgres::redacted(url),
        shards.len()
    );
    let record = json::store_init_summary(&imgsearch::store::postgres::redacted(url), &shards, dim);
    p.summary(record, &text)?;
    Ok(ExitCode::SUCCESS)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn serve(args: ServeArgs, verbosity: Verbosity, device: Device, p: &mut Printer) -> Outcome {
    let bind = args.bind;
    let location = args.store.location(&args.index);
    let server = crate::serve::bind(crate::serve::ServeOptions {
        store: location.clone(),
        model: args.model,
        bind,
        max_upload: args.max_upload,
        thumbnails: args.thumbnails,
        thumbnail_bytes: args.thumbnail_cache as u64,
        workers: args.workers as usize,
        device,
        quiet: verbosity.quiet,
    })?;
    let addr = server.local_addr()?;
    if !addr.ip().is_loopback() {
        // Said even with --quiet: it is about who can see the user's photos.
        eprintln!(
            "warning: listening on {addr}: the page, the API and every indexed image are \
             reachable from other machines, without authentication"
        );
    }
    let url = format!("http://{addr}/");
    p.report(&json::ServeRecord::new(
        &location,
        url.clone(),
        server.images(),
    ))?;
    p.flush()?;
    if args.open {
        if let Err(e) = std::process::Command::new("xdg-open").arg(&url).spawn() {
            p.note(&format!("cannot open a browser ({e}): open {url} yourself"));
        }
    }
    server.run()?;
    Ok(ExitCode::SUCCESS)
}
