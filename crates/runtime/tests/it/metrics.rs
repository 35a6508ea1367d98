//! Metrics: the RED layer counts calls by method and code (and nothing else), `/metrics` is
//! served in a parseable text format on its own port, the database gauges read the timers and
//! the event log, and what a transaction records is counted once even when it is retried.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use runtime::config::ServerConfig;
use runtime::consumer::HandlerError;
use runtime::metrics;
use runtime::server::HealthTarget;
use runtime::timers::{NewTimer, Timer, TimerHandler, Timers};
use runtime::{Db, EventLog, NewEvent, Tx};
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::RoutesBuilder;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// One sample line: its name, its labels in order, and its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly enough to catch a malformed line: comments
/// are `# HELP|TYPE|UNIT name ...` or the final `# EOF`, samples `name{k="v",...} value`.
fn parse(text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end:\n{text}");
    let mut samples = Vec::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "unexpected comment {line:?}"
            );
            assert!(valid_name(parts.next().unwrap_or_default()), "{line:?}");
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(body, line))
            }
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(valid_name(key), "bad label name in {line:?}");
        // Values here never contain an escaped quote; a quote ends the value.
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unclosed label value in {line:?}"));
        labels.insert(key.to_owned(), value.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The value of the sample `name` whose labels include `labels`, 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A plain HTTP/1.1 GET; returns the status code, the content type and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, metrics::CONTENT_TYPE);
    parse(&body)
}

struct Running {
    grpc: tonic::transport::Channel,
    metrics: SocketAddr,
    stop: CancellationToken,
    _db: TestDb,
}

async fn start() -> Running {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let (listener, addr) = testkit::bind_local().await;
    let stop = CancellationToken::new();
    let metrics = runtime::service::start_metrics(Some("127.0.0.1:0".parse().unwrap()), &stop)
        .await
        .unwrap()
        .unwrap();
    let target = HealthTarget {
        service: "fairchance.metricstest.v1.MetricsTestService",
        db,
        scopes: &[],
    };
    crate::spawn_server(
        listener,
        RoutesBuilder::default(),
        target,
        ServerConfig::default(),
        stop.clone(),
    );
    Running {
        grpc: testkit::channel(addr).await,
        metrics,
        stop,
        _db: test_db,
    }
}

const REQUESTS: &str = "fairchance_rpc_requests_total";
const DURATION_COUNT: &str = "fairchance_rpc_duration_seconds_count";

#[tokio::test]
async fn the_layer_counts_calls_by_method_and_code() {
    let r = start().await;
    let before = scrape(r.metrics).await;
    let mut health = HealthClient::new(r.grpc.clone());
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    // Health answers NOT_FOUND for a service it does not know: a failing call.
    let failed = health
        .check(HealthCheckRequest {
            service: "fairchance.nothing.v1.NothingService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let after = scrape(r.metrics).await;

    let check = [
        ("grpc_service", "grpc.health.v1.Health"),
        ("grpc_method", "Check"),
    ];
    let delta = |name: &str, code: Option<&str>| {
        let mut labels = check.to_vec();
        if let Some(code) = code {
            labels.push(("grpc_code", code));
        }
        value(&after, name, &labels) - value(&before, name, &labels)
    };
    // Other tests of this binary check health too: at least ours.
    assert!(delta(REQUESTS, Some("OK")) >= 1.0, "OK call not counted");
    assert_eq!(delta(REQUESTS, Some("NOT_FOUND")), 1.0);
    assert!(delta(DURATION_COUNT, None) >= 2.0, "calls not timed");
    // The histogram has its buckets, cumulative up to +Inf.
    let inf = value(
        &after,
        "fairchance_rpc_duration_seconds_bucket",
        &[
            ("grpc_service", "grpc.health.v1.Health"),
            ("grpc_method", "Check"),
            ("le", "+Inf"),
        ],
    );
    assert_eq!(inf, value(&after, DURATION_COUNT, &check));
    r.stop.cancel();
}

#[tokio::test]
async fn a_streaming_call_is_counted_when_its_stream_opens() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request};

    let r = start().await;
    let labels = [
        ("grpc_service", "grpc.reflection.v1.ServerReflection"),
        ("grpc_method", "ServerReflectionInfo"),
        ("grpc_code", "OK"),
    ];
    let before = value(&scrape(r.metrics).await, REQUESTS, &labels);
    let mut client = ServerReflectionClient::new(r.grpc.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    // Counted once the stream opened, while it is still open.
    let open = value(&scrape(r.metrics).await, REQUESTS, &labels);
    assert_eq!(open - before, 1.0);
    r.stop.cancel();
}

#[tokio::test]
async fn labels_carry_method_names_and_codes_only() {
    let r = start().await;
    // A made-up method whose name is an email address: answered UNIMPLEMENTED, and labelled
    // `unknown`, never with the path.
    let mut grpc = tonic::client::Grpc::new(r.grpc.clone());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static("/grpc.health.v1.Health/ada.lovelace@example.com");
    let status = grpc
        .unary::<HealthCheckRequest, tonic_health::pb::HealthCheckResponse, _>(
            tonic::Request::new(HealthCheckRequest {
                service: "Ada Lovelace +44 20 7946 0958".into(),
            }),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);

    let (_, _, text) = get(r.metrics, "/metrics").await;
    for secret in ["lovelace", "Lovelace", "example.com", "@", "7946"] {
        assert!(!text.contains(secret), "{secret:?} in the metrics:\n{text}");
    }
    let samples = parse(&text);
    assert!(
        value(
            &samples,
            REQUESTS,
            &[
                ("grpc_service", "unknown"),
                ("grpc_method", "unknown"),
                ("grpc_code", "UNIMPLEMENTED"),
            ],
        ) >= 1.0
    );
    // The RPC families have exactly these labels, with codes from gRPC's list.
    for sample in samples.iter().filter(|s| s.name == REQUESTS) {
        let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["grpc_code", "grpc_method", "grpc_service"],
            "{sample:?}"
        );
        let code = &sample.labels["grpc_code"];
        assert!(
            (0..=16).any(|c| metrics::code_name(tonic::Code::from_i32(c)) == code),
            "{sample:?}"
        );
    }
    r.stop.cancel();
}

#[tokio::test]
async fn the_endpoint_serves_metrics_and_health_on_its_own_port_until_shutdown() {
    let stop = CancellationToken::new();
    let addr = metrics::spawn_endpoint("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let samples = scrape(addr).await;
    assert!(samples.iter().all(|s| s.name.starts_with("fairchance_")));
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(get(addr, "/").await.0, 404);

    // A second endpoint on the same port is refused, naming the key.
    let error = metrics::spawn_endpoint(addr, stop.clone())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("FAIRCHANCE_METRICS_ADDR"),
        "{error}"
    );

    stop.cancel();
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the endpoint still accepts connections after shutdown"
    );
}

fn t0() -> Timestamp {
    "2026-11-02T09:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn database_gauges_read_the_timers_and_the_event_log() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    let now = Timestamp::now();
    let mut tx = db.begin().await.unwrap();
    for (subject, due) in [
        ("overdue", now - SignedDuration::from_mins(5)),
        ("due", now - SignedDuration::from_secs(1)),
        ("later", now + SignedDuration::from_hours(1)),
    ] {
        let timer = NewTimer {
            kind: "sla_deadline".into(),
            subject: subject.into(),
            due_at: due,
            payload: Vec::new(),
        };
        Timers::schedule(&mut tx, &timer).await.unwrap();
    }
    let log = EventLog::new(db.clone(), "metricsgauges");
    let event = prost_types::Duration {
        seconds: 1,
        nanos: 0,
    };
    let events: Vec<NewEvent> = (0..3)
        .map(|i| NewEvent::new(format!("aggregate-{i}"), &event, t0()))
        .collect();
    log.append(&mut tx, &events).await.unwrap();
    log.commit(tx).await.unwrap();

    let sample = metrics::sample_database_once("metricsgauges", &db)
        .await
        .unwrap();
    assert_eq!(sample.outbox_events, 3);
    assert_eq!(
        (
            sample.timers.scheduled,
            sample.timers.due,
            sample.timers.overdue
        ),
        (3, 2, 1)
    );
    let samples = parse(&metrics::encode());
    let service = [("service", "metricsgauges")];
    assert_eq!(value(&samples, "fairchance_outbox_events", &service), 3.0);
    assert_eq!(
        value(&samples, "fairchance_timers_scheduled", &service),
        3.0
    );
    assert_eq!(value(&samples, "fairchance_timers_due", &service), 2.0);
    assert_eq!(value(&samples, "fairchance_timers_overdue", &service), 1.0);
    // Appended events are counted by type once committed.
    assert_eq!(
        value(
            &samples,
            "fairchance_events_appended_total",
            &[("service", "metricsgauges"), ("event_type", "Duration")],
        ),
        3.0
    );
}

/// Counts each fire on commit; fails the timers named in `fail`.
struct CountOnCommit {
    fired: Arc<AtomicU64>,
    fail: &'static [&'static str],
}

impl TimerHandler for CountOnCommit {
    async fn fire(&self, _tx: &mut Tx, timer: &Timer) -> Result<(), HandlerError> {
        let fired = self.fired.clone();
        metrics::on_commit(move || {
            fired.fetch_add(1, Ordering::SeqCst);
        });
        if self.fail.contains(&timer.subject.as_str()) {
            return Err("refused".into());
        }
        Ok(())
    }
}

async fn schedule_all(db: &Db, subjects: &[&str]) {
    let mut tx = db.begin().await.unwrap();
    for subject in subjects {
        let timer = NewTimer {
            kind: "count".into(),
            subject: (*subject).into(),
            due_at: t0(),
            payload: Vec::new(),
        };
        Timers::schedule(&mut tx, &timer).await.unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_chunk_fired_again_after_one_timer_failed_is_counted_once() {
    let test_db = TestDb::sqlite();
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    schedule_all(&db, &["a", "b", "bad", "c"]).await;
    let timers = Timers::new(db.clone());
    let handler = CountOnCommit {
        fired: Arc::new(AtomicU64::new(0)),
        fail: &["bad"],
    };
    // The chunk is fired together, rolled back for "bad", then fired one by one.
    let fired = timers
        .fire_due(t0() + SignedDuration::from_secs(1), &handler)
        .await
        .unwrap();
    assert_eq!(fired, 3);
    assert_eq!(handler.fired.load(Ordering::SeqCst), 3);
}
