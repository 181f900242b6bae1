//! Choosing and connecting the server: the backend's queue while every usable
//! server is at its `maxconn`, `retries` with HAProxy's turn-around, and
//! `option redispatch`.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;

use super::Live as Ctx;
use crate::sys;

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

/// Picks a server (the one `use-server` forced, if any) and connects, with `retries` (default 3) more attempts after a
/// failure: after min(timeout connect, 1 s) to the same server, or at once to
/// another one when `option redispatch` says so. Counts the connection on the
/// server it lands on.
pub(super) async fn connect_with_retries<'a>(
    ctx: &'a Ctx,
    be_idx: usize,
    peer: SocketAddr,
    sess: &crate::state::admin::Session,
    forced: Option<u32>,
    dst: Option<SocketAddr>,
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
    sess.backend_queue
        .store(b.queued.load(Ordering::Relaxed), Ordering::Relaxed);
    // `use-server`: that server, through its own queue when it is full.
    let first = match forced {
        Some(i) => queue_for_server(ctx, &ctx.state.servers[i as usize], queue_timeout).await,
        None => queue_for_slot(ctx, be_idx, peer, None, queue_timeout).await,
    };
    let Some(mut srv) = first else {
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
        // Not registered with the kernel's counting (`State::register_conn`)
        // yet: while the pair is on the userspace copy the daemon sees every
        // close itself, and a short connection saves three system calls.
        // The client's destination port, for servers without one of their own.
        let target = srv.target(dst);
        let sock = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let connect = async { sock?.connect(target).await };
        let (err, timed_out) = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(s)) => {
                sess.tc_ms.store(ms_since(connect_start), Ordering::Relaxed);
                let be_conns: u32 = b
                    .servers
                    .iter()
                    .map(|&i| {
                        ctx.state.servers[i as usize]
                            .cur_conns
                            .load(Ordering::Relaxed)
                    })
                    .sum();
                sess.beconn.store(be_conns, Ordering::Relaxed);
                sess.srv_conn
                    .store(srv.cur_conns.load(Ordering::Relaxed), Ordering::Relaxed);
                return Some((srv, s));
            }
            Ok(Err(e)) => (e.to_string(), false),
            Err(_) => ("timeout".to_string(), true),
        };
        srv.admin.econ.fetch_add(1, Ordering::Relaxed);
        ctx.state.release(srv.idx);
        tracing::debug!(
            "connect to {}/{} (attempt {}): {err}",
            srv.backend,
            srv.name(),
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
