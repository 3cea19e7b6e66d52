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
        Command::Dups(args) => dups(&args, verbosity, &device, printer),
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
    let eval = labelled
        .as_deref()
        .zip(before.as_ref().zip(after.as_ref()))
        .map(|(dir, (before, after))| (dir, before, after));
    p.report(&json::TrainRecord::new(&report, eval))?;
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
    p.report(&json::ForgetRecord::new(&args.index, &s))?;
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
        p.record(&json::QuerySummaryRecord::new(&answers))?;
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
    p.report(&json::GridRecord::new(rows.len(), &args.out))?;
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
    // The scores are the result of this command: printed even with --quiet.
    p.result(&json::EvalRecord::new(&report))?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs, p: &mut Printer) -> Outcome {
    let report = index::verify_report(&args.index)?;
    for damage in &report.damaged {
        p.error(damage, None)?;
    }
    // The verdict is the result of this command: printed even with --quiet.
    p.result(&json::VerifyRecord::new(&args.index, &report))?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn dups(args: &DupsArgs, verbosity: Verbosity, device: &Device, p: &mut Printer) -> Outcome {
    if let Some(log) = &args.undo {
        return undo_dups(log, p);
    }
    if !args.ignore.is_empty() {
        let (added, total) = pipeline::dups::record_ignored(&args.index, &args.ignore)?;
        p.report(&json::IgnoreRecord::new(added, total))?;
        return Ok(ExitCode::SUCCESS);
    }
    let ignored = pipeline::dups::Ignored::load(&args.index)?;
    let store = store::open_verified(&args.store.location(&args.index))?;
    let opts = dups_options(args, verbosity);
    let model = if opts.rotations {
        Some(pipeline::model_for_store(store.as_ref(), None, device)?)
    } else {
        None
    };
    let found = match &args.against {
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
    let done = act_on_duplicates(args, &found.groups, &store.roots())?;
    print_groups(args, &found.groups, done.outcomes.as_deref(), p)?;
    print_similar(&found.similar, p)?;
    if !args.csv {
        p.report(&json::DupsRecord::new(
            &found,
            &opts,
            done.action,
            done.log.as_deref(),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `dups --undo LOG`: moves the copies a `--move` run moved back where they were.
fn undo_dups(log: &Path, p: &mut Printer) -> Outcome {
    let pipeline::dups::Undone { restored, left } = pipeline::dups::undo(log)?;
    for (path, why) in &left {
        p.error(&format!("{} not restored: {why}", shown(path)), Some(path))?;
    }
    p.report(&json::UndoRecord::new(&restored, left.len()))?;
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The finder's options from the flags: a lower threshold when the pixel check is off.
fn dups_options(args: &DupsArgs, verbosity: Verbosity) -> pipeline::dups::DupsOptions {
    use pipeline::dups::{DupsOptions, DEFAULT_THRESHOLD, UNVERIFIED_THRESHOLD};
    DupsOptions {
        threshold: args.threshold.unwrap_or(if args.no_verify {
            UNVERIFIED_THRESHOLD
        } else {
            DEFAULT_THRESHOLD
        }),
        closest: args.closest,
        closest_cosine: args.closest_cosine,
        rotations: !args.no_rotations,
        verify: (!args.no_verify).then_some(args.copy_score),
        similar: args.similar,
        verbosity,
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
/// The groups of similar shots, after the copies: each member with its cosine to the first.
fn print_similar(groups: &[pipeline::dups::Group], p: &mut Printer) -> Result<(), Failure> {
    for (g, group) in groups.iter().enumerate() {
        if p.json {
            p.record(&json::SimilarRecord::new(g + 1, group))?;
            continue;
        }
        p.line(&format!("similar {} (for review)", g + 1))?;
        for member in &group.members {
            p.line(&format!("  {:.4}  {}", member.score, shown(&member.path)))?;
        }
    }
    Ok(())
}

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
    p.report(&json::WorkerRecord::new(
        queue.describe(),
        opts.name.clone(),
        &s,
    ))?;
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
    p.report(&json::StoreInitRecord::new(
        imgsearch::store::postgres::redacted(url),
        shards,
        dim,
    ))?;
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
