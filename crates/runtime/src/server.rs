//! The gRPC server every service runs in: health (NOT_SERVING while a database is
//! unreachable), reflection (v1 and v1alpha, so grpcurl 1.8 works), per-request timeout,
//! a global concurrency limit that sheds load instead of queueing, message size limits,
//! W3C trace context extraction, RED metrics per RPC and database gauges (see
//! [`crate::metrics`]), bearer tokens with a scope per RPC and optional (mutual) TLS (see
//! [`crate::auth`], [`crate::tls`]), and graceful shutdown that drains in-flight calls.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::{AuthLayer, RpcScopes, ScopeTable};
use crate::config::ServerConfig;
use crate::db::Db;
use crate::metrics::RpcMetricsLayer;
use crate::streams::StreamLimitLayer;

/// HTTP/2 flow-control window per stream.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// HTTP/2 flow-control window per connection.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// A gRPC service the server serves: its health follows a database, and each of its RPCs
/// needs a scope.
#[derive(Debug, Clone)]
pub struct HealthTarget {
    /// Fully qualified service name, e.g. `fairchance.intake.v1.IntakeService`.
    pub service: &'static str,
    pub db: Db,
    /// The scope each RPC needs (the service's `scopes.rs`); the server does not start while
    /// an RPC of the service is missing from it.
    pub scopes: RpcScopes,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot build reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Scopes(#[from] crate::auth::ScopeError),
    #[error("{0}")]
    Tls(String),
    #[error("cannot listen on {addr} for plaintext health: {source}")]
    HealthListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then drains in-flight calls for
/// at most `config.drain_timeout`. Streams must end on `shutdown` themselves (the event log's
/// do), or the drain waits for them until the timeout.
pub async fn serve(
    listener: TcpListener,
    mut routes: RoutesBuilder,
    health: Vec<HealthTarget>,
    config: &ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let scope_table = ScopeTable::new(
        &health
            .iter()
            .map(|t| (t.service, t.scopes))
            .collect::<Vec<_>>(),
        proto::FILE_DESCRIPTOR_SET,
    )?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // The plaintext health port outlives the drain: it stops when this function returns, so
    // probes see NOT_SERVING while calls drain instead of a refused connection.
    let plain_health_stop = CancellationToken::new();
    let _plain_health_guard = plain_health_stop.clone().drop_guard();
    if let Some(addr) = config.health_addr {
        serve_plain_health(addr, health_service.clone(), plain_health_stop).await?;
    }
    // Not serving until the first database check passes.
    set_all(&reporter, &health, ServingStatus::NotServing).await;
    tokio::spawn(health_loop(
        reporter.clone(),
        health.clone(),
        config.health_interval,
        shutdown.clone(),
    ));

    // List only what this process serves (the descriptor set holds every service), while
    // still resolving every message type, e.g. event payloads inside `Any`.
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can show a BadRequest's field violations.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for target in &health {
            builder = builder.with_service_name(target.service);
        }
        builder
    };
    let reflection_v1 = reflection()
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()?;
    let reflection_v1alpha = reflection()
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()?;
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // Gauges read from each database this process serves (timers, outbox size); the
    // endpoint that serves them is started by the caller (see `service::start_metrics`).
    let mut sampled = std::collections::HashSet::new();
    for target in &health {
        let service = crate::metrics::short_service_name(target.service).to_owned();
        if sampled.insert(service.clone()) {
            tokio::spawn(crate::metrics::sample_database(
                service,
                target.db.clone(),
                shutdown.clone(),
            ));
        }
    }

    // Binding ourselves (port 0 in tests) bypasses the builder's tcp_nodelay; without it
    // Nagle's algorithm adds ~40 ms to the latency tail.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // Metrics outermost, so calls refused by auth or shed by the limits are counted; auth
    // before the limits, so calls without a token take no slot and streams are counted by
    // the caller's name.
    let streaming = crate::streams::streaming_paths(proto::FILE_DESCRIPTOR_SET)
        .map_err(crate::auth::ScopeError::from)?;
    let auth = AuthLayer::new(config.auth.clone(), scope_table);
    if let Some(file) = &config.tokens_file {
        auth.reload_from(file, shutdown.clone());
    }
    let layers = ServiceBuilder::new()
        .layer(RpcMetricsLayer)
        .layer(auth)
        .layer(StreamLimitLayer::new(
            streaming,
            config.max_streams_per_caller,
        ))
        .layer(limits(config.concurrency_limit));

    let stop = shutdown.clone();
    let router = tonic::transport::Server::builder()
        .timeout(config.request_timeout)
        // Larger HTTP/2 windows than the 64 KiB default let a client stream run ahead while a
        // batch is written, so bulk submissions arrive in full batches.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        // The same pings as the clients (`crate::client`): a subscriber that vanished without
        // closing its stream is noticed, and no peer sees the other's pings as abuse.
        .http2_keepalive_interval(Some(crate::client::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(crate::client::KEEPALIVE_TIMEOUT))
        .trace_fn(request_span)
        .layer(layers)
        .add_routes(routes.routes());
    let signal = async move {
        stop.cancelled().await;
    };
    let mut server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &config.tls {
            Some(tls) => {
                let incoming = tls
                    .accept(incoming, shutdown.clone())
                    .map_err(ServerError::Tls)?;
                Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
            }
            None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
        };

    tokio::select! {
        result = &mut server => return result.map_err(ServerError::from),
        _ = shutdown.cancelled() => {}
    }
    // Tell load balancers and probes first, then drain.
    set_all(&reporter, &health, ServingStatus::NotServing).await;
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: draining in-flight calls");
    match tokio::time::timeout(config.drain_timeout, &mut server).await {
        Ok(result) => result.map_err(ServerError::from),
        Err(_) => {
            tracing::warn!("drain timeout reached; closing remaining calls");
            Ok(())
        }
    }
}

/// Sheds calls beyond `max_in_flight` at once (RESOURCE_EXHAUSTED) instead of queueing them:
/// a queue in front of a saturated database only turns overload into timeouts.
pub fn limits(
    max_in_flight: usize,
) -> ServiceBuilder<Stack<GlobalConcurrencyLimitLayer, Stack<LoadShedLayer, Identity>>> {
    ServiceBuilder::new()
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(max_in_flight))
}

fn request_span(request: &http::Request<()>) -> tracing::Span {
    // `caller` is filled in by the auth layer once the token is known.
    let span = tracing::info_span!(
        "grpc",
        rpc = %request.uri().path(),
        caller = tracing::field::Empty,
        otel.kind = "server"
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let _ = span.set_parent(parent);
    span
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Serves gRPC health alone, in plaintext, on `addr` until `shutdown`: the kubelet's gRPC
/// probes cannot speak TLS. Returns once the port is bound.
async fn serve_plain_health(
    addr: std::net::SocketAddr,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::HealthListen { addr, source })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving plaintext gRPC health");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "plaintext health server failed");
        }
    });
    Ok(())
}

async fn set_all(reporter: &HealthReporter, targets: &[HealthTarget], status: ServingStatus) {
    for target in targets {
        reporter.set_service_status(target.service, status).await;
    }
    reporter.set_service_status("", status).await;
}

async fn health_loop(
    reporter: HealthReporter,
    targets: Vec<HealthTarget>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let mut all_up = true;
        for target in &targets {
            let up = matches!(
                tokio::time::timeout(Duration::from_secs(2), target.db.ping()).await,
                Ok(Ok(()))
            );
            if !up {
                tracing::warn!(
                    service = target.service,
                    "database unreachable; reporting NOT_SERVING"
                );
            }
            all_up &= up;
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(target.service, status).await;
        }
        if stop.is_cancelled() {
            return;
        }
        let overall = if all_up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status("", overall).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// A token cancelled on SIGTERM or ctrl-c.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(s) => s,
                Err(error) => {
                    tracing::error!(%error, "cannot watch SIGTERM; only ctrl-c stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Service, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn calls_beyond_the_limit_are_shed_not_queued() {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = std::sync::Arc::new(tokio::sync::Mutex::new(Some(wait)));
        let inner = tower::service_fn(move |_: ()| {
            let wait = wait.clone();
            async move {
                if let Some(wait) = wait.lock().await.take() {
                    let _ = wait.await;
                }
                Ok::<_, Infallible>("done")
            }
        });
        let mut svc = limits(1).service(inner);
        // The first call holds the only slot.
        let first = tokio::spawn(svc.clone().oneshot(()));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let shed = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert!(shed.is::<tower::load_shed::error::Overloaded>(), "{shed}");
        // tonic answers an Overloaded error with RESOURCE_EXHAUSTED.
        assert_eq!(
            tonic::Status::from_error(shed).code(),
            tonic::Code::ResourceExhausted
        );
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), "done");
        assert_eq!(svc.ready().await.unwrap().call(()).await.unwrap(), "done");
    }
}
