//! The splice manager: one thread that puts connection pairs into the socket maps,
//! and afterwards handles what the kernel does not: FIN and RST propagation, the
//! PASS-mode drain when a direction exceeds its in-flight budget, and inactivity
//! timeouts. It never asks for EPOLLIN on a spliced socket unless that direction
//! is being copied by userspace: every redirected packet would wake it otherwise.
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::ptr::addr_of_mut;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{HashMap, MapData, RingBuf, SockHash};
use lb_common::{
    Event, FlowDir, SockEnd, EVENT_BROKEN, EVENT_PASS, MAX_FLOWS, PASS_BIT, PASS_COUNT_MASK,
    USER_BIT,
};

use crate::datapath::copy::Idle;
use crate::kernel::FlowTable;
use crate::state::State;
use crate::sys;

/// A connected pair handed over by the accept path.
pub struct NewConn {
    pub client: TcpStream,
    pub server: TcpStream,
    pub server_idx: u32,
    /// The session's inactivity limits.
    pub idle: crate::datapath::copy::IdleLimits,
    /// Frontend/global `maxconn` slots, returned when the connection ends.
    pub permits: Vec<tokio::sync::OwnedSemaphorePermit>,
    /// The session's entry (runtime API, tcplog): ends when the pair closes.
    pub session: Option<crate::state::admin::SessionGuard>,
}

/// What the manager does with a pair the kernel cannot take.
pub type Fallback = Box<dyn Fn(NewConn) + Send>;

enum Cmd {
    Adopt(NewConn),
    /// Reset every spliced connection of this server (both sides).
    ShutdownServer(u32),
    /// Reset one session (`shutdown session ID`).
    ShutdownSession(u64),
}

/// Handle used by the accept path and the health checks.
#[derive(Clone)]
pub struct Splicer {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<sys::EventFd>,
}

impl Splicer {
    pub fn adopt(&self, c: NewConn) -> Result<(), NewConn> {
        self.tx.send(Cmd::Adopt(c)).map_err(|e| match e.0 {
            Cmd::Adopt(c) => c,
            Cmd::ShutdownServer(_) | Cmd::ShutdownSession(_) => unreachable!("sent an Adopt"),
        })?;
        self.wake.notify();
        Ok(())
    }

    /// Closes (with an RST both ways) every spliced connection of `server`.
    pub fn shutdown_server(&self, server: u32) {
        if self.tx.send(Cmd::ShutdownServer(server)).is_ok() {
            self.wake.notify();
        }
    }

    /// Closes (with an RST both ways) the spliced connection of session `id`.
    pub fn shutdown_session(&self, id: u64) {
        if self.tx.send(Cmd::ShutdownSession(id)).is_ok() {
            self.wake.notify();
        }
    }
}

/// The maps the manager owns.
pub struct SpliceMaps {
    pub targets: SockHash<MapData, u64>,
    pub spliced: SockHash<MapData, u64>,
    pub ends: HashMap<MapData, u64, SockEnd>,
    pub events: RingBuf<MapData>,
    pub flows: FlowTable,
}

const TOKEN_WAKE: u64 = u64::MAX;
const TOKEN_EVENTS: u64 = u64::MAX - 1;
/// At most how often the manager returns freed memory to the kernel.
const TRIM_EVERY_NS: u64 = 1_000_000_000;
/// How often the manager looks at idle timeouts, stuck FINs and rates.
const SWEEP_NS: u64 = 100_000_000;
/// A reader draining at least this fast (bytes/s, about 0.8 Gbit/s) gets
/// `FAST_SNDBUF` and `FAST_BUDGET`; below a quarter of it, the defaults again.
const FAST_RATE: u64 = 100_000_000;
/// `SO_SNDBUFFORCE` value (the kernel doubles it): 16 MiB of send buffer,
/// 13 ms at 10 Gbit/s, so the psock worker's jiffy wait never empties it.
const FAST_SNDBUF: u32 = 8 << 20;
/// The same for a direction that slowed down: 4 MiB, the autotuning ceiling
/// of a default `tcp_wmem`.
const SLOW_SNDBUF: u32 = 2 << 20;
/// In-flight budget of a fast direction (never below the configured one).
const FAST_BUDGET: u32 = 16 << 20;
const BUF_SIZE: usize = 64 * 1024;
/// `SO_RCVBUFFORCE` value (doubled by the kernel) for the source of a braked
/// direction that is not sized for a fast reader: 1 MiB. The verdict reads
/// at line rate, so autotuning grows the source's buffer to `tcp_rmem[2]`
/// (32 MiB on this kernel); once braked, every byte of it would fill and
/// stay charged while the reader is stopped.
const BRAKE_RCVBUF: u32 = 512 << 10;

#[derive(Default)]
struct Dir {
    /// The source sent its FIN (or, for a userspace direction, read returned 0).
    eof: bool,
    /// We shut down the target's write side.
    shut: bool,
    /// Userspace copies this direction: PASS mode, or USER for good.
    draining: bool,
    user: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Target was full: wait for EPOLLOUT.
    want_out: bool,
    /// Since when the FIN waits for bytes still on their way, and how much the
    /// target had taken then: when nothing more reaches a target whose send
    /// queue is empty for `DELIVER_BEFORE_RESET` (a lost redirect), the pair
    /// is reset; a slow reader is left to the inactivity timeout.
    eof_ns: u64,
    eof_taken: u64,
    /// The target's `bytes_acked` at the last sweep, and when: the rate its
    /// reader drains at.
    rate_acked: u64,
    rate_ns: u64,
    /// Sized for a fast reader (see [`Manager::size_for_rate`]).
    fast: bool,
    /// The source's receive buffer is capped at `BRAKE_RCVBUF` while the
    /// direction is braked (see [`Manager::brake_rcvbuf`]).
    clamped: bool,
    /// What userspace read from the source before it was spliced (the copy
    /// phase, a PROXY header): not the verdict's to count.
    rx_base: u64,
}

/// Bytes userspace read from `s` so far: received less still queued, from
/// two syscalls, so read again until a segment did not land between them
/// (which would count its bytes as read).
fn consumed(s: &TcpStream) -> std::io::Result<u64> {
    for _ in 0..64 {
        let before = sys::tcp_counters(s)?.bytes_received;
        let queued = sys::inq(s)?;
        if sys::tcp_counters(s)?.bytes_received == before {
            return Ok(before.saturating_sub(queued));
        }
    }
    Err(std::io::Error::other(
        "the receive counters did not hold still long enough to read",
    ))
}

/// Bytes through a spliced pair while the target's send buffer is small and
/// its reader pauses, so that the kernel sends skbs partly and retries the
/// rest later: a kernel that resends a partly sent skb from its start (the
/// sockmap bug "fix duplicated data transmission", fixed in 6.16) delivers
/// bytes twice here, and lb must not splice on it.
fn partial_sends(from: &TcpStream, target: &TcpStream, to: &TcpStream) -> Result<(), String> {
    use std::io::{Read, Write};
    const LEN: usize = 64 << 10;
    let err = |what: &str, e: std::io::Error| format!("self-test ({what}, partial sends): {e}");
    socket2::SockRef::from(target)
        .set_send_buffer_size(4096)
        .map_err(|e| err("send buffer", e))?;
    socket2::SockRef::from(to)
        .set_recv_buffer_size(4096)
        .map_err(|e| err("receive buffer", e))?;
    from.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| err("write timeout", e))?;
    let msg: Vec<u8> = (0..LEN as u32).map(|i| (i % 253) as u8).collect();
    std::thread::scope(|sc| {
        // The writer blocks once the pair's buffers are full; the reader
        // pauses first so that the target's send queue fills up.
        let writer = sc.spawn(|| {
            let mut f = from;
            f.write_all(&msg)
        });
        std::thread::sleep(Duration::from_millis(20));
        let mut got = vec![0u8; LEN];
        let mut t = to;
        let read = t.read_exact(&mut got);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("writer panicked")));
        wrote.map_err(|e| err("write", e))?;
        read.map_err(|e| err("bytes did not come through", e))?;
        if got != msg {
            let at = got.iter().zip(&msg).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "self-test: bytes came through altered at offset {at} after partial sends \
                 (this kernel resends partly sent skbs; it needs the 6.16 sockmap fix)"
            ));
        }
        Ok(())
    })
}

/// How a pair ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// FIN both ways: every byte went through.
    Clean,
    /// RST both ways, the session's termination state as it is (a timeout or
    /// a stop that found bytes still on their way).
    Reset,
    /// RST both ways because the socket of this side failed (`CD`/`SD`).
    Failed(usize),
}

struct Conn {
    /// 0: client, 1: server.
    socks: [TcpStream; 2],
    cookies: [u64; 2],
    server: u32,
    /// Inactivity limit (0: none) and what its expiry logs (`cD` or `sD`):
    /// [0] while both directions flow, [1] once one ended.
    idle_ns: [u64; 2],
    idle_term: [[u8; 2]; 2],
    /// The side whose socket failed (an RST), and until when the bytes it
    /// received before may take to reach the other side before both are reset.
    failed: Option<(usize, u64)>,
    user_last_ns: u64,
    dirs: [Dir; 2],
    interest: [u32; 2],
    pending: bool,
    /// Which use of the slot this is, in its epoll tokens: an event already
    /// fetched for the slot's previous pair (closed earlier in the same
    /// batch, the slot reused by an adoption in it) is not this pair's.
    gen: u32,
    /// Dropped with the connection: frees its frontend/global `maxconn` slots.
    _permits: Vec<tokio::sync::OwnedSemaphorePermit>,
    session: Option<crate::state::admin::SessionGuard>,
}

pub struct Manager {
    maps: SpliceMaps,
    epoll: sys::Epoll,
    wake: Arc<sys::EventFd>,
    rx: mpsc::Receiver<Cmd>,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    /// One past the highest slot ever used: sweeps look below it only (the
    /// free list hands the lowest slots out again), not at 16k mostly
    /// empty entries ten times a second.
    high: usize,
    /// Connections waiting on something no event reports (the kernel draining a
    /// psock queue, the verdict catching up): re-checked every millisecond.
    pending: Vec<u32>,
    state: Arc<State>,
    budget: u32,
    fallback: Fallback,
    stop: Arc<AtomicBool>,
    /// Pairs adopted since the allocator last returned freed memory.
    adopted_since_trim: u32,
    /// The next `Conn::gen`.
    next_gen: u32,
    /// `LB_TEST_KICK_DELAY_MS`, for tests only: a pause before a pair's
    /// insertion into the maps and another before the kick of its queued
    /// bytes.
    kick_delay: Option<std::time::Duration>,
}

enum Step {
    Continue,
    /// Close the connection: Some(side) resets the other side (RST both ways).
    Close(Option<usize>),
}

impl Manager {
    pub fn new(
        maps: SpliceMaps,
        state: Arc<State>,
        budget: u64,
        fallback: Fallback,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Self, Splicer)> {
        let (tx, rx) = mpsc::channel();
        let wake = Arc::new(sys::EventFd::new()?);
        let epoll = sys::Epoll::new()?;
        epoll.add(wake.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_WAKE)?;
        epoll.add(maps.events.as_raw_fd(), libc::EPOLLIN as u32, TOKEN_EVENTS)?;
        let max = (MAX_FLOWS / 2) as usize;
        let m = Self {
            maps,
            epoll,
            wake: wake.clone(),
            rx,
            conns: (0..max).map(|_| None).collect(),
            free: (0..max as u32).rev().collect(),
            high: 0,
            pending: Vec::new(),
            state,
            budget: budget.min(u32::MAX as u64) as u32,
            fallback,
            stop,
            adopted_since_trim: 0,
            next_gen: 0,
            kick_delay: std::env::var("LB_TEST_KICK_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis),
        };
        Ok((m, Splicer { tx, wake }))
    }

    pub fn wake_handle(&self) -> Arc<sys::EventFd> {
        self.wake.clone()
    }

    fn flow(&self, slot: u32) -> *mut FlowDir {
        self.maps.flows.slot(slot)
    }

    fn word(&self, slot: u32) -> &AtomicU64 {
        unsafe { AtomicU64::from_ptr(addr_of_mut!((*self.flow(slot)).pass_word)) }
    }

    fn field(&self, slot: u32, f: fn(*mut FlowDir) -> *mut u64) -> &AtomicU64 {
        unsafe { AtomicU64::from_ptr(f(self.flow(slot))) }
    }

    fn field_u32(&self, slot: u32, f: fn(*mut FlowDir) -> *mut u32) -> &AtomicU32 {
        unsafe { AtomicU32::from_ptr(f(self.flow(slot))) }
    }

    /// Runs until `stop` is set; then closes every connection.
    pub fn run(mut self) {
        let mut events = Vec::with_capacity(256);
        let mut last_sweep = sys::monotonic_ns();
        let mut last_trim = last_sweep;
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = if self.pending.is_empty() { 100 } else { 1 };
            if let Err(e) = self.epoll.wait(&mut events, timeout) {
                tracing::error!("splice manager: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            for ev in events.iter().copied() {
                let (token, mask) = (ev.u64, ev.events);
                match token {
                    TOKEN_WAKE => {
                        self.wake.drain();
                        while let Ok(cmd) = self.rx.try_recv() {
                            match cmd {
                                Cmd::Adopt(nc) => self.adopt(nc),
                                Cmd::ShutdownServer(idx) => self.shutdown_server(idx),
                                Cmd::ShutdownSession(sid) => self.shutdown_session(sid),
                            }
                        }
                    }
                    TOKEN_EVENTS => self.read_events(),
                    t => {
                        let (id, side, gen) = untoken(t);
                        if self.conns[id as usize]
                            .as_ref()
                            .is_some_and(|c| c.gen == gen)
                        {
                            self.on_socket(id, side, mask);
                        }
                    }
                }
            }
            for id in std::mem::take(&mut self.pending) {
                if let Some(c) = self.conns[id as usize].as_mut() {
                    if c.pending {
                        // progress() queues it again if it still has to wait.
                        c.pending = false;
                        self.progress(id);
                    }
                }
            }
            let now = sys::monotonic_ns();
            if now - last_sweep >= SWEEP_NS {
                last_sweep = now;
                self.sweep(now);
                self.size_for_rate(now);
                if self.adopted_since_trim > 0 && now - last_trim >= TRIM_EVERY_NS {
                    // Pairs that moved here left their copy phase's memory
                    // freed but kept by the allocator (a burst of new
                    // connections is all in that phase at once): give it back.
                    unsafe { libc::malloc_trim(0) };
                    self.adopted_since_trim = 0;
                    last_trim = now;
                }
            }
        }
        let ids: Vec<u32> = (0..self.conns.len() as u32)
            .filter(|&i| self.conns[i as usize].is_some())
            .collect();
        for id in ids {
            // Bytes that did not get through yet are lost with lb: a reset,
            // not a FIN, tells the peers so.
            let end = if self.settled(id) {
                End::Clean
            } else {
                End::Reset
            };
            self.close(id, end);
        }
    }

    /// Splices one loopback pair and moves bytes both ways through the verdict,
    /// before any client is served: the kernel path has broken in subtle ways on
    /// some kernels (see DATAPATH_NOTES), so it must prove itself here.
    /// Ok(false): skipped because loopback is unusable in this namespace.
    pub fn self_test(&mut self) -> Result<bool, String> {
        use std::io::{Read, Write};
        use std::net::{Ipv4Addr, TcpListener};
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("self-test listener on 127.0.0.1 (is lo up?): {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        // Bounded: start-up must never hang on its own test connection.
        l.set_nonblocking(true)
            .map_err(|e| format!("self-test listener: {e}"))?;
        let pair = || -> std::io::Result<(TcpStream, TcpStream)> {
            let far = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let near = loop {
                match l.accept() {
                    Ok((near, _)) => break near,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if std::time::Instant::now() > deadline {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("the test connection to {addr} never reached its listener"),
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e),
                }
            };
            near.set_nonblocking(true)?;
            far.set_read_timeout(Some(Duration::from_secs(2)))?;
            Ok((far, near))
        };
        let (a, b) = match pair() {
            Ok(p) => p,
            // Loopback down: nothing to test with, which says nothing about splicing.
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => return Ok(false),
            Err(e) => return Err(format!("self-test connect: {e}")),
        };
        let (c, d) = pair().map_err(|e| format!("self-test connect: {e}"))?;
        let id = *self.free.last().ok_or("no free flow slot")?;
        // The last server slot is never configured (the parser caps servers below
        // it), so the test's bytes and connection count land on no real server.
        let nc = NewConn {
            client: b,
            server: d,
            server_idx: lb_common::MAX_SERVERS - 1,
            idle: Default::default(),
            permits: Vec::new(),
            session: None,
        };
        let (b_fd, d_fd) = (nc.client.try_clone(), nc.server.try_clone());
        // The manager does not run yet, so nothing would copy a PASS: the
        // test pair gets a budget no configuration makes it reach.
        let budget = std::mem::replace(&mut self.budget, u32::MAX);
        self.adopt(nc);
        self.budget = budget;
        if self.conns[id as usize].is_none() {
            return Err("the kernel refused to splice a loopback pair".into());
        }
        let result = (|| -> Result<(), String> {
            let (b, d) = (
                b_fd.map_err(|e| e.to_string())?,
                d_fd.map_err(|e| e.to_string())?,
            );
            let msg: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
            for (mut from, mut to) in [(&a, &c), (&c, &a)] {
                from.write_all(&msg)
                    .map_err(|e| format!("self-test write: {e}"))?;
                let mut got = vec![0u8; msg.len()];
                to.read_exact(&mut got)
                    .map_err(|e| format!("self-test: bytes did not come through: {e}"))?;
                if got != msg {
                    return Err("self-test: bytes came through altered".into());
                }
            }
            partial_sends(&a, &d, &c)?;
            partial_sends(&c, &b, &a)
        })();
        self.close(id, End::Clean);
        // The test pair is no traffic: `conn_spliced` counts from here.
        self.state.paths.spliced.store(0, Ordering::Relaxed);
        result.map(|()| true)
    }

    fn shutdown_server(&mut self, server: u32) {
        let ids: Vec<u32> = (0..self.conns.len() as u32)
            .filter(|&i| {
                self.conns[i as usize]
                    .as_ref()
                    .is_some_and(|c| c.server == server)
            })
            .collect();
        if !ids.is_empty() {
            tracing::info!(
                "shutting down {} spliced sessions of server {server}",
                ids.len()
            );
        }
        for id in ids {
            self.close(id, End::Failed(1));
        }
    }

    fn shutdown_session(&mut self, sid: u64) {
        let found = self.conns.iter().position(|c| {
            c.as_ref()
                .and_then(|c| c.session.as_ref())
                .is_some_and(|g| g.session.id == sid)
        });
        if let Some(id) = found {
            self.close(id as u32, End::Failed(1));
        }
    }

    fn adopt(&mut self, nc: NewConn) {
        self.adopted_since_trim += 1;
        let Some(id) = self.free.pop() else {
            tracing::warn!(
                "splice: all {} flow slots busy; copying in userspace",
                MAX_FLOWS
            );
            self.refuse(nc);
            return;
        };
        self.high = self.high.max(id as usize + 1);
        if let Some(d) = self.kick_delay {
            std::thread::sleep(d);
        }
        match self.insert(id, &nc) {
            Ok((server_spliced, rx_base)) => {
                self.state.paths.spliced.fetch_add(1, Ordering::Relaxed);
                self.next_gen = self.next_gen.wrapping_add(1);
                let ns = |i: Option<Idle>| i.map_or(0, |i| i.after.as_nanos() as u64);
                let term = |i: Option<Idle>| i.map_or(*b"cD", |i| i.term);
                let (open, half) = (nc.idle.open, nc.idle.half_closed);
                let idle_ns = [ns(open), ns(half)];
                let idle_term = [term(open), term(half)];
                let mut c = Conn {
                    socks: [nc.client, nc.server],
                    cookies: [0; 2],
                    server: nc.server_idx,
                    idle_ns,
                    idle_term,
                    failed: None,
                    user_last_ns: sys::monotonic_ns(),
                    dirs: [Dir::default(), Dir::default()],
                    interest: [0; 2],
                    pending: false,
                    gen: self.next_gen,
                    _permits: nc.permits,
                    session: nc.session,
                };
                if let Some(g) = &c.session {
                    g.session.spliced.store(true, Ordering::Relaxed);
                }
                c.cookies = [
                    sys::cookie(&c.socks[0]).unwrap_or(0),
                    sys::cookie(&c.socks[1]).unwrap_or(0),
                ];
                c.dirs[0].rx_base = rx_base[0];
                c.dirs[1].rx_base = rx_base[1];
                if !server_spliced {
                    c.dirs[1].user = true;
                    c.dirs[1].draining = true;
                }
                for side in 0..2 {
                    let fd = c.socks[side].as_raw_fd();
                    let _ = self.epoll.add(fd, 0, token(id, side, c.gen));
                }
                self.conns[id as usize] = Some(c);
                if let Some(d) = self.kick_delay {
                    // Test hook (here and before the insertion): widen the
                    // windows in which bytes queue unseen and a reset lands
                    // before the verdict ran over them.
                    std::thread::sleep(d);
                }
                // Bytes that arrived before insertion wait in the receive queue
                // until the verdict is run over them.
                for side in 0..2 {
                    if side == 1 && !server_spliced {
                        continue;
                    }
                    if let Some(c) = &self.conns[id as usize] {
                        let _ = sys::kick_rcvlowat(&c.socks[side]);
                    }
                }
                self.progress(id);
            }
            Err(e) => {
                tracing::debug!("splice: kernel path refused the pair ({e}); copying in userspace");
                self.free.push(id);
                self.refuse(nc);
            }
        }
    }

    /// The kernel path will not take the pair: it stays on the userspace copy.
    fn refuse(&mut self, nc: NewConn) {
        self.state.paths.refused.fetch_add(1, Ordering::Relaxed);
        (self.fallback)(nc);
    }

    /// Map insertion in the order that never loses data: redirect targets, the
    /// per-socket records, then the verdict map (client first). Returns whether the
    /// server side is spliced (a server already in CLOSE_WAIT is copied by userspace).
    /// Returns whether the server side is spliced too, and for each source
    /// the bytes userspace took from it before (received less still queued):
    /// the verdict's counts start after them.
    fn insert(&mut self, id: u32, nc: &NewConn) -> std::io::Result<(bool, [u64; 2])> {
        let mut rx_base = [0u64; 2];
        for (d, src) in [&nc.client, &nc.server].into_iter().enumerate() {
            // Before insertion: afterwards FIONREAD reports the psock's queue.
            rx_base[d] = consumed(src)?;
        }
        let cc = sys::cookie(&nc.client)?;
        let sc = sys::cookie(&nc.server)?;
        let now = sys::monotonic_ns();
        for (d, target, owner) in [(0u32, &nc.server, cc), (1u32, &nc.client, sc)] {
            let t = sys::tcp_counters(target)?;
            let q = sys::outq(target)?;
            let f = FlowDir {
                owner_cookie: owner,
                next_seq: 0,
                next_set: 0,
                broken: 0,
                _pad: 0,
                pass_word: 0,
                redirected: 0,
                forwarded: 0,
                tx_base: t.bytes_acked + q,
                seq_base: 0,
                seq_set: 0,
                last_active_ns: now,
                budget: self.budget,
                server: nc.server_idx,
                bound: 0,
            };
            unsafe { std::ptr::write_volatile(self.flow(id * 2 + d), f) };
        }
        let io = |e: aya::maps::MapError| std::io::Error::other(e.to_string());
        let m = &mut self.maps;
        m.targets.insert(cc, nc.client.as_raw_fd(), 0).map_err(io)?;
        if let Err(e) = m.targets.insert(sc, nc.server.as_raw_fd(), 0) {
            let _ = m.targets.remove(&cc);
            return Err(io(e));
        }
        let ends = [
            (
                cc,
                SockEnd {
                    peer_cookie: sc,
                    slot: id * 2,
                    server: nc.server_idx,
                },
            ),
            (
                sc,
                SockEnd {
                    peer_cookie: cc,
                    slot: id * 2 + 1,
                    server: nc.server_idx,
                },
            ),
        ];
        for (k, v) in ends {
            if let Err(e) = m.ends.insert(k, v, 0) {
                let _ = m.ends.remove(&cc);
                let _ = m.targets.remove(&cc);
                let _ = m.targets.remove(&sc);
                return Err(io(e));
            }
        }
        if let Err(e) = m.spliced.insert(cc, nc.client.as_raw_fd(), 0) {
            // Nothing was redirected yet (no verdict ran): removal loses nothing.
            let _ = m.ends.remove(&cc);
            let _ = m.ends.remove(&sc);
            let _ = m.targets.remove(&cc);
            let _ = m.targets.remove(&sc);
            return Err(io(e));
        }
        if m.spliced.insert(sc, nc.server.as_raw_fd(), 0).is_err() {
            // Client bytes may already be on their way: keep the pair and let
            // userspace copy server->client.
            self.word(id * 2 + 1).fetch_or(USER_BIT, Ordering::SeqCst);
            return Ok((false, rx_base));
        }
        Ok((true, rx_base))
    }

    fn read_events(&mut self) {
        let mut slots = Vec::new();
        while let Some(item) = self.maps.events.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                let ev: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                if ev.kind == EVENT_PASS || ev.kind == EVENT_BROKEN {
                    slots.push(ev);
                }
            }
        }
        for ev in slots {
            let id = ev.slot / 2;
            let d = (ev.slot % 2) as usize;
            let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
                continue;
            };
            if c.cookies[d] != ev.cookie {
                continue;
            }
            if ev.kind == EVENT_BROKEN {
                // What went before the hole is delivered, then both sides
                // get the reset that tells them the stream was cut.
                tracing::warn!(
                    "splice slot {}: the kernel could not pass a segment on (an overlap it could not trim, or a refused redirect); resetting the pair",
                    ev.slot
                );
                self.fail(id, d);
                continue;
            }
            c.dirs[d].draining = true;
            self.brake_rcvbuf(id, d);
            self.progress(id);
        }
    }

    /// A braked direction's bytes stay in its source socket, charged to it,
    /// so its window closes: cap that socket's buffer, unless the reader is
    /// a fast one that only outran the psock worker for a moment (a cap
    /// there would drop segments already in the window it advertised).
    fn brake_rcvbuf(&mut self, id: u32, d: usize) {
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        let dir = &mut c.dirs[d];
        if dir.clamped || dir.fast || !dir.draining {
            return;
        }
        match sys::force_rcvbuf(&c.socks[d], BRAKE_RCVBUF) {
            Ok(()) => dir.clamped = true,
            Err(e) => tracing::debug!("splice slot {}: SO_RCVBUFFORCE: {e}", id * 2 + d as u32),
        }
    }

    fn on_socket(&mut self, id: u32, side: usize, mask: u32) {
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if mask & libc::EPOLLERR as u32 != 0
            && c.failed.is_none()
            && sys::take_error(&c.socks[side]).unwrap_or(0) != 0
        {
            self.fail(id, side);
            return;
        }
        if c.failed.is_some() {
            self.progress(id);
            return;
        }
        if mask & libc::EPOLLRDHUP as u32 != 0 && !c.dirs[side].user {
            c.dirs[side].eof = true;
        }
        self.progress(id);
    }

    /// Bytes redirected or forwarded toward the target of `slot` that the target
    /// socket has taken into its send queue (or already had acknowledged).
    fn peer_drained(&self, slot: u32, target: &TcpStream) -> std::io::Result<bool> {
        let t = sys::tcp_counters(target)?;
        let q = sys::outq(target)?;
        let f = self.flow(slot);
        let pushed = unsafe { std::ptr::read_volatile(addr_of_mut!((*f).tx_base)) }
            + self
                .field(slot, |f| unsafe { addr_of_mut!((*f).redirected) })
                .load(Ordering::SeqCst)
            + self
                .field(slot, |f| unsafe { addr_of_mut!((*f).forwarded) })
                .load(Ordering::SeqCst);
        tracing::trace!(
            "slot {slot}: peer acked {} outq {q} pushed {pushed}",
            t.bytes_acked
        );
        Ok(t.bytes_acked + q >= pushed)
    }

    /// Advances both directions as far as they go now; closes when done.
    fn progress(&mut self, id: u32) {
        if !self.conns.get(id as usize).is_some_and(|c| c.is_some()) {
            // Closed by an earlier step of the same sweep or event batch.
            return;
        }
        if let Some((side, _)) = self.conns.get(id as usize).and_then(|c| c.as_ref()?.failed) {
            match self.deliver_before_reset(id, side) {
                Ok(false) => self.wait(id),
                Ok(true) | Err(_) => self.close(id, End::Failed(side)),
            }
            return;
        }
        let mut pending = false;
        for d in 0..2 {
            match self.progress_dir(id, d) {
                Ok((Step::Continue, p)) => pending |= p,
                Ok((Step::Close(Some(side)), _)) => {
                    self.fail(id, side);
                    return;
                }
                Ok((Step::Close(None), _)) => {
                    self.close(id, End::Clean);
                    return;
                }
                Err(e) => {
                    tracing::debug!("splice conn {id}: {e}");
                    // An I/O error on either socket: reset both.
                    self.close(id, End::Failed(d));
                    return;
                }
            }
        }
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if pending && !c.pending {
            self.pending.push(id);
        }
        c.pending = pending;
        if c.dirs[0].shut && c.dirs[1].shut {
            self.close(id, End::Clean);
            return;
        }
        self.update_interest(id);
    }

    /// The socket of `side` failed (an RST, a send or receive error): the
    /// bytes it received before still go to the other side, then both sides
    /// are reset.
    fn fail(&mut self, id: u32, side: usize) {
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        if c.failed.is_none() {
            let grace = if c.idle_ns[0] > 0 {
                c.idle_ns[0]
            } else {
                super::DELIVER_BEFORE_RESET.as_nanos() as u64
            };
            c.failed = Some((side, sys::monotonic_ns() + grace));
        }
        self.progress(id);
    }

    /// Re-checked every millisecond: nothing reports the acknowledgements.
    fn wait(&mut self, id: u32) {
        if let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) {
            if !c.pending {
                c.pending = true;
                self.pending.push(id);
            }
        }
    }

    /// After the socket of `s` failed: true once every byte it received went
    /// through to the other side and was acknowledged there, so that the RST
    /// both sides get next comes after the bytes, as in HAProxy. Nothing
    /// goes the other way: the failed socket cannot take it.
    fn deliver_before_reset(&mut self, id: u32, s: usize) -> std::io::Result<bool> {
        let slot = id * 2 + s as u32;
        let c = self.conns[id as usize].as_ref().expect("live conn");
        if c.dirs[s].shut {
            // Its FIN went on after its bytes: all was delivered.
            return Ok(true);
        }
        let w = self.word(slot).load(Ordering::SeqCst);
        if c.dirs[s].draining || c.dirs[s].user || w & (PASS_BIT | USER_BIT) != 0 {
            // The kernel writes redirected bytes first, then ours.
            if !c.dirs[s].user && !self.peer_drained(slot, &c.socks[1 - s])? {
                return Ok(false);
            }
            match self.pump(id, s)? {
                // The failed source gave all it had (recv returns queued
                // bytes before the error).
                Step::Close(Some(x)) if x == s => {}
                Step::Close(_) => return Ok(true),
                Step::Continue => {
                    let c = self.conns[id as usize].as_ref().expect("live conn");
                    if c.dirs[s].start != c.dirs[s].end || !c.dirs[s].eof {
                        return Ok(false);
                    }
                }
            }
        }
        // A FIN seen before the reset takes one sequence number.
        let fin = self.conns[id as usize].as_ref().expect("live conn").dirs[s].eof as u64;
        if !self.passed_on(id, s, fin)? {
            return Ok(false);
        }
        // And acknowledged (the RST that follows discards the send queue),
        // unless the other side was reset too and never will.
        let c = self.conns[id as usize].as_ref().expect("live conn");
        Ok(sys::unacked(&c.socks[1 - s])? == 0)
    }

    /// Returns the step and whether this direction needs a timed re-check.
    fn progress_dir(&mut self, id: u32, d: usize) -> std::io::Result<(Step, bool)> {
        let slot = id * 2 + d as u32;
        // Pick up a PASS switch whose ring-buffer event was lost.
        let w = self.word(slot).load(Ordering::SeqCst);
        let conn = self.conns[id as usize].as_mut().expect("live conn");
        if w & (PASS_BIT | USER_BIT) != 0 {
            conn.dirs[d].draining = true;
        }
        let (draining, user, eof, shut) = {
            let dir = &conn.dirs[d];
            (dir.draining, dir.user, dir.eof, dir.shut)
        };
        let conn = self.conns[id as usize].as_ref().expect("live conn");
        if shut {
            return Ok((Step::Continue, false));
        }
        let mut pending = false;
        if draining {
            if !user && !self.peer_drained(slot, &conn.socks[1 - d])? {
                // The kernel is still writing redirected bytes to the target:
                // writing now would reorder them.
                return Ok((Step::Continue, true));
            }
            match self.pump(id, d)? {
                Step::Continue => {}
                close => return Ok((close, false)),
            }
            if !user
                && self.peer_drained(
                    slot,
                    &self.conns[id as usize].as_ref().expect("live conn").socks[1 - d],
                )?
            {
                self.try_resume(id, d);
            }
        }
        let conn = self.conns[id as usize].as_ref().expect("live conn");
        let dir = &conn.dirs[d];
        let eof = eof || dir.eof;
        if eof && !dir.shut {
            if self.ready_to_shut(id, d)? {
                let c = self.conns[id as usize].as_mut().expect("live conn");
                // The peer may be gone already; the RST path reports that.
                let _ = sys::shutdown_write(&c.socks[1 - d]);
                c.dirs[d].shut = true;
            } else {
                let c = self.conns[id as usize].as_mut().expect("live conn");
                if c.dirs[d].eof_ns == 0 {
                    c.dirs[d].eof_ns = sys::monotonic_ns();
                }
                pending = true;
            }
        }
        Ok((Step::Continue, pending))
    }

    /// True once every byte the source received went through to the target.
    fn ready_to_shut(&self, id: u32, d: usize) -> std::io::Result<bool> {
        // Only called after the FIN arrived, and the FIN takes one sequence
        // number that bytes_received counts.
        self.passed_on(id, d, 1)
    }

    /// True once every byte the source of direction `d` received (less `fin`,
    /// the sequence number a FIN takes) went through the verdict or userspace
    /// and reached the target's send queue.
    fn passed_on(&self, id: u32, d: usize, fin: u64) -> std::io::Result<bool> {
        let slot = id * 2 + d as u32;
        let c = self.conns[id as usize].as_ref().expect("live conn");
        let dir = &c.dirs[d];
        if dir.start != dir.end {
            return Ok(false);
        }
        if dir.user {
            return Ok(true);
        }
        let src = &c.socks[d];
        let received = sys::tcp_counters(src)?
            .bytes_received
            .saturating_sub(fin + dir.rx_base);
        let w = self.word(slot).load(Ordering::SeqCst);
        let passed = w & PASS_COUNT_MASK;
        let redirected = self
            .field(slot, |f| unsafe { addr_of_mut!((*f).redirected) })
            .load(Ordering::SeqCst);
        let forwarded = self
            .field(slot, |f| unsafe { addr_of_mut!((*f).forwarded) })
            .load(Ordering::SeqCst);
        tracing::trace!(
            "conn {id} dir {d}: received {received} redirected {redirected} passed {passed} forwarded {forwarded}"
        );
        if redirected + passed < received {
            // Bytes still in the receive queue that the verdict has not run over.
            let _ = sys::kick_rcvlowat(src);
            return Ok(false);
        }
        if passed != forwarded {
            return Ok(false);
        }
        self.peer_drained(slot, &c.socks[1 - d])
    }

    /// Copies the source's queued bytes to the target until one would block.
    fn pump(&mut self, id: u32, d: usize) -> std::io::Result<Step> {
        let slot = id * 2 + d as u32;
        let fwd = self.field(slot, |f| unsafe { addr_of_mut!((*f).forwarded) }) as *const AtomicU64;
        let last =
            self.field(slot, |f| unsafe { addr_of_mut!((*f).last_active_ns) }) as *const AtomicU64;
        let srv = self.conns[id as usize].as_ref().expect("live conn").server;
        let server = &self.state.servers[srv as usize];
        let c = self.conns[id as usize].as_mut().expect("live conn");
        let (a, b) = c.socks.split_at_mut(1);
        let (src, dst) = if d == 0 {
            (&a[0], &b[0])
        } else {
            (&b[0], &a[0])
        };
        let dir = &mut c.dirs[d];
        if dir.buf.is_empty() {
            dir.buf = vec![0; BUF_SIZE];
        }
        let mut moved = 0u64;
        loop {
            if dir.start < dir.end {
                match sys::send(dst, &dir.buf[dir.start..dir.end]) {
                    Ok(Some(n)) => {
                        dir.start += n;
                        moved += n as u64;
                        unsafe { &*fwd }.fetch_add(n as u64, Ordering::SeqCst);
                        dir.want_out = false;
                    }
                    Ok(None) => {
                        dir.want_out = true;
                        break;
                    }
                    Err(_) => return Ok(Step::Close(Some(1 - d))),
                }
                continue;
            }
            dir.start = 0;
            dir.end = 0;
            if dir.eof && dir.user {
                break;
            }
            match sys::recv(src, &mut dir.buf) {
                Ok(Some(0)) => {
                    dir.eof = true;
                    break;
                }
                Ok(Some(n)) => dir.end = n,
                Ok(None) => break,
                Err(_) => return Ok(Step::Close(Some(d))),
            }
        }
        if moved > 0 {
            let now = sys::monotonic_ns();
            unsafe { &*last }.store(now, Ordering::Relaxed);
            c.user_last_ns = now;
            let counter = if d == 0 {
                &server.user_bytes_in
            } else {
                &server.user_bytes_out
            };
            counter.fetch_add(moved, Ordering::Relaxed);
        }
        Ok(Step::Continue)
    }

    /// Back to in-kernel redirects once every passed byte was forwarded (the caller
    /// checked that the peer's psock backlog is empty). The compare-and-swap fails
    /// if the verdict passed another packet meanwhile, which keeps the byte order.
    fn try_resume(&mut self, id: u32, d: usize) {
        let slot = id * 2 + d as u32;
        let Some(c) = self.conns[id as usize].as_ref() else {
            return;
        };
        if c.dirs[d].start != c.dirs[d].end || c.dirs[d].eof {
            return;
        }
        let w = self.word(slot).load(Ordering::SeqCst);
        if w & USER_BIT != 0 {
            return;
        }
        if w & PASS_BIT != 0 {
            let forwarded = self
                .field(slot, |f| unsafe { addr_of_mut!((*f).forwarded) })
                .load(Ordering::SeqCst);
            if w & PASS_COUNT_MASK != forwarded
                || self
                    .word(slot)
                    .compare_exchange(w, w & !PASS_BIT, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                return;
            }
        }
        if let Some(c) = self.conns[id as usize].as_mut() {
            c.dirs[d].draining = false;
            c.dirs[d].want_out = false;
            if std::mem::take(&mut c.dirs[d].clamped) {
                // The reader keeps up again: autotuning takes over from the cap.
                let _ = sys::unlock_rcvbuf(&c.socks[d]);
            }
        }
    }

    fn update_interest(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.as_mut()) else {
            return;
        };
        for side in 0..2 {
            let mut want = (libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            // As a source: EPOLLIN only while userspace copies its bytes.
            let src = &c.dirs[side];
            if src.draining && !src.shut && !(src.eof && src.user) {
                want |= libc::EPOLLIN as u32;
            }
            // As a target: EPOLLOUT only while a forwarded write is blocked.
            if c.dirs[1 - side].want_out {
                want |= libc::EPOLLOUT as u32;
            }
            if want != c.interest[side] {
                c.interest[side] = want;
                let _ = self
                    .epoll
                    .modify(c.socks[side].as_raw_fd(), want, token(id, side, c.gen));
            }
        }
    }

    /// Sizes each active direction for the rate its reader drains at. The
    /// psock worker that sends redirected bytes waits a jiffy (4 ms) whenever
    /// the target's send buffer is full; at 10 Gbit/s that is 5 MB, more than
    /// an autotuned buffer holds, so the backlog grows past the budget and the
    /// stream falls back to copying in userspace (94% of one iperf3 stream's
    /// skbs here). A direction that drains fast gets a send buffer and a
    /// budget that cover a jiffy; one that slows down gets the configured ones
    /// back, so slow readers hold no more memory than before.
    fn size_for_rate(&mut self, now: u64) {
        for id in 0..self.high as u32 {
            if self.conns[id as usize].is_none() {
                continue;
            }
            for d in 0..2usize {
                let slot = id * 2 + d as u32;
                let active = self
                    .field(slot, |f| unsafe { addr_of_mut!((*f).last_active_ns) })
                    .load(Ordering::Relaxed);
                let Some(c) = self.conns[id as usize].as_mut() else {
                    break;
                };
                if c.failed.is_some() || c.dirs[d].user || c.dirs[d].shut {
                    continue;
                }
                let dir = &c.dirs[d];
                if !dir.fast && now.saturating_sub(active) > SWEEP_NS * 2 {
                    // Idle: nothing to size, and no syscall for it.
                    c.dirs[d].rate_ns = 0;
                    continue;
                }
                let target = &c.socks[1 - d];
                let Ok(t) = sys::tcp_counters(target) else {
                    continue;
                };
                let dir = &mut c.dirs[d];
                let (prev, since) = (dir.rate_acked, dir.rate_ns);
                dir.rate_acked = t.bytes_acked;
                dir.rate_ns = now;
                if since == 0 || now <= since {
                    continue;
                }
                let rate = (t.bytes_acked.saturating_sub(prev) as u128 * 1_000_000_000
                    / (now - since) as u128) as u64;
                let fast = if dir.fast {
                    rate >= FAST_RATE / 4
                } else {
                    rate >= FAST_RATE
                };
                if fast == dir.fast {
                    continue;
                }
                dir.fast = fast;
                let (sndbuf, budget) = if fast {
                    (FAST_SNDBUF, self.budget.max(FAST_BUDGET))
                } else {
                    (SLOW_SNDBUF, self.budget)
                };
                let _ = sys::force_sndbuf(target, sndbuf);
                self.field_u32(slot, |f| unsafe { addr_of_mut!((*f).budget) })
                    .store(budget, Ordering::Relaxed);
                if !fast {
                    self.brake_rcvbuf(id, d);
                }
                tracing::debug!(
                    "splice slot {slot}: reader drains {} MB/s: send buffer {sndbuf}, budget {budget}",
                    rate / 1_000_000
                );
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        let mut expired = Vec::new();
        let mut passing = Vec::new();
        let mut undelivered = Vec::new();
        let mut waiting = Vec::new();
        for (id, c) in self.conns[..self.high].iter().enumerate() {
            let Some(c) = c else { continue };
            let id = id as u32;
            if let Some((side, deadline)) = c.failed {
                if now > deadline {
                    undelivered.push((id, side));
                }
                continue;
            }
            let mut last = c.user_last_ns;
            for d in 0..2u32 {
                let slot = id * 2 + d;
                let la = self
                    .field(slot, |f| unsafe { addr_of_mut!((*f).last_active_ns) })
                    .load(Ordering::Relaxed);
                last = last.max(la);
                let w = self.word(slot).load(Ordering::Relaxed);
                if w & PASS_BIT != 0 && !c.dirs[d as usize].draining && passing.last() != Some(&id)
                {
                    passing.push(id);
                }
            }
            let half = usize::from(c.dirs.iter().any(|d| d.eof));
            if c.idle_ns[half] > 0 && now.saturating_sub(last) > c.idle_ns[half] {
                expired.push((id, half));
            }
            for d in 0..2 {
                let dir = &c.dirs[d];
                if dir.eof && !dir.shut && dir.eof_ns > 0 {
                    waiting.push((id, d));
                }
            }
        }
        let deliver = super::DELIVER_BEFORE_RESET.as_nanos() as u64;
        let mut stuck = Vec::new();
        for (id, d) in waiting {
            let c = self.conns[id as usize].as_mut().expect("live conn");
            let target = &c.socks[1 - d];
            let queued = sys::outq(target).unwrap_or(0);
            let taken = sys::tcp_counters(target).map_or(0, |t| t.bytes_acked) + queued;
            let dir = &mut c.dirs[d];
            if taken != dir.eof_taken || queued > 0 {
                // Moving, or a reader that does not read: the inactivity
                // timeout is the judge of that one.
                dir.eof_taken = taken;
                dir.eof_ns = now;
            } else if now - dir.eof_ns > deliver {
                stuck.push((id, d));
            }
        }
        for (id, d) in stuck {
            tracing::warn!(
                "splice conn {id}: the other side took none of the bytes received before the FIN for {:?}; resetting the pair",
                super::DELIVER_BEFORE_RESET
            );
            self.close(id, End::Failed(d));
        }
        for id in passing {
            // progress() picks up the PASS bit from the flow word.
            self.progress(id);
        }
        for (id, side) in undelivered {
            tracing::debug!("splice conn {id}: bytes before a reset not delivered in time");
            self.close(id, End::Failed(side));
        }
        for (id, half) in expired {
            tracing::debug!("splice conn {id}: inactivity timeout");
            let Some(c) = self.conns[id as usize].as_ref() else {
                continue;
            };
            if let Some(g) = &c.session {
                g.session.set_term(c.idle_term[half]);
            }
            // A FIN would pass for a complete stream: bytes still on their
            // way are dropped with the pair, so the peers get a reset.
            let end = if self.settled(id) {
                End::Clean
            } else {
                End::Reset
            };
            self.close(id, end);
        }
    }

    /// Every byte either source received reached the other side's send
    /// queue: closing now loses nothing.
    fn settled(&self, id: u32) -> bool {
        (0..2).all(|d| {
            let c = self.conns[id as usize].as_ref().expect("live conn");
            let dir = &c.dirs[d];
            dir.shut || self.passed_on(id, d, dir.eof as u64).unwrap_or(false)
        })
    }

    /// Takes the pair out of the maps and closes it as `end` says.
    fn close(&mut self, id: u32, end: End) {
        let Some(c) = self.conns.get_mut(id as usize).and_then(|c| c.take()) else {
            return;
        };
        // Both sockets close with an RST unless the pair ends cleanly (armed
        // when the session started, so that a crash of lb resets them too).
        match end {
            End::Failed(_) | End::Reset => {
                for s in &c.socks {
                    let _ = sys::set_linger_reset(s);
                }
            }
            End::Clean => {
                for s in &c.socks {
                    let _ = sys::clear_linger(s);
                }
            }
        }
        for side in 0..2 {
            let _ = self.epoll.delete(c.socks[side].as_raw_fd());
        }
        let m = &mut self.maps;
        for k in c.cookies {
            let _ = m.spliced.remove(&k);
            let _ = m.targets.remove(&k);
            let _ = m.ends.remove(&k);
        }
        if let Some(g) = &c.session {
            // What went each way: redirected by the verdict plus forwarded here.
            for (d, total) in [(0u32, &g.session.bytes_in), (1, &g.session.bytes_out)] {
                let f = unsafe { std::ptr::read_volatile(self.flow(id * 2 + d)) };
                total.fetch_add(f.redirected + f.forwarded, Ordering::Relaxed);
            }
            match end {
                End::Failed(0) => g.session.set_term(*b"CD"),
                End::Failed(_) => g.session.set_term(*b"SD"),
                End::Clean | End::Reset => {}
            }
        }
        for d in 0..2 {
            unsafe { std::ptr::write_volatile(self.flow(id * 2 + d), FlowDir::default()) };
        }
        self.state.release_conn(
            c.server,
            crate::state::admin::SessionGuard::server_cookie(c.session.as_ref()),
        );
        drop(c);
        self.free.push(id);
    }
}

/// Slot, side and generation in one epoll token (below `TOKEN_EVENTS`: slots
/// are far fewer than 2^31).
fn token(id: u32, side: usize, gen: u32) -> u64 {
    ((gen as u64) << 32) | ((id as u64) << 1) | side as u64
}

fn untoken(t: u64) -> (u32, usize, u32) {
    (((t as u32) >> 1), (t & 1) as usize, (t >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_below_the_fixed_ones() {
        for (id, side, gen) in [(0, 0, 0), (7, 1, 3), (MAX_FLOWS / 2 - 1, 1, u32::MAX)] {
            let t = token(id, side, gen);
            assert_eq!(untoken(t), (id, side, gen));
            assert!(t < TOKEN_EVENTS);
        }
    }
}
