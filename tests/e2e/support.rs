//! Starting and stopping the real `fairchance dev` binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `fairchance dev`, killed on drop if still running.
pub struct Suite {
    pub addr: SocketAddr,
    /// Every line the suite wrote to stdout so far (its JSON logs and banner).
    pub stdout: Arc<Mutex<Vec<String>>>,
    child: Child,
    /// The arguments after `dev`, to start it again the same way.
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Suite {
    /// Starts `fairchance dev` on a free port with its data in a fresh directory and the
    /// sample playbook.
    pub fn start() -> Self {
        Self::start_with_playbook(None)
    }

    /// Starts `fairchance dev` with the given playbook text (or the sample).
    pub fn start_with_playbook(playbook: Option<&str>) -> Self {
        Self::start_with_env(playbook, &[])
    }

    /// Starts `fairchance dev` with the given playbook and extra environment variables (which
    /// override the defaults here, e.g. `FAIRCHANCE_LOG`).
    pub fn start_with_env(playbook: Option<&str>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut extra: Vec<String> = Vec::new();
        if let Some(text) = playbook {
            let path = dir.path().join("test-playbook.toml");
            std::fs::write(&path, text).expect("write playbook");
            extra.push("--playbook".into());
            extra.push(path.to_str().expect("utf-8 path").into());
        }
        for (key, value) in env {
            extra.push(format!("{key}={value}"));
        }
        Self::start_args(dir, &extra)
    }

    /// Starts `fairchance dev` with these arguments after `dev` (and `FAIRCHANCE_*=VALUE`
    /// environment variables among them) on a free port, with its data in `dir`.
    pub fn start_args(dir: tempfile::TempDir, extra: &[String]) -> Self {
        let (child, addr, stdout) = spawn(dir.path(), extra, "127.0.0.1:0");
        Self {
            addr,
            stdout,
            child,
            extra: extra.to_vec(),
            _dir: dir,
        }
    }

    /// Kills the server process outright (SIGKILL, no drain) and starts it again on the same
    /// address and data, as a crash and a restart would.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr, stdout) = spawn(self._dir.path(), &self.extra, &self.addr.to_string());
        assert_eq!(addr, self.addr, "restarted on the same address");
        self.child = child;
        self.stdout = stdout;
    }

    /// Where the suite keeps its data: a SQLite file per service, `<service>.db`.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        testkit::channel(self.addr).await
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fairchance dev did not exit within 30s of SIGTERM");
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fairchance dev` on `listen` with its data in `dir`; its address once it serves.
fn spawn(
    dir: &Path,
    extra: &[String],
    listen: &str,
) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fairchance"));
    command
        .args(["dev", "--listen", listen, "--data-dir"])
        .arg(dir);
    command
        .env("FAIRCHANCE_LOG_FORMAT", "json")
        .env("FAIRCHANCE_LOG", "warn");
    for arg in extra {
        match arg.split_once('=') {
            Some((key, value)) if key.starts_with("FAIRCHANCE_") => {
                command.env(key, value);
            }
            _ => {
                command.arg(arg);
            }
        }
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fairchance dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving on ").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
            }
            kept.lock().expect("stdout lines").push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("fairchance dev printed its address")
        .parse()
        .expect("address");
    (child, addr, lines)
}
