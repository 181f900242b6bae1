//! `data-path ... connect`: this host's own clients balanced at `connect()`.
//! The kernel programs (lb-ebpf/src/connect.rs) pick from tables this module
//! keeps in step with the servers' state (through `kpick`, as the NAT path);
//! a connect to a frontend address becomes a connect to the server, with no
//! proxy in between. Remote clients keep the frontend's other path.
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lb_common::{BindKey, NatBackend, NatServer, NatVip, AF_INET, AF_INET6};

use super::kpick::{TableSink, Tables};
use crate::config::{Config, ConnectPath};
use crate::kernel::connect::ConnectMaps;
use crate::state::{NatMsg, State};

/// The tables are rewritten at once on a change; this often regardless
/// (slowstart ramps, totals).
const REFRESH: Duration = Duration::from_millis(100);

/// The cgroup the connect programs attach to, if any frontend asks for
/// connect-time balancing: the one the configuration names, else the
/// hierarchy's root. Frontends naming different cgroups are refused (one set
/// of programs serves them all), with the line.
pub fn cgroup_of(cfg: &Config) -> Result<Option<PathBuf>> {
    let mut chosen: Option<(&Option<String>, &crate::config::Origin)> = None;
    for f in &cfg.frontends {
        let Some(c) = &f.connect else { continue };
        let ConnectPath { cgroup } = &c.value;
        match chosen {
            None => chosen = Some((cgroup, &c.origin)),
            Some((first, at)) if first != cgroup => anyhow::bail!(
                "{}: frontend '{}' balances connects of cgroup {}, another frontend ({}) those \
                 of {}: one cgroup for every 'data-path ... connect' frontend",
                c.origin,
                f.name,
                cgroup.as_deref().unwrap_or("/ (the root)"),
                at,
                first.as_deref().unwrap_or("/ (the root)")
            ),
            Some(_) => {}
        }
    }
    let Some((cgroup, at)) = chosen else {
        return Ok(None);
    };
    let path = match cgroup {
        Some(p) => PathBuf::from(p),
        None => crate::kernel::connect::cgroup_root()
            .map_err(|e| anyhow::anyhow!("{at}: 'data-path connect': {e}"))?,
    };
    if !path.join("cgroup.procs").exists() {
        anyhow::bail!(
            "{at}: 'data-path connect': {} is not a cgroup v2 directory",
            path.display()
        );
    }
    Ok(Some(path))
}

/// This host's addresses (of every interface of this network namespace):
/// what a wildcard bind stands for.
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut ifa) } != 0 {
        return out;
    }
    let mut p = ifa;
    while !p.is_null() {
        let a = unsafe { (*p).ifa_addr };
        if !a.is_null() {
            match unsafe { (*a).sa_family } as i32 {
                libc::AF_INET => {
                    let sin = unsafe { &*(a as *const libc::sockaddr_in) };
                    out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(a as *const libc::sockaddr_in6) };
                    out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        p = unsafe { (*p).ifa_next };
    }
    unsafe { libc::freeifaddrs(ifa) };
    out.sort();
    out.dedup();
    out
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => a = v6.octets(),
    }
    a
}

/// Backends (config indexes) and frontend addresses of the connect path.
pub fn plan(cfg: &Config, host: &[IpAddr]) -> (Vec<usize>, Vec<(BindKey, NatVip)>) {
    let mut backends: Vec<usize> = Vec::new();
    let mut vips: Vec<(BindKey, NatVip)> = Vec::new();
    for (fi, f) in cfg.frontends.iter().enumerate() {
        if f.connect.is_none() {
            continue;
        }
        let Some(bi) = f.default_backend_idx else {
            continue;
        };
        let nb = match backends.iter().position(|&b| b == bi) {
            Some(i) => i,
            None => {
                backends.push(bi);
                backends.len() - 1
            }
        };
        for b in &f.binds {
            let addrs: Vec<IpAddr> = match b.addr {
                Some(a) if !a.is_unspecified() => vec![a],
                // `*` / `0.0.0.0` / `::`: every address of this host (a
                // wildcard v6 bind takes v4 clients too, as a dual-stack
                // listener does).
                Some(IpAddr::V4(_)) => host.iter().copied().filter(|a| a.is_ipv4()).collect(),
                _ => host.to_vec(),
            };
            for a in addrs {
                for port in b.port_first..=b.port_last {
                    let key = BindKey {
                        family: if a.is_ipv4() { AF_INET } else { AF_INET6 },
                        port_host: port as u32,
                        addr_be: addr16(a),
                    };
                    if !vips.iter().any(|(k, _)| *k == key) {
                        vips.push((
                            key,
                            NatVip {
                                frontend: fi as u32,
                                backend: nb as u32,
                                flags: 0,
                                _pad: 0,
                            },
                        ));
                    }
                }
            }
        }
    }
    (backends, vips)
}

impl TableSink for ConnectMaps {
    fn set_server(&mut self, idx: u32, s: &NatServer) -> Result<()> {
        ConnectMaps::set_server(self, idx, s).context("writing LB_CONN_SERVERS")
    }
    fn set_backend(&mut self, nb: u32, be: &NatBackend, table: &[u32]) -> Result<()> {
        ConnectMaps::set_backend(self, nb, be, table).context("writing the connect pick table")
    }
}

/// How often the socket table is checked against the sockets that exist.
const REAP: Duration = Duration::from_secs(10);

/// The connect path's maps and what was last written to them.
pub struct Local {
    maps: ConnectMaps,
    tables: Tables,
    vips: usize,
    /// Entries whose socket the last check did not find.
    missing: std::collections::HashSet<u64>,
}

impl Local {
    /// Fills the maps: this namespace's cookie, the frontend addresses, the
    /// servers and the pick tables.
    pub fn start(cfg: &Config, state: &State, mut maps: ConnectMaps) -> Result<Self> {
        let (backends, vips) = plan(cfg, &local_addresses());
        maps.set_netns(crate::kernel::connect::netns_cookie()?)?;
        maps.set_vips(&vips).context("writing LB_CONN_VIPS")?;
        let mut servers = vec![None; state.servers.len()];
        for &bi in &backends {
            for &si in &state.backends[bi].servers {
                let s = &state.servers[si as usize];
                let addr = s.addr();
                if addr.port() == 0 || addr.ip().is_unspecified() {
                    tracing::warn!(
                        "server '{}/{}' ({addr}) has no fixed address and port: \
                         'data-path connect' leaves its connects to the frontend's listener",
                        s.backend,
                        s.name()
                    );
                    continue;
                }
                servers[si as usize] = Some(NatServer {
                    addr_be: addr16(addr.ip()),
                    port_be: addr.port().to_be_bytes(),
                    family: if addr.is_ipv4() { AF_INET } else { AF_INET6 },
                    maxconn: s.effective_maxconn(),
                    ..Default::default()
                });
            }
        }
        let mut local = Local {
            maps,
            tables: Tables::new(backends, servers),
            vips: vips.len(),
            missing: Default::default(),
        };
        local.adopt(state);
        local.refresh(state)?;
        Ok(local)
    }

    /// Sockets a previous daemon connected (the table is pinned): each is
    /// counted on its server again, found by address (indexes change with
    /// the configuration), so that its close counts it out of the right one.
    fn adopt(&mut self, state: &State) {
        let (mut adopted, mut gone) = (0u64, 0u64);
        for (cookie, mut p) in self.maps.peers() {
            let idx = self
                .tables
                .servers
                .iter()
                .position(|s| {
                    s.is_some_and(|s| s.addr_be == p.srv_be && s.port_be == p.srv_port_be)
                })
                .map_or(u32::MAX, |i| i as u32);
            if idx != p.server {
                p.server = idx;
                self.maps.update_peer(cookie, &p);
            }
            match state.servers.get(idx as usize) {
                Some(s) => {
                    s.cur_conns.fetch_add(1, Ordering::Relaxed);
                    adopted += 1;
                }
                None => gone += 1,
            }
        }
        if adopted + gone > 0 {
            tracing::info!(
                "data-path connect: {adopted} socket(s) the previous daemon connected are \
                 counted on their servers again{}",
                if gone > 0 {
                    format!(", {gone} of servers no longer configured are not")
                } else {
                    String::new()
                }
            );
        }
    }

    /// Frontend addresses balanced at connect.
    pub fn vips(&self) -> usize {
        self.vips
    }

    /// Entries whose socket is gone without `lb_conns` seeing it close (a
    /// connect the kernel failed after the pick, before the socket asked
    /// for state callbacks): removed and counted out once two checks in a
    /// row missed them (a connect in progress is not yet in the kernel's
    /// tables). Returns how many.
    pub fn reap(&mut self, state: &State) -> usize {
        let Ok(live) = crate::kernel::sockdiag::cookies() else {
            return 0;
        };
        let mut missing = std::collections::HashSet::new();
        let mut reaped = 0;
        for (cookie, p) in self.maps.peers() {
            if live.contains(&cookie) {
                continue;
            }
            if !self.missing.contains(&cookie) {
                missing.insert(cookie);
                continue;
            }
            if self.maps.remove_peer(cookie) {
                if let Some(s) = state.servers.get(p.server as usize) {
                    let _ = s
                        .cur_conns
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                }
                reaped += 1;
            }
        }
        self.missing = missing;
        reaped
    }

    /// `shutdown sessions` for server `idx`: its sockets connected at
    /// connect are destroyed (the client sees ECONNABORTED, the server a
    /// reset). Returns how many.
    pub fn kill_server(&self, idx: u32) -> std::io::Result<usize> {
        let cookies: std::collections::HashSet<u64> = self
            .maps
            .peers()
            .into_iter()
            .filter(|(_, p)| p.server == idx)
            .map(|(c, _)| c)
            .collect();
        crate::kernel::sockdiag::destroy(&cookies)
    }

    pub fn refresh(&mut self, state: &State) -> Result<()> {
        self.tables
            .refresh(state, &mut self.maps, &|_, m| m.weight > 0)
    }
}

/// Keeps the tables in step (at once on a change, else every REFRESH) and
/// adds the connects each server took to its totals, until `stop`.
pub fn spawn(
    local: Local,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    instance: String,
) -> std::thread::JoinHandle<()> {
    let (tx, msgs) = std::sync::mpsc::channel::<NatMsg>();
    state.subscribe(tx);
    std::thread::Builder::new()
        .name("lb-connect".into())
        .spawn(move || {
            let mut local = local;
            let mut totals = super::nat::Totals::open(&instance);
            let mut last_reap = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(NatMsg::Kill(idx)) = msgs.recv_timeout(REFRESH) {
                    let name = state
                        .servers
                        .get(idx as usize)
                        .map(|s| s.name().to_string());
                    match local.kill_server(idx) {
                        Ok(n) => tracing::info!(
                            "data-path connect: {n} socket(s) connected to server {} destroyed",
                            name.unwrap_or_default()
                        ),
                        Err(e) => tracing::warn!(
                            "data-path connect: destroying the sockets of server {}: {e} \
                             (the kernel needs CONFIG_INET_DIAG_DESTROY)",
                            name.unwrap_or_default()
                        ),
                    }
                }
                if let Err(e) = local.refresh(&state) {
                    tracing::warn!("data-path connect: {e:#}");
                }
                totals.add_to(&state, &local.tables.servers);
                local.tables.wake_queues(&state);
                if last_reap.elapsed() >= REAP {
                    last_reap = std::time::Instant::now();
                    let n = local.reap(&state);
                    if n > 0 {
                        tracing::info!(
                            "data-path connect: {n} socket(s) gone without a close seen \
                             (connect failed after the pick): counted out"
                        );
                    }
                }
            }
        })
        .expect("spawning the connect thread")
}
