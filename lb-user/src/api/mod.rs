//! The runtime API: HAProxy's stats socket protocol on UNIX (or TCP) sockets
//! from `stats socket` lines. Commands read and change the live state; every
//! change is written to the maps at once (`publish`), so `show stat`, `lb show`
//! and the next accept all see it.
pub mod cmd;
pub mod info;
pub mod metrics;
pub mod stat;
pub mod stats_page;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::state::SrvState;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::{Balance, StatsAddress, StatsLevel, StatsSocket};
pub use crate::datapath::Live;
use crate::state::Server;
use cmd::{AdminState, Command, Format, Health, Level, SrvRef, Weight};

/// The socket every `lb run` serves (level admin, mode 0600) besides the
/// configured `stats socket`s, so the CLI finds an instance by name.
pub fn default_socket(instance: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/lb/{instance}.sock"))
}

impl Live {
    /// Bytes the verdict moved per server index, summed over CPUs.
    pub fn kernel_bytes(&self) -> Vec<(u64, u64)> {
        let n = self.state.servers.len() as u32;
        match &self.kernel {
            Some(k) => k.lock().unwrap_or_else(|e| e.into_inner()).server_bytes(n),
            None => vec![(0, 0); n as usize],
        }
    }

    /// `LB_STATS` counters summed over CPUs.
    pub fn kernel_stats(&self) -> Vec<(&'static str, u64)> {
        self.kernel.as_ref().map_or_else(Vec::new, |k| {
            k.lock().unwrap_or_else(|e| e.into_inner()).stats()
        })
    }

    fn clear_kernel(&self) -> Result<(), String> {
        let Some(k) = &self.kernel else {
            return Ok(());
        };
        let n = self.state.servers.len() as u32;
        k.lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear_server_bytes(n)
    }

    pub fn stat_rows(&self) -> Vec<stat::Row> {
        let kb = self.kernel_bytes();
        let inp = stat::Inputs {
            cfg: &self.cfg,
            state: &self.state,
            kernel_bytes: &kb,
            // A frontend without its own maxconn shows the global one, as
            // HAProxy does.
            fe_maxconn: self
                .frontend_limits
                .iter()
                .map(|l| match l.get() {
                    0 => self.global_limit.get(),
                    n => n,
                })
                .collect(),
            now_ns: crate::sys::monotonic_ns(),
        };
        stat::rows(&inp)
    }

    fn server(&self, r: &SrvRef) -> Result<&Server, String> {
        let b = self
            .state
            .backends
            .iter()
            .find(|b| b.name == r.backend)
            .ok_or("No such backend.")?;
        b.servers
            .iter()
            .map(|&i| &self.state.servers[i as usize])
            .find(|s| s.name() == r.server)
            .ok_or_else(|| "No such server.".to_string())
    }
}

/// One connection's session with the API.
pub struct Cli {
    pub level: Level,
    pub interactive: bool,
    pub quit: bool,
}

/// Runs one command; the answer text (possibly empty).
pub fn execute(live: &Live, cli: &mut Cli, c: &Command) -> String {
    if c.level() > cli.level {
        return "Permission denied\n".into();
    }
    let out = run(live, cli, c);
    // Any command above read-only may have changed a state, a weight or a
    // limit: balancers rebuild on their next pick.
    if c.level() > Level::User {
        live.state.touch();
    }
    match out {
        Ok(s) => s,
        Err(e) => {
            let mut e = e;
            if !e.ends_with('\n') {
                e.push('\n');
            }
            e
        }
    }
}

fn run(live: &Live, cli: &mut Cli, c: &Command) -> Result<String, String> {
    let state = &live.state;
    Ok(match c {
        Command::Help => {
            let mut out = String::from("The following commands are valid at this level:\n");
            for (usage, desc) in cmd::HELP {
                let words: Vec<String> = usage.split_whitespace().map(String::from).collect();
                let needed = cmd::parse(&sample_args(&words)).map_or(Level::User, |c| c.level());
                if needed <= cli.level {
                    out.push_str(&cmd::help_line(usage, desc));
                }
            }
            out
        }
        Command::Prompt => {
            cli.interactive = !cli.interactive;
            String::new()
        }
        Command::Quit => {
            cli.quit = true;
            String::new()
        }
        Command::Lower(l) => {
            if *l > cli.level {
                return Err("Permission denied".into());
            }
            cli.level = *l;
            String::new()
        }
        Command::ShowCliLevel => format!("{}\n", cli.level.name()),
        Command::ShowInfo(f) => info::render(&info::fields(live), *f),
        Command::ShowStat(f) => {
            let rows = live.stat_rows();
            match f {
                Format::Csv => stat::csv(&rows),
                Format::Typed => stat::typed(&rows),
                Format::Json => stat::json(&rows),
            }
        }
        Command::ShowServersState(b) => servers_state(live, b.as_deref())?,
        Command::ShowBackend => {
            let mut out = String::from("# name\n");
            for b in &state.backends {
                out.push_str(&b.name);
                out.push('\n');
            }
            out
        }
        Command::ShowSess => show_sess(live),
        Command::ShowXdp(f) => show_xdp(live, *f)?,
        Command::GetWeight(r) => {
            let s = live.server(r)?;
            format!(
                "{} (initial {})\n",
                s.weight.load(Ordering::Relaxed),
                s.admin.initial_weight
            )
        }
        Command::SetServerWeight(r, w) => {
            let s = live.server(r)?;
            set_weight(live, s, *w)?;
            String::new()
        }
        Command::SetServerAddr(r, ip, port) => {
            let s = live.server(r)?;
            set_addr(live, s, *ip, *port)?
        }
        Command::SetServerState(r, st) => {
            let s = live.server(r)?;
            set_admin_state(live, s, *st);
            String::new()
        }
        Command::EnableServer(r) => {
            set_admin_state(live, live.server(r)?, AdminState::Ready);
            String::new()
        }
        Command::DisableServer(r) => {
            set_admin_state(live, live.server(r)?, AdminState::Maint);
            String::new()
        }
        Command::SetServerHealth(r, h) => {
            let s = live.server(r)?;
            set_health(live, s, *h);
            String::new()
        }
        Command::EnableHealth(r) | Command::DisableHealth(r) => {
            let s = live.server(r)?;
            if s.check().is_none() {
                return Err(
                    "Health checks are not configured on this server, cannot enable.".into(),
                );
            }
            let off = matches!(c, Command::DisableHealth(_));
            s.admin.checks_disabled.store(off, Ordering::Relaxed);
            // HAProxy: with its check stopped the server is unchecked and
            // considered UP (maintenance aside); enabled again, the checks
            // decide from the next result on.
            if off && s.state.get() == SrvState::Down {
                s.up_since_ns
                    .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
                s.state.set(SrvState::Up);
                s.state_changes.fetch_add(1, Ordering::Relaxed);
                s.admin.note_change(true);
                live.publisher.changed(s.idx);
            }
            tracing::info!(
                "Health checks for server {}/{} {} by the runtime API",
                s.backend,
                s.name(),
                if off { "disabled" } else { "enabled" }
            );
            String::new()
        }
        Command::ShutdownSessionsServer(r) => {
            let s = live.server(r)?;
            for sess in state.sessions.list() {
                if sess.server_idx() == Some(s.idx) {
                    sess.set_term(*b"KD");
                }
            }
            crate::datapath::shutdown_sessions(state, live.splicer.as_ref(), s.idx);
            String::new()
        }
        Command::ShutdownSession(id) => {
            let sess = state
                .sessions
                .get(*id)
                .ok_or("No such session (use 'show sess').")?;
            sess.set_term(*b"KD");
            sess.end(crate::state::admin::END_KILLED);
            if let Some(sp) = &live.splicer {
                sp.shutdown_session(*id);
            }
            String::new()
        }
        Command::SetMaxconnServer(r, n) => {
            let s = live.server(r)?;
            s.admin.maxconn_override.store(*n, Ordering::Relaxed);
            // A raised limit frees slots for the queue at once.
            if let Some(b) = state.backend_of(s.idx) {
                b.slot_freed.notify_waiters();
            }
            String::new()
        }
        Command::SetMaxconnFrontend(name, n) => {
            let i = live
                .cfg
                .frontends
                .iter()
                .position(|f| &f.name == name)
                .ok_or("No such frontend.")?;
            if *n == 0 {
                return Err("Value out of range.".into());
            }
            live.frontend_limits[i].set(*n);
            String::new()
        }
        Command::SetMaxconnGlobal(n) => {
            if *n == 0 {
                return Err("Value out of range.".into());
            }
            live.global_limit.set(*n);
            String::new()
        }
        Command::ClearCounters { all } => {
            for s in &state.servers {
                s.admin.clear(*all);
                if *all {
                    s.total_conns.store(0, Ordering::Relaxed);
                    s.user_bytes_in.store(0, Ordering::Relaxed);
                    s.user_bytes_out.store(0, Ordering::Relaxed);
                    s.checks_failed.store(0, Ordering::Relaxed);
                }
                live.publisher.state(s.idx);
            }
            for f in &state.frontends {
                f.max.store(0, Ordering::Relaxed);
                if *all {
                    f.total.store(0, Ordering::Relaxed);
                    f.bytes_in.store(0, Ordering::Relaxed);
                    f.bytes_out.store(0, Ordering::Relaxed);
                    f.denied.store(0, Ordering::Relaxed);
                    f.denied_req.store(0, Ordering::Relaxed);
                }
            }
            if *all {
                live.clear_kernel()?;
            }
            String::new()
        }
    })
}

/// Arguments that make a help line's usage parse, to learn its level.
fn sample_args(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| !w.starts_with('['))
        .map(|w| match w.as_str() {
            "<bk>/<srv>" => "b/s".to_string(),
            "<w>[%]" | "<n>" | "<id>" => "1".to_string(),
            "<st>" => "ready".to_string(),
            "<h>" => "up".to_string(),
            "<fe>" => "f".to_string(),
            w => w.to_string(),
        })
        .collect()
}

fn set_weight(live: &Live, s: &Server, w: Weight) -> Result<(), String> {
    let new = match w {
        Weight::Absolute(n) => n,
        Weight::Percent(p) => {
            let v = s.admin.initial_weight as u64 * p as u64 / 100;
            if v > 256 {
                return Err("Relative weight too large.".into());
            }
            v as u32
        }
    };
    let static_algo = live
        .cfg
        .backends
        .iter()
        .find(|b| b.name == s.backend)
        .is_some_and(|b| {
            b.balance == Balance::StaticRr
                || (b.balance == Balance::Source
                    && !matches!(
                        crate::state::algo_of(b),
                        crate::state::balance::Algo::Source {
                            consistent: true,
                            ..
                        }
                    ))
        });
    if static_algo && new != 0 && new != s.admin.initial_weight {
        return Err(
            "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'."
                .into(),
        );
    }
    s.weight.store(new, Ordering::Relaxed);
    tracing::info!(
        "{}/{} weight set to {new} by the runtime API",
        s.backend,
        s.name()
    );
    live.publisher.state(s.idx);
    Ok(())
}

/// The operational state a server has once out of maintenance: what its
/// checks say (health kept counting while in maintenance), UP without checks.
fn op_state(s: &Server) -> SrvState {
    match s.check() {
        Some(p) if s.health.load(Ordering::Relaxed) < p.rise => SrvState::Down,
        _ => SrvState::Up,
    }
}

/// `set server addr`: new connections and checks go to the new address;
/// sessions on the old one continue. Refused for a server the kernel
/// balances to (`data-path nat`/`connect`), whose maps hold the address.
fn set_addr(
    live: &Live,
    s: &Server,
    ip: std::net::IpAddr,
    port: Option<u16>,
) -> Result<String, String> {
    let in_kernel = live.cfg.frontends.iter().any(|f| {
        (f.path() == crate::config::DataPath::Nat || f.connect.is_some())
            && f.default_backend_idx == Some(s.backend_idx as usize)
    });
    if in_kernel {
        return Err(format!(
            "server {}/{} is balanced to by the kernel (data-path nat or connect), whose maps hold its address: change it in the configuration.",
            s.backend,
            s.name()
        ));
    }
    let old = s.addr();
    let mut parts = Vec::new();
    if s.set_addr(Some(ip)).is_some() {
        parts.push(format!("IP changed from '{}' to '{ip}'", old.ip()));
    }
    if let Some(p) = port.filter(|&p| p != old.port()) {
        s.set_port(p);
        parts.push(format!("port changed from '{}' to '{p}'", old.port()));
    }
    if parts.is_empty() {
        return Ok("no need to change the addr\n".into());
    }
    let msg = format!("{} by 'stats socket command'", parts.join(", "));
    tracing::warn!("Server {}/{}: {msg}.", s.backend, s.name());
    live.publisher.changed(s.idx);
    Ok(format!("{msg}\n"))
}

fn set_admin_state(live: &Live, s: &Server, st: AdminState) {
    let cur = s.state.get();
    let leave_maint = |s: &Server| {
        // Without an address (DNS has none for it) it stays in maintenance.
        if cur == SrvState::Maint && !s.no_addr.load(Ordering::Relaxed) {
            let new = op_state(s);
            if new == SrvState::Up {
                s.up_since_ns
                    .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
            }
            s.state.set(new);
            s.state_changes.fetch_add(1, Ordering::Relaxed);
            s.admin.note_change(new == SrvState::Up);
        }
    };
    match st {
        AdminState::Ready => {
            s.admin.drain.store(false, Ordering::Relaxed);
            leave_maint(s);
        }
        AdminState::Drain => {
            s.admin.drain.store(true, Ordering::Relaxed);
            leave_maint(s);
        }
        AdminState::Maint => {
            s.admin.drain.store(false, Ordering::Relaxed);
            if cur != SrvState::Maint {
                s.state.set(SrvState::Maint);
                s.state_changes.fetch_add(1, Ordering::Relaxed);
                s.admin
                    .last_change_ns
                    .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
            }
        }
    }
    tracing::warn!(
        "Server {}/{} is {} by the runtime API",
        s.backend,
        s.name(),
        match st {
            AdminState::Ready => "READY",
            AdminState::Drain => "DRAIN",
            AdminState::Maint => "going into maintenance (MAINT)",
        }
    );
    live.publisher.changed(s.idx);
}

fn set_health(live: &Live, s: &Server, h: Health) {
    let p = s.check().unwrap_or_default();
    let cur = s.state.get();
    let (health, op) = match h {
        Health::Up | Health::Stopping => (p.rise + p.fall - 1, SrvState::Up),
        Health::Down => (0, SrvState::Down),
    };
    s.health.store(health, Ordering::Relaxed);
    s.admin
        .stopping
        .store(h == Health::Stopping, Ordering::Relaxed);
    if cur != SrvState::Maint && cur != op {
        if op == SrvState::Up {
            s.up_since_ns
                .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
        }
        s.state.set(op);
        s.state_changes.fetch_add(1, Ordering::Relaxed);
        s.admin.note_change(op == SrvState::Up);
        tracing::warn!(
            "Server {}/{} is {} by the runtime API (set server health)",
            s.backend,
            s.name(),
            op.name()
        );
    }
    live.publisher.changed(s.idx);
}

/// `show servers state`, HAProxy's version 1 format.
pub fn servers_state(live: &Live, backend: Option<&str>) -> Result<String, String> {
    let state = &live.state;
    if let Some(b) = backend {
        if !state.backends.iter().any(|x| x.name == b) {
            return Err("Can't find backend.".into());
        }
    }
    let mut out = String::from(
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n",
    );
    let now = crate::sys::monotonic_ns();
    let fe_count = live.cfg.frontends.len() as u32;
    for (bi, b) in state.backends.iter().enumerate() {
        if backend.is_some_and(|n| n != b.name) {
            continue;
        }
        let be_id = match live.cfg.frontends.iter().position(|f| f.name == b.name) {
            Some(fi) => fi as u32 + 2,
            None => fe_count + 2 + bi as u32,
        };
        for &i in &b.servers {
            let s = &state.servers[i as usize];
            let st = s.state.get();
            // SRV_ST_STOPPED 0, RUNNING 2, STOPPING 3 (NOLB).
            let op = match st {
                SrvState::Up if s.admin.stopping.load(Ordering::Relaxed) => 3,
                SrvState::Up => 2,
                SrvState::Maint if op_state(s) == SrvState::Up => 2,
                _ => 0,
            };
            // SRV_ADMF_FMAINT 0x01, SRV_ADMF_FDRAIN 0x08.
            let admin = if st == SrvState::Maint { 1 } else { 0 }
                | if s.admin.drain.load(Ordering::Relaxed) {
                    8
                } else {
                    0
                };
            // CHK_ST_CONFIGURED 2 | ENABLED 4 | PAUSED 8.
            let (cstatus, cresult, cstate) = match s.check() {
                None => (1, 0, 0),
                Some(_) => {
                    let (status, result) =
                        stat::check_status_numbers(s.check_status.load(Ordering::Relaxed));
                    let paused = s.admin.checks_disabled.load(Ordering::Relaxed);
                    (status, result, if paused { 2 | 4 | 8 } else { 2 | 4 })
                }
            };
            let since =
                now.saturating_sub(s.admin.last_change_ns.load(Ordering::Relaxed)) / 1_000_000_000;
            let _ = writeln!(
                out,
                "{be_id} {} {} {} {} {op} {admin} {} {} {since} {cstatus} {cresult} {} {cstate} 0 0 0 - {} - 0 0 - - 0",
                b.name,
                s.id,
                s.name(),
                s.addr().ip(),
                s.weight.load(Ordering::Relaxed),
                s.admin.initial_weight,
                s.health.load(Ordering::Relaxed),
                s.addr().port()
            );
        }
    }
    Ok(out)
}

/// `show xdp`: the XDP front door's interfaces and per-frontend counters
/// (summed over CPUs), CSV like `show stat`, or JSON.
fn show_xdp(live: &Live, f: Format) -> Result<String, String> {
    let x = crate::kernel::pinned::xdp_status(&live.instance).map_err(|e| format!("{e:#}\n"))?;
    if f == Format::Json {
        return serde_json::to_string_pretty(&x)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
    let mut out = String::from("# interface,ifindex,mode,prog_id\n");
    for i in &x.interfaces {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            i.interface, i.ifindex, i.mode, i.prog_id
        );
    }
    let _ = writeln!(out, "# syn_cookies\n{}", x.syn_cookies);
    out.push_str("# nat_interface,ifindex,hook,prog_id\n");
    for n in &x.nat {
        let _ = writeln!(
            out,
            "{},{},{},{}",
            n.interface, n.ifindex, n.hook, n.prog_id
        );
    }
    out.push_str("# frontend,acl_rules,packets,bytes,syns,acl_drops,syn_drops,syn_cookies\n");
    for fe in &x.frontends {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            fe.frontend,
            fe.acl_rules,
            fe.counters.packets,
            fe.counters.bytes,
            fe.counters.syns,
            fe.counters.acl_drops,
            fe.counters.syn_drops,
            fe.counters.syn_cookies
        );
    }
    Ok(out)
}

/// `show sess`: one line per live session, HAProxy's leading `0xID:`.
fn show_sess(live: &Live) -> String {
    let state = &live.state;
    let now = crate::sys::monotonic_ns();
    let mut out = String::new();
    for s in state.sessions.list() {
        let srv = s
            .server_idx()
            .and_then(|i| state.servers.get(i as usize))
            .map_or("<none>", |x| x.name());
        let age = now.saturating_sub(s.accept_ns) / 1_000_000_000;
        let _ = writeln!(
            out,
            "{:#x}: proto=tcpv{} src={} fe={} be={} srv={srv} age={age}s path={} bytes_in={} bytes_out={}",
            s.id,
            if s.client.is_ipv4() { 4 } else { 6 },
            s.client,
            live.cfg.frontends[s.frontend].name,
            live.cfg.backends[s.backend].name,
            if s.spliced.load(Ordering::Relaxed) { "kernel" } else { "user" },
            s.bytes_in.load(Ordering::Relaxed),
            s.bytes_out.load(Ordering::Relaxed),
        );
    }
    nat_sessions(live, now, &mut out);
    out
}

/// One line per NAT flow (its client-side entry) of the pinned flow table,
/// in the proxied sessions' format with `path=nat` and the flow's state.
fn nat_sessions(live: &Live, now: u64, out: &mut String) {
    use lb_common::{NAT_DIR_CLIENT, NAT_F_CLOSED, NAT_F_ENDED};
    if !live
        .cfg
        .frontends
        .iter()
        .any(|f| f.path() == crate::config::DataPath::Nat)
    {
        return;
    }
    let flows = crate::kernel::nat::pinned_flows(&live.instance);
    let peers: std::collections::HashMap<lb_common::NatKey, lb_common::NatFlow> =
        flows.iter().copied().collect();
    for (k, v) in flows.iter().filter(|(_, v)| v.dir == NAT_DIR_CLIENT) {
        let ip = |a: &[u8; 16]| -> std::net::IpAddr {
            if k.family == lb_common::AF_INET {
                std::net::IpAddr::from([a[0], a[1], a[2], a[3]])
            } else {
                std::net::IpAddr::from(*a)
            }
        };
        let client = std::net::SocketAddr::new(ip(&k.src_be), u16::from_be_bytes(k.sport_be));
        let fe = live.cfg.frontends.get(v.frontend as usize);
        let be = fe
            .and_then(|f| f.default_backend_idx)
            .and_then(|b| live.cfg.backends.get(b));
        let srv = live
            .state
            .servers
            .get(v.server as usize)
            .map_or("<none>", |s| s.name());
        let back = peers.get(&v.peer_key(k.family));
        let state = if v.flags & NAT_F_CLOSED != 0 {
            "closed"
        } else if v.flags & NAT_F_ENDED != 0 {
            "ended"
        } else {
            "running"
        };
        // An id of its own: the key's hash with the top bit set, apart
        // from the proxied sessions' counter.
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            k.hash(&mut h);
            h.finish() | 1 << 63
        };
        let _ = writeln!(
            out,
            "{id:#x}: proto=tcpv{} src={client} fe={} be={} srv={srv} age={}s idle={}s path=nat state={state} bytes_in={} bytes_out={}",
            if k.family == lb_common::AF_INET { 4 } else { 6 },
            fe.map_or("<none>", |f| f.name.as_str()),
            be.map_or("<none>", |b| b.name.as_str()),
            now.saturating_sub(v.created_ns) / 1_000_000_000,
            now.saturating_sub(v.last_ns.max(back.map_or(0, |b| b.last_ns))) / 1_000_000_000,
            v.bytes,
            back.map_or(0, |b| b.bytes),
        );
    }
}

/// Binds every `stats socket` of the config and serves it. Errors name the
/// socket's address.
/// The UNIX socket files this daemon bound: removed when dropped, so a stop and
/// an interrupted or failed start-up leave none behind (and never remove a file
/// some other process bound).
#[derive(Debug, Default)]
pub struct SocketFiles(Vec<std::path::PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub async fn start_sockets(live: Arc<Live>) -> anyhow::Result<SocketFiles> {
    use anyhow::Context;
    let g = &live.cfg.global;
    let timeout = g
        .stats_timeout
        .as_ref()
        .map_or(Duration::from_secs(10), |t| t.value);
    // HAProxy's default `stats maxconn` is 10 per socket.
    let maxconn = g.stats_maxconn.as_ref().map_or(10, |m| m.value) as usize;
    // The instance's own socket, for the `lb` CLI, then the configured ones.
    let own = default_socket(&live.instance);
    if let Some(dir) = own.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let own = crate::config::Located {
        value: StatsSocket {
            address: StatsAddress::Unix(own.clone()),
            mode: Some(0o600),
            uid: None,
            gid: None,
            level: StatsLevel::Admin,
            expose_fd_listeners: false,
            severity_output: None,
            other: Vec::new(),
        },
        origin: crate::config::Origin {
            file: "(instance socket)".into(),
            line: 0,
        },
    };
    let mut seen: Vec<&StatsAddress> = Vec::new();
    let mut files = SocketFiles::default();
    for sock in std::iter::once(&own).chain(&g.stats_sockets) {
        // A second bind on one path would silently replace the first socket.
        if seen.contains(&&sock.value.address) {
            anyhow::bail!(
                "{}: stats socket {:?} is already bound by an earlier line (or is the instance's own socket)",
                sock.origin,
                sock.value.address
            );
        }
        seen.push(&sock.value.address);
        let conf = sock.value.clone();
        let level = match conf.level {
            StatsLevel::User => Level::User,
            StatsLevel::Operator => Level::Operator,
            StatsLevel::Admin => Level::Admin,
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(maxconn.max(1)));
        match &conf.address {
            StatsAddress::Unix(path) => {
                let l = bind_unix(&conf, path).with_context(|| {
                    format!("{}: binding stats socket {}", sock.origin, path.display())
                })?;
                files.0.push(path.clone());
                tracing::info!("runtime API on {} (level {})", path.display(), level.name());
                spawn_accept_loop(ApiListener::Unix(l), live.clone(), slots, level, timeout);
            }
            StatsAddress::Tcp(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("{}: binding stats socket {addr}", sock.origin))?;
                tracing::info!("runtime API on {addr} (level {})", level.name());
                spawn_accept_loop(ApiListener::Tcp(l), live.clone(), slots, level, timeout);
            }
        }
    }
    Ok(files)
}

/// A bound stats socket, UNIX or TCP.
enum ApiListener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum ApiConn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// Serves one stats socket: at most `slots` clients at once (`stats maxconn`);
/// an accept error (e.g. out of file descriptors) is logged and retried later
/// rather than ending the socket.
fn spawn_accept_loop(
    l: ApiListener,
    live: Arc<Live>,
    slots: Arc<tokio::sync::Semaphore>,
    level: Level,
    timeout: Duration,
) {
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let accepted = match &l {
                ApiListener::Unix(l) => l.accept().await.map(|(c, _)| ApiConn::Unix(c)),
                ApiListener::Tcp(l) => l.accept().await.map(|(c, _)| ApiConn::Tcp(c)),
            };
            match accepted {
                Ok(c) => {
                    let live = live.clone();
                    tokio::spawn(async move {
                        match c {
                            ApiConn::Unix(c) => serve_conn(&live, c, level, timeout).await,
                            ApiConn::Tcp(c) => serve_conn(&live, c, level, timeout).await,
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("stats socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}

fn bind_unix(
    conf: &StatsSocket,
    path: &std::path::Path,
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket file left by a previous run is replaced, as HAProxy does; any
    // other kind of file is not ours to remove.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(conf.mode.unwrap_or(0o600)),
    )?;
    if conf.uid.is_some() || conf.gid.is_some() {
        std::os::unix::fs::chown(path, conf.uid, conf.gid)?;
    }
    Ok(l)
}

/// One client: lines of commands until EOF, `quit`, the idle timeout, or the
/// first line's answer unless `prompt` made the session interactive.
pub async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    live: &Live,
    conn: S,
    level: Level,
    idle: Duration,
) {
    let (r, mut w) = tokio::io::split(conn);
    let mut r = BufReader::new(r);
    let mut cli = Cli {
        level,
        interactive: false,
        quit: false,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut r).take(cmd::MAX_LINE as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(idle, read).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 0 {
            return;
        }
        let mut out = String::new();
        if line.len() > cmd::MAX_LINE && !line.ends_with(b"\n") {
            out.push_str("Command line too long.\n\n");
            let _ = w.write_all(out.as_bytes()).await;
            return;
        }
        let text = String::from_utf8_lossy(&line);
        match cmd::split(&text) {
            Err(e) => {
                out.push_str(&e);
                out.push_str("\n\n");
            }
            Ok(cmds) => {
                for words in cmds {
                    let answer = match cmd::parse(&words) {
                        Ok(c) => execute(live, &mut cli, &c),
                        Err(e) => format!("{e}\n"),
                    };
                    if cli.quit {
                        break;
                    }
                    out.push_str(&answer);
                    if !answer.is_empty() && !answer.ends_with('\n') {
                        out.push('\n');
                    }
                    // Every answer ends with an empty line.
                    if !answer.ends_with("\n\n") {
                        out.push('\n');
                    }
                    if cli.quit {
                        break;
                    }
                }
            }
        }
        if cli.interactive && !cli.quit {
            out.push_str("> ");
        }
        if w.write_all(out.as_bytes()).await.is_err() || w.flush().await.is_err() {
            return;
        }
        if cli.quit || !cli.interactive {
            let _ = w.shutdown().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(extra: &str) -> Live {
        let cfg = crate::config::parse_str(
            &format!(
                "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
                 frontend fe\n bind 127.0.0.1:1\n default_backend be\n\
                 backend be\n{extra}\n server s1 127.0.0.1:2 weight 10\n server s2 127.0.0.1:3 check\n"
            ),
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        Live {
            splice_on: false,
            start_unix: 0,
            ..Live::for_tests(cfg)
        }
    }

    fn say(l: &Live, line: &str) -> String {
        let mut cli = Cli {
            level: Level::Admin,
            interactive: false,
            quit: false,
        };
        cmd::split(line)
            .unwrap()
            .iter()
            .map(|w| match cmd::parse(w) {
                Ok(c) => execute(l, &mut cli, &c),
                Err(e) => e,
            })
            .collect()
    }

    #[test]
    fn writes_change_what_pick_sees() {
        let l = live("");
        let st = &l.state;
        let pick = || st.pick(0, None, None).map(|s| s.name().to_string());
        // drain: weight 0 effective, s2 takes everything.
        assert_eq!(say(&l, "set server be/s1 state drain"), "");
        assert_eq!(st.servers[0].effective_weight(), 0);
        for _ in 0..5 {
            assert_eq!(pick().as_deref(), Some("s2"));
        }
        assert_eq!(stat::server_status(&st.servers[0]), "DRAIN");
        // ready again; maint takes it out of the maps' UP set.
        say(
            &l,
            "set server be/s1 state ready; set server be/s2 state maint",
        );
        assert_eq!(st.servers[1].state.get(), SrvState::Maint);
        assert_eq!(pick().as_deref(), Some("s1"));
        // Leaving maint goes back to what the checks say (health = rise: UP).
        say(&l, "enable server be/s2");
        assert_eq!(st.servers[1].state.get(), SrvState::Up);
        // Relative weight from the initial one.
        say(&l, "set server be/s1 weight 50%");
        assert_eq!(say(&l, "get weight be/s1"), "5 (initial 10)\n");
        assert_eq!(
            say(&l, "set weight be/s1 3000%"),
            "Relative weight too large.\n"
        );
        // Forced health; a check-less UP after `disable health`.
        say(&l, "set server be/s2 health down");
        assert_eq!(st.servers[1].state.get(), SrvState::Down);
        say(&l, "disable health be/s2");
        assert_eq!(st.servers[1].state.get(), SrvState::Up);
        assert_eq!(stat::server_status(&st.servers[1]), "no check");
        assert!(say(&l, "disable health be/s1").starts_with("Health checks are not configured"));
        say(&l, "set server be/s2 health stopping");
        assert_eq!(stat::server_status(&st.servers[1]), "NOLB");
        assert_eq!(st.servers[1].effective_weight(), 0);
        // maxconn.
        say(&l, "set maxconn server be/s1 7");
        assert_eq!(st.servers[0].effective_maxconn(), 7);
        assert_eq!(
            say(&l, "set maxconn frontend nope 1"),
            "No such frontend.\n"
        );
        assert_eq!(say(&l, "set maxconn global 0"), "Value out of range.\n");
        // clear counters all.
        st.servers[0].total_conns.store(9, Ordering::Relaxed);
        say(&l, "clear counters all");
        assert_eq!(st.servers[0].total_conns.load(Ordering::Relaxed), 0);
        assert_eq!(
            say(&l, "shutdown session 42"),
            "No such session (use 'show sess').\n"
        );
    }

    #[test]
    fn static_algorithms_take_only_0_and_100_percent() {
        let l = live(" balance static-rr");
        assert!(say(&l, "set server be/s1 weight 5").starts_with("Backend is using a static LB"));
        assert_eq!(say(&l, "set server be/s1 weight 0"), "");
        assert_eq!(say(&l, "set server be/s1 weight 100%"), "");
    }

    #[test]
    fn levels_and_help() {
        let l = live("");
        let mut cli = Cli {
            level: Level::User,
            interactive: false,
            quit: false,
        };
        let c = cmd::parse(&["set".into(), "weight".into(), "be/s1".into(), "1".into()]).unwrap();
        assert_eq!(execute(&l, &mut cli, &c), "Permission denied\n");
        let help = execute(&l, &mut cli, &Command::Help);
        assert!(
            help.contains("show stat") && !help.contains("set maxconn"),
            "{help}"
        );
        assert_eq!(
            execute(&l, &mut cli, &Command::Lower(Level::Admin)),
            "Permission denied\n"
        );
    }
}
