//! The last step of a run: fit the model's search projection ([`crate::model::Projection`])
//! on the run's own images and write it into the model in `--out`. Training itself never
//! sees the projection: every epoch exports the encoder alone, and a resumed run fits again.

use super::ProjectionReport;
use crate::data::PixelSet;
use crate::error::{Error, Result};
use crate::model::{
    features_tensor, load_parameters, save_model, Embedding, Model, ModelSource, Projection,
    ProjectionConfig,
};
use candle_core::Device;
use std::path::Path;

/// Images the projection is fitted on at most (evenly spaced through the run's images):
/// enough for a stable covariance of a few hundred dimensions at a few seconds' embedding.
pub const FIT_IMAGES: usize = 20_000;

/// Images a projection of `dim` components needs: twice as many, so every kept component has
/// a variance estimated from many images. With fewer (or fewer images than components) the
/// trailing components are noise that partial whitening would magnify.
pub fn min_fit_images(dim: usize) -> usize {
    2 * dim
}

/// Embeds up to [`FIT_IMAGES`] of `pixels` (unaugmented) with the model in `out`, searching
/// `embedding`, fits `request` and rewrites the model with both. With fewer than
/// [`min_fit_images`] images the model is rewritten to search `embedding` unprojected.
pub fn fit_into(
    out: &Path,
    pixels: &PixelSet,
    embedding: Embedding,
    request: &ProjectionConfig,
    device: &Device,
) -> Result<ProjectionReport> {
    let (mut config, mut weights, name) =
        load_parameters(&ModelSource::Path(out.to_path_buf()), device)?;
    weights.retain(|name, _| name.starts_with("encoder."));
    config.embedding = embedding;
    config.projection = None;
    let embedding_dim = config.encoder_embedding_dim();
    if pixels.len() < min_fit_images(request.dim) {
        save_model(out, &config, &weights)?;
        return Ok(ProjectionReport {
            dim: request.dim,
            embedding_dim,
            images: pixels.len(),
            fitted: false,
        });
    }
    let model = Model::from_parameters(
        config.clone(),
        weights.clone(),
        "fitting".into(),
        name,
        device,
    )?;
    let n = pixels.len().min(FIT_IMAGES);
    let picked: Vec<usize> = (0..n).map(|j| j * pixels.len() / n).collect();
    let mut features = Vec::with_capacity(n);
    for chunk in picked.chunks(256) {
        let images: Vec<&[u8]> = chunk.iter().map(|&i| pixels.get(i).exact).collect();
        features.extend(model.embed(images.into_iter())?);
    }
    let fitted = ProjectionConfig {
        images: n,
        ..request.clone()
    };
    let tensors = Projection::fit(&features_tensor(&features, device)?, &fitted)
        .map_err(|e| Error::model(out, format!("fitting the projection: {e}")))?;
    weights.extend(tensors);
    config.projection = Some(fitted);
    save_model(out, &config, &weights)?;
    Ok(ProjectionReport {
        dim: request.dim,
        embedding_dim,
        images: n,
        fitted: true,
    })
}
