//! The /metrics endpoint: HTTP/1.1 on a tokio listener, one task per connection.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Connections served at once; one more is closed as soon as it is accepted. A scraper
/// needs one; the rest of the budget is for a few humans with curl.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must have sent its request headers within this long.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Any connection, however well-behaved, is closed after this long (keep-alive included),
/// so a client that stops reading cannot hold its slot.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Request head buffer (hyper's minimum): a GET /metrics needs a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8192;

/// What prometheus-client encodes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` now (so a taken port fails `watch` at start) and returns the bound address
/// and the task serving /metrics from `registry` until the runtime stops.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: keep serving once the pressure is gone.
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Clients that open connections and never finish a request (slowloris) must not
            // pile up: past the cap a new one is closed at once.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closing {peer}");
                drop(stream);
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &registry)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                    Ok(Err(e)) => tracing::debug!("metrics: connection from {peer}: {e}"),
                    Err(_) => {
                        tracing::debug!("metrics: closing {peer} after {CONNECTION_LIFETIME:?}")
                    }
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    Ok((bound, task))
}

fn respond(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            CONTENT_TYPE,
            "text/plain; charset=utf-8".parse().expect("static header"),
        );
        r
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(super::encode(registry))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                OPENMETRICS_CONTENT_TYPE.parse().expect("static header"),
            );
            r
        }
        (_, "/metrics") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
            r.headers_mut()
                .insert(ALLOW, "GET, HEAD".parse().expect("static header"));
            r
        }
        (_, "/") => text(StatusCode::OK, "netns-trace: metrics are at /metrics\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        ),
    }
}
