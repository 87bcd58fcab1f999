//! The processes of a test world: each started from a command, its errors
//! logged to a file, waited for until it says it is ready, and killed if it
//! is still running when the test lets go of it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process, killed if still running when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` logging its errors to `log`, and waits (a minute at most)
/// for a line of its output containing `ready`. Returns the lines up to it.
pub fn start(mut cmd: Command, log: &Path, ready: &str) -> (Proc, Vec<String>) {
    let err = std::fs::File::create(log).expect("log file");
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the test stops listening.
            let _ = tx.send(line);
        }
    });
    let proc = Proc { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let errors = std::fs::read_to_string(log).unwrap_or_default();
            panic!("not ready: {cmd:?}\n{lines:?}\n{errors}")
        });
        let done = line.contains(ready);
        lines.push(line);
        if done {
            return (proc, lines);
        }
    }
}
