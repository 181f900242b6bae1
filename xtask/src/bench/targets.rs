//! What the client talks to: a backend directly (routed by the lb
//! namespace's kernel), HAProxy, lb with the in-kernel splice, lb copying in
//! userspace, lb's kernel NAT path, and the kernel's own NAT (nftables, as
//! kube-proxy's nftables mode uses it) as that path's peer. One function
//! starts each; the returned guard stops it.

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use lb_tests::{hp, psql_ok, Lb, Netns, Topology, LB_SRV_V4, LB_V4};
use serde::Serialize;
use serde_json::Value;

use super::net::Net;
use super::proc::{wait_listening, ChildGuard};

pub const PG_PORT: u16 = 5432;
pub const IPERF_PORT: u16 = 5201;
pub const SOCKPERF_PORT: u16 = 11111;
/// benchclient's echo / streaming server (short connections, idle
/// connections, slow readers).
pub const ECHO_PORT: u16 = 7000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Direct,
    Haproxy,
    Lb,
    LbNoSplice,
    /// `data-path nat` on every frontend.
    LbNat,
    /// nftables `dnat` over `numgen inc mod N` plus `masquerade`.
    Nftables,
    /// `data-path connect` on every frontend: the clients (on the balancer's
    /// host) connected straight to a server (loopback topology only).
    LbConnect,
}

impl Target {
    /// Table column order.
    pub const ALL: [Target; 7] = [
        Target::Direct,
        Target::Haproxy,
        Target::Lb,
        Target::LbNoSplice,
        Target::LbNat,
        Target::Nftables,
        Target::LbConnect,
    ];

    /// Whether the target means anything on `topology`: the NAT paths need
    /// remote clients (netns), connect-time balancing local ones (loopback).
    pub fn fits(self, topology: crate::bench::net::TopologyKind) -> bool {
        use crate::bench::net::TopologyKind as K;
        match self {
            Target::LbNat | Target::Nftables => topology == K::Netns,
            Target::LbConnect => topology == K::Loopback,
            _ => true,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Haproxy => "haproxy",
            Target::Lb => "lb",
            Target::LbNoSplice => "lb --no-splice",
            Target::LbNat => "lb nat",
            Target::Nftables => "nftables",
            Target::LbConnect => "lb connect",
        }
    }

    /// The address clients connect to. `direct` has no balancer: clients go
    /// to the first backend.
    pub fn host(self, net: &Net) -> &'static str {
        match self {
            Target::Direct => net.backends()[0],
            _ => net.lb_addr(),
        }
    }
}

/// The config both balancers run, verbatim. `nbthread` = the CPU count,
/// lb's tokio default (lb ignores the keyword). `maxconn 9000`: room for the
/// idle-connection test; HAProxy sizes its file limit from it (two sockets a
/// connection, under the 20000 hard limit). No health checks: only the data
/// path is measured. Single-server backends where one client's connections
/// must all reach the same server (iperf3's control and data connections)
/// or where there is only one server (sockperf).
pub fn config_text(net: &Net, nproc: usize) -> String {
    let lb = net.lb_addr();
    let b = net.backends();
    let servers = |prefix: &str, port: u16| -> String {
        b.iter()
            .enumerate()
            .map(|(i, ip)| format!("    server {prefix}{} {}\n", i + 1, hp(ip, port)))
            .collect()
    };
    let section = |name: &str, port: u16, servers: String| -> String {
        format!(
            "frontend {name}_fe\n    bind {bind}\n    default_backend {name}_be\n\
             backend {name}_be\n    balance roundrobin\n{servers}",
            bind = hp(lb, port),
        )
    };
    format!(
        "global\n    maxconn 9000\n    nbthread {nproc}\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         {pg}{iperf}{sockperf}{echo}",
        pg = section("pgsql", PG_PORT, servers("pg", PG_PORT)),
        iperf = section(
            "iperf",
            IPERF_PORT,
            format!("    server iperf1 {}\n", hp(b[0], IPERF_PORT))
        ),
        sockperf = section(
            "sockperf",
            SOCKPERF_PORT,
            format!("    server sockperf1 {}\n", hp(b[0], SOCKPERF_PORT))
        ),
        echo = section("echo", ECHO_PORT, servers("echo", ECHO_PORT)),
    )
}

/// A started target; dropping it stops it.
pub enum Running<'a> {
    /// `None` on the loopback topology: nothing to set up.
    Direct(Option<DirectRoutes<'a>>),
    Haproxy(ChildGuard),
    Lb(Lb),
    Nft(NftRules<'a>),
}

/// Start `target` and check that a PostgreSQL query goes through it.
pub fn start<'a>(net: &'a Net, cfg: &str, target: Target) -> Result<Running<'a>> {
    let mut running = match target {
        Target::Direct => Running::Direct(match net.veth() {
            Some(topo) => Some(start_direct(topo)?),
            None => None,
        }),
        Target::Haproxy => Running::Haproxy(start_haproxy(net, cfg)?),
        Target::Lb => Running::Lb(start_lb(net, cfg, false)?),
        Target::LbNoSplice => Running::Lb(start_lb(net, cfg, true)?),
        Target::LbNat => Running::Lb(start_lb_nat(net, cfg)?),
        Target::Nftables => Running::Nft(start_nft(net)?),
        Target::LbConnect => Running::Lb(start_lb_connect(net, cfg)?),
    };
    let host = target.host(net);
    let answer = psql_ok(net.client(), host, PG_PORT, "select 1")
        .map_err(|e| running.annotate(e.context(format!("smoke query via {}", target.label()))))?;
    if answer != "1" {
        return Err(running.annotate(anyhow!(
            "smoke query via {} printed {answer:?}, not 1",
            target.label()
        )));
    }
    running.check_alive()?;
    Ok(running)
}

impl Running<'_> {
    /// The balancer's process id (`direct`: none).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Running::Direct(_) | Running::Nft(_) => None,
            Running::Haproxy(g) => g.pid(),
            Running::Lb(lb) => Some(lb.pid()),
        }
    }

    /// Error (with its log) if the balancer has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self {
            Running::Direct(_) | Running::Nft(_) => Ok(()),
            Running::Haproxy(g) => g.check_alive(),
            Running::Lb(lb) => lb.assert_alive(),
        }
    }

    /// Add the balancer's log tail to a workload error.
    pub fn annotate(&mut self, err: anyhow::Error) -> anyhow::Error {
        let (what, log) = match self {
            Running::Direct(_) | Running::Nft(_) => return err,
            Running::Haproxy(g) => ("haproxy", g.log_tail(30)),
            Running::Lb(lb) => ("lb", lb.log_tail(40)),
        };
        let state = match self.check_alive() {
            Ok(()) => format!("{what} is still running"),
            Err(e) => format!("{e:#}"),
        };
        err.context(format!("{state}; --- {what} log tail ---\n{log}"))
    }

    /// lb's data path as it logged it at start-up.
    pub fn datapath(&self) -> Option<String> {
        let Running::Lb(lb) = self else { return None };
        std::fs::read_to_string(lb.log_path())
            .ok()?
            .lines()
            .find_map(|l| l.find("data path:").map(|i| l[i..].trim().to_string()))
    }

    /// `lb show stats --json` (kernel-side counters), for the raw results.
    pub fn lb_stats(&self) -> Option<Value> {
        let Running::Lb(lb) = self else { return None };
        match lb.show_stats() {
            Ok(text) => serde_json::from_str(&text).ok(),
            Err(e) => Some(Value::String(format!("show stats failed: {e:#}"))),
        }
    }

    /// Stop the target; errors if lb did not exit cleanly on SIGINT.
    pub fn stop(self) -> Result<()> {
        match self {
            Running::Direct(routes) => drop(routes),
            Running::Nft(rules) => drop(rules),
            Running::Haproxy(mut g) => g.stop(),
            Running::Lb(lb) => {
                let instance = lb.instance().to_string();
                lb.stop()?;
                // lb keeps NAT state across restarts on purpose: a
                // benchmark's lb goes with its namespace.
                for root in ["/sys/fs/bpf/lb-nat", "/sys/fs/bpf/lb-connect"] {
                    let _ = std::fs::remove_dir_all(std::path::Path::new(root).join(&instance));
                }
            }
        }
        Ok(())
    }
}

/// Counter growth between two `lb show stats --json` objects (name -> count).
pub fn stats_delta(before: &Value, after: &Value) -> Option<Value> {
    let (b, a) = (before.as_object()?, after.as_object()?);
    let delta: serde_json::Map<String, Value> = a
        .iter()
        .filter_map(|(k, v)| {
            let now = v.as_u64()?;
            let then = b.get(k).and_then(Value::as_u64).unwrap_or(0);
            Some((k.clone(), Value::from(now.saturating_sub(then))))
        })
        .collect();
    Some(Value::Object(delta))
}

/// `direct` on the veth topology: routes between the client and backend
/// subnets through the lb namespace, with forwarding enabled there only.
/// Undone on drop, in reverse.
pub struct DirectRoutes<'a> {
    topo: &'a Topology,
    /// The lb namespace's previous `net.ipv4.ip_forward`, once changed.
    old_forward: Option<String>,
    /// Routes added: (namespace, `ip route add` arguments).
    routes: Vec<(&'a Netns, [&'static str; 3])>,
}

impl Drop for DirectRoutes<'_> {
    fn drop(&mut self) {
        while let Some((ns, route)) = self.routes.pop() {
            if let Err(e) = ns.ip(&[&["route", "del"], &route[..]].concat()) {
                eprintln!(
                    "[bench] warning: cannot remove a route in {}: {e:#}",
                    ns.name()
                );
            }
        }
        if let Some(old) = self.old_forward.take() {
            let setting = format!("net.ipv4.ip_forward={old}");
            if let Err(e) = self.topo.lb.run("sysctl", &["-w", &setting]) {
                eprintln!("[bench] warning: cannot restore {setting} in the lb namespace: {e:#}");
            }
        }
    }
}

fn start_direct(topo: &Topology) -> Result<DirectRoutes<'_>> {
    let mut direct = DirectRoutes {
        topo,
        old_forward: None,
        routes: Vec::new(),
    };
    let old = topo.lb.run("sysctl", &["-n", "net.ipv4.ip_forward"])?;
    topo.lb.run("sysctl", &["-w", "net.ipv4.ip_forward=1"])?;
    direct.old_forward = Some(old.trim().to_string());
    for (ns, route) in [
        (&topo.client, ["10.210.2.0/24", "via", LB_V4]),
        (&topo.srv, ["10.210.1.0/24", "via", LB_SRV_V4]),
    ] {
        ns.ip(&[&["route", "add"], &route[..]].concat())?;
        direct.routes.push((ns, route));
    }
    Ok(direct)
}

/// Debian's HAProxy in the lb namespace, in the foreground (`-db`).
fn start_haproxy(net: &Net, cfg: &str) -> Result<ChildGuard> {
    let cfg_path = lb_tests::util::write_file(net.dir(), "haproxy.cfg", cfg)?;
    let mut cmd = net.lb().cmd("haproxy");
    cmd.arg("-f").arg(&cfg_path).arg("-db");
    let log = net.dir().join("haproxy.log");
    let mut guard = ChildGuard::spawn("haproxy", cmd, &log)?;
    let lb = net.lb_addr();
    wait_listening(
        net.lb(),
        &[hp(lb, PG_PORT), hp(lb, IPERF_PORT), hp(lb, ECHO_PORT)],
        &mut guard,
    )
    .context("haproxy did not start listening")?;
    Ok(guard)
}

/// `lb run` through the harness (waits for the ready file); `no_splice`
/// adds `--no-splice`. With the splice, lb must say it uses it. With remote
/// clients, the front door runs on their veth (at tc ingress, lb's choice on
/// a veth), as a user would run it.
fn start_lb(net: &Net, cfg: &str, no_splice: bool) -> Result<Lb> {
    let args: &[&str] = if no_splice { &["--no-splice"] } else { &[] };
    let cfg = with_front_door(net, cfg);
    let lb = Lb::start(net.lb(), net.dir(), &cfg, args)?;
    let log = std::fs::read_to_string(lb.log_path()).unwrap_or_default();
    if net.veth().is_some() && !log.contains("front door on eth-c (tc") {
        bail!(
            "lb started without its front door at tc on eth-c; --- log ({}) ---\n{}",
            lb.log_path().display(),
            lb.log_tail(40)
        );
    }
    if !no_splice && !log.contains("data path: in-kernel splice") {
        bail!(
            "lb started without the in-kernel splice; --- log ({}) ---\n{}",
            lb.log_path().display(),
            lb.log_tail(40)
        );
    }
    Ok(lb)
}

/// The config with `xdp-interface eth-c` on the netns topology.
fn with_front_door(net: &Net, cfg: &str) -> String {
    if net.veth().is_some() {
        cfg.replacen("global\n", "global\n    xdp-interface eth-c\n", 1)
    } else {
        cfg.to_string()
    }
}

/// `lb run` with `data-path nat` on every frontend (in `defaults`) and the
/// client-side veth named for it; lb must say where it attached `lb_nat`.
/// The front door runs too, at tc ingress before `lb_nat` (native XDP on a
/// veth would take GSO away from its peer: drivers/net/veth.c,
/// `veth_xdp_set`).
fn start_lb_nat(net: &Net, cfg: &str) -> Result<Lb> {
    if net.veth().is_none() {
        bail!("lb nat needs remote clients: run it on the netns topology");
    }
    let cfg = with_front_door(net, cfg).replacen("defaults\n", "defaults\n    data-path nat\n", 1);
    let lb = Lb::start(net.lb(), net.dir(), &cfg, &[])?;
    let log = std::fs::read_to_string(lb.log_path()).unwrap_or_default();
    if !log.contains("lb_nat attached") {
        bail!(
            "lb started without lb_nat; --- log ({}) ---\n{}",
            lb.log_path().display(),
            lb.log_tail(40)
        );
    }
    Ok(lb)
}

fn start_lb_connect(net: &Net, cfg: &str) -> Result<Lb> {
    if net.veth().is_some() {
        bail!(
            "lb connect balances the balancer host's own clients: run it on the loopback topology"
        );
    }
    let cfg = cfg.replacen("defaults\n", "defaults\n    data-path connect\n", 1);
    let lb = Lb::start(net.lb(), net.dir(), &cfg, &["--no-xdp"])?;
    let log = std::fs::read_to_string(lb.log_path()).unwrap_or_default();
    if !log.contains("data-path connect:") {
        bail!(
            "lb started without the connect programs; --- log ({}) ---\n{}",
            lb.log_path().display(),
            lb.log_tail(40)
        );
    }
    Ok(lb)
}

/// The kernel's NAT as kube-proxy's nftables mode sets it up, in the lb
/// namespace: per frontend port a `dnat` to `numgen inc mod N` over the
/// backend addresses (single-server frontends to the first), `masquerade`
/// toward the backends, conntrack doing the rest; forwarding on in that
/// namespace only. Undone on drop.
pub struct NftRules<'a> {
    ns: &'a Netns,
    old_forward: String,
}

impl Drop for NftRules<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run("nft", &["delete", "table", "ip", "lbbench"]);
        let setting = format!("net.ipv4.ip_forward={}", self.old_forward);
        if let Err(e) = self.ns.run("sysctl", &["-w", &setting]) {
            eprintln!("[bench] warning: cannot restore {setting} in the lb namespace: {e:#}");
        }
    }
}

fn start_nft(net: &Net) -> Result<NftRules<'_>> {
    let Some(topo) = net.veth() else {
        bail!("nftables NAT needs remote clients: run it on the netns topology");
    };
    let b = net.backends();
    let lb = net.lb_addr();
    let spread = format!(
        "numgen inc mod 3 map {{ 0 : {}, 1 : {}, 2 : {} }}",
        b[0], b[1], b[2]
    );
    let mut rules = String::from(
        "table ip lbbench {\n  chain pre {\n    type nat hook prerouting priority dstnat;\n",
    );
    for (port, to) in [
        (PG_PORT, spread.clone()),
        (ECHO_PORT, spread.clone()),
        (IPERF_PORT, b[0].to_string()),
        (SOCKPERF_PORT, b[0].to_string()),
    ] {
        rules.push_str(&format!(
            "    ip daddr {lb} tcp dport {port} dnat to {to}\n"
        ));
    }
    rules.push_str(&format!(
        "  }}\n  chain post {{\n    type nat hook postrouting priority srcnat;\n    \
         ip daddr {{ {}, {}, {} }} masquerade\n  }}\n}}\n",
        b[0], b[1], b[2]
    ));
    let file = lb_tests::util::write_file(net.dir(), "nft.rules", &rules)?;
    let old = topo.lb.run("sysctl", &["-n", "net.ipv4.ip_forward"])?;
    let guard = NftRules {
        ns: &topo.lb,
        old_forward: old.trim().to_string(),
    };
    topo.lb.run("sysctl", &["-w", "net.ipv4.ip_forward=1"])?;
    topo.lb
        .run("nft", &["-f", &file.display().to_string()])
        .context("loading the nftables NAT rules")?;
    Ok(guard)
}
