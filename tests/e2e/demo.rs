//! `fairchance demo` end to end: `fairchance dev --demo` started as a user would, the demo
//! driver run against it for a short, seeded period, and the outcome it exists to show: the
//! badge scans nobody worked are lost to system failure, the well-worked webinar leads to lead
//! quality, and the summary says so.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Suite;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_demo_tells_execution_failures_from_lead_quality() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = Suite::start_args(dir, &["--demo".to_owned()]);
    // The banner says how to start the driver (its lines arrive a moment after the address).
    let banner = || suite.stdout.lock().expect("stdout lines").join("\n");
    for _ in 0..50 {
        if banner().contains("fairchance demo --addr") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(banner().contains("fairchance demo --addr"), "{}", banner());
    let addr = format!("http://{}", suite.addr);

    let started = Instant::now();
    let demo = Command::new(env!("CARGO_BIN_EXE_fairchance"))
        .args(["demo", "--duration", "15s", "--seed", "1", "--rate", "1.5"])
        .env("FAIRCHANCE_ADDR", &addr)
        .env_remove("FAIRCHANCE_TOKEN")
        .output()
        .expect("run fairchance demo");
    let (out, err) = (text(&demo.stdout), text(&demo.stderr));
    assert_eq!(demo.status.code(), Some(0), "{out}\n{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the demo took {:?}",
        started.elapsed()
    );

    // Progress while it ran, then the report's tables and the summary.
    assert!(out.contains("leads 23 ("), "{out}");
    assert!(out.contains("lost: lead quality"), "{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary in {out}"));
    let (execution, quality) = summary
        .split_once("Lost to lead quality")
        .unwrap_or_else(|| panic!("no lead-quality sources in {summary}"));
    assert!(
        execution.contains("Let down by execution rather than lead quality: event-badge-scan ("),
        "{summary}"
    );
    assert!(!execution.contains("webinar"), "{summary}");
    assert!(quality.contains("webinar ("), "{summary}");
    assert!(!quality.contains("event-badge-scan"), "{summary}");

    // The report any other tool reads says the same, figure by figure.
    let report = Command::new(env!("CARGO_BIN_EXE_fairchance"))
        .args(["report", "sources", "--from", "1h", "--format", "json"])
        .env("FAIRCHANCE_ADDR", &addr)
        .env_remove("FAIRCHANCE_TOKEN")
        .output()
        .expect("run fairchance report");
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    let report: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let group = |name: &str| {
        report["groups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["group"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no group {name} in {report:#}"))
    };
    let count = |g: &Value, key: &str| g[key].as_u64().unwrap_or(0);

    let badges = group("event-badge-scan");
    assert!(count(&badges, "system_failure_losses") > 0, "{badges:#}");
    assert_eq!(count(&badges, "lead_quality_losses"), 0, "{badges:#}");
    assert_eq!(badges["never_activated_share"], 1.0, "{badges:#}");

    let webinar = group("webinar");
    assert!(count(&webinar, "lead_quality_losses") > 0, "{webinar:#}");
    assert_eq!(count(&webinar, "system_failure_losses"), 0, "{webinar:#}");
    assert_eq!(webinar["activated_within_sla_share"], 1.0, "{webinar:#}");

    // The content downloads sent rows intake rejected, each with its reason code.
    let content = group("content-download");
    assert!(count(&content, "rejected") > 0, "{content:#}");
    let reasons = content["rejections"].as_object().expect("rejections");
    assert!(
        reasons
            .keys()
            .all(|r| r == "missing_required_field" || r == "blocked_email_domain"),
        "{content:#}"
    );
}
