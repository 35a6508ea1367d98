//! Calls from one fairchance service to another: the one way every service builds its
//! outgoing channels and makes its calls.
//!
//! A [`Connector`], built from the service's configuration, owns the channel settings: connect
//! timeout, HTTP/2 keepalive, message limits. It hands out a [`Client`] per upstream service,
//! whose calls
//!
//! - carry the caller's W3C trace context (`traceparent`), so a trace crosses services;
//! - are bounded: a unary call has a deadline covering all its attempts (the configured
//!   default, or one the call names), sent to the server as `grpc-timeout`; a long-lived event
//!   stream has none and relies on keepalive to notice a dead peer;
//! - send and accept at most `max_message_bytes` (tonic encodes unbounded by default);
//! - are retried, with exponential backoff and full jitter and a bounded number of attempts,
//!   only when that is safe: an idempotent [`Method`] on any transient failure, any other only
//!   on UNAVAILABLE (the server did not take it). Every attempt of a call carries the same
//!   `idempotency-key` metadata, for a server that keeps idempotency records (see
//!   [`crate::idempotency`]) to execute it once.
//!
//! It also carries the service's credentials, the one place that builds channels and stamps
//! outgoing metadata: every call carries `authorization: Bearer <token>` when a token is
//! configured (`FAIRCHANCE_CLIENT_TOKEN_FILE`, re-read every `FAIRCHANCE_TOKENS_RELOAD`, so an
//! upstream's token rotation completes without a restart), and an `https://` upstream is
//! reached over TLS with the configured CA and, for mutual TLS, client certificate
//! ([`crate::tls::ClientTls`]).
//! A call the upstream refuses for want of credentials (UNAUTHENTICATED, PERMISSION_DENIED)
//! is logged as an error naming the upstream, and never retried: it fails the same way again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::Rng;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{BearerToken, ClientConfig, ConfigError, ServiceConfig};
use crate::reload::{Live, Watch};

/// Metadata key of the idempotency key every unary call carries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How often a client pings an HTTP/2 connection to notice a dead peer. The servers ping at
/// the same interval (see [`crate::server`]) and accept pings at any rate (hyper enforces no
/// minimum), so a quiet event stream is neither dropped by the server nor by the client.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is considered dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{key}: invalid address {url:?}: {reason}")]
    BadUrl {
        key: String,
        url: String,
        reason: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Builds the clients a service uses to call the others, all with the same settings.
#[derive(Debug, Clone)]
pub struct Connector {
    settings: Arc<ClientConfig>,
    upstreams: BTreeMap<&'static str, String>,
    /// Shared by every client it hands out, so a reloaded token reaches them all.
    authorization: Option<Live<MetadataValue<Ascii>>>,
}

impl Connector {
    /// The service's upstream addresses (`FAIRCHANCE_<SERVICE>_URL`) and client settings.
    pub fn from_config(config: &ServiceConfig) -> Self {
        let mut connector = Self::new(config.client.clone());
        connector.upstreams = config.upstreams.clone();
        connector
    }

    /// Settings without configured upstreams: callers name the address ([`Connector::connect`]).
    ///
    /// With `settings.token_file`, the token is re-read from it while this connector or a
    /// client it made is in use: a new token is sent from the next
    /// call on, an unusable one is logged and the previous one kept. Watching needs a Tokio
    /// runtime; outside one the token is kept as it is.
    pub fn new(settings: ClientConfig) -> Self {
        let authorization = settings
            .token
            .as_ref()
            .and_then(authorization_value)
            .map(|value| Live::new(Arc::new(value)));
        if let (Some(live), Some(file)) = (&authorization, &settings.token_file) {
            if tokio::runtime::Handle::try_current().is_ok() {
                let path = file.path.display().to_string();
                Watch {
                    credential: "client_token",
                    origin: file.origin.clone(),
                    paths: vec![file.path.clone()],
                    every: file.every,
                }
                .spawn(live, None, move |texts| {
                    BearerToken::new(&texts[0])
                        .map_err(|why| format!("{path}: {why}"))
                        .and_then(|token| {
                            authorization_value(&token)
                                .ok_or_else(|| format!("{path}: not valid as a header"))
                        })
                });
            } else {
                tracing::warn!(
                    origin = %file.origin,
                    "no async runtime: the client token is not re-read when its file changes"
                );
            }
        }
        Self {
            settings: Arc::new(settings),
            upstreams: BTreeMap::new(),
            authorization,
        }
    }

    pub fn settings(&self) -> &ClientConfig {
        &self.settings
    }

    /// A client of a configured upstream (`intake`, `activation`, ...); an error naming the
    /// variable when its address is not configured.
    pub fn upstream(&self, service: &str) -> Result<Client, ClientError> {
        match self.upstreams.get(service) {
            Some(url) => self.connect(&upstream_key(service), url),
            None => Err(ConfigError(vec![format!(
                "{}: required: the address of the {service} service, e.g. http://fairchance-{service}:50051",
                upstream_key(service)
            )])
            .into()),
        }
    }

    /// A client of an upstream that may be left unconfigured.
    pub fn optional_upstream(&self, service: &str) -> Result<Option<Client>, ClientError> {
        match self.upstreams.get(service) {
            Some(url) => self.connect(&upstream_key(service), url).map(Some),
            None => Ok(None),
        }
    }

    /// A client of the service at `url`; `key` names where the address came from in errors.
    /// The connection is made on first use (and remade after a failure), so a service starts
    /// while its upstreams are still coming up.
    pub fn connect(&self, key: &str, url: &str) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            key: key.to_owned(),
            url: url.to_owned(),
            reason,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("expected an http:// or https:// URL".into()));
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(e.to_string()))?;
        if url.starts_with("https://") {
            let Some(tls) = &self.settings.tls else {
                return Err(bad(
                    "https:// needs FAIRCHANCE_CLIENT_CA, the CA that signed the server's certificate"
                        .into(),
                ));
            };
            endpoint = endpoint
                .tls_config(tls.config())
                .map_err(|e| bad(crate::tls::root_cause(&e)))?;
        }
        let endpoint = endpoint
            .connect_timeout(self.settings.connect_timeout)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            // Idle channels need no pings: the next call finds a dead connection and reconnects.
            .keep_alive_while_idle(false)
            .tcp_nodelay(true);
        Ok(Client {
            url: url.to_owned(),
            channel: endpoint.connect_lazy(),
            settings: self.settings.clone(),
            authorization: self.authorization.clone(),
        })
    }
}

/// The `authorization` metadata carrying `token`.
fn authorization_value(token: &BearerToken) -> Option<MetadataValue<Ascii>> {
    // `BearerToken` admits only visible ASCII, which is always valid metadata.
    let mut value = MetadataValue::try_from(token.header_value()).ok()?;
    // Kept out of HPACK's dynamic table and of debug output.
    value.set_sensitive(true);
    Some(value)
}

fn upstream_key(service: &str) -> String {
    format!("FAIRCHANCE_{}_URL", service.to_ascii_uppercase())
}

/// An RPC of another service: its path, request and response types, and whether repeating
/// it is safe.
#[derive(Debug)]
pub struct Method<Req, Resp> {
    path: Cow<'static, str>,
    idempotent: bool,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for Method<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            idempotent: self.idempotent,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Method<Req, Resp> {
    /// An RPC that is safe to repeat: it only reads, or its server executes each
    /// idempotency key once. Retried on any transient failure.
    pub const fn idempotent(path: &'static str) -> Self {
        Self {
            path: Cow::Borrowed(path),
            idempotent: true,
            _types: PhantomData,
        }
    }

    /// An RPC that is not safe to repeat. Retried only on UNAVAILABLE.
    pub const fn not_idempotent(path: &'static str) -> Self {
        Self {
            path: Cow::Borrowed(path),
            idempotent: false,
            _types: PhantomData,
        }
    }

    /// A method whose path is known only at run time (`/<service>/Subscribe`).
    pub fn dynamic(path: String, idempotent: bool) -> Self {
        Self {
            path: Cow::Owned(path),
            idempotent,
            _types: PhantomData,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn path_and_query(&self) -> Result<PathAndQuery, Status> {
        self.path
            .parse()
            .map_err(|_| Status::internal(format!("bad method path {}", self.path)))
    }
}

/// What a call may set beyond its request.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline of the whole call, all attempts included; the configured default if `None`.
    pub deadline: Option<Duration>,
    /// The idempotency key; a fresh one per call if `None`. Name one derived from what the
    /// call is for (a timer, an event) to make a repeat after a crash execute once as well.
    pub idempotency_key: Option<String>,
}

impl CallOptions {
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Calls to one other service.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    channel: Channel,
    settings: Arc<ClientConfig>,
    authorization: Option<Live<MetadataValue<Ascii>>>,
}

impl Client {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refuses a request over the message limit before anything is sent. tonic's own check
    /// fails only once the headers are out, and the caller sees an HTTP/2 "internal error".
    /// OUT_OF_RANGE, as tonic reports a response over the limit: never retried, and not to be
    /// taken for a server shedding load (RESOURCE_EXHAUSTED).
    fn check_size<Req: prost::Message, Resp>(
        &self,
        method: &Method<Req, Resp>,
        request: &Req,
    ) -> Result<(), Status> {
        let size = request.encoded_len();
        if size > self.settings.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "{}: request of {size} bytes is over the {} byte message limit (FAIRCHANCE_MAX_MESSAGE_BYTES); not sent",
                method.path, self.settings.max_message_bytes
            )));
        }
        Ok(())
    }

    /// What every outgoing call carries: the token and the trace context.
    fn stamp(&self, metadata: &mut MetadataMap) {
        if let Some(authorization) = &self.authorization {
            metadata.insert(
                "authorization",
                MetadataValue::clone(&authorization.current()),
            );
        }
        inject_trace_context(metadata);
    }

    /// Logs a refusal of this service's credentials, so a missing scope or a stale token is
    /// seen in the logs of the service that has to fix it, not only as a failing feature.
    fn note_refusal(&self, path: &str, status: &Status) {
        if matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ) {
            tracing::error!(
                upstream = %self.url,
                method = path,
                code = ?status.code(),
                reason = status.message(),
                "the upstream refused this service's credentials; check FAIRCHANCE_CLIENT_TOKEN_FILE and the scopes the upstream's tokens file grants it"
            );
        }
    }

    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(self.settings.max_message_bytes)
            .max_encoding_message_size(self.settings.max_message_bytes)
    }

    /// A unary call with the configured deadline and a fresh idempotency key.
    pub async fn unary<Req, Resp>(
        &self,
        method: &Method<Req, Resp>,
        request: Req,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.unary_with(method, request, CallOptions::default())
            .await
    }

    /// A unary call: retried as [`Method`] allows until it succeeds, fails for good, runs out
    /// of attempts or reaches its deadline (DEADLINE_EXCEEDED).
    pub async fn unary_with<Req, Resp>(
        &self,
        method: &Method<Req, Resp>,
        request: Req,
        options: CallOptions,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = method.path_and_query()?;
        self.check_size(method, &request)?;
        let budget = options.deadline.unwrap_or(self.settings.deadline);
        let deadline = Instant::now() + budget;
        let key = options
            .idempotency_key
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let key_value: MetadataValue<_> = key
            .parse()
            .map_err(|_| Status::invalid_argument("idempotency key is not valid metadata"))?;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded(method, budget));
            }
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(remaining);
            call.metadata_mut()
                .insert(IDEMPOTENCY_KEY, key_value.clone());
            self.stamp(call.metadata_mut());
            let mut grpc = self.grpc();
            let outcome = tokio::time::timeout(remaining, async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(format!("{} unreachable: {e}", self.url)))?;
                grpc.unary(
                    call,
                    path.clone(),
                    tonic_prost::ProstCodec::<Req, Resp>::default(),
                )
                .await
            })
            .await;
            let status = match outcome {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Err(_elapsed) => return Err(deadline_exceeded(method, budget)),
                // The channel's own timer cancels the call when the deadline passes; to the
                // caller that is the deadline, not a cancellation.
                Ok(Err(status))
                    if status.code() == Code::Cancelled && Instant::now() >= deadline =>
                {
                    return Err(deadline_exceeded(method, budget));
                }
                Ok(Err(status)) => explain(status),
            };
            if attempt >= self.settings.max_attempts || !retryable(method.idempotent, &status) {
                self.note_refusal(&method.path, &status);
                return Err(status);
            }
            let pause = backoff(self.settings.backoff, attempt);
            if Instant::now() + pause >= deadline {
                return Err(status);
            }
            tracing::debug!(
                method = %method.path,
                attempt,
                code = ?status.code(),
                ?pause,
                "retrying call"
            );
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// A server stream, such as an event subscription: no deadline (it is meant to last;
    /// keepalive notices a dead peer) and no retry (the consumer resumes from its cursor).
    pub async fn server_streaming<Req, Resp>(
        &self,
        method: &Method<Req, Resp>,
        request: Req,
    ) -> Result<tonic::Streaming<Resp>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = method.path_and_query()?;
        self.check_size(method, &request)?;
        let mut call = tonic::Request::new(request);
        self.stamp(call.metadata_mut());
        let mut grpc = self.grpc();
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("{} unreachable: {e}", self.url)))?;
        match grpc
            .server_streaming(call, path, tonic_prost::ProstCodec::<Req, Resp>::default())
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                let status = explain(status);
                self.note_refusal(&method.path, &status);
                Err(status)
            }
        }
    }
}

/// A status that says only "transport error" with the cause underneath it: a refused TLS
/// handshake ("received fatal alert: CertificateRequired"), a reset connection. The code is
/// kept, so whether the call is retried does not change.
fn explain(status: Status) -> Status {
    use std::error::Error;
    let Some(source) = status.source() else {
        return status;
    };
    let cause = crate::tls::root_cause(source);
    if status.message().contains(&cause) {
        return status;
    }
    Status::new(status.code(), format!("{}: {cause}", status.message()))
}

fn deadline_exceeded<Req, Resp>(method: &Method<Req, Resp>, budget: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "{} did not answer within {}",
        method.path,
        humantime::format_duration(budget)
    ))
}

/// Whether a failed attempt may be repeated. UNAVAILABLE means the server did not take the
/// call (no connection, shutting down, its database away), so any call may be repeated;
/// overload and aborts only for calls that are safe to repeat anyway. A deadline is never
/// retried: the deadline covers the whole call.
fn retryable(idempotent: bool, status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::ResourceExhausted | Code::Aborted => idempotent,
        _ => false,
    }
}

/// Full jitter: uniformly between zero and `base * 2^(attempt-1)`, capped, so replicas that
/// failed together do not retry together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Stamps the current span's W3C trace context on outgoing metadata.
pub fn inject_trace_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_calls_are_retried() {
        for idempotent in [true, false] {
            assert!(retryable(idempotent, &Status::unavailable("")));
            assert!(!retryable(idempotent, &Status::invalid_argument("")));
            assert!(!retryable(idempotent, &Status::deadline_exceeded("")));
            assert!(!retryable(idempotent, &Status::internal("")));
        }
        assert!(retryable(true, &Status::resource_exhausted("")));
        assert!(!retryable(false, &Status::resource_exhausted("")));
        assert!(!retryable(false, &Status::aborted("")));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let base = Duration::from_millis(50);
        for attempt in 1..=20 {
            let ceiling = (base * 2u32.pow((attempt - 1).min(16))).min(MAX_BACKOFF);
            for _ in 0..50 {
                assert!(backoff(base, attempt) <= ceiling);
            }
        }
        // Jittered: not every pause is the ceiling.
        let pauses: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(base, 3)).collect();
        assert!(pauses.len() > 1);
    }

    #[test]
    fn a_missing_upstream_names_its_variable() {
        let connector = Connector::new(ClientConfig::default());
        let error = connector.upstream("proof").unwrap_err().to_string();
        assert!(error.contains("FAIRCHANCE_PROOF_URL: required"), "{error}");
        let error = connector
            .connect("FAIRCHANCE_INTAKE_URL", "intake:50051")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("FAIRCHANCE_INTAKE_URL: invalid address \"intake:50051\""),
            "{error}"
        );
    }
}
