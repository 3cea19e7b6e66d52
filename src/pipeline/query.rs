//! Asking a store (the local index or PostgreSQL): load the model it was built with, embed the
//! query images in batches and search for each. A query image that cannot be read is an answer
//! of its own (an error message), not the end of the others.

use super::indexing::DEFAULT_MODEL_NAME;
use crate::data;
use crate::error::{Error, Result};
use crate::index::{Hit, IndexError, SearchOptions};
use crate::model::{Model, ModelSource};
use crate::store::Store;
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Query images embedded per batch.
pub const QUERY_BATCH: usize = 256;

/// Loads the model a store's vectors came from, or `requested` if given; either way it must
/// be the store's model.
pub fn model_for_store(
    store: &dyn Store,
    requested: Option<&Path>,
    device: &Device,
) -> Result<Model> {
    let meta = store.meta();
    let source = match requested {
        Some(path) => ModelSource::Path(path.to_path_buf()),
        None if meta.model_name == DEFAULT_MODEL_NAME => ModelSource::Default,
        None => {
            let recorded = PathBuf::from(&meta.model_name);
            if !recorded.exists() {
                return Err(Error::model(
                    &recorded,
                    format!(
                        "the store {} was built with the model in this folder, which is no \
                         longer there (moved or deleted?): pass --model with its new place",
                        store.describe()
                    ),
                ));
            }
            ModelSource::Path(recorded)
        }
    };
    let model = Model::load(&source, device)?;
    if model.id != meta.model_id {
        return Err(match store.folder() {
            Some(dir) => IndexError::ModelMismatch {
                dir: dir.to_path_buf(),
                index_model_id: meta.model_id.clone(),
                index_model_name: meta.model_name.clone(),
                model_id: model.id.clone(),
                model_name: model.name.clone(),
            }
            .into(),
            None => Error::Store {
                store: store.describe(),
                reason: format!(
                    "the store was built with model {} ({}) but the current model is {} ({}): \
                     use the same model, or another database",
                    meta.model_id, meta.model_name, model.id, model.name
                ),
            },
        });
    }
    Ok(model)
}

/// One query's answer: its neighbours, or why the query image could not be used.
#[derive(Debug, Clone)]
pub struct QueryAnswer {
    pub query: PathBuf,
    pub result: std::result::Result<Vec<Hit>, String>,
}

/// Embeds the query images in batches of [`QUERY_BATCH`] and searches the store for each.
pub fn query(
    model: &Model,
    store: &dyn Store,
    queries: &[PathBuf],
    options: &SearchOptions,
) -> Result<Vec<QueryAnswer>> {
    let mut answers = Vec::with_capacity(queries.len());
    for batch in data::stream(queries.to_vec(), model.preprocess().clone(), QUERY_BATCH) {
        let mut results: Vec<(usize, std::result::Result<Vec<Hit>, String>)> = batch
            .failures
            .iter()
            .map(|(at, f)| {
                let message = format!("{}: cannot read image: {}", f.path.display(), f.reason);
                (*at, Err(message))
            })
            .collect();
        let vectors = model.embed(batch.items.iter().map(|d| d.rgb.as_slice()))?;
        for (item, vector) in batch.items.iter().zip(vectors) {
            results.push((item.index, Ok(store.search(&vector, options)?)));
        }
        results.sort_by_key(|(at, _)| *at);
        answers.extend(results.into_iter().map(|(at, result)| QueryAnswer {
            query: queries[at].clone(),
            result,
        }));
    }
    Ok(answers)
}
