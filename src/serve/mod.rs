//! `imgsearch serve`: the web page and the HTTP API over one index, in this binary.
//!
//! The HTTP stack is axum on tokio (the Rust ecosystem's default: typed extractors, tower
//! middleware, a multipart parser with limits), with connections accepted here and served by
//! hyper's HTTP/1 connection builder, because that is where a header-read timeout can be set
//! (`axum::serve` has none): a client that opens a connection and sends nothing is dropped.
//!
//! - [`state`]: the generation being served, swapped when `imgsearch index` commits;
//! - [`api`]: the JSON API (`/api/...`, described by `/api/openapi.json`);
//! - [`embedder`]: uploads embedded in batches by a few worker threads;
//! - [`page`]: the page's HTML, CSS and JavaScript, embedded at build time.
//!
//! Limits against hostile or slow clients: headers within [`HEADER_TIMEOUT`], a whole request
//! within [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections at once, uploads of at
//! most `--max-upload` bytes, and a bounded number of decodes and embeddings at once on the
//! blocking pool.

mod api;
mod embedder;
mod page;
mod state;

use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use imgsearch::pipeline::thumbnails::Thumbnails;
use imgsearch::store::Location;
use imgsearch::{Error, Result};
use state::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// Time a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a whole request may take, upload included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 512;
/// Threads of tokio's blocking pool.
const MAX_BLOCKING_THREADS: usize = 32;
/// How often the index folder is checked for a newer generation.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What `imgsearch serve` is asked to do.
pub struct ServeOptions {
    /// The index folder, or the PostgreSQL store.
    pub store: Location,
    pub model: Option<PathBuf>,
    pub bind: SocketAddr,
    pub max_upload: usize,
    /// Thumbnail folder (default: `thumbs/` inside the index folder, or the user's cache folder
    /// for a PostgreSQL store) and its bound in bytes.
    pub thumbnails: Option<PathBuf>,
    pub thumbnail_bytes: u64,
    /// Decodes and embeddings at once.
    pub workers: usize,
    pub device: candle_core::Device,
    pub quiet: bool,
}

/// A bound server, not yet serving.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    quiet: bool,
}

/// Opens the index and its model, binds the address; [`Server::run`] then serves.
pub fn bind(opts: ServeOptions) -> Result<Server> {
    let thumbs_dir = match (&opts.thumbnails, &opts.store) {
        (Some(dir), _) => dir.clone(),
        (None, Location::Local(index)) => index.join("thumbs"),
        (None, Location::Postgres(_)) => user_cache_dir().join("imgsearch").join("thumbs"),
    };
    let thumbnails = Thumbnails::open(&thumbs_dir, opts.thumbnail_bytes)?;
    let shared = Shared::open(
        &opts.store,
        opts.model.clone(),
        opts.device.clone(),
        thumbnails,
        opts.workers,
        opts.max_upload,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Decoding, thumbnails and the like wait for a permit anyway; more threads than this
        // would only contend for the cores.
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("imgsearch-serve")
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the server's runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(opts.bind))
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", opts.bind)))?;
    Ok(Server {
        runtime,
        listener,
        shared: Arc::new(shared),
        quiet: opts.quiet,
    })
}

/// `$XDG_CACHE_HOME`, else `~/.cache`, else the temporary folder.
fn user_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
}

/// The whole application: page, API, and the headers every response carries.
fn app(shared: Arc<Shared>) -> Router {
    page::routes()
        .merge(api::routes(shared))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; \
                 frame-ancestors 'none'",
            ),
        ))
}

impl Server {
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("cannot read the bound address: {e}")))
    }

    pub fn images(&self) -> usize {
        self.shared.snapshot().store.len()
    }

    /// Serves until interrupted (Ctrl-C or SIGTERM).
    pub fn run(self) -> Result<()> {
        let Server {
            runtime,
            listener,
            shared,
            quiet,
        } = self;
        runtime.block_on(async move {
            tokio::spawn(watch_index(shared.clone(), quiet));
            let app = app(shared);
            let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            let shutdown = shutdown_signal();
            tokio::pin!(shutdown);
            loop {
                let permit = tokio::select! {
                    permit = connections.clone().acquire_owned() => permit,
                    () = &mut shutdown => break,
                };
                let Ok(permit) = permit else { break };
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, keep serving.
                            if !quiet {
                                eprintln!("imgsearch serve: accept failed: {e}");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = &mut shutdown => break,
                };
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    // A client that goes away mid-request is not the server's error.
                    let _ = connection.await;
                    drop(permit);
                });
            }
        });
        Ok(())
    }
}

/// Swaps in each new generation of the index as `imgsearch index` commits it.
async fn watch_index(shared: Arc<Shared>, quiet: bool) {
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        let worker = shared.clone();
        match tokio::task::spawn_blocking(move || worker.refresh()).await {
            Ok(Ok(Some(generation))) => {
                last_error.clear();
                if !quiet {
                    eprintln!("imgsearch serve: now serving generation {generation}");
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                // Said once, not every second; the previous generation goes on being served.
                let message = e.to_string();
                if message != last_error && !quiet {
                    eprintln!("imgsearch serve: keeping the current generation: {message}");
                }
                last_error = message;
            }
            Err(_) => {}
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
