//! Runtime server state: what health checks decide, what connections count, and
//! the backend choice. Published to the SRV_STATE map, which is what `lb show`
//! and later restarts read.
pub mod admin;
pub mod balance;
pub mod persist;

/// Where server state changes go: the maps readers see, and what a change
/// triggers (`on-marked-down shutdown-sessions`, ...). One implementation,
/// the daemon's publisher; the health checks, the agent and the runtime API
/// all report through it.
pub trait Publish: Send + Sync {
    /// Server `idx` changed: its LB_SRV_STATE entry is rewritten.
    fn state(&self, idx: u32);
    /// Server `idx` changed health or administrative state: [`Publish::state`]
    /// and what such a change triggers.
    fn changed(&self, idx: u32);
    /// The result of a health check of server `idx` (LB_SRV_CHECK).
    fn check(&self, idx: u32, c: &lb_common::ServerCheck);
}

/// Publishes nothing (unit tests).
pub struct NoPublish;

impl Publish for NoPublish {
    fn state(&self, _: u32) {}
    fn changed(&self, _: u32) {}
    fn check(&self, _: u32, _: &lb_common::ServerCheck) {}
}

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lb_common::{ServerMeta, ServerState};

use crate::config::{Backend, Balance, CheckParams, Config, HashMethod};
use crate::state::balance::{Algo, Balancer, Member};

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

/// A server's current connections: in this process until the daemon binds it
/// to the kernel's LB_SRV_CONNS slot ([`State::use_kernel_counts`]), where the
/// A server's operational state. It becomes an integer (`lb_common::SRV_*`)
/// only where it crosses into a map or the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrvState {
    Down,
    Up,
    /// Administratively disabled (`disabled`, `set server ... state maint`).
    Maint,
}

impl SrvState {
    /// The value the maps hold.
    pub fn code(self) -> u32 {
        match self {
            Self::Down => lb_common::SRV_DOWN,
            Self::Up => lb_common::SRV_UP,
            Self::Maint => lb_common::SRV_MAINT,
        }
    }

    /// From a map value; `None` for a value no daemon writes.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            lb_common::SRV_DOWN => Some(Self::Down),
            lb_common::SRV_UP => Some(Self::Up),
            lb_common::SRV_MAINT => Some(Self::Maint),
            _ => None,
        }
    }

    /// As `lb show` and the logs print it.
    pub fn name(self) -> &'static str {
        lb_common::state_name(self.code())
    }
}

/// A [`SrvState`] that the health checks, the runtime API and the balancers
/// share without a lock.
#[derive(Debug)]
pub struct StateCell(AtomicU32);

impl StateCell {
    pub fn new(s: SrvState) -> Self {
        Self(AtomicU32::new(s.code()))
    }

    pub fn get(&self) -> SrvState {
        // Only `set` writes the cell, so the code is always a valid one.
        SrvState::from_code(self.0.load(Ordering::Relaxed)).unwrap_or(SrvState::Down)
    }

    pub fn set(&self, s: SrvState) {
        self.0.store(s.code(), Ordering::Relaxed);
    }
}

/// `lb_conns` sock_ops program counts out connections whose socket closed.
#[derive(Debug, Default)]
pub struct ConnCount {
    local: AtomicU32,
    shared: std::sync::atomic::AtomicPtr<AtomicU32>,
}

impl std::ops::Deref for ConnCount {
    type Target = AtomicU32;

    fn deref(&self) -> &AtomicU32 {
        let p = self.shared.load(Ordering::Acquire);
        if p.is_null() {
            &self.local
        } else {
            // Points into the LB_SRV_CONNS mapping, which lives as long as the
            // process (see bpf::ConnTable).
            unsafe { &*p }
        }
    }
}

/// One configured server, shared by the accept path, health checks and the splice
/// manager.
#[derive(Debug)]
pub struct Server {
    /// The generation of the [`State`] this server belongs to.
    generation: Arc<Generation>,
    /// Global index (slot in the server maps).
    pub idx: u32,
    /// Index of its backend in [`State::backends`], and its own position in
    /// that backend's `servers`.
    pub backend_idx: u32,
    pub backend_pos: u32,
    pub backend: String,
    /// The `server` line as configured; everything below is live state.
    pub conf: Arc<crate::config::Server>,
    /// Numeric id (`id`, default the position in the backend, from 1).
    pub id: u32,
    /// CLOCK_MONOTONIC ns of the last DOWN -> UP transition; 0: UP since start
    /// (no ramp at start-up, as HAProxy).
    pub up_since_ns: AtomicU64,
    pub state: StateCell,
    pub weight: AtomicU32,
    pub health: AtomicU32,
    pub cur_conns: ConnCount,
    pub total_conns: AtomicU64,
    /// The kernel's count of connections it balanced to this server with no
    /// proxy (NAT flows, connects), as far as added to `total_conns`.
    pub kernel_seen: AtomicU64,
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
    /// Runtime API flags and counters (drain, maxconn override, smax, ...).
    pub admin: crate::state::admin::ServerAdmin,
    /// Where connections go: the configured address, or the last one DNS
    /// gave (`resolvers`).
    pub live_addr: std::sync::RwLock<SocketAddr>,
    /// No address (`init-addr none`, or DNS has none for it): in
    /// maintenance until one comes (HAProxy's "resolution" MAINT).
    pub no_addr: std::sync::atomic::AtomicBool,
}

impl Server {
    /// This server changed in a way the balancers must see on their next
    /// pick (state, weight, admin flags).
    pub fn touch(&self) {
        self.generation.bump();
    }

    /// Fraction (0..=1) of the slow-start ramp done; 1 without slowstart.
    pub fn ramp(&self) -> f64 {
        let (Some(ss), since) = (
            self.conf.params.slowstart,
            self.up_since_ns.load(Ordering::Relaxed),
        ) else {
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
            crate::state::admin::NO_OVERRIDE => self.maxconn(),
            n => n,
        }
    }

    pub fn name(&self) -> &str {
        &self.conf.name
    }

    pub fn addr(&self) -> SocketAddr {
        *self.live_addr.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a connection whose client connected to `dst` goes: the
    /// server's address, with the client's destination port when the
    /// server has none (`server s 10.0.0.1`) or that port plus an offset
    /// (`10.0.0.1:+1000`).
    pub fn target(&self, dst: Option<SocketAddr>) -> SocketAddr {
        let a = self.addr();
        let port = match (self.conf.port_mode, dst) {
            (crate::config::ServerPort::Fixed, _) | (_, None) => return a,
            (crate::config::ServerPort::SameAsClient, Some(d)) => d.port(),
            (crate::config::ServerPort::Offset(n), Some(d)) => {
                (i32::from(d.port()) + n).clamp(1, 65535) as u16
            }
        };
        SocketAddr::new(a.ip(), port)
    }

    /// A new port (`set server addr ... port`).
    pub fn set_port(&self, port: u16) {
        self.live_addr
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_port(port);
        self.touch();
    }

    /// A new address from DNS or the runtime API (`None`: none for this
    /// server). Leaving or
    /// entering the no-address maintenance changes the state: back to what
    /// the checks say (DOWN until they pass; UP without checks), or MAINT.
    /// Returns what changed, for the log; None when nothing did.
    pub fn set_addr(&self, addr: Option<std::net::IpAddr>) -> Option<String> {
        let old = self.addr();
        let had = !self.no_addr.load(Ordering::Relaxed);
        let change = match (had, addr) {
            (true, Some(ip)) if ip == old.ip() => return None,
            (false, None) => return None,
            (_, Some(ip)) => {
                *self.live_addr.write().unwrap_or_else(|e| e.into_inner()) =
                    SocketAddr::new(ip, old.port());
                if had {
                    format!("changed its IP from {} to {ip}", old.ip())
                } else {
                    self.no_addr.store(false, Ordering::Relaxed);
                    // `init-addr none` marks the server disabled until it
                    // has an address; a `disabled` one stays in MAINT.
                    let disabled = self.conf.params.disabled && !self.conf.unresolved;
                    if self.state.get() == SrvState::Maint && !disabled {
                        let up = self.check().is_none();
                        if !up {
                            self.health.store(0, Ordering::Relaxed);
                        } else {
                            self.up_since_ns
                                .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
                        }
                        self.state
                            .set(if up { SrvState::Up } else { SrvState::Down });
                        self.state_changes.fetch_add(1, Ordering::Relaxed);
                        self.admin.note_change(up);
                    }
                    format!("is given the IP {ip} and leaves maintenance")
                }
            }
            (true, None) => {
                self.no_addr.store(true, Ordering::Relaxed);
                if self.state.get() != SrvState::Maint {
                    self.state.set(SrvState::Maint);
                    self.state_changes.fetch_add(1, Ordering::Relaxed);
                    self.admin
                        .last_change_ns
                        .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
                }
                "is going DOWN for maintenance (No IP for server )".to_string()
            }
        };
        self.touch();
        Some(change)
    }

    /// The health-check settings, when `check` is on.
    pub fn check(&self) -> Option<CheckParams> {
        self.conf
            .params
            .check
            .then_some(self.conf.params.check_params)
    }

    /// `maxconn` from the config (0: unlimited).
    pub fn maxconn(&self) -> u32 {
        self.conf.params.maxconn.unwrap_or(0)
    }

    /// `backup`: used only when no active server is UP.
    pub fn backup(&self) -> bool {
        self.conf.params.backup
    }

    pub fn is_up(&self) -> bool {
        self.state.get() == SrvState::Up
    }

    pub fn snapshot(&self) -> ServerState {
        ServerState {
            state: self.state.get().code(),
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
        bit(self.state.get() == SrvState::Maint, adm::FMAINT)
            | bit(self.admin.drain.load(Ordering::Relaxed), adm::FDRAIN)
            | bit(
                self.admin.checks_disabled.load(Ordering::Relaxed),
                adm::CHECKS_PAUSED,
            )
            | bit(self.admin.stopping.load(Ordering::Relaxed), adm::STOPPING)
    }

    pub fn meta(&self) -> ServerMeta {
        let mut m = ServerMeta::default();
        copy_str(&mut m.name, self.name());
        copy_str(&mut m.backend, &self.backend);
        match self.addr() {
            SocketAddr::V4(a) => {
                m.family = lb_common::AF_INET;
                m.addr_be[..4].copy_from_slice(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                m.family = lb_common::AF_INET6;
                m.addr_be.copy_from_slice(&a.ip().octets());
            }
        }
        m.port_host = self.addr().port() as u32;
        m.in_use = 1;
        m
    }
}

pub use crate::kernel::{copy_str, read_str};

/// Bumped by every change that can change which servers a backend may pick
/// or their weights (states, weights, admin flags, runtime API commands, check
/// results): the next pick of every backend rebuilds its balancer. One per
/// [`State`], shared by its servers.
#[derive(Default)]
pub struct Generation {
    n: AtomicU64,
    /// Told of every change: the data paths that keep their own copy of the
    /// choice (the kernel's pick tables) rewrite it at once.
    wake: std::sync::Mutex<Vec<std::sync::mpsc::Sender<NatMsg>>>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Generation").field(&self.get()).finish()
    }
}

impl Generation {
    fn bump(&self) {
        self.n.fetch_add(1, Ordering::Release);
        for tx in self.wake.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = tx.send(NatMsg::Changed);
        }
    }

    fn get(&self) -> u64 {
        self.n.load(Ordering::Acquire)
    }
}

/// What the kernel paths' threads are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatMsg {
    /// `shutdown sessions`: reset every connection of this server the path
    /// holds (NAT flows, connected sockets).
    Kill(u32),
    /// A server's state, weight or admin flags changed: rewrite the tables.
    Changed,
}

/// A backend's balancer and when it was last rebuilt.
#[derive(Debug)]
struct PickState {
    bal: Balancer,
    /// The state's [`Generation`] at the last rebuild.
    gen: u64,
    /// CLOCK_MONOTONIC ns of the next forced rebuild.
    refresh_at_ns: u64,
}

#[derive(Debug)]
pub struct BackendState {
    pub name: String,
    /// Global server indexes of this backend's servers.
    pub servers: Vec<u32>,
    /// `option allbackups`: every UP backup server is used, not only the first.
    pub allbackups: bool,
    /// The backend's algorithm (also in its balancer, readable without the lock).
    pub algo: Algo,
    balancer: Mutex<PickState>,
    /// Signalled (one waiter at a time, oldest first) when a server of this
    /// backend frees a connection slot.
    pub slot_freed: tokio::sync::Notify,
    /// Connections waiting for a slot (HAProxy's backend queue).
    pub queued: AtomicU32,
    /// Queue limit: the sum of the servers' `maxqueue` when every server has
    /// one, else 0 (unlimited).
    pub maxqueue: u32,
    /// Queue, connect and total times of the backend's recent sessions.
    pub times: crate::state::admin::SessionTimes,
}

/// What the data path did with whole connections; the daemon copies these
/// into `LB_STATS` (`stat::CONN_SPLICED` on) for `lb show stats`.
#[derive(Debug, Default)]
pub struct PathStats {
    pub spliced: AtomicU64,
    pub copied: AtomicU64,
    pub refused: AtomicU64,
}

impl PathStats {
    /// (LB_STATS index, value) of each counter.
    pub fn values(&self) -> [(u32, u64); 3] {
        use lb_common::stat;
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            (stat::CONN_SPLICED, v(&self.spliced)),
            (stat::CONN_COPIED, v(&self.copied)),
            (stat::CONN_REFUSED, v(&self.refused)),
        ]
    }
}

/// All servers and backends of the running config.
#[derive(Debug)]
pub struct State {
    pub servers: Vec<Server>,
    pub backends: Vec<BackendState>,
    /// Per-frontend counters and the live sessions (runtime API, tcplog).
    pub frontends: Vec<crate::state::admin::FrontendStats>,
    pub sessions: crate::state::admin::Sessions,
    /// lb is stopping: sessions on the userspace copy end now, with FINs if
    /// nothing is left on its way, else with resets (each session is told
    /// through [`Session::end`](crate::state::admin::Session::end); this
    /// flag stops one that starts copying afterwards).
    pub closing: std::sync::atomic::AtomicBool,
    pub paths: PathStats,
    /// Kernel-side counts and the server-socket registry, when `lb_conns` runs.
    kernel_conns: std::sync::OnceLock<crate::kernel::ConnTable>,
    generation: Arc<Generation>,
}

impl State {
    /// Something that changes the balancers' choice changed (a runtime API
    /// command, a restored state): every backend rebuilds on its next pick.
    pub fn touch(&self) {
        self.generation.bump();
    }

    /// `tx` (a kernel path's thread) hears of every change of a server's
    /// state, weight or flags, and of every `shutdown sessions`.
    pub fn subscribe(&self, tx: std::sync::mpsc::Sender<NatMsg>) {
        self.generation
            .wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
    }

    /// Tells the kernel paths' threads to reset server `idx`'s connections.
    pub fn kill_kernel_sessions(&self, idx: u32) {
        for tx in self
            .generation
            .wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = tx.send(NatMsg::Kill(idx));
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        let generation = Arc::new(Generation::default());
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        for b in &cfg.backends {
            let mut idxs = Vec::new();
            for (pos, s) in b.servers.iter().enumerate() {
                let idx = servers.len() as u32;
                idxs.push(idx);
                let (state, health) = if s.params.disabled || s.unresolved {
                    (SrvState::Maint, 0)
                } else {
                    // HAProxy starts servers UP with health = rise: up, but the
                    // first failed check takes them down.
                    (SrvState::Up, s.params.check_params.rise)
                };
                servers.push(Server {
                    generation: generation.clone(),
                    idx,
                    backend_idx: backends.len() as u32,
                    backend_pos: pos as u32,
                    backend: b.name.clone(),
                    conf: Arc::new(s.clone()),
                    id: s.params.id.unwrap_or(pos as u32 + 1),
                    up_since_ns: AtomicU64::new(0),
                    state: StateCell::new(state),
                    weight: AtomicU32::new(s.params.weight),
                    health: AtomicU32::new(health),
                    cur_conns: ConnCount::default(),
                    total_conns: AtomicU64::new(0),
                    kernel_seen: AtomicU64::new(0),
                    user_bytes_in: AtomicU64::new(0),
                    user_bytes_out: AtomicU64::new(0),
                    last_check: AtomicU32::new(2),
                    check_status: AtomicU32::new(lb_common::chk::INI),
                    check_code: AtomicU32::new(0),
                    check_us: AtomicU32::new(0),
                    checks_failed: AtomicU64::new(0),
                    state_changes: AtomicU64::new(0),
                    agent_down: std::sync::atomic::AtomicBool::new(false),
                    admin: crate::state::admin::ServerAdmin::new(s.params.weight),
                    live_addr: std::sync::RwLock::new(s.addr),
                    no_addr: std::sync::atomic::AtomicBool::new(s.unresolved),
                });
            }
            backends.push(BackendState {
                name: b.name.clone(),
                servers: idxs,
                allbackups: b.allbackups.is_some(),
                algo: algo_of(b),
                balancer: Mutex::new(PickState {
                    bal: Balancer::new(algo_of(b)),
                    gen: u64::MAX,
                    refresh_at_ns: 0,
                }),
                slot_freed: tokio::sync::Notify::new(),
                queued: AtomicU32::new(0),
                maxqueue: if b.servers.iter().all(|s| s.params.maxqueue.unwrap_or(0) > 0) {
                    b.servers
                        .iter()
                        .map(|s| s.params.maxqueue.unwrap_or(0))
                        .sum()
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
            closing: std::sync::atomic::AtomicBool::new(false),
            paths: PathStats::default(),
            kernel_conns: std::sync::OnceLock::new(),
            generation,
        }
    }

    /// Moves every server's count into the kernel's LB_SRV_CONNS (before any
    /// connection is served) and keeps the registry for [`State::register_conn`].
    pub fn use_kernel_counts(&self, table: crate::kernel::ConnTable) {
        for s in &self.servers {
            if let Some(k) = table.count(s.idx) {
                k.store(s.cur_conns.load(Ordering::Relaxed), Ordering::Relaxed);
                s.cur_conns
                    .shared
                    .store(k as *const AtomicU32 as *mut AtomicU32, Ordering::Release);
            }
        }
        let _ = self.kernel_conns.set(table);
    }

    /// Server `idx` is about to be connected to on `sock` (before `connect()`):
    /// from now on its close counts the connection out even if the daemon does
    /// not get to it. Returns the socket cookie to release it with (0: not
    /// registered, release counts it out).
    pub fn register_conn(&self, idx: u32, sock: std::os::fd::BorrowedFd<'_>) -> u64 {
        let Some(t) = self.kernel_conns.get() else {
            return 0;
        };
        let Ok(cookie) = crate::sys::cookie(&sock) else {
            return 0;
        };
        match t.register(cookie, idx) {
            Ok(()) => cookie,
            Err(e) => {
                tracing::debug!("LB_CONN_SRV insert for server {idx}: {e}");
                0
            }
        }
    }

    /// The balancer's view of a backend's servers (O(n)): effective weights
    /// with HAProxy's eligibility (UP with a non-zero weight, active servers
    /// first; backups only when no active server is UP: the first one, or all
    /// with `option allbackups`), and whether a slow start is ramping.
    fn members(&self, b: &BackendState) -> (Vec<Member>, bool) {
        let servers: Vec<&Server> = b
            .servers
            .iter()
            .map(|&i| &self.servers[i as usize])
            .collect();
        let usable = |s: &Server| s.is_up() && s.effective_weight() > 0;
        let any_active = servers.iter().any(|s| !s.backup() && usable(s));
        let first_backup = servers
            .iter()
            .filter(|s| s.backup() && usable(s))
            .min_by_key(|s| s.id)
            .map(|s| s.idx);
        let mut ramping = false;
        let members = servers
            .iter()
            .map(|s| {
                let eligible = usable(s)
                    && if any_active {
                        !s.backup()
                    } else {
                        s.backup() && (b.allbackups || Some(s.idx) == first_backup)
                    };
                ramping |= s.ramp() < 1.0;
                Member {
                    weight: if eligible { s.effective_weight() } else { 0 },
                    maxconn: s.effective_maxconn(),
                    id: s.id,
                }
            })
            .collect();
        (members, ramping)
    }

    /// [`State::members`] of backend `bi` (the NAT path's tables are built
    /// from the same view).
    pub fn members_of(&self, bi: usize) -> (Vec<Member>, bool) {
        self.members(&self.backends[bi])
    }

    /// Picks a server of `backend` with its algorithm among the servers that can
    /// take a connection (see [`State::members`]); a server at its maxconn
    /// takes nobody until a slot frees. None when no server can take it.
    /// `avoid`: a server that just failed, skipped if any other can take it.
    /// The chosen server's connection is counted; [`State::release`] ends it.
    ///
    /// The balancer's structures are rebuilt only when something changed
    /// ([`touch`]), every 100 ms during a slow start (the ramp moves weights),
    /// and at least once a second; a pick itself is O(log n).
    pub fn pick(
        &self,
        backend: usize,
        client: Option<std::net::IpAddr>,
        avoid: Option<u32>,
    ) -> Option<&Server> {
        let b = self.backends.get(backend)?;
        // The choice and the count happen under one lock, so that two accepts
        // can never both take a server's last slot.
        let mut p = b.balancer.lock().unwrap_or_else(|e| e.into_inner());
        let now = crate::sys::monotonic_ns();
        let gen = self.generation.get();
        if p.gen != gen || now >= p.refresh_at_ns {
            let (members, ramping) = self.members(b);
            p.bal.set_members(&members);
            for (i, &si) in b.servers.iter().enumerate() {
                let load = self.servers[si as usize].cur_conns.load(Ordering::Relaxed);
                p.bal.set_load(i, load);
            }
            p.gen = gen;
            p.refresh_at_ns = now + if ramping { 100_000_000 } else { 1_000_000_000 };
        }
        let avoid = avoid.and_then(|a| b.servers.iter().position(|&x| x == a));
        let served = |i: usize| {
            self.servers[b.servers[i] as usize]
                .cur_conns
                .load(Ordering::Relaxed)
        };
        let i = p.bal.pick_live(client, avoid, &served)?;
        let s = &self.servers[b.servers[i] as usize];
        let cur = s.cur_conns.fetch_add(1, Ordering::Relaxed) + 1;
        p.bal.set_load(i, cur);
        s.total_conns.fetch_add(1, Ordering::Relaxed);
        s.admin.max_conns.fetch_max(cur, Ordering::Relaxed);
        s.admin
            .last_sess_ns
            .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        Some(s)
    }

    /// Server `idx`'s connection count changed outside [`State::pick`]:
    /// leastconn reorders it.
    pub fn note_load(&self, idx: u32) {
        let Some((b, pos)) = self.slot_of(idx) else {
            return;
        };
        // Only leastconn orders by load: the others read counts at pick time,
        // so a release takes no lock for them.
        if b.algo != Algo::LeastConn {
            return;
        }
        let mut p = b.balancer.lock().unwrap_or_else(|e| e.into_inner());
        let load = self.servers[idx as usize].cur_conns.load(Ordering::Relaxed);
        p.bal.set_load(pos, load);
    }

    fn slot_of(&self, idx: u32) -> Option<(&BackendState, usize)> {
        let s = self.servers.get(idx as usize)?;
        let b = self.backends.get(s.backend_idx as usize)?;
        Some((b, s.backend_pos as usize))
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
        self.release_conn(idx, 0);
    }

    /// [`State::release`] for a connection registered with `cookie`
    /// ([`State::register_conn`]): counted out here unless the kernel did.
    pub fn release_conn(&self, idx: u32, cookie: u64) {
        let Some(s) = self.servers.get(idx as usize) else {
            return;
        };
        let ours = cookie == 0 || self.kernel_conns.get().is_none_or(|t| t.unregister(cookie));
        if ours {
            s.cur_conns.fetch_sub(1, Ordering::Relaxed);
        }
        self.note_load(idx);
        if s.configured_maxconn() > 0 {
            if let Some(b) = self.backend_of(idx) {
                b.slot_freed.notify_one();
            }
        }
    }

    /// The backend a server belongs to.
    pub fn backend_of(&self, idx: u32) -> Option<&BackendState> {
        self.slot_of(idx).map(|(b, _)| b)
    }
}

/// Applies one health-check result with HAProxy's state machine (health in
/// 0..rise+fall-1, UP while health >= rise). Returns Some(new state) on a change.
pub fn apply_check(s: &Server, passed: bool, p: &CheckParams) -> Option<SrvState> {
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
    let cur = s.state.get();
    if cur == SrvState::Maint {
        return None;
    }
    let want = if h >= p.rise && !s.agent_down.load(Ordering::Relaxed) {
        SrvState::Up
    } else {
        SrvState::Down
    };
    if want != cur {
        if want == SrvState::Up {
            s.up_since_ns
                .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        }
        s.state.set(want);
        s.state_changes.fetch_add(1, Ordering::Relaxed);
        s.touch();
        Some(want)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One checked server with the default `rise`, as the config builds it.
    fn checked() -> State {
        state_of(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             frontend f\n    bind 127.0.0.1:9\n    default_backend b\n\
             backend b\n    server s 127.0.0.1:1 check\n",
        )
    }

    #[test]
    fn haproxy_health_state_machine() {
        let p = CheckParams::default(); // rise 2, fall 3
        let st = checked();
        let s = &st.servers[0];
        // First pass after start: health jumps to rise+fall-1.
        assert_eq!(apply_check(s, true, &p), None);
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
        // fall-1 failures keep it UP, the fall-th takes it DOWN.
        assert_eq!(apply_check(s, false, &p), None);
        assert_eq!(apply_check(s, false, &p), None);
        assert_eq!(apply_check(s, false, &p), Some(SrvState::Down));
        assert_eq!(s.health.load(Ordering::Relaxed), 0);
        // rise passes bring it back.
        assert_eq!(apply_check(s, true, &p), None);
        assert_eq!(apply_check(s, true, &p), Some(SrvState::Up));
        assert_eq!(s.health.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn first_failure_after_start_takes_server_down() {
        let p = CheckParams::default();
        let st = checked();
        let s = &st.servers[0];
        assert_eq!(apply_check(s, false, &p), Some(SrvState::Down));
    }

    fn state_of(cfg: &str) -> State {
        let c = crate::config::parse_str(cfg, std::path::Path::new("t.cfg")).unwrap();
        State::from_config(&c)
    }

    #[test]
    fn picks_follow_counts_changes_and_backups() {
        let st = state_of(
            "frontend f\n    bind 127.0.0.1:9\n    default_backend b\nbackend b\n    balance leastconn\n    server s1 127.0.0.1:1\n    server s2 127.0.0.1:2\n    server s3 127.0.0.1:3\n    server bk 127.0.0.1:4 backup\n",
        );
        let name = |s: &Server| s.name().to_string();
        let mut got: Vec<String> = (0..3)
            .map(|_| name(st.pick(0, None, None).unwrap()))
            .collect();
        got.sort();
        assert_eq!(got, ["s1", "s2", "s3"]);
        // A released connection makes its server the least loaded at once.
        st.release(1);
        assert_eq!(name(st.pick(0, None, None).unwrap()), "s2");
        // A redispatch avoids the server that failed when another can take it.
        st.release(0);
        st.release(1);
        assert_eq!(name(st.pick(0, None, Some(0)).unwrap()), "s2");
        // A change (here: weights through the runtime API's path) applies to
        // the next pick.
        for i in 0..3 {
            st.servers[i].weight.store(0, Ordering::Relaxed);
        }
        st.touch();
        assert_eq!(name(st.pick(0, None, None).unwrap()), "bk");
        st.servers[2].weight.store(1, Ordering::Relaxed);
        st.touch();
        assert_eq!(name(st.pick(0, None, None).unwrap()), "s3");
    }

    #[test]
    fn slowstart_ramps_weight_and_maxconn_after_coming_back() {
        let st = state_of(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             frontend f\n    bind 127.0.0.1:9\n    default_backend b\n\
             backend b\n    server s 127.0.0.1:1 weight 100 maxconn 50 slowstart 10s\n",
        );
        let s = &st.servers[0];
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

#[cfg(test)]
mod addr_tests {
    use super::*;

    #[test]
    fn an_address_from_dns_takes_a_server_out_of_maintenance_and_back() {
        let c = crate::config::parse_str(
            "defaults\n    timeout client 1s\n    timeout server 1s\n    timeout connect 1s\n\
             resolvers dns\n    nameserver a 127.0.0.1:53\n\
             frontend f\n    bind :80\n    default_backend b\n\
             backend b\n    server s app.test:80 resolvers dns init-addr none check\n    \
             server t app.test:80 resolvers dns init-addr none\n",
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        let st = State::from_config(&c);
        let (s, t) = (&st.servers[0], &st.servers[1]);
        assert_eq!(s.state.get(), SrvState::Maint);
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        assert!(s.set_addr(Some(ip)).is_some());
        assert_eq!(s.addr(), "10.0.0.7:80".parse().unwrap());
        // Checked: DOWN until the checks pass; unchecked: UP.
        assert_eq!(s.state.get(), SrvState::Down);
        assert!(t.set_addr(Some(ip)).is_some());
        assert_eq!(t.state.get(), SrvState::Up);
        assert!(s.set_addr(Some(ip)).is_none());
        assert!(s.set_addr(None).is_some());
        assert_eq!(s.state.get(), SrvState::Maint);
    }
}
