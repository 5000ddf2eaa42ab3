//! The HTTP listener of `--http`, on the server's tokio runtime (hyper, HTTP/1.1): `GET
//! /metrics` (the Prometheus text format, [`metrics`]), `GET /` (the live page, [`page`]),
//! `GET /live` (the page's figures as JSON, with the history [`live`] keeps) and `GET
//! /healthz`. It shows nothing `stats` does not. It is bounded ([`Limits`]): connections
//! at once, the size of a request head and the time it may take, a connection's life;
//! only `GET` and `HEAD` are served (others get 405) and no body is read. It shares
//! nothing with the cache port but the counters it reads, so a bad HTTP request can only
//! fail its own connection.

pub mod live;
pub mod metrics;
pub mod page;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::exec::Ctx;

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// HTTP connections served at once (more are closed at accept): Prometheus needs one,
    /// a few browsers a few more.
    pub connections: usize,
    /// The largest request head read (hyper's read buffer, at least 8 KiB); a longer one
    /// is refused.
    pub head_bytes: usize,
    /// Time allowed for a request head to arrive, so a slow client cannot hold a slot.
    pub head_timeout: Duration,
    /// A connection is closed after this long, however busy (clients reconnect).
    pub life: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 64,
            head_bytes: 16 * 1024,
            head_timeout: Duration::from_secs(10),
            life: Duration::from_secs(300),
        }
    }
}

/// Serves `listener` with the default [`Limits`] until the runtime stops.
pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    serve_with(listener, ctx, Limits::default()).await;
}

/// Serves `listener` within `limits` until the runtime stops.
pub async fn serve_with(listener: TcpListener, ctx: Arc<Ctx>, limits: Limits) {
    let history = Arc::new(live::History::default());
    tokio::spawn(live::sample(ctx.clone(), history.clone()));
    let permits = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                warn!(%e, "http: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "http: too many connections; closed");
            continue;
        };
        let (ctx, history) = (ctx.clone(), history.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, ctx, history, limits).await {
                debug!(%peer, %e, "http: connection ended");
            }
            drop(permit);
        });
    }
}

/// Serves one connection (a socket, or any byte stream: the fuzz target's) until it
/// closes, fails, or has lived `limits.life`.
pub async fn serve_connection<I>(
    io: I,
    ctx: Arc<Ctx>,
    history: Arc<live::History>,
    limits: Limits,
) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let reply = respond(&ctx, &history, &req);
        async move { Ok::<_, Infallible>(reply) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.head_bytes)
        .serve_connection(TokioIo::new(io), service);
    tokio::time::timeout(limits.life, conn).await.unwrap_or(Ok(()))
}

/// The reply to one request.
fn respond(ctx: &Ctx, history: &live::History, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut reply = match req.uri().path() {
        "/metrics" => typed(metrics::render(ctx), metrics::CONTENT_TYPE),
        "/" => typed(page::HTML, "text/html; charset=utf-8"),
        "/live" => typed(live::json(ctx, history), "application/json"),
        "/healthz" if ctx.stopping.load(Relaxed) => plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    // hyper sends no body in reply to HEAD.
    reply.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn typed(body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = typed(text, "text/plain; charset=utf-8");
    *r.status_mut() = status;
    r
}
