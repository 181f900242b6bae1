//! `cargo xtask bench --syn-cookies`: SYN cookies under a spoofed SYN flood,
//! made by lb's XDP program (`xdp-syn-cookies on`) or by the kernel (`off`).
//!
//! trafgen on CPU 0 sends spoofed SYNs from an attacker namespace on a link of
//! its own (`eth-a`), which is also the lb's route to the spoofed range, so the
//! SYN-ACKs of both variants go back there, as to an uplink router. On a veth
//! the receiving side runs in the sender's softirq on the same CPU, so the
//! packets/s trafgen reaches and CPU 0's ticks per million SYNs are the cost of
//! answering the flood. Meanwhile a legit client connects every 20 ms from its
//! own link: its handshake times and failures are the service under flood.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lb_tests::flood::{self, Attacker};
use lb_tests::Topology;

use super::xdp_drop::{cpu0, median};

const CFG: &str = "\
global
    xdp-interface eth-c native
    xdp-interface eth-a native
    xdp-syn-cookies on
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 10.210.1.1:5432
    default_backend b
backend b
    server s 10.210.2.11:5432
";

struct Sample {
    pps: f64,
    busy_per_m: f64,
    softirq_per_m: f64,
    /// SYNs answered with a cookie (by XDP, or by the kernel).
    cookies: u64,
    legit_ok: u32,
    legit_total: u32,
    /// Handshake times of the legit client's successful connects.
    connect_ms: Vec<f64>,
}

/// TcpExtSyncookiesSent in the lb namespace.
fn kernel_cookies(topo: &Topology) -> Result<u64> {
    let out = topo
        .lb
        .run("nstat", &["-az", "--json", "TcpExtSyncookiesSent"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("nstat --json")?;
    Ok(v["kernel"]["TcpExtSyncookiesSent"].as_u64().unwrap_or(0))
}

fn xdp_cookies(lb: &lb_tests::Lb) -> Result<u64> {
    let st = lb.xdp_status()?;
    Ok(st["frontends"][0]["syn_cookies"].as_u64().unwrap_or(0))
}

fn one(
    topo: &Topology,
    atk: &Attacker,
    xdp: bool,
    conf: &std::path::Path,
    packets: u64,
) -> Result<Sample> {
    let cfg = if xdp {
        CFG.to_string()
    } else {
        CFG.replace("xdp-syn-cookies on", "xdp-syn-cookies off")
    };
    let lb = topo.start_lb(&cfg, &[])?;
    let count = |lb: &lb_tests::Lb| {
        if xdp {
            xdp_cookies(lb)
        } else {
            kernel_cookies(topo)
        }
    };
    let c0 = count(&lb)?;
    let flooding = AtomicBool::new(true);
    let (took, cpu, legit) = std::thread::scope(|s| -> Result<_> {
        let legit = s.spawn(|| {
            topo.in_client(|| {
                let dst: SocketAddr = "10.210.1.1:5432".parse().expect("address");
                let (mut ok, mut total, mut ms) = (0u32, 0u32, Vec::new());
                while flooding.load(Ordering::Relaxed) && total < 10_000 {
                    let t = Instant::now();
                    total += 1;
                    if TcpStream::connect_timeout(&dst, Duration::from_secs(3)).is_ok() {
                        ok += 1;
                        ms.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (ok, total, ms)
            })
        });
        let (b0, s0) = cpu0()?;
        let took = flood::trafgen(&atk.ns, "eth0", conf, packets, Some(0));
        let (b1, s1) = cpu0()?;
        flooding.store(false, Ordering::Relaxed);
        let legit = legit.join().expect("legit client thread");
        Ok((took?, (b1 - b0, s1 - s0), legit))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let cookies = count(&lb)? - c0;
    lb.stop()?;
    let m = packets as f64 / 1e6;
    Ok(Sample {
        pps: packets as f64 / took.as_secs_f64(),
        busy_per_m: cpu.0 as f64 / m,
        softirq_per_m: cpu.1 as f64 / m,
        cookies,
        legit_ok: legit.0,
        legit_total: legit.1,
        connect_ms: legit.2,
    })
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn run(repeat: u32, packets: u64) -> Result<()> {
    let topo = Topology::new("benchcookie")?;
    let atk = Attacker::new(&topo)?;
    // The far ends of the veths must run XDP to take frames sent back by XDP_TX.
    let _rx = [
        flood::xdp_receiver(&topo.client, "eth0")?,
        flood::xdp_receiver(&atk.ns, "eth0")?,
    ];
    topo.lb
        .run("sysctl", &["-qw", "net.ipv4.tcp_syncookies=1"])?;
    let conf = topo.write_cfg("syn.trafgen", &atk.syn_cfg(&topo, [10, 210, 1, 1], 5432)?)?;
    let variants = [(true, "xdp"), (false, "kernel")];
    let mut samples: Vec<(bool, Sample)> = Vec::new();
    for rep in 0..repeat {
        for (xdp, name) in variants {
            let s = one(&topo, &atk, xdp, &conf, packets)?;
            println!(
                "[bench] syn-cookies rep {rep} {name:<6} {:>9.0} SYN/s  cpu0 {:>6.1} ticks/M \
                 (softirq {:>6.1})  cookies {}  legit {}/{}  connect p50 {:.2} ms p99 {:.2} ms",
                s.pps,
                s.busy_per_m,
                s.softirq_per_m,
                s.cookies,
                s.legit_ok,
                s.legit_total,
                pct(&s.connect_ms, 0.5),
                pct(&s.connect_ms, 0.99)
            );
            if s.cookies < packets / 2 {
                bail!(
                    "{name}: only {} of {packets} flood SYNs answered with a cookie",
                    s.cookies
                );
            }
            samples.push((xdp, s));
        }
    }
    println!(
        "\n### SYN cookies under a spoofed flood: {packets} SYNs, one core (median of {repeat})\n\n\
         | cookies by | SYNs/s on one core | CPU 0 ticks per M SYNs | of which softirq | \
         legit connects ok | legit connect p50 / p99 |\n|---|---|---|---|---|---|"
    );
    for (xdp, name) in variants {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|(w, _)| *w == xdp)
            .map(|(_, s)| s)
            .collect();
        let all_ms: Vec<f64> = mine
            .iter()
            .flat_map(|s| s.connect_ms.iter().copied())
            .collect();
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {}/{} | {:.2} / {:.2} ms |",
            median(mine.iter().map(|s| s.pps).collect()),
            median(mine.iter().map(|s| s.busy_per_m).collect()),
            median(mine.iter().map(|s| s.softirq_per_m).collect()),
            mine.iter().map(|s| s.legit_ok).sum::<u32>(),
            mine.iter().map(|s| s.legit_total).sum::<u32>(),
            pct(&all_ms, 0.5),
            pct(&all_ms, 0.99)
        );
    }
    println!(
        "\nticks are USER_HZ (10 ms); trafgen's own cost is in both rows, so the \
         difference is the cost of answering the flood."
    );
    Ok(())
}
