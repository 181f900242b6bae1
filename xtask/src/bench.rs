//! `cargo xtask bench`: lb against a direct connection and HAProxy, in one
//! run, over the integration tests' network namespaces (or one namespace's
//! loopback).
//!
//! Targets (`targets`): direct, haproxy, lb, lb --no-splice. Workloads
//! (`workloads`): pgbench -S (8 and 64 clients, -C), iperf3 (1 and 4
//! streams), sockperf ping-pong (pinned and not), short connections, idle
//! connections and slow readers (the last three with the `benchclient`
//! crate). Every target is measured in the same run against the same
//! backends, repetitions interleaved, so that noise cancels in the ratios.
//! Tables go to stdout, raw samples to target/bench/*.json (`report`),
//! charts to PNG (`chart`); a full run rewrites docs/BENCHMARKS.md and
//! docs/bench/*.png.

mod chart;
mod machine;
mod mem;
mod net;
mod proc;
mod report;
mod syn_cookies;
mod targets;
mod workloads;
mod xdp_drop;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use lb_tests::Postgres;

use crate::{build, toolchain, util};
use net::{Net, TopologyKind};
use report::{Record, Sample, TargetRun};
use targets::Target;
use workloads::{Ctx, Settings, Workload};

#[derive(Args)]
pub struct BenchArgs {
    /// Every workload briefly (1 repetition, 1 s runs, 500 idle
    /// connections): proves the harness works, in under 2 minutes; its
    /// figures mean little and the docs are left alone.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every workload on every target [default: 3, 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: Option<u32>,
    /// Where the traffic flows.
    #[arg(long, value_enum, default_value = "netns")]
    pub topology: TopologyKind,
    /// Only these workloads (comma-separated) [default: all]; the docs are
    /// then left alone.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub workloads: Vec<Workload>,
    /// Only these targets (comma-separated) [default: all]; the docs are
    /// then left alone.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub targets: Vec<Target>,
    /// Before measuring, wait (15 minutes at most) until the 1-minute load
    /// average is under 0.5 and no test or other benchmark runs.
    #[arg(long)]
    pub wait_quiet: bool,
    /// Only the XDP drop workload: packets/s and CPU per packet of a denied
    /// source dropped by lb's XDP program, by an nftables rule (netdev
    /// ingress), and by neither, on one core; prints a table.
    #[arg(long)]
    pub xdp_drop: bool,
    /// Only the SYN cookie workload: a spoofed SYN flood answered with SYN
    /// cookies by lb's XDP program and by the kernel, SYNs/s and CPU on one
    /// core and a legit client's connects meanwhile; prints a table.
    #[arg(long)]
    pub syn_cookies: bool,
}

/// Debian packages the benchmarks run.
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("haproxy", "the reference load balancer"),
    ("postgresql-15", "PostgreSQL backends for pgbench"),
    ("postgresql-client-15", "pgbench and psql"),
    ("iperf3", "bulk TCP throughput"),
    ("sockperf", "round-trip latency"),
    ("iproute2", "network namespaces, routes, ss"),
    ("util-linux", "taskset, nsenter"),
    ("fonts-dejavu-core", "the font of the PNG charts"),
];

struct Plan {
    quick: bool,
    repeat: u32,
    topology: TopologyKind,
    workloads: Vec<Workload>,
    targets: Vec<Target>,
    settings: Settings,
    benchclient: PathBuf,
}

impl Plan {
    /// A full run of everything: the one that rewrites the docs.
    fn complete(&self) -> bool {
        !self.quick
            && self.workloads.len() == Workload::ALL.len()
            && self.targets.len() == Target::ALL.iter().filter(|t| t.fits(self.topology)).count()
    }
}

/// Debian packages of the flood workloads (XDP drop, SYN cookies).
const XDP_DROP_PACKAGES: &[(&str, &str)] = &[
    ("netsniff-ng", "trafgen: the spoofed SYN flood"),
    ("nftables", "the nftables drop rule compared with XDP"),
    ("iproute2", "network namespaces"),
    ("util-linux", "taskset, nsenter"),
];

/// A flood workload on its own (`--xdp-drop`, `--syn-cookies`): its packages,
/// the daemon, then `run(repeat, packets)`; `--quick` sends `quick_packets`,
/// a full run ten times as many.
fn flood_workload(
    args: &BenchArgs,
    what: &str,
    quick_packets: u64,
    run: fn(u32, u64) -> Result<()>,
) -> Result<()> {
    toolchain::ensure_packages(XDP_DROP_PACKAGES, what)?;
    let lb = build::build(&build::BuildArgs::default())?;
    // The harness starts the daemon from $LB_BIN; no other thread runs yet.
    std::env::set_var("LB_BIN", &lb);
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 });
    let packets = if args.quick {
        quick_packets
    } else {
        quick_packets * 10
    };
    with_harness_cleanup(|| run(repeat, packets))
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    util::require_root("`cargo xtask bench`")?;
    if args.xdp_drop {
        return flood_workload(args, "the XDP drop benchmark", 200_000, xdp_drop::run);
    }
    if args.syn_cookies {
        return flood_workload(args, "the SYN cookie benchmark", 300_000, syn_cookies::run);
    }
    toolchain::ensure_packages(BENCH_PACKAGES, "the benchmarks")?;
    let lb = build::build(&build::BuildArgs::default())?;
    let benchclient = build_benchclient()?;
    // The harness starts the daemon from $LB_BIN; no other thread runs yet.
    std::env::set_var("LB_BIN", &lb);
    if args.wait_quiet {
        wait_quiet()?;
    } else {
        warn_if_busy();
    }

    let pick = |chosen: &[Workload]| -> Vec<Workload> {
        Workload::ALL
            .into_iter()
            .filter(|w| chosen.is_empty() || chosen.contains(w))
            .collect()
    };
    let plan = Plan {
        quick: args.quick,
        repeat: args.repeat.unwrap_or(if args.quick { 1 } else { 3 }),
        topology: args.topology,
        workloads: pick(&args.workloads),
        targets: Target::ALL
            .into_iter()
            .filter(|t| args.targets.is_empty() || args.targets.contains(t))
            .filter(|t| t.fits(args.topology))
            .collect(),
        settings: if args.quick {
            Settings {
                secs: 1,
                idle_conns: 500,
                slow_conns: 2,
                slow_secs: 1,
                short_threads: 8,
            }
        } else {
            Settings {
                secs: 8,
                idle_conns: 5000,
                slow_conns: 4,
                slow_secs: 6,
                short_threads: 8,
            }
        },
        benchclient,
    };
    with_harness_cleanup(|| run_and_report(&plan))
}

/// `cargo build --release -p benchclient`; returns the binary.
fn build_benchclient() -> Result<PathBuf> {
    let mut cmd = util::cargo();
    cmd.current_dir(util::repo_root())
        .args(["build", "--release", "-p", "benchclient"]);
    util::run(&mut cmd).context("building benchclient failed")?;
    Ok(util::target_dir().join("release/benchclient"))
}

/// Measure, print the tables, write the JSON and the charts (and the docs
/// after a complete, clean run). Errors if any step failed, after writing
/// the results.
fn run_and_report(plan: &Plan) -> Result<()> {
    let unix_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = utc_date();
    let machine = machine::describe();
    let started = Instant::now();
    let run = measure(plan)?;
    let elapsed_s = started.elapsed().as_secs_f64();

    let errors = collect_errors(&run.samples, &run.runs);
    let notes: Vec<String> = run
        .samples
        .iter()
        .filter_map(|s| s.measurement.as_ref())
        .flat_map(|m| m.notes.iter().cloned())
        .collect();
    let rows = report::summarize(&run.samples, &plan.workloads);
    let table = report::markdown_table(&rows, &plan.settings, plan.repeat);
    let goals = report::goals(&rows, &run.samples);
    let counters = report::lb_counters_table(&run.samples, &plan.workloads);
    let shortfalls = report::shortfalls(&goals, &rows, &run.samples);

    let write_docs = plan.complete() && errors.is_empty();
    let chart_dir = if write_docs {
        util::repo_root().join("docs/bench")
    } else {
        util::target_dir().join("bench/charts")
    };
    let title_suffix = format!(" — {} topology", topology_name(plan.topology));
    let charts = chart::draw_all(&chart_dir, &rows, &title_suffix).unwrap_or_else(|e| {
        eprintln!("[bench] warning: no charts: {e:#}");
        Vec::new()
    });

    let record = Record {
        format: 2,
        unix_time,
        date: &date,
        quick: plan.quick,
        repeat: plan.repeat,
        topology: plan.topology,
        topology_description: &run.topology_description,
        settings: &plan.settings,
        workloads: &plan.workloads,
        elapsed_s,
        machine: &machine,
        config: &run.config,
        table: &rows,
        table_markdown: &table,
        goals: &goals,
        charts: &charts,
        samples: &run.samples,
        target_runs: &run.runs,
        notes: &notes,
        errors: &errors,
    };
    println!(
        "\n## lb benchmarks ({date}, {} topology, {} CPUs, {}, kernel {})\n\n{table}\n\
         ### Goals\n\n{}\n{shortfalls}\n### lb kernel counters per workload (median)\n\n{counters}",
        topology_name(plan.topology),
        machine.nproc,
        machine.cpu_model,
        machine.kernel,
        report::goals_table(&goals),
    );
    for n in &notes {
        println!("NOTE: {n}");
    }
    let json = report::write_json(&record)?;
    println!("raw samples: {}", json.display());
    for c in &charts {
        println!("chart: {}", c.display());
    }

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
    if write_docs {
        let path = report::write_docs(&record, &counters, &shortfalls)?;
        println!("wrote {}", path.display());
    } else {
        println!("partial or quick run: docs/BENCHMARKS.md and docs/bench/ left alone");
    }
    Ok(())
}

fn topology_name(t: TopologyKind) -> &'static str {
    match t {
        TopologyKind::Netns => "netns",
        TopologyKind::Loopback => "loopback",
    }
}

fn collect_errors(samples: &[Sample], runs: &[TargetRun]) -> Vec<String> {
    samples
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
        .collect()
}

struct RunData {
    samples: Vec<Sample>,
    runs: Vec<TargetRun>,
    config: String,
    topology_description: String,
}

/// The namespaces, backends, and every (repetition, target, workload).
fn measure(plan: &Plan) -> Result<RunData> {
    let net = Net::new(plan.topology)?;
    println!("[bench] {}", net.describe());
    let b = net.backends();
    let _pgs = Postgres::trio(net.srv(), [&[b[0]], &[b[1]], &[b[2]]])?;
    workloads::pgbench_init(&net)?;
    let mut echo = workloads::echo_server(&net, &plan.benchclient)?;
    let cfg = targets::config_text(&net, proc::nproc());

    let mut samples = Vec::new();
    let mut runs = Vec::new();
    let n = plan.targets.len();
    for rep in 1..=plan.repeat {
        // Each repetition starts with a different target, against drift.
        for i in 0..n {
            let target = plan.targets[(i + rep as usize - 1) % n];
            println!("[bench] rep {rep}/{}: {}", plan.repeat, target.label());
            runs.push(bench_target(&net, &cfg, plan, target, rep, &mut samples));
            echo.check_alive()?;
        }
    }
    Ok(RunData {
        samples,
        runs,
        config: cfg,
        topology_description: net.describe(),
    })
}

/// Start `target`, run every workload against it, stop it. Failures are
/// recorded in the samples / the returned run, not propagated.
fn bench_target(
    net: &Net,
    cfg: &str,
    plan: &Plan,
    target: Target,
    rep: u32,
    samples: &mut Vec<Sample>,
) -> TargetRun {
    let mut run = TargetRun {
        target,
        rep,
        datapath: None,
        lb_stats: None,
        error: None,
    };
    let mut running = match targets::start(net, cfg, target) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("{:#}", e.context(format!("starting {}", target.label())));
            eprintln!("[bench] {msg}");
            for &workload in &plan.workloads {
                samples.push(Sample {
                    target,
                    workload,
                    rep,
                    measurement: None,
                    lb_stats_delta: None,
                    error: Some("target did not start".into()),
                });
            }
            run.error = Some(msg);
            return run;
        }
    };
    run.datapath = running.datapath();
    let ctx = Ctx {
        net,
        target,
        balancer: running.pid(),
        settings: &plan.settings,
        benchclient: &plan.benchclient,
    };
    for &workload in &plan.workloads {
        let before = running.lb_stats();
        let result = workloads::run(&ctx, workload).map_err(|e| running.annotate(e));
        let lb_stats_delta = match (before, running.lb_stats()) {
            (Some(b), Some(a)) => targets::stats_delta(&b, &a),
            _ => None,
        };
        let (measurement, error) = match result {
            Ok(m) => {
                println!("[bench]   {:<20} {}", workload.label(), show(&m));
                (Some(m), None)
            }
            Err(e) => {
                eprintln!("[bench]   {:<20} FAILED: {e:#}", workload.label());
                (None, Some(format!("{e:#}")))
            }
        };
        samples.push(Sample {
            target,
            workload,
            rep,
            measurement,
            lb_stats_delta,
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

/// The figures of one measurement, for the progress lines.
fn show(m: &workloads::Measurement) -> String {
    use workloads::fig;
    let shown = [
        (fig::TPS, "tps"),
        (fig::GBIT_S, "Gbit/s"),
        (fig::P50_US, "µs p50"),
        (fig::P99_US, "µs p99"),
        (fig::CONNS_PER_S, "conn/s"),
        (fig::SETUP_P99_US, "µs setup p99"),
        (fig::CPU_S_PER_GB, "CPU-s/GB"),
        (fig::CPU_MS_PER_1K, "CPU-ms/1k"),
        (fig::ESTABLISHED, "conns"),
        (fig::RSS_B_PER_CONN, "B RSS/conn"),
        (fig::SLAB_B_PER_CONN, "B slab/conn"),
        (fig::RSS_GROWTH_MIB, "MiB RSS growth"),
        (fig::TCP_MEM_GROWTH_MIB, "MiB TCP mem growth"),
    ];
    shown
        .iter()
        .filter_map(|&(k, unit)| Some(format!("{} {unit}", report::num(m.get(k)?))))
        .collect::<Vec<_>>()
        .join(", ")
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

/// Test runs and benchmarks of other processes (never ours or our
/// ancestors'): pid and command line.
fn other_runs() -> Vec<(u32, String)> {
    let ours = ancestors();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
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
            out.push((pid, cmdline.trim().to_string()));
        }
    }
    out
}

/// Warn when an integration-test run or another benchmark shares the CPUs:
/// the figures would be noise.
fn warn_if_busy() {
    for (pid, cmdline) in other_runs() {
        eprintln!("[bench] WARNING: pid {pid} ({cmdline}) is running: the figures will be noisy");
    }
}

fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Poll every 30 s, 15 minutes at most, until the machine is quiet: 1-min
/// load under 0.5 and no other test or benchmark. Goes on (with a warning)
/// after that.
fn wait_quiet() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    loop {
        let load = load_1min().unwrap_or(f64::NAN);
        let others = other_runs();
        if load < 0.5 && others.is_empty() {
            println!("[bench] machine quiet (1-min load {load:.2})");
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "[bench] WARNING: still busy after 15 minutes (load {load:.2}, {} other runs): \
                 measuring anyway, the figures will be noisy",
                others.len()
            );
            return Ok(());
        }
        println!(
            "[bench] waiting for a quiet machine: 1-min load {load:.2}, other runs: {:?}",
            others.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(30));
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
