//! The workloads, one function each: pgbench -S and iperf3 (1 and 4
//! streams), run from the client namespace against a target's address.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lb_tests::postgres::{parse_pgbench, PG_BIN_DIR};
use lb_tests::{hp, Netns, Topology, BACKENDS_V4};
use serde::Serialize;
use serde_json::{json, Value};

use super::proc::{cpu_busy_secs, run_bounded, run_ok, wait_listening, ChildGuard};
use super::targets::{IPERF_PORT, IPERF_SERVER, PG_PORT};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    PgbenchSelect,
    #[serde(rename = "iperf3-1-stream")]
    Iperf1,
    #[serde(rename = "iperf3-4-streams")]
    Iperf4,
}

impl Workload {
    /// Order of the runs against each target.
    pub const ALL: [Workload; 3] = [Workload::PgbenchSelect, Workload::Iperf1, Workload::Iperf4];

    pub fn label(self) -> &'static str {
        match self {
            Workload::PgbenchSelect => "pgbench -S",
            Workload::Iperf1 => "iperf3 1 stream",
            Workload::Iperf4 => "iperf3 -P 4",
        }
    }
}

/// Run lengths in seconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Durations {
    pub pgbench_secs: u64,
    pub iperf_secs: u64,
}

/// One run of one workload.
#[derive(Debug, Serialize)]
pub struct Measurement {
    /// tps (pgbench) or Gbit/s received (iperf3).
    pub value: f64,
    /// All CPUs' busy seconds during the client run.
    pub cpu_busy_s: f64,
    /// Payload bytes received (iperf3).
    pub bytes: Option<u64>,
    /// CPU-seconds per 10^9 payload bytes (iperf3).
    pub cpu_s_per_gb: Option<f64>,
    pub wall_s: f64,
    /// Workload-specific raw figures (failed transactions, retransmits...).
    pub detail: Value,
}

pub fn run(topo: &Topology, w: Workload, host: &str, d: Durations) -> Result<Measurement> {
    match w {
        Workload::PgbenchSelect => pgbench_select(topo, host, d.pgbench_secs),
        Workload::Iperf1 => iperf(topo, host, 1, d.iperf_secs),
        Workload::Iperf4 => iperf(topo, host, 4, d.iperf_secs),
    }
}

fn pgbench_cmd(ns: &Netns, args: &[&str]) -> Command {
    let mut c = ns.cmd(Path::new(PG_BIN_DIR).join("pgbench"));
    c.args(args)
        .args(["-U", "postgres", "postgres"])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", "disable");
    c
}

/// pgbench tables (scale 1) on every backend, from the lb namespace.
pub fn pgbench_init(topo: &Topology) -> Result<()> {
    for b in BACKENDS_V4 {
        let port = PG_PORT.to_string();
        run_ok(
            &mut pgbench_cmd(&topo.lb, &["-i", "-q", "-s", "1", "-h", b, "-p", &port]),
            Duration::from_secs(120),
        )
        .with_context(|| format!("pgbench -i on {b}"))?;
    }
    Ok(())
}

/// `pgbench -n -S -c 8 -j 2 -T secs` against `host`:5432 (select-only, no
/// vacuum beforehand).
pub fn pgbench_select(topo: &Topology, host: &str, secs: u64) -> Result<Measurement> {
    let (port, t) = (PG_PORT.to_string(), secs.to_string());
    let mut cmd = pgbench_cmd(
        &topo.client,
        &[
            "-n", "-S", "-c", "8", "-j", "2", "-T", &t, "-h", host, "-p", &port,
        ],
    );
    let cpu0 = cpu_busy_secs()?;
    let start = Instant::now();
    let out = run_ok(&mut cmd, Duration::from_secs(secs + 60))?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_busy_s = cpu_busy_secs()? - cpu0;
    let (tps, failed) = parse_pgbench(&out)?;
    if failed > 0 {
        bail!("pgbench reported {failed} failed transactions:\n{out}");
    }
    Ok(Measurement {
        value: tps,
        cpu_busy_s,
        bytes: None,
        cpu_s_per_gb: None,
        wall_s,
        detail: json!({ "failed_transactions": failed }),
    })
}

/// A one-off `iperf3 -s` on the first backend (it exits after one test), so
/// every run starts with a fresh server.
fn iperf_server(topo: &Topology) -> Result<ChildGuard> {
    let mut cmd = topo.srv.cmd("iperf3");
    cmd.args([
        "-s",
        "-1",
        "-B",
        IPERF_SERVER,
        "-p",
        &IPERF_PORT.to_string(),
    ]);
    let log = topo.dir.path().join("iperf3-server.log");
    let mut guard = ChildGuard::spawn("iperf3 server", cmd, &log)?;
    wait_listening(&topo.srv, &[hp(IPERF_SERVER, IPERF_PORT)], &mut guard)
        .context("iperf3 server did not start listening")?;
    Ok(guard)
}

/// `iperf3 -c host -p 5201 -t secs -P streams -J`: Gbit/s received by the
/// server, and machine-wide CPU-seconds per GB moved.
pub fn iperf(topo: &Topology, host: &str, streams: u32, secs: u64) -> Result<Measurement> {
    let server = iperf_server(topo)?;
    let mut cmd = topo.client.cmd("iperf3");
    cmd.args(["-c", host, "-p", &IPERF_PORT.to_string()])
        .args(["-t", &secs.to_string(), "-P", &streams.to_string()])
        .args(["-J", "--connect-timeout", "5000"]);
    let cpu0 = cpu_busy_secs()?;
    let start = Instant::now();
    let out = run_bounded(&mut cmd, Duration::from_secs(secs + 30))?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_busy_s = cpu_busy_secs()? - cpu0;
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
    Ok(Measurement {
        value: r.bits_per_second / 1e9,
        cpu_busy_s,
        bytes: Some(r.bytes),
        cpu_s_per_gb: (gb > 0.0).then(|| cpu_busy_s / gb),
        wall_s,
        detail: json!({ "streams": streams, "retransmits": r.retransmits }),
    })
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
}
