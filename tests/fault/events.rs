//! Reading the services' event logs over `Subscribe`: a live reader that follows a stream
//! for the whole run and resumes from its last cursor when the stream breaks (as every
//! consumer does), and a full replay afterwards to compare it with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use proto::events::v1::{Event, SubscribeFrom};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The services with an event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Intake,
    Activation,
    Followup,
    Proof,
}

/// Opens `Subscribe` on `source` after `after` (empty: from the start).
pub async fn subscribe(
    source: Source,
    channel: Channel,
    after: &str,
    replay_only: bool,
) -> Result<BoxStream<'static, Result<Event, tonic::Status>>, tonic::Status> {
    let from = Some(SubscribeFrom {
        after_cursor: after.to_owned(),
        event_types: Vec::new(),
        replay_only,
    });
    fn events<R: Send + 'static>(
        stream: tonic::Streaming<R>,
        event: fn(R) -> Option<Event>,
    ) -> BoxStream<'static, Result<Event, tonic::Status>> {
        stream
            .filter_map(move |item| async move {
                match item {
                    Ok(response) => event(response).map(Ok),
                    Err(status) => Some(Err(status)),
                }
            })
            .boxed()
    }
    Ok(match source {
        Source::Intake => {
            use proto::intake::v1 as pb;
            let mut client = pb::intake_service_client::IntakeServiceClient::new(channel);
            let stream = client.subscribe(pb::SubscribeRequest { from }).await?;
            events(stream.into_inner(), |r: pb::SubscribeResponse| r.event)
        }
        Source::Activation => {
            use proto::activation::v1 as pb;
            let mut client = pb::activation_service_client::ActivationServiceClient::new(channel);
            let stream = client.subscribe(pb::SubscribeRequest { from }).await?;
            events(stream.into_inner(), |r: pb::SubscribeResponse| r.event)
        }
        Source::Followup => {
            use proto::followup::v1 as pb;
            let mut client = pb::followup_service_client::FollowupServiceClient::new(channel);
            let stream = client.subscribe(pb::SubscribeRequest { from }).await?;
            events(stream.into_inner(), |r: pb::SubscribeResponse| r.event)
        }
        Source::Proof => {
            use proto::proof::v1 as pb;
            let mut client = pb::proof_service_client::ProofServiceClient::new(channel);
            let stream = client.subscribe(pb::SubscribeRequest { from }).await?;
            events(stream.into_inner(), |r: pb::SubscribeResponse| r.event)
        }
    })
}

/// Every event in `source`'s log now, in log order; retried while the service is away.
pub async fn replay(source: Source, channel: &Channel) -> Vec<Event> {
    for _ in 0..60 {
        if let Ok(events) = try_replay(source, channel.clone()).await {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{source:?}: no complete replay within 30 s");
}

async fn try_replay(source: Source, channel: Channel) -> Result<Vec<Event>, tonic::Status> {
    let mut stream = subscribe(source, channel, "", true).await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

/// A subscriber reading `source` live for the whole run.
pub struct LiveReader {
    pub events: Arc<Mutex<Vec<Event>>>,
    /// How often it subscribed again from its last cursor (after a broken stream or a
    /// refused attempt).
    pub resumes: Arc<Mutex<u32>>,
    stop: CancellationToken,
}

impl LiveReader {
    /// Starts reading from the beginning of the log; `on_event` sees each event as it
    /// arrives.
    pub fn start(
        source: Source,
        channel: Channel,
        on_event: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Self {
        let events = Arc::new(Mutex::new(Vec::<Event>::new()));
        let resumes = Arc::new(Mutex::new(0));
        let stop = CancellationToken::new();
        let (kept, resumed, stopped) = (Arc::clone(&events), Arc::clone(&resumes), stop.clone());
        tokio::spawn(async move {
            let mut cursor = String::new();
            let mut first = true;
            while !stopped.is_cancelled() {
                if !first {
                    *resumed.lock().expect("resumes") += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                first = false;
                let Ok(mut stream) = subscribe(source, channel.clone(), &cursor, false).await
                else {
                    continue;
                };
                loop {
                    let next = tokio::select! {
                        _ = stopped.cancelled() => return,
                        next = stream.next() => next,
                    };
                    let Some(Ok(event)) = next else { break };
                    cursor.clone_from(&event.cursor);
                    on_event(&event);
                    kept.lock().expect("events").push(event);
                }
            }
        });
        Self {
            events,
            resumes,
            stop,
        }
    }

    pub fn len(&self) -> usize {
        self.events.lock().expect("events").len()
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("events").clone()
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Decodes an event's payload as `M`, if it is one.
pub fn payload<M: prost::Message + prost::Name + Default>(event: &Event) -> Option<M> {
    let any = event.payload.as_ref()?;
    if any.type_url.rsplit('/').next()? != M::full_name() {
        return None;
    }
    M::decode(any.value.as_slice()).ok()
}
