//! The userspace copy path: bounded buffers, half-close both ways, RST propagated
//! as RST, inactivity timeout. Used with `--no-splice`, when the kernel path is
//! unavailable, and for pairs the kernel refuses (a client that already closed).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::admin::Session;
use crate::state::State;
use crate::sys;

const BUF_SIZE: usize = 64 * 1024;

/// One side failed; both sockets were set to close with an RST.
#[derive(Debug)]
struct Broken;

/// Both sockets close with an RST once their halves are dropped. The write half is
/// forgotten: dropping it would shut the socket down with a FIN first.
fn reset_both(r: &OwnedReadHalf, w: OwnedWriteHalf) -> Broken {
    let _ = sys::set_linger_reset(r.as_ref());
    let _ = sys::set_linger_reset(w.as_ref());
    w.forget();
    Broken
}

async fn copy_dir(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    last: &AtomicU64,
    counters: [&AtomicU64; 2],
    kills: [&Notify; 2],
) -> Result<(), Broken> {
    let mut buf = vec![0u8; BUF_SIZE];
    // Registered once, so a shutdown between two reads is not missed: the
    // server's (shutdown sessions) and the session's own (shutdown session).
    let (k0, k1) = (kills[0].notified(), kills[1].notified());
    let killed = async move {
        tokio::select! {
            _ = k0 => {}
            _ = k1 => {}
        }
    };
    tokio::pin!(killed);
    loop {
        let n = tokio::select! {
            r2 = r.read(&mut buf) => match r2 {
                Ok(n) => n,
                Err(_) => return Err(reset_both(&r, w)),
            },
            _ = &mut killed => return Err(reset_both(&r, w)),
        };
        if n == 0 {
            // Half-close: pass the FIN on, keep the other direction running.
            let _ = w.shutdown().await;
            return Ok(());
        }
        let written = tokio::select! {
            r2 = w.write_all(&buf[..n]) => r2.is_ok(),
            _ = &mut killed => false,
        };
        if !written {
            return Err(reset_both(&r, w));
        }
        for c in counters {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        last.store(sys::monotonic_ns(), Ordering::Relaxed);
    }
}

/// Proxies until both directions ended, one side reset, or the pair was idle for
/// `idle`. Decrements the server's current connections at the end.
pub async fn proxy(
    client: TcpStream,
    server: TcpStream,
    state: Arc<State>,
    server_idx: u32,
    idle: Option<Duration>,
    session: Option<Arc<Session>>,
) {
    let last = AtomicU64::new(sys::monotonic_ns());
    let srv = &state.servers[server_idx as usize];
    // Without a session entry (never in the daemon), counters and kill go to
    // a throwaway one.
    let fallback = crate::admin::Sessions::default();
    let sess =
        session.unwrap_or_else(|| fallback.open(0, 0, "0.0.0.0:0".parse().expect("literal")));
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let both = async {
        tokio::try_join!(
            copy_dir(
                cr,
                sw,
                &last,
                [&srv.user_bytes_in, &sess.bytes_in],
                [&srv.kill, &sess.kill]
            ),
            copy_dir(
                sr,
                cw,
                &last,
                [&srv.user_bytes_out, &sess.bytes_out],
                [&srv.kill, &sess.kill]
            ),
        )
    };
    let watchdog = async {
        let Some(idle) = idle else {
            return std::future::pending::<()>().await;
        };
        let idle_ns = idle.as_nanos() as u64;
        loop {
            let since = sys::monotonic_ns().saturating_sub(last.load(Ordering::Relaxed));
            if since >= idle_ns {
                return;
            }
            tokio::time::sleep(Duration::from_nanos(idle_ns - since)).await;
        }
    };
    tokio::select! {
        r = both => {
            if r.is_err() {
                sess.set_term(*b"SD");
                tracing::debug!("userspace conn to server {server_idx}: reset");
            }
        }
        _ = watchdog => {
            sess.set_term(*b"cD");
            tracing::debug!("userspace conn to server {server_idx}: inactivity timeout");
        }
    }
    state.release_conn(server_idx, sess.server_cookie.load(Ordering::Relaxed));
}
