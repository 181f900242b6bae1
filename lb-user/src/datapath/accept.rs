//! The accept path: a frontend's listener hands over a client; the frontend's
//! limits and rules admit it, a PROXY header is read where the bind asks for
//! one, a server is picked and connected ([`super::connect`]), and the pair
//! goes to the splice manager or the userspace copy.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::connect::connect_with_retries;
use super::copy;
use super::splice::NewConn;
use super::Live as Ctx;
use crate::config::matching::{content_rules, Content, L4};
use crate::config::{Frontend, TcpRequestRule};
use crate::state::State;
use crate::sys;

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
fn end_session(ctx: &Ctx, s: &crate::state::admin::Session) {
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
            .map(|x| x.name());
        let line = crate::datapath::tcplog::line(
            s,
            &ctx.cfg.frontends[s.frontend].name,
            &ctx.cfg.backends[s.backend].name,
            server,
            sys::monotonic_ns(),
        );
        sink.send(&line, s.accept_unix_ms);
    }
}

pub async fn accept_loop(ctx: Arc<Ctx>, fe_idx: usize, l: TcpListener) {
    loop {
        // At the limit, HAProxy stops accepting (the kernel's backlog holds new
        // clients) rather than refusing them.
        for r in [&ctx.global_rate, &ctx.frontend_rates[fe_idx]]
            .into_iter()
            .flatten()
        {
            r.take().await;
        }
        let permits = take_slots(&ctx, fe_idx).await;
        match l.accept().await {
            Ok((client, peer)) => {
                let verdict = {
                    let acls = ctx.acls.read().unwrap_or_else(|e| e.into_inner());
                    acls[fe_idx].as_ref().map_or_else(Default::default, |t| {
                        t.verdict(peer, || client.local_addr().ok())
                    })
                };
                if verdict.reject {
                    // As HAProxy's `tcp-request connection reject`: closed at
                    // once, without lingering. A connection only gets here when
                    // the XDP program did not see it (loopback, another
                    // interface, --no-xdp, IP fragments).
                    // (The listener's SO_LINGER{1,0} is inherited.)
                    tracing::debug!("frontend {fe_idx}: {peer} rejected by tcp-request connection");
                    continue;
                }
                let ctx = ctx.clone();
                let expect_proxy = verdict.expect_proxy;
                tokio::spawn(async move {
                    handle(ctx, fe_idx, client, peer, permits, expect_proxy).await
                });
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

fn idle_timeout(ctx: &Ctx, fe_idx: usize, be_idx: usize) -> copy::IdleLimits {
    let (fe, be) = (&ctx.cfg.frontends[fe_idx], &ctx.cfg.backends[be_idx]);
    copy::IdleLimits::new(copy::SessionTimeouts {
        client: fe.timeout_client,
        server: be.timeout_server,
        tunnel: be.timeout_tunnel.as_ref().map(|t| t.value),
        client_fin: fe.timeout_client_fin.as_ref().map(|t| t.value),
        server_fin: be.timeout_server_fin.as_ref().map(|t| t.value),
    })
}

async fn handle(
    ctx: Arc<Ctx>,
    fe_idx: usize,
    client: TcpStream,
    peer: SocketAddr,
    permits: Vec<tokio::sync::OwnedSemaphorePermit>,
    expect_proxy: bool,
) {
    let fe = &ctx.cfg.frontends[fe_idx];
    // The client inherited the listener's SO_LINGER{1,0}: one turned away
    // before its session starts gets a plain FIN, as from HAProxy.
    let turn_away = |client: &TcpStream| {
        let _ = sys::clear_linger(client);
    };
    if fe.clitcpka.is_some() {
        let _ = sys::set_keepalive(&client, &fe.clitcpka_tune);
    }
    // The local address costs a system call: only asked for when a bind
    // reads PROXY headers or `use_backend` rules may test it.
    let inspects = fe.inspects;
    let local =
        if fe.binds.iter().any(|b| b.accept_proxy) || !fe.use_backends.is_empty() || inspects {
            client.local_addr().ok()
        } else {
            None
        };
    let mut peer = peer;
    let mut dst = None;
    // Client bytes read before the pair is spliced, to be sent to the server first.
    let mut early = Vec::new();
    if expect_proxy || local.is_some_and(|l| accepts_proxy(fe, l)) {
        let wait = fe.timeout_client.unwrap_or(Duration::from_secs(5));
        match read_proxy_header(&client, wait).await {
            Ok(Some((src, to))) => {
                // The original client, as the proxy in front of us saw it.
                peer = src;
                dst = Some(to);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("frontend '{}': client {peer}: {e}; closing", fe.name);
                turn_away(&client);
                return;
            }
        }
        // What came behind the header is sent to the server right after the
        // PROXY header lb itself may add (the kernel path, should the pair
        // get there, counts from what userspace read: see ARCHITECTURE).
        match drain_queued(&client) {
            Ok(bytes) => early = bytes,
            Err(e) => {
                tracing::debug!("client {peer}: {e}");
                turn_away(&client);
                return;
            }
        }
    }
    // The client's first bytes, for `tcp-request content` rules and content
    // conditions of `use_backend`: peeked, so they stay in the socket and
    // reach the server as they came.
    let mut content = Vec::new();
    if let Some(to) = dst.or(local).filter(|_| inspects) {
        let l4 = L4 { src: peer, dst: to };
        let rules = (&fe.tcp_request_content[..], fe.inspect_delay);
        let Some(bytes) = content_stage(&ctx, fe_idx, &fe.name, rules, &client, &l4, &early).await
        else {
            return;
        };
        content = bytes;
    }
    let Some(be_idx) = choose_backend(fe, peer, dst.or(local), &content) else {
        turn_away(&client);
        return;
    };
    // The backend's own content rules, once it is chosen (its own delay),
    // then its `use-server` rules.
    let be = &ctx.cfg.backends[be_idx];
    if be.disabled.is_some() {
        // A disabled (stopped) backend takes no connection.
        turn_away(&client);
        return;
    }
    let mut forced = None;
    if !be.tcp_request_content.is_empty() || !be.use_servers.is_empty() {
        let to = dst
            .or(local)
            .or_else(|| client.local_addr().ok())
            .unwrap_or(peer);
        let l4 = L4 { src: peer, dst: to };
        // Without rules of its own the backend sees what is there now (one
        // peek), as HAProxy's server rules see the buffer as it stands.
        let rules = (&be.tcp_request_content[..], be.inspect_delay);
        let Some(seen) = content_stage(&ctx, fe_idx, &be.name, rules, &client, &l4, &early).await
        else {
            return;
        };
        let bytes = if seen.len() >= content.len() {
            &seen
        } else {
            &content
        };
        forced = use_server(&ctx, be_idx, &l4, bytes);
    }
    // Servers without a port of their own take the client's destination's.
    let to = if be.port_from_client {
        dst.or(local).or_else(|| client.local_addr().ok())
    } else {
        None
    };
    let sess = ctx.state.sessions.open(fe_idx, be_idx, peer);
    {
        let f = &ctx.state.frontends[fe_idx];
        let cur = f.cur.fetch_add(1, Ordering::Relaxed) + 1;
        f.max.fetch_max(cur, Ordering::Relaxed);
        f.total.fetch_add(1, Ordering::Relaxed);
        sess.actconn
            .store(ctx.state.sessions.len() as u32, Ordering::Relaxed);
        sess.feconn.store(cur, Ordering::Relaxed);
    }
    let guard = {
        let c = ctx.clone();
        crate::state::admin::SessionGuard::new(sess.clone(), Arc::new(move |s| end_session(&c, s)))
    };
    sess.bytes_in
        .fetch_add(early.len() as u64, Ordering::Relaxed);
    let Some((srv, server)) = connect_with_retries(&ctx, be_idx, peer, &sess, forced, to).await
    else {
        // No server could take it: close at once, as HAProxy does.
        ctx.state.frontends[fe_idx]
            .denied
            .fetch_add(1, Ordering::Relaxed);
        turn_away(&client);
        return;
    };
    // The client has both from the listener. Armed while the session lives:
    // if lb dies (SIGKILL, a crash), the kernel closes both sockets with an
    // RST, so neither end takes a cut stream for a complete one. A session
    // that ends cleanly disarms it first.
    let _ = server.set_nodelay(true);
    let _ = sys::set_linger_reset(&server);
    let be = &ctx.cfg.backends[be_idx];
    if be.srvtcpka.is_some() {
        let _ = sys::set_keepalive(&server, &be.srvtcpka_tune);
    }
    let mut server = server;
    if let Some(version) = srv.conf.params.send_proxy {
        // The address the client connected to, unless a PROXY header said.
        let dst = dst
            .or(local)
            .or_else(|| client.local_addr().ok())
            .unwrap_or(peer);
        // The header goes first, before any client byte can be spliced behind it.
        let hdr = crate::datapath::proxy_proto::encode(version, peer, dst);
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut server, &hdr).await {
            tracing::debug!("PROXY header to {}/{}: {e}", srv.backend, srv.name());
            ctx.state
                .release_conn(srv.idx, sess.server_cookie.load(Ordering::Relaxed));
            return;
        }
    }
    if !early.is_empty() {
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut server, &early).await {
            tracing::debug!("early bytes to {}/{}: {e}", srv.backend, srv.name());
            ctx.state
                .release_conn(srv.idx, sess.server_cookie.load(Ordering::Relaxed));
            return;
        }
        srv.user_bytes_in
            .fetch_add(early.len() as u64, Ordering::Relaxed);
    }
    let idle = idle_timeout(&ctx, fe_idx, be_idx);
    let idx = srv.idx;
    // With the kernel path, the pair is copied here first and moves to it
    // once it proves long-lived: a short connection never pays for the
    // kernel path's set-up and teardown. `data-path copy` stays here.
    let splicer = ctx
        .splicer
        .as_ref()
        .filter(|_| fe.path() != crate::config::DataPath::Copy);
    let promote = splicer.map(|_| super::PROMOTE);
    let promoted = copy::proxy(
        client,
        server,
        ctx.state.clone(),
        idx,
        idle,
        Some(sess),
        promote,
    )
    .await;
    match (promoted, splicer) {
        (Some((client, server)), Some(splicer)) => {
            // From here on the kernel counts the connection out when the
            // server socket closes, even while the daemon cannot (stopped,
            // stalled): the pair lives in the kernel now. A socket that
            // closed already stays registered until the release below
            // removes it and counts it out.
            let cookie = ctx
                .state
                .register_conn(idx, std::os::fd::AsFd::as_fd(&server));
            guard.session.server_cookie.store(cookie, Ordering::Relaxed);
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
        _ => {
            drop(permits);
            drop(guard);
        }
    }
}

/// The backend of a connection: the first `use_backend` rule whose condition
/// holds for its addresses (those of its PROXY header, if it had one), else
/// the frontend's default.
fn choose_backend(
    fe: &Frontend,
    src: SocketAddr,
    dst: Option<SocketAddr>,
    content: &[u8],
) -> Option<usize> {
    if let Some(dst) = dst.filter(|_| !fe.use_backends.is_empty()) {
        let l4 = L4 { src, dst };
        let chosen = fe
            .use_backends
            .iter()
            .find(|u| u.cond.as_ref().is_none_or(|c| c.holds_on(&l4, content)));
        if let Some(u) = chosen {
            return Some(u.backend_idx);
        }
    }
    fe.default_backend_idx
}

/// The server the backend's `use-server` rules name, as HAProxy's
/// `process_server_rules`: the first rule whose condition holds and whose
/// server is UP, or whatever its state when a `force-persist` rule held
/// first (an `ignore-persist` one holding first does not force it).
fn use_server(ctx: &Ctx, be_idx: usize, l4: &L4, bytes: &[u8]) -> Option<u32> {
    let be = &ctx.cfg.backends[be_idx];
    if be.use_servers.is_empty() {
        return None;
    }
    let force = be
        .persist_rules
        .iter()
        .find(|r| r.cond.holds_on(l4, bytes))
        .is_some_and(|r| r.force);
    let servers = &ctx.state.backends[be_idx].servers;
    be.use_servers
        .iter()
        .filter(|u| u.cond.holds_on(l4, bytes))
        .map(|u| servers[u.server_pos])
        .find(|&i| force || ctx.state.servers[i as usize].is_up())
}

/// HAProxy's inspection buffer: `tune.bufsize` less `tune.maxrewrite`. A
/// client that sent this much is inspected as is (the rules may wait no
/// more).
const INSPECT_MAX: usize = 16384 - 1024;

/// HAProxy's `tcp-request content reject`: counted as a denied request of
/// the frontend; the bytes are read first, so the close sends a FIN, not a
/// reset.
fn reject(ctx: &Ctx, fe_idx: usize, client: &TcpStream, peer: SocketAddr) {
    ctx.state.frontends[fe_idx]
        .denied_req
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        "frontend '{}': client {peer}: rejected by tcp-request content",
        ctx.cfg.frontends[fe_idx].name
    );
    let _ = drain_queued(client);
    let _ = sys::clear_linger(client);
}

/// One proxy's `tcp-request content` stage (the frontend's, then the chosen
/// backend's): Some(bytes seen) to go on; None when the connection was
/// rejected (counted) or failed while inspected, and is already turned away.
async fn content_stage(
    ctx: &Ctx,
    fe_idx: usize,
    proxy: &str,
    rules: (&[TcpRequestRule], Option<Duration>),
    client: &TcpStream,
    l4: &L4,
    early: &[u8],
) -> Option<Vec<u8>> {
    match inspect(rules, client, l4, early).await {
        Ok(Some(bytes)) => Some(bytes),
        Ok(None) => {
            reject(ctx, fe_idx, client, l4.src);
            None
        }
        Err(e) => {
            tracing::debug!("'{proxy}': client {}: inspecting: {e}", l4.src);
            let _ = sys::clear_linger(client);
            None
        }
    }
}

/// Runs `tcp-request content` rules (with their `tcp-request inspect-delay`)
/// on the client's first bytes (after `early`, those read with a PROXY
/// header), waiting for more while a rule cannot decide yet, at most the
/// delay. Ok(Some(bytes seen)) to go on, Ok(None) when a rule rejects. The
/// bytes are peeked: they stay queued in the socket.
async fn inspect(
    (rules, delay): (&[TcpRequestRule], Option<Duration>),
    client: &TcpStream,
    l4: &L4,
    early: &[u8],
) -> std::io::Result<Option<Vec<u8>>> {
    let deadline = delay.map(|d| tokio::time::Instant::now() + d);
    let mut buf = vec![0u8; INSPECT_MAX.saturating_sub(early.len()).max(1)];
    let mut seen = 0usize;
    let mut eof = false;
    loop {
        // Readiness cleared first, then a peek: bytes that came before the
        // clear are in the peek, bytes after it set the readiness again.
        // The peek leaves the queue as it was, so without the clear the
        // wait below would return at once for bytes already seen.
        let _ = client.try_io(tokio::io::Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
        match sys::peek(client, &mut buf)? {
            None => {}
            Some(0) => eof = true,
            Some(n) => {
                seen = n;
                // Bytes queued before a FIN are peeked, not the FIN.
                eof |= sys::tcp_counters(client)?.state == sys::TCP_CLOSE_WAIT;
            }
        }
        let mut bytes = Vec::with_capacity(early.len() + seen);
        bytes.extend_from_slice(early);
        bytes.extend_from_slice(&buf[..seen]);
        let expired = deadline.is_none_or(|d| tokio::time::Instant::now() >= d);
        let c = Content {
            bytes: &bytes,
            last: eof || expired || bytes.len() >= INSPECT_MAX,
            capacity: INSPECT_MAX,
        };
        match content_rules(rules, l4, &c) {
            Some(true) => return Ok(Some(bytes)),
            Some(false) => return Ok(None),
            None => {}
        }
        let Some(d) = deadline else {
            // Undecided is only possible while the inspection may wait.
            return Ok(Some(bytes));
        };
        tokio::select! {
            r = client.readable() => r?,
            () = tokio::time::sleep_until(d) => {}
        }
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
        match crate::datapath::proxy_proto::decode(&buf[..n]) {
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

pub async fn fallback_copy(nc: NewConn, state: Arc<State>) {
    let idx = nc.server_idx;
    match (
        TcpStream::from_std(nc.client),
        TcpStream::from_std(nc.server),
    ) {
        (Ok(c), Ok(s)) => {
            let sess = nc.session.as_ref().map(|g| g.session.clone());
            // Never promoted again: the kernel refused this pair.
            copy::proxy(c, s, state, idx, nc.idle, sess, None).await;
        }
        _ => state.release_conn(
            idx,
            crate::state::admin::SessionGuard::server_cookie(nc.session.as_ref()),
        ),
    }
}
