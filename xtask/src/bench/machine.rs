//! What the figures were measured on: kernel, CPU, tool versions, lb commit.

use std::process::Command;

use serde::Serialize;

use crate::util;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub os: String,
    pub cpu_model: String,
    pub nproc: usize,
    pub mem_total_gib: f64,
    pub virtualization: String,
    pub haproxy: String,
    pub iperf3: String,
    pub postgresql: String,
    pub sockperf: String,
    /// CONFIG_IRQ_TIME_ACCOUNTING: without it softirq time is sampled by ticks.
    pub irq_time_accounting: Option<bool>,
    pub lb_commit: String,
}

pub fn describe() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    Machine {
        kernel: format!(
            "{} {}",
            first_line(&["uname", "-r"]),
            first_line(&["uname", "-v"])
        ),
        os: os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| "unknown".into()),
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total_gib: field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| (kib / 1048576.0 * 10.0).round() / 10.0),
        virtualization: first_line(&["systemd-detect-virt"]),
        haproxy: first_line(&["haproxy", "-v"]),
        iperf3: first_line(&["iperf3", "--version"]),
        postgresql: first_line(&["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        sockperf: first_line(&["sockperf", "--version"]),
        irq_time_accounting: irq_time_accounting(),
        lb_commit: lb_commit(),
    }
}

/// Whether the kernel was built with CONFIG_IRQ_TIME_ACCOUNTING (from
/// /proc/config.gz, through zcat); None if unknown.
fn irq_time_accounting() -> Option<bool> {
    let out = Command::new("zcat").arg("/proc/config.gz").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().any(|l| l == "CONFIG_IRQ_TIME_ACCOUNTING=y"))
}

/// `key : value` from /proc/cpuinfo or `key: value` from /proc/meminfo.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// First line of a command's stdout (or stderr), "unknown" if it fails.
fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            let text = String::from_utf8_lossy(&text).into_owned();
            text.lines().next().map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `git rev-parse --short HEAD`, with `-dirty` if the work tree has changes.
fn lb_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(util::repo_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".into(),
    }
}
