//! Start-up, step by step: everything before the first client is served.
//! Dropped half-way (a signal), it leaves nothing behind: `kernel::Loaded`
//! detaches and removes the pins, `SocketFiles` removes the socket files.
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData, SockMap};
use lb_common::{BindKey, BindTarget, AF_INET, AF_INET6};
use tokio::net::TcpListener;

use super::{
    acl_meta, forward_ebpf_logs, insert_bind, listener, publish, restore_servers, set_listener,
    start_splicer, Agents, Ctx, RunOpts, Running,
};
use crate::config::{l4acl, Config};
use crate::datapath::splice::{SpliceMaps, Splicer};
use crate::health::Plan;
use crate::kernel::xdp::{self, FrontDoor, IfaceReq, XdpMaps};
use crate::kernel::{self, ConnTable, Counters, FlowTable, Loaded, Maps};
use crate::state::{Publish, State};
use crate::sys;

pub(super) async fn start(
    cfg: Config,
    plans: Vec<Option<Plan>>,
    agents: Agents,
    opts: &RunOpts,
) -> Result<Running> {
    let xdp_reqs = if opts.no_xdp {
        Vec::new()
    } else {
        xdp::interfaces(&cfg)
    };
    refuse_a_running_instance(opts)?;
    let stale = pins_of_a_crashed_daemon(opts);
    let nat_flows = crate::datapath::nat::flows_wanted(&cfg);
    let connect = crate::datapath::local::cgroup_of(&cfg)?;
    let (mut loaded, mut maps, conn_table) =
        load_kernel_object(opts, &xdp_reqs, nat_flows, connect.is_some())?;
    between_steps().await;
    let (mut front, acls) = install_front_door(&cfg, &mut loaded, &xdp_reqs)?;
    between_steps().await;
    let state = Arc::new(State::from_config(&cfg));
    restore_servers(&cfg, &state, stale.as_deref(), &opts.instance);
    if let Some(t) = conn_table {
        state.use_kernel_counts(t);
    }
    fill_server_maps(&state, &mut maps, &plans)?;
    let stop = Arc::new(AtomicBool::new(false));
    start_nat(&cfg, &state, &mut loaded, opts, &stop)?;
    if let Some(cg) = &connect {
        start_local(&cfg, &state, &mut loaded, cg, opts, &stop)?;
    }
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
    let splice_on = loaded.splice.is_ok();
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
    // Only after the splice self-test: its loopback connection must never
    // meet a bind (a port range over the ephemeral ports would steer it).
    let accept_sockets = open_listeners(&cfg, &mut listeners, &mut binds).await?;
    between_steps().await;
    let publisher: Arc<dyn Publish> = Arc::new(publish::Publisher {
        state: state.clone(),
        srv_state: std::sync::Mutex::new(srv_state),
        srv_check: std::sync::Mutex::new(srv_check),
        splicer: splicer.clone(),
    });
    attach_front_door(&mut loaded, &mut front, &xdp_reqs, opts)?;
    let ctx = shared_context(
        cfg,
        &state,
        acls,
        splicer,
        publisher.clone(),
        Counters { srv_kstats, stats },
        opts,
        splice_on,
    )?;
    spawn_path_stats(&ctx);
    let sockets = crate::api::start_sockets(ctx.clone()).await?;
    if let Some(addr) = opts.metrics {
        crate::api::metrics::serve(ctx.clone(), addr).await?;
    }
    for i in 0..ctx.cfg.stats_pages.len() {
        crate::api::stats_page::serve(ctx.clone(), i).await?;
    }
    write_pidfile(&ctx.cfg.global)?;
    // Everything that needs root is done (programs attached, listeners and
    // sockets bound): the rest runs as the configuration's user, checks
    // (an external-check command) included.
    drop_privileges(&ctx.cfg.global, &loaded)?;
    spawn_health_checks(&ctx.cfg, &state, plans, agents, &publisher);
    crate::health::resolve::spawn_all(&state, crate::health::resolve::groups(&ctx.cfg), &publisher);
    spawn_state_refresh(&state, &publisher);
    start_accepting(&ctx, accept_sockets)?;
    announce_ready(&ctx, opts, &loaded)?;
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

/// Start-up yields between its steps, so that a signal stops it there (the
/// steps themselves are short and synchronous).
async fn between_steps() {
    tokio::task::yield_now().await;
}

/// A live daemon of the same instance answers on its own socket: its pins are
/// not stale, and replacing them would break it.
fn refuse_a_running_instance(opts: &RunOpts) -> Result<()> {
    let own = crate::api::default_socket(&opts.instance);
    if std::os::unix::net::UnixStream::connect(&own).is_ok() {
        anyhow::bail!(
            "instance '{}' is already running (its runtime API {} answers); stop it or pick another --instance",
            opts.instance,
            own.display()
        );
    }
    Ok(())
}

/// What a daemon that did not stop cleanly left in the pins, read before the
/// load replaces them.
fn pins_of_a_crashed_daemon(opts: &RunOpts) -> Option<Vec<crate::state::persist::Entry>> {
    match crate::state::persist::read_pinned(&kernel::pin_dir(&opts.instance)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "{e}: the previous daemon's maps are not restored (the server-state files are used)"
            );
            None
        }
    }
}

/// Loads, attaches and pins the object; takes its maps.
fn load_kernel_object(
    opts: &RunOpts,
    xdp_reqs: &[IfaceReq],
    nat_flows: Option<u32>,
    cfg_wants_connect: bool,
) -> Result<(Loaded, Maps, Option<ConnTable>)> {
    let mut loaded = kernel::load(
        &opts.instance,
        !opts.no_splice,
        !xdp_reqs.is_empty(),
        nat_flows,
        cfg_wants_connect,
    )
    .context("loading the eBPF programs (root and a BPF-enabled kernel are required)")?;
    if let Some(a) = &loaded.nat {
        match (&a.dropped, a.reused) {
            (Some(why), _) => tracing::warn!(
                "data-path nat: the previous daemon's flow table is not reused ({why}): its flows end"
            ),
            (None, true) => tracing::info!(
                "data-path nat: the flow table of the previous daemon is reused ({} entries)",
                a.size
            ),
            (None, false) => tracing::info!("data-path nat: a new flow table of {} entries", a.size),
        }
    }
    match &loaded.splice {
        Ok(()) => tracing::info!("data path: in-kernel splice (sockhash + sk_skb verdict)"),
        Err(why) => tracing::warn!("data path: userspace copy ({why})"),
    }
    if let Some(logger) = loaded.logger.take() {
        tokio::spawn(forward_ebpf_logs(logger));
    }
    let maps = Maps::take(&mut loaded.ebpf).context("taking the maps")?;
    let conn_table = match &loaded.conns {
        Ok(()) => Some(ConnTable::take(&mut loaded.ebpf).context("mapping LB_SRV_CONNS")?),
        Err(why) => {
            tracing::warn!(
                "connection counts kept in userspace only ({why}): a connection that ends while the daemon is busy is counted out when it gets to it"
            );
            None
        }
    };
    Ok((loaded, maps, conn_table))
}

/// With `data-path nat` frontends: fills the NAT maps (routes, tables,
/// adopted flows), then swaps `lb_nat` into the interfaces' links, and keeps
/// the tables in step with health on a thread of their own.
fn start_nat(
    cfg: &Config,
    state: &Arc<State>,
    loaded: &mut Loaded,
    opts: &RunOpts,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    let Some(size) = loaded.nat.as_ref().map(|a| a.size) else {
        return Ok(());
    };
    let maps =
        crate::kernel::nat::NatMaps::take(&mut loaded.ebpf).context("taking the NAT maps")?;
    let (nat, ifaces) = crate::datapath::nat::Nat::start(cfg, state, maps, size)?;
    let attached = crate::kernel::nat::attach(&mut loaded.ebpf, &opts.instance, &ifaces)
        .context("attaching lb_nat")?;
    for (iface, taken) in attached {
        tracing::info!(
            "lb_nat attached at tc ingress of {iface}{}",
            if taken {
                " (the previous daemon's link, program replaced)"
            } else {
                ""
            }
        );
    }
    crate::datapath::nat::spawn(nat, state.clone(), stop.clone(), opts.instance.clone());
    Ok(())
}

/// With `data-path ... connect` frontends: fills the connect maps, attaches
/// the programs (and `lb_conns`, which counts a balanced socket out when it
/// closes) to the cgroup, and keeps the tables in step with health.
fn start_local(
    cfg: &Config,
    state: &Arc<State>,
    loaded: &mut Loaded,
    cgroup: &std::path::Path,
    opts: &RunOpts,
    stop: &Arc<AtomicBool>,
) -> Result<()> {
    if let Err(why) = &loaded.conns {
        anyhow::bail!("'data-path connect' needs lb_conns to count sockets out: {why}");
    }
    let maps = crate::kernel::connect::ConnectMaps::take(&mut loaded.ebpf)
        .context("taking the connect maps")?;
    let local = crate::datapath::local::Local::start(cfg, state, maps)?;
    let taken = crate::kernel::connect::attach(&mut loaded.ebpf, &opts.instance, cgroup)
        .with_context(|| format!("attaching the connect programs to {}", cgroup.display()))?;
    tracing::info!(
        "data-path connect: {} frontend address(es); connects from cgroup {} in this network \
         namespace go straight to a server{}",
        local.vips(),
        cgroup.display(),
        if taken > 0 {
            " (the previous daemon's links, programs replaced)"
        } else {
            ""
        }
    );
    crate::datapath::local::spawn(local, state.clone(), stop.clone(), opts.instance.clone());
    Ok(())
}

/// The XDP front door's maps: frontends, `tcp-request connection` rules, SYN
/// rate and cookies (the program is attached only once everything is filled).
fn install_front_door(
    cfg: &Config,
    loaded: &mut Loaded,
    xdp_reqs: &[IfaceReq],
) -> Result<(FrontDoor, Vec<Option<l4acl::Table>>)> {
    let mut front = FrontDoor::new(XdpMaps::take(&mut loaded.ebpf).context("taking the XDP maps")?);
    let acls: Vec<Option<l4acl::Table>> = cfg
        .frontends
        .iter()
        .map(|f| l4acl::compile(&f.tcp_request_connection))
        .collect();
    front
        .set_frontends(&acl_meta(cfg, &acls))
        .context("writing LB_FE_META")?;
    let tables: Vec<Option<&l4acl::Table>> = acls.iter().map(|t| t.as_ref()).collect();
    front
        .install_acls(&tables)
        .context("writing the tcp-request connection rules to the ACL tries")?;
    front
        .set_syn_rate(cfg.global.xdp_syn_rate.as_ref().map(|r| r.value))
        .context("writing LB_XDP_CFG")?;
    let (cookies, why_not) = xdp::syn_cookies_for(cfg, xdp_reqs);
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
    Ok((front, acls))
}

/// Every server into LB_SRV_META and LB_SRV_STATE (and LB_SRV_CHECK when
/// checked), before anything reads them.
fn fill_server_maps(state: &State, maps: &mut Maps, plans: &[Option<Plan>]) -> Result<()> {
    for s in &state.servers {
        let what = |map: &str| format!("writing server {}/{} to {map}", s.backend, s.name());
        maps.srv_meta
            .set(s.idx, s.meta(), 0)
            .with_context(|| what("LB_SRV_META"))?;
        maps.srv_state
            .set(s.idx, s.snapshot(), 0)
            .with_context(|| what("LB_SRV_STATE"))?;
        if plans.get(s.idx as usize).is_some_and(|p| p.is_some()) {
            maps.srv_check
                .set(s.idx, lb_common::ServerCheck::default(), 0)
                .with_context(|| what("LB_SRV_CHECK"))?;
        }
    }
    Ok(())
}

/// One listener per frontend and address family, in LB_LISTENERS, and every
/// bind key in LB_BINDS: from here on `lb_dispatch` steers connections.
async fn open_listeners(
    cfg: &Config,
    listeners: &mut SockMap<MapData>,
    binds: &mut HashMap<MapData, BindKey, BindTarget>,
) -> Result<Vec<(usize, std::net::TcpListener)>> {
    let mut accept_sockets = Vec::new();
    for (fe_idx, fe) in cfg.frontends.iter().enumerate() {
        if fe.disabled.is_some() {
            // As HAProxy: a disabled frontend does not listen.
            tracing::info!("frontend '{}' is disabled: not listening", fe.name);
            continue;
        }
        let keys = fe.bind_keys();
        for family in [AF_INET, AF_INET6] {
            if !keys.iter().any(|k| k.family == family) {
                continue;
            }
            let idx = (fe_idx * 2 + (family == AF_INET6) as usize) as u32;
            let l = listener(family, fe.listen_backlog())
                .with_context(|| format!("creating the listener of frontend '{}'", fe.name))?;
            set_listener(listeners, idx, &l)?;
            accept_sockets.push((fe_idx, l));
            for b in &fe.binds {
                // check_xdp made sure the interface exists.
                let ifindex = b.interface.as_deref().and_then(xdp::ifindex).unwrap_or(0);
                for k in b.keys().iter().filter(|k| k.family == family) {
                    let t = BindTarget {
                        listener: idx,
                        ifindex,
                    };
                    insert_bind(binds, k, t)?;
                }
            }
        }
        between_steps().await;
        tracing::info!(
            "frontend '{}': {} bind keys -> backend '{}'",
            fe.name,
            keys.len(),
            fe.default_backend.as_deref().unwrap_or("-")
        );
    }
    Ok(accept_sockets)
}

fn spawn_health_checks(
    cfg: &Config,
    state: &Arc<State>,
    plans: Vec<Option<Plan>>,
    agents: Agents,
    publisher: &Arc<dyn Publish>,
) {
    let spread = cfg.global.spread_checks.as_ref().map_or(0, |s| s.value);
    crate::health::spawn_all(state, plans, spread, publisher.clone());
    crate::health::spawn_agents(state, agents.0, agents.1, publisher.clone());
}

/// Counters that move without a state change (connections, bytes) reach
/// LB_SRV_STATE five times a second; only the servers whose entry changed,
/// since with thousands of idle servers rewriting all costs more than the
/// checks.
fn spawn_state_refresh(state: &Arc<State>, publisher: &Arc<dyn Publish>) {
    let state = state.clone();
    let publisher = publisher.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
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

/// The data path's own counters (`state::PathStats`) reach `LB_STATS` five
/// times a second (the maps are new at each start, like the counters).
fn spawn_path_stats(ctx: &Arc<Ctx>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let Some(k) = &ctx.kernel else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last = None;
        loop {
            tick.tick().await;
            let v = ctx.state.paths.values();
            if last == Some(v) {
                continue;
            }
            last = Some(v);
            let r = k
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_user_stats(&v);
            if let Err(e) = r {
                tracing::warn!("{e}");
            }
        }
    });
}

/// The XDP program goes on the wire only now that its maps are filled, so no
/// packet sees a frontend without its rules.
fn attach_front_door(
    loaded: &mut Loaded,
    front: &mut FrontDoor,
    xdp_reqs: &[IfaceReq],
    opts: &RunOpts,
) -> Result<()> {
    if !xdp_reqs.is_empty() {
        let ifaces = xdp::attach(&mut loaded.ebpf, xdp_reqs).context("attaching XDP")?;
        front.set_ifaces(&ifaces).context("writing LB_XDP_IFACES")?;
    } else if opts.no_xdp {
        tracing::info!("XDP front door off (--no-xdp)");
    }
    Ok(())
}

/// What the accept path and the runtime API share.
#[allow(clippy::too_many_arguments)]
fn shared_context(
    cfg: Config,
    state: &Arc<State>,
    acls: Vec<Option<l4acl::Table>>,
    splicer: Option<Splicer>,
    publisher: Arc<dyn Publish>,
    counters: Counters,
    opts: &RunOpts,
    splice_on: bool,
) -> Result<Arc<Ctx>> {
    let mut tcplog = Vec::new();
    for f in &cfg.frontends {
        let sink = crate::datapath::tcplog::Sink::for_frontend(&cfg, f)
            .with_context(|| format!("opening the log targets of frontend '{}'", f.name))?;
        tcplog.push(sink.map(Arc::new));
    }
    Ok(Arc::new(Ctx {
        acls: std::sync::RwLock::new(acls),
        global_limit: crate::datapath::limits::Limit::new(cfg.global.maxconn),
        frontend_limits: cfg
            .frontends
            .iter()
            .map(|f| crate::datapath::limits::Limit::new(f.maxconn))
            .collect(),
        // Every accepted connection is a session here: the lower of the two
        // global rates bounds both.
        global_rate: crate::datapath::limits::Rate::new(
            [&cfg.global.maxconnrate, &cfg.global.maxsessrate]
                .into_iter()
                .flatten()
                .map(|r| r.value)
                .filter(|&n| n > 0)
                .min(),
        ),
        frontend_rates: cfg
            .frontends
            .iter()
            .map(|f| {
                crate::datapath::limits::Rate::new(f.rate_limit_sessions.as_ref().map(|r| r.value))
            })
            .collect(),
        cfg,
        state: state.clone(),
        splicer,
        publisher,
        kernel: Some(std::sync::Mutex::new(counters)),
        instance: opts.instance.clone(),
        splice_on,
        start_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        start_ns: sys::monotonic_ns(),
        tcplog,
    }))
}

/// `pidfile`: written as HAProxy does (replaced, mode 0644, lb's pid), and
/// left in place at exit.
fn write_pidfile(g: &crate::config::Global) -> Result<()> {
    let Some(p) = &g.pidfile else {
        return Ok(());
    };
    let _ = std::fs::remove_file(&p.value);
    std::fs::write(&p.value, format!("{}\n", std::process::id()))
        .with_context(|| format!("{}: writing the pidfile {}", p.origin, p.value.display()))
}

/// `user`/`uid` and `group`/`gid`: the process leaves root for them, and
/// with it every capability. What lb does afterwards needs none: map
/// updates go through the map descriptors it holds (6.18 checks
/// `CAP_BPF` when a map or program is created, not when one is written),
/// and its links detach when their descriptors close. The pinned maps of
/// this run are handed to the user, so that a clean stop still removes
/// them (their directory, in root's `/sys/fs/bpf/lb`, stays, empty).
fn drop_privileges(g: &crate::config::Global, loaded: &Loaded) -> Result<()> {
    let uid = g.user.as_ref().map(|u| u.value.id).filter(|&u| u != 0);
    let gid = g.group.as_ref().map(|u| u.value.id).filter(|&u| u != 0);
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let owner = |p: &std::path::Path| std::os::unix::fs::chown(p, uid, gid);
    owner(&loaded.pin_dir).with_context(|| {
        format!(
            "handing {} to the configured user",
            loaded.pin_dir.display()
        )
    })?;
    for e in std::fs::read_dir(&loaded.pin_dir)
        .with_context(|| format!("reading {}", loaded.pin_dir.display()))?
    {
        let path = e?.path();
        owner(&path)
            .with_context(|| format!("handing {} to the configured user", path.display()))?;
    }
    let name = g.user.as_ref().and_then(|u| u.value.name.as_deref());
    sys::switch_ids(uid, name, gid).context("switching to the configured user and group")?;
    let creds = sys::thread_credentials().context("checking every thread's credentials")?;
    tracing::info!("running as {creds} from now on (user/group of the configuration)");
    Ok(())
}

/// One accept loop per listener.
fn start_accepting(
    ctx: &Arc<Ctx>,
    accept_sockets: Vec<(usize, std::net::TcpListener)>,
) -> Result<()> {
    for (fe_idx, l) in accept_sockets {
        let l = TcpListener::from_std(l).context("registering a listener")?;
        let ctx = ctx.clone();
        tokio::spawn(async move { crate::datapath::accept::accept_loop(ctx, fe_idx, l).await });
    }
    Ok(())
}

fn announce_ready(ctx: &Ctx, opts: &RunOpts, loaded: &Loaded) -> Result<()> {
    if let Some(p) = &opts.ready_file {
        std::fs::write(p, b"ready\n")
            .with_context(|| format!("writing the ready file {}", p.display()))?;
    }
    tracing::info!(
        "lb ready: {} frontends, {} servers, instance '{}' (maps in {})",
        ctx.cfg.frontends.len(),
        ctx.state.servers.len(),
        opts.instance,
        loaded.pin_dir.display()
    );
    Ok(())
}
