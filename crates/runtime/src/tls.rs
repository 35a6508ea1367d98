//! Optional TLS for the gRPC server (rustls): a certificate and key, and, for mutual TLS, the
//! CA whose certificates callers must present. Read from PEM files at start
//! (`FAIRCHANCE_TLS_CERT`, `FAIRCHANCE_TLS_KEY`, `FAIRCHANCE_TLS_CLIENT_CA`, see
//! [`crate::config`]), so a bad file stops the service before it listens.

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

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
    /// certificate it signed (mutual TLS). Fails when rustls cannot use them.
    pub fn new(cert: Vec<u8>, key: Vec<u8>, client_ca: Option<Vec<u8>>) -> Result<Self, String> {
        let config = Self {
            cert,
            key,
            client_ca,
        };
        tonic::transport::Server::builder()
            .tls_config(config.server_config())
            .map_err(|e| root_cause(&e))?;
        Ok(config)
    }

    /// Whether callers must present a client certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// tonic's server configuration.
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
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
