//! The page's files (HTML, CSS, JavaScript) and the OpenAPI document, embedded in the binary at
//! build time: no Node toolchain, nothing to install beside the binary.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");
/// The API's description, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The embedded files change with the binary, so the browser asks again each time (a 200 of a
/// few KB on loopback), never showing a page of an older build.
fn embedded(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { embedded("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { embedded("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { embedded("text/css; charset=utf-8", STYLE_CSS) }),
        )
}
