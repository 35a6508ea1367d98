//! Starting and stopping the real `fairchance dev` binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `fairchance dev`, killed on drop if still running.
pub struct Suite {
    pub addr: SocketAddr,
    /// Every line the suite wrote to stdout so far (its JSON logs and banner).
    pub stdout: Arc<Mutex<Vec<String>>>,
    child: Child,
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_fairchance"));
        command
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        if let Some(text) = playbook {
            let path = dir.path().join("test-playbook.toml");
            std::fs::write(&path, text).expect("write playbook");
            command.arg("--playbook").arg(path);
        }
        command
            .env("FAIRCHANCE_LOG_FORMAT", "json")
            .env("FAIRCHANCE_LOG", "warn");
        command.envs(env.iter().copied());
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
        Self {
            addr,
            stdout: lines,
            child,
            _dir: dir,
        }
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
