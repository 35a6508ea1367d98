//! The metrics endpoint: plain HTTP/1.1 on its own port (`FAIRCHANCE_METRICS_ADDR`), apart
//! from gRPC so a scraper needs no HTTP/2, no TLS client certificate and no token.
//! `GET /metrics` answers the registry in the text exposition format, `GET /healthz` 200.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::Bytes;
use tonic::codegen::http::{Method, Request, Response, StatusCode, header};

/// The media type of [`super::encode`]'s output, which Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr} (FAIRCHANCE_METRICS_ADDR): {source}")]
pub struct EndpointError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves the endpoint in the background until `stop` is cancelled;
/// returns the bound address (port 0 picks a free one).
pub async fn spawn_endpoint(
    addr: SocketAddr,
    stop: CancellationToken,
) -> Result<SocketAddr, EndpointError> {
    let error = |source| EndpointError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    tokio::spawn(serve_endpoint(listener, stop));
    Ok(bound)
}

/// Serves the endpoint on `listener` until `stop` is cancelled; open connections finish
/// their request and close.
pub async fn serve_endpoint(listener: TcpListener, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%error, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let (status, content_type, body) = match (request.uri().path(), get) {
        ("/metrics", true) => (StatusCode::OK, CONTENT_TYPE, super::encode()),
        ("/healthz", true) => (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        ("/metrics" | "/healthz", false) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".into(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
