//! The `fairchance-intake` binary as an operator runs it: configuration errors exit 64 naming
//! every bad key, `check` validates the playbook, `migrate` prepares the database.

use std::process::Command;

fn intake() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fairchance-intake"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

#[test]
fn bad_configuration_exits_64_naming_each_key() {
    let out = intake()
        .env("FAIRCHANCE_REQUEST_TIMEOUT", "soon")
        .env("DATABASE_URL", "mysql://db/intake")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAIRCHANCE_REQUEST_TIMEOUT (environment): invalid value \"soon\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("DATABASE_URL (environment): invalid value \"mysql://db/intake\""),
        "{stderr}"
    );
}

#[test]
fn check_validates_the_playbook_with_line_numbers() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/playbook.toml");
    let ok = intake()
        .arg("check")
        .env("FAIRCHANCE_PLAYBOOK", sample)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("playbook.toml");
    std::fs::write(&bad, "[intake]\nduplicate_window = \"30d\"\n\n[intake.sources.web]\nrequired = [\"contact.compnay\"]\n").unwrap();
    let out = intake()
        .arg("check")
        .env("FAIRCHANCE_PLAYBOOK", &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:5:13: unknown field path `contact.compnay`",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn migrate_prepares_a_fresh_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/intake.db").display());
    let out = intake()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("FAIRCHANCE_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("sub/intake.db").exists());
    // Running it again is a no-op.
    let again = intake()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(again.status.success());
}
