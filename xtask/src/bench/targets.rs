//! What the client talks to: a backend directly (routed by the lb
//! namespace's kernel), HAProxy, lb with the in-kernel splice, lb copying in
//! userspace. One function starts each; the returned guard stops it.

use anyhow::{anyhow, bail, Context, Result};
use lb_tests::{hp, psql_ok, Lb, Netns, Topology, BACKENDS_V4, LB_SRV_V4, LB_V4};
use serde::Serialize;
use serde_json::Value;

use super::proc::{wait_listening, ChildGuard};

pub const PG_PORT: u16 = 5432;
pub const IPERF_PORT: u16 = 5201;
/// The only iperf3 server: a test's control and data connections must all
/// reach the same one, so the balancers' iperf backend has just this server.
pub const IPERF_SERVER: &str = BACKENDS_V4[0];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Direct,
    Haproxy,
    Lb,
    LbNoSplice,
}

impl Target {
    /// Table column order.
    pub const ALL: [Target; 4] = [
        Target::Direct,
        Target::Haproxy,
        Target::Lb,
        Target::LbNoSplice,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Haproxy => "haproxy",
            Target::Lb => "lb",
            Target::LbNoSplice => "lb --no-splice",
        }
    }

    /// The address clients connect to. `direct` has no balancer: pgbench and
    /// iperf3 go to the first backend.
    pub fn host(self) -> &'static str {
        match self {
            Target::Direct => BACKENDS_V4[0],
            _ => LB_V4,
        }
    }
}

/// The config both balancers run, verbatim (lb ignores `nbthread`; 2 = the
/// CPU count, lb's tokio default). No health checks: only the data path is
/// measured.
pub fn config_text() -> String {
    let mut pg_servers = String::new();
    for (i, ip) in BACKENDS_V4.iter().enumerate() {
        pg_servers.push_str(&format!("    server pg{} {}\n", i + 1, hp(ip, PG_PORT)));
    }
    format!(
        "global\n    maxconn 4096\n    nbthread 2\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend pgsql_fe\n    bind {pg_bind}\n    default_backend pgsql_be\n\
         backend pgsql_be\n    balance roundrobin\n{pg_servers}\
         frontend iperf_fe\n    bind {iperf_bind}\n    default_backend iperf_be\n\
         backend iperf_be\n    balance roundrobin\n    server iperf1 {iperf_server}\n",
        pg_bind = hp(LB_V4, PG_PORT),
        iperf_bind = hp(LB_V4, IPERF_PORT),
        iperf_server = hp(IPERF_SERVER, IPERF_PORT),
    )
}

/// A started target; dropping it stops it.
pub enum Running<'a> {
    Direct(DirectRoutes<'a>),
    Haproxy(ChildGuard),
    Lb(Lb),
}

/// Start `target` and check that a PostgreSQL query goes through it.
pub fn start<'a>(topo: &'a Topology, cfg: &str, target: Target) -> Result<Running<'a>> {
    let mut running = match target {
        Target::Direct => Running::Direct(start_direct(topo)?),
        Target::Haproxy => Running::Haproxy(start_haproxy(topo, cfg)?),
        Target::Lb => Running::Lb(start_lb(topo, cfg, false)?),
        Target::LbNoSplice => Running::Lb(start_lb(topo, cfg, true)?),
    };
    let answer = psql_ok(&topo.client, target.host(), PG_PORT, "select 1")
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
    /// Error (with its log) if the balancer has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self {
            Running::Direct(_) => Ok(()),
            Running::Haproxy(g) => g.check_alive(),
            Running::Lb(lb) => lb.assert_alive(),
        }
    }

    /// Add the balancer's log tail to a workload error.
    pub fn annotate(&mut self, err: anyhow::Error) -> anyhow::Error {
        let (what, log) = match self {
            Running::Direct(_) => return err,
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
            Running::Haproxy(mut g) => g.stop(),
            Running::Lb(lb) => {
                lb.stop()?;
            }
        }
        Ok(())
    }
}

/// `direct`: routes between the client and backend subnets through the lb
/// namespace, with forwarding enabled there only. Undone on drop, in reverse.
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
fn start_haproxy(topo: &Topology, cfg: &str) -> Result<ChildGuard> {
    let cfg_path = topo.write_cfg("haproxy.cfg", cfg)?;
    let mut cmd = topo.lb.cmd("haproxy");
    cmd.arg("-f").arg(&cfg_path).arg("-db");
    let log = topo.dir.path().join("haproxy.log");
    let mut guard = ChildGuard::spawn("haproxy", cmd, &log)?;
    wait_listening(
        &topo.lb,
        &[hp(LB_V4, PG_PORT), hp(LB_V4, IPERF_PORT)],
        &mut guard,
    )
    .context("haproxy did not start listening")?;
    Ok(guard)
}

/// `lb run` through the harness (waits for the ready file); `no_splice`
/// adds `--no-splice`. With the splice, lb must say it uses it.
fn start_lb(topo: &Topology, cfg: &str, no_splice: bool) -> Result<Lb> {
    let args: &[&str] = if no_splice { &["--no-splice"] } else { &[] };
    let lb = topo.start_lb(cfg, args)?;
    if !no_splice {
        let log = std::fs::read_to_string(lb.log_path()).unwrap_or_default();
        if !log.contains("data path: in-kernel splice") {
            bail!(
                "lb started without the in-kernel splice; --- log ({}) ---\n{}",
                lb.log_path().display(),
                lb.log_tail(40)
            );
        }
    }
    Ok(lb)
}
