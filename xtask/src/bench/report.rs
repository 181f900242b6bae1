//! Samples, their summary (median and min-max per target), the markdown
//! table, the JSON files and docs/BENCHMARKS.md.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::machine::Machine;
use super::targets::Target;
use super::workloads::{Durations, Measurement, Workload};
use crate::util;

/// One run of one workload against one target.
#[derive(Debug, Serialize)]
pub struct Sample {
    pub target: Target,
    pub workload: Workload,
    /// 1-based repetition.
    pub rep: u32,
    #[serde(flatten)]
    pub measurement: Option<Measurement>,
    pub error: Option<String>,
}

/// One start/stop of a target.
#[derive(Debug, Serialize)]
pub struct TargetRun {
    pub target: Target,
    pub rep: u32,
    /// lb's logged data path (lb targets).
    pub datapath: Option<String>,
    /// `lb show stats --json` after the workloads (lb targets).
    pub lb_stats: Option<Value>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

#[derive(Clone, Copy)]
enum Metric {
    /// tps or Gbit/s
    Value,
    CpuPerGb,
}

/// The table's rows: (workload, metric, label, lower is better).
const ROWS: [(Workload, Metric, &str, bool); 5] = [
    (
        Workload::PgbenchSelect,
        Metric::Value,
        "pgbench -S, 8 clients, tps ¹",
        false,
    ),
    (
        Workload::Iperf1,
        Metric::Value,
        "iperf3 1 stream, Gbit/s",
        false,
    ),
    (
        Workload::Iperf4,
        Metric::Value,
        "iperf3 -P 4, Gbit/s",
        false,
    ),
    (
        Workload::Iperf1,
        Metric::CpuPerGb,
        "iperf3 1 stream, CPU-s/GB ²",
        true,
    ),
    (
        Workload::Iperf4,
        Metric::CpuPerGb,
        "iperf3 -P 4, CPU-s/GB ²",
        true,
    ),
];

#[derive(Debug, Serialize)]
pub struct Cell {
    pub target: Target,
    /// None: no successful sample.
    pub stats: Option<Stats>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub lower_is_better: bool,
    /// Per target, in [`Target::ALL`] order.
    pub cells: Vec<Cell>,
    /// Ratios of medians.
    pub lb_over_haproxy: Option<f64>,
    pub lb_over_direct: Option<f64>,
}

pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    ROWS.iter()
        .map(|&(workload, metric, label, lower_is_better)| {
            let cells: Vec<Cell> = Target::ALL
                .iter()
                .map(|&t| {
                    let values: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.target == t && s.workload == workload)
                        .filter_map(|s| s.measurement.as_ref())
                        .filter_map(|m| match metric {
                            Metric::Value => Some(m.value),
                            Metric::CpuPerGb => m.cpu_s_per_gb,
                        })
                        .collect();
                    Cell {
                        target: t,
                        stats: Stats::of(&values),
                    }
                })
                .collect();
            let median = |t: Target| {
                cells
                    .iter()
                    .find(|c| c.target == t)
                    .and_then(|c| c.stats.map(|s| s.median))
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            Row {
                label: label.to_string(),
                lower_is_better,
                lb_over_haproxy: ratio(median(Target::Lb), median(Target::Haproxy)),
                lb_over_direct: ratio(median(Target::Lb), median(Target::Direct)),
                cells,
            }
        })
        .collect()
}

/// 38512 -> "38.5k", 12.345 -> "12.3", 0.8512 -> "0.85".
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        format!("{:.1}k", x / 1000.0)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: Option<Stats>) -> String {
    match s {
        None => "FAILED".into(),
        Some(s) if s.n == 1 => num(s.median),
        Some(s) => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
}

/// The results table, with its footnotes.
pub fn markdown_table(rows: &[Row], d: Durations, repeat: u32) -> String {
    let mut s = String::from("| workload |");
    for t in Target::ALL {
        s.push_str(&format!(" {} |", t.label()));
    }
    s.push_str(" lb/haproxy | lb/direct |\n|---|");
    s.push_str(&"---:|".repeat(Target::ALL.len() + 2));
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |", r.label));
        for c in &r.cells {
            s.push_str(&format!(" {} |", cell(c.stats)));
        }
        s.push_str(&format!(
            " {} | {} |\n",
            ratio_cell(r.lb_over_haproxy),
            ratio_cell(r.lb_over_direct)
        ));
    }
    s.push_str(&format!(
        "\nMedian of {repeat} run(s) (min–max); ratios are of medians. pgbench `-n -S -c 8 -j 2 -T {}`, \
         iperf3 `-t {}`.\n\n\
         ¹ `direct`: pgbench against one backend (10.210.2.11); the balancers spread the 8 \
         connections over three.\n\n\
         ² Busy CPU-seconds of the whole machine (all CPUs: user+nice+system+irq+softirq, \
         including iperf3 itself and kernel workers) per 10^9 bytes received; lower is better.\n",
        d.pgbench_secs, d.iperf_secs
    ));
    s
}

/// Everything one run produced, as written to target/bench/*.json.
#[derive(Serialize)]
pub struct Record<'a> {
    pub format: u32,
    pub unix_time: u64,
    pub date: &'a str,
    pub quick: bool,
    pub repeat: u32,
    pub durations: Durations,
    pub elapsed_s: f64,
    pub machine: &'a Machine,
    /// The config file both balancers ran.
    pub config: &'a str,
    pub table: &'a [Row],
    pub table_markdown: &'a str,
    pub samples: &'a [Sample],
    pub target_runs: &'a [TargetRun],
    pub errors: &'a [String],
}

/// Write `target/bench/bench-<unix time>.json` and `target/bench/latest.json`;
/// returns the first path.
pub fn write_json(record: &Record) -> Result<PathBuf> {
    let dir = util::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(record)? + "\n";
    let path = dir.join(format!("bench-{}.json", record.unix_time));
    for p in [&path, &dir.join("latest.json")] {
        std::fs::write(p, &text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(path)
}

/// docs/BENCHMARKS.md from a full run.
pub fn write_docs(record: &Record) -> Result<PathBuf> {
    let m = record.machine;
    let text = format!(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` on {date} (lb {commit}); \
         {repeat} repetitions, {elapsed:.0} s in all. Rerun it to refresh this file.\n\n\
         {table}\n\
         ## Setup\n\n\
         Everything runs on one machine, in three network namespaces joined by veth pairs \
         (the integration-test topology: client 10.210.1.2 -> balancer 10.210.1.1; \
         10.210.2.1 -> backends 10.210.2.11-13). All four targets are measured in one \
         run against the same backends, interleaved (each repetition starts with a \
         different target), so that drift and noise largely cancel in the ratios. The \
         absolute figures are for this machine only; compare the ratios.\n\n\
         - `direct`: no balancer. Routes through the balancer namespace, whose kernel \
         forwards (`net.ipv4.ip_forward=1` there only), so packets cross the same veths.\n\
         - `haproxy`: Debian's HAProxy ({haproxy}), `nbthread 2`.\n\
         - `lb`: `lb run` with the in-kernel splice (sockhash + sk_skb verdict).\n\
         - `lb --no-splice`: `lb run --no-splice`, copying in userspace.\n\n\
         Both balancers read the same config file: `mode tcp`, `balance roundrobin`, \
         `timeout connect 5s`, `timeout client/server 30s`, no health checks, one frontend \
         on port 5432 for three PostgreSQL 15 servers (pgbench tables at scale 1) and one \
         on port 5201 for a single iperf3 server (an iperf3 test's control and data \
         connections must reach the same server). lb uses its tokio default of one \
         worker thread per CPU; HAProxy gets as many threads.\n\n\
         Workloads, run in this order against each target: `pgbench -n -S -c 8 -j 2 -T \
         {pg_secs}` (select-only), `iperf3 -t {iperf_secs}` with one stream, then `-P 4` \
         (a fresh one-off `iperf3 -s` for each run; Gbit/s received by the server). For \
         the iperf3 runs, the busy time of all CPUs is read from /proc/stat before and \
         after the client runs and divided by the bytes moved: this includes iperf3 \
         itself and in-kernel work, such as the kernel workers that carry the splice.\n\n\
         ## Machine\n\n\
         - kernel: {kernel}\n- OS: {os}\n- CPU: {cpu} ({nproc} CPUs, {virt})\n\
         - memory: {mem} GiB\n- {iperf3}\n- {postgres}\n\n\
         ## Reproduce\n\n\
         As root, on an otherwise idle Debian 12 machine, from the repository root:\n\n\
         ```\n\
         cargo xtask bench               # full run (~7 minutes), rewrites this file\n\
         cargo xtask bench --repeat 5    # more repetitions\n\
         cargo xtask bench --quick       # ~1 minute smoke run of the harness; figures are meaningless\n\
         ```\n\n\
         It installs missing packages (haproxy, postgresql-15, postgresql-client-15, \
         iperf3), builds lb, prints the table and writes every raw sample, the machine \
         description and the config to `target/bench/bench-<unix time>.json` and \
         `target/bench/latest.json`.\n",
        date = record.date,
        commit = m.lb_commit,
        repeat = record.repeat,
        elapsed = record.elapsed_s,
        table = record.table_markdown,
        haproxy = m.haproxy,
        pg_secs = record.durations.pgbench_secs,
        iperf_secs = record.durations.iperf_secs,
        kernel = m.kernel,
        os = m.os,
        cpu = m.cpu_model,
        nproc = m.nproc,
        virt = m.virtualization,
        mem = m.mem_total_gib,
        iperf3 = m.iperf3,
        postgres = m.postgresql,
    );
    let path = util::repo_root().join("docs/BENCHMARKS.md");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_and_spread() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn table_has_every_target_and_ratios() {
        let m = |value, cpu| Measurement {
            value,
            cpu_busy_s: 1.0,
            bytes: Some(1),
            cpu_s_per_gb: Some(cpu),
            wall_s: 1.0,
            detail: Value::Null,
        };
        let mut samples = Vec::new();
        for (t, v) in Target::ALL.into_iter().zip([40.0, 10.0, 20.0, 8.0]) {
            for w in Workload::ALL {
                samples.push(Sample {
                    target: t,
                    workload: w,
                    rep: 1,
                    measurement: Some(m(v, 1.0 / v)),
                    error: None,
                });
            }
        }
        samples[0].measurement = None;
        let rows = summarize(&samples);
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1].lb_over_haproxy, Some(2.0));
        assert_eq!(rows[1].lb_over_direct, Some(0.5));
        assert_eq!(rows[0].lb_over_direct, None);
        let d = Durations {
            pgbench_secs: 2,
            iperf_secs: 2,
        };
        let t = markdown_table(&rows, d, 1);
        assert!(t.contains("| lb --no-splice |"), "{t}");
        assert!(t.contains("| FAILED |"), "{t}");
        assert_eq!(num(38512.0), "38.5k");
        assert_eq!(num(0.8512), "0.85");
    }
}
