//! The openwinv control plane: the iwinv API v1 under `/v1`, the operator API under `/admin/v1`,
//! health, metrics and documentation.
//!
//! Handlers are small: extract, validate, call the store, answer with the envelope. Shared state is
//! one explicit `AppState`.

pub mod admin;
pub mod admin_hosts;
pub mod admin_sim;
pub mod admin_state;
pub mod api;
pub mod assets;
pub mod auth;
pub mod billing;
pub mod bootstrap;
pub mod catalog;
pub mod config;
pub mod console;
pub mod error;
pub mod idempotency;
pub mod images;
pub mod input;
pub mod internal;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod quota;
pub mod reconcile;
pub mod reference;
pub mod remote_driver;
pub mod sagas;
pub mod server_time;
pub mod service;
pub mod tls;
pub mod web;

/// The one server clock lives in the engine; it is re-exported here for the handlers.
pub use openwinv_engine::clock;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use openwinv_driver::{ComputeDriver, ConsoleBroker};
use openwinv_engine::Engine;
use openwinv_store::Store;
use openwinv_store::crypto::Sealer;
use openwinv_wire::ErrorCode;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::catalog::CatalogCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;

pub use crate::config::Settings;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub engine: Arc<Engine>,
    /// The hypervisor, for saga steps and the reconciler; handlers never call it.
    pub driver: Arc<dyn ComputeDriver>,
    /// The one way handlers reach a machine: its consoles and view extensions.
    pub consoles: Arc<dyn ConsoleBroker>,
    pub store: Store,
    pub sealer: Sealer,
    pub clock: Arc<Clock>,
    pub catalog: Arc<CatalogCache>,
    /// The files behind catalog images (`<data>/images`).
    pub images: images::ImageStore,
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// Real networks of the QEMU driver (`--network namespaces`), for `admin network show`.
    pub networks: Option<Arc<openwinv_qemu::Networks>>,
    pub admin_token: String,
    /// Accounts' usage of the current month, for the live bill.
    pub live_bills: billing::LiveCache,
    /// Serialized instance lists and details by account view version.
    pub pages: api::instances::PageCache,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }

    /// `YYYY-MM-DD HH:MM:SS` in the billing time zone.
    pub fn timestamp(&self, unix: i64) -> String {
        clock::format_timestamp(unix, &self.config.billing_timezone)
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // Layers run outermost-last: the signature check, then Idempotency-Key, then the handler.
    let v1 = api::routes(state.clone())
        .merge(api::operations::routes())
        .merge(billing::routes())
        .layer(from_fn_with_state(state.clone(), idempotency::layer))
        .layer(from_fn_with_state(state.clone(), auth::require_signature));
    let admin = admin::routes()
        .merge(billing::admin_routes())
        .merge(web::admin_users::routes())
        .merge(admin_hosts::routes())
        .layer(from_fn_with_state(state.clone(), auth::require_admin));
    Router::new()
        .merge(v1)
        .merge(admin)
        .merge(internal::routes(state.clone()))
        .merge(reference::routes())
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(console::routes())
        .merge(web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(error::envelope_rejections))
        .layer(from_fn_with_state(state.clone(), metrics::record))
        .layer(from_fn_with_state(state.clone(), server_time::layer))
        .layer(DefaultBodyLimit::max(input::BODY_LIMIT))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(NewRequestId))
        .with_state(state)
}

#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&openwinv_store::ids::new_id("REQ")).ok().map(RequestId::new)
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("There is no route `{}`.", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(ErrorCode::NotFound, format!("The route `{}` does not accept {method}.", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .into_response()
}

/// Runs `openwinv serve` until SIGINT or SIGTERM.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let open_files = listener::raise_open_file_limit();
    let limits = listener::Limits {
        max_connections: config.max_connections(open_files),
        header_read_timeout: config.header_read_timeout,
    };
    if let Some(soft) = open_files
        && u64::try_from(limits.max_connections).unwrap_or(u64::MAX) > soft
    {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_file_limit = soft,
            "max_connections exceeds the open-file limit"
        );
    }
    let listener = bind(config.listen).await?;
    let beside = match config.tls.as_ref().and_then(|t| t.listen) {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let local = listener.local_addr()?;
    config.derive_internal_url(local, beside.as_ref().map(|b| b.local_addr()).transpose()?);
    let state = bootstrap::start(config, local).await?;
    let https = match &state.config.tls {
        Some(t) => Some(tls::server_config(&state.config.data_dir, &t.names)?),
        None => None,
    };
    admin_state::import_snapshot_files(&state).await;
    state.engine.spawn();
    tokio::spawn(refresh_shared_state(state.clone()));
    tokio::spawn(refresh_statistics(state.clone()));
    tokio::spawn(billing::close::run(state.clone()));
    if state.driver.reconciles() {
        tokio::spawn(reconcile::run(state.clone()));
    }
    let app = router(state.clone());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    tracing::info!(
        %local,
        https = state.config.tls.is_some(),
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        "listening"
    );
    let version = env!("CARGO_PKG_VERSION");
    let acceptor = https.map(tokio_rustls::TlsAcceptor::from);
    match (acceptor, beside) {
        (None, _) => {
            println!("openwinv {version} listening on http://{local}");
            listener::run(listener, None, app, limits, stopped()).await?;
        }
        (Some(acceptor), None) => {
            println!("openwinv {version} listening on https://{local}");
            listener::run(listener, Some(acceptor), app, limits, stopped()).await?;
        }
        (Some(acceptor), Some(beside)) => {
            // The HTTPS line first: the last line is the one scripts wait for. Each listener has
            // its own connection cap.
            println!("openwinv {version} serving HTTPS on https://{}", beside.local_addr()?);
            println!("openwinv {version} listening on http://{local}");
            let plain = listener::run(listener, None, app.clone(), limits, stopped());
            let secure = listener::run(beside, Some(acceptor), app, limits, stopped());
            tokio::try_join!(plain, secure)?;
        }
    }
    tracing::info!("stopped");
    state.store.close().await;
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

/// Picks up what other server processes on the same database changed: the clock and the catalog.
async fn refresh_shared_state(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let before = state.clock.offset_ms();
        if let Err(e) = state.clock.load(&state.store).await {
            tracing::warn!(error = %e, "could not read the shared clock");
        }
        if state.clock.offset_ms() != before {
            state.engine.wake();
        }
        if let Err(e) = state.catalog.refresh(&state.store).await {
            tracing::warn!(error = %e, "could not refresh the catalog");
        }
    }
}

/// Keeps PostgreSQL's planner statistics up with tables that grow faster than autovacuum looks
/// (`Store::refresh_statistics`): every 5 s, the tables whose rows changed by as many as they
/// hold are analyzed. Nothing on SQLite.
async fn refresh_statistics(state: AppState) {
    if state.store.backend() != openwinv_store::Backend::Postgres {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match state.store.refresh_statistics().await {
            Ok(tables) if !tables.is_empty() => tracing::info!(?tables, "planner statistics refreshed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not refresh the planner statistics"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
