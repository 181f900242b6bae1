//! Runtime server state: what health checks decide, what connections count, and
//! the backend choice. Published to the SRV_STATE map, which is what `lb show`
//! and later restarts read.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use lb_common::{ServerMeta, ServerState, SRV_DOWN, SRV_MAINT, SRV_UP};

use crate::balance::{Algo, Balancer, Candidate};
use crate::config::{Backend, Balance, CheckParams, Config, HashMethod, ProxyProtocol};

/// The balancing algorithm a backend's config asks for.
pub fn algo_of(b: &Backend) -> Algo {
    match b.balance {
        Balance::RoundRobin => Algo::RoundRobin,
        Balance::StaticRr => Algo::StaticRr,
        Balance::LeastConn => Algo::LeastConn,
        Balance::First => Algo::First,
        Balance::Random { draws } => Algo::Random { draws },
        Balance::Source => {
            let ht = b.hash_type.as_ref().map(|h| h.value).unwrap_or_default();
            Algo::Source {
                consistent: ht.method == HashMethod::Consistent,
                avalanche: ht.avalanche,
            }
        }
    }
}

/// One configured server, shared by the accept path, health checks and the splice
/// manager.
#[derive(Debug)]
pub struct Server {
    /// Global index (slot in the server maps).
    pub idx: u32,
    pub backend: String,
    pub name: String,
    pub addr: SocketAddr,
    pub check: Option<CheckParams>,
    /// Numeric id (`id`, default the position in the backend, from 1).
    pub id: u32,
    /// `maxconn` (0: unlimited).
    pub maxconn: u32,
    /// `backup`: used only when no active server is UP.
    pub backup: bool,
    /// `send-proxy` / `send-proxy-v2`.
    pub send_proxy: Option<crate::proxy_proto::Version>,
    /// `on-marked-down shutdown-sessions`.
    pub shutdown_on_down: bool,
    /// `on-marked-up shutdown-backup-sessions`.
    pub shutdown_backups_on_up: bool,
    /// `slowstart`: weight and maxconn ramp up over this after coming back UP.
    pub slowstart: Option<std::time::Duration>,
    /// CLOCK_MONOTONIC ns of the last DOWN -> UP transition; 0: UP since start
    /// (no ramp at start-up, as HAProxy).
    pub up_since_ns: AtomicU64,
    pub state: AtomicU32,
    pub weight: AtomicU32,
    pub health: AtomicU32,
    pub cur_conns: AtomicU32,
    pub total_conns: AtomicU64,
    pub user_bytes_in: AtomicU64,
    pub user_bytes_out: AtomicU64,
    pub last_check: AtomicU32,
    /// The last check's `lb_common::chk` code and layer-7 code (HTTP status...),
    /// for the runtime API and metrics (the full result is in LB_SRV_CHECK).
    pub check_status: AtomicU32,
    pub check_code: AtomicU32,
    pub check_us: AtomicU32,
    pub checks_failed: AtomicU64,
    pub state_changes: AtomicU64,
    /// The agent (`agent-check`) said `down`/`failed`/`stopped`: the server
    /// stays DOWN whatever its health checks say until the agent says `up`.
    pub agent_down: std::sync::atomic::AtomicBool,
    /// Wakes every userspace-copied session of this server to reset it
    /// (`shutdown sessions`, `on-marked-down shutdown-sessions`).
    pub kill: tokio::sync::Notify,
    /// Runtime API flags and counters (drain, maxconn override, smax, ...).
    pub admin: crate::admin::ServerAdmin,
}

impl Server {
    /// Fraction (0..=1) of the slow-start ramp done; 1 without slowstart.
    fn ramp(&self) -> f64 {
        let (Some(ss), since) = (self.slowstart, self.up_since_ns.load(Ordering::Relaxed)) else {
            return 1.0;
        };
        if since == 0 || ss.is_zero() {
            return 1.0;
        }
        let elapsed = crate::sys::monotonic_ns().saturating_sub(since) as f64;
        (elapsed / ss.as_nanos() as f64).min(1.0)
    }

    /// The weight balancing uses now: the configured one, ramped during
    /// slowstart (never below 1 while the configured weight is not 0).
    pub fn effective_weight(&self) -> u32 {
        let w = self.weight.load(Ordering::Relaxed);
        if w == 0 || self.admin.refuses_new() {
            return 0;
        }
        ((w as f64 * self.ramp()).ceil() as u32).clamp(1, w)
    }

    /// `maxconn` ramped during slowstart like the weight (0: unlimited).
    pub fn effective_maxconn(&self) -> u32 {
        let maxconn = self.configured_maxconn();
        if maxconn == 0 {
            return 0;
        }
        ((maxconn as f64 * self.ramp()).ceil() as u32).clamp(1, maxconn)
    }

    /// `maxconn` from the config, or from `set maxconn server` (0: unlimited).
    pub fn configured_maxconn(&self) -> u32 {
        match self.admin.maxconn_override.load(Ordering::Relaxed) {
            crate::admin::NO_OVERRIDE => self.maxconn,
            n => n,
        }
    }

    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == SRV_UP
    }

    pub fn snapshot(&self) -> ServerState {
        ServerState {
            state: self.state.load(Ordering::Relaxed),
            weight: self.weight.load(Ordering::Relaxed),
            health: self.health.load(Ordering::Relaxed),
            cur_conns: self.cur_conns.load(Ordering::Relaxed),
            total_conns: self.total_conns.load(Ordering::Relaxed),
            user_bytes_in: self.user_bytes_in.load(Ordering::Relaxed),
            user_bytes_out: self.user_bytes_out.load(Ordering::Relaxed),
            last_check: self.last_check.load(Ordering::Relaxed),
            check_us: self.check_us.load(Ordering::Relaxed),
            checks_failed: self.checks_failed.load(Ordering::Relaxed),
            state_changes: self.state_changes.load(Ordering::Relaxed),
            admin_flags: self.admin_flags(),
            iweight: self.admin.initial_weight,
        }
    }

    /// The runtime API's flags as [`lb_common::adm`] bits.
    pub fn admin_flags(&self) -> u32 {
        use lb_common::adm;
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        bit(self.state.load(Ordering::Relaxed) == SRV_MAINT, adm::FMAINT)
            | bit(self.admin.drain.load(Ordering::Relaxed), adm::FDRAIN)
            | bit(
                self.admin.checks_disabled.load(Ordering::Relaxed),
                adm::CHECKS_PAUSED,
            )
            | bit(self.admin.stopping.load(Ordering::Relaxed), adm::STOPPING)
    }

    pub fn meta(&self) -> ServerMeta {
        let mut m = ServerMeta::default();
        copy_str(&mut m.name, &self.name);
        copy_str(&mut m.backend, &self.backend);
        match self.addr {
            SocketAddr::V4(a) => {
                m.family = lb_common::AF_INET;
                m.addr_be[..4].copy_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                m.family = lb_common::AF_INET6;
                m.addr_be.copy_from_slice(&a.ip().octets());
            }
        }
        m.port_host = self.addr.port() as u32;
        m.in_use = 1;
        m
    }
}

/// NUL-padded copy, truncated on a char boundary.
pub fn copy_str(dst: &mut [u8], s: &str) {
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

pub fn read_str(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    /// Global server indexes of this backend's servers.
    pub servers: Vec<u32>,
    /// `option allbackups`: every UP backup server is used, not only the first.
    pub allbackups: bool,
    balancer: Mutex<Balancer>,
    /// Signalled (one waiter at a time, oldest first) when a server of this
    /// backend frees a connection slot.
    pub slot_freed: tokio::sync::Notify,
    /// Connections waiting for a slot (HAProxy's backend queue).
    pub queued: AtomicU32,
    /// Queue limit: the sum of the servers' `maxqueue` when every server has
    /// one, else 0 (unlimited).
    pub maxqueue: u32,
    /// Queue, connect and total times of the backend's recent sessions.
    pub times: crate::admin::SessionTimes,
}

/// All servers and backends of the running config.
#[derive(Debug)]
pub struct State {
    pub servers: Vec<Server>,
    pub backends: Vec<BackendState>,
    /// Per-frontend counters and the live sessions (runtime API, tcplog).
    pub frontends: Vec<crate::admin::FrontendStats>,
    pub sessions: crate::admin::Sessions,
}

impl State {
    pub fn from_config(cfg: &Config) -> Self {
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        for b in &cfg.backends {
            let mut idxs = Vec::new();
            for (pos, s) in b.servers.iter().enumerate() {
                let idx = servers.len() as u32;
                idxs.push(idx);
                let check = s.check.then_some(s.check_params);
                let (state, health) = if s.disabled {
                    (SRV_MAINT, 0)
                } else {
                    // HAProxy starts servers UP with health = rise: up, but the
                    // first failed check takes them down.
                    (SRV_UP, s.check_params.rise)
                };
                servers.push(Server {
                    idx,
                    backend: b.name.clone(),
                    name: s.name.clone(),
                    addr: s.addr,
                    check,
                    id: s.id.unwrap_or(pos as u32 + 1),
                    maxconn: s.maxconn.unwrap_or(0),
                    backup: s.backup,
                    send_proxy: s.send_proxy.map(|p| match p {
                        ProxyProtocol::V1 => crate::proxy_proto::Version::V1,
                        ProxyProtocol::V2 => crate::proxy_proto::Version::V2,
                    }),
                    shutdown_on_down: s.on_marked_down_shutdown,
                    shutdown_backups_on_up: s.on_marked_up_shutdown_backup,
                    slowstart: s.slowstart,
                    up_since_ns: AtomicU64::new(0),
                    state: AtomicU32::new(state),
                    weight: AtomicU32::new(s.weight),
                    health: AtomicU32::new(health),
                    cur_conns: AtomicU32::new(0),
                    total_conns: AtomicU64::new(0),
                    user_bytes_in: AtomicU64::new(0),
                    user_bytes_out: AtomicU64::new(0),
                    last_check: AtomicU32::new(2),
                    check_status: AtomicU32::new(lb_common::chk::INI),
                    check_code: AtomicU32::new(0),
                    check_us: AtomicU32::new(0),
                    checks_failed: AtomicU64::new(0),
                    state_changes: AtomicU64::new(0),
                    agent_down: std::sync::atomic::AtomicBool::new(false),
                    kill: tokio::sync::Notify::new(),
                    admin: crate::admin::ServerAdmin::new(s.weight),
                });
            }
            backends.push(BackendState {
                name: b.name.clone(),
                servers: idxs,
                allbackups: b.allbackups.is_some(),
                balancer: Mutex::new(Balancer::new(algo_of(b))),
                slot_freed: tokio::sync::Notify::new(),
                queued: AtomicU32::new(0),
                maxqueue: if b.servers.iter().all(|s| s.maxqueue.unwrap_or(0) > 0) {
                    b.servers.iter().map(|s| s.maxqueue.unwrap_or(0)).sum()
                } else {
                    0
                },
                times: Default::default(),
            });
        }
        let frontends = cfg.frontends.iter().map(|_| Default::default()).collect();
        Self {
            servers,
            backends,
            frontends,
            sessions: Default::default(),
        }
    }

    /// Picks a server of `backend` with its algorithm among the servers that can
    /// take a connection: UP with a non-zero weight, active ones first; backup
    /// servers only when no active server is UP (the first one, or all with
    /// `option allbackups`). None when no server can take it.
    /// `avoid`: a server that just failed, skipped if any other can take it.
    /// The chosen server's connection is counted; [`State::release`] ends it.
    pub fn pick(
        &self,
        backend: usize,
        client: Option<std::net::IpAddr>,
        avoid: Option<u32>,
    ) -> Option<&Server> {
        let b = self.backends.get(backend)?;
        let members: Vec<&Server> = b
            .servers
            .iter()
            .map(|&i| &self.servers[i as usize])
            .collect();
        let usable = |s: &Server| s.is_up() && s.effective_weight() > 0;
        let any_active = members.iter().any(|s| !s.backup && usable(s));
        let first_backup = members
            .iter()
            .filter(|s| s.backup && usable(s))
            .min_by_key(|s| s.id)
            .map(|s| s.idx);
        let eligible = |s: &Server| {
            usable(s)
                && if any_active {
                    !s.backup
                } else {
                    s.backup && (b.allbackups || Some(s.idx) == first_backup)
                }
        };
        let queued = b.queued.load(Ordering::Relaxed);
        let cands: Vec<Candidate> = members
            .iter()
            .map(|s| {
                let served = s.cur_conns.load(Ordering::Relaxed);
                let maxconn = s.effective_maxconn();
                // A server at its maxconn takes nobody until a slot frees.
                let full = maxconn > 0 && served >= maxconn;
                Candidate {
                    weight: if eligible(s) && !full {
                        s.effective_weight()
                    } else {
                        0
                    },
                    served,
                    queued,
                    maxconn,
                    id: s.id,
                }
            })
            .collect();
        let mut cands = cands;
        if let Some(a) = avoid {
            let others = members
                .iter()
                .zip(&cands)
                .any(|(s, c)| s.idx != a && c.weight > 0);
            if others {
                for (s, c) in members.iter().zip(cands.iter_mut()) {
                    if s.idx == a {
                        c.weight = 0;
                    }
                }
            }
        }
        // The choice and the count happen under one lock, so that two accepts
        // can never both take a server's last slot.
        let mut balancer = b.balancer.lock().unwrap_or_else(|e| e.into_inner());
        let i = balancer.pick(&cands, client)?;
        let s = members[i];
        let cur = s.cur_conns.fetch_add(1, Ordering::Relaxed) + 1;
        s.total_conns.fetch_add(1, Ordering::Relaxed);
        s.admin.max_conns.fetch_max(cur, Ordering::Relaxed);
        s.admin
            .last_sess_ns
            .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        Some(s)
    }

    /// True when some server of `backend` could take the connection once a slot
    /// frees: UP (or a usable backup) but at its maxconn.
    pub fn all_full(&self, backend: usize) -> bool {
        let Some(b) = self.backends.get(backend) else {
            return false;
        };
        b.servers.iter().any(|&i| {
            let s = &self.servers[i as usize];
            let maxconn = s.effective_maxconn();
            s.is_up()
                && s.effective_weight() > 0
                && maxconn > 0
                && s.cur_conns.load(Ordering::Relaxed) >= maxconn
        })
    }

    /// A connection of server `idx` ended: count it and wake the oldest waiter
    /// of the backend queue.
    pub fn release(&self, idx: u32) {
        let Some(s) = self.servers.get(idx as usize) else {
            return;
        };
        s.cur_conns.fetch_sub(1, Ordering::Relaxed);
        if s.configured_maxconn() > 0 {
            if let Some(b) = self.backend_of(idx) {
                b.slot_freed.notify_one();
            }
        }
    }

    /// The backend a server belongs to.
    pub fn backend_of(&self, idx: u32) -> Option<&BackendState> {
        self.backends.iter().find(|b| b.servers.contains(&idx))
    }
}

/// Applies one health-check result with HAProxy's state machine (health in
/// 0..rise+fall-1, UP while health >= rise). Returns Some(new state) on a change.
pub fn apply_check(s: &Server, passed: bool, p: &CheckParams) -> Option<u32> {
    let top = p.rise + p.fall - 1;
    let mut h = s.health.load(Ordering::Relaxed);
    if passed {
        if h < top {
            h += 1;
            if h >= p.rise {
                h = top;
            }
        }
    } else {
        s.checks_failed.fetch_add(1, Ordering::Relaxed);
        if h > 0 {
            h -= 1;
            if h < p.rise {
                h = 0;
            }
        }
    }
    s.health.store(h, Ordering::Relaxed);
    s.last_check.store(passed as u32, Ordering::Relaxed);
    let cur = s.state.load(Ordering::Relaxed);
    if cur == SRV_MAINT {
        return None;
    }
    let want = if h >= p.rise && !s.agent_down.load(Ordering::Relaxed) {
        SRV_UP
    } else {
        SRV_DOWN
    };
    if want != cur {
        if want == SRV_UP {
            s.up_since_ns
                .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        }
        s.state.store(want, Ordering::Relaxed);
        s.state_changes.fetch_add(1, Ordering::Relaxed);
        Some(want)
    } else {
        None
    }
}

pub fn state_name(state: u32) -> &'static str {
    match state {
        SRV_UP => "UP",
        SRV_DOWN => "DOWN",
        SRV_MAINT => "MAINT",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(rise: u32) -> Server {
        Server {
            idx: 0,
            backend: "b".into(),
            name: "s".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            check: None,
            id: 1,
            maxconn: 0,
            backup: false,
            send_proxy: None,
            shutdown_on_down: false,
            shutdown_backups_on_up: false,
            slowstart: None,
            up_since_ns: AtomicU64::new(0),
            state: AtomicU32::new(SRV_UP),
            weight: AtomicU32::new(1),
            health: AtomicU32::new(rise),
            cur_conns: AtomicU32::new(0),
            total_conns: AtomicU64::new(0),
            user_bytes_in: AtomicU64::new(0),
            user_bytes_out: AtomicU64::new(0),
            last_check: AtomicU32::new(2),
            check_status: AtomicU32::new(lb_common::chk::INI),
            check_code: AtomicU32::new(0),
            check_us: AtomicU32::new(0),
            checks_failed: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            agent_down: std::sync::atomic::AtomicBool::new(false),
            kill: tokio::sync::Notify::new(),
            admin: crate::admin::ServerAdmin::new(1),
        }
    }

    #[test]
    fn haproxy_health_state_machine() {
        let p = CheckParams::default(); // rise 2, fall 3
        let s = server(p.rise);
        // First pass after start: health jumps to rise+fall-1.
        assert_eq!(apply_check(&s, true, &p), None);
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
        // fall-1 failures keep it UP, the fall-th takes it DOWN.
        assert_eq!(apply_check(&s, false, &p), None);
        assert_eq!(apply_check(&s, false, &p), None);
        assert_eq!(apply_check(&s, false, &p), Some(SRV_DOWN));
        assert_eq!(s.health.load(Ordering::Relaxed), 0);
        // rise passes bring it back.
        assert_eq!(apply_check(&s, true, &p), None);
        assert_eq!(apply_check(&s, true, &p), Some(SRV_UP));
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn first_failure_after_start_takes_server_down() {
        let p = CheckParams::default();
        let s = server(p.rise);
        assert_eq!(apply_check(&s, false, &p), Some(SRV_DOWN));
    }

    #[test]
    fn slowstart_ramps_weight_and_maxconn_after_coming_back() {
        let mut s = server(2);
        s.weight = AtomicU32::new(100);
        s.maxconn = 50;
        s.slowstart = Some(std::time::Duration::from_secs(10));
        // UP since start-up: no ramp.
        assert_eq!(s.effective_weight(), 100);
        // Just came back: near the bottom, never 0.
        s.up_since_ns
            .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        assert!(s.effective_weight() <= 2, "{}", s.effective_weight());
        assert!(s.effective_maxconn() >= 1 && s.effective_maxconn() <= 2);
        // Half way: half the weight.
        let half = crate::sys::monotonic_ns() - 5_000_000_000;
        s.up_since_ns.store(half, Ordering::Relaxed);
        let w = s.effective_weight();
        assert!((49..=52).contains(&w), "{w}");
        // Done: full weight.
        s.up_since_ns.store(1, Ordering::Relaxed);
        assert_eq!(s.effective_weight(), 100);
        assert_eq!(s.effective_maxconn(), 50);
    }

    #[test]
    fn copy_str_truncates_on_char_boundary() {
        let mut b = [0u8; 4];
        copy_str(&mut b, "aé€");
        assert_eq!(read_str(&b), "aé");
    }
}
