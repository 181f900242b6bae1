//! `lb run`: compile the config into maps, steer, accept, balance, splice.
mod publish;
mod reload;
mod start;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, MapData, SockMap};
use lb_common::{BindKey, BindTarget, AF_INET, AF_INET6};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::l4acl;
use crate::config::{self, Config};
use crate::datapath::splice::{Manager, NewConn, SpliceMaps, Splicer};
use crate::kernel;
use crate::kernel::xdp::{self, FrontDoor};
use crate::state::State;
use crate::sys;

pub struct RunOpts {
    pub files: Vec<PathBuf>,
    pub instance: String,
    pub ready_file: Option<PathBuf>,
    pub no_splice: bool,
    pub splice_budget: Option<u64>,
    /// Do not attach the XDP front door (ACLs still apply at accept).
    pub no_xdp: bool,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

/// A listening socket on loopback with an ephemeral port: sk_lookup hands it the
/// connections for the configured addresses, so no address in the config has to
/// be bindable (and specific and wildcard binds on one port never conflict).
pub(super) fn listener(family: u32, backlog: u32) -> Result<std::net::TcpListener> {
    let (domain, addr) = if family == AF_INET {
        (Domain::IPV4, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0))
    } else {
        (Domain::IPV6, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0))
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).context("socket")?;
    if family == AF_INET6 {
        s.set_only_v6(true).context("IPV6_V6ONLY")?;
    }
    s.set_reuse_address(true).context("SO_REUSEADDR")?;
    // Loopback may be down in a fresh network namespace.
    s.set_freebind(true).context("IP_FREEBIND")?;
    s.bind(&addr.into())
        .with_context(|| format!("binding listener on {addr}"))?;
    // Accepted sockets inherit both (verified on 6.18: `getsockopt` on an
    // accepted socket), which saves two system calls per connection: no
    // Nagle delay on proxied bytes, and a client closes with an RST should lb
    // die (see ARCHITECTURE, "A crash never looks like a clean end"). Paths
    // that end a client cleanly clear the linger first.
    s.set_nodelay(true).context("TCP_NODELAY")?;
    s.set_linger(Some(std::time::Duration::ZERO))
        .context("SO_LINGER")?;
    s.listen(i32::try_from(backlog).unwrap_or(i32::MAX))
        .context("listen")?;
    s.set_nonblocking(true).context("O_NONBLOCK")?;
    Ok(s.into())
}

/// What `lb check` cannot know: which addresses are this host's. A connection
/// lb makes to one of them (server, check, agent, stats or metrics socket)
/// that a wildcard bind covers would be steered back into lb.
fn check_self_steering(cfg: &Config, metrics: Option<SocketAddr>) -> Result<()> {
    let is_local = |ip: IpAddr| config::always_local(ip) || is_host_address(ip);
    config::self_steering(cfg, &is_local).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(m) = metrics {
        for f in &cfg.frontends {
            if let Some(b) = f.binds.iter().find(|b| b.steers(m, &is_local)) {
                bail!(
                    "--metrics {m}: frontend '{}' binds that address ({}); pick another",
                    f.name,
                    b.origin
                );
            }
        }
    }
    Ok(())
}

/// Whether `ip` is an address of this host (in this network namespace): only
/// those can be bound without IP_FREEBIND.
fn is_host_address(ip: IpAddr) -> bool {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .and_then(|s| s.bind(&SocketAddr::new(ip, 0).into()))
        .is_ok()
}

/// Interfaces named in the configuration must exist; `xdp-syn-rate` needs the
/// XDP program somewhere.
pub(super) fn check_xdp(cfg: &Config, no_xdp: bool) -> Result<()> {
    if let Some((origin, msg)) = xdp::interface_conflict(cfg) {
        bail!("{origin}: {msg}");
    }
    let reqs = xdp::interfaces(cfg);
    for r in &reqs {
        if xdp::ifindex(&r.name).is_none() {
            bail!("{}: interface '{}' does not exist", r.origin, r.name);
        }
    }
    let explicit = [
        cfg.global
            .xdp_syn_rate
            .as_ref()
            .map(|r| ("xdp-syn-rate", &r.origin)),
        cfg.global
            .xdp_syn_cookies
            .as_ref()
            .filter(|c| c.value)
            .map(|c| ("xdp-syn-cookies on", &c.origin)),
    ];
    for (what, origin) in explicit.into_iter().flatten() {
        if no_xdp {
            tracing::warn!("{origin}: {what} has no effect with --no-xdp");
        } else if reqs.is_empty() {
            bail!(
                "{origin}: {what} needs the XDP program: name an interface with \
                 'xdp-interface IFACE' (global) or 'bind ... interface IFACE'"
            );
        }
    }
    Ok(())
}

/// Refuses binds that HAProxy could not bind either: a port some other socket
/// listens on (sk_lookup would silently steal its connections), or an address
/// that is not local (nothing would ever arrive).
fn check_binds(cfg: &Config) -> Result<()> {
    for fe in cfg.frontends.iter().filter(|f| f.disabled.is_none()) {
        for b in &fe.binds {
            for port in b.port_first..=b.port_last {
                let ip = b.addr.unwrap_or(Ipv4Addr::UNSPECIFIED.into());
                let addr = SocketAddr::new(ip, port);
                let domain = if ip.is_ipv4() {
                    Domain::IPV4
                } else {
                    Domain::IPV6
                };
                let probe = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).and_then(|s| {
                    if ip.is_ipv6() {
                        s.set_only_v6(b.v6only)?;
                    }
                    s.set_reuse_address(true)?;
                    s.bind(&addr.into())?;
                    s.listen(1)
                });
                if let Err(e) = probe {
                    bail!(
                        "{}: starting frontend '{}': cannot bind socket ({e}) [{addr}]",
                        b.origin,
                        fe.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// The daemon's shared context: config, live state, limits, runtime API.
pub(super) type Ctx = crate::datapath::Live;

pub fn run(opts: RunOpts) -> Result<()> {
    let mut cfg = config::parse_files(&opts.files).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // A setting lb cannot honour yet is refused, never silently dropped: the
    // user would otherwise run with a behaviour their config does not say.
    let gaps = crate::health::runtime_gaps(&cfg);
    if !gaps.is_empty() {
        let list: Vec<String> = gaps
            .iter()
            .map(|(o, what)| format!("  {o}: {what}"))
            .collect();
        bail!(
            "the configuration is valid, but lb does not apply these settings yet:\n{}\n\
             (`lb check -f ...` lists them too)",
            list.join("\n")
        );
    }
    for (o, what) in config::runtime_ignored(&cfg) {
        tracing::info!("{o}: {what}");
    }
    if let Some(b) = opts.splice_budget {
        cfg.global.splice_budget = b;
    }
    check_self_steering(&cfg, opts.metrics)?;
    check_binds(&cfg)?;
    check_xdp(&cfg, opts.no_xdp)?;
    // Check plans read password files and the environment now, so that a
    // missing one stops start-up with the line that names it.
    let mut plans = Vec::new();
    let mut agents = Vec::new();
    let mut rises = Vec::new();
    for b in &cfg.backends {
        for s in &b.servers {
            agents.push(crate::health::agent::plan(b, s));
            rises.push(s.params.check_params.rise);
            // A disabled backend is not checked (HAProxy stops it).
            plans.push(if s.params.check && b.disabled.is_none() {
                Some(
                    crate::health::compile(b, s, &crate::health::read_password)
                        .with_context(|| format!("health check of server {}/{}", b.name, s.name))?,
                )
            } else {
                None
            });
        }
    }
    let nofile = sys::raise_nofile().context("raising RLIMIT_NOFILE")?;
    tracing::info!(
        "open files limit {nofile}: at most ~{} proxied connections (two sockets each)",
        nofile.saturating_sub(100) / 2
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(cfg, plans, (agents, rises), opts))
}

/// Agent plans and each server's `rise`, by server index.
pub(super) type Agents = (Vec<Option<crate::health::agent::AgentPlan>>, Vec<u32>);

async fn serve(
    cfg: Config,
    plans: Vec<Option<crate::health::Plan>>,
    agents: Agents,
    opts: RunOpts,
) -> Result<()> {
    // Watched before anything is created: from here on SIGINT and SIGTERM no
    // longer kill the process where it stands, so a start-up they interrupt
    // still drops, and so removes, what it made (programs, pinned maps,
    // socket files).
    let mut signals = Signals::watch().context("watching SIGINT, SIGTERM and SIGHUP")?;
    let started = tokio::select! {
        biased;
        () = signals.stop() => None,
        r = start::start(cfg, plans, agents, &opts) => Some(r),
    };
    let Some(started) = started else {
        tracing::warn!(
            "stopped during start-up: programs detached, pinned maps and sockets removed"
        );
        return Ok(());
    };
    let mut d = started?;
    while signals.next().await == Signal::Reload {
        match reload::reload(&opts, &d.ctx, &mut d.front, &d.xdp_reqs) {
            Ok(done) => tracing::info!("reload: {done}"),
            Err(e) => tracing::error!("reload refused, the running rules stay in force: {e:#}"),
        }
    }
    // Sessions on the userspace copy end by themselves (FIN or reset, as
    // they stand); the spliced ones end in the manager's stop.
    d.ctx
        .state
        .closing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for s in d.ctx.state.sessions.list() {
        s.end(crate::state::admin::END_STOPPING);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline
        && d.ctx
            .state
            .sessions
            .list()
            .iter()
            .any(|s| !s.spliced.load(Ordering::Relaxed))
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    d.stop();
    Ok(())
}

/// What a started daemon holds until it stops.
pub(super) struct Running {
    ctx: Arc<Ctx>,
    front: FrontDoor,
    xdp_reqs: Vec<xdp::IfaceReq>,
    stop: Arc<AtomicBool>,
    wake: Option<Arc<sys::EventFd>>,
    manager_thread: Option<std::thread::JoinHandle<()>>,
    sockets: crate::api::SocketFiles,
    loaded: kernel::Loaded,
}

impl Running {
    fn stop(self) {
        save_servers(&self.ctx);
        tracing::info!("stopping: closing connections, detaching programs");
        drop(self.sockets);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.wake {
            w.notify();
        }
        if let Some(t) = self.manager_thread {
            let _ = t.join();
        }
        drop(self.loaded);
    }
}

/// Applies the saved server state before anything is served: a crashed
/// daemon's pinned maps when there are some (they are the newest truth), else
/// the server-state files the backends load.
pub(super) fn restore_servers(
    cfg: &Config,
    state: &State,
    stale: Option<&[crate::state::persist::Entry]>,
    instance: &str,
) {
    let report = match stale {
        Some(entries) => {
            tracing::warn!(
                "instance '{instance}': found the server maps of a daemon that did not stop cleanly; \
                 restoring {} servers from them",
                entries.len()
            );
            if cfg
                .backends
                .iter()
                .any(|b| b.state_file(&cfg.global).is_some())
            {
                tracing::info!(
                    "server-state files not read: the pinned maps of the previous daemon are newer"
                );
            }
            crate::state::persist::apply_pinned(cfg, state, entries)
        }
        None => crate::state::persist::apply_files(cfg, state, &crate::state::persist::read_file),
    };
    for l in &report.restored {
        tracing::info!("{l}");
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
}

/// lb's own convenience: the global `server-state-file` gets what `show
/// servers state` says at a clean stop, so the next start resumes from it.
fn save_servers(live: &crate::api::Live) {
    let Some(path) = live.cfg.global.global_state_file() else {
        return;
    };
    let text = match crate::api::servers_state(live, None) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("server state not saved: {e}");
            return;
        }
    };
    match crate::state::persist::write_atomic(&path, &text) {
        Ok(()) => tracing::info!(
            "server state of {} servers saved to {}",
            live.state.servers.len(),
            path.display()
        ),
        Err(e) => tracing::error!("{e}"),
    }
}

/// Forwards aya-log records from the programs to our log.
pub(super) async fn forward_ebpf_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring buffer fd, and the AsyncFd owns the logger,
    // so the fd stays open for as long as it is registered.
    let mut fd = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("eBPF log forwarding unavailable: {}", e);
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

type SplicerParts = (Splicer, Arc<sys::EventFd>, std::thread::JoinHandle<()>);

/// Starts the splice manager thread once its self-test passed; None (userspace
/// copy for everything) if the kernel path fails it.
pub(super) fn start_splicer(
    maps: SpliceMaps,
    state: &Arc<State>,
    budget: u64,
    stop: &Arc<AtomicBool>,
) -> Result<Option<SplicerParts>> {
    let handle = tokio::runtime::Handle::current();
    let st = state.clone();
    let fallback = Box::new(move |nc: NewConn| {
        let st = st.clone();
        handle.spawn(async move { crate::datapath::accept::fallback_copy(nc, st).await });
    });
    let (mut mgr, splicer) = Manager::new(maps, state.clone(), budget, fallback, stop.clone())
        .context("starting the splice manager")?;
    match mgr.self_test() {
        Ok(true) => {
            tracing::info!("splice self-test passed (64 KiB each way through the verdict, then 64 KiB each way sent in parts to a paused reader)")
        }
        Ok(false) => {
            tracing::warn!("splice self-test skipped: loopback is down in this network namespace")
        }
        Err(e) => {
            tracing::error!("in-kernel splice self-test failed: {e}; data path: userspace copy");
            return Ok(None);
        }
    }
    let wake = mgr.wake_handle();
    let thread = std::thread::Builder::new()
        .name("lb-splice".into())
        .spawn(move || mgr.run())
        .context("spawning the splice manager thread")?;
    Ok(Some((splicer, wake, thread)))
}

/// Each frontend's name and number of compiled `tcp-request connection`
/// rules, for `LB_FE_META`.
pub(super) fn acl_meta<'c>(
    cfg: &'c Config,
    tables: &[Option<l4acl::Table>],
) -> Vec<(&'c str, usize)> {
    cfg.frontends
        .iter()
        .zip(tables)
        .map(|(f, t)| (f.name.as_str(), t.as_ref().map_or(0, |t| t.rules)))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP, registered once: a signal that arrives
/// between two waits is kept, not lost, and never takes the default action.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn watch() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    /// The next SIGINT or SIGTERM (a SIGHUP meanwhile stays queued).
    async fn stop(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

pub(super) fn set_listener(
    m: &mut SockMap<MapData>,
    idx: u32,
    l: &std::net::TcpListener,
) -> Result<()> {
    m.set(idx, l, 0)
        .with_context(|| format!("inserting listener {idx} into LB_LISTENERS"))
}

pub(super) fn insert_bind(
    m: &mut HashMap<MapData, BindKey, BindTarget>,
    k: &BindKey,
    t: BindTarget,
) -> Result<()> {
    m.insert(k, t, 0)
        .with_context(|| format!("inserting bind key {k:?} into LB_BINDS"))
}
