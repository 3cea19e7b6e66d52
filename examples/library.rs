//! imgsearch as a library: index a folder with the bundled model, then ask for the neighbours
//! of one of its images, through the same calls the command line makes.
//!
//!   cargo run --release --example library -- [FOLDER [QUERY_IMAGE]]
//!
//! FOLDER defaults to the test fixtures (200 CIFAR-10 images), QUERY_IMAGE to the first image
//! found there. The index goes to a temporary folder that is removed at the end.

use imgsearch::index::SearchOptions;
use imgsearch::model::{Model, ModelSource};
use imgsearch::pipeline::{self, IndexOptions};
use imgsearch::progress::Event;
use imgsearch::store::{self, Location};
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let folder = args
        .next()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test"));

    // The bundled default model, on the CPU.
    let model = Model::load(&ModelSource::Default, &candle_core::Device::Cpu)?;

    // Index the folder. Unreadable images are skipped and reported through the callback;
    // they never stop the run.
    let index_dir = std::env::temp_dir().join(format!("imgsearch-library-{}", std::process::id()));
    let options = IndexOptions::new(index_dir.clone(), vec![folder.clone()]);
    let mut on_event = |event: Event<'_>| {
        if let Event::Skipped { path, reason } = event {
            eprintln!("skipped {}: {reason}", path.display());
        }
    };
    let summary = pipeline::index_folders(&model, &options, &mut on_event)?;
    println!(
        "indexed {} images from {} in {:.1} s",
        summary.added,
        folder.display(),
        summary.seconds
    );

    // Query it: every front end searches through the `Store` interface, which here is the
    // local index folder just written.
    let store = store::open(&Location::Local(index_dir.clone()))?;
    let query = match args.next() {
        Some(image) => image,
        None => first_image(&folder)?,
    };
    let search = SearchOptions {
        k: 5,
        ..SearchOptions::default()
    };
    for answer in pipeline::query(&model, store.as_ref(), &[query], &search)? {
        println!("neighbours of {}:", answer.query.display());
        match answer.result {
            Ok(hits) => {
                for hit in hits {
                    println!("  {:.4}  {}", hit.score, hit.path.display());
                }
            }
            Err(reason) => println!("  {reason}"),
        }
    }
    drop(store);
    std::fs::remove_dir_all(&index_dir)?;
    Ok(())
}

/// The first file under `folder` by name, looking one level of class folders deep.
fn first_image(folder: &Path) -> std::io::Result<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_file() {
            return Ok(entry);
        }
        if let Ok(found) = first_image(&entry) {
            return Ok(found);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no image under {}", folder.display()),
    ))
}
