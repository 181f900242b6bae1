//! `lb run`: compile the config into maps, steer, accept, balance, splice.
mod publish;
mod reload;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, MapData, SockMap};
use lb_common::{BindKey, BindTarget, AF_INET, AF_INET6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::config::l4acl;
use crate::config::{self, Config};
use crate::datapath::splice::{Manager, NewConn, SpliceMaps, Splicer};
use crate::kernel::xdp::{self, FrontDoor, XdpMaps};
use crate::kernel::{self, FlowTable, Maps};
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
fn listener(family: u32) -> Result<std::net::TcpListener> {
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
    s.listen(4096).context("listen")?;
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
    for fe in &cfg.frontends {
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
type Ctx = crate::datapath::Live;

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
            rises.push(s.check_params.rise);
            plans.push(if s.check {
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
type Agents = (Vec<Option<crate::health::agent::AgentPlan>>, Vec<u32>);

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
        r = start(cfg, plans, agents, &opts) => Some(r),
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
    d.stop();
    Ok(())
}

/// What a started daemon holds until it stops.
struct Running {
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

/// Everything before the first client is served. Dropped half-way (a signal),
/// it leaves nothing behind: `kernel::Loaded` removes the pins and detaches,
/// `SocketFiles` removes the socket files.
async fn start(
    cfg: Config,
    plans: Vec<Option<crate::health::Plan>>,
    agents: Agents,
    opts: &RunOpts,
) -> Result<Running> {
    let xdp_reqs = if opts.no_xdp {
        Vec::new()
    } else {
        xdp::interfaces(&cfg)
    };
    // A live daemon of the same instance answers on its own socket: its pins
    // are not stale, and replacing them would break it.
    let own = crate::api::default_socket(&opts.instance);
    if std::os::unix::net::UnixStream::connect(&own).is_ok() {
        anyhow::bail!(
            "instance '{}' is already running (its runtime API {} answers); stop it or pick another --instance",
            opts.instance,
            own.display()
        );
    }
    // Before loading: the load replaces a crashed daemon's pins.
    let stale = match crate::state::persist::read_pinned(&kernel::pin_dir(&opts.instance)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "{e}: the previous daemon's maps are not restored (the server-state files are used)"
            );
            None
        }
    };
    let mut loaded = kernel::load(&opts.instance, !opts.no_splice, !xdp_reqs.is_empty())
        .context("loading the eBPF programs (root and a BPF-enabled kernel are required)")?;
    match &loaded.splice {
        Ok(()) => tracing::info!("data path: in-kernel splice (sockhash + sk_skb verdict)"),
        Err(why) => tracing::warn!("data path: userspace copy ({why})"),
    }
    if let Some(logger) = loaded.logger.take() {
        tokio::spawn(forward_ebpf_logs(logger));
    }
    // Between steps start-up yields, so that a signal stops it there (the
    // steps themselves are short and synchronous).
    tokio::task::yield_now().await;
    let mut maps = Maps::take(&mut loaded.ebpf).context("taking the maps")?;
    let conn_table = match &loaded.conns {
        Ok(()) => Some(kernel::ConnTable::take(&mut loaded.ebpf).context("mapping LB_SRV_CONNS")?),
        Err(why) => {
            tracing::warn!(
                "connection counts kept in userspace only ({why}): a connection that ends while the daemon is busy is counted out when it gets to it"
            );
            None
        }
    };
    let mut front = FrontDoor::new(XdpMaps::take(&mut loaded.ebpf).context("taking the XDP maps")?);
    let acls: Vec<Option<l4acl::Table>> = cfg
        .frontends
        .iter()
        .map(|f| l4acl::compile(&f.tcp_request_connection))
        .collect();
    front
        .set_frontends(&acl_meta(&cfg, &acls))
        .context("writing LB_FE_META")?;
    let tables: Vec<Option<&l4acl::Table>> = acls.iter().map(|t| t.as_ref()).collect();
    front
        .install_acls(&tables)
        .context("writing the tcp-request connection rules to the ACL tries")?;
    front
        .set_syn_rate(cfg.global.xdp_syn_rate.as_ref().map(|r| r.value))
        .context("writing LB_XDP_CFG")?;
    let (cookies, why_not) = xdp::syn_cookies_for(&cfg, &xdp_reqs);
    if let Some(why) = why_not {
        tracing::warn!("SYN cookies left to the kernel: {why}");
    } else if !xdp_reqs.is_empty() {
        tracing::info!(
            "SYN cookies from XDP while a listener's SYN queue is full: {}",
            if cookies { "on" } else { "off" }
        );
    }
    front
        .set_syn_cookies(cookies)
        .context("writing LB_XDP_CFG")?;
    for (f, t) in cfg.frontends.iter().zip(&acls) {
        if let Some(t) = t {
            tracing::info!(
                "frontend '{}': {} tcp-request connection rules -> {} ACL entries",
                f.name,
                t.rules,
                t.len()
            );
        }
    }
    tokio::task::yield_now().await;
    let state = Arc::new(State::from_config(&cfg));
    restore_servers(&cfg, &state, stale.as_deref(), &opts.instance);
    if let Some(t) = conn_table {
        state.use_kernel_counts(t);
    }
    for s in &state.servers {
        maps.srv_meta
            .set(s.idx, s.meta(), 0)
            .with_context(|| format!("writing server {}/{} to LB_SRV_META", s.backend, s.name))?;
        maps.srv_state
            .set(s.idx, s.snapshot(), 0)
            .with_context(|| format!("writing server {}/{} to LB_SRV_STATE", s.backend, s.name))?;
        if plans.get(s.idx as usize).is_some_and(|p| p.is_some()) {
            maps.srv_check
                .set(s.idx, lb_common::ServerCheck::default(), 0)
                .with_context(|| {
                    format!("writing server {}/{} to LB_SRV_CHECK", s.backend, s.name)
                })?;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let splice_on = loaded.splice.is_ok();
    let Maps {
        mut listeners,
        mut binds,
        targets,
        spliced,
        ends,
        flows,
        events,
        srv_state,
        srv_kstats,
        stats,
        srv_check,
        ..
    } = maps;
    let (splicer, wake, manager_thread) = if splice_on {
        let maps = SpliceMaps {
            targets,
            spliced,
            ends,
            events,
            flows: FlowTable::map(&flows).context("mapping LB_FLOWS")?,
        };
        match start_splicer(maps, &state, cfg.global.splice_budget, &stop)? {
            Some((s, w, t)) => (Some(s), Some(w), Some(t)),
            None => (None, None, None),
        }
    } else {
        (None, None, None)
    };

    // Only now, after the splice self-test: its loopback connection must never
    // meet a bind (a port range over the ephemeral ports would steer it).
    let mut accept_sockets = Vec::new();
    for (fe_idx, fe) in cfg.frontends.iter().enumerate() {
        let keys = fe.bind_keys();
        for family in [AF_INET, AF_INET6] {
            if !keys.iter().any(|k| k.family == family) {
                continue;
            }
            let idx = (fe_idx * 2 + (family == AF_INET6) as usize) as u32;
            let l = listener(family)
                .with_context(|| format!("creating the listener of frontend '{}'", fe.name))?;
            set_listener(&mut listeners, idx, &l)?;
            accept_sockets.push((fe_idx, l));
            for b in &fe.binds {
                // check_xdp made sure the interface exists.
                let ifindex = b.interface.as_deref().and_then(xdp::ifindex).unwrap_or(0);
                for k in b.keys().iter().filter(|k| k.family == family) {
                    let t = BindTarget {
                        listener: idx,
                        ifindex,
                    };
                    insert_bind(&mut binds, k, t)?;
                }
            }
        }
        tokio::task::yield_now().await;
        tracing::info!(
            "frontend '{}': {} bind keys -> backend '{}'",
            fe.name,
            keys.len(),
            fe.default_backend.as_deref().unwrap_or("-")
        );
    }

    tokio::task::yield_now().await;
    let publisher: Arc<dyn crate::state::Publish> = Arc::new(publish::Publisher {
        state: state.clone(),
        srv_state: std::sync::Mutex::new(srv_state),
        srv_check: std::sync::Mutex::new(srv_check),
        splicer: splicer.clone(),
    });
    let spread = cfg.global.spread_checks.as_ref().map_or(0, |s| s.value);
    crate::health::spawn_all(&state, plans, spread, publisher.clone());
    crate::health::spawn_agents(&state, agents.0, agents.1, publisher.clone());
    {
        let state = state.clone();
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            // Only what changed: with thousands of idle servers, rewriting
            // every entry five times a second costs more than the checks.
            let mut last = vec![None; state.servers.len()];
            loop {
                tick.tick().await;
                for s in &state.servers {
                    let snap = Some(s.snapshot());
                    if last[s.idx as usize] != snap {
                        last[s.idx as usize] = snap;
                        publisher.state(s.idx);
                    }
                }
            }
        });
    }

    // The program goes on the wire only now that its maps are filled, so no
    // packet sees a frontend without its rules.
    if !xdp_reqs.is_empty() {
        let ifaces = xdp::attach(&mut loaded.ebpf, &xdp_reqs).context("attaching XDP")?;
        front.set_ifaces(&ifaces).context("writing LB_XDP_IFACES")?;
    } else if opts.no_xdp {
        tracing::info!("XDP front door off (--no-xdp)");
    }
    let mut tcplog = Vec::new();
    for f in &cfg.frontends {
        let sink = crate::datapath::tcplog::Sink::for_frontend(&cfg, f)
            .with_context(|| format!("opening the log targets of frontend '{}'", f.name))?;
        tcplog.push(sink.map(Arc::new));
    }
    let ctx = Arc::new(Ctx {
        acls: std::sync::RwLock::new(acls),
        global_limit: crate::datapath::limits::Limit::new(cfg.global.maxconn),
        frontend_limits: cfg
            .frontends
            .iter()
            .map(|f| crate::datapath::limits::Limit::new(f.maxconn))
            .collect(),
        cfg,
        state: state.clone(),
        splicer,
        publisher,
        kernel: Some(std::sync::Mutex::new(crate::kernel::Counters {
            srv_kstats,
            stats,
        })),
        instance: opts.instance.clone(),
        splice_on,
        start_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        start_ns: sys::monotonic_ns(),
        tcplog,
    });
    let sockets = crate::api::start_sockets(ctx.clone()).await?;
    if let Some(addr) = opts.metrics {
        crate::api::metrics::serve(ctx.clone(), addr)?;
    }

    for (fe_idx, l) in accept_sockets {
        let l = TcpListener::from_std(l).context("registering a listener")?;
        let ctx = ctx.clone();
        tokio::spawn(async move { crate::datapath::accept::accept_loop(ctx, fe_idx, l).await });
    }

    if let Some(p) = &opts.ready_file {
        std::fs::write(p, b"ready\n")
            .with_context(|| format!("writing the ready file {}", p.display()))?;
    }
    tracing::info!(
        "lb ready: {} frontends, {} servers, instance '{}' (maps in {})",
        ctx.cfg.frontends.len(),
        state.servers.len(),
        opts.instance,
        loaded.pin_dir.display()
    );

    Ok(Running {
        ctx,
        front,
        xdp_reqs,
        stop,
        wake,
        manager_thread,
        sockets,
        loaded,
    })
}

/// Applies the saved server state before anything is served: a crashed
/// daemon's pinned maps when there are some (they are the newest truth), else
/// the server-state files the backends load.
fn restore_servers(
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
async fn forward_ebpf_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
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
fn start_splicer(
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
            tracing::info!("splice self-test passed (64 KiB each way through the verdict)")
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

fn set_listener(m: &mut SockMap<MapData>, idx: u32, l: &std::net::TcpListener) -> Result<()> {
    m.set(idx, l, 0)
        .with_context(|| format!("inserting listener {idx} into LB_LISTENERS"))
}

fn insert_bind(
    m: &mut HashMap<MapData, BindKey, BindTarget>,
    k: &BindKey,
    t: BindTarget,
) -> Result<()> {
    m.insert(k, t, 0)
        .with_context(|| format!("inserting bind key {k:?} into LB_BINDS"))
}
