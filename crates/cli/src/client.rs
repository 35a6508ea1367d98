//! What every client command shares: the server address and token, the connection with its
//! timeouts, the exit codes scripts rely on, and errors that say what to do.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// Exit codes (sysexits(3)), the same for every client command.
pub mod exit {
    /// Anything not covered below (e.g. an unknown lead id).
    pub const OTHER: u8 = 1;
    /// Bad command line or flag value.
    pub const USAGE: u8 = 64;
    /// The input was refused: invalid or rejected leads, an unreadable CSV, rejected rows with
    /// `--strict`.
    pub const DATA: u8 = 65;
    /// An input file does not exist or cannot be read.
    pub const NO_INPUT: u8 = 66;
    /// The service cannot be reached, is overloaded or did not answer in time.
    pub const UNAVAILABLE: u8 = 69;
    /// The service failed internally.
    pub const INTERNAL: u8 = 70;
    /// An output file cannot be written.
    pub const CANT_CREATE: u8 = 73;
    /// The token was refused.
    pub const NO_PERM: u8 = 77;
}

/// The exit-code table, for `--help` (a macro so it can be `concat!`ed into help texts).
macro_rules! exit_codes_help {
    () => {
        "Exit codes (sysexits):\n  \
         0   ok\n  \
         1   other failure (e.g. unknown lead id)\n  \
         64  bad command line or flag value\n  \
         65  input refused (invalid or rejected lead; rejected rows with --strict; unreadable CSV)\n  \
         66  input file missing or unreadable\n  \
         69  service unavailable, overloaded or too slow (retry later)\n  \
         70  internal error in the service\n  \
         73  cannot write an output file\n  \
         77  token refused"
    };
}
pub(crate) use exit_codes_help;

/// Connection options shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server address (`fairchance dev` serves every service on one address).
    #[arg(
        long,
        env = "FAIRCHANCE_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// Bearer token, sent as `authorization: Bearer <token>`.
    #[arg(long, env = "FAIRCHANCE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// How long to wait for the connection, e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    pub connect_timeout: Duration,
    /// Deadline of each call, e.g. 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
    /// PEM file of the CA that signed the server's certificate; needed for an https:// --addr.
    #[arg(long, env = "FAIRCHANCE_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate to present to a server that requires mutual TLS (with --client-key).
    #[arg(long, env = "FAIRCHANCE_CERT", global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "FAIRCHANCE_KEY", global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// A duration like `500ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 500ms, 5s, 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct Auth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// A connected channel that sends the token.
pub type Conn = InterceptedService<Channel, Auth>;

impl ClientArgs {
    /// Connects (eagerly, so a wrong address fails here with advice) within the connect
    /// timeout.
    pub async fn connect(&self) -> Result<Conn, CliError> {
        let header = match &self.token {
            Some(token) if !token.is_empty() => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| CliError::usage("--token contains characters not allowed in a header", "pass the token as printed by your identity provider, without spaces or line breaks"))?,
            ),
            _ => None,
        };
        let addr = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|_| {
                CliError::usage(
                    format!("--addr {addr:?} is not a valid address"),
                    "use a URL like http://127.0.0.1:50051",
                )
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let endpoint = match self.tls(&addr)? {
            Some(tls) => endpoint.tls_config(tls).map_err(|error| {
                CliError::usage(
                    format!(
                        "--ca-cert / --client-cert / --client-key are not usable: {}",
                        root_cause(&error)
                    ),
                    "pass PEM files: the server's CA, and your certificate with its private key",
                )
            })?,
            None => endpoint,
        };
        let channel = match tokio::time::timeout(self.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => {
                return Err(CliError::new(
                    exit::UNAVAILABLE,
                    format!("cannot connect to {addr} ({})", root_cause(&error)),
                    "check that the server is running (`fairchance dev` starts one locally) and that --addr or FAIRCHANCE_ADDR points at it",
                ));
            }
            Err(_) => {
                return Err(CliError::new(
                    exit::UNAVAILABLE,
                    format!(
                        "cannot connect to {addr} within {}",
                        crate::table::duration_text(self.connect_timeout)
                    ),
                    "check --addr / FAIRCHANCE_ADDR and the network, or raise --connect-timeout",
                ));
            }
        };
        Ok(InterceptedService::new(channel, Auth { header }))
    }

    /// The TLS settings for `addr`: `None` for plaintext (http://), an error naming the flag
    /// when a file is missing or the flags do not fit the address.
    fn tls(&self, addr: &str) -> Result<Option<ClientTlsConfig>, CliError> {
        let https = addr.starts_with("https://");
        let any_flag =
            self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if !https {
            if any_flag {
                return Err(CliError::usage(
                    format!("--addr {addr} is plaintext, but TLS files were given"),
                    "use an https:// address, or drop --ca-cert / --client-cert / --client-key (FAIRCHANCE_CA_CERT, FAIRCHANCE_CERT, FAIRCHANCE_KEY)",
                ));
            }
            return Ok(None);
        }
        let Some(ca) = &self.ca_cert else {
            return Err(CliError::usage(
                format!("--addr {addr} uses TLS, but no --ca-cert was given"),
                "pass --ca-cert (or FAIRCHANCE_CA_CERT) with the PEM CA that signed the server's certificate",
            ));
        };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_pem("--ca-cert", ca)?));
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(Identity::from_pem(
                read_pem("--client-cert", cert)?,
                read_pem("--client-key", key)?,
            ));
        }
        Ok(Some(tls))
    }

    /// A request with this command's deadline (sent as `grpc-timeout`).
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one call under the deadline, on the client side too.
    pub async fn call<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(CliError::from_status(what, &status)),
            Err(_) => Err(CliError::new(
                exit::UNAVAILABLE,
                format!(
                    "{what}: no answer within {}",
                    crate::table::duration_text(self.timeout)
                ),
                "the service is slow or overloaded; retry, or raise --timeout",
            )),
        }
    }
}

fn read_pem(flag: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| {
        CliError::new(
            exit::NO_INPUT,
            format!("{flag} {}: cannot read: {error}", path.display()),
            "check the path",
        )
    })
}

/// The innermost cause of an error, which is what says what went wrong ("connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A failure of a client command: what happened, what to do, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub what: String,
    pub todo: String,
    /// Further lines (e.g. each field violation), printed indented.
    pub details: Vec<String>,
}

impl CliError {
    pub fn new(code: u8, what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self {
            code,
            what: what.into(),
            todo: todo.into(),
            details: Vec::new(),
        }
    }

    pub fn usage(what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self::new(exit::USAGE, what, todo)
    }

    /// Maps a gRPC status to an exit code and advice; field violations become details.
    pub fn from_status(what: &str, status: &Status) -> Self {
        // "transport error" alone hides the cause, e.g. a refused client certificate.
        let cause = std::error::Error::source(status).map(root_cause);
        let with_cause = match &cause {
            Some(cause) if !status.message().contains(cause.as_str()) => {
                format!("{}: {cause}", status.message())
            }
            _ => status.message().to_owned(),
        };
        let message = with_cause.as_str();
        let (code, todo) = match status.code() {
            Code::InvalidArgument => (exit::DATA, "fix the fields named below and try again"),
            Code::NotFound => (
                exit::OTHER,
                "check the id (copy it from the command that printed it)",
            ),
            Code::AlreadyExists => (exit::DATA, "use a new idempotency key for a different lead"),
            Code::FailedPrecondition | Code::Aborted | Code::OutOfRange => (
                exit::OTHER,
                "the service explained why above; change the request accordingly",
            ),
            Code::Unavailable | Code::ResourceExhausted => (
                exit::UNAVAILABLE,
                "the service is down or overloaded; retry in a moment",
            ),
            Code::DeadlineExceeded | Code::Cancelled => (
                exit::UNAVAILABLE,
                "the service did not answer in time; retry, or raise --timeout",
            ),
            Code::Unauthenticated => (
                exit::NO_PERM,
                "pass a valid token with --token or FAIRCHANCE_TOKEN",
            ),
            Code::PermissionDenied => (
                exit::NO_PERM,
                "use a token with the scope this command needs",
            ),
            Code::Unimplemented => (
                exit::INTERNAL,
                "the server does not offer this call; check that --addr points at a fairchance server of a matching version",
            ),
            // No answer from the service at all: the connection failed under the call.
            Code::Unknown if cause.is_some() => (
                exit::UNAVAILABLE,
                "the connection failed; when the reason names a certificate, check --ca-cert, --client-cert and --client-key",
            ),
            _ => (
                exit::INTERNAL,
                "the service failed; check its logs, and retry",
            ),
        };
        let mut error = Self::new(
            code,
            format!(
                "{what}: {}",
                if message.is_empty() {
                    status.code().description()
                } else {
                    message
                }
            ),
            todo,
        );
        if let Some(bad) = status.get_details_bad_request() {
            // The message repeats the violations; list each once, below.
            error.what = format!("{what}: invalid request");
            error.details = bad
                .field_violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect();
        }
        error
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fairchance: {}", self.what)?;
        if !self.todo.is_empty() {
            write!(f, ": {}", self.todo)?;
        }
        for detail in &self.details {
            write!(f, "\n  {detail}")?;
        }
        Ok(())
    }
}

/// Runs a client command on a small runtime and turns its result into an exit code.
pub fn run(command: impl Future<Output = Result<ExitCode, CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "fairchance: cannot start the async runtime ({error}): check the process limits"
            );
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{error}");
            error.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn field_violations_are_listed_and_invalid_input_is_a_data_error() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "the lead is malformed",
            tonic_types::ErrorDetails::with_bad_request_violation("contact.email", "not an email"),
        );
        let error = CliError::from_status("submit", &status);
        assert_eq!(error.code, exit::DATA);
        assert_eq!(
            error.to_string(),
            "fairchance: submit: invalid request: fix the fields named below and try again\n  contact.email: not an email"
        );
        let down = CliError::from_status("submit", &Status::unavailable("db down"));
        assert_eq!(down.code, exit::UNAVAILABLE);
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn args(flags: &[&str]) -> Result<ClientArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("fairchance").chain(flags.iter().copied()))
            .map(|cli| cli.client)
    }

    #[tokio::test]
    async fn tls_flags_reach_a_mutual_tls_server_and_problems_name_the_flag() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;

        let fixture = |name: &str| testkit::tls_fixture(name).display().to_string();
        let (listener, addr) = testkit::bind_local().await;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let tls = runtime::tls::TlsConfig::new(
            testkit::read_tls_fixture("server.pem"),
            testkit::read_tls_fixture("server.key"),
            Some(testkit::read_tls_fixture("ca.pem")),
        )
        .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls.server_config())
                .unwrap()
                .add_service(health)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let url = format!("https://localhost:{}", addr.port());
        let (ca, cert, key) = (
            fixture("ca.pem"),
            fixture("client.pem"),
            fixture("client.key"),
        );
        let check = |client: ClientArgs| async move {
            let conn = client.connect().await?;
            client
                .call(
                    "health",
                    HealthClient::new(conn).check(client.request(HealthCheckRequest::default())),
                )
                .await
        };

        let trusted = args(&[
            "--addr",
            &url,
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ])
        .unwrap();
        let answer = check(trusted).await.unwrap();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // Without a client certificate the server refuses; the error says why.
        let error = check(args(&["--addr", &url, "--ca-cert", &ca]).unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code, exit::UNAVAILABLE, "{error}");
        assert!(error.to_string().contains("CertificateRequired"), "{error}");

        // A certificate from another CA: refused too.
        let error = check(
            args(&[
                "--addr",
                &url,
                "--ca-cert",
                &ca,
                "--client-cert",
                &fixture("other-client.pem"),
                "--client-key",
                &fixture("other-client.key"),
            ])
            .unwrap(),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("UnknownCA"), "{error}");

        let error = check(args(&["--addr", &url]).unwrap()).await.unwrap_err();
        assert_eq!(error.code, exit::USAGE);
        assert!(error.to_string().contains("no --ca-cert"), "{error}");
        let plain = format!("http://127.0.0.1:{}", addr.port());
        let error = check(args(&["--addr", &plain, "--ca-cert", &ca]).unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code, exit::USAGE);
        assert!(error.to_string().contains("is plaintext"), "{error}");
        let error = check(args(&["--addr", &url, "--ca-cert", "/nonexistent/ca.pem"]).unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code, exit::NO_INPUT);
        assert!(
            error
                .to_string()
                .contains("--ca-cert /nonexistent/ca.pem: cannot read"),
            "{error}"
        );
        // A certificate needs its key, and the other way round.
        let missing = args(&["--addr", &url, "--client-cert", &cert]).unwrap_err();
        assert!(missing.to_string().contains("--client-key"), "{missing}");
        stop.cancel();
    }
}
