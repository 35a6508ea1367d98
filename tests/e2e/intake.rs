//! Intake end to end: valid, invalid, duplicate, retried, rejected and opted-out leads over
//! gRPC, read back, seen on the event stream; then a graceful shutdown with a stream open.

use std::time::Duration;

use proto::intake::v1 as pb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::support::Suite;

fn lead(email: &str, source: &str) -> pb::LeadInput {
    pb::LeadInput {
        contact: Some(pb::Contact {
            name: "Ada Lovelace".into(),
            email: email.into(),
            company: "Analytical Engines".into(),
            country: "GB".into(),
            phone: "020 7946 0958".into(),
            ..Default::default()
        }),
        source: Some(pb::SourceContext {
            source: source.into(),
            campaign: "q4-demo".into(),
            landing_page: "https://example.com/demo".into(),
            message: "We need lead routing for 40 reps".into(),
            ..Default::default()
        }),
        intent: Some(pb::IntentSignal {
            kind: pb::IntentKind::DemoRequest as i32,
            strength: pb::IntentStrength::High as i32,
            detail: String::new(),
        }),
        attributes: [("employees".to_owned(), "450".to_owned())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn submit(input: pb::LeadInput, key: &str) -> pb::SubmitLeadRequest {
    pb::SubmitLeadRequest {
        lead: Some(input),
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn intake_over_grpc_against_the_real_binary() {
    let mut suite = Suite::start();
    let channel = suite.channel().await;
    let mut intake = IntakeServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel.clone());

    let mut serving = false;
    for _ in 0..100 {
        let check = HealthCheckRequest {
            service: "fairchance.intake.v1.IntakeService".into(),
        };
        if health.check(check).await.unwrap().into_inner().status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "intake never reported SERVING");

    // Valid: accepted, normalised, everything preserved.
    let accepted = intake
        .submit_lead(submit(
            lead("Ada@Example.com", "website-demo-form"),
            "form-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.outcome(), pb::SubmitOutcome::Accepted);
    let first = accepted.lead.clone().unwrap();
    let contact = first.input.as_ref().unwrap().contact.as_ref().unwrap();
    assert_eq!(contact.email, "ada@example.com");
    assert_eq!(contact.phone, "+442079460958");

    // Retried with the same key: the original answer, no second lead.
    let retried = intake
        .submit_lead(submit(
            lead("Ada@Example.com", "website-demo-form"),
            "form-1",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, accepted);

    // Invalid: INVALID_ARGUMENT naming the field.
    let status = intake
        .submit_lead(submit(lead("ada@", "website-demo-form"), ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = status
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "contact.email");

    // Duplicate: merged into the first lead as a new touch with its own context.
    let mut webinar = lead("ada@example.com", "webinar");
    webinar.source.as_mut().unwrap().campaign = "webinar-nov".into();
    let merged = intake
        .submit_lead(submit(webinar, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(merged.outcome(), pb::SubmitOutcome::Merged);
    assert_eq!(merged.lead.as_ref().unwrap().lead_id, first.lead_id);

    // Data-quality failure: rejected into the review queue, not dropped.
    let mut scan = lead("lin@example.com", "event-badge-scan");
    scan.contact.as_mut().unwrap().company.clear();
    let rejected = intake
        .submit_lead(submit(scan, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.outcome(), pb::SubmitOutcome::Rejected);
    let queue = intake
        .list_rejections(pb::ListRejectionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queue.rejections.len(), 1);

    // Opted out: the contact's later lead is do-not-contact.
    let opted = intake
        .opt_out(pb::OptOutRequest {
            email: "kim@example.com".into(),
            phone: String::new(),
            reason: "unsubscribe".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(opted.newly_suppressed);
    let kim = intake
        .submit_lead(submit(lead("kim@example.com", "website-demo-form"), ""))
        .await
        .unwrap()
        .into_inner();
    assert!(kim.lead.as_ref().unwrap().do_not_contact);

    // Read back: the lead with its touch.
    let read = intake
        .get_lead(pb::GetLeadRequest {
            lead_id: first.lead_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let read = read.lead.unwrap();
    assert_eq!(read.touches.len(), 1);
    assert_eq!(
        read.touches[0]
            .input
            .as_ref()
            .unwrap()
            .source
            .as_ref()
            .unwrap()
            .campaign,
        "webinar-nov"
    );
    assert_eq!(read.input, first.input);

    // The event stream: every change, in order, with typed payloads.
    let mut stream = intake
        .subscribe(pb::SubscribeRequest { from: None })
        .await
        .unwrap()
        .into_inner();
    let mut types = Vec::new();
    while types.len() < 5 {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("event in time");
        let event = next.unwrap().expect("stream open").event.unwrap();
        assert_eq!(event.source_service, "intake");
        assert_eq!(
            event.payload.as_ref().unwrap().type_url,
            format!(
                "type.googleapis.com/fairchance.intake.v1.{}",
                event.event_type
            )
        );
        types.push(event.event_type);
    }
    assert_eq!(
        types,
        [
            "LeadAccepted",
            "LeadMerged",
            "LeadRejected",
            "ContactOptedOut",
            "LeadAccepted"
        ]
    );

    // SIGTERM with a live stream open: the stream ends cleanly and the process exits 0.
    let status = tokio::task::spawn_blocking(move || suite.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("stream ends");
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "stream should be over: {end:?}"
    );
}
