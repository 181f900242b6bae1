//! The kernel NAT path (`data-path nat`) as the daemon runs it: which
//! addresses and interfaces it takes, the servers' routes and port ranges,
//! the pick tables kept in step with health and weights, and the sweep that
//! ends idle flows. `lb_nat` (lb-ebpf/src/nat.rs) does the per-packet work.
pub mod reset;
pub mod table;

use std::collections::HashMap as StdMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lb_common::{
    BindKey, NatFlow, NatServer, NatVip, AF_INET, AF_INET6, NAT_DEFAULT_FLOWS, NAT_DIR_CLIENT,
    NAT_DIR_SERVER, NAT_F_CLOSED, NAT_F_ENDED, NAT_VIP_LOG,
};

use crate::config::{Config, DataPath};
use crate::kernel::nat::NatMaps;
use crate::kernel::route;
use crate::state::{NatMsg, State};

/// How long an ended flow (FIN both ways, or RST) keeps its entries: the
/// last ACK, retransmitted FINs and a late RST still find their rewrite.
pub const ENDED_GRACE: Duration = Duration::from_secs(10);
/// The same for a closed flow (both FINs acknowledged): what still comes is
/// window updates of a socket emptying its receive queue.
pub const CLOSED_GRACE: Duration = Duration::from_secs(2);
/// A flow half found without the other is taken for orphaned (its other
/// half evicted) only past this age: a new flow's two entries are stored
/// one after the other.
const ORPHAN_AGE: Duration = Duration::from_secs(2);
/// How often the pick tables follow health and weights.
const REFRESH: Duration = Duration::from_millis(100);
/// How often idle and ended flows are swept.
const SWEEP: Duration = Duration::from_secs(1);

/// Entries the flow table needs, when some frontend uses `data-path nat`:
/// two per flow, for the global `maxconn` of running flows (64 Ki without)
/// and the ended flows that may hold every balancer port toward every NAT
/// server during their grace, within [64 Ki, 8 Mi].
pub fn flows_wanted(cfg: &Config) -> Option<u32> {
    if !cfg.frontends.iter().any(|f| f.path() == DataPath::Nat) {
        return None;
    }
    // Tests make the table tiny to fill it (never set in production).
    if let Some(n) = std::env::var("LB_TEST_NAT_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(n);
    }
    // Running flows (maxconn), plus what ended flows hold during their grace:
    // at most every balancer port of every NAT server (ports are taken back
    // from ended flows), two entries each. An LRU too small for that evicts
    // idle running flows before the recently ended ones.
    let servers: u64 = cfg
        .frontends
        .iter()
        .filter(|f| f.path() == DataPath::Nat)
        .filter_map(|f| f.default_backend_idx)
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|&b| cfg.backends[b].servers.len() as u64)
        .sum();
    let ports = port_range().map_or(4_535, |(lo, hi)| (hi - lo) as u64 + 1);
    Some(table_size(cfg.global.maxconn, servers, ports))
}

/// See [`flows_wanted`]: entries for `maxconn` running flows (64 Ki
/// without) and `ports` per server of `servers`, two each.
pub fn table_size(maxconn: Option<u32>, servers: u64, ports: u64) -> u32 {
    let running = maxconn.map_or(NAT_DEFAULT_FLOWS as u64 / 4, |m| m as u64);
    (2 * (running + ports * servers)).clamp(65_536, 8 << 20) as u32
}

/// The balancer ports the NAT path hands out: those above the host's
/// ephemeral range (`net.ipv4.ip_local_port_range`), which the host's own
/// connections never take unless a program binds one explicitly.
pub fn port_range() -> Result<(u16, u16)> {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let hi: u32 = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{path}: unreadable '{}'", text.trim()))?;
    let lo = hi + 1;
    if lo > 65_535 {
        bail!(
            "{path} ends at {hi}: no port above it is left for NAT flows; lower the end of \
             the range (lb changes no host setting itself)"
        );
    }
    if lo > 65_535 - 1023 {
        tracing::warn!(
            "{path} ends at {hi}: only {} ports above it for NAT flows, so at most that many \
             flows per server address and port; lower the end of the range for more",
            65_536 - lo
        );
    }
    Ok((lo as u16, 65_535))
}

/// What the NAT path of one configuration needs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Config backend index of each NAT backend (its index in LB_NAT_BACKENDS).
    pub backends: Vec<usize>,
    /// Interfaces the clients come in by.
    pub client_ifaces: Vec<String>,
    /// Frontend addresses and ports.
    pub vips: Vec<(BindKey, NatVip)>,
}

fn family_of(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v) => a[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => a = v.octets(),
    }
    a
}

/// The frontends, addresses and interfaces of the NAT path. `addrs_of` gives
/// an interface's addresses (a wildcard bind stands for those).
pub fn plan(cfg: &Config, addrs_of: &dyn Fn(&str) -> Vec<IpAddr>) -> Plan {
    let mut p = Plan::default();
    let global: Vec<String> = cfg
        .global
        .xdp_interfaces
        .iter()
        .map(|i| i.value.name.clone())
        .collect();
    for (fi, f) in cfg.frontends.iter().enumerate() {
        if f.path() != DataPath::Nat {
            continue;
        }
        // `lb check` made sure of a default backend.
        let Some(bi) = f.default_backend_idx else {
            continue;
        };
        let nb = match p.backends.iter().position(|&b| b == bi) {
            Some(i) => i,
            None => {
                p.backends.push(bi);
                p.backends.len() - 1
            }
        };
        for b in &f.binds {
            let ifaces: Vec<String> = match &b.interface {
                Some(i) => vec![i.clone()],
                None => global.clone(),
            };
            for i in &ifaces {
                if !p.client_ifaces.contains(i) {
                    p.client_ifaces.push(i.clone());
                }
            }
            let addrs: Vec<IpAddr> = match b.addr {
                Some(a) if !a.is_unspecified() => vec![a],
                Some(a) => ifaces
                    .iter()
                    .flat_map(|i| addrs_of(i))
                    .filter(|x| x.is_ipv4() == a.is_ipv4())
                    .collect(),
                None => ifaces.iter().flat_map(|i| addrs_of(i)).collect(),
            };
            for a in addrs {
                for port in b.port_first..=b.port_last {
                    let key = BindKey {
                        family: family_of(a),
                        port_host: port as u32,
                        addr_be: addr16(a),
                    };
                    if !p.vips.iter().any(|(k, _)| *k == key) {
                        p.vips.push((
                            key,
                            NatVip {
                                frontend: fi as u32,
                                backend: nb as u32,
                                flags: if f.tcplog.is_some() { NAT_VIP_LOG } else { 0 },
                                _pad: 0,
                            },
                        ));
                    }
                }
            }
        }
    }
    p
}

fn ip_of(addr_be: &[u8; 16], family: u32) -> IpAddr {
    if family == AF_INET {
        IpAddr::from([addr_be[0], addr_be[1], addr_be[2], addr_be[3]])
    } else {
        IpAddr::from(*addr_be)
    }
}

fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    let r = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if r.is_null() {
        return None;
    }
    Some(crate::kernel::xdp::cstr(&buf))
}

/// Idle limits of one frontend/backend pair, in ns (0: none).
#[derive(Clone, Copy, Debug, Default)]
struct Idle {
    /// Established: `timeout tunnel` if set, else the larger of `timeout
    /// client` and `timeout server` (one side idle is both sides idle here).
    established_ns: u64,
    /// No answer from the server yet: `timeout connect`.
    connect_ns: u64,
}

/// The running NAT path.
pub struct Nat {
    maps: NatMaps,
    plan: Plan,
    /// The pick tables and servers as last written.
    tables: super::kpick::Tables,
    /// Per frontend index.
    idle: Vec<Idle>,
    /// Balancer ports handed out, and the flow table's entries (for the log).
    ports: (u16, u16),
    table_size: u32,
    /// Per frontend: `option tcplog`'s sink, and the names a line needs.
    sinks: Vec<Option<super::tcplog::Sink>>,
    names: Names,
}

/// Frontend, backend (the frontend's default) and server names by index.
#[derive(Default)]
struct Names {
    frontends: Vec<(String, String)>,
    servers: Vec<String>,
}

impl Nat {
    /// Resolves the routes to the servers, fills the maps and adopts the
    /// flows a previous daemon left (recounting each server's flows). Returns
    /// the interfaces `lb_nat` must be attached to: the clients' and those of
    /// the routes to the servers.
    pub fn start(
        cfg: &Config,
        state: &State,
        mut maps: NatMaps,
        table_size: u32,
    ) -> Result<(Self, Vec<String>)> {
        let addrs_of = |i: &str| {
            crate::kernel::xdp::ifindex(i)
                .and_then(|x| route::addresses(x).ok())
                .unwrap_or_default()
        };
        let plan = plan(cfg, &addrs_of);
        let (lo, hi) = port_range()?;
        let mut ifaces = plan.client_ifaces.clone();
        let mut servers = vec![None; state.servers.len()];
        for &bi in &plan.backends {
            for &si in &state.backends[bi].servers {
                let s = &state.servers[si as usize];
                let addr = s.addr();
                let r = route::route_to(addr.ip()).with_context(|| {
                    format!(
                        "server '{}/{}' ({addr}) for 'data-path nat'",
                        s.backend,
                        s.name()
                    )
                })?;
                if r.ifindex == 1 {
                    tracing::warn!(
                        "server '{}/{}' ({addr}) is on this host: 'data-path nat' cannot \
                         send flows to it (remote clients of its frontend get no server)",
                        s.backend,
                        s.name()
                    );
                }
                if let Some(name) = ifname(r.ifindex) {
                    if r.ifindex != 1 && !ifaces.contains(&name) {
                        ifaces.push(name);
                    }
                }
                let mut port_be = [0u8; 2];
                port_be.copy_from_slice(&addr.port().to_be_bytes());
                servers[si as usize] = Some(NatServer {
                    addr_be: addr16(addr.ip()),
                    src_be: addr16(r.src),
                    port_be,
                    family: family_of(addr.ip()),
                    ifindex: r.ifindex,
                    port_lo: lo as u32,
                    port_hi: hi as u32,
                    port_tries: lb_common::nat_port_tries(lo as u32, hi as u32),
                    maxconn: s.effective_maxconn(),
                    usable: 0,
                    ..Default::default()
                });
            }
        }
        maps.set_vips(&plan.vips).context("writing LB_NAT_VIPS")?;
        let idle = cfg
            .frontends
            .iter()
            .map(|f| {
                let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_nanos() as u64);
                let Some(b) = f.default_backend_idx.map(|i| &cfg.backends[i]) else {
                    return Idle::default();
                };
                let tunnel = ms(b.timeout_tunnel.as_ref().map(|t| t.value));
                let (c, s) = (ms(f.timeout_client), ms(b.timeout_server));
                Idle {
                    established_ns: if tunnel != 0 {
                        tunnel
                    } else if c == 0 || s == 0 {
                        0
                    } else {
                        c.max(s)
                    },
                    connect_ns: ms(b.timeout_connect),
                }
            })
            .collect();
        let mut nat = Nat {
            maps,
            tables: super::kpick::Tables::new(plan.backends.clone(), servers),
            plan,
            idle,
            ports: (lo, hi),
            table_size,
            sinks: cfg
                .frontends
                .iter()
                .map(|f| {
                    if f.path() != DataPath::Nat {
                        return None;
                    }
                    super::tcplog::Sink::for_frontend(cfg, f).unwrap_or_else(|e| {
                        tracing::warn!("frontend '{}': tcplog for NAT flows: {e}", f.name);
                        None
                    })
                })
                .collect(),
            names: Names {
                frontends: cfg
                    .frontends
                    .iter()
                    .map(|f| {
                        let be = f
                            .default_backend_idx
                            .map_or("<none>".to_string(), |b| cfg.backends[b].name.clone());
                        (f.name.clone(), be)
                    })
                    .collect(),
                servers: state.servers.iter().map(|s| s.name().to_string()).collect(),
            },
        };
        nat.refresh(state)?;
        nat.adopt(state);
        tracing::info!(
            "data-path nat: {} frontend address(es), balancer ports {lo}-{hi}, lb_nat on {}",
            nat.plan.vips.len(),
            ifaces.join(", ")
        );
        Ok((nat, ifaces))
    }

    /// Writes what changed of the servers (usable, maxconn) and the pick
    /// tables since the last call.
    pub fn refresh(&mut self, state: &State) -> Result<()> {
        // A server on this host is never usable by the NAT path.
        self.tables.refresh(state, &mut self.maps, &|ns, m| {
            m.weight > 0 && ns.ifindex != 1
        })
    }

    /// Flows a previous daemon left in the table: each is counted on its
    /// server again (found by address: indexes change with the
    /// configuration); flows of servers no longer configured go on uncounted.
    fn adopt(&mut self, state: &State) {
        let by_addr: StdMap<([u8; 16], [u8; 2]), u32> = self
            .tables
            .servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| ((s.addr_be, s.port_be), i as u32)))
            .collect();
        let (mut adopted, mut orphans) = (0u64, 0u64);
        for (k, mut v) in self.maps.flows() {
            if v.dir != NAT_DIR_CLIENT {
                continue;
            }
            let idx = by_addr
                .get(&(v.dst_be, v.dport_be))
                .copied()
                .unwrap_or(u32::MAX);
            let peer_key = v.peer_key(k.family);
            if idx != v.server {
                v.server = idx;
                self.maps.update_flow(&k, &v);
                if let Some(mut p) = self.maps.flow(&peer_key) {
                    p.server = idx;
                    self.maps.update_flow(&peer_key, &p);
                }
            }
            if v.flags & NAT_F_ENDED != 0 {
                continue;
            }
            match state.servers.get(idx as usize) {
                Some(s) => {
                    s.cur_conns.fetch_add(1, Ordering::Relaxed);
                    adopted += 1;
                }
                None => orphans += 1,
            }
        }
        if adopted + orphans > 0 {
            tracing::info!(
                "data-path nat: {adopted} running flow(s) adopted from the previous daemon{}",
                if orphans > 0 {
                    format!(", {orphans} of servers no longer configured (they go on, uncounted)")
                } else {
                    String::new()
                }
            );
        }
    }

    /// Writes the tcplog lines of the NAT flows that ended since the last call
    /// (frontends with `option tcplog`).
    pub fn log_ended(&mut self) {
        let now = crate::sys::monotonic_ns();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Bounded: what the ring holds.
        for _ in 0..100_000 {
            let Some(e) = self.maps.next_log() else {
                break;
            };
            let Some(Some(sink)) = self.sinks.get(e.frontend as usize) else {
                continue;
            };
            let (fe, be) = self
                .names
                .frontends
                .get(e.frontend as usize)
                .map_or(("<none>", "<none>"), |(f, b)| (f.as_str(), b.as_str()));
            let srv = self
                .names
                .servers
                .get(e.server as usize)
                .map(|s| s.as_str());
            let line = super::tcplog::nat_line(&e, fe, be, srv, now, unix_ms);
            sink.send(&line, unix_ms);
        }
    }

    /// Resets every running flow of server `idx` (both ends get a RST) and
    /// removes it. Returns how many.
    pub fn kill_server(&mut self, state: &State, idx: u32) -> usize {
        let mut killed = 0;
        for (k, v) in self.maps.flows() {
            if v.dir != NAT_DIR_CLIENT || v.server != idx || v.flags & NAT_F_ENDED != 0 {
                continue;
            }
            let peer_key = v.peer_key(k.family);
            let peer = self.maps.flow(&peer_key);
            if !self.maps.remove_flow(&k) {
                continue;
            }
            self.maps.remove_flow(&peer_key);
            killed += 1;
            if let Some(s) = state.servers.get(idx as usize) {
                let _ = s
                    .cur_conns
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        Some(c.saturating_sub(1))
                    });
            }
            let port = |p: [u8; 2]| u16::from_be_bytes(p);
            let client = SocketAddr::new(ip_of(&k.src_be, k.family), port(k.sport_be));
            let vip = SocketAddr::new(ip_of(&k.dst_be, k.family), port(k.dport_be));
            let server = SocketAddr::new(ip_of(&v.dst_be, k.family), port(v.dport_be));
            let own = SocketAddr::new(ip_of(&v.src_be, k.family), port(v.sport_be));
            if let Err(e) = reset::send_rst(own, server, v.seq_next) {
                tracing::warn!("data-path nat: reset to {server}: {e}");
            }
            // A client whose SYN the server never answered has nothing to
            // match a reset against: its connect times out instead.
            if let Some(p) = peer.filter(|p| p.packets > 0) {
                if let Err(e) = reset::send_rst(vip, client, p.seq_next) {
                    tracing::warn!("data-path nat: reset to {client}: {e}");
                }
            }
        }
        killed
    }

    /// Ends what is over: ended flows past their grace, idle flows past their
    /// timeout, halves whose other half the LRU evicted. Returns (flows
    /// removed, halves found alone, entries walked).
    pub fn sweep(&mut self, state: &State, now_ns: u64) -> (u64, u64, u64) {
        let (mut removed, mut alone, mut walked) = (0, 0, 0);
        // The walk only says which keys exist: a hash map walked while the
        // kernel inserts and removes can miss keys or see them twice. Every
        // decision reads the entries again, and a half is taken for alone
        // only when it is older than a flow takes to be stored whole.
        let old_enough =
            |v: &NatFlow| now_ns.saturating_sub(v.created_ns) > ORPHAN_AGE.as_nanos() as u64;
        for (k, _) in self.maps.flows() {
            walked += 1;
            let Some(v) = self.maps.flow(&k) else {
                continue;
            };
            let peer_key = v.peer_key(k.family);
            let peer = self.maps.flow(&peer_key);
            if v.dir == NAT_DIR_SERVER {
                if peer.is_none() && old_enough(&v) && self.maps.remove_flow(&k) {
                    alone += 1;
                }
                continue;
            }
            let ended = v.flags & NAT_F_ENDED != 0;
            let over = match peer {
                None if old_enough(&v) => {
                    alone += 1;
                    true
                }
                None => false,
                Some(_) if ended => {
                    let grace = if v.flags & NAT_F_CLOSED != 0 {
                        CLOSED_GRACE
                    } else {
                        ENDED_GRACE
                    };
                    now_ns.saturating_sub(v.ended_ns) > grace.as_nanos() as u64
                }
                Some(p) => {
                    let idle = self
                        .idle
                        .get(v.frontend as usize)
                        .copied()
                        .unwrap_or_default();
                    let last = v.last_ns.max(p.last_ns);
                    let limit = if p.packets == 0 {
                        idle.connect_ns
                    } else {
                        idle.established_ns
                    };
                    limit != 0 && now_ns.saturating_sub(last) > limit
                }
            };
            if !over {
                continue;
            }
            // Whoever removes the client entry counts the flow out (unless
            // the kernel did when it ended).
            if self.maps.remove_flow(&k) {
                removed += 1;
                if !ended {
                    if let Some(s) = state.servers.get(v.server as usize) {
                        let _ =
                            s.cur_conns
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                                    Some(c.saturating_sub(1))
                                });
                    }
                }
            }
            self.maps.remove_flow(&peer_key);
        }
        (removed, alone, walked)
    }
}

/// Runs the refresh (every 100 ms) and the sweep (every second) on a thread
/// of their own (the sweep walks the whole table with system calls) until
/// `stop`.
pub fn spawn(
    nat: Nat,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    instance: String,
) -> std::thread::JoinHandle<()> {
    let (tx, msgs) = std::sync::mpsc::channel::<NatMsg>();
    state.subscribe(tx);
    std::thread::Builder::new()
        .name("lb-nat".into())
        .spawn(move || {
            let mut nat = nat;
            let mut last_sweep = crate::sys::monotonic_ns();
            let (mut alone_total, mut alone_said, mut alone_said_ns) = (0u64, 0u64, 0u64);
            let mut full_said_ns = 0u64;
            let mut refusals = Refusals::default();
            let mut totals = Totals::open(&instance);
            while !stop.load(Ordering::Relaxed) {
                // Woken at once by a change (a server DOWN gets no new
                // flow from then on), else every REFRESH for slowstart.
                let msg = msgs.recv_timeout(REFRESH).ok();
                // Kills reach every kernel path: only a server behind NAT is ours.
                let ours = |i: u32| {
                    nat.tables
                        .servers
                        .get(i as usize)
                        .is_some_and(|s| s.is_some())
                };
                if let Some(NatMsg::Kill(idx)) =
                    msg.filter(|m| matches!(m, NatMsg::Kill(i) if ours(*i)))
                {
                    let n = nat.kill_server(&state, idx);
                    let name = state
                        .servers
                        .get(idx as usize)
                        .map(|s| s.name().to_string());
                    tracing::info!(
                        "data-path nat: {n} flow(s) of server {} reset",
                        name.unwrap_or_default()
                    );
                }
                if let Err(e) = nat.refresh(&state) {
                    tracing::warn!("data-path nat: {e:#}");
                }
                totals.add_to(&state, &nat.tables.servers);
                nat.tables.wake_queues(&state);
                nat.log_ended();
                let now = crate::sys::monotonic_ns();
                if now - last_sweep >= SWEEP.as_nanos() as u64 {
                    last_sweep = now;
                    refusals.report(&instance, &nat, now);
                    let (_, alone, walked) = nat.sweep(&state, now);
                    alone_total += alone;
                    // A full LRU evicts whole flows too (both halves idle
                    // alike): nothing is left alone to count, so a full
                    // table is said as such.
                    if walked >= full_mark(nat.table_size)
                        && (full_said_ns == 0 || now - full_said_ns >= 10_000_000_000)
                    {
                        tracing::warn!(
                            "data-path nat: the flow table is full ({walked} of {} entries): \
                             its LRU evicts the least recently used flows, running ones \
                             included; raise global 'maxconn'",
                            nat.table_size
                        );
                        full_said_ns = now;
                    }
                    if alone > 0 {
                        totals.set_orphans(alone_total);
                    }
                    if alone_total > alone_said
                        && (alone_said_ns == 0 || now - alone_said_ns >= 10_000_000_000)
                    {
                        tracing::warn!(
                            "data-path nat: {} flow half(s) found without their other half \
                             (nat_orphan): the flow table ({} entries) is full and its LRU \
                             evicted running flows; raise global 'maxconn' (the table holds \
                             2 entries per maxconn and per balancer port of each server)",
                            alone_total - alone_said,
                            nat.table_size
                        );
                        alone_said = alone_total;
                        alone_said_ns = now;
                    }
                }
            }
        })
        .expect("spawning the NAT thread")
}

/// The connections each server took from the kernel with no proxy (NAT
/// flows, connects), from the per-CPU counts, added to the server's total
/// connections (what `show stat`, `lb show servers` and the metrics report),
/// every refresh. Both kernel paths' threads may add: `Server::kernel_seen`
/// makes each increment count once.
pub(crate) struct Totals {
    kstats: Option<aya::maps::PerCpuArray<aya::maps::MapData, lb_common::ServerKStats>>,
    /// `LB_STATS`, for the count of orphaned halves (a daemon-written slot).
    stats: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
}

impl Totals {
    pub(crate) fn open(instance: &str) -> Self {
        let path = crate::kernel::pin_dir(instance).join(lb_common::maps::SRV_KSTATS);
        let kstats = aya::maps::MapData::from_pin(&path)
            .ok()
            .and_then(|d| aya::maps::Map::from_map_data(d).ok())
            .and_then(|m| m.try_into().ok());
        if kstats.is_none() {
            tracing::warn!(
                "{} cannot be read: kernel-balanced connections are not added to the servers' totals",
                path.display()
            );
        }
        let stats_path = crate::kernel::pin_dir(instance).join(lb_common::maps::STATS);
        let stats = aya::maps::MapData::from_pin(&stats_path)
            .ok()
            .and_then(|d| aya::maps::Map::from_map_data(d).ok())
            .and_then(|m| m.try_into().ok());
        Self { kstats, stats }
    }

    /// `nat_orphan` in `LB_STATS` (CPU 0's slot holds the total; `lb_nat`
    /// never writes it).
    fn set_orphans(&mut self, total: u64) {
        let Some(st) = &mut self.stats else {
            return;
        };
        let Ok(cpus) = aya::util::nr_cpus() else {
            return;
        };
        let mut per = vec![0u64; cpus];
        per[0] = total;
        if let Ok(v) = aya::maps::PerCpuValues::try_from(per) {
            let _ = st.set(lb_common::stat::NAT_ORPHAN, v, 0);
        }
    }

    /// Only the servers of the path's backends (`servers[i]` set).
    pub(crate) fn add_to(&mut self, state: &State, servers: &[Option<NatServer>]) {
        let Some(k) = &self.kstats else {
            return;
        };
        for (i, s) in state.servers.iter().enumerate() {
            if servers.get(i).is_none_or(|n| n.is_none()) {
                continue;
            }
            let Ok(per) = k.get(&(i as u32), 0) else {
                continue;
            };
            let n: u64 = per.iter().map(|v| v.kernel_conns).sum();
            let old = s.kernel_seen.fetch_max(n, Ordering::Relaxed);
            if n > old {
                let new = n - old;
                s.total_conns.fetch_add(new, Ordering::Relaxed);
                s.admin
                    .last_sess_ns
                    .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
            }
        }
    }
}

/// Entries at which the LRU flow table is as good as full: 95% of what the
/// CPUs' local free lists (up to 128 nodes each, kernel/bpf/bpf_lru_list.c,
/// `LOCAL_FREE_TARGET`) leave in use.
fn full_mark(size: u32) -> u64 {
    let cpus = aya::util::nr_cpus().unwrap_or(1) as u64;
    (size as u64).saturating_sub(cpus * 128) * 95 / 100
}

/// SYNs `lb_nat` refused, said in the log (at most every 10 s per reason,
/// with the count since the last line): the counters alone would go unseen.
#[derive(Default)]
struct Refusals {
    seen: StdMap<&'static str, u64>,
    said_ns: StdMap<&'static str, u64>,
}

impl Refusals {
    fn report(&mut self, instance: &str, nat: &Nat, now_ns: u64) {
        let Ok(stats) = crate::kernel::pinned::stats(instance) else {
            return;
        };
        for (name, v) in stats {
            let why = match name {
                "nat_no_port" => format!(
                    "no free balancer port toward the chosen server (each server address and \
                     port has the ports {}-{}; lower the end of net.ipv4.ip_local_port_range \
                     for more)",
                    nat.ports.0, nat.ports.1
                ),
                "nat_table_full" => format!(
                    "the flow table is full ({} entries; raise global 'maxconn')",
                    nat.table_size
                ),
                "nat_full" => "every usable server is at its maxconn".to_string(),
                "nat_no_server" => {
                    "no server can take a flow (DOWN, drained or in maintenance)".to_string()
                }
                _ => continue,
            };
            let old = self.seen.get(name).copied().unwrap_or(0);
            let said = self.said_ns.get(name).copied().unwrap_or(0);
            if v > old && (said == 0 || now_ns - said >= 10_000_000_000) {
                tracing::warn!("data-path nat: {} SYN(s) refused: {why} ({name})", v - old);
                self.seen.insert(name, v);
                self.said_ns.insert(name, now_ns);
            }
        }
    }
}

impl super::kpick::TableSink for NatMaps {
    fn set_server(&mut self, idx: u32, s: &NatServer) -> Result<()> {
        NatMaps::set_server(self, idx, s).context("writing LB_NAT_SERVERS")
    }
    fn set_backend(&mut self, nb: u32, be: &lb_common::NatBackend, table: &[u32]) -> Result<()> {
        NatMaps::set_backend(self, nb, be, table).context("writing the NAT pick table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse_for_fuzzing(text).expect("valid")
    }

    const BASE: &str = "global\n    xdp-interface veth0\ndefaults\n    mode tcp\n    timeout client 5s\n    timeout server 5s\n    timeout connect 1s\n";

    #[test]
    fn wildcard_binds_take_the_interface_addresses() {
        let c = cfg(&format!(
            "{BASE}frontend f\n    bind *:5432\n    data-path nat\n    default_backend b\nbackend b\n    server s1 10.9.0.2:5432\n"
        ));
        let p = plan(&c, &|i| {
            assert_eq!(i, "veth0");
            vec!["10.8.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]
        });
        assert_eq!(p.client_ifaces, vec!["veth0".to_string()]);
        assert_eq!(p.backends, vec![0]);
        // As on the splice path, `*` listens on both families.
        assert_eq!(p.vips.len(), 2);
        assert_eq!(p.vips[0].0.port_host, 5432);
        assert_eq!(&p.vips[0].0.addr_be[..4], &[10, 8, 0, 1]);
        assert_eq!(p.vips[1].0.family, AF_INET6);
    }

    #[test]
    fn frontends_on_other_paths_are_not_planned() {
        let c = cfg(&format!(
            "{BASE}frontend f\n    bind 10.8.0.1:5432\n    default_backend b\nbackend b\n    server s1 10.9.0.2:5432\n"
        ));
        assert!(flows_wanted(&c).is_none());
        assert_eq!(plan(&c, &|_| Vec::new()), Plan::default());
    }

    #[test]
    fn flow_table_follows_maxconn_and_ports() {
        let c = cfg(&format!(
            "{BASE}frontend f\n    bind 10.8.0.1:5432\n    default_backend b\nbackend b\n    server s1 10.9.0.2:5432\n"
        ));
        assert_eq!(flows_wanted(&c), None, "no NAT frontend, no table");
        // 64 Ki running flows and 3 servers of 4,535 ports: 2 * (65,536 + 13,605).
        assert_eq!(table_size(None, 3, 4_535), 158_282);
        assert_eq!(table_size(Some(100_000), 1, 4_535), 209_070);
        assert_eq!(table_size(Some(10), 0, 0), 65_536, "at least 64 Ki");
        assert_eq!(table_size(Some(u32::MAX), 1, 1), 8 << 20, "at most 8 Mi");
    }
}
