//! What every client command shares: the server address and token, the connection with its
//! timeouts, the exit codes scripts rely on, and errors that say what to do.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
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
        let message = status.message();
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
}
