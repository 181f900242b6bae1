//! Processes for the benchmarks: bounded runs, guards that kill what they
//! started (even on error), listening-socket waits and CPU accounting.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lb_tests::util::{describe, signal, tail, wait_until};
use lb_tests::Netns;

/// Run `cmd` to completion with piped stdout/stderr, killing it if it is still
/// running after `limit`. Returns its output whatever the exit status.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let shown = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{shown}` still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Like [`run_bounded`], but fails (with stdout and stderr) unless it exits 0.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<String> {
    let out = run_bounded(cmd, limit)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// A background process (haproxy, an iperf3 server) with its output in a
/// log file. Dropping the guard stops it: SIGTERM, then SIGKILL after 5 s.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawn `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<ChildGuard> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: `{}`", describe(&cmd)))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Error (with the log tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(st) = child.try_wait()? {
                bail!(
                    "{} exited ({st}); --- log tail ({}) ---\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// Give the process `grace` to exit by itself (an `iperf3 -s -1` after its
    /// test), then stop it.
    pub fn finish(mut self, grace: Duration) {
        if let Some(child) = self.child.as_mut() {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.stop();
    }

    /// SIGTERM, up to 5 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("[bench] {} ignored SIGTERM for 5 s: killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait (10 s at most) until every `ip:port` in `addrs` has a listening TCP
/// socket in `ns`; fails early if `guard`'s process exits.
pub fn wait_listening(ns: &Netns, addrs: &[String], guard: &mut ChildGuard) -> Result<()> {
    wait_until(
        &format!("{} in {}", addrs.join(", "), ns.name()),
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            guard.check_alive()?;
            let out = run_ok(ns.cmd("ss").args(["-Hltn"]), Duration::from_secs(5))?;
            let listening: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .collect();
            Ok(addrs.iter().all(|a| listening.contains(&a.as_str())))
        },
    )?;
    // A process that exited after the last poll would otherwise go unnoticed.
    guard.check_alive()
}

/// Busy time of all CPUs so far (user + nice + system + irq + softirq from
/// the `cpu` line of /proc/stat), in seconds. Kernel workers doing the
/// in-kernel splice count as system time.
pub fn cpu_busy_secs() -> Result<f64> {
    let mut text = String::new();
    File::open("/proc/stat")
        .and_then(|mut f| f.read_to_string(&mut text))
        .context("cannot read /proc/stat")?;
    parse_cpu_busy(&text)
}

fn parse_cpu_busy(stat: &str) -> Result<f64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no `cpu ` line in /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().context("bad number in /proc/stat"))
        .collect::<Result<_>>()?;
    if f.len() < 7 {
        bail!("short `cpu ` line in /proc/stat: {line}");
    }
    // user nice system idle iowait irq softirq ...
    let busy = f[0] + f[1] + f[2] + f[5] + f[6];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(busy as f64 / hz)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_busy_sums_the_right_fields() {
        // user nice system idle iowait irq softirq steal
        let stat = "cpu  100 1 50 9999 7 3 6 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let busy = super::parse_cpu_busy(stat).unwrap();
        assert!((busy - 160.0 / hz).abs() < 1e-9);
        assert!(super::parse_cpu_busy("intr 1\n").is_err());
    }
}
