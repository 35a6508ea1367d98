//! RED per RPC: a tower layer counting every gRPC call by service, method and status code,
//! and timing it by service and method.
//!
//! The code is read where the call ends for the server: a failed unary call is answered
//! with `grpc-status` in the response headers (a trailers-only response); a call answered
//! without it is OK (a successful unary call sends `grpc-status: 0` in its trailers). An
//! error from the layers below (load shedding) is counted with the code tonic answers it
//! with. A call dropped before its response (the client went away, or the request timeout,
//! which tonic answers with CANCELLED) is counted as CANCELLED.
//!
//! Streaming calls are recorded once, when the response headers are ready: the code is OK
//! unless the call failed before its first message, and the latency is the time to open the
//! stream, not its lifetime (a `Subscribe` stream lives for hours).
//!
//! Service and method labels come from the descriptor sets this server can serve; any other
//! path is labelled `unknown`, so a caller cannot create series (or smuggle data into
//! labels) by calling made-up paths.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message;
use tonic::Code;
use tonic::codegen::http;
use tower::{Layer, Service};

use super::{MethodLabels, RpcLabels, runtime};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Records RED metrics for every call through it (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
}

impl<S, B, ResBody> Service<http::Request<B>> for RpcMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (grpc_service, grpc_method) = method_of(request.uri().path());
        let call = Call {
            method: MethodLabels {
                grpc_service,
                grpc_method,
            },
            started: Instant::now(),
            done: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            let result = response.await.map_err(Into::into);
            let code = match &result {
                Ok(response) => code_of_headers(response.headers()),
                Err(error) => code_of_error(error.as_ref()),
            };
            call.finish(code);
            result
        })
    }
}

/// One call in flight; recorded as CANCELLED if dropped before it finished.
struct Call {
    method: MethodLabels,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code) {
        self.done = true;
        let m = runtime();
        m.rpc_duration
            .get_or_create(&self.method)
            .observe(self.started.elapsed().as_secs_f64());
        m.rpc_requests
            .get_or_create(&RpcLabels {
                grpc_service: self.method.grpc_service,
                grpc_method: self.method.grpc_method,
                grpc_code: code_name(code),
            })
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Code::Cancelled);
        }
    }
}

fn code_of_headers(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// The code tonic answers an error from the layers below with.
fn code_of_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Code {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        status.code()
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        Code::ResourceExhausted
    } else {
        Code::Unknown
    }
}

/// The canonical name of a status code, as gRPC documents it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Label of any path that is not a method this server knows.
const UNKNOWN: &str = "unknown";

/// `/package.Service/Method` of every method in the descriptor sets a fairchance server
/// serves, to its (service, method) labels.
static METHODS: LazyLock<HashMap<String, (String, String)>> = LazyLock::new(|| {
    let mut methods = HashMap::new();
    for set in [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            tracing::warn!("undecodable descriptor set; its methods are labelled unknown");
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let full = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                for method in &service.method {
                    methods.insert(
                        format!("/{full}/{}", method.name()),
                        (full.clone(), method.name().to_owned()),
                    );
                }
            }
        }
    }
    methods
});

/// The (service, method) labels of a request path; `unknown` for a path no service here
/// defines.
pub(crate) fn method_of(path: &str) -> (&'static str, &'static str) {
    let methods: &'static HashMap<String, (String, String)> = &METHODS;
    match methods.get(path) {
        Some((service, method)) => (service.as_str(), method.as_str()),
        None => (UNKNOWN, UNKNOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_are_labelled_and_anything_else_is_unknown() {
        assert_eq!(
            method_of("/fairchance.intake.v1.IntakeService/SubmitLead"),
            ("fairchance.intake.v1.IntakeService", "SubmitLead")
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            method_of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                "ServerReflectionInfo"
            )
        );
        // A made-up path (here carrying an address) never becomes a label.
        assert_eq!(
            method_of("/fairchance.intake.v1.IntakeService/ada@example.com"),
            (UNKNOWN, UNKNOWN)
        );
        assert_eq!(method_of("/"), (UNKNOWN, UNKNOWN));
    }

    #[test]
    fn codes_come_from_headers_or_default_to_ok() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(code_of_headers(&headers), Code::Ok);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(code_of_headers(&headers), Code::NotFound);
        let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        assert_eq!(code_of_error(shed.as_ref()), Code::ResourceExhausted);
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
    }
}
