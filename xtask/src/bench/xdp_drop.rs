//! `cargo xtask bench --xdp-drop`: how cheaply a denied source's packets die.
//!
//! One core (CPU 0) runs trafgen, which sends spoofed SYNs from a denied /25
//! out of the client's veth; on a veth the receiving side (XDP, or the
//! netdev ingress hook and the stack) runs in the sender's softirq on the same
//! CPU, so packets/s is what one core sustains sending and dropping, and CPU 0's
//! ticks split the cost. Variants, interleaved per repetition:
//! - `xdp`: lb with `xdp-interface eth-c` and the source denied by
//!   `tcp-request connection reject`: dropped by `lb_xdp` (native mode);
//! - `xdp-skb`: the same in generic (skb) mode;
//! - `nftables`: lb `--no-xdp`, the same source dropped by an nftables rule at
//!   the earliest hook (netdev ingress on eth-c);
//! - `none`: lb `--no-xdp`, no filter: the kernel answers every SYN (the
//!   daemon would close a denied client at accept, but spoofed clients never
//!   complete the handshake).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use lb_tests::{flood, Topology};

const CFG: &str = "\
global
    xdp-interface eth-c native
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 10.210.1.1:5432
    tcp-request connection reject if { src 10.210.1.128/25 }
    default_backend b
backend b
    server s 10.210.2.11:5432
";

const NFT: &str = "table netdev lbbench {
    chain ingress {
        type filter hook ingress device \"eth-c\" priority -500; policy accept;
        ip saddr 10.210.1.128/25 counter drop
    }
}
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Xdp,
    XdpSkb,
    Nftables,
    None,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Xdp => "xdp",
            Variant::XdpSkb => "xdp-skb",
            Variant::Nftables => "nftables",
            Variant::None => "none",
        }
    }
}

struct Sample {
    pps: f64,
    /// CPU 0 busy ticks (USER_HZ) per million packets, and its softirq part.
    busy_per_m: f64,
    softirq_per_m: f64,
    dropped: u64,
}

/// CPU 0's (busy, softirq) ticks from /proc/stat.
pub(super) fn cpu0() -> Result<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let l = s
        .lines()
        .find(|l| l.starts_with("cpu0 "))
        .context("no cpu0 in /proc/stat")?;
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, v.get(6).copied().unwrap_or(0)))
}

fn nft_dropped(topo: &Topology) -> Result<u64> {
    let out = topo
        .lb
        .run("nft", &["list", "table", "netdev", "lbbench"])?;
    let n = out
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter in {out}"))?;
    Ok(n)
}

fn xdp_dropped(lb: &lb_tests::Lb) -> Result<u64> {
    let st = lb.xdp_status()?;
    Ok(st["frontends"][0]["acl_drops"].as_u64().unwrap_or(0))
}

fn one(topo: &Topology, v: Variant, conf: &std::path::Path, packets: u64) -> Result<Sample> {
    let xdp = matches!(v, Variant::Xdp | Variant::XdpSkb);
    let args: &[&str] = if xdp { &[] } else { &["--no-xdp"] };
    let cfg = if v == Variant::XdpSkb {
        CFG.replace("xdp-interface eth-c native", "xdp-interface eth-c skb")
    } else {
        CFG.to_string()
    };
    let lb = topo.start_lb(&cfg, args)?;
    if v == Variant::Nftables {
        let f = topo.write_cfg("drop.nft", NFT)?;
        topo.lb
            .run("nft", &["-f", &f.to_string_lossy()])
            .context("loading the nftables drop rule (Debian package nftables)")?;
    }
    let before = if xdp { xdp_dropped(&lb)? } else { 0 };
    let (b0, s0) = cpu0()?;
    let took = flood::trafgen(&topo.client, "eth0", conf, packets, Some(0))?;
    let (b1, s1) = cpu0()?;
    // Let queued packets drain before reading the counters.
    std::thread::sleep(Duration::from_millis(200));
    let dropped = match v {
        Variant::Xdp | Variant::XdpSkb => xdp_dropped(&lb)? - before,
        Variant::Nftables => {
            let n = nft_dropped(topo)?;
            topo.lb
                .run("nft", &["delete", "table", "netdev", "lbbench"])?;
            n
        }
        Variant::None => 0,
    };
    lb.stop()?;
    let m = packets as f64 / 1e6;
    Ok(Sample {
        pps: packets as f64 / took.as_secs_f64(),
        busy_per_m: (b1 - b0) as f64 / m,
        softirq_per_m: (s1 - s0) as f64 / m,
        dropped,
    })
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(repeat: u32, packets: u64) -> Result<()> {
    let topo = Topology::new("benchxdp")?;
    let dst = flood::mac_of(&topo.lb, "eth-c")?;
    let src = flood::mac_of(&topo.client, "eth0")?;
    let text = flood::syn_cfg(&dst, &src, [10, 210, 1], (128, 254), [10, 210, 1, 1], 5432);
    let conf = topo.write_cfg("syn.trafgen", &text)?;
    let variants = [
        Variant::Xdp,
        Variant::XdpSkb,
        Variant::Nftables,
        Variant::None,
    ];
    let mut samples: Vec<(Variant, Sample)> = Vec::new();
    for rep in 0..repeat {
        for v in variants {
            let s = one(&topo, v, &conf, packets)?;
            println!(
                "[bench] xdp-drop rep {rep} {:<9} {:>10.0} pkt/s  cpu0 {:>6.1} ticks/Mpkt \
                 (softirq {:>6.1})  dropped {}",
                v.name(),
                s.pps,
                s.busy_per_m,
                s.softirq_per_m,
                s.dropped
            );
            if v != Variant::None && s.dropped < packets / 2 {
                bail!(
                    "{}: only {} of {packets} denied packets counted as dropped",
                    v.name(),
                    s.dropped
                );
            }
            samples.push((v, s));
        }
    }
    println!(
        "\n### Denied source: {packets} spoofed SYNs, one core (median of {repeat})\n\n\
         | filter | packets/s on one core | CPU 0 ticks per Mpkt | of which softirq | dropped (last run) |\n\
         |---|---|---|---|---|"
    );
    for v in variants {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|(w, _)| *w == v)
            .map(|(_, s)| s)
            .collect();
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {} |",
            v.name(),
            median(mine.iter().map(|s| s.pps).collect()),
            median(mine.iter().map(|s| s.busy_per_m).collect()),
            median(mine.iter().map(|s| s.softirq_per_m).collect()),
            mine.last().map_or(0, |s| s.dropped)
        );
    }
    println!(
        "\nticks are USER_HZ (10 ms); trafgen's own cost is in every row, so the \
         differences are the drop paths. Other load on CPU 0 adds noise."
    );
    Ok(())
}
