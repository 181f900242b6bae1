//! The userspace copy path: bounded buffers, half-close both ways, RST propagated
//! as RST, inactivity timeout. Used with `--no-splice`, when the kernel path is
//! unavailable, and for pairs the kernel refuses (a client that already closed).
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::state::admin::{Session, END_STOPPING};
use crate::state::State;
use crate::sys;

const BUF_SIZE: usize = 64 * 1024;

/// The inactivity timeout of a session and the termination state it logs:
/// HAProxy's `timeout client` and `timeout server` both run while a TCP
/// session is idle, and the shorter one fires first (`cD` or `sD`; the client
/// side when they are equal, as HAProxy checks the request channel first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idle {
    pub after: Duration,
    pub term: [u8; 2],
}

impl Idle {
    pub fn new(client: Option<Duration>, server: Option<Duration>) -> Option<Self> {
        let (after, term) = match (client, server) {
            (Some(c), Some(s)) if s < c => (s, *b"sD"),
            (Some(c), _) => (c, *b"cD"),
            (None, Some(s)) => (s, *b"sD"),
            (None, None) => return None,
        };
        Some(Self { after, term })
    }
}

/// A session's inactivity limits while both directions flow (`timeout
/// client`/`server`, both replaced by `timeout tunnel` when set) and once
/// either direction ended (`timeout client-fin`/`server-fin` in place of the
/// side's own), as HAProxy runs a TCP stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleLimits {
    pub open: Option<Idle>,
    pub half_closed: Option<Idle>,
}

/// The timeouts of a frontend/backend pair that bound a session's idle time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionTimeouts {
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub tunnel: Option<Duration>,
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
}

impl IdleLimits {
    pub fn new(t: SessionTimeouts) -> Self {
        let client = t.tunnel.or(t.client);
        let server = t.tunnel.or(t.server);
        IdleLimits {
            open: Idle::new(client, server),
            half_closed: Idle::new(t.client_fin.or(client), t.server_fin.or(server)),
        }
    }

    /// The limit that applies: `half_closed` once a direction ended.
    pub fn at(&self, half_closed: bool) -> Option<Idle> {
        if half_closed {
            self.half_closed
        } else {
            self.open
        }
    }
}

/// How one direction ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The source's FIN was passed on.
    Done,
    /// The source failed (RST): what it sent before was delivered (or the
    /// delivery timed out) before this returned.
    SourceFailed,
    /// Writing to the target failed; the target's own direction reports it.
    TargetFailed,
    /// `shutdown session(s)`, or the other direction's source failed.
    Killed,
    /// Stopped between two reads, holding nothing, for the kernel path.
    Promote,
}

/// Waits until the target acknowledged every byte written to it (its send
/// queue is empty) or can no longer acknowledge any (it was reset: a client
/// that left before the answer came), at most until `deadline`.
async fn delivered(w: &OwnedWriteHalf, deadline: tokio::time::Instant) {
    while tokio::time::Instant::now() < deadline {
        match sys::unacked(w.as_ref()) {
            Ok(0) | Err(_) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

#[derive(Clone)]
struct DirCtx<'a> {
    last: &'a AtomicU64,
    /// Bytes read from the source and not yet all written to the target:
    /// an inactivity timeout now would lose them, so it ends with a reset.
    holding: &'a AtomicBool,
    /// Set when a socket of the pair failed: whatever ends the session then
    /// (the inactivity timeout included) ends it with a reset.
    failed: &'a AtomicBool,
    counters: [&'a AtomicU64; 2],
    /// Its `wake` is the one thing a direction waits on besides its socket:
    /// whoever sets a flag a direction must act on (the session's
    /// `ended_by`, `broken`, `promote`) sets it first, then notifies.
    sess: &'a Session,
    /// The other direction's source failed: nothing more can reach it.
    broken: &'a AtomicBool,
    /// Directions that passed their FIN on.
    finished: &'a AtomicU8,
    deliver_for: Duration,
    /// Set when the pair moves to the kernel path (None: it never does).
    promote: Option<&'a AtomicBool>,
    /// Bytes one direction moves before the pair is promoted.
    promote_after: Option<u64>,
}

impl DirCtx<'_> {
    fn killed(&self) -> bool {
        self.broken.load(Ordering::SeqCst) || self.sess.ended_by() != 0
    }

    fn promoted(&self) -> bool {
        self.promote.is_some_and(|p| p.load(Ordering::SeqCst))
    }
}

/// Waits for the next [`Session::wake`] and arms the wait after it before
/// returning, so a flag set while the caller looks is not missed.
async fn next_wake<'w>(
    n: &mut std::pin::Pin<&mut tokio::sync::futures::Notified<'w>>,
    wake: &'w Notify,
) {
    n.as_mut().await;
    n.set(wake.notified());
    n.as_mut().enable();
}

thread_local! {
    /// One read buffer per runtime thread: a read is passed on at once and
    /// only what the target did not take is kept (per connection), so an
    /// idle or short connection holds no buffer at all.
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUF_SIZE]);
}

/// One read, passed on: Ok(None) when the source had nothing (spurious
/// readiness), Ok(Some((n, rest))) with the `rest` of the `n` bytes that the
/// target did not take without blocking.
fn read_and_pass(
    r: &OwnedReadHalf,
    w: &OwnedWriteHalf,
) -> std::io::Result<Option<(usize, Vec<u8>)>> {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        // A short read drained the receive queue: it is reported to tokio as
        // WouldBlock, which clears the readiness captured *before* the read,
        // so the next wait is for new bytes instead of one more recv(2) that
        // returns EAGAIN (two per short connection). A segment that lands
        // during the read sets the readiness again (tokio's own `poll_read`
        // does the same).
        let cap = b.len();
        let mut short = None;
        let got = r.as_ref().try_io(tokio::io::Interest::READABLE, || {
            match sys::recv(r.as_ref(), &mut b)? {
                None => Err(std::io::ErrorKind::WouldBlock.into()),
                Some(n) if n > 0 && n < cap => {
                    short = Some(n);
                    Err(std::io::ErrorKind::WouldBlock.into())
                }
                Some(n) => Ok(n),
            }
        });
        let n = match (got, short) {
            (_, Some(n)) => n,
            (Ok(n), None) => n,
            (Err(e), None) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            (Err(e), None) => return Err(e),
        };
        if n == 0 {
            return Ok(Some((0, Vec::new())));
        }
        let k = match w.try_write(&b[..n]) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            // The write error shows again on the blocking write below.
            Err(_) => 0,
        };
        Ok(Some((n, b[k..n].to_vec())))
    })
}

async fn copy_dir(r: &mut OwnedReadHalf, w: &mut OwnedWriteHalf, cx: &DirCtx<'_>) -> End {
    let wake = &cx.sess.wake;
    // Armed before the first look at the flags: nothing set after it is missed.
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let mut moved = 0u64;
    loop {
        if cx.killed() {
            return End::Killed;
        }
        if cx.promoted() {
            return End::Promote;
        }
        let ready = tokio::select! {
            r2 = r.readable() => r2,
            () = next_wake(&mut notified, wake) => continue,
        };
        let step = ready.and_then(|()| read_and_pass(r, w));
        let (n, rest) = match step {
            Ok(None) => continue,
            Ok(Some(x)) => x,
            Err(_) => {
                cx.failed.store(true, Ordering::Relaxed);
                // Bytes the source sent before its reset were all read
                // (the kernel returns them before the error): the target
                // gets them before it gets the reset.
                let deadline = tokio::time::Instant::now() + cx.deliver_for;
                let done = delivered(w, deadline);
                tokio::pin!(done);
                loop {
                    tokio::select! {
                        () = &mut done => break,
                        () = next_wake(&mut notified, wake) => {
                            if cx.killed() {
                                return End::Killed;
                            }
                        }
                    }
                }
                cx.broken.store(true, Ordering::SeqCst);
                wake.notify_waiters();
                return End::SourceFailed;
            }
        };
        if n == 0 {
            // Half-close: pass the FIN on, keep the other direction running.
            // The second direction to end leaves its FIN to the close that
            // follows at once (the write halves are not shut on drop then).
            if cx.finished.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = w.shutdown().await;
            }
            return End::Done;
        }
        if !rest.is_empty() {
            cx.holding.store(true, Ordering::Relaxed);
            let written = {
                let all = w.write_all(&rest);
                tokio::pin!(all);
                loop {
                    tokio::select! {
                        r2 = &mut all => break r2.is_ok(),
                        // A promotion waits for the next read.
                        () = next_wake(&mut notified, wake) => {
                            if cx.killed() {
                                return End::Killed;
                            }
                        }
                    }
                }
            };
            cx.holding.store(false, Ordering::Relaxed);
            if !written {
                cx.failed.store(true, Ordering::Relaxed);
                return End::TargetFailed;
            }
        }
        for c in cx.counters {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        cx.last.store(sys::monotonic_ns(), Ordering::Relaxed);
        moved += n as u64;
        if let (Some(p), Some(after)) = (cx.promote, cx.promote_after) {
            if moved >= after && !p.swap(true, Ordering::SeqCst) {
                // Long-lived enough for the kernel path: both directions
                // stop at their next read.
                wake.notify_waiters();
            }
        }
    }
}

/// When a copied pair moves to the kernel path: once one direction moved
/// `bytes`, or after `after`, whichever comes first. Short connections end
/// before either and never pay for the kernel path's set-up.
#[derive(Clone, Copy, Debug)]
pub struct Promote {
    pub bytes: u64,
    pub after: Duration,
}

/// Proxies until both directions ended, one side reset, or the pair was idle for
/// `idle`. Decrements the server's current connections at the end.
///
/// Both sockets were set to close with an RST when the session started (so a
/// crash of lb never looks like a clean end): a session that ends cleanly
/// clears that first; one that breaks closes both with an RST, after the bytes
/// received from the failed side were delivered.
pub async fn proxy(
    client: TcpStream,
    server: TcpStream,
    state: Arc<State>,
    server_idx: u32,
    idle: IdleLimits,
    session: Option<Arc<Session>>,
    promote: Option<Promote>,
) -> Option<(std::net::TcpStream, std::net::TcpStream)> {
    let last = AtomicU64::new(sys::monotonic_ns());
    let srv = &state.servers[server_idx as usize];
    // Without a session entry (never in the daemon), counters and kill go to
    // a throwaway one.
    let fallback = crate::state::admin::Sessions::default();
    let sess =
        session.unwrap_or_else(|| fallback.open(0, 0, "0.0.0.0:0".parse().expect("literal")));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    if state.closing.load(Ordering::SeqCst) {
        // lb's stop went over the sessions before this one started copying.
        sess.end(END_STOPPING);
    }
    let deliver_for = idle.open.map_or(super::DELIVER_BEFORE_RESET, |i| i.after);
    let broken = AtomicBool::new(false);
    let finished = AtomicU8::new(0);
    let failed = AtomicBool::new(false);
    let holding = [AtomicBool::new(false), AtomicBool::new(false)];
    let promote_now = AtomicBool::new(false);
    let up = DirCtx {
        last: &last,
        holding: &holding[0],
        failed: &failed,
        counters: [&srv.user_bytes_in, &sess.bytes_in],
        sess: &sess,
        broken: &broken,
        finished: &finished,
        deliver_for,
        promote: promote.map(|_| &promote_now),
        promote_after: promote.map(|p| p.bytes),
    };
    let down = DirCtx {
        holding: &holding[1],
        counters: [&srv.user_bytes_out, &sess.bytes_out],
        ..up.clone()
    };
    let both = async {
        let (mut a, mut b) = tokio::join!(
            copy_dir(&mut cr, &mut sw, &up),
            copy_dir(&mut sr, &mut cw, &down)
        );
        // One direction stopped for the kernel path while the other ended:
        // too late to promote, the stopped one goes on being copied.
        match (&a, &b) {
            (End::Promote, End::Promote) => {}
            (End::Promote, End::Done) => {
                let cx = DirCtx {
                    promote: None,
                    ..up.clone()
                };
                a = copy_dir(&mut cr, &mut sw, &cx).await;
            }
            (End::Done, End::Promote) => {
                let cx = DirCtx {
                    promote: None,
                    ..down.clone()
                };
                b = copy_dir(&mut sr, &mut cw, &cx).await;
            }
            (End::Promote, _) => a = End::Killed,
            (_, End::Promote) => b = End::Killed,
            _ => {}
        }
        (a, b)
    };
    // The inactivity timeout and the promotion deadline share one timer (a
    // short connection sets up and tears down one, not two).
    let timers = async {
        let mut promote_at = promote.map(|p| sys::monotonic_ns() + p.after.as_nanos() as u64);
        loop {
            let now = sys::monotonic_ns();
            if promote_at.is_some_and(|t| now >= t) {
                promote_now.store(true, Ordering::SeqCst);
                sess.wake.notify_waiters();
                promote_at = None;
            }
            let half = finished.load(Ordering::Relaxed) > 0;
            let idle_at = idle.at(half).map(|i| {
                let at = last.load(Ordering::Relaxed) + i.after.as_nanos() as u64;
                (at, i.term)
            });
            if let Some((at, term)) = idle_at {
                if now >= at {
                    return term;
                }
            }
            // A direction that ends does not wake this timer: while open, it
            // looks again within the half-closed limit, if that is shorter.
            let recheck = match (half, idle.half_closed, idle.open) {
                (false, Some(h), o) if o.is_none_or(|o| h.after < o.after) => {
                    Some(now + h.after.as_nanos() as u64)
                }
                _ => None,
            };
            let next = [idle_at.map(|(at, _)| at), promote_at, recheck]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                return std::future::pending().await;
            };
            tokio::time::sleep(Duration::from_nanos(next.saturating_sub(now))).await;
        }
    };
    let ended = tokio::select! {
        r = both => Ok(r),
        term = timers => Err(Some(term)),
    };
    let ended = match ended {
        // lb stops: the directions were told to end; whether with FINs or
        // resets is decided as for a timeout, on what they left behind.
        Ok(ends) if sess.ended_by() == END_STOPPING && ends != (End::Done, End::Done) => Err(None),
        e => e,
    };
    let clean = match ended {
        Ok((End::Done, End::Done)) => true,
        Ok((End::Promote, End::Promote)) => {
            // Both directions stopped between reads, holding nothing.
            let pair = match (cr.reunite(cw), sr.reunite(sw)) {
                (Ok(c), Ok(s)) => c.into_std().and_then(|c| Ok((c, s.into_std()?))).ok(),
                _ => None,
            };
            if pair.is_none() {
                state.release_conn(server_idx, sess.server_cookie.load(Ordering::Relaxed));
            }
            return pair;
        }
        Ok((up, down)) => {
            // Who broke it: the side whose socket failed first.
            let term = if up == End::SourceFailed || down == End::TargetFailed {
                *b"CD"
            } else {
                *b"SD"
            };
            sess.set_term(term);
            tracing::debug!("userspace conn to server {server_idx}: reset ({up:?}, {down:?})");
            false
        }
        Err(term) => {
            match term {
                Some(term) => {
                    sess.set_term(term);
                    tracing::debug!("userspace conn to server {server_idx}: inactivity timeout");
                }
                None => tracing::debug!("userspace conn to server {server_idx}: lb stops"),
            }
            // Still delivering what a failed side sent, or holding bytes a
            // source sent that its target did not take: a FIN would hide the
            // cut, so a reset.
            let unread = |h: &OwnedReadHalf| sys::inq(h.as_ref()).map_or(true, |n| n > 0);
            !failed.load(Ordering::Relaxed)
                && !holding.iter().any(|h| h.load(Ordering::Relaxed))
                && !unread(&cr)
                && !unread(&sr)
        }
    };
    if clean {
        // The FINs still to send go with the close.
        let _ = sys::clear_linger(cw.as_ref());
        let _ = sys::clear_linger(sw.as_ref());
    } else {
        // Still armed: closing sends an RST.
        let _ = sys::set_linger_reset(cw.as_ref());
        let _ = sys::set_linger_reset(sw.as_ref());
    }
    // Dropped write halves would call shutdown(2) first: a FIN before the
    // RST, or a system call the close makes unneeded.
    cw.forget();
    sw.forget();
    drop((cr, sr));
    state.release_conn(server_idx, sess.server_cookie.load(Ordering::Relaxed));
    state.paths.copied.fetch_add(1, Ordering::Relaxed);
    None
}
