//! `fairchance watch` survives a server crash: the watch keeps running while the server
//! process is killed and started again on the same address and data, reconnects, and resumes
//! after the last update it printed, so what it prints is exactly the activation log: nothing
//! twice, nothing missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::activation::v1 as apb;
use proto::activation::v1::activation_service_client::ActivationServiceClient;
use proto::intake::v1 as ipb;
use proto::intake::v1::intake_service_client::IntakeServiceClient;

use crate::activation::{PLAYBOOK, lead};
use crate::support::Suite;

/// `fairchance watch --format json` with its stdout and stderr lines collected.
struct Watch {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(addr: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fairchance"))
            .args(["watch", "--format", "json", "--addr", addr])
            .env_remove("FAIRCHANCE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fairchance watch");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let kept = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    kept.lock().expect("lines").push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Every update printed so far.
    fn updates(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lock()
            .expect("lines")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until the watch has printed `LeadAssigned` for every lead in `leads`.
    async fn until_assigned(&self, leads: &[String]) {
        for _ in 0..600 {
            let assigned: Vec<String> = self
                .updates()
                .iter()
                .filter(|u| u["event_type"] == "LeadAssigned")
                .map(|u| u["lead_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            if leads.iter().all(|l| assigned.contains(l)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the watch never printed the assignment of {leads:?}\nstdout: {:#?}\nstderr: {:#?}",
            self.stdout.lock().expect("lines"),
            self.stderr.lock().expect("lines")
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn submit(suite: &Suite, emails: &[&str]) -> Vec<String> {
    let mut intake = IntakeServiceClient::new(suite.channel().await);
    let mut ids = Vec::new();
    for email in emails {
        let response = intake
            .submit_lead(lead(email, ipb::IntentKind::DemoRequest))
            .await
            .expect("submit")
            .into_inner();
        ids.push(response.lead.expect("lead").lead_id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_from_its_cursor_after_the_server_is_killed_and_restarted() {
    let mut suite = Suite::start_with_playbook(Some(PLAYBOOK));
    let addr = format!("http://{}", suite.addr);
    let watch = Watch::start(&addr);

    let before = submit(&suite, &["ada@example.com", "bo@example.com"]).await;
    watch.until_assigned(&before).await;

    suite.kill_and_restart();
    let after = submit(&suite, &["cy@example.com", "di@example.com"]).await;
    watch.until_assigned(&after).await;

    let stderr = watch.stderr.lock().expect("lines").join("\n");
    assert!(
        stderr.contains("reconnecting"),
        "the watch said it lost the connection: {stderr}"
    );

    // What the watch printed, in order, is the activation log up to its last update: every
    // cursor once, none skipped. The log is read back in one go from the restarted server.
    let printed: Vec<String> = watch
        .updates()
        .iter()
        .map(|u| u["cursor"].as_str().expect("cursor").to_owned())
        .collect();
    let last = printed.last().expect("updates").clone();
    let mut client = ActivationServiceClient::new(suite.channel().await);
    let mut log = client
        .watch_activations(apb::WatchActivationsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut expected = Vec::new();
    while expected.last() != Some(&last) {
        let update = tokio::time::timeout(Duration::from_secs(30), log.message())
            .await
            .expect("the log replays")
            .expect("stream ok")
            .expect("stream open");
        expected.push(update.cursor);
    }
    assert_eq!(printed, expected, "the watch printed the log exactly once");
    let assigned = watch
        .updates()
        .iter()
        .filter(|u| u["event_type"] == "LeadAssigned")
        .count();
    assert_eq!(assigned, 4, "each lead's assignment printed once");
}
