//! The HTTP listener: accepts connections and serves the application on each, with limits that
//! keep idle or slow clients from exhausting the process's file descriptors (a slowloris).
//!
//! - A connection must deliver a complete request head within `header_read_timeout` of opening
//!   or of its previous answer, or it is closed: the same timer bounds slowly dribbled headers and
//!   idle keep-alive connections (hyper starts it whenever the connection waits for a head).
//! - At most `max_connections` are served at once. Past that, a new connection is answered `503`
//!   with the iwinv envelope (`LIMIT_EXCEEDED`, `Retry-After`) and closed, rather than left
//!   waiting in the kernel's backlog or failing the accept with `EMFILE`.
//! - At start the soft open-file limit is raised to the hard one, and both are logged.
//!
//! With TLS, the handshake runs in the connection's own task, under its permit and within
//! `tls::HANDSHAKE_TIMEOUT`; the header-read timer starts once it is done. A TLS client that
//! offers HTTP/2 in ALPN gets it (as the real endpoint's clients may expect); an HTTP/2 connection
//! has no header-read timer but is pinged every `header_read_timeout` and closed when a ping goes
//! unanswered as long, and it counts against the same connection cap. WebSockets (the browser
//! console) stay on HTTP/1.1: browsers open a separate connection for them, since the server does
//! not offer HTTP/2's extended CONNECT.
//!
//! A connection upgraded to a WebSocket (the browser console) leaves hyper, and this count, once
//! upgraded; its own idle rules apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use openwinv_wire::{ErrorCode, ErrorEnvelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::tls::HANDSHAKE_TIMEOUT;

/// How long a refused connection is given to read its `503` before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// Refused connections being answered at once; past this, a refused connection is closed bare.
const MAX_LINGERING_REFUSALS: usize = 256;
/// After an accept error (such as `EMFILE`), the pause before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The listener's limits (see `Config`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight finish.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let http = Protocols { h1, h2 };
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS));
    let refusal = Arc::new(refusal_response(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(linger) = refusals.clone().try_acquire_owned() {
                let refusal = refusal.clone();
                tokio::spawn(async move {
                    refuse(stream, &refusal).await;
                    drop(linger);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The application for this connection, which knows its peer (`ConnectInfo`).
        let app = app.clone();
        let (http, tls, stop) = (http.clone(), tls.clone(), stop_rx.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&http.with_h2(false), stream, app, peer, stop).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        serve_connection(&http.with_h2(h2), stream, app, peer, stop).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all)).await.is_err() {
        tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    Ok(())
}

/// The connection builders of both HTTP versions, configured once.
#[derive(Clone)]
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// The one protocol a connection speaks.
enum Protocol<'a> {
    Http1(&'a http1::Builder),
    Http2(&'a http2::Builder<TokioExecutor>),
}

impl Protocols {
    fn with_h2(&self, h2: bool) -> Protocol<'_> {
        if h2 { Protocol::Http2(&self.h2) } else { Protocol::Http1(&self.h1) }
    }
}

/// Serves one connection (plain or decrypted) until it ends, or gracefully once `stop` is set.
async fn serve_connection<I>(http: &Protocol<'_>, io: I, app: Router, peer: SocketAddr, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&app, req)
    });
    let result = match http {
        Protocol::Http1(h1) => {
            let conn = h1.serve_connection(TokioIo::new(io), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                () = stopping(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
        Protocol::Http2(h2) => {
            let conn = h2.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                () = stopping(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

/// Completes once the server is stopping (the watched flag is set, or its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The bytes of the answer to a connection past the cap.
fn refusal_response(max_connections: usize) -> Vec<u8> {
    let body = serde_json::to_string(&ErrorEnvelope::new(
        ErrorCode::LimitExceeded,
        format!("The server is serving its limit of {max_connections} connections; retry in a moment."),
    ))
    .expect("an envelope serializes");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection and closes it. The request is read and dropped while the answer
/// is sent, so that closing does not reset the connection before the client has read it.
async fn refuse(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// Raises the soft limit on open files to the hard limit and logs both. Returns the soft limit
/// in force afterwards (None when it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    tracing::info!(soft_before = before, soft = lim.rlim_cur, hard = lim.rlim_max, "open-file limit");
    Some(lim.rlim_cur)
}
