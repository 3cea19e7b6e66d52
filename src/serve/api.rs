//! The HTTP API's handlers: JSON in the records of `src/json/` (the schema of `--json`,
//! docs/JSON.md), images by id. Every handler takes one generation of the index at its start
//! and answers from it alone. Decoding, thumbnails, random rows and duplicate groups run on
//! tokio's blocking pool (the CPU-heavy ones after a permit of [`Shared::heavy`]), embeddings
//! on the embedding workers ([`super::embedder`]), never on the executor's threads; only a
//! search by id, a fraction of a millisecond, runs inline.
//!
//! No path from a request reaches the file system: images are named by their [`ImageId`], which
//! only the index can turn into a path.

use super::embedder::Refused;
use super::state::{Generation, Shared};
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use imgsearch::index::{Entry, Hit, ImageId, SearchOptions};
use imgsearch::json;
use imgsearch::pipeline::limits::{self, MAX_K};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

type AppState = Arc<Shared>;

/// Most contact-sheet rows one request may ask for.
const MAX_ROWS: usize = 100;
/// Most images one "not duplicates" decision may name (every pair among them is recorded).
const MAX_IGNORE: usize = 64;
/// Sides a thumbnail may be asked at (the page uses the default; a bounded set keeps the
/// cache bounded in kinds as well as bytes).
const THUMB_SIDES: [u32; 3] = [128, 256, 512];

/// An error answer: `{"type": "error", "message"}` with its status.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }

    fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json::ErrorRecord::new(&self.1, None));
        (self.0, body).into_response()
    }
}

impl From<imgsearch::Error> for ApiError {
    fn from(e: imgsearch::Error) -> Self {
        match e {
            imgsearch::Error::Image { .. } => ApiError::bad_request(e.to_string()),
            imgsearch::Error::Usage(m) => ApiError::bad_request(m),
            e => ApiError::internal(e),
        }
    }
}

impl From<imgsearch::index::IndexError> for ApiError {
    fn from(e: imgsearch::index::IndexError) -> Self {
        ApiError::internal(e)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Runs CPU-heavy blocking work once a permit of `heavy` is free.
async fn heavy<T: Send + 'static>(
    state: &Shared,
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let _permit = state
        .heavy
        .acquire()
        .await
        .map_err(|_| ApiError::internal("shutting down"))?;
    blocking(work).await
}

/// The API routes, under `/api`.
pub fn routes(state: AppState) -> Router {
    let upload_limit = state.max_upload;
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/stats", get(stats))
        .route(
            "/api/search",
            // The body limit is the upload's, plus room for the multipart framing.
            post(search_upload).layer(DefaultBodyLimit::max(upload_limit.saturating_add(64 << 10))),
        )
        .route("/api/images/{id}", get(image_info))
        .route("/api/images/{id}/neighbours", get(neighbours))
        .route("/api/images/{id}/thumbnail", get(thumbnail))
        .route("/api/images/{id}/original", get(original))
        .route("/api/random", get(random_rows))
        .route("/api/dups", get(dups))
        .route("/api/dups/ignore", post(ignore))
        .fallback(not_found)
        .with_state(state)
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::page::OPENAPI,
    )
        .into_response()
}

/// `k` and `min_score` of a search.
#[derive(Deserialize)]
struct SearchParams {
    k: Option<usize>,
    min_score: Option<f32>,
}

impl SearchParams {
    fn options(&self) -> ApiResult<SearchOptions> {
        let k = self.k.unwrap_or(SearchOptions::default().k);
        if !(1..=MAX_K).contains(&k) {
            return Err(ApiError::bad_request(format!(
                "k must be from 1 to {MAX_K}, not {k}"
            )));
        }
        if let Some(min) = self.min_score {
            limits::min_score(min).map_err(|e| ApiError::bad_request(format!("min_score {e}")))?;
        }
        Ok(SearchOptions {
            k,
            // A wider beam for deep pages ("more"), as `query` does for a large -k.
            ef: SearchOptions::default().ef.max(k),
            min_score: self.min_score,
            ..SearchOptions::default()
        })
    }
}

fn parse_id(text: &str) -> ApiResult<ImageId> {
    // Any malformed id names no image: 404, like an id that is not in the index.
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no image with id {text:?}")))
}

/// The answer to one search: a `query` record plus the generation it came from.
fn query_answer(generation: &Generation, query: &Path, hits: &[Hit]) -> json::QueryRecord {
    json::QueryRecord::new(query, hits).in_generation(generation.store.generation())
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    let g = state.snapshot();
    let index = &g.store;
    let folders: Vec<Value> = index
        .roots()
        .iter()
        .map(|r| Value::String(r.to_string_lossy().into_owned()))
        .collect();
    Json(json!({
        "type": "stats",
        "images": index.len(),
        "generation": index.generation(),
        "segments": index.segment_count(),
        "dim": index.meta().dim,
        "folders": folders,
        "committed_unix": index.committed_unix(),
        "model": {"name": g.model.name, "id": g.model.id},
        "thumbnails": {
            "dir": state.thumbnails.dir().to_string_lossy(),
            "bytes": state.thumbnails.used_bytes(),
        },
    }))
}

/// `POST /api/search`: multipart with one file field `image`.
async fn search_upload(
    State(state): State<AppState>,
    Query(params): Query<SearchParams>,
    mut form: Multipart,
) -> ApiResult<Response> {
    let options = params.options()?;
    let mut upload = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| upload_error(&state, e))?
    {
        if field.name() != Some("image") {
            continue;
        }
        let name = field.file_name().unwrap_or("upload").to_string();
        let bytes = field.bytes().await.map_err(|e| upload_error(&state, e))?;
        upload = Some((name, bytes));
        break;
    }
    let Some((name, bytes)) = upload else {
        return Err(ApiError::bad_request("no file in the form field \"image\""));
    };
    if bytes.len() > state.max_upload {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "upload {name:?} is {} bytes, over the limit of {} bytes (--max-upload)",
                bytes.len(),
                state.max_upload
            ),
        ));
    }
    let generation = state.snapshot();
    let queued = Instant::now();
    let model = generation.model.clone();
    // Only the file name, for messages and the record: never used as a path.
    let label = PathBuf::from(format!("upload:{name}"));
    let decode_label = label.clone();
    let (rgb, wait, decode) = heavy(&state, move || {
        let wait = queued.elapsed();
        let t = Instant::now();
        let rgb = imgsearch::data::load_bytes(bytes.to_vec(), &decode_label, model.preprocess())?;
        Ok((rgb, wait, t.elapsed()))
    })
    .await?;
    let pending = state
        .embedder
        .submit(generation.model.clone(), rgb)
        .map_err(|refused| match refused {
            Refused::Busy => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many uploads are waiting to be embedded: try again shortly".into(),
            ),
            Refused::Stopped => ApiError::internal("the embedding workers have stopped"),
        })?;
    let embedded = pending
        .await
        .map_err(|_| ApiError::internal("an embedding worker stopped"))?
        .map_err(ApiError::internal)?;
    let t = Instant::now();
    let hits = if generation.store.blocks() {
        let (g, vector) = (generation.clone(), embedded.vector.clone());
        blocking(move || Ok(g.store.search(&vector, &options)?)).await?
    } else {
        generation.store.search(&embedded.vector, &options)?
    };
    let search = t.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    // Server-Timing: where an upload's time went (a standard header; browsers show it).
    let timing = format!(
        "wait;dur={:.3}, decode;dur={:.3}, queue;dur={:.3}, embed;dur={:.3};desc=\"batch of {}\", search;dur={:.3}",
        ms(wait),
        ms(decode),
        ms(embedded.queued),
        ms(embedded.embed),
        embedded.batch,
        ms(search)
    );
    let mut response = Json(query_answer(&generation, &label, &hits)).into_response();
    if let Ok(v) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", v);
    }
    Ok(response)
}

/// A multipart body that could not be read: 413 when it is over `--max-upload` (the body limit
/// is the upload's plus the framing's), 400 when it is not well-formed multipart.
fn upload_error(state: &Shared, e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is over the limit of {} bytes (--max-upload)",
                state.max_upload
            ),
        )
    } else {
        ApiError::bad_request(format!("malformed upload: {}", e.body_text()))
    }
}

/// Every error the server answers is JSON (`{"type": "error", "message"}`): the rejections
/// axum makes before a handler runs (a query string that does not parse, a body that is not
/// multipart, a method a route does not take, a request over its time) come as plain text,
/// and are rewritten here with their status and words.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
    }
    let mut answer = ApiError(status, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// `GET /api/images/{id}`: what the index records of one image.
async fn image_info(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let generation = state.snapshot();
    blocking(move || {
        let (entry, _) = generation
            .store
            .lookup(id)?
            .ok_or_else(|| ApiError::not_found(format!("no image with id {id}")))?;
        let mut record = json!({
            "type": "image",
            "id": id.to_string(),
            "size": entry.size,
            "mtime_ns": entry.mtime_ns,
            "generation": generation.store.generation(),
        });
        if let Value::Object(map) = &mut record {
            json::put_path(map, "path", &entry.path);
        }
        Ok(Json(record))
    })
    .await
}

/// `GET /api/images/{id}/neighbours`: search by an indexed image.
async fn neighbours(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(params): Query<SearchParams>,
) -> ApiResult<Json<json::QueryRecord>> {
    let options = params.options()?;
    let id = parse_id(&id)?;
    // Inline, not on the blocking pool: the id table is built before a generation is served,
    // and a graph search over the mapped index takes about a tenth of a millisecond, less than
    // the hand-over to another thread costs under load (examples/serve_bench.rs).
    let generation = state.snapshot();
    let blocks = generation.store.blocks();
    let answer = move || {
        let (entry, vector) = generation
            .store
            .lookup(id)?
            .ok_or_else(|| ApiError::not_found(format!("no image with id {id}")))?;
        let hits = generation.store.search(&vector, &options)?;
        Ok(Json(query_answer(&generation, &entry.path, &hits)))
    };
    if blocks {
        blocking(answer).await
    } else {
        answer()
    }
}

/// A live entry, or 404.
fn entry_of(generation: &Generation, id: ImageId) -> ApiResult<Entry> {
    Ok(generation
        .store
        .lookup(id)?
        .ok_or_else(|| ApiError::not_found(format!("no image with id {id}")))?
        .0)
}

/// A file's bytes (`content_type`) under `etag`, or 304 when the client already holds that
/// version; either way with the `ETag` and `cache_control` headers.
fn cached_file(
    request: &HeaderMap,
    etag: &str,
    cache_control: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    response
}

#[derive(Deserialize)]
struct ThumbParams {
    side: Option<u32>,
}

/// `GET /api/images/{id}/thumbnail?side=`: a JPEG fitting `side × side` (128, 256 or 512).
async fn thumbnail(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(params): Query<ThumbParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let side = params
        .side
        .unwrap_or(imgsearch::pipeline::thumbnails::DEFAULT_SIDE);
    if !THUMB_SIDES.contains(&side) {
        return Err(ApiError::bad_request(format!(
            "side must be one of {THUMB_SIDES:?}, not {side}"
        )));
    }
    let generation = state.snapshot();
    let worker = state.clone();
    let thumb = heavy(&state, move || {
        let entry = entry_of(&generation, id)?;
        worker.thumbnails.get(&entry, side).map_err(|e| match e {
            // The file is in the index but cannot be read now (moved, replaced, damaged).
            imgsearch::Error::Io { .. } => ApiError::not_found(e.to_string()),
            e => ApiError::from(e),
        })
    })
    .await?;
    let etag = format!("\"{}\"", thumb.tag);
    Ok(cached_file(
        &headers,
        &etag,
        "private, max-age=86400",
        "image/jpeg",
        thumb.jpeg,
    ))
}

/// `GET /api/images/{id}/original`: the indexed file's bytes, while it is still the file that
/// was indexed (404 once it is replaced, or swapped for a link elsewhere).
async fn original(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let generation = state.snapshot();
    let (bytes, etag, name) = blocking(move || {
        let entry = entry_of(&generation, id)?;
        let path = entry.path;
        let bytes = imgsearch::data::read_unchanged(&path, entry.size, entry.mtime_ns)
            .map_err(|e| ApiError::not_found(format!("cannot serve {e}")))?;
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok((bytes, etag, name))
    })
    .await?;
    let mime = image::guess_format(&bytes)
        .map(|f| f.to_mime_type())
        .unwrap_or("application/octet-stream");
    let mut response = cached_file(&headers, &etag, "private, max-age=3600", mime, bytes);
    let h = response.headers_mut();
    // The file name only, quoted with anything unusual replaced: never a header injection.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct RandomParams {
    rows: Option<usize>,
    k: Option<usize>,
    seed: Option<u64>,
}

/// `GET /api/random?rows=&k=&seed=`: rows of the KNN figure, as `imgsearch grid --json`.
async fn random_rows(
    State(state): State<AppState>,
    Query(params): Query<RandomParams>,
) -> ApiResult<Json<Value>> {
    let rows = params.rows.unwrap_or(8);
    let k = params.k.unwrap_or(8);
    if !(1..=MAX_ROWS).contains(&rows) || !(1..=MAX_K).contains(&k) {
        return Err(ApiError::bad_request(format!(
            "rows must be from 1 to {MAX_ROWS} and k from 1 to {MAX_K}"
        )));
    }
    let seed = params.seed.unwrap_or(0);
    let generation = state.snapshot();
    blocking(move || {
        let rows = imgsearch::pipeline::random_rows(generation.store.as_ref(), rows, k, seed)?;
        let list: Vec<json::RowRecord> = rows.iter().map(json::RowRecord::new).collect();
        Ok(Json(json!({
            "type": "rows",
            "seed": seed,
            "rows": list,
            "generation": generation.store.generation(),
        })))
    })
    .await
}

/// The images of a `POST /api/dups/ignore` decision, by id.
#[derive(Deserialize)]
struct IgnoreBody {
    ids: Vec<String>,
}

/// `POST /api/dups/ignore` `{"ids": [...]}`: every pair among the images (a group a person
/// judged wrong, or two of its members) is recorded as not duplicates in the index folder, as
/// `imgsearch dups --ignore` records them, and left apart by every later `dups` run and by
/// `GET /api/dups`. Answers the `ignore` record `dups --ignore --json` prints.
async fn ignore(
    State(state): State<AppState>,
    Json(body): Json<IgnoreBody>,
) -> ApiResult<Json<json::IgnoreRecord>> {
    if !(2..=MAX_IGNORE).contains(&body.ids.len()) {
        return Err(ApiError::bad_request(format!(
            "a decision names 2 to {MAX_IGNORE} images, not {}",
            body.ids.len()
        )));
    }
    let generation = state.snapshot();
    let paths = body
        .ids
        .iter()
        .map(|id| Ok(entry_of(&generation, parse_id(id)?)?.path))
        .collect::<ApiResult<Vec<PathBuf>>>()?;
    let worker = state.clone();
    blocking(move || {
        let (added, total) = worker.ignore(&generation, &paths)?;
        Ok(Json(json::IgnoreRecord::new(added, total)))
    })
    .await
}

#[derive(Deserialize)]
struct DupsParams {
    threshold: Option<f32>,
}

/// `GET /api/dups?threshold=`: the near-duplicate groups, as `imgsearch dups --json` reports
/// them (`action` "none"), each path with its image id.
async fn dups(
    State(state): State<AppState>,
    Query(params): Query<DupsParams>,
) -> ApiResult<Json<Value>> {
    let threshold = params
        .threshold
        .unwrap_or(imgsearch::pipeline::dups::DEFAULT_THRESHOLD);
    limits::threshold(threshold).map_err(|e| ApiError::bad_request(format!("threshold {e}")))?;
    let generation = state.snapshot();
    let worker = state.clone();
    heavy(&state, move || {
        let groups = worker.dups(&generation, threshold)?;
        let list: Vec<json::GroupRecord> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| json::GroupRecord::new(i + 1, g, None))
            .collect();
        Ok(Json(json!({
            "type": "dups",
            "threshold": json::setting(threshold),
            "copy_score": json::setting(imgsearch::pipeline::dups::DEFAULT_COPY_SCORE),
            "groups": list,
            "generation": generation.store.generation(),
        })))
    })
    .await
}
