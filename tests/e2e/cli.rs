//! The `fairchance` client commands end to end: the real binary run as a user would, against
//! the real suite: a CSV import with a good row, a duplicate and bad rows (summary, rejected
//! file, idempotent re-run), one lead submitted, the source report as JSON, a lead's timeline,
//! and the exit codes and advice for a wrong address and a bad flag.

use std::process::{Command, Output};
use std::time::Duration;

use crate::activation::PLAYBOOK as ACTIVATION_PLAYBOOK;
use crate::support::Suite;

/// Badge scans need an email and a company; anything short of that goes to review.
const BADGE_SCAN: &str = r#"
[intake.sources.badge-scan]
required = ["contact.email", "contact.company"]
"#;

fn fairchance(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fairchance"))
        .args(args)
        .env("FAIRCHANCE_ADDR", addr)
        .env_remove("FAIRCHANCE_TOKEN")
        .output()
        .expect("run fairchance")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the command until `done` holds for its output (feedback catches up asynchronously).
fn until(addr: &str, args: &[&str], done: impl Fn(&Output) -> bool) -> Output {
    let mut output = fairchance(addr, args);
    for _ in 0..100 {
        if done(&output) {
            return output;
        }
        std::thread::sleep(Duration::from_millis(100));
        output = fairchance(addr, args);
    }
    panic!(
        "`fairchance {}` never gave the expected output:\n{}\n{}",
        args.join(" "),
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn import_submit_and_report_from_the_command_line() {
    let suite = Suite::start_with_playbook(Some(&format!("{ACTIVATION_PLAYBOOK}{BADGE_SCAN}")));
    let addr = format!("http://{}", suite.addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("expo.csv");
    std::fs::write(
        &csv,
        "E-Mail,Full Name,Company,Booth,Intent\r\n\
         ada@example.com,Ada Lovelace,Analytical Engines,B12,demo request\r\n\
         ADA@example.com,\"Lovelace, Ada\",Analytical Engines,\"B14\nnear the entrance\",\r\n\
         lin@example.com,Lin,,B3,\r\n\
         not-an-email,Bob,Bob Inc,B4,\r\n\
         cy@example.com,Cy,Cy Corp,B5,maybe\r\n",
    )
    .expect("write csv");
    let csv_arg = csv.to_str().expect("utf-8 path");

    // The import: one accepted, one merged, three rejected for three different reasons.
    let import = fairchance(
        &addr,
        &[
            "lead",
            "import",
            csv_arg,
            "--source",
            "badge-scan",
            "--campaign",
            "expo",
        ],
    );
    let (out, err) = (text(&import.stdout), text(&import.stderr));
    assert_eq!(import.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("imported"), "{out}");
    assert!(out.contains("accepted  1"), "{out}");
    assert!(out.contains("merged    1"), "{out}");
    assert!(out.contains("rejected  3"), "{out}");
    for reason in ["missing_required_field", "invalid_email", "invalid_value"] {
        assert!(out.contains(reason), "{reason} in {out}");
    }
    // The row the CLI could not make into a lead is named by its line (the quoted line break
    // in row 3 makes Cy's row line 7).
    assert!(err.contains("line 7: invalid_value (intent.kind)"), "{err}");

    // The rejected rows, as the original columns plus their reasons, ready to fix.
    let rejected_path = dir.path().join("expo.rejected.csv");
    let rejected = std::fs::read_to_string(&rejected_path).expect("rejected file");
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines[0], "E-Mail,Full Name,Company,Booth,Intent,reasons");
    assert_eq!(lines.len(), 4, "{rejected}");
    assert!(
        lines[1].starts_with("lin@example.com,Lin,,B3,,"),
        "{rejected}"
    );
    assert!(lines[1].contains("contact.company"), "{rejected}");
    assert!(lines[2].starts_with("not-an-email,"), "{rejected}");
    assert!(
        lines[3].starts_with("cy@example.com,Cy,Cy Corp,B5,maybe,"),
        "{rejected}"
    );

    // Running the same import again stores nothing twice (idempotency keys from the rows);
    // with --strict the rejected rows make it exit 65.
    let again = fairchance(
        &addr,
        &[
            "lead",
            "import",
            csv_arg,
            "--source",
            "badge-scan",
            "--campaign",
            "expo",
            "--strict",
        ],
    );
    let out_again = text(&again.stdout);
    assert_eq!(again.status.code(), Some(65), "{out_again}");
    assert!(out_again.contains("accepted  1"), "{out_again}");
    assert!(out_again.contains("merged    1"), "{out_again}");

    // One lead on its own, its id read from the JSON answer.
    let submitted = fairchance(
        &addr,
        &[
            "lead",
            "submit",
            "--source",
            "website-demo-form",
            "--email",
            "grace@example.com",
            "--name",
            "Grace Hopper",
            "--company",
            "Navy",
            "--intent",
            "demo_request",
            "--message",
            "Can we see routing?",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&submitted.stdout).expect("submit prints JSON");
    assert_eq!(answer["outcome"], "accepted");
    let lead_id = answer["lead_id"].as_str().expect("lead id").to_owned();

    // The source report as JSON, once feedback has seen the import.
    let report = until(&addr, &["report", "sources", "--format", "json"], |o| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| {
                v["groups"]
                    .as_array()?
                    .iter()
                    .find(|g| g["group"] == "badge-scan")
                    .map(|g| g["accepted"] == 1 && g["rejected"] == 1)
            })
            .unwrap_or(false)
    });
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("JSON");
    assert_eq!(report["group_by"], "source");
    assert!(report["from"].is_string());
    let badge = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "badge-scan")
        .unwrap();
    assert_eq!(
        badge["rejections"]["missing_required_field"], 1,
        "{badge:#}"
    );
    assert!(badge["activated_within_sla_share"].is_number());
    assert_eq!(report["total"]["group"], "total");

    // The readable table of the same report.
    let table = fairchance(&addr, &["report", "sources"]);
    let table_out = text(&table.stdout);
    assert_eq!(table.status.code(), Some(0));
    assert!(table_out.contains("Leads by source"), "{table_out}");
    assert!(table_out.contains("badge-scan"), "{table_out}");

    // The lead's timeline, with its preserved context.
    let timeline = until(&addr, &["report", "timeline", &lead_id], |o| {
        text(&o.stdout).contains("LeadAssigned")
    });
    let timeline_out = text(&timeline.stdout);
    assert!(
        timeline_out.starts_with(&format!("Lead {lead_id}")),
        "{timeline_out}"
    );
    assert!(timeline_out.contains("LeadAccepted"), "{timeline_out}");
    assert!(timeline_out.contains("website-demo-form"), "{timeline_out}");

    // An unknown lead: exit 1 and what to do.
    let unknown = fairchance(
        &addr,
        &["report", "timeline", "0190f0c4-6a1e-7c3b-9d2e-5f8a7b6c4d3e"],
    );
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
    assert!(text(&unknown.stderr).starts_with("fairchance: "));
}

#[test]
fn a_wrong_address_exits_69_and_says_what_to_do() {
    let output = fairchance(
        "http://127.0.0.1:1",
        &["report", "sources", "--connect-timeout", "2s"],
    );
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{err}");
    assert!(
        err.starts_with("fairchance: cannot connect to http://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("fairchance dev"), "{err}");
    assert!(err.contains("--addr"), "{err}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_flags_exit_64_and_help_exits_0() {
    let bad = fairchance(
        "http://127.0.0.1:1",
        &["lead", "import", "x.csv", "--map", "shoe_size=Shoe"],
    );
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        text(&bad.stderr).contains("unknown field"),
        "{}",
        text(&bad.stderr)
    );

    let missing = fairchance(
        "http://127.0.0.1:1",
        &[
            "lead",
            "import",
            "/nonexistent/leads.csv",
            "--source",
            "webinar",
        ],
    );
    assert_eq!(missing.status.code(), Some(66), "{}", text(&missing.stderr));

    let help = fairchance("http://127.0.0.1:1", &["lead", "import", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Examples:"));
}
