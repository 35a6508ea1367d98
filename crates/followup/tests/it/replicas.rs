//! Two real `fairchance-followup` processes share 10,000 due steps on one PostgreSQL
//! database: every step fires exactly once, and killing one replica mid-run loses none (its
//! claims are taken over when their lease runs out).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use runtime::{Clock, ManualClock};
use sqlx::Row;
use testkit::TestDb;

use crate::service::{activated_event, start_intake, test_service};

const STEPS: usize = 10_000;

/// One step due a minute after enrolment, the next a month later: each lead fires once here.
const PLAYBOOK: &str = r#"
[followup]
timezone = "UTC"
default_cadence = "one"

[followup.frequency_cap]
touches = 10
window = "7d"

[[followup.cadences]]
id = "one"
steps = [
  { delay = "1m", channel = "email", strategy = "value", template = "intro" },
  { delay = "30d", channel = "email", strategy = "check_in", template = "later" },
]
"#;

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(database_url: &str, playbook: &std::path::Path, intake_url: &str) -> Replica {
    let child = Command::new(env!("CARGO_BIN_EXE_fairchance-followup"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("FAIRCHANCE_LISTEN_ADDR", "127.0.0.1:0")
        .env("FAIRCHANCE_PLAYBOOK", playbook)
        .env("FAIRCHANCE_INTAKE_URL", intake_url)
        // Nothing listens there: the activation consumer retries quietly; enrolments are
        // seeded by the test.
        .env("FAIRCHANCE_ACTIVATION_URL", "http://127.0.0.1:9")
        .env("FAIRCHANCE_LOG", "error")
        .env("FAIRCHANCE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fairchance-followup");
    Replica(child)
}

async fn fired(db: &runtime::Db) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT aggregate_id) AS leads FROM event_log WHERE event_type = $1",
    )
    .bind("fairchance.followup.v1.FollowUpDue")
    .fetch_one(db.pool())
    .await
    .unwrap();
    (row.get("n"), row.get("leads"))
}

#[tokio::test]
async fn two_replicas_fire_every_step_once_and_a_killed_one_loses_none() {
    // Minutes of work: once per CI run, in the PostgreSQL pass.
    if testkit::selected_backend() != runtime::Backend::Postgres {
        return;
    }
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let db = test_db.connect(&followup::store::MIGRATIONS).await;
    let intake = start_intake().await;
    // Enrolled ten minutes ago: every first step is due when the replicas start.
    let clock = ManualClock::new(Timestamp::now() - SignedDuration::from_mins(10));
    let svc = test_service(&db, &clock, &intake.url, PLAYBOOK);
    for chunk in 0..STEPS / 500 {
        let mut tx = db.begin().await.unwrap();
        for n in 0..500 {
            let lead = uuid::Uuid::now_v7();
            let email = format!("p{chunk}-{n}@example.com");
            svc.apply_upstream_event(&mut tx, &activated_event(lead, &email, "anna"))
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let (total, due) = svc
        .timers()
        .counts(clock.now() + SignedDuration::from_mins(10))
        .await
        .unwrap();
    assert_eq!((total, due), (STEPS as i64, STEPS as i64));

    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("playbook.toml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let mut a = replica(&test_db.url, &playbook, &intake.url);
    let _b = replica(&test_db.url, &playbook, &intake.url);

    // Kill one replica once the work is under way, claims and all.
    let started = Instant::now();
    loop {
        let (n, _) = fired(&db).await;
        if n >= 1_000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let (at_kill, _) = fired(&db).await;
    assert!(
        (at_kill as usize) < STEPS,
        "the replica died mid-run ({at_kill} of {STEPS} fired)"
    );

    // The survivor finishes, taking over the dead replica's claims after their lease.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut n, mut leads) = fired(&db).await;
    while (leads as usize) < STEPS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (n, leads) = fired(&db).await;
    }
    assert_eq!(leads as usize, STEPS, "every lead's step fired");
    assert_eq!(n as usize, STEPS, "no step fired twice");
    // Each lead now waits for its second step, a month out.
    let (total, due) = svc.timers().counts(Timestamp::now()).await.unwrap();
    assert_eq!((total, due), (STEPS as i64, 0));
}
