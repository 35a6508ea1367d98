//! The gRPC edge in-process on port 0: status codes, field-level details, bulk streaming.

use std::time::Duration;

use intake::IntakeService;
use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use runtime::config::ServerConfig;
use runtime::service::{ServiceContext, ServiceSpec};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_types::StatusExt;

/// A small stream cap, to see it enforced.
const STREAMS_PER_CALLER: usize = 3;

struct Running {
    client: IntakeServiceClient<tonic::transport::Channel>,
    stop: CancellationToken,
    _db: TestDb,
}

async fn start() -> Running {
    let test_db = TestDb::new().await;
    let db = test_db.connect(&intake::store::MIGRATIONS).await;
    let stop = CancellationToken::new();
    let mut config = runtime::config::ServiceConfig::load(
        &runtime::config::Sources::default(),
        &runtime::config::Defaults::service("intake", 0),
    )
    .unwrap();
    config.server = ServerConfig {
        max_message_bytes: 64 * 1024,
        max_streams_per_caller: STREAMS_PER_CALLER,
        ..Default::default()
    };
    let ctx = ServiceContext {
        db,
        config: config.clone(),
        clock: std::sync::Arc::new(runtime::SystemClock),
        shutdown: stop.clone(),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = IntakeService::start(ctx, &mut routes).await.unwrap();
    let (listener, addr) = testkit::bind_local().await;
    let server_stop = stop.clone();
    tokio::spawn(async move {
        runtime::server::serve(listener, routes, health, &config.server, server_stop).await
    });
    Running {
        client: IntakeServiceClient::new(testkit::channel(addr).await),
        stop,
        _db: test_db,
    }
}

fn lead(email: &str) -> pb::LeadInput {
    pb::LeadInput {
        contact: Some(pb::Contact {
            email: email.into(),
            name: "Ada".into(),
            ..Default::default()
        }),
        source: Some(pb::SourceContext {
            source: "website-demo-form".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn malformed_leads_get_invalid_argument_with_field_violations() {
    let mut r = start().await;
    let mut bad = lead("nope");
    bad.contact.as_mut().unwrap().phone = "12".into();
    let status = r
        .client
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(bad),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<_> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert!(fields.contains(&"contact.email".to_owned()), "{fields:?}");
    assert!(fields.contains(&"contact.phone".to_owned()), "{fields:?}");

    let missing = r
        .client
        .submit_lead(pb::SubmitLeadRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let bad_id = r
        .client
        .get_lead(pb::GetLeadRequest {
            lead_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    let unknown = r
        .client
        .get_lead(pb::GetLeadRequest {
            lead_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let long_key = r
        .client
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead("a@example.com")),
            idempotency_key: "k".repeat(200),
        })
        .await
        .unwrap_err();
    assert_eq!(long_key.code(), Code::InvalidArgument);
    let conflict_first = pb::SubmitLeadRequest {
        lead: Some(lead("b@example.com")),
        idempotency_key: "same".into(),
    };
    r.client.submit_lead(conflict_first).await.unwrap();
    let conflict = r
        .client
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead("c@example.com")),
            idempotency_key: "same".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let bad_cursor = r
        .client
        .subscribe(pb::SubscribeRequest {
            from: Some(proto::events::v1::SubscribeFrom {
                after_cursor: "x".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_cursor.code(), Code::InvalidArgument);
    r.stop.cancel();
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let mut r = start().await;
    let mut big = lead("big@example.com");
    big.source.as_mut().unwrap().message = "x".repeat(100 * 1024);
    let status = r
        .client
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(big),
            idempotency_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    r.stop.cancel();
}

#[tokio::test]
async fn bulk_stream_reports_every_item() {
    let mut r = start().await;
    let mut items: Vec<pb::SubmitLeadsRequest> = (0..1000)
        .map(|n| pb::SubmitLeadsRequest {
            lead: Some(lead(&format!("p{n}@example.com"))),
            idempotency_key: String::new(),
        })
        .collect();
    items[10]
        .lead
        .as_mut()
        .unwrap()
        .contact
        .as_mut()
        .unwrap()
        .email = "broken".into();
    items[20].lead = None;
    items[30] = pb::SubmitLeadsRequest {
        lead: Some(lead("p0@example.com")),
        idempotency_key: String::new(),
    };
    let response = r
        .client
        .submit_leads(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 1000);
    assert!(
        response
            .results
            .iter()
            .enumerate()
            .all(|(i, r)| r.index as usize == i)
    );
    assert_eq!(
        (
            response.accepted,
            response.merged,
            response.rejected,
            response.invalid
        ),
        (997, 1, 0, 2)
    );
    assert_eq!(response.results[10].outcome(), pb::SubmitOutcome::Invalid);
    assert_eq!(response.results[10].problems[0].field, "contact.email");
    assert_eq!(response.results[20].problems[0].field, "lead");
    assert_eq!(response.results[30].outcome(), pb::SubmitOutcome::Merged);

    // Every accepted or merged item is on the event stream.
    let mut stream = r
        .client
        .subscribe(pb::SubscribeRequest { from: None })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while n < 998 {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(msg.event.is_some());
        n += 1;
    }
    r.stop.cancel();
}

#[tokio::test]
async fn check_contactable_reflects_an_opt_out_at_once() {
    let mut r = start().await;
    let mut ids = Vec::new();
    for email in ["stays@example.com", "leaves@example.com"] {
        let accepted = r
            .client
            .submit_lead(pb::SubmitLeadRequest {
                lead: Some(lead(email)),
                idempotency_key: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        ids.push(accepted.lead.unwrap().lead_id);
    }
    let unknown = "01890000-0000-7000-8000-000000000000".to_owned();
    let check = |ids: Vec<String>| pb::CheckContactableRequest { lead_ids: ids };

    let before = r
        .client
        .check_contactable(check(vec![ids[0].clone(), ids[1].clone(), unknown.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert!(before.do_not_contact_lead_ids.is_empty());
    assert_eq!(before.unknown_lead_ids, vec![unknown.clone()]);

    r.client
        .opt_out(pb::OptOutRequest {
            email: "Leaves@Example.com".into(),
            phone: String::new(),
            reason: "unsubscribe link".into(),
        })
        .await
        .unwrap();
    let after = r
        .client
        .check_contactable(check(vec![ids[0].clone(), ids[1].clone()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.do_not_contact_lead_ids, vec![ids[1].clone()]);

    let bad = r
        .client
        .check_contactable(check(vec!["not-a-uuid".into()]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let field = bad.get_details_bad_request().unwrap().field_violations[0]
        .field
        .clone();
    assert_eq!(field, "lead_ids[0]");
    let too_many = r
        .client
        .check_contactable(check(vec![unknown; 1001]))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    r.stop.cancel();
}

#[tokio::test]
async fn erase_contact_answers_with_ids_and_names_bad_fields() {
    let mut r = start().await;
    let accepted = r
        .client
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead("erase.me@example.com")),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let lead_id = accepted.lead.unwrap().lead_id;
    let erase = |email: &str, reference: &str| pb::EraseContactRequest {
        email: email.into(),
        phone: String::new(),
        reference: reference.into(),
    };

    let nobody = r
        .client
        .erase_contact(erase("", "DSR-9"))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::InvalidArgument);
    assert_eq!(
        nobody.get_details_bad_request().unwrap().field_violations[0].field,
        "email"
    );
    let no_reference = r
        .client
        .erase_contact(erase("erase.me@example.com", ""))
        .await
        .unwrap_err();
    assert_eq!(no_reference.code(), Code::InvalidArgument);
    assert_eq!(
        no_reference
            .get_details_bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "reference"
    );

    let erased = r
        .client
        .erase_contact(erase("Erase.Me@example.com", "DSR-9"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.lead_ids, std::slice::from_ref(&lead_id));
    assert!(!erased.erasure_id.is_empty());
    assert!(erased.events_rewritten >= 1);
    let kept = r
        .client
        .get_lead(pb::GetLeadRequest { lead_id })
        .await
        .unwrap()
        .into_inner();
    let contact = kept.lead.unwrap().input.unwrap().contact.unwrap();
    assert!(contact.email.is_empty() && contact.name.is_empty());
    r.stop.cancel();
}

/// One caller cannot hold more than its share of open streams: the next is refused with
/// RESOURCE_EXHAUSTED naming the limit, and closing one frees its slot. Unary calls are not
/// counted.
#[tokio::test]
async fn a_caller_holds_at_most_its_share_of_open_streams() {
    let r = start().await;
    let subscribe = || {
        let mut client = r.client.clone();
        async move {
            client
                .subscribe(pb::SubscribeRequest::default())
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut open = Vec::new();
    for _ in 0..STREAMS_PER_CALLER {
        open.push(subscribe().await.expect("within the cap"));
    }
    let refused = subscribe().await.expect_err("one stream too many");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("FAIRCHANCE_MAX_STREAMS_PER_CALLER"),
        "{refused:?}"
    );
    // Unary calls go on.
    r.client
        .clone()
        .submit_lead(pb::SubmitLeadRequest {
            lead: Some(lead("streams@engines.de")),
            idempotency_key: String::new(),
        })
        .await
        .expect("a unary call is not a stream");

    // The client closes one: the server notices and gives the slot back.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..100 {
        match subscribe().await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    assert!(reopened.is_some(), "a closed stream frees its slot");
    r.stop.cancel();
}

/// A retry by a client's transport (the same `idempotency-key` metadata, no key in the
/// request) is the same submission, not a second lead; the request's own key wins over it.
#[tokio::test]
async fn the_transport_idempotency_key_makes_a_retry_the_same_submission() {
    let mut r = start().await;
    let keyed = |email: &str, body_key: &str, transport_key: &str| {
        let mut request = tonic::Request::new(pb::SubmitLeadRequest {
            lead: Some(lead(email)),
            idempotency_key: body_key.into(),
        });
        request.metadata_mut().insert(
            runtime::client::IDEMPOTENCY_KEY,
            transport_key.parse().unwrap(),
        );
        request
    };
    let lead_id = |response: pb::SubmitLeadResponse| response.lead.unwrap().lead_id;

    let first = r
        .client
        .submit_lead(keyed("retry@example.com", "", "call-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.outcome, pb::SubmitOutcome::Accepted as i32);
    let retried = r
        .client
        .submit_lead(keyed("retry@example.com", "", "call-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, first, "a retry must get the first answer back");

    // Without the key the same person is a new touch on the lead (merged), which is what a
    // retry must not turn into.
    let again = r
        .client
        .submit_lead(keyed("retry@example.com", "", "call-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, pb::SubmitOutcome::Merged as i32);

    let reused = r
        .client
        .submit_lead(keyed("someone-else@example.com", "", "call-1"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    // The request's key decides; the transport key of each call differs.
    let by_body = r
        .client
        .submit_lead(keyed("body@example.com", "import-7", "call-3"))
        .await
        .unwrap()
        .into_inner();
    let by_body_again = r
        .client
        .submit_lead(keyed("body@example.com", "import-7", "call-4"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lead_id(by_body_again), lead_id(by_body));

    let long = r
        .client
        .submit_lead(keyed("long@example.com", "", &"k".repeat(129)))
        .await
        .unwrap_err();
    assert_eq!(testkit::violated_fields(&long), ["idempotency-key"]);
    r.stop.cancel();
}

/// Concurrent unary submissions share transactions; each still gets its own answer: distinct
/// leads are accepted, one contact sent many times is accepted once and merged after, retries
/// of one key all get the first answer, and malformed leads are refused alone.
#[tokio::test]
async fn concurrent_submissions_each_get_their_own_answer() {
    let r = start().await;
    let mut calls = tokio::task::JoinSet::new();
    let send = |calls: &mut tokio::task::JoinSet<_>, kind: &'static str, request| {
        let mut client = r.client.clone();
        calls.spawn(async move { (kind, client.submit_lead(request).await) });
    };
    for i in 0..40 {
        let request = pb::SubmitLeadRequest {
            lead: Some(lead(&format!("distinct-{i}@example.com"))),
            idempotency_key: String::new(),
        };
        send(&mut calls, "distinct", request);
        let same_contact = pb::SubmitLeadRequest {
            lead: Some(lead("same@example.com")),
            idempotency_key: String::new(),
        };
        send(&mut calls, "same-contact", same_contact);
        let same_key = pb::SubmitLeadRequest {
            lead: Some(lead("keyed@example.com")),
            idempotency_key: "one-key".into(),
        };
        send(&mut calls, "same-key", same_key);
        let malformed = pb::SubmitLeadRequest {
            lead: Some(lead("not an email")),
            idempotency_key: String::new(),
        };
        send(&mut calls, "malformed", malformed);
    }
    let mut distinct = std::collections::HashSet::new();
    let (mut same_contact, mut same_key) = (Vec::new(), Vec::new());
    let mut malformed = 0;
    while let Some(joined) = calls.join_next().await {
        let (kind, answer) = joined.unwrap();
        match kind {
            "distinct" => {
                let answer = answer.unwrap().into_inner();
                assert_eq!(answer.outcome, pb::SubmitOutcome::Accepted as i32);
                distinct.insert(answer.lead.unwrap().lead_id);
            }
            "same-contact" => same_contact.push(answer.unwrap().into_inner()),
            "same-key" => same_key.push(answer.unwrap().into_inner()),
            _ => {
                let status = answer.unwrap_err();
                assert_eq!(testkit::violated_fields(&status), ["contact.email"]);
                malformed += 1;
            }
        }
    }
    assert_eq!(distinct.len(), 40);
    assert_eq!(malformed, 40);
    let accepted = same_contact
        .iter()
        .filter(|a| a.outcome == pb::SubmitOutcome::Accepted as i32)
        .count();
    let merged = same_contact
        .iter()
        .filter(|a| a.outcome == pb::SubmitOutcome::Merged as i32)
        .count();
    assert_eq!((accepted, merged), (1, 39));
    let ids: std::collections::HashSet<_> = same_contact
        .iter()
        .map(|a| a.lead.as_ref().unwrap().lead_id.clone())
        .collect();
    assert_eq!(ids.len(), 1, "one contact, one lead");
    assert!(same_key.iter().all(|a| *a == same_key[0]));
    assert_eq!(same_key[0].outcome, pb::SubmitOutcome::Accepted as i32);
    r.stop.cancel();
}
