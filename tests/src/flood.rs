//! Bounded spoofed SYN floods with trafgen (Debian package netsniff-ng), for
//! the XDP tests and the XDP drop benchmark. Frames only go out of a veth of a
//! harness namespace, to an address inside the harness.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::topology::Topology;

/// The /24 an [`Attacker`] spoofs sources from (`.128`-`.254`).
pub const ATTACKER_NET: [u8; 3] = [10, 210, 99];

/// A flood source on a link of its own (`eth-a` on the lb side,
/// 10.210.9.0/24) that is also the lb's route to the spoofed sources
/// (10.210.99.0/24), as an uplink router would be: the SYN-ACKs answering the
/// flood, from the kernel or from XDP, go back there and not onto the legit
/// client's link.
pub struct Attacker {
    pub ns: Netns,
}

impl Attacker {
    pub fn new(topo: &Topology) -> Result<Self> {
        let ns = Netns::new("atk")?;
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth-a",
            "netns",
            topo.lb.name(),
        ])?;
        ns.ip(&["addr", "add", "10.210.9.2/24", "dev", "eth0"])?;
        topo.lb
            .ip(&["addr", "add", "10.210.9.1/24", "dev", "eth-a"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        topo.lb.ip(&["link", "set", "eth-a", "up"])?;
        topo.lb
            .ip(&["route", "add", "10.210.99.0/24", "via", "10.210.9.2"])?;
        Ok(Self { ns })
    }

    /// trafgen packet config: SYNs from the spoofed range to `dst:dport` of the lb.
    pub fn syn_cfg(&self, topo: &Topology, dst: [u8; 4], dport: u16) -> Result<String> {
        let dst_mac = mac_of(&topo.lb, "eth-a")?;
        let src_mac = mac_of(&self.ns, "eth0")?;
        Ok(syn_cfg(
            &dst_mac,
            &src_mac,
            ATTACKER_NET,
            (128, 254),
            dst,
            dport,
        ))
    }
}

/// The MAC address of `dev` in `ns`.
pub fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-o", "link", "show", "dev", dev])?;
    let s = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .with_context(|| format!("no MAC in {out}"))?;
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16)?;
    }
    Ok(m)
}

/// A trafgen packet: TCP SYNs to `dst:dport` from `src_net.lo`..`src_net.hi`
/// (the last byte counts up per packet), random source port and sequence.
pub fn syn_cfg(
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
    src_net: [u8; 3],
    lo_hi: (u8, u8),
    dst: [u8; 4],
    dport: u16,
) -> String {
    let mac = |m: &[u8; 6]| {
        m.iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\n  {}, {},\n  0x08, 0x00,\n  \
         0x45, 0x00, const16(40), drnd(2), 0x40, 0x00, 64, 6, csumip(14, 33),\n  \
         {}, {}, {}, dinc({}, {}),\n  {}, {}, {}, {},\n  \
         drnd(2), const16({dport}), drnd(4), const32(0), 0x50, 0x02, const16(65535), \
         csumtcp(14, 34), const16(0)\n}}\n",
        mac(dst_mac),
        mac(src_mac),
        src_net[0],
        src_net[1],
        src_net[2],
        lo_hi.0,
        lo_hi.1,
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    )
}

/// Frames per trafgen run: a run that trips over a full socket buffer is
/// repeated, so it should not be long.
const CHUNK: u64 = 50_000;

/// Sends about `packets` frames of `conf` out of `dev` in `ns` from one
/// process (pinned to `cpu` when given), in runs of CHUNK; returns how long it
/// took. trafgen gives up on a run when its TX ring flush meets EAGAIN (it runs
/// with the default socket buffer: `--no-sock-mem` keeps it from raising the
/// host-wide wmem sysctls); such a run is repeated, so a few frames more than
/// asked may go out.
pub fn trafgen(
    ns: &Netns,
    dev: &str,
    conf: &Path,
    packets: u64,
    cpu: Option<u32>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut left = packets;
    while left > 0 {
        let n = left.min(CHUNK);
        let mut tries = 0;
        loop {
            match trafgen_once(ns, dev, conf, n, cpu)? {
                Ok(()) => break,
                Err(e) if e.contains("Resource temporarily unavailable") && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => anyhow::bail!("trafgen failed: {e}"),
            }
        }
        left -= n;
    }
    Ok(start.elapsed())
}

/// One trafgen run: Ok(Err(stderr)) when trafgen itself failed.
fn trafgen_once(
    ns: &Netns,
    dev: &str,
    conf: &Path,
    packets: u64,
    cpu: Option<u32>,
) -> Result<std::result::Result<(), String>> {
    let mut cmd = match cpu {
        Some(c) => {
            let mut c2 = ns.cmd("taskset");
            c2.args(["-c", &c.to_string(), "trafgen"]);
            c2
        }
        None => ns.cmd("trafgen"),
    };
    // Leave the host's socket memory sysctls and IRQ affinity alone.
    cmd.args(["--dev", dev, "--conf"])
        .arg(conf)
        .args([
            "--num",
            &packets.to_string(),
            "--cpus",
            "1",
            "--no-sock-mem",
            "--notouch-irq",
            "--no-cpu-stats",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .context("running trafgen (Debian package netsniff-ng)")?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// An XDP program on `dev` in `ns`, kept while the value lives, so that this
/// end of a veth takes the frames its peer's XDP program sends back
/// (XDP_TX): the veth driver kicks a peer's receive queue for such frames only
/// when the peer runs XDP itself, and otherwise leaves them queued. It is
/// `lb_xdp` with no frontend there, so it passes everything.
pub fn xdp_receiver(ns: &Netns, dev: &str) -> Result<lb_user::kernel::harness::Standalone> {
    const CFG: &str = "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 5s\n    \
                       timeout server 5s\nfrontend none\n    bind 127.0.0.1:1\n    \
                       default_backend b\nbackend b\n    server s 127.0.0.1:2\n";
    let cfg = lb_user::config::parse_str(CFG, Path::new("receiver.cfg"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sa = lb_user::kernel::harness::Standalone::new(&cfg)
        .map_err(|e| anyhow::anyhow!("loading lb_xdp: {e}"))?;
    ns.enter(|| sa.runner.attach_native(dev))
        .with_context(|| format!("attaching lb_xdp to {dev} in {}", ns.name()))?;
    Ok(sa)
}
