//! `cargo xtask bench [--quick] [--repeat N]`: lb against a direct
//! connection and HAProxy, in the integration tests' network namespaces.
//!
//! Targets (`targets`): direct, haproxy, lb, lb --no-splice; workloads
//! (`workloads`): pgbench -S and iperf3 with 1 and 4 streams. Every target is
//! measured in the same run against the same backends, repetitions
//! interleaved, so that noise cancels in the ratios. The table goes to stdout,
//! raw samples to target/bench/*.json (`report`), and a full run rewrites
//! docs/BENCHMARKS.md.

mod machine;
mod proc;
mod report;
mod targets;
mod workloads;

use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use lb_tests::scenario::pg_trio;
use lb_tests::Topology;

use crate::{build, toolchain, util};
use report::{Record, Sample, TargetRun};
use targets::Target;
use workloads::{Durations, Workload};

#[derive(Args)]
pub struct BenchArgs {
    /// Short run proving the harness works (1 repetition, 2 s per workload);
    /// its figures mean little and docs/BENCHMARKS.md is left alone.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every workload on every target [default: 3, 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: Option<u32>,
}

/// Debian packages the benchmarks run.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("haproxy", "the reference load balancer"),
    ("postgresql-15", "PostgreSQL backends for pgbench"),
    ("postgresql-client-15", "pgbench and psql"),
    ("iperf3", "bulk TCP throughput"),
    ("iproute2", "network namespaces, routes, ss"),
];

struct Plan {
    quick: bool,
    repeat: u32,
    durations: Durations,
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    util::require_root("`cargo xtask bench`")?;
    toolchain::ensure_packages(BENCH_PACKAGES, "the benchmarks")?;
    let lb = build::build(&build::BuildArgs::default())?;
    // The harness starts the daemon from $LB_BIN; no other thread runs yet.
    std::env::set_var("LB_BIN", &lb);
    warn_if_busy();

    let plan = Plan {
        quick: args.quick,
        repeat: args.repeat.unwrap_or(if args.quick { 1 } else { 3 }),
        durations: if args.quick {
            Durations {
                pgbench_secs: 2,
                iperf_secs: 2,
            }
        } else {
            Durations {
                pgbench_secs: 10,
                iperf_secs: 10,
            }
        },
    };
    with_harness_cleanup(|| run_and_report(&plan))
}

/// Measure, print the table, write the JSON (and the docs after a full,
/// clean run). Errors if any sample failed, after writing the results.
fn run_and_report(plan: &Plan) -> Result<()> {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = utc_date();
    let machine = machine::describe();
    let cfg = targets::config_text();
    let started = Instant::now();
    let (samples, runs) = measure(plan, &cfg)?;
    let elapsed_s = started.elapsed().as_secs_f64();

    let errors: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            let e = s.error.as_ref()?;
            Some(format!(
                "{} via {} (rep {}): {e}",
                s.workload.label(),
                s.target.label(),
                s.rep
            ))
        })
        .chain(runs.iter().filter_map(|r| {
            let e = r.error.as_ref()?;
            Some(format!("{} (rep {}): {e}", r.target.label(), r.rep))
        }))
        .collect();
    let rows = report::summarize(&samples);
    let table = report::markdown_table(&rows, plan.durations, plan.repeat);
    let record = Record {
        format: 1,
        unix_time,
        date: &date,
        quick: plan.quick,
        repeat: plan.repeat,
        durations: plan.durations,
        elapsed_s,
        machine: &machine,
        config: &cfg,
        table: &rows,
        table_markdown: &table,
        samples: &samples,
        target_runs: &runs,
        errors: &errors,
    };
    println!(
        "\n## lb benchmarks ({date}, {} CPUs, {}, kernel {})\n\n{table}",
        machine.nproc, machine.cpu_model, machine.kernel
    );
    let json = report::write_json(&record)?;
    println!("raw samples: {}", json.display());

    if !errors.is_empty() {
        for e in &errors {
            eprintln!("[bench] FAILED: {e}\n");
        }
        bail!(
            "{} benchmark step(s) failed (see above and {})",
            errors.len(),
            json.display()
        );
    }
    if plan.quick {
        println!("quick run: docs/BENCHMARKS.md left alone");
    } else {
        println!("wrote {}", report::write_docs(&record)?.display());
    }
    Ok(())
}

/// The namespaces, backends, and every (repetition, target, workload).
fn measure(plan: &Plan, cfg: &str) -> Result<(Vec<Sample>, Vec<TargetRun>)> {
    let topo = Topology::new("bench")?;
    println!("[bench] namespaces {}-{{client,lb,srv}}", topo.name);
    let _pgs = pg_trio(&topo, false)?;
    workloads::pgbench_init(&topo)?;

    let mut samples = Vec::new();
    let mut runs = Vec::new();
    for rep in 1..=plan.repeat {
        // Each repetition starts with a different target, against drift.
        for i in 0..Target::ALL.len() {
            let target = Target::ALL[(i + rep as usize - 1) % Target::ALL.len()];
            println!("[bench] rep {rep}/{}: {}", plan.repeat, target.label());
            runs.push(bench_target(
                &topo,
                cfg,
                target,
                rep,
                plan.durations,
                &mut samples,
            ));
        }
    }
    Ok((samples, runs))
}

/// Start `target`, run every workload against it, stop it. Failures are
/// recorded in the samples / the returned run, not propagated.
fn bench_target(
    topo: &Topology,
    cfg: &str,
    target: Target,
    rep: u32,
    d: Durations,
    samples: &mut Vec<Sample>,
) -> TargetRun {
    let mut run = TargetRun {
        target,
        rep,
        datapath: None,
        lb_stats: None,
        error: None,
    };
    let mut running = match targets::start(topo, cfg, target) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("{:#}", e.context(format!("starting {}", target.label())));
            eprintln!("[bench] {msg}");
            for workload in Workload::ALL {
                samples.push(Sample {
                    target,
                    workload,
                    rep,
                    measurement: None,
                    error: Some("target did not start".into()),
                });
            }
            run.error = Some(msg);
            return run;
        }
    };
    run.datapath = running.datapath();
    for workload in Workload::ALL {
        let result =
            workloads::run(topo, workload, target.host(), d).map_err(|e| running.annotate(e));
        let (measurement, error) = match result {
            Ok(m) => {
                println!("[bench]   {:<16} {}", workload.label(), show(workload, &m));
                (Some(m), None)
            }
            Err(e) => {
                eprintln!("[bench]   {:<16} FAILED: {e:#}", workload.label());
                (None, Some(format!("{e:#}")))
            }
        };
        samples.push(Sample {
            target,
            workload,
            rep,
            measurement,
            error,
        });
    }
    run.lb_stats = running.lb_stats();
    if let Err(e) = running.stop() {
        run.error = Some(format!(
            "{:#}",
            e.context(format!("stopping {}", target.label()))
        ));
    }
    run
}

fn show(w: Workload, m: &workloads::Measurement) -> String {
    match w {
        Workload::PgbenchSelect => format!("{:.0} tps", m.value),
        Workload::Iperf1 | Workload::Iperf4 => format!(
            "{:.2} Gbit/s, {:.2} CPU-s/GB",
            m.value,
            m.cpu_s_per_gb.unwrap_or(f64::NAN)
        ),
    }
}

/// Run `f` under the harness's failure reporting: scratch dirs (configs,
/// logs, PostgreSQL data) are removed on success and kept, with the
/// diagnostics the guards stashed (daemon and PostgreSQL log tails), on error.
fn with_harness_cleanup(f: impl FnOnce() -> Result<()>) -> Result<()> {
    let mut outcome = None;
    // run_test reports errors by panicking; its message is all we need.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
        lb_tests::run_test(|| {
            let r = f();
            let failed = r.as_ref().err().map(|e| anyhow!("{e:#}"));
            outcome = Some(r);
            failed.map_or(Ok(()), Err)
        })
    }));
    std::panic::set_hook(hook);
    match (caught, outcome) {
        (Ok(()), Some(r)) => r,
        (_, Some(Err(e))) => Err(e),
        (Err(panic), _) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            bail!("benchmark panicked: {msg}")
        }
        (Ok(()), None) => bail!("benchmark did not run"),
    }
}

/// `2026-01-31 12:34 UTC`
fn utc_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

/// Warn when an integration-test run or another benchmark shares the CPUs:
/// the figures would be noise.
fn warn_if_busy() {
    let ours = ancestors();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if ours.contains(&pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if ["xtask test", "xtask bench", "lb-tests"]
            .iter()
            .any(|pat| cmdline.contains(pat))
        {
            eprintln!(
                "[bench] WARNING: pid {pid} ({}) is running: the figures will be noisy",
                cmdline.trim()
            );
        }
    }
}

/// This process and its ancestors (cargo, the shell...).
fn ancestors() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    // Bounded: process trees are not deeper than this in practice.
    for _ in 0..64 {
        let last = pids[pids.len() - 1];
        let stat = std::fs::read_to_string(format!("/proc/{last}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        match ppid {
            Some(p) if p > 1 => pids.push(p),
            _ => break,
        }
    }
    pids
}
