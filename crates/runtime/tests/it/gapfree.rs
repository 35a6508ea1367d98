//! The log never skips an event on PostgreSQL, even when concurrent transactions commit in a
//! different order than they wrote: many writers with random hold times, and live readers
//! that must each receive every event exactly once, in an order a later replay reproduces.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use proto::events::v1::SubscribeFrom;
use proto::intake::v1::ContactOptedOut;
use rand::Rng;
use runtime::{EventLog, NewEvent};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;

const WRITERS: usize = 12;
const TXS_PER_WRITER: usize = 40;
const EVENTS_PER_TX: usize = 3;
const READERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_make_a_live_reader_skip_an_event() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let db = test_db.connect(&crate::NO_SERVICE_MIGRATIONS).await;
    // Each writer holds its own connection; the reader needs one more.
    let log = EventLog::new(db, "gapfree");
    // A second handle with its own pool and listener: the reader is woken across
    // connections by LISTEN/NOTIFY, not only in-process.
    let reader_db = runtime::Db::connect(&test_db.url, 2).await.unwrap();
    let reader_log = EventLog::new(reader_db, "gapfree");
    let stop = CancellationToken::new();
    tokio::spawn({
        let reader_log = reader_log.clone();
        let stop = stop.clone();
        async move { reader_log.listen(stop).await }
    });
    // Several live readers: waiting at the same cursor, they share their reads of the tail.
    let streams: Vec<_> = (0..READERS)
        .map(|_| {
            reader_log
                .subscribe(SubscribeFrom::default(), stop.clone())
                .unwrap()
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for t in 0..TXS_PER_WRITER {
                    let mut tx = log.db().begin().await.unwrap();
                    let events: Vec<_> = (0..EVENTS_PER_TX)
                        .map(|i| {
                            let msg = ContactOptedOut {
                                lead_ids: vec![format!("{w}-{t}-{i}")],
                                ..Default::default()
                            };
                            NewEvent::new(format!("writer-{w}"), &msg, jiff::Timestamp::now())
                        })
                        .collect();
                    log.append(&mut tx, &events[..1]).await.unwrap();
                    // Hold the transaction open a random while: a later xid commits first.
                    let hold = rand::rng().random_range(0..8);
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    log.append(&mut tx, &events[1..]).await.unwrap();
                    // Commit through a plain commit so only NOTIFY can wake the reader.
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();

    let total = WRITERS * TXS_PER_WRITER * EVENTS_PER_TX;
    let readers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(r, mut stream)| {
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(total);
                let mut ids = HashSet::new();
                while seen.len() < total {
                    let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
                        .await
                        .unwrap_or_else(|_| {
                            panic!("reader {r} stalled after {} of {total} events", seen.len())
                        })
                        .expect("stream open")
                        .expect("event");
                    assert!(
                        ids.insert(event.event_id.clone()),
                        "event {} delivered twice to reader {r}",
                        event.event_id
                    );
                    seen.push(event);
                }
                // Nothing more arrives: no duplicates after the last event.
                let extra = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
                assert!(extra.is_err(), "unexpected extra event: {extra:?}");
                seen
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut all_seen = Vec::new();
    for reader in readers {
        all_seen.push(reader.await.unwrap());
    }
    let seen = all_seen.swap_remove(0);
    for other in &all_seen {
        let ids = |events: &[proto::events::v1::Event]| -> Vec<String> {
            events.iter().map(|e| e.event_id.clone()).collect()
        };
        assert_eq!(ids(other), ids(&seen), "every reader sees the same order");
    }

    // The live order is the log's stable order: a replay from scratch gives the same.
    let replay: Vec<_> = log
        .subscribe(
            SubscribeFrom {
                replay_only: true,
                ..Default::default()
            },
            stop.clone(),
        )
        .unwrap()
        .map(|e| e.unwrap().event_id)
        .collect()
        .await;
    let live: Vec<_> = seen.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(live, replay);

    // Within one writer's transactions, events keep their write order.
    let decode = |e: &proto::events::v1::Event| {
        use prost::Message;
        ContactOptedOut::decode(e.payload.as_ref().unwrap().value.as_slice())
            .unwrap()
            .lead_ids[0]
            .clone()
    };
    for w in 0..WRITERS {
        let mine: Vec<_> = seen
            .iter()
            .map(decode)
            .filter(|id| id.starts_with(&format!("{w}-")))
            .collect();
        let expected: Vec<_> = (0..TXS_PER_WRITER)
            .flat_map(|t| (0..EVENTS_PER_TX).map(move |i| format!("{w}-{t}-{i}")))
            .collect();
        assert_eq!(mine, expected, "writer {w}");
    }
    stop.cancel();
}
