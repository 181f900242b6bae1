//! The workloads, one function each, run from the client namespace against
//! a target's address: pgbench -S (8 and 64 clients, and -C), iperf3 (1 and
//! 4 streams), sockperf ping-pong (pinned to one CPU and not), short
//! connections, idle connections and slow readers (benchclient).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use lb_tests::postgres::{parse_pgbench, PG_BIN_DIR};
use lb_tests::{hp, Netns};
use serde::Serialize;
use serde_json::{json, Value};

use super::mem::{growth, MemSample};
use super::net::Net;
use super::proc::{
    pin_to_cpu0, run_bounded, run_ok, wait_listening, ChildGuard, CpuProbe, CpuUse, LineChild,
};
use super::targets::{Target, ECHO_PORT, IPERF_PORT, PG_PORT, SOCKPERF_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// pgbench -S, 8 clients
    Pgbench8,
    /// pgbench -S, 64 clients
    Pgbench64,
    /// pgbench -S -C (a new connection per transaction), 8 clients
    PgbenchConnect,
    /// iperf3, 1 stream
    Iperf1,
    /// iperf3 -P 4
    Iperf4,
    /// sockperf ping-pong 64 B, client, balancer and server on CPU 0
    LatencyPinned,
    /// sockperf ping-pong 64 B, unpinned
    Latency,
    /// benchclient short: connect, 64 B request, 64 B reply, close
    ShortConns,
    /// benchclient hold: balancer and kernel memory per idle connection
    IdleConns,
    /// benchclient slow: clients stop reading while the backend streams
    SlowReader,
}

impl Workload {
    /// Order of the runs against each target.
    pub const ALL: [Workload; 10] = [
        Workload::Pgbench8,
        Workload::Pgbench64,
        Workload::PgbenchConnect,
        Workload::Iperf1,
        Workload::Iperf4,
        Workload::LatencyPinned,
        Workload::Latency,
        Workload::ShortConns,
        Workload::IdleConns,
        Workload::SlowReader,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::Pgbench8 => "pgbench -S -c 8",
            Workload::Pgbench64 => "pgbench -S -c 64",
            Workload::PgbenchConnect => "pgbench -S -C -c 8",
            Workload::Iperf1 => "iperf3 1 stream",
            Workload::Iperf4 => "iperf3 -P 4",
            Workload::LatencyPinned => "sockperf pinned",
            Workload::Latency => "sockperf",
            Workload::ShortConns => "short conns",
            Workload::IdleConns => "idle conns",
            Workload::SlowReader => "slow reader",
        }
    }
}

/// Names of the figures a [`Measurement`] carries.
pub mod fig {
    pub const TPS: &str = "tps";
    /// `direct` on the loopback topology only: the clients split over the
    /// three servers as a balancer spreads them (one pgbench per server).
    pub const TPS_SPREAD: &str = "tps_spread";
    pub const TRANSACTIONS: &str = "transactions";
    pub const GBIT_S: &str = "gbit_s";
    pub const CPU_S_PER_GB: &str = "cpu_s_per_gb";
    pub const MACHINE_CPU_S_PER_GB: &str = "machine_cpu_s_per_gb";
    pub const CPU_MS_PER_1K: &str = "cpu_ms_per_1k";
    pub const P50_US: &str = "p50_us";
    pub const P99_US: &str = "p99_us";
    pub const AVG_US: &str = "avg_us";
    pub const CONNS_PER_S: &str = "conns_per_s";
    pub const SETUP_P50_US: &str = "setup_p50_us";
    pub const SETUP_P99_US: &str = "setup_p99_us";
    pub const CONNECT_P99_US: &str = "connect_p99_us";
    pub const ESTABLISHED: &str = "established";
    pub const RSS_B_PER_CONN: &str = "rss_b_per_conn";
    pub const SLAB_B_PER_CONN: &str = "slab_b_per_conn";
    pub const RSS_GROWTH_MIB: &str = "rss_growth_mib";
    pub const TCP_MEM_GROWTH_MIB: &str = "tcp_mem_growth_mib";
    pub const KERNEL_GROWTH_MIB: &str = "kernel_growth_mib";
    /// Shares of the CPU figure (same unit): the balancer process, kernel
    /// workers, softirq.
    pub const CPU_BALANCER: &str = "cpu_balancer";
    pub const CPU_KWORKERS: &str = "cpu_kworkers";
    pub const CPU_SOFTIRQ: &str = "cpu_softirq";
    /// Busy share of all CPUs during the run, percent.
    pub const MACHINE_BUSY_PCT: &str = "machine_busy_pct";
}

/// How long and how big: full runs and `--quick` differ only here.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Settings {
    /// Length of every timed run (pgbench, iperf3, sockperf, short connections).
    pub secs: u64,
    /// Concurrent idle connections.
    pub idle_conns: usize,
    /// Slow-reader connections, and how long they stop reading.
    pub slow_conns: usize,
    pub slow_secs: u64,
    /// Threads of the short-connection client.
    pub short_threads: usize,
}

/// What a workload runs against.
pub struct Ctx<'a> {
    pub net: &'a Net,
    pub target: Target,
    /// The balancer's pid (`direct`: none).
    pub balancer: Option<u32>,
    pub settings: &'a Settings,
    /// The benchclient binary.
    pub benchclient: &'a Path,
}

impl Ctx<'_> {
    fn host(&self) -> &'static str {
        self.target.host(self.net)
    }
}

/// One run of one workload.
#[derive(Debug, Default, Serialize)]
pub struct Measurement {
    /// Named figures (see [`fig`]).
    pub figures: BTreeMap<&'static str, f64>,
    /// CPU spent by the balancer, kernel workers and softirq meanwhile.
    pub cpu: Option<CpuUse>,
    pub wall_s: f64,
    /// Things a reader of the table must know (a limit was hit...).
    pub notes: Vec<String>,
    /// Workload-specific raw figures.
    pub detail: Value,
}

impl Measurement {
    pub fn get(&self, figure: &str) -> Option<f64> {
        self.figures.get(figure).copied().filter(|v| v.is_finite())
    }

    /// Record `cpu`: `key` = balancer + kernel workers + softirq per
    /// `units` (divided by `per`), its three parts, and the machine's load.
    fn set_cpu(&mut self, cpu: CpuUse, key: &'static str, per: f64) {
        let f = |s: f64| if per > 0.0 { s / per } else { f64::NAN };
        self.figures.insert(key, f(cpu.total_s));
        self.figures.insert(fig::CPU_BALANCER, f(cpu.balancer_s));
        self.figures.insert(fig::CPU_KWORKERS, f(cpu.kworkers_s));
        self.figures.insert(fig::CPU_SOFTIRQ, f(cpu.softirq_s));
        if self.wall_s > 0.0 {
            let all = self.wall_s * super::proc::nproc() as f64;
            self.figures
                .insert(fig::MACHINE_BUSY_PCT, 100.0 * cpu.machine_busy_s / all);
        }
        self.cpu = Some(cpu);
    }
}

pub fn run(ctx: &Ctx, w: Workload) -> Result<Measurement> {
    match w {
        Workload::Pgbench8 => pgbench(ctx, 8, false),
        Workload::Pgbench64 => pgbench(ctx, 64, false),
        Workload::PgbenchConnect => pgbench(ctx, 8, true),
        Workload::Iperf1 => iperf(ctx, 1),
        Workload::Iperf4 => iperf(ctx, 4),
        Workload::LatencyPinned => latency(ctx, true),
        Workload::Latency => latency(ctx, false),
        Workload::ShortConns => short_conns(ctx),
        Workload::IdleConns => idle_conns(ctx),
        Workload::SlowReader => slow_reader(ctx),
    }
}

// ---------------------------------------------------------------- pgbench

fn pgbench_cmd(ns: &Netns, args: &[&str]) -> Command {
    let mut c = ns.cmd(Path::new(PG_BIN_DIR).join("pgbench"));
    c.args(args)
        .args(["-U", "postgres", "postgres"])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", "disable");
    c
}

/// pgbench tables (scale 1) on every backend, from the lb namespace.
pub fn pgbench_init(net: &Net) -> Result<()> {
    for b in net.backends() {
        let port = PG_PORT.to_string();
        run_ok(
            &mut pgbench_cmd(net.lb(), &["-i", "-q", "-s", "1", "-h", b, "-p", &port]),
            Duration::from_secs(120),
        )
        .with_context(|| format!("pgbench -i on {b}"))?;
    }
    Ok(())
}

/// `pgbench -n -S -c clients -j 2 -T secs [-C]` against the target's port
/// 5432 (select-only, no vacuum; `-C`: a new connection per transaction).
fn pgbench(ctx: &Ctx, clients: u32, connect: bool) -> Result<Measurement> {
    let secs = ctx.settings.secs;
    let (c, t, port) = (clients.to_string(), secs.to_string(), PG_PORT.to_string());
    let mut args = vec!["-n", "-S", "-c", &c, "-j", "2", "-T", &t];
    if connect {
        args.push("-C");
    }
    args.extend(["-h", ctx.host(), "-p", &port]);
    let mut cmd = pgbench_cmd(ctx.net.client(), &args);
    let probe = CpuProbe::start(ctx.balancer)?;
    let start = Instant::now();
    let out = run_ok(&mut cmd, Duration::from_secs(secs + 60))?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu = probe.finish()?;
    let (tps, failed) = parse_pgbench(&out)?;
    if failed > 0 {
        bail!("pgbench reported {failed} failed transactions:\n{out}");
    }
    let transactions = parse_pgbench_count(&out).unwrap_or(tps * secs as f64);
    let mut m = Measurement {
        wall_s,
        detail: json!({ "clients": clients, "connect_per_transaction": connect }),
        ..Default::default()
    };
    m.figures.insert(fig::TPS, tps);
    m.figures.insert(fig::TRANSACTIONS, transactions);
    // CPU-ms per 1,000 = CPU-s per 10^6.
    m.set_cpu(cpu, fig::CPU_MS_PER_1K, transactions / 1e6);
    // Three PostgreSQL servers on this host do not serve what one does: the
    // figure a balancer that adds nothing would reach is the clients spread
    // over the three, directly.
    if ctx.target == Target::Direct && !connect {
        m.figures
            .insert(fig::TPS_SPREAD, pgbench_spread(ctx, clients)?);
    }
    Ok(m)
}

/// pgbench with `clients` split over the backends (one pgbench each, at
/// once): the summed tps.
fn pgbench_spread(ctx: &Ctx, clients: u32) -> Result<f64> {
    let secs = ctx.settings.secs;
    let backends = ctx.net.backends();
    let n = backends.len() as u32;
    let mut children = Vec::new();
    for (i, host) in backends.iter().enumerate() {
        let c = clients / n + u32::from((i as u32) < clients % n);
        let (c, t, port) = (c.to_string(), secs.to_string(), PG_PORT.to_string());
        let args = [
            "-n", "-S", "-c", &c, "-j", "1", "-T", &t, "-h", host, "-p", &port,
        ];
        let mut cmd = pgbench_cmd(ctx.net.client(), &args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(cmd.spawn().context("spawning pgbench")?);
    }
    let mut total = 0.0;
    for c in children {
        let out = c.wait_with_output().context("waiting for pgbench")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("pgbench (spread) failed:\n{text}");
        }
        total += parse_pgbench(&text)?.0;
    }
    Ok(total)
}

/// `number of transactions actually processed: 123456` (pgbench 15 adds
/// `/123456` with -t).
fn parse_pgbench_count(out: &str) -> Option<f64> {
    let rest = out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed:"))?;
    rest.trim().split('/').next()?.trim().parse().ok()
}

// ---------------------------------------------------------------- iperf3

/// A one-off `iperf3 -s` on the first backend (it exits after one test), so
/// every run starts with a fresh server.
fn iperf_server(net: &Net) -> Result<ChildGuard> {
    let ip = net.backends()[0];
    let mut cmd = net.srv().cmd("iperf3");
    cmd.args(["-s", "-1", "-B", ip, "-p", &IPERF_PORT.to_string()]);
    let log = net.dir().join("iperf3-server.log");
    let mut guard = ChildGuard::spawn("iperf3 server", cmd, &log)?;
    wait_listening(net.srv(), &[hp(ip, IPERF_PORT)], &mut guard)
        .context("iperf3 server did not start listening")?;
    Ok(guard)
}

/// `iperf3 -c host -p 5201 -t secs -P streams -J`: Gbit/s received by the
/// server, and CPU-seconds per GB moved.
fn iperf(ctx: &Ctx, streams: u32) -> Result<Measurement> {
    let secs = ctx.settings.secs;
    let server = iperf_server(ctx.net)?;
    let mut cmd = ctx.net.client().cmd("iperf3");
    cmd.args(["-c", ctx.host(), "-p", &IPERF_PORT.to_string()])
        .args(["-t", &secs.to_string(), "-P", &streams.to_string()])
        .args(["-J", "--connect-timeout", "5000"]);
    let probe = CpuProbe::start(ctx.balancer)?;
    let start = Instant::now();
    let out = run_bounded(&mut cmd, Duration::from_secs(secs + 30))?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu = probe.finish()?;
    server.finish(Duration::from_secs(5));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).map_err(|e| {
        anyhow!(
            "iperf3 ({}) printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            out.status,
            stdout.trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )
    })?;
    let r = parse_iperf(&v)?;
    if !out.status.success() {
        bail!(
            "iperf3 exited with {} although its JSON has no error",
            out.status
        );
    }
    let gb = r.bytes as f64 / 1e9;
    let mut m = Measurement {
        wall_s,
        detail: json!({ "streams": streams, "bytes": r.bytes, "retransmits": r.retransmits }),
        ..Default::default()
    };
    m.figures.insert(fig::GBIT_S, r.bits_per_second / 1e9);
    if gb > 0.0 {
        m.figures
            .insert(fig::MACHINE_CPU_S_PER_GB, cpu.machine_busy_s / gb);
    }
    m.set_cpu(cpu, fig::CPU_S_PER_GB, gb);
    Ok(m)
}

#[derive(Debug, PartialEq)]
struct IperfResult {
    bits_per_second: f64,
    bytes: u64,
    retransmits: Option<u64>,
}

fn parse_iperf(v: &Value) -> Result<IperfResult> {
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        bail!("iperf3 error: {err}");
    }
    let recv = &v["end"]["sum_received"];
    let bits_per_second = recv["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON lacks end.sum_received.bits_per_second"))?;
    let bytes = recv["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("iperf3 JSON lacks end.sum_received.bytes"))?;
    Ok(IperfResult {
        bits_per_second,
        bytes,
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64(),
    })
}

// ---------------------------------------------------------------- sockperf

/// `prog` in `ns`, under `taskset -c 0` when `pinned`.
fn maybe_pinned(ns: &Netns, pinned: bool, prog: &str) -> Command {
    if pinned {
        let mut c = ns.cmd("taskset");
        c.args(["-c", "0", prog]);
        c
    } else {
        ns.cmd(prog)
    }
}

/// `sockperf sr --tcp` on the first backend, for one run.
fn sockperf_server(net: &Net, pinned: bool) -> Result<ChildGuard> {
    let ip = net.backends()[0];
    let mut cmd = maybe_pinned(net.srv(), pinned, "sockperf");
    cmd.args(["sr", "--tcp", "-i", ip, "-p", &SOCKPERF_PORT.to_string()]);
    let log = net.dir().join("sockperf-server.log");
    let mut guard = ChildGuard::spawn("sockperf server", cmd, &log)?;
    wait_listening(net.srv(), &[hp(ip, SOCKPERF_PORT)], &mut guard)
        .context("sockperf server did not start listening")?;
    Ok(guard)
}

/// `sockperf pp --tcp -m 64 --full-rtt`: round-trip percentiles of one
/// connection. `pinned`: client, server and the balancer (every thread) on
/// CPU 0, so the figure is the CPU cost of one round trip without
/// cross-CPU wake-ups.
fn latency(ctx: &Ctx, pinned: bool) -> Result<Measurement> {
    let secs = ctx.settings.secs;
    let _server = sockperf_server(ctx.net, pinned)?;
    let _pin = match (pinned, ctx.balancer) {
        (true, Some(pid)) => Some(pin_to_cpu0(pid)?),
        _ => None,
    };
    let mut cmd = maybe_pinned(ctx.net.client(), pinned, "sockperf");
    cmd.args(["pp", "--tcp", "-i", ctx.host()])
        .args(["-p", &SOCKPERF_PORT.to_string(), "-m", "64"])
        .args(["-t", &secs.to_string(), "--full-rtt"]);
    let start = Instant::now();
    let out = run_ok(&mut cmd, Duration::from_secs(secs + 30))?;
    let wall_s = start.elapsed().as_secs_f64();
    let s = parse_sockperf(&out)?;
    let mut m = Measurement {
        wall_s,
        detail: json!({
            "pinned": pinned,
            "observations": s.observations,
            "max_us": s.max,
            "percentiles_us": s.percentiles,
        }),
        ..Default::default()
    };
    m.figures.insert(fig::P50_US, s.p50);
    m.figures.insert(fig::P99_US, s.p99);
    m.figures.insert(fig::AVG_US, s.avg);
    Ok(m)
}

#[derive(Debug, PartialEq)]
struct Sockperf {
    avg: f64,
    p50: f64,
    p99: f64,
    max: Option<f64>,
    observations: Option<u64>,
    /// Every `percentile P = V` line: P -> V.
    percentiles: BTreeMap<String, f64>,
}

/// sockperf's summary: `avg-rtt=63.845 (std-dev=...)`, `percentile 50.000 =
/// 62.042`, `<MAX> observation = ...`, `Total 8625 observations` (lines may
/// carry ANSI colour codes).
fn parse_sockperf(out: &str) -> Result<Sockperf> {
    let after_eq = |line: &str| -> Option<f64> {
        line.rsplit('=')
            .next()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let percentile = |p: &str| -> Option<f64> {
        out.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(after_eq)
    };
    let avg = out.lines().find_map(|l| {
        let rest = &l[l.find("avg-rtt=")? + "avg-rtt=".len()..];
        rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?
            .parse()
            .ok()
    });
    let observations = out.lines().find_map(|l| {
        let i = l.find("Total ")?;
        l[i + 6..].split_whitespace().next()?.parse().ok()
    });
    let percentiles: BTreeMap<String, f64> = out
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("percentile ")? + "percentile ".len()..];
            let (p, _) = rest.split_once('=')?;
            Some((p.trim().to_string(), after_eq(l)?))
        })
        .collect();
    let (Some(p50), Some(p99), Some(avg)) = (percentile("50.000"), percentile("99.000"), avg)
    else {
        bail!("sockperf printed no avg-rtt / percentile 50 / 99 lines:\n{out}");
    };
    Ok(Sockperf {
        avg,
        p50,
        p99,
        max: out
            .lines()
            .find(|l| l.contains("<MAX> observation"))
            .and_then(after_eq),
        observations,
        percentiles,
    })
}

// ---------------------------------------------------------------- benchclient

/// benchclient's server on every backend address, port 7000, for the whole
/// benchmark.
pub fn echo_server(net: &Net, benchclient: &Path) -> Result<ChildGuard> {
    let mut cmd = net.srv().cmd(benchclient);
    cmd.arg("server");
    let addrs: Vec<String> = net.backends().iter().map(|b| hp(b, ECHO_PORT)).collect();
    for a in &addrs {
        cmd.args(["--listen", a]);
    }
    cmd.args(["--max-secs", "7200"]);
    let log = net.dir().join("benchclient-server.log");
    let mut guard = ChildGuard::spawn("benchclient server", cmd, &log)?;
    wait_listening(net.srv(), &addrs, &mut guard)
        .context("benchclient server did not start listening")?;
    Ok(guard)
}

fn benchclient(ctx: &Ctx, mode: &str) -> Command {
    let mut cmd = ctx.net.client().cmd(ctx.benchclient);
    cmd.args([mode, "--addr", &hp(ctx.host(), ECHO_PORT)]);
    cmd
}

fn percentile(v: &Value, key: &str, p: &str) -> Result<f64> {
    v[key][p]
        .as_f64()
        .ok_or_else(|| anyhow!("benchclient printed no {key}.{p}: {v}"))
}

/// Short connections: `short_threads` threads, each connecting, sending
/// 64 B, reading the 64 B reply and closing, for `secs`. Setup time = from
/// connect() to the reply.
fn short_conns(ctx: &Ctx) -> Result<Measurement> {
    let secs = ctx.settings.secs;
    let mut cmd = benchclient(ctx, "short");
    cmd.args(["--threads", &ctx.settings.short_threads.to_string()])
        .args(["--secs", &secs.to_string()]);
    let probe = CpuProbe::start(ctx.balancer)?;
    let start = Instant::now();
    let out = run_ok(&mut cmd, Duration::from_secs(secs + 60))?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu = probe.finish()?;
    let v: Value = serde_json::from_str(out.lines().last().unwrap_or(""))
        .with_context(|| format!("benchclient short printed no JSON: {out}"))?;
    let conns = v["conns"].as_f64().unwrap_or(0.0);
    let errors = v["errors"].as_f64().unwrap_or(0.0);
    if conns == 0.0 || errors > conns / 100.0 {
        bail!("short connections: {conns} ok, {errors} failed: {v}");
    }
    let mut m = Measurement {
        wall_s,
        detail: v.clone(),
        ..Default::default()
    };
    if errors > 0.0 {
        m.notes.push(format!(
            "{errors} of {} short connections failed (first: {})",
            conns + errors,
            v["first_error"]
        ));
    }
    m.figures.insert(
        fig::CONNS_PER_S,
        v["conns_per_s"].as_f64().unwrap_or(f64::NAN),
    );
    m.figures
        .insert(fig::SETUP_P50_US, percentile(&v, "txn_us", "p50")?);
    m.figures
        .insert(fig::SETUP_P99_US, percentile(&v, "txn_us", "p99")?);
    m.figures
        .insert(fig::CONNECT_P99_US, percentile(&v, "connect_us", "p99")?);
    m.set_cpu(cpu, fig::CPU_MS_PER_1K, conns / 1e6);
    Ok(m)
}

/// Wait (30 s at most) until no backend connection on port 7000 is left,
/// so the next workload starts from a clean slate.
fn wait_drained(net: &Net) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let filter = format!("( sport = :{ECHO_PORT} )");
    loop {
        let out = run_ok(
            net.srv().cmd("ss").args([
                "-Htn",
                "state",
                "connected",
                "exclude",
                "time-wait",
                &filter,
            ]),
            Duration::from_secs(10),
        )?;
        let left = out.lines().filter(|l| !l.trim().is_empty()).count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{left} backend connections still open 30 s after the clients closed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Balancer RSS and kernel slab per established idle connection: open
/// `idle_conns` connections (one 64 B exchange each, then idle), measure,
/// close.
fn idle_conns(ctx: &Ctx) -> Result<Measurement> {
    let wanted = ctx.settings.idle_conns;
    let before = MemSample::take(ctx.balancer)?;
    let mut cmd = benchclient(ctx, "hold");
    cmd.args(["--conns", &wanted.to_string(), "--hold-secs", "120"]);
    let start = Instant::now();
    let mut client = LineChild::spawn("benchclient hold", cmd)?;
    let ready = client.wait_event("ready", Duration::from_secs(120))?;
    let established = ready["established"].as_u64().unwrap_or(0);
    // Let the balancer finish its per-connection work (lb splices each
    // pair from a manager thread), then read.
    std::thread::sleep(Duration::from_millis(1500));
    let after = MemSample::take(ctx.balancer)?;
    client.close_stdin();
    client.wait_event("done", Duration::from_secs(60))?;
    drop(client);
    wait_drained(ctx.net)?;
    let g = growth(&before, &after);

    let mut m = Measurement {
        wall_s: start.elapsed().as_secs_f64(),
        detail: json!({ "client": ready, "before_kib": before, "after_kib": after, "growth_kib": g }),
        ..Default::default()
    };
    if (established as usize) < wanted {
        m.notes.push(format!(
            "{}: only {established} of {wanted} idle connections established: {} \
             (client open-files limit {})",
            ctx.target.label(),
            ready["error"].as_str().unwrap_or("no error reported"),
            ready["open_files_limit"]
        ));
    }
    if established == 0 {
        bail!("no idle connection established: {ready}");
    }
    let per_conn = |kib: i64| kib as f64 * 1024.0 / established as f64;
    m.figures.insert(fig::ESTABLISHED, established as f64);
    if let Some(rss) = g.balancer_rss {
        m.figures.insert(fig::RSS_B_PER_CONN, per_conn(rss));
    }
    m.figures.insert(fig::SLAB_B_PER_CONN, per_conn(g.slab));
    Ok(m)
}

/// Slow readers: `slow_conns` connections read 1 MiB of a backend's stream,
/// then stop reading for `slow_secs` while the backend keeps writing. Peak
/// growth of the balancer's RSS, TCP memory and kernel memory meanwhile.
fn slow_reader(ctx: &Ctx) -> Result<Measurement> {
    let before = MemSample::take(ctx.balancer)?;
    let mut cmd = benchclient(ctx, "slow");
    cmd.args(["--conns", &ctx.settings.slow_conns.to_string()])
        .args(["--pause-secs", "120"]);
    let start = Instant::now();
    let mut client = LineChild::spawn("benchclient slow", cmd)?;
    client.wait_event("ready", Duration::from_secs(60))?;
    let mut peak = before;
    let mut trace = Vec::new();
    let until = Instant::now() + Duration::from_secs(ctx.settings.slow_secs);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        let s = MemSample::take(ctx.balancer)?;
        peak = peak.max(&s);
        trace.push(growth(&before, &s));
    }
    client.close_stdin();
    client.wait_event("done", Duration::from_secs(30))?;
    drop(client);
    wait_drained(ctx.net)?;
    let g = growth(&before, &peak);
    let mib = |kib: i64| kib as f64 / 1024.0;
    let mut m = Measurement {
        wall_s: start.elapsed().as_secs_f64(),
        detail: json!({
            "conns": ctx.settings.slow_conns,
            "pause_s": ctx.settings.slow_secs,
            "peak_growth_kib": g,
            "growth_trace_kib": trace,
        }),
        ..Default::default()
    };
    if let Some(rss) = g.balancer_rss {
        m.figures.insert(fig::RSS_GROWTH_MIB, mib(rss));
    }
    m.figures.insert(fig::TCP_MEM_GROWTH_MIB, mib(g.tcp_mem));
    m.figures.insert(fig::KERNEL_GROWTH_MIB, mib(g.kernel));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn parses_iperf_json() {
        let v = json!({"end": {"sum_sent": {"bytes": 10, "retransmits": 3},
                               "sum_received": {"bytes": 1_250_000_000u64, "bits_per_second": 1.0e10}}});
        let r = super::parse_iperf(&v).unwrap();
        assert_eq!(r.bytes, 1_250_000_000);
        assert_eq!(r.retransmits, Some(3));
        assert!((r.bits_per_second - 1.0e10).abs() < 1.0);
        let e = super::parse_iperf(&json!({"error": "unable to connect"})).unwrap_err();
        assert!(e.to_string().contains("unable to connect"));
    }

    #[test]
    fn parses_sockperf_summary() {
        let out = "sockperf: \x1b[2;35m====> avg-rtt=63.845 (std-dev=47.738)\x1b[0m\n\
                   sockperf: \x1b[2;35mTotal 8625 observations\x1b[0m; each percentile contains 86.25 observations\n\
                   sockperf: ---> <MAX> observation = 3912.708\n\
                   sockperf: ---> percentile 99.000 =  107.229\n\
                   sockperf: ---> percentile 50.000 =   62.042\n";
        let s = super::parse_sockperf(out).unwrap();
        assert_eq!(s.avg, 63.845);
        assert_eq!(s.p50, 62.042);
        assert_eq!(s.p99, 107.229);
        assert_eq!(s.max, Some(3912.708));
        assert_eq!(s.observations, Some(8625));
        assert_eq!(s.percentiles.len(), 2);
        assert_eq!(s.percentiles["99.000"], 107.229);
        assert!(super::parse_sockperf("nothing").is_err());
    }

    #[test]
    fn parses_pgbench_count() {
        let out = "number of transactions actually processed: 123456\nlatency average = 1 ms\n";
        assert_eq!(super::parse_pgbench_count(out), Some(123456.0));
        let out = "number of transactions actually processed: 800/800\n";
        assert_eq!(super::parse_pgbench_count(out), Some(800.0));
    }
}
