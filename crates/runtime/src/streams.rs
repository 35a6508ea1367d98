//! A cap on the streams one caller holds open at once.
//!
//! The concurrency limit ([`crate::server::limits`]) counts a call until its response
//! headers are out, so a stream that stays open for hours (`Subscribe`, `WatchActivations`)
//! holds no slot there: without this layer one client could open thousands of them, each
//! reading the database on every commit. A caller is the name its token maps to when
//! authentication is on, else the peer's IP address. A stream beyond
//! `FAIRCHANCE_MAX_STREAMS_PER_CALLER` is refused with RESOURCE_EXHAUSTED, naming the limit;
//! the slot is given back when the response body is dropped, however the stream ended.
//!
//! Which calls are streams is read from the service descriptors, so a new streaming RPC is
//! covered without a list to keep.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Bytes};
use prost::Message;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{BoxError, Layer, Service};

use crate::auth::Caller;

/// The paths (`/pkg.Service/Method`) of every RPC in `descriptors` (an encoded
/// `FileDescriptorSet`) whose server or client side streams.
pub fn streaming_paths(descriptors: &[u8]) -> Result<HashSet<String>, prost::DecodeError> {
    let set = prost_types::FileDescriptorSet::decode(descriptors)?;
    let mut paths = HashSet::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                if method.server_streaming() || method.client_streaming() {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    Ok(paths)
}

/// Caps the open streams of each caller (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamLimitLayer {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    streaming: HashSet<String>,
    max_per_caller: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamLimitLayer {
    pub fn new(streaming: HashSet<String>, max_per_caller: usize) -> Self {
        Self {
            state: Arc::new(State {
                streaming,
                max_per_caller,
                open: Mutex::default(),
            }),
        }
    }
}

impl State {
    fn acquire(self: &Arc<Self>, caller: String) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(caller.clone()).or_insert(0);
        if *count >= self.max_per_caller {
            return None;
        }
        *count += 1;
        Some(Slot {
            state: Arc::clone(self),
            caller,
        })
    }
}

/// One open stream of a caller; dropping it gives the slot back.
#[derive(Debug)]
struct Slot {
    state: Arc<State>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.state.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl<S> Layer<S> for StreamLimitLayer {
    type Service = StreamLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamLimit {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The service [`StreamLimitLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct StreamLimit<S> {
    inner: S,
    state: Arc<State>,
}

/// Who is calling: the authenticated caller's name, else the peer's address.
fn caller_of<B>(request: &http::Request<B>) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return format!("caller {}", caller.name);
    }
    let ip: Option<IpAddr> = request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
        .map(|addr| addr.ip());
    ip.map_or_else(|| "an unknown peer".to_owned(), |ip| format!("peer {ip}"))
}

impl<S, B, ResBody> Service<http::Request<B>> for StreamLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.state.streaming.contains(request.uri().path()) {
            let response = self.inner.call(request);
            return Box::pin(async move {
                let response = response.await.map_err(Into::into)?;
                Ok(response.map(tonic::body::Body::new))
            });
        }
        let caller = caller_of(&request);
        let Some(slot) = self.state.acquire(caller.clone()) else {
            let max = self.state.max_per_caller;
            tracing::warn!(%caller, rpc = request.uri().path(), max, "refused a stream: too many open");
            let status = tonic::Status::resource_exhausted(format!(
                "{caller} already holds {max} open streams (FAIRCHANCE_MAX_STREAMS_PER_CALLER); \
                 close one, or share one stream between consumers"
            ));
            // tonic's error recovery turns a Status error into a gRPC answer.
            return Box::pin(async move { Err(Box::new(status) as BoxError) });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            // The slot lives as long as the body: it is freed when the stream ends, however.
            Ok(response.map(|body| {
                tonic::body::Body::new(body.map_frame(move |frame| {
                    let _open = &slot;
                    frame
                }))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_streaming_rpc_is_found_and_no_unary_one() {
        let paths = streaming_paths(proto::FILE_DESCRIPTOR_SET).unwrap();
        assert!(paths.contains("/fairchance.intake.v1.IntakeService/Subscribe"));
        assert!(paths.contains("/fairchance.intake.v1.IntakeService/SubmitLeads"));
        assert!(paths.contains("/fairchance.activation.v1.ActivationService/WatchActivations"));
        assert!(!paths.contains("/fairchance.intake.v1.IntakeService/SubmitLead"));
    }

    #[test]
    fn slots_are_counted_per_caller_and_given_back() {
        let state = Arc::new(State {
            streaming: HashSet::new(),
            max_per_caller: 2,
            open: Mutex::default(),
        });
        let a1 = state.acquire("a".into()).expect("first");
        let _a2 = state.acquire("a".into()).expect("second");
        assert!(state.acquire("a".into()).is_none(), "a third is refused");
        let _b = state
            .acquire("b".into())
            .expect("another caller has its own");
        drop(a1);
        assert!(
            state.acquire("a".into()).is_some(),
            "a closed stream frees its slot"
        );
    }
}
