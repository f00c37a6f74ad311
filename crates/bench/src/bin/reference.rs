//! `openwinv-bench-reference`: the yardsticks the list benchmark is measured against, in the same
//! run (issue 14, item 13).
//!
//! - `hello`: a plain axum server answering `GET /` with `hello`.
//! - `page`: an axum server that does what a list request must do without a database: it checks
//!   the request's signature (the key's secret known in advance) and serializes a page of
//!   instance rows (a page captured from a real openwinv server, read at start) into the
//!   envelope, on every request.
//!
//! Both print `listening on http://ADDR` once bound, as `openwinv serve` does.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, Subcommand};
use openwinv_wire::instances::Instance;
use openwinv_wire::{Envelope, headers, signing};

#[derive(Parser)]
struct Cli {
    /// Address to bind (`127.0.0.1:0`: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Hello,
    Page {
        /// A list answer (`{"result": [...], ...}`) whose rows are served.
        #[arg(long)]
        page_file: String,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
    },
}

struct PageState {
    rows: Vec<Instance>,
    total: u64,
    access_key: String,
    secret_key: String,
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn page(state: Arc<PageState>, uri: axum::http::Uri, h: HeaderMap) -> Response {
    let signed = header_str(&h, headers::CREDENTIAL) == Some(state.access_key.as_str())
        && match (header_str(&h, headers::TIMESTAMP), header_str(&h, headers::SIGNATURE)) {
            (Some(ts), Some(sig)) => signing::verify(&state.secret_key, ts, uri.path(), sig),
            _ => false,
        };
    if !signed {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page = openwinv_wire::envelope::Page { page_no: 1, page_size: state.rows.len() as u64 };
    let body = serde_json::to_vec(&Envelope::page(state.rows.clone(), page, state.total)).expect("serializable");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let app = match cli.mode {
        Mode::Hello => Router::new().route("/", get(|| async { "hello" })),
        Mode::Page { page_file, access_key, secret_key } => {
            let text = std::fs::read_to_string(&page_file).with_context(|| format!("reading {page_file}"))?;
            let env: Envelope<Vec<Instance>> = serde_json::from_str(&text).context("a list answer")?;
            let total = env.total.unwrap_or(env.result.len() as u64);
            let state = Arc::new(PageState { rows: env.result, total, access_key, secret_key });
            Router::new()
                .route("/v1/instances", get(move |uri: axum::http::Uri, h: HeaderMap| page(state.clone(), uri, h)))
        }
    };
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
