//! Processes for the benchmarks: bounded runs, guards that kill what they
//! started (even on error), listening-socket waits and CPU accounting.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lb_tests::util::{describe, signal, tail, wait_until};
use lb_tests::Netns;
use serde::Serialize;
use serde_json::Value;

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

    /// The process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

/// Clock ticks per second of /proc's time fields.
fn hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// The `cpu ` line of /proc/stat: (busy, softirq) in ticks, busy being
/// user + nice + system + irq + softirq.
fn parse_cpu_line(stat: &str) -> Result<(u64, u64)> {
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
    Ok((f[0] + f[1] + f[2] + f[5] + f[6], f[6]))
}

/// (comm, ppid, utime + stime in ticks) of /proc/PID/stat.
fn parse_pid_stat(stat: &str) -> Option<(&str, u32, u64)> {
    // pid (comm) state ppid ... utime(14) stime(15): comm may contain
    // spaces and parentheses, so split at the last ')'.
    let open = stat.find('(')?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = &head[open + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is the state (field 3): field n is f[n - 3].
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((comm, ppid, utime + stime))
}

fn pid_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pid_stat(&text).map(|(_, _, t)| t)
}

/// utime + stime of every kernel worker thread (`kworker/*`, children of
/// kthreadd), by pid. ksoftirqd is left out: its time is softirq time,
/// already in /proc/stat's softirq field.
fn kworker_ticks() -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, 2, ticks)) = parse_pid_stat(&text) {
            if comm.starts_with("kworker") {
                out.insert(pid, ticks);
            }
        }
    }
    out
}

/// CPU time spent on behalf of a balancer while a workload runs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuUse {
    /// The balancer process, all threads (utime + stime).
    pub balancer_s: f64,
    /// Kernel worker threads (kworker/*): the in-kernel splice's backlog
    /// work runs there.
    pub kworkers_s: f64,
    /// /proc/stat softirq, all CPUs (network receive processing; the
    /// verdict program runs there).
    pub softirq_s: f64,
    /// balancer + kworkers + softirq: the figure the tables use.
    pub total_s: f64,
    /// Every CPU's busy time (user + nice + system + irq + softirq),
    /// clients and servers included.
    pub machine_busy_s: f64,
}

/// A snapshot to measure [`CpuUse`] from.
pub struct CpuProbe {
    balancer: Option<u32>,
    balancer_ticks: u64,
    kworkers: HashMap<u32, u64>,
    busy: u64,
    softirq: u64,
}

impl CpuProbe {
    pub fn start(balancer: Option<u32>) -> Result<CpuProbe> {
        let (busy, softirq) = parse_cpu_line(&read_proc_stat()?)?;
        Ok(CpuProbe {
            balancer,
            balancer_ticks: balancer.and_then(pid_ticks).unwrap_or(0),
            kworkers: kworker_ticks(),
            busy,
            softirq,
        })
    }

    pub fn finish(&self) -> Result<CpuUse> {
        let (busy, softirq) = parse_cpu_line(&read_proc_stat()?)?;
        let balancer = self
            .balancer
            .and_then(pid_ticks)
            .map_or(0, |t| t.saturating_sub(self.balancer_ticks));
        // Workers that appeared meanwhile count from zero; vanished ones are lost.
        let kworkers: u64 = kworker_ticks()
            .iter()
            .map(|(pid, &t)| t.saturating_sub(self.kworkers.get(pid).copied().unwrap_or(0)))
            .sum();
        let hz = hz();
        let s = |ticks: u64| ticks as f64 / hz;
        let softirq = softirq.saturating_sub(self.softirq);
        Ok(CpuUse {
            balancer_s: s(balancer),
            kworkers_s: s(kworkers),
            softirq_s: s(softirq),
            total_s: s(balancer + kworkers + softirq),
            machine_busy_s: s(busy.saturating_sub(self.busy)),
        })
    }
}

fn read_proc_stat() -> Result<String> {
    let mut text = String::new();
    File::open("/proc/stat")
        .and_then(|mut f| f.read_to_string(&mut text))
        .context("cannot read /proc/stat")?;
    Ok(text)
}

/// Pin every thread of `pid` to CPU 0 (`taskset -a -p -c 0`); the guard
/// gives it every CPU back.
pub struct PinGuard {
    pid: u32,
}

pub fn pin_to_cpu0(pid: u32) -> Result<PinGuard> {
    let p = pid.to_string();
    run_ok(
        Command::new("taskset").args(["-a", "-p", "-c", "0", &p]),
        Duration::from_secs(5),
    )
    .with_context(|| format!("pinning pid {pid} to CPU 0"))?;
    Ok(PinGuard { pid })
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let all = format!("0-{}", nproc().saturating_sub(1));
        let p = self.pid.to_string();
        // The process may have exited: nothing to restore then.
        let _ = run_bounded(
            Command::new("taskset").args(["-a", "-p", "-c", &all, &p]),
            Duration::from_secs(5),
        );
    }
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A background tool that speaks JSON lines on stdout (benchclient's
/// `hold` and `slow`); closing its stdin tells it to finish. Killed on drop.
pub struct LineChild {
    name: String,
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl LineChild {
    pub fn spawn(name: &str, mut cmd: Command) -> Result<LineChild> {
        let shown = describe(&cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: `{shown}`"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = reader(child.stderr.take());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = stdout else { return };
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(LineChild {
            name: name.to_string(),
            child: Some(child),
            stdin,
            lines,
            stderr,
        })
    }

    /// The next JSON line whose `event` is `event`, within `limit`.
    pub fn wait_event(&mut self, event: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).with_context(|| {
                        format!("{} printed a line that is not JSON: {line}", self.name)
                    })?;
                    if v["event"] == event {
                        return Ok(v);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{}: no `{event}` within {limit:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().map(|c| c.wait());
                    let stderr = self.stderr_text();
                    bail!(
                        "{} exited ({status:?}) before `{event}`: {stderr}",
                        self.name
                    )
                }
            }
        }
    }

    /// Close stdin (the tool's cue to finish).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn stderr_text(&mut self) -> String {
        let h = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
        String::from_utf8_lossy(&h.join().unwrap_or_default())
            .trim_end()
            .to_string()
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_line_sums_the_right_fields() {
        // user nice system idle iowait irq softirq steal
        let stat = "cpu  100 1 50 9999 7 3 6 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(super::parse_cpu_line(stat).unwrap(), (160, 6));
        assert!(super::parse_cpu_line("intr 1\n").is_err());
    }

    #[test]
    fn pid_stat_parses_odd_names() {
        let stat = "42 (kworker/0:1-(x) y) I 2 0 0 0 -1 69238880 0 0 0 0 17 5 0 0 20 0 1 0";
        assert_eq!(
            super::parse_pid_stat(stat),
            Some(("kworker/0:1-(x) y", 2, 22))
        );
        assert_eq!(super::parse_pid_stat("garbage"), None);
    }
}
