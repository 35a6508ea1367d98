//! TLS with rustls, both ends of a call between services.
//!
//! - The server ([`TlsConfig`]): a certificate and key, and, for mutual TLS, the CA whose
//!   certificates callers must present (`FAIRCHANCE_TLS_CERT`, `FAIRCHANCE_TLS_KEY`,
//!   `FAIRCHANCE_TLS_CLIENT_CA`). With mutual TLS a caller without a certificate, or with one
//!   another CA signed, is refused during the handshake, before any RPC.
//! - The client ([`ClientTls`]): the CA that signed the servers' certificates, and the
//!   certificate and key this service presents to them (`FAIRCHANCE_CLIENT_CA`,
//!   `FAIRCHANCE_CLIENT_CERT`, `FAIRCHANCE_CLIENT_KEY`), used for every `https://` upstream.
//!
//! Both are read from PEM files at start (see [`crate::config`]) and checked by building the
//! rustls configuration, so a bad file stops the service before it listens, naming the key.
//!
//! The server does its own handshakes (tonic's TLS takes a fixed certificate) so that it can
//! swap its certificate: it re-reads the certificate and key every `FAIRCHANCE_TOKENS_RELOAD`,
//! and each new connection gets the latest pair that belongs together (a renewal by
//! cert-manager, or a Secret updated by hand). A pair that does not validate is logged and
//! counted, and the previous one is served. The CAs, and the client's own certificate, are
//! read at start only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::reload::{Live, Watch};

/// Longest a TLS handshake may take. Without a bound a peer that opens a connection and never
/// completes the handshake holds it (and its memory) for good.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS material, as PEM, and where it came from when it is to be re-read.
#[derive(Clone)]
pub struct TlsConfig {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    files: Option<CertFiles>,
}

/// The files of the certificate and key, re-read while serving.
#[derive(Debug, Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca.is_some())
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// PEM certificate chain and private key; with `client_ca`, callers must present a
    /// certificate it signed (mutual TLS). Fails, naming the file at fault where it can tell,
    /// when rustls cannot use them.
    pub fn new(cert: Vec<u8>, key: Vec<u8>, client_ca: Option<Vec<u8>>) -> Result<Self, String> {
        expect_pem(&cert, "FAIRCHANCE_TLS_CERT", PemKind::Certificate)?;
        expect_pem(&key, "FAIRCHANCE_TLS_KEY", PemKind::PrivateKey)?;
        if let Some(ca) = &client_ca {
            expect_pem(ca, "FAIRCHANCE_TLS_CLIENT_CA", PemKind::Certificate)?;
        }
        let config = Self {
            cert,
            key,
            client_ca,
            files: None,
        };
        let identity = certified_key(&config.cert, &config.key)?;
        config.rustls_config(Arc::new(SwappingCert(Live::new(Arc::new(identity)))))?;
        Ok(config)
    }

    /// Re-reads the certificate and key from these files every `every` while serving, so a
    /// renewed certificate is served to new connections without a restart.
    pub fn reload_from(mut self, cert: PathBuf, key: PathBuf, every: Duration) -> Self {
        self.files = Some(CertFiles { cert, key, every });
        self
    }

    /// Whether callers must present a client certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's own server configuration, for a server built without [`crate::server`]: its
    /// certificate is fixed, never re-read.
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }

    /// Accepts TLS on `incoming`'s connections until it ends or the server stops taking
    /// them, each handshake on its own task (bounded by [`HANDSHAKE_TIMEOUT`]) so a slow peer
    /// holds up no other. The certificate is the latest valid one from the files, when
    /// [`TlsConfig::reload_from`] named them, watched until `stop`.
    pub(crate) fn accept(
        &self,
        incoming: TcpIncoming,
        stop: CancellationToken,
    ) -> Result<ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>, String> {
        let identity = Live::new(Arc::new(certified_key(&self.cert, &self.key)?));
        let acceptor = TlsAcceptor::from(Arc::new(
            self.rustls_config(Arc::new(SwappingCert(identity.clone())))?,
        ));
        if let Some(files) = &self.files {
            Watch {
                credential: "tls_certificate",
                origin: "FAIRCHANCE_TLS_CERT, FAIRCHANCE_TLS_KEY".into(),
                paths: vec![files.cert.clone(), files.key.clone()],
                every: files.every,
            }
            .spawn(&identity, Some(stop), |texts| {
                certified_key(texts[0].as_bytes(), texts[1].as_bytes())
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(handshakes(incoming, acceptor, tx));
        Ok(ReceiverStream::new(rx))
    }

    fn rustls_config(&self, identity: Arc<SwappingCert>) -> Result<ServerConfig, String> {
        let builder = ServerConfig::builder();
        let provider = builder.crypto_provider().clone();
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let not_usable = |e: &dyn std::fmt::Display| {
                    format!("FAIRCHANCE_TLS_CLIENT_CA: not usable: {e}")
                };
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(cert.map_err(|e| not_usable(&e))?)
                        .map_err(|e| not_usable(&e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| not_usable(&e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(identity);
        config.alpn_protocols.push(b"h2".to_vec());
        Ok(config)
    }
}

/// The server's certificate and key, parsed and checked to belong together.
fn certified_key(cert: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
    expect_pem(cert, "FAIRCHANCE_TLS_CERT", PemKind::Certificate)?;
    expect_pem(key, "FAIRCHANCE_TLS_KEY", PemKind::PrivateKey)?;
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("FAIRCHANCE_TLS_CERT: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("FAIRCHANCE_TLS_KEY: {e}"))?;
    // The provider tonic's own TLS uses: the one rustls is built with (ring).
    let provider = ServerConfig::builder().crypto_provider().clone();
    CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("FAIRCHANCE_TLS_CERT, FAIRCHANCE_TLS_KEY: not usable together: {e}"))
}

/// Hands every handshake the certificate in force when it starts.
#[derive(Debug)]
struct SwappingCert(Live<CertifiedKey>);

impl ResolvesServerCert for SwappingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

async fn handshakes(
    incoming: TcpIncoming,
    acceptor: TlsAcceptor,
    accepted: tokio::sync::mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
) {
    let mut incoming = std::pin::pin!(incoming);
    let mut pending = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // The server dropped its end: it no longer takes connections.
            () = accepted.closed() => return,
            next = incoming.next() => match next {
                Some(Ok(tcp)) => {
                    let acceptor = acceptor.clone();
                    pending.spawn(tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)));
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "cannot accept a connection");
                }
                None => return,
            },
            Some(done) = pending.join_next(), if !pending.is_empty() => match done {
                Ok(Ok(Ok(tls))) => {
                    if accepted.send(Ok(tls)).await.is_err() {
                        return;
                    }
                }
                // A refused peer (no or a foreign certificate) learns why from the alert; the
                // server has nothing to add.
                Ok(Ok(Err(error))) => tracing::debug!(%error, "TLS handshake failed"),
                Ok(Err(_elapsed)) => tracing::debug!("TLS handshake timed out"),
                Err(error) => tracing::warn!(%error, "TLS handshake task failed"),
            },
        }
    }
}

/// How a service's outgoing calls speak TLS: the CA that signed the servers' certificates,
/// and the identity presented to servers that require mutual TLS.
#[derive(Clone)]
pub struct ClientTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The servers' CA, and optionally this client's certificate chain and key (PEM). Fails,
    /// naming the setting at fault where it can tell, when rustls cannot use them.
    pub fn new(ca: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Result<Self, String> {
        expect_pem(&ca, "FAIRCHANCE_CLIENT_CA", PemKind::Certificate)?;
        if let Some((cert, key)) = &identity {
            expect_pem(cert, "FAIRCHANCE_CLIENT_CERT", PemKind::Certificate)?;
            expect_pem(key, "FAIRCHANCE_CLIENT_KEY", PemKind::PrivateKey)?;
        }
        let tls = Self { ca, identity };
        // rustls reads the files only when a connector is built: build one now.
        Endpoint::from_static("https://localhost")
            .tls_config(tls.config())
            .map_err(|e| {
                format!(
                    "FAIRCHANCE_CLIENT_CA{}: not usable: {}",
                    if tls.identity.is_some() {
                        ", FAIRCHANCE_CLIENT_CERT, FAIRCHANCE_CLIENT_KEY"
                    } else {
                        ""
                    },
                    root_cause(&e)
                )
            })?;
        Ok(tls)
    }

    /// Whether this client presents a certificate of its own.
    pub fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// tonic's client configuration; the server name checked is the URL's host.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

#[derive(Clone, Copy)]
enum PemKind {
    Certificate,
    PrivateKey,
}

/// A first, cheap check that names the setting: rustls silently skips PEM blocks it does not
/// expect, so a key given as the certificate would otherwise surface as "no certificates".
fn expect_pem(pem: &[u8], key: &str, kind: PemKind) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    let found = match kind {
        PemKind::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        PemKind::PrivateKey => text
            .lines()
            .any(|l| l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")),
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "{key}: no PEM {} in the file",
            match kind {
                PemKind::Certificate => "certificate (-----BEGIN CERTIFICATE-----)",
                PemKind::PrivateKey => "private key (-----BEGIN ... PRIVATE KEY-----)",
            }
        ))
    }
}

/// The innermost cause of an error: tonic's own message is only "transport error".
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
