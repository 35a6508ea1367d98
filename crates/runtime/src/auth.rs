//! Who may call what: bearer tokens configured per caller (a tokens file, mounted from a
//! Secret), each mapped to a caller name and its scopes, and the tower layer the server runs
//! every call through. No or an unknown token is UNAUTHENTICATED, a token without the RPC's
//! scope is PERMISSION_DENIED; health and reflection stay open so probes and grpcurl work.
//!
//! Each service declares the scope of every RPC in one table ([`RpcScopes`], in its
//! `scopes.rs`); the server refuses to start when an RPC of a service it serves has none
//! ([`ScopeTable::new`]), so a new RPC cannot be left open by accident.
//!
//! The file holds SHA-256 digests, not tokens: whoever can read the Secret or a backup of it
//! still cannot call anything.
//!
//! The server keeps re-reading the file ([`AuthLayer::reload_from`], every
//! `FAIRCHANCE_TOKENS_RELOAD`), so rotating a token is an update of the Secret: list the new
//! token next to the old one, move the caller to it, then drop the old one. Each call is
//! checked against the tokens in force when it starts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tower::{BoxError, Layer, Service};

use crate::config::WatchedFile;
use crate::reload::{Live, Watch};

/// A service's RPCs and the scope each needs: `("SubmitLead", "intake.submit")`.
pub type RpcScopes = &'static [(&'static str, &'static str)];

/// RPCs every caller may use without a token: probes and grpcurl's discovery.
const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Whether calls need a token (`FAIRCHANCE_AUTH`).
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// Every call is let through (local runs, `fairchance dev`).
    #[default]
    Off,
    /// Every call but health and reflection needs a known token with the RPC's scope.
    Required(Arc<Tokens>),
}

/// An authenticated caller, as named in the tokens file. The server puts it in each
/// request's extensions, so a handler can see who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scopes: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `scope`, directly or through a wildcard (`intake.*`, `*`).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| {
            granted == scope
                || granted == "*"
                || granted
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && scope.starts_with(prefix))
        })
    }
}

/// The known tokens, by the SHA-256 digest of each.
#[derive(Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Arc<Caller>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: even digests have no business in logs.
        let mut names: Vec<&str> = self.by_digest.values().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        f.debug_struct("Tokens").field("callers", &names).finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    caller: Vec<CallerEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: String,
    token_sha256: String,
    scopes: Vec<String>,
}

impl Tokens {
    /// Reads and validates the tokens file at `path`; every problem is reported, prefixed by
    /// `origin` (the setting that named the file).
    pub fn load(origin: &str, path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("{origin}: cannot read {}: {e}", path.display())])?;
        Self::parse(&format!("{origin}: {}", path.display()), &text)
    }

    /// Parses a tokens file:
    ///
    /// ```toml
    /// [[caller]]
    /// name = "web-forms"
    /// token_sha256 = "<64 hex digits: sha256 of the token>"
    /// scopes = ["intake.submit"]
    /// ```
    ///
    /// A name may appear more than once (an old and a new token while rotating).
    pub fn parse(origin: &str, text: &str) -> Result<Self, Vec<String>> {
        let file: TokensFile = toml::from_str(text)
            .map_err(|e| vec![format!("{origin}: {}", e.to_string().trim())])?;
        let mut errors = Vec::new();
        let mut by_digest = HashMap::new();
        for (i, entry) in file.caller.into_iter().enumerate() {
            let at = format!("{origin}: caller #{} ({:?})", i + 1, entry.name);
            if !valid_name(&entry.name) {
                errors.push(format!(
                    "{at}: name must be 1 to 64 letters, digits, '-', '_' or '.'"
                ));
            }
            let digest = match parse_digest(&entry.token_sha256) {
                Some(d) => d,
                None => {
                    errors.push(format!(
                        "{at}: token_sha256 must be 64 hex digits, the SHA-256 of the token (e.g. printf %s \"$TOKEN\" | sha256sum)"
                    ));
                    continue;
                }
            };
            if entry.scopes.is_empty() {
                errors.push(format!(
                    "{at}: scopes is empty; a caller needs at least one"
                ));
            }
            for scope in &entry.scopes {
                if !valid_scope(scope) {
                    errors.push(format!(
                        "{at}: scope {scope:?} is not of the form service.action (or service.*, or *)"
                    ));
                }
            }
            let caller = Arc::new(Caller {
                name: entry.name,
                scopes: entry.scopes,
            });
            if let Some(other) = by_digest.insert(digest, caller) {
                errors.push(format!(
                    "{at}: the same token as caller {:?}; each token must be unique",
                    other.name
                ));
            }
        }
        if by_digest.is_empty() && errors.is_empty() {
            errors.push(format!(
                "{origin}: no [[caller]] entries; with none, every call would be refused"
            ));
        }
        if errors.is_empty() {
            Ok(Self { by_digest })
        } else {
            Err(errors)
        }
    }

    /// The caller a presented token belongs to.
    pub fn caller(&self, token: &str) -> Option<&Arc<Caller>> {
        // Looking up a digest leaks nothing useful through timing: an attacker cannot steer
        // the digest of a guess towards a stored one.
        self.by_digest.get(&digest(token))
    }
}

/// The SHA-256 of a token in hex, as the tokens file stores it.
pub fn token_digest(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_scope(scope: &str) -> bool {
    if scope == "*" {
        return true;
    }
    let parts: Vec<&str> = scope.split('.').collect();
    let word = |p: &str| {
        !p.is_empty()
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match parts.split_last() {
        Some((last, first)) if !first.is_empty() => {
            first.iter().all(|p| word(p)) && (*last == "*" || word(last))
        }
        _ => false,
    }
}

/// Why a server cannot start with the scope tables it was given.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "{service}/{method} has no scope: add it to the service's scope table (scopes.rs), or it would be callable by any token"
    )]
    Missing { service: String, method: String },
    #[error("{service}/{method} is in the scope table but the service has no such RPC")]
    Unknown { service: String, method: String },
    #[error("cannot read the service descriptors: {0}")]
    Descriptors(#[from] prost::DecodeError),
}

/// The scope of every RPC a server serves, by request path (`/pkg.Service/Method`).
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    by_path: HashMap<String, &'static str>,
}

impl ScopeTable {
    /// Builds the table for `services` (fully qualified name and its scopes), and checks each
    /// against the service's RPCs in `descriptors` (an encoded `FileDescriptorSet`): every
    /// RPC must have a scope, and every scope an RPC. Services the descriptors do not know are
    /// taken as they are.
    pub fn new(services: &[(&str, RpcScopes)], descriptors: &[u8]) -> Result<Self, ScopeError> {
        let set = prost_types::FileDescriptorSet::decode(descriptors)?;
        let mut known: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in &set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                known.insert(
                    name,
                    service.method.iter().map(|m| m.name().to_owned()).collect(),
                );
            }
        }
        let mut by_path = HashMap::new();
        for (service, scopes) in services {
            if let Some(methods) = known.get(*service) {
                for method in methods {
                    if !scopes.iter().any(|(m, _)| m == method) {
                        return Err(ScopeError::Missing {
                            service: (*service).to_owned(),
                            method: method.clone(),
                        });
                    }
                }
                if let Some((method, _)) =
                    scopes.iter().find(|(m, _)| !methods.iter().any(|k| k == m))
                {
                    return Err(ScopeError::Unknown {
                        service: (*service).to_owned(),
                        method: (*method).to_owned(),
                    });
                }
            }
            for (method, scope) in *scopes {
                by_path.insert(format!("/{service}/{method}"), *scope);
            }
        }
        Ok(Self { by_path })
    }

    /// The scope `path` needs; `None` for an RPC no table names.
    pub fn scope_of(&self, path: &str) -> Option<&'static str> {
        self.by_path.get(path).copied()
    }
}

/// Checks every call against the tokens and the scope table (see the module docs).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    /// `None` when auth is off.
    tokens: Option<Live<Tokens>>,
    scopes: Arc<ScopeTable>,
}

impl AuthLayer {
    pub fn new(mode: AuthMode, scopes: ScopeTable) -> Self {
        let tokens = match mode {
            AuthMode::Off => None,
            AuthMode::Required(tokens) => Some(Live::new(tokens)),
        };
        Self {
            tokens,
            scopes: Arc::new(scopes),
        }
    }

    /// Keeps the tokens current with `file` (`FAIRCHANCE_TOKENS_FILE`) until `stop`: a
    /// rotated Secret takes effect on the next poll, for every call that starts after it,
    /// without a restart. A version that does not validate is logged and the tokens in force
    /// stay. Nothing to do when auth is off.
    pub fn reload_from(&self, file: &WatchedFile, stop: CancellationToken) {
        let Some(tokens) = &self.tokens else {
            return;
        };
        let origin = format!("{}: {}", file.origin, file.path.display());
        Watch {
            credential: "tokens",
            origin: file.origin.clone(),
            paths: vec![file.path.clone()],
            every: file.every,
        }
        .spawn(tokens, Some(stop), move |texts| {
            Tokens::parse(&origin, &texts[0]).map_err(|problems| problems.join("; "))
        });
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B, ResBody> Service<http::Request<B>> for AuthService<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let caller = match self.layer.check(&request) {
            Ok(caller) => caller,
            // tonic's error recovery turns a Status error into a gRPC answer.
            Err(status) => return Box::pin(async move { Err(Box::new(status) as BoxError) }),
        };
        if let Some(caller) = &caller {
            request.extensions_mut().insert(Caller::clone(caller));
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            // The request span is entered only while this future is polled.
            if let Some(caller) = caller {
                tracing::Span::current().record("caller", caller.name.as_str());
            }
            response.await.map_err(Into::into)
        })
    }
}

impl AuthLayer {
    /// The caller of `request`, `None` where no token is needed, or the status refusing it.
    fn check<B>(&self, request: &http::Request<B>) -> Result<Option<Arc<Caller>>, tonic::Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let path = request.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if OPEN_SERVICES.contains(&service) {
            return Ok(None);
        }
        let token = bearer_token(request.headers())?;
        let Some(caller) = tokens.current().caller(token).cloned() else {
            tracing::warn!(rpc = path, "refused a call with an unknown token");
            return Err(tonic::Status::unauthenticated(
                "unknown bearer token; use a token configured for your caller",
            ));
        };
        // An RPC in no table is one no service declared: refuse rather than guess.
        let scope = self.scopes.scope_of(path).unwrap_or("unknown");
        if !caller.has_scope(scope) {
            tracing::warn!(caller = %caller.name, rpc = path, scope, "refused: scope missing");
            let details = tonic_types::ErrorDetails::with_error_info(
                "MISSING_SCOPE",
                "fairchance",
                [("scope".to_owned(), scope.to_owned())],
            );
            return Err(
                <tonic::Status as tonic_types::StatusExt>::with_error_details(
                    tonic::Code::PermissionDenied,
                    format!(
                        "caller {} lacks scope {scope} needed for {path}",
                        caller.name
                    ),
                    details,
                ),
            );
        }
        Ok(Some(caller))
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer_token(headers: &http::HeaderMap) -> Result<&str, tonic::Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(tonic::Status::unauthenticated(
            "missing bearer token; send authorization: Bearer <token>",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            tonic::Status::unauthenticated(
                "malformed authorization header; send authorization: Bearer <token>",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[caller]]
name = "web-forms"
token_sha256 = "DIGEST_A"
scopes = ["intake.submit"]

[[caller]]
name = "ops"
token_sha256 = "DIGEST_B"
scopes = ["intake.*", "activation.read"]
"#;

    fn tokens() -> Tokens {
        let text = FILE
            .replace("DIGEST_A", &token_digest("token-a"))
            .replace("DIGEST_B", &token_digest("token-b"));
        Tokens::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn tokens_are_found_by_digest_and_scopes_match_with_wildcards() {
        let tokens = tokens();
        let a = tokens.caller("token-a").unwrap();
        assert_eq!(a.name, "web-forms");
        assert!(a.has_scope("intake.submit"));
        assert!(!a.has_scope("intake.read"));
        let b = tokens.caller("token-b").unwrap();
        assert!(b.has_scope("intake.erase"));
        assert!(b.has_scope("activation.read"));
        assert!(!b.has_scope("activation.act"));
        assert!(!b.has_scope("intakex.read"));
        assert!(tokens.caller("token-c").is_none());
        assert!(tokens.caller(&token_digest("token-a")).is_none());
        // Debug shows who, never a digest.
        let debug = format!("{tokens:?}");
        assert!(debug.contains("web-forms") && !debug.contains(&token_digest("token-a")));
    }

    #[test]
    fn every_problem_in_the_tokens_file_is_named() {
        let text = format!(
            r#"
[[caller]]
name = "bad name"
token_sha256 = "{a}"
scopes = ["Intake.Submit", "intake."]

[[caller]]
name = "short"
token_sha256 = "abc"
scopes = ["intake.read"]

[[caller]]
name = "twin"
token_sha256 = "{a}"
scopes = []
"#,
            a = token_digest("x")
        );
        let errors = Tokens::parse("t.toml", &text).unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "t.toml: caller #1 (\"bad name\"): name must be",
            "caller #1 (\"bad name\"): scope \"Intake.Submit\" is not of the form",
            "caller #1 (\"bad name\"): scope \"intake.\" is not of the form",
            "caller #2 (\"short\"): token_sha256 must be 64 hex digits",
            "caller #3 (\"twin\"): scopes is empty",
            "caller #3 (\"twin\"): the same token as caller \"bad name\"",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(errors.len(), 6, "{all}");
        let unknown = Tokens::parse("t.toml", "[[caller]]\nname = \"a\"\ntoken = \"x\"\n")
            .unwrap_err()
            .join("\n");
        assert!(unknown.contains("unknown field `token`"), "{unknown}");
        let empty = Tokens::parse("t.toml", "").unwrap_err().join("\n");
        assert!(empty.contains("no [[caller]] entries"), "{empty}");
    }

    #[test]
    fn scope_syntax() {
        for good in ["intake.submit", "intake.*", "*", "a.b.c", "feedback.read_2"] {
            assert!(valid_scope(good), "{good}");
        }
        for bad in [
            "intake",
            "",
            ".read",
            "intake..read",
            "Intake.read",
            "intake.re ad",
            "*.read",
        ] {
            assert!(!valid_scope(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_headers() {
        let headers = |value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert_eq!(bearer_token(&headers("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&headers("bearer abc")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer ", "abc"] {
            let status = bearer_token(&headers(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let missing = bearer_token(&http::HeaderMap::new()).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn every_rpc_of_a_served_service_needs_a_scope() {
        const INTAKE: &str = "fairchance.intake.v1.IntakeService";
        const ALL: RpcScopes = &[
            ("SubmitLead", "intake.submit"),
            ("SubmitLeads", "intake.submit"),
            ("GetLead", "intake.read"),
            ("ListRejections", "intake.review"),
            ("ReconsiderRejection", "intake.review"),
            ("OptOut", "intake.opt_out"),
            ("EraseContact", "intake.erase"),
            ("CheckContactable", "intake.read"),
            ("Subscribe", "intake.read"),
        ];
        let table = ScopeTable::new(&[(INTAKE, ALL)], proto::FILE_DESCRIPTOR_SET).unwrap();
        assert_eq!(
            table.scope_of("/fairchance.intake.v1.IntakeService/GetLead"),
            Some("intake.read")
        );
        let missing = ScopeTable::new(&[(INTAKE, &ALL[1..])], proto::FILE_DESCRIPTOR_SET)
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("fairchance.intake.v1.IntakeService/SubmitLead has no scope"),
            "{missing}"
        );
        const EXTRA: RpcScopes = &[("SubmitLead", "intake.submit"), ("Nope", "intake.read")];
        let mut with_extra = ALL.to_vec();
        with_extra.extend_from_slice(&EXTRA[1..]);
        let leaked: RpcScopes = Box::leak(with_extra.into_boxed_slice());
        let unknown = ScopeTable::new(&[(INTAKE, leaked)], proto::FILE_DESCRIPTOR_SET)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("IntakeService/Nope is in the scope table"),
            "{unknown}"
        );
    }
}
