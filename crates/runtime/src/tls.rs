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

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Longest a TLS handshake may take. Without a bound a peer that opens a connection and never
/// completes the handshake holds it (and its memory) for good.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS material, as PEM.
#[derive(Clone)]
pub struct TlsConfig {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca.is_some())
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
        };
        tonic::transport::Server::builder()
            .tls_config(config.server_config())
            .map_err(|e| {
                format!(
                    "FAIRCHANCE_TLS_CERT, FAIRCHANCE_TLS_KEY{}: not usable together: {}",
                    if config.client_ca.is_some() {
                        ", FAIRCHANCE_TLS_CLIENT_CA"
                    } else {
                        ""
                    },
                    root_cause(&e)
                )
            })?;
        Ok(config)
    }

    /// Whether callers must present a client certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's server configuration.
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
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
