//! `lb run`: compile the config into maps, steer, accept, balance, splice.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::maps::{HashMap, MapData, SockMap};
use lb_common::{BindKey, BindTarget, AF_INET, AF_INET6};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::bpf::{self, FlowTable, Maps};
use crate::config::{self, Config, Frontend};
use crate::l4acl;
use crate::splice::{Manager, NewConn, SpliceMaps, Splicer};
use crate::state::State;
use crate::sys;
use crate::userpath;
use crate::xdp::{self, FrontDoor, XdpMaps};

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
fn check_xdp(cfg: &Config, no_xdp: bool) -> Result<()> {
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
type Ctx = crate::runtime::Live;

pub fn run(opts: RunOpts) -> Result<()> {
    let mut cfg = config::parse_files(&opts.files).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // A setting lb cannot honour yet is refused, never silently dropped: the
    // user would otherwise run with a behaviour their config does not say.
    let gaps = crate::check::runtime_gaps(&cfg);
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
            agents.push(crate::check::agent::plan(b, s));
            rises.push(s.check_params.rise);
            plans.push(if s.check {
                Some(
                    crate::check::compile(b, s, &crate::check::read_password)
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
type Agents = (Vec<Option<crate::check::agent::AgentPlan>>, Vec<u32>);

async fn serve(
    cfg: Config,
    plans: Vec<Option<crate::check::Plan>>,
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
        match reload(&opts, &d.ctx, &mut d.front, &d.xdp_reqs) {
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
    sockets: crate::runtime::SocketFiles,
    loaded: bpf::Loaded,
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
/// it leaves nothing behind: `bpf::Loaded` removes the pins and detaches,
/// `SocketFiles` removes the socket files.
async fn start(
    cfg: Config,
    plans: Vec<Option<crate::check::Plan>>,
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
    let own = crate::client::default_socket(&opts.instance);
    if std::os::unix::net::UnixStream::connect(&own).is_ok() {
        anyhow::bail!(
            "instance '{}' is already running (its runtime API {} answers); stop it or pick another --instance",
            opts.instance,
            own.display()
        );
    }
    // Before loading: the load replaces a crashed daemon's pins.
    let stale = match crate::srvstate::read_pinned(&bpf::pin_dir(&opts.instance)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "{e}: the previous daemon's maps are not restored (the server-state files are used)"
            );
            None
        }
    };
    let mut loaded = bpf::load(&opts.instance, !opts.no_splice, !xdp_reqs.is_empty())
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
        Ok(()) => Some(bpf::ConnTable::take(&mut loaded.ebpf).context("mapping LB_SRV_CONNS")?),
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
    let srv_state = Arc::new(std::sync::Mutex::new(srv_state));
    let publish = {
        let state = state.clone();
        let srv_state = srv_state.clone();
        Arc::new(move |idx: u32| {
            let snap = state.servers[idx as usize].snapshot();
            let mut m = srv_state.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = m.set(idx, snap, 0) {
                tracing::error!("writing LB_SRV_STATE[{idx}]: {e}");
            }
        })
    };
    let on_change: Arc<dyn Fn(u32) + Send + Sync> = {
        let state = state.clone();
        let splicer = splicer.clone();
        let publish = publish.clone();
        Arc::new(move |idx: u32| {
            publish(idx);
            on_server_change(&state, splicer.as_ref(), idx);
        })
    };
    let on_check: crate::health::OnCheck = {
        let srv_check = std::sync::Mutex::new(srv_check);
        Arc::new(move |idx: u32, c: &lb_common::ServerCheck| {
            let mut m = srv_check.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = m.set(idx, *c, 0) {
                tracing::error!("writing LB_SRV_CHECK[{idx}]: {e}");
            }
        })
    };
    // Check- and agent-driven changes also feed lastchg, chkdown and downtime.
    let on_check_change: Arc<dyn Fn(u32) + Send + Sync> = {
        let state = state.clone();
        let on_change = on_change.clone();
        Arc::new(move |idx: u32| {
            let s = &state.servers[idx as usize];
            s.admin.note_change(s.is_up());
            on_change(idx);
        })
    };
    let spread = cfg.global.spread_checks.as_ref().map_or(0, |s| s.value);
    crate::health::spawn_all(&state, plans, spread, on_check_change.clone(), on_check);
    crate::health::spawn_agents(&state, agents.0, agents.1, on_check_change);
    {
        let state = state.clone();
        let publish = publish.clone();
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
                        publish(s.idx);
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
        let sink = crate::runtime::tcplog::Sink::for_frontend(&cfg, f)
            .with_context(|| format!("opening the log targets of frontend '{}'", f.name))?;
        tcplog.push(sink.map(Arc::new));
    }
    let ctx = Arc::new(Ctx {
        acls: std::sync::RwLock::new(acls),
        global_limit: crate::runtime::Limit::new(cfg.global.maxconn),
        frontend_limits: cfg
            .frontends
            .iter()
            .map(|f| crate::runtime::Limit::new(f.maxconn))
            .collect(),
        cfg,
        state: state.clone(),
        splicer,
        publish: publish.clone(),
        on_change,
        kernel: Some(std::sync::Mutex::new(crate::runtime::KernelMaps {
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
    let sockets = crate::runtime::start_sockets(ctx.clone()).await?;
    if let Some(addr) = opts.metrics {
        crate::metrics::serve(ctx.clone(), addr)?;
    }

    for (fe_idx, l) in accept_sockets {
        let l = TcpListener::from_std(l).context("registering a listener")?;
        let ctx = ctx.clone();
        tokio::spawn(async move { accept_loop(ctx, fe_idx, l).await });
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
    stale: Option<&[crate::srvstate::Entry]>,
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
            crate::srvstate::apply_pinned(cfg, state, entries)
        }
        None => crate::srvstate::apply_files(cfg, state, &crate::srvstate::read_file),
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
fn save_servers(live: &crate::runtime::Live) {
    let Some(path) = live.cfg.global.global_state_file() else {
        return;
    };
    let text = match crate::runtime::servers_state(live, None) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("server state not saved: {e}");
            return;
        }
    };
    match crate::srvstate::write_atomic(&path, &text) {
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
        handle.spawn(async move { fallback_copy(nc, st).await });
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
fn acl_meta<'c>(cfg: &'c Config, tables: &[Option<l4acl::Table>]) -> Vec<(&'c str, usize)> {
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

/// SIGHUP: reads the configuration files again and puts in force, at once and
/// together, what can change while connections run: every frontend's
/// `tcp-request connection` rules (XDP tries swapped by generation, so a
/// packet meets the old rules or the new ones, never none; then the tables
/// the accept path uses), `xdp-syn-rate` and `xdp-syn-cookies`. A file that
/// does not parse, or that adds, removes or renames frontends, changes
/// nothing. Other differences are reported and wait for a restart (which
/// keeps the server state).
fn reload(
    opts: &RunOpts,
    ctx: &Ctx,
    front: &mut FrontDoor,
    xdp_reqs: &[xdp::IfaceReq],
) -> Result<String> {
    let new = config::parse_files(&opts.files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let names =
        |c: &Config| -> Vec<String> { c.frontends.iter().map(|f| f.name.clone()).collect() };
    if names(&ctx.cfg) != names(&new) {
        bail!(
            "the frontends changed ({:?} -> {:?}); adding, removing or renaming one needs a restart",
            names(&ctx.cfg),
            names(&new)
        );
    }
    check_xdp(&new, opts.no_xdp)?;
    let tables: Vec<Option<l4acl::Table>> = new
        .frontends
        .iter()
        .map(|f| l4acl::compile(&f.tcp_request_connection))
        .collect();
    let refs: Vec<Option<&l4acl::Table>> = tables.iter().map(|t| t.as_ref()).collect();
    front
        .install_acls(&refs)
        .context("writing the new tcp-request connection rules to the ACL tries")?;
    front
        .set_syn_rate(new.global.xdp_syn_rate.as_ref().map(|r| r.value))
        .context("writing LB_XDP_CFG")?;
    let (cookies, why_not) = xdp::syn_cookies_for(&new, xdp_reqs);
    front
        .set_syn_cookies(cookies)
        .context("writing LB_XDP_CFG")?;
    let meta = acl_meta(&new, &tables);
    front.set_frontends(&meta).context("writing LB_FE_META")?;
    let rules: usize = meta.iter().map(|(_, n)| n).sum();
    *ctx.acls.write().unwrap_or_else(|e| e.into_inner()) = tables;
    let mut done = format!(
        "{rules} tcp-request connection rules in force (ACL generation {}), xdp-syn-rate {}, \
         xdp-syn-cookies {}",
        front.generation(),
        new.global
            .xdp_syn_rate
            .as_ref()
            .map_or("off".to_string(), |r| format!(
                "{}/s burst {}",
                r.value.per_second, r.value.burst
            )),
        match (cookies, why_not) {
            (true, _) => "on".to_string(),
            (false, None) => "off".to_string(),
            (false, Some(why)) => format!("off ({why})"),
        }
    );
    let rest = crate::config::reload_pending(&ctx.cfg, &new);
    if !rest.is_empty() {
        done.push_str(&format!(
            "; not applied until a restart: {}",
            rest.join(", ")
        ));
    }
    Ok(done)
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

/// What a server's state change triggers besides the maps: HAProxy's
/// `on-marked-down shutdown-sessions` and `on-marked-up shutdown-backup-sessions`.
fn on_server_change(state: &State, splicer: Option<&Splicer>, idx: u32) {
    let Some(s) = state.servers.get(idx as usize) else {
        return;
    };
    if !s.is_up() && s.shutdown_on_down {
        shutdown_sessions(state, splicer, idx);
    }
    if s.is_up() && !s.backup && s.shutdown_backups_on_up {
        if let Some(b) = state.backend_of(idx) {
            for &i in &b.servers {
                if state.servers[i as usize].backup {
                    shutdown_sessions(state, splicer, i);
                }
            }
        }
    }
}

/// Resets every session of server `idx`, on both data paths (HAProxy's
/// `shutdown sessions server`, used by `on-marked-down shutdown-sessions`).
pub fn shutdown_sessions(state: &State, splicer: Option<&Splicer>, idx: u32) {
    if let Some(s) = state.servers.get(idx as usize) {
        s.kill.notify_waiters();
    }
    if let Some(sp) = splicer {
        sp.shutdown_server(idx);
    }
}

/// One slot of each limit, waited for in turn.
async fn take_slots(ctx: &Ctx, fe_idx: usize) -> Vec<tokio::sync::OwnedSemaphorePermit> {
    let mut permits = Vec::new();
    for l in [&ctx.global_limit, &ctx.frontend_limits[fe_idx]] {
        if let Some(p) = l.acquire().await {
            permits.push(p);
        }
    }
    permits
}

/// What happens when a session ends: frontend counters, the session table,
/// the tcplog line.
fn end_session(ctx: &Ctx, s: &crate::admin::Session) {
    let st = &ctx.state;
    st.sessions.close(s.id);
    let f = &st.frontends[s.frontend];
    f.cur.fetch_sub(1, Ordering::Relaxed);
    if s.spliced.load(Ordering::Relaxed) {
        f.ended_spliced.fetch_add(1, Ordering::Relaxed);
    } else if s.server_idx().is_some() {
        f.ended_userspace.fetch_add(1, Ordering::Relaxed);
    }
    f.bytes_in
        .fetch_add(s.bytes_in.load(Ordering::Relaxed), Ordering::Relaxed);
    f.bytes_out
        .fetch_add(s.bytes_out.load(Ordering::Relaxed), Ordering::Relaxed);
    // As HAProxy, only sessions that reached their server count in the
    // time averages: a failed connect has no connect time.
    let (tw, tc) = (
        s.tw_ms.load(Ordering::Relaxed),
        s.tc_ms.load(Ordering::Relaxed),
    );
    if let (Some(srv), true) = (
        s.server_idx().and_then(|i| st.servers.get(i as usize)),
        tc != u32::MAX,
    ) {
        let tw = if tw == u32::MAX { 0 } else { tw };
        let tt = (sys::monotonic_ns().saturating_sub(s.accept_ns) / 1_000_000) as u32;
        srv.admin.times.record(tw, tc, tt);
        if let Some(b) = st.backends.get(s.backend) {
            b.times.record(tw, tc, tt);
        }
    }
    if let Some(Some(sink)) = ctx.tcplog.get(s.frontend) {
        let server = s
            .server_idx()
            .and_then(|i| st.servers.get(i as usize))
            .map(|x| x.name.as_str());
        let line = crate::runtime::tcplog::line(
            s,
            &ctx.cfg.frontends[s.frontend].name,
            &ctx.cfg.backends[s.backend].name,
            server,
            sys::monotonic_ns(),
        );
        sink.send(&line, s.accept_unix_ms);
    }
}

async fn accept_loop(ctx: Arc<Ctx>, fe_idx: usize, l: TcpListener) {
    loop {
        // At the limit, HAProxy stops accepting (the kernel's backlog holds new
        // clients) rather than refusing them.
        let permits = take_slots(&ctx, fe_idx).await;
        match l.accept().await {
            Ok((client, peer)) => {
                let rejected = {
                    let acls = ctx.acls.read().unwrap_or_else(|e| e.into_inner());
                    xdp::rejects(acls[fe_idx].as_ref(), peer.ip())
                };
                if rejected {
                    // As HAProxy's `tcp-request connection reject`: closed at
                    // once, without lingering. A connection only gets here when
                    // the XDP program did not see it (loopback, another
                    // interface, --no-xdp, IP fragments).
                    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                    tracing::debug!("frontend {fe_idx}: {peer} rejected by tcp-request connection");
                    continue;
                }
                let ctx = ctx.clone();
                tokio::spawn(async move { handle(ctx, fe_idx, client, peer, permits).await });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    tracing::error!(
                        "accept: {e}: the open-files limit is reached; new connections wait"
                    );
                } else {
                    tracing::warn!("accept: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn idle_timeout(ctx: &Ctx, fe_idx: usize, be_idx: usize) -> Option<userpath::Idle> {
    userpath::Idle::new(
        ctx.cfg.frontends[fe_idx].timeout_client,
        ctx.cfg.backends[be_idx].timeout_server,
    )
}

async fn handle(
    ctx: Arc<Ctx>,
    fe_idx: usize,
    client: TcpStream,
    peer: SocketAddr,
    permits: Vec<tokio::sync::OwnedSemaphorePermit>,
) {
    let fe = &ctx.cfg.frontends[fe_idx];
    let Some(be_idx) = fe.default_backend_idx else {
        return;
    };
    let local = client.local_addr().ok();
    let mut peer = peer;
    let mut dst = local.unwrap_or(peer);
    // Client bytes read before the pair is spliced, to be sent to the server first.
    let mut early = Vec::new();
    if local.is_some_and(|l| accepts_proxy(fe, l)) {
        let wait = fe.timeout_client.unwrap_or(Duration::from_secs(5));
        match read_proxy_header(&client, wait).await {
            Ok(Some((src, to))) => {
                // The original client, as the proxy in front of us saw it.
                peer = src;
                dst = to;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("frontend '{}': client {peer}: {e}; closing", fe.name);
                return;
            }
        }
        // The verdict runs over whole skbs (tcp_read_skb ignores what userspace
        // already read of one), so the rest of a partly read skb must not stay
        // queued: take everything queued now and send it ahead ourselves.
        match drain_queued(&client) {
            Ok(bytes) => early = bytes,
            Err(e) => {
                tracing::debug!("client {peer}: {e}");
                return;
            }
        }
    }
    let sess = ctx.state.sessions.open(fe_idx, be_idx, peer);
    {
        let f = &ctx.state.frontends[fe_idx];
        let cur = f.cur.fetch_add(1, Ordering::Relaxed) + 1;
        f.max.fetch_max(cur, Ordering::Relaxed);
        f.total.fetch_add(1, Ordering::Relaxed);
        sess.conns[0].store(ctx.state.sessions.len() as u32, Ordering::Relaxed);
        sess.conns[1].store(cur, Ordering::Relaxed);
    }
    let guard = {
        let c = ctx.clone();
        crate::admin::SessionGuard::new(sess.clone(), Arc::new(move |s| end_session(&c, s)))
    };
    sess.bytes_in
        .fetch_add(early.len() as u64, Ordering::Relaxed);
    let Some((srv, server)) = connect_with_retries(&ctx, be_idx, peer, &sess).await else {
        // No server could take it: close at once, as HAProxy does.
        ctx.state.frontends[fe_idx]
            .denied
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Armed while the session lives: if lb dies (SIGKILL, a crash), the kernel
    // closes both sockets with an RST, so neither end takes a cut stream for a
    // complete one. A session that ends cleanly disarms it first.
    let _ = sys::set_linger_reset(&client);
    let _ = sys::set_linger_reset(&server);
    let mut server = server;
    if let Some(version) = srv.send_proxy {
        // The header goes first, before any client byte can be spliced behind it.
        let hdr = crate::proxy_proto::encode(version, peer, dst);
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut server, &hdr).await {
            tracing::debug!("PROXY header to {}/{}: {e}", srv.backend, srv.name);
            ctx.state
                .release_conn(srv.idx, sess.server_cookie.load(Ordering::Relaxed));
            return;
        }
    }
    if !early.is_empty() {
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut server, &early).await {
            tracing::debug!("early bytes to {}/{}: {e}", srv.backend, srv.name);
            ctx.state
                .release_conn(srv.idx, sess.server_cookie.load(Ordering::Relaxed));
            return;
        }
        srv.user_bytes_in
            .fetch_add(early.len() as u64, Ordering::Relaxed);
    }
    let idle = idle_timeout(&ctx, fe_idx, be_idx);
    let idx = srv.idx;
    if let Some(splicer) = &ctx.splicer {
        match (client.into_std(), server.into_std()) {
            (Ok(client), Ok(server)) => {
                let nc = NewConn {
                    client,
                    server,
                    server_idx: idx,
                    idle,
                    permits,
                    session: Some(guard),
                };
                if let Err(nc) = splicer.adopt(nc) {
                    fallback_copy(nc, ctx.state.clone()).await;
                }
            }
            _ => ctx
                .state
                .release_conn(srv.idx, sess.server_cookie.load(Ordering::Relaxed)),
        }
    } else {
        userpath::proxy(client, server, ctx.state.clone(), idx, idle, Some(sess)).await;
        drop(permits);
        drop(guard);
    }
}

/// Whether the bind that took this connection (its local address) has
/// `accept-proxy`: a specific address before the wildcard, as sk_lookup does.
fn accepts_proxy(fe: &Frontend, local: SocketAddr) -> bool {
    let covers = |b: &crate::config::Bind| (b.port_first..=b.port_last).contains(&local.port());
    let specific = fe.binds.iter().find(|b| {
        covers(b)
            && b.addr
                .is_some_and(|a| !a.is_unspecified() && a == local.ip())
    });
    let chosen = specific.or_else(|| {
        fe.binds.iter().find(|b| {
            covers(b)
                && match b.addr {
                    None => local.is_ipv4(),
                    Some(a) => a.is_unspecified(),
                }
        })
    });
    chosen.is_some_and(|b| b.accept_proxy)
}

/// Reads a PROXY protocol header (v1 or v2) off the client, leaving the bytes
/// after it in the socket. Ok(None): LOCAL/UNKNOWN, keep the socket's addresses.
async fn read_proxy_header(
    client: &TcpStream,
    wait: Duration,
) -> Result<Option<(SocketAddr, SocketAddr)>, String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 16 + 65535];
    loop {
        let n = tokio::time::timeout_at(deadline, client.peek(&mut buf))
            .await
            .map_err(|_| "no PROXY header before the timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before its PROXY header".into());
        }
        match crate::proxy_proto::decode(&buf[..n]) {
            Ok(Some(p)) => {
                // Consume exactly the header; the payload stays queued.
                let mut left = p.len;
                while left > 0 {
                    client.readable().await.map_err(|e| e.to_string())?;
                    match client.try_read(&mut buf[..left]) {
                        Ok(0) => return Err("closed inside its PROXY header".into()),
                        Ok(k) => left -= k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                return Ok(p.addrs);
            }
            Ok(None) => {
                // Wait for more bytes than the ones already peeked.
                client.readable().await.map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads everything the client's receive queue holds right now, until it is
/// empty: no partly read skb is left behind.
fn drain_queued(client: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    // Plain recv(2): tokio's try_read would skip the syscall when its readiness
    // flag is clear, and leave bytes behind.
    while sys::inq(client)? > 0 {
        match sys::recv(client, &mut buf)? {
            Some(0) | None => break,
            Some(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    Ok(out)
}

/// Whether retry number `retry` (1-based, of `retries`) goes to another server,
/// per `option redispatch [interval]`: P > 0 every P-th retry, N < 0 the |N|-th
/// retry before the end (-1, the default: the last one).
pub fn redispatch_on(retry: u32, retries: u32, interval: Option<i32>) -> bool {
    match interval {
        Some(p) if p > 0 => retry.is_multiple_of(p as u32),
        Some(n) if n < 0 => retry as i64 == retries as i64 + 1 + n as i64,
        _ => false,
    }
}

/// Picks a server and connects, with `retries` (default 3) more attempts after a
/// failure: after min(timeout connect, 1 s) to the same server, or at once to
/// another one when `option redispatch` says so. Counts the connection on the
/// server it lands on.
async fn connect_with_retries<'a>(
    ctx: &'a Ctx,
    be_idx: usize,
    peer: SocketAddr,
    sess: &crate::admin::Session,
) -> Option<(&'a crate::state::Server, TcpStream)> {
    let be = &ctx.cfg.backends[be_idx];
    let connect_timeout = be.timeout_connect.unwrap_or(Duration::from_secs(5));
    let retries = be.retries.as_ref().map_or(3, |r| r.value);
    let redispatch = be.redispatch.as_ref().map(|r| r.value);
    let queue_timeout = be
        .timeout_queue
        .as_ref()
        .map_or(connect_timeout, |t| t.value);
    let ms_since = |ns: u64| (sys::monotonic_ns().saturating_sub(ns) / 1_000_000) as u32;
    let queue_start = sys::monotonic_ns();
    let b = &ctx.state.backends[be_idx];
    sess.queues[1].store(b.queued.load(Ordering::Relaxed), Ordering::Relaxed);
    let Some(mut srv) = queue_for_slot(ctx, be_idx, peer, None, queue_timeout).await else {
        let waited = sys::monotonic_ns().saturating_sub(queue_start);
        // A queue timeout (sQ) or no server able to take it (SC).
        sess.set_term(if waited >= queue_timeout.as_nanos() as u64 {
            *b"sQ"
        } else {
            *b"SC"
        });
        return None;
    };
    sess.tw_ms
        .store(ms_since(sess.accept_ns), Ordering::Relaxed);
    for attempt in 0..=retries {
        sess.server.store(srv.idx, Ordering::Relaxed);
        let connect_start = sys::monotonic_ns();
        // Registered before connect(): from then on whichever of the kernel
        // (the socket closing, a failed connect included) or this daemon gets
        // there first counts the connection out.
        let sock = if srv.addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let cookie = sock.as_ref().map_or(0, |s| {
            ctx.state
                .register_conn(srv.idx, std::os::fd::AsFd::as_fd(s))
        });
        let connect = async { sock?.connect(srv.addr).await };
        let (err, timed_out) = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(s)) => {
                sess.tc_ms.store(ms_since(connect_start), Ordering::Relaxed);
                sess.server_cookie.store(cookie, Ordering::Relaxed);
                let be_conns: u32 = b
                    .servers
                    .iter()
                    .map(|&i| {
                        ctx.state.servers[i as usize]
                            .cur_conns
                            .load(Ordering::Relaxed)
                    })
                    .sum();
                sess.conns[2].store(be_conns, Ordering::Relaxed);
                sess.conns[3].store(srv.cur_conns.load(Ordering::Relaxed), Ordering::Relaxed);
                return Some((srv, s));
            }
            Ok(Err(e)) => (e.to_string(), false),
            Err(_) => ("timeout".to_string(), true),
        };
        srv.admin.econ.fetch_add(1, Ordering::Relaxed);
        ctx.state.release_conn(srv.idx, cookie);
        tracing::debug!(
            "connect to {}/{} (attempt {}): {err}",
            srv.backend,
            srv.name,
            attempt + 1
        );
        if attempt == retries {
            sess.set_term(*b"SC");
            break;
        }
        srv.admin.retries.fetch_add(1, Ordering::Relaxed);
        sess.retries.fetch_add(1, Ordering::Relaxed);
        let avoid = if redispatch_on(attempt + 1, retries, redispatch) {
            Some(srv.idx)
        } else {
            if !timed_out {
                // A fast failure (refused, unreachable): HAProxy's turn-around
                // timer, so a restarting server is not hammered. A timeout retries
                // at once.
                tokio::time::sleep(connect_timeout.min(Duration::from_secs(1))).await;
            }
            None
        };
        if avoid.is_some() {
            srv.admin.redispatches.fetch_add(1, Ordering::Relaxed);
        }
        srv = match avoid {
            Some(_) => queue_for_slot(ctx, be_idx, peer, avoid, queue_timeout).await?,
            // The same server again, as soon as it has a free slot.
            None => queue_for_server(ctx, srv, queue_timeout).await?,
        };
    }
    None
}

/// A server with a free slot, waiting in the backend's queue (oldest first) for at
/// most `timeout queue` while every usable server is at its `maxconn`. None when
/// no server is usable, the queue is full (`maxqueue`) or the wait timed out.
async fn queue_for_slot(
    ctx: &Ctx,
    be_idx: usize,
    peer: SocketAddr,
    avoid: Option<u32>,
    queue_timeout: Duration,
) -> Option<&crate::state::Server> {
    let b = &ctx.state.backends[be_idx];
    let deadline = tokio::time::Instant::now() + queue_timeout;
    loop {
        // Registered before looking, so a slot freed in between is not missed.
        let freed = b.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some(s) = ctx.state.pick(be_idx, Some(peer.ip()), avoid) {
            return Some(s);
        }
        if !ctx.state.all_full(be_idx) {
            return None;
        }
        if b.maxqueue > 0 && b.queued.load(Ordering::Relaxed) >= b.maxqueue {
            return None;
        }
        b.queued.fetch_add(1, Ordering::Relaxed);
        let woke = tokio::time::timeout_at(deadline, freed).await;
        b.queued.fetch_sub(1, Ordering::Relaxed);
        if woke.is_err() {
            tracing::debug!("backend {}: queue timeout", b.name);
            return None;
        }
    }
}

/// The same server again (a retry): wait for one of its slots like the queue does.
async fn queue_for_server<'a>(
    ctx: &'a Ctx,
    srv: &'a crate::state::Server,
    queue_timeout: Duration,
) -> Option<&'a crate::state::Server> {
    let b = ctx.state.backend_of(srv.idx)?;
    let deadline = tokio::time::Instant::now() + queue_timeout;
    loop {
        let freed = b.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let took = srv
            .cur_conns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                let max = srv.effective_maxconn();
                (max == 0 || n < max).then_some(n + 1)
            });
        if took.is_ok() {
            ctx.state.note_load(srv.idx);
            srv.total_conns.fetch_add(1, Ordering::Relaxed);
            return Some(srv);
        }
        tokio::time::timeout_at(deadline, freed).await.ok()?;
    }
}

async fn fallback_copy(nc: NewConn, state: Arc<State>) {
    let idx = nc.server_idx;
    match (
        TcpStream::from_std(nc.client),
        TcpStream::from_std(nc.server),
    ) {
        (Ok(c), Ok(s)) => {
            let sess = nc.session.as_ref().map(|g| g.session.clone());
            userpath::proxy(c, s, state, idx, nc.idle, sess).await
        }
        _ => state.release_conn(idx, server_cookie(nc.session.as_ref())),
    }
}

/// The server socket's registration of a session (0: none).
pub(crate) fn server_cookie(g: Option<&crate::admin::SessionGuard>) -> u64 {
    g.map_or(0, |g| g.session.server_cookie.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::redispatch_on;

    #[test]
    fn redispatch_intervals_follow_haproxy() {
        // No `option redispatch`: never.
        assert!((1..=3).all(|r| !redispatch_on(r, 3, None)));
        // Default -1: the last retry only.
        let last: Vec<bool> = (1..=3).map(|r| redispatch_on(r, 3, Some(-1))).collect();
        assert_eq!(last, vec![false, false, true]);
        // -2: the retry before the last.
        let before: Vec<bool> = (1..=3).map(|r| redispatch_on(r, 3, Some(-2))).collect();
        assert_eq!(before, vec![false, true, false]);
        // 1: every retry; 2: every second one.
        assert!((1..=3).all(|r| redispatch_on(r, 3, Some(1))));
        let every2: Vec<bool> = (1..=4).map(|r| redispatch_on(r, 4, Some(2))).collect();
        assert_eq!(every2, vec![false, true, false, true]);
    }
}
