//! Helpers for the gRPC edge of every service: status codes with field-level details,
//! timestamp conversion, and mapping storage failures without leaking internals.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::db::DbError;

/// INVALID_ARGUMENT with a google.rpc.BadRequest detail naming each bad field.
pub fn invalid_argument<F, D>(violations: impl IntoIterator<Item = (F, D)>) -> Status
where
    F: Into<String>,
    D: Into<String>,
{
    let mut details = ErrorDetails::new();
    let mut summary = Vec::new();
    for (field, description) in violations {
        let (field, description) = (field.into(), description.into());
        summary.push(if field.is_empty() {
            description.clone()
        } else {
            format!("{field}: {description}")
        });
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, summary.join("; "), details)
}

/// A required id field: `what` names the id in the error, e.g. "lead id".
pub fn parse_id<T: std::str::FromStr>(field: &str, text: &str, what: &str) -> Result<T, Status> {
    if text.is_empty() {
        return Err(invalid_argument([(field, "required")]));
    }
    text.parse()
        .map_err(|_| invalid_argument([(field, format!("not a {what} (expected a UUID)"))]))
}

/// Longest idempotency key a server keeps (in a request field or in metadata).
pub const IDEMPOTENCY_KEY_MAX: usize = 128;

/// The `idempotency-key` metadata of a request (what [`crate::client`] sends on every unary
/// call, the same on each retry), `None` when absent or empty. A key that is too long or not
/// visible ASCII is refused, naming the metadata key, rather than silently ignored: the caller
/// believes its retries are safe.
pub fn idempotency_key<T>(request: &tonic::Request<T>) -> Result<Option<String>, Status> {
    let field = crate::client::IDEMPOTENCY_KEY;
    let Some(value) = request.metadata().get(field) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| invalid_argument([(field, "must be visible ASCII")]))?
        .trim();
    if key.len() > IDEMPOTENCY_KEY_MAX {
        return Err(invalid_argument([(
            field,
            format!("must be at most {IDEMPOTENCY_KEY_MAX} characters"),
        )]));
    }
    Ok((!key.is_empty()).then(|| key.to_owned()))
}

/// Largest page a list RPC returns.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Page size when a list request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The page size of a list request (`page_size` field): 0 means the default.
pub fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        _ => Err(invalid_argument([(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
        )])),
    }
}

/// Maps a storage failure to UNAVAILABLE (retryable) and logs the cause, which is not sent.
pub fn storage_unavailable(error: &DbError) -> Status {
    tracing::error!(%error, "storage failure");
    Status::unavailable("storage temporarily unavailable; retry with backoff")
}

/// A protobuf timestamp.
pub fn to_proto_timestamp(ts: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

/// A jiff timestamp from a protobuf one; `None` when out of range.
pub fn from_proto_timestamp(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// An optional timestamp field of a request; a value out of range is an invalid argument
/// naming `field`.
pub fn optional_timestamp(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Result<Option<jiff::Timestamp>, Status> {
    ts.map(|ts| {
        from_proto_timestamp(ts).ok_or_else(|| invalid_argument([(field, "not a valid time")]))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field() {
        let status = invalid_argument([
            ("contact.email", "not an email"),
            ("contact.phone", "not a number"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "contact.email: not an email; contact.phone: not a number"
        );
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request detail");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["contact.email", "contact.phone"]);
    }

    #[test]
    fn idempotency_key_comes_from_metadata() {
        let with = |value: &str| {
            let mut request = tonic::Request::new(());
            request
                .metadata_mut()
                .insert(crate::client::IDEMPOTENCY_KEY, value.parse().unwrap());
            idempotency_key(&request)
        };
        assert_eq!(idempotency_key(&tonic::Request::new(())).unwrap(), None);
        assert_eq!(with("").unwrap(), None);
        assert_eq!(with(" k-1 ").unwrap().as_deref(), Some("k-1"));
        let long = with(&"k".repeat(IDEMPOTENCY_KEY_MAX + 1)).unwrap_err();
        assert_eq!(long.code(), Code::InvalidArgument);
        let details = long.get_error_details();
        let field = &details
            .bad_request()
            .expect("field violation")
            .field_violations[0];
        assert_eq!(field.field, "idempotency-key");
        assert!(with(&"k".repeat(IDEMPOTENCY_KEY_MAX)).is_ok());
    }

    #[test]
    fn timestamps_round_trip() {
        let ts: jiff::Timestamp = "2026-11-23T10:00:00.5Z".parse().unwrap();
        assert_eq!(from_proto_timestamp(&to_proto_timestamp(ts)), Some(ts));
    }
}
