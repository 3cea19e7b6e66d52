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
//! within [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections at once (at the cap, the
//! oldest connection with no request in progress is closed to make room, so that connections
//! that send nothing do not hold every other client up), uploads of at most `--max-upload`
//! bytes, and a bounded number of decodes and embeddings at once on the blocking pool. Every
//! error is answered in JSON ([`api::json_errors`]).

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
        .map_err(|e| Error::Server(format!("cannot start the server's runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(opts.bind))
        .map_err(|e| Error::Server(format!("cannot listen on {}: {e}", opts.bind)))?;
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
        .layer(axum::middleware::map_response(api::json_errors))
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
            .map_err(|e| Error::Server(format!("cannot read the bound address: {e}")))
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
            let idle = Arc::new(IdleConnections::default());
            let shutdown = shutdown_signal();
            tokio::pin!(shutdown);
            loop {
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
                // At the cap, the connection idle the longest (one that has sent nothing, or
                // sits between requests) is closed to make room for this one: connections
                // that send nothing cannot keep every other client waiting for their header
                // timeout.
                let permit = match connections.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        idle.close_oldest();
                        let permit = tokio::select! {
                            permit = connections.clone().acquire_owned() => permit,
                            () = &mut shutdown => break,
                        };
                        let Ok(permit) = permit else { break };
                        permit
                    }
                };
                let (id, close) = idle.register();
                let (busy, done) = (idle.clone(), idle.clone());
                let service = tower::ServiceBuilder::new()
                    .map_request(move |request| {
                        busy.set_idle(id, false);
                        request
                    })
                    // Idle again once its response is handed to hyper (a body still being
                    // written is finished before a close).
                    .map_response(move |response| {
                        done.set_idle(id, true);
                        response
                    })
                    .service(app.clone());
                let service = TowerToHyperService::new(service);
                let watcher = idle.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    // A client that goes away mid-request is not the server's error.
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = close => {
                            // Closes an idle connection at once; a response being written is
                            // finished first.
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                    watcher.remove(id);
                    drop(permit);
                });
            }
        });
        Ok(())
    }
}

/// The open connections in the order they were accepted, each with whether it is idle (no
/// request being answered: none sent yet, or between two) and the signal that closes it.
#[derive(Default)]
struct IdleConnections {
    inner: std::sync::Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    next: u64,
    open: std::collections::BTreeMap<u64, (bool, Option<tokio::sync::oneshot::Sender<()>>)>,
}

impl IdleConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        // The map stays consistent whatever a panicking holder was doing: each call changes
        // one entry.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection, idle: its id and the signal that asks it to close.
    fn register(&self) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.open.insert(id, (true, Some(tx)));
        (id, rx)
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(entry) = self.lock().open.get_mut(&id) {
            entry.0 = idle;
        }
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }

    /// Asks the oldest idle connection to close; none if every one is answering a request.
    fn close_oldest(&self) {
        let mut inner = self.lock();
        let oldest = inner
            .open
            .values_mut()
            .find(|(idle, close)| *idle && close.is_some());
        if let Some((_, close)) = oldest {
            if let Some(close) = close.take() {
                let _ = close.send(());
            }
        }
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
