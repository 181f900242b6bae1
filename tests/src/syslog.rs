//! A syslog receiver for `log` lines (tcplog, health-check logs), on a UNIX
//! datagram socket in the test's scratch directory.

use anyhow::Result;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reads every datagram as it arrives, as a syslog daemon does (a UNIX
/// datagram queue holds only `net.unix.max_dgram_qlen` = 10 lines), until it
/// is dropped (or after 5 minutes).
pub struct Syslog {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Syslog {
    pub fn bind(path: &Path) -> Result<Self> {
        let sock = UnixDatagram::bind(path)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, done) = (lines.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(300);
                while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let l = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lines.lock().unwrap().push(l);
                    }
                }
            })
        };
        Ok(Self {
            path: path.to_path_buf(),
            lines,
            done,
            thread: Some(thread),
        })
    }

    /// Where to point `log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
