//! In-process traffic generators and verifiers (std threads, bounded by
//! socket timeouts).
//!
//! Blast protocol, per connection:
//! client -> server: 32-byte header `MAGIC | c2s_len | s2c_len | seed` (u64
//! LE each), then `c2s_len` bytes of `pattern(seed)`, then FIN (half-close).
//! server -> client: `s2c_len` bytes of `pattern(seed ^ S2C_XOR)`, then FIN,
//! written concurrently with reading the client's payload.
//! Both ends compare every received byte against the deterministic
//! generator (a byte-exact check, stronger than comparing digests; the
//! first mismatching offset is reported).

use crate::netns::{in_netns, spawn_in_netns};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

pub const MAGIC: u64 = 0x6c62_2d62_6c61_7374; // "lb-blast"
pub const S2C_XOR: u64 = 0x9e37_79b9_7f4a_7c15;
pub const HEADER_LEN: usize = 32;
const CHUNK: usize = 64 * 1024;

/// Per-socket IO timeout: a stalled transfer fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- generator

#[inline(always)]
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` with the pattern stream of `seed` starting at byte `offset`.
/// Counter-based, so any chunking of the stream gives the same bytes.
pub fn pattern_fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = splitmix64(seed);
    let mut pos = offset;
    let mut i = 0;
    // Unaligned head.
    while i < buf.len() && !pos.is_multiple_of(8) {
        let word = pattern_word(key, pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        pos += n as u64;
    }
    // Aligned body.
    let mut block = pos / 8;
    let body = &mut buf[i..];
    let mut chunks = body.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&pattern_word(key, block).to_le_bytes());
        block += 1;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let word = pattern_word(key, block).to_le_bytes();
        let n = tail.len();
        tail.copy_from_slice(&word[..n]);
    }
}

#[inline(always)]
fn pattern_word(key: u64, block: u64) -> u64 {
    splitmix64(key ^ block.wrapping_mul(0xd6e8_feb8_6659_fd93))
}

#[allow(dead_code)]
fn pattern_fill_slow(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = splitmix64(seed);
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let block = pos / 8;
        let word = splitmix64(key ^ block.wrapping_mul(0xd6e8_feb8_6659_fd93)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// Checks a received stream against the pattern of `seed`.
pub struct Verifier {
    seed: u64,
    pub received: u64,
    pub first_mismatch: Option<u64>,
    scratch: Vec<u8>,
}

impl Verifier {
    pub fn new(seed: u64) -> Self {
        Verifier {
            seed,
            received: 0,
            first_mismatch: None,
            scratch: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.first_mismatch.is_none() {
            self.scratch.resize(data.len(), 0);
            pattern_fill(self.seed, self.received, &mut self.scratch);
            if self.scratch[..] != *data {
                let i = self
                    .scratch
                    .iter()
                    .zip(data)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.first_mismatch = Some(self.received + i as u64);
            }
        }
        self.received += data.len() as u64;
    }

    /// Ok iff exactly `expected` bytes, all matching.
    pub fn check(&self, expected: u64) -> Result<()> {
        if let Some(off) = self.first_mismatch {
            bail!(
                "data mismatch at offset {off} (received {} of {expected})",
                self.received
            );
        }
        if self.received != expected {
            bail!(
                "length mismatch: received {} bytes, expected {expected}",
                self.received
            );
        }
        Ok(())
    }
}

/// Write `len` bytes of pattern(seed) to `w`.
pub fn write_pattern(mut w: impl Write, seed: u64, len: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(CHUNK);
        pattern_fill(seed, off, &mut buf[..n]);
        w.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(off)
}

/// Read until EOF, verifying against pattern(seed). Stops early (error) after
/// `limit` bytes to bound memory/time on a misbehaving peer.
pub fn read_verify(mut r: impl Read, seed: u64, limit: u64) -> (Verifier, std::io::Result<()>) {
    let mut v = Verifier::new(seed);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (v, Ok(())),
            Ok(n) => {
                v.feed(&buf[..n]);
                if v.received > limit {
                    return (
                        v,
                        Err(std::io::Error::other("peer sent more than expected")),
                    );
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return (v, Err(e)),
        }
    }
}

/// Small deterministic PRNG for test parameters.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }
    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A seed for a test run: from `$LBT_SEED` if set, else time-based; printed
/// so failures can be reproduced.
pub fn run_seed() -> u64 {
    let s = std::env::var("LBT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("[lb-tests] LBT_SEED={s}");
    s
}

// ---------------------------------------------------------------- sockets

/// A listening TCP socket with SO_REUSEADDR, IPV6_V6ONLY for v6, and a
/// large backlog. Must be called in the target namespace.
pub fn listen(addr: SocketAddr) -> Result<TcpListener> {
    // SAFETY: plain socket syscalls on a fresh fd that we own.
    unsafe {
        let domain = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let l = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let p = &one as *const _ as *const libc::c_void;
        let sz = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, p, sz);
        let r = match addr {
            SocketAddr::V4(a) => {
                let mut sin: libc::sockaddr_in = std::mem::zeroed();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                libc::bind(
                    fd,
                    &sin as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sin) as _,
                )
            }
            SocketAddr::V6(a) => {
                libc::setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, p, sz);
                let mut sin6: libc::sockaddr_in6 = std::mem::zeroed();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                libc::bind(
                    fd,
                    &sin6 as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&sin6) as _,
                )
            }
        };
        if r != 0 {
            bail!("bind {addr}: {}", std::io::Error::last_os_error());
        }
        if libc::listen(fd, 4096) != 0 {
            bail!("listen {addr}: {}", std::io::Error::last_os_error());
        }
        Ok(l)
    }
}

/// SO_LINGER {on, 0}: close() then sends RST.
pub fn set_linger_zero(s: &TcpStream) -> Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and option struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("SO_LINGER: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn timeouts(s: &TcpStream, t: Duration) {
    let _ = s.set_read_timeout(Some(t));
    let _ = s.set_write_timeout(Some(t));
}

/// Echo servers on each of `addrs` (in namespace `ns`) that first send the
/// last byte of their own address, so a client knows which one it reached. One stop flag per server, in the order of `addrs`.
pub fn named_echo_servers(ns: &str, addrs: &[SocketAddr]) -> Result<Vec<Arc<AtomicBool>>> {
    let mut stops = Vec::new();
    for &a in addrs {
        let stop = Arc::new(AtomicBool::new(false));
        serve(ns, &[a], stop.clone(), |mut s, _| {
            let id = match s.local_addr() {
                Ok(SocketAddr::V4(a)) => a.ip().octets()[3],
                Ok(SocketAddr::V6(a)) => a.ip().octets()[15],
                Err(_) => 0,
            };
            if s.write_all(&[id]).is_err() {
                return;
            }
            let mut w = match s.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let _ = std::io::copy(&mut s, &mut w);
        })?;
        stops.push(stop);
    }
    Ok(stops)
}

/// Accept loop on `addrs` in namespace `ns`, one detached handler thread per
/// connection, until `stop` is set. Returns once all listeners are bound.
pub fn serve<H>(ns: &str, addrs: &[SocketAddr], stop: Arc<AtomicBool>, handler: H) -> Result<()>
where
    H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    for &addr in addrs {
        let l =
            in_netns(ns, || listen(addr)).with_context(|| format!("listen on {addr} in {ns}"))?;
        let stop = stop.clone();
        let handler = handler.clone();
        spawn_in_netns(ns, move || {
            let fd = l.as_raw_fd();
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, 100) };
                if r <= 0 {
                    continue;
                }
                match l.accept() {
                    Ok((s, peer)) => {
                        let h = handler.clone();
                        let _ = std::thread::Builder::new()
                            .stack_size(256 * 1024)
                            .spawn(move || h(s, peer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- blast server

/// What the server saw on one blast connection.
#[derive(Debug, Clone)]
pub struct ServerConn {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub seed: u64,
    pub c2s_expected: u64,
    pub c2s_received: u64,
    pub s2c_expected: u64,
    pub s2c_sent: u64,
    /// From accept to the end of both directions.
    pub elapsed: Duration,
    /// None = all good.
    pub error: Option<String>,
}

/// The backend side of the blast protocol.
pub struct BlastServer {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<ServerConn>>>,
    pub addrs: Vec<SocketAddr>,
}

impl BlastServer {
    /// Listen on every address in `addrs` inside namespace `ns`.
    /// Connections that close before sending a byte (health checks) are
    /// ignored.
    pub fn start(ns: &str, addrs: &[SocketAddr]) -> Result<BlastServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c2 = conns.clone();
        serve(ns, addrs, stop.clone(), move |s, peer| {
            if let Some(rec) = blast_serve_conn(s, peer) {
                c2.lock().unwrap().push(rec);
            }
        })?;
        Ok(BlastServer {
            stop,
            conns,
            addrs: addrs.to_vec(),
        })
    }

    /// Snapshot of finished connections.
    pub fn conns(&self) -> Vec<ServerConn> {
        self.conns.lock().unwrap().clone()
    }

    /// Wait until `n` connections have finished (bounded by `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<ServerConn>> {
        let start = Instant::now();
        loop {
            let c = self.conns();
            if c.len() >= n {
                return Ok(c);
            }
            if start.elapsed() > timeout {
                bail!(
                    "backend saw only {} of {n} blast connections finish within {timeout:?}",
                    c.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BlastServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn blast_serve_conn(s: TcpStream, peer: SocketAddr) -> Option<ServerConn> {
    let start = Instant::now();
    timeouts(&s, IO_TIMEOUT);
    let local = s.local_addr().ok();
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match (&s).read(&mut hdr[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                if got == 0 {
                    return None;
                }
                return Some(bad(peer, local, format!("reading header: {e}")));
            }
        }
    }
    if got == 0 {
        return None; // health check or probe
    }
    if got < HEADER_LEN {
        return Some(bad(peer, local, format!("short header: {got} bytes")));
    }
    let w = |i: usize| u64::from_le_bytes(hdr[i * 8..i * 8 + 8].try_into().unwrap());
    if w(0) != MAGIC {
        return Some(bad(peer, local, format!("bad magic {:#x}", w(0))));
    }
    let (c2s, s2c, seed) = (w(1), w(2), w(3));
    let (sent, wres, v, rres) = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let r = write_pattern(&s, seed ^ S2C_XOR, s2c);
            let _ = s.shutdown(Shutdown::Write);
            r
        });
        let (v, rres) = read_verify(&s, seed, c2s);
        let wres = writer.join().unwrap();
        (
            wres.as_ref().map(|n| *n).unwrap_or(0),
            wres.map(|_| ()),
            v,
            rres,
        )
    });
    let mut errs = Vec::new();
    if let Err(e) = rres {
        errs.push(format!("read: {e}"));
    }
    if let Err(e) = v.check(c2s) {
        errs.push(format!("c2s: {e:#}"));
    }
    if let Err(e) = wres {
        errs.push(format!("write: {e}"));
    }
    Some(ServerConn {
        peer,
        local,
        seed,
        c2s_expected: c2s,
        c2s_received: v.received,
        s2c_expected: s2c,
        s2c_sent: sent,
        elapsed: start.elapsed(),
        error: if errs.is_empty() {
            None
        } else {
            Some(errs.join("; "))
        },
    })
}

fn bad(peer: SocketAddr, local: Option<SocketAddr>, e: String) -> ServerConn {
    ServerConn {
        peer,
        local,
        seed: 0,
        c2s_expected: 0,
        c2s_received: 0,
        s2c_expected: 0,
        s2c_sent: 0,
        elapsed: Duration::ZERO,
        error: Some(e),
    }
}

// ---------------------------------------------------------------- blast client

/// One client connection of the blast protocol.
#[derive(Debug, Clone, Copy)]
pub struct BlastSpec {
    pub c2s: u64,
    pub s2c: u64,
    pub seed: u64,
}

/// How the client ends its side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientMode {
    /// Write everything, shutdown(WR), read the server's payload to EOF.
    Full,
    /// Write header+payload right after connect, then shutdown(WR) and
    /// read to EOF (expects s2c == 0 normally).
    EarlyShutdown,
    /// Write header+payload right after connect, then close() at once
    /// (the server must still receive everything).
    EarlyClose,
}

#[derive(Debug, Clone)]
pub struct ClientResult {
    pub spec: BlastSpec,
    pub mode: ClientMode,
    pub s2c_received: u64,
    pub elapsed: Duration,
    pub error: Option<String>,
}

fn header(spec: &BlastSpec) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    for (i, v) in [MAGIC, spec.c2s, spec.s2c, spec.seed].iter().enumerate() {
        h[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// Connect (in the current thread's namespace) with a timeout.
pub fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, Duration::from_secs(10))
}

/// A TCP connect from a chosen source address (`src`, an address of the
/// calling thread's namespace) to `dst`, within `timeout`.
pub fn connect_from(src: &str, dst: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let src: std::net::IpAddr = src.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{src}: {e}"))
    })?;
    let s = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.connect_timeout(&dst.into(), timeout)?;
    Ok(s.into())
}

/// Run one blast client connection on an already-connected stream.
pub fn blast_client_on(s: TcpStream, spec: BlastSpec, mode: ClientMode) -> ClientResult {
    let start = Instant::now();
    timeouts(&s, IO_TIMEOUT);
    let _ = s.set_nodelay(true);
    let mut errs = Vec::new();
    let mut received = 0;
    match mode {
        ClientMode::Full => {
            let (wres, v, rres) = std::thread::scope(|sc| {
                let writer = sc.spawn(|| {
                    let r = (&s)
                        .write_all(&header(&spec))
                        .and_then(|_| write_pattern(&s, spec.seed, spec.c2s));
                    let _ = s.shutdown(Shutdown::Write);
                    r
                });
                let (v, rres) = read_verify(&s, spec.seed ^ S2C_XOR, spec.s2c);
                (writer.join().unwrap(), v, rres)
            });
            if let Err(e) = wres {
                errs.push(format!("write: {e}"));
            }
            if let Err(e) = rres {
                errs.push(format!("read: {e}"));
            }
            if let Err(e) = v.check(spec.s2c) {
                errs.push(format!("s2c: {e:#}"));
            }
            received = v.received;
        }
        ClientMode::EarlyShutdown | ClientMode::EarlyClose => {
            // One write call for header + payload (as early as possible).
            let mut buf = header(&spec).to_vec();
            let start_len = buf.len();
            buf.resize(start_len + spec.c2s as usize, 0);
            pattern_fill(spec.seed, 0, &mut buf[start_len..]);
            if let Err(e) = (&s).write_all(&buf) {
                errs.push(format!("write: {e}"));
            }
            if mode == ClientMode::EarlyShutdown {
                let _ = s.shutdown(Shutdown::Write);
                let (v, rres) = read_verify(&s, spec.seed ^ S2C_XOR, spec.s2c);
                if let Err(e) = rres {
                    errs.push(format!("read: {e}"));
                }
                if let Err(e) = v.check(spec.s2c) {
                    errs.push(format!("s2c: {e:#}"));
                }
                received = v.received;
            }
            drop(s);
        }
    }
    ClientResult {
        spec,
        mode,
        s2c_received: received,
        elapsed: start.elapsed(),
        error: if errs.is_empty() {
            None
        } else {
            Some(errs.join("; "))
        },
    }
}

/// Run all `specs` concurrently (one thread each) from namespace `ns`
/// against `addr`. All connections are established first, then a barrier
/// releases the transfers at once. Each mode is taken round-robin from
/// `modes`.
pub fn run_blast(
    ns: &str,
    addr: SocketAddr,
    specs: &[BlastSpec],
    modes: &[ClientMode],
) -> Vec<ClientResult> {
    let barrier = Arc::new(Barrier::new(specs.len()));
    in_netns(ns, || {
        std::thread::scope(|sc| {
            let handles: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let barrier = barrier.clone();
                    let mode = modes[i % modes.len()];
                    std::thread::Builder::new()
                        .stack_size(256 * 1024)
                        .spawn_scoped(sc, move || {
                            let conn = connect(addr);
                            barrier.wait();
                            match conn {
                                Ok(s) => blast_client_on(s, *spec, mode),
                                Err(e) => ClientResult {
                                    spec: *spec,
                                    mode,
                                    s2c_received: 0,
                                    elapsed: Duration::ZERO,
                                    error: Some(format!("connect {addr}: {e}")),
                                },
                            }
                        })
                        .expect("spawn client thread")
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("client thread panicked"))
                .collect()
        })
    })
}

/// `n` specs with random sizes: mostly small, some medium, a few large (up
/// to `max` bytes each way), the total capped at `total_cap` bytes. Always
/// includes a 0/0, a 0/max and a max/0 case when n >= 3.
pub fn random_specs(rng: &mut Rng, n: usize, max: u64, total_cap: u64) -> Vec<BlastSpec> {
    let mut total = 0u64;
    let size = |rng: &mut Rng, total: &mut u64| -> u64 {
        let r = rng.range(0, 99);
        let s = if r < 70 {
            rng.range(0, 64 * 1024)
        } else if r < 90 {
            rng.range(64 * 1024, (1 << 20).min(max))
        } else {
            rng.range((1 << 20).min(max), max)
        };
        let s = if *total + s > total_cap {
            rng.range(0, 4096)
        } else {
            s
        };
        *total += s;
        s
    };
    let mut v: Vec<BlastSpec> = (0..n)
        .map(|_| {
            let c2s = size(rng, &mut total);
            let s2c = size(rng, &mut total);
            BlastSpec {
                c2s,
                s2c,
                seed: rng.next_u64(),
            }
        })
        .collect();
    if n >= 3 {
        v[0].c2s = 0;
        v[0].s2c = 0;
        v[1].c2s = 0;
        v[1].s2c = max;
        v[2].c2s = max;
        v[2].s2c = 0;
    }
    v
}

/// Check client and server results of a blast run against each other;
/// errors list every failed connection (first 20). Every connection must
/// also have completed, on both ends, within `max_time` (a FIN that lb
/// forwards only when an idle timeout fires is a failure even though the
/// bytes arrive). Prints a summary.
pub fn check_blast(
    label: &str,
    specs: &[BlastSpec],
    clients: &[ClientResult],
    server: &BlastServer,
    max_time: Duration,
) -> Result<()> {
    let mut errors = Vec::new();
    for c in clients {
        if c.error.is_none() && c.elapsed > max_time {
            errors.push(format!(
                "client seed {:#x} ({} up / {} down, mode {:?}): took {:.2?} > {max_time:?}",
                c.spec.seed, c.spec.c2s, c.spec.s2c, c.mode, c.elapsed
            ));
        }
        if let Some(e) = &c.error {
            errors.push(format!(
                "client seed {:#x} ({} up / {} down): {e}",
                c.spec.seed, c.spec.c2s, c.spec.s2c
            ));
        }
    }
    let conns = server
        .wait_for(specs.len(), Duration::from_secs(30))
        .unwrap_or_else(|e| {
            errors.push(format!("{e:#}"));
            server.conns()
        });
    for c in &conns {
        if let Some(e) = &c.error {
            errors.push(format!(
                "server conn from {} seed {:#x}: {e}",
                c.peer, c.seed
            ));
        } else if c.elapsed > max_time {
            errors.push(format!(
                "server conn from {} seed {:#x} ({} up / {} down): took {:.2?} > {max_time:?}",
                c.peer, c.seed, c.c2s_expected, c.s2c_expected, c.elapsed
            ));
        }
    }
    let mut seen: Vec<u64> = conns.iter().map(|c| c.seed).collect();
    seen.sort_unstable();
    for s in specs {
        if seen.binary_search(&s.seed).is_err() {
            errors.push(format!("server never saw connection seed {:#x}", s.seed));
        }
    }
    let up: u64 = specs.iter().map(|s| s.c2s).sum();
    let down: u64 = specs.iter().map(|s| s.s2c).sum();
    let secs = clients
        .iter()
        .map(|c| c.elapsed)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let mut per_backend = std::collections::BTreeMap::new();
    for c in &conns {
        if let Some(l) = c.local {
            *per_backend.entry(l.ip().to_string()).or_insert(0u32) += 1;
        }
    }
    let srv_secs = conns
        .iter()
        .map(|c| c.elapsed)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    println!(
        "[lb-tests] {label}: {} connections, {:.1} MiB up, {:.1} MiB down, slowest {:.2} s \
         (client) / {:.2} s (server), per backend {:?}, {} errors",
        specs.len(),
        up as f64 / (1 << 20) as f64,
        down as f64 / (1 << 20) as f64,
        secs,
        srv_secs,
        per_backend,
        errors.len()
    );
    if !errors.is_empty() {
        let n = errors.len();
        let n_srv = errors.iter().filter(|e| e.starts_with("server")).count();
        // Show some of each kind.
        errors.sort_by_key(|e| !e.starts_with("server"));
        let mut shown: Vec<String> = errors
            .iter()
            .filter(|e| e.starts_with("server"))
            .take(10)
            .cloned()
            .collect();
        shown.extend(
            errors
                .iter()
                .filter(|e| !e.starts_with("server"))
                .take(10)
                .cloned(),
        );
        bail!(
            "{label}: {n} failures ({n_srv} seen by the backend, {} by clients or missing), some:\n{}",
            n - n_srv,
            shown.join("\n")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- RST probes

/// What a probe server connection ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Eof,
    Reset,
    Other(String),
}

#[derive(Debug, Clone)]
pub struct ProbeEvent {
    pub peer: SocketAddr,
    /// How the client's direction ended (or Reset for `R`).
    pub outcome: Outcome,
    /// When the server saw that end (or sent its RST, for `R`).
    pub at: Instant,
    /// When the server sent its FIN (half-close commands).
    pub fin_sent: Option<Instant>,
    /// Bytes received from the client after the command byte.
    pub data: Vec<u8>,
}

/// Read until EOF/error, collecting at most 64 KiB.
fn read_to_end_outcome(s: &TcpStream) -> (Outcome, Vec<u8>, Instant) {
    let mut buf = [0u8; 4096];
    let mut data = Vec::new();
    let outcome = loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break Outcome::Eof,
            Ok(n) => {
                if data.len() < 65536 {
                    data.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break Outcome::Reset,
            Err(e) => break Outcome::Other(e.to_string()),
        }
    };
    (outcome, data, Instant::now())
}

/// Backend for the RST and half-close tests. Protocol: the client sends one
/// byte (`F` and `S`: see [`ProbeServer::half_close`]):
/// `H` (hold): server answers `K`, then reads until EOF/error and reports how
/// the connection ended; `R` (reset): server answers `K`, waits 200 ms,
/// then closes with SO_LINGER 0 (RST) and reports the time it did so.
pub struct ProbeServer {
    stop: Arc<AtomicBool>,
    events: Mutex<mpsc::Receiver<ProbeEvent>>,
}

impl ProbeServer {
    pub fn start(ns: &str, addrs: &[SocketAddr]) -> Result<ProbeServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        serve(ns, addrs, stop.clone(), move |s, peer| {
            timeouts(&s, Duration::from_secs(10));
            let mut cmd = [0u8; 1];
            match (&s).read(&mut cmd) {
                Ok(1) => {}
                _ => return, // health check
            }
            if (&s).write_all(b"K").is_err() {
                return;
            }
            let ev = match cmd[0] {
                b'R' => {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = set_linger_zero(&s);
                    drop(s);
                    ProbeEvent {
                        peer,
                        outcome: Outcome::Reset,
                        at: Instant::now(),
                        fin_sent: None,
                        data: Vec::new(),
                    }
                }
                b'F' => {
                    // Client closes its direction first; then we answer and FIN.
                    let (outcome, data, at) = read_to_end_outcome(&s);
                    let _ = (&s).write_all(b"BYE");
                    let _ = s.shutdown(Shutdown::Write);
                    let fin_sent = Some(Instant::now());
                    // Keep the socket until the client is done (bounded by timeouts).
                    let mut b = [0u8; 16];
                    let _ = (&s).read(&mut b);
                    ProbeEvent {
                        peer,
                        outcome,
                        at,
                        fin_sent,
                        data,
                    }
                }
                b'S' => {
                    // We close our direction first, then read the client's.
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = (&s).write_all(b"BYE");
                    let _ = s.shutdown(Shutdown::Write);
                    let fin_sent = Some(Instant::now());
                    let (outcome, data, at) = read_to_end_outcome(&s);
                    ProbeEvent {
                        peer,
                        outcome,
                        at,
                        fin_sent,
                        data,
                    }
                }
                _ => {
                    let (outcome, data, at) = read_to_end_outcome(&s);
                    ProbeEvent {
                        peer,
                        outcome,
                        at,
                        fin_sent: None,
                        data,
                    }
                }
            };
            let _ = tx.lock().unwrap().send(ev);
        })?;
        Ok(ProbeServer {
            stop,
            events: Mutex::new(rx),
        })
    }

    /// Half-close in both orders, one connection. `server_first == false`:
    /// the client sends "HELLO" + FIN, the backend must see the data and EOF;
    /// it then answers "BYE" + FIN and the client must see both.
    /// `server_first == true`: the backend sends "BYE" + FIN first, the
    /// client must see it, then sends "HELLO" + FIN which the backend must
    /// see. Returns the FIN forwarding delays (client->backend,
    /// backend->client); errors if either end saw something else, or if a
    /// FIN took more than 5 s.
    pub fn half_close(
        &self,
        client_ns: &str,
        addr: SocketAddr,
        server_first: bool,
    ) -> Result<(Duration, Duration)> {
        self.drain();
        let (client_fin, client_eof, reply) =
            in_netns(client_ns, || -> Result<(Instant, Instant, Vec<u8>)> {
                let mut s = connect(addr).with_context(|| format!("connect {addr}"))?;
                timeouts(&s, Duration::from_secs(5));
                s.write_all(if server_first { b"S" } else { b"F" })?;
                let mut k = [0u8; 1];
                s.read_exact(&mut k)
                    .context("waiting for the backend's K")?;
                let mut fin = Instant::now();
                if !server_first {
                    s.write_all(b"HELLO")?;
                    s.shutdown(Shutdown::Write)?;
                    fin = Instant::now();
                }
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).with_context(|| {
                    format!("client waiting for the backend's data + FIN (got {reply:?})")
                })?;
                let eof = Instant::now();
                if server_first {
                    s.write_all(b"HELLO")?;
                    s.shutdown(Shutdown::Write)?;
                    fin = Instant::now();
                    // Hold the socket until the backend has seen our FIN.
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok((fin, eof, reply))
            })?;
        let ev = self.next_event(Duration::from_secs(10))?;
        anyhow::ensure!(
            reply == b"BYE",
            "client received {reply:?}, expected \"BYE\""
        );
        anyhow::ensure!(
            ev.data == b"HELLO",
            "backend received {:?}, expected \"HELLO\"",
            ev.data
        );
        anyhow::ensure!(
            ev.outcome == Outcome::Eof,
            "backend saw {:?}, expected EOF",
            ev.outcome
        );
        let srv_fin = ev.fin_sent.ok_or_else(|| anyhow!("backend sent no FIN"))?;
        let c2s = ev.at.saturating_duration_since(client_fin);
        let s2c = client_eof.saturating_duration_since(srv_fin);
        Ok((c2s, s2c))
    }

    /// Forget events left over from an earlier, failed probe.
    fn drain(&self) {
        while self.events.lock().unwrap().try_recv().is_ok() {}
    }

    pub fn next_event(&self, timeout: Duration) -> Result<ProbeEvent> {
        self.events
            .lock()
            .unwrap()
            .recv_timeout(timeout)
            .map_err(|_| anyhow!("backend reported nothing within {timeout:?}"))
    }

    /// Client (in `client_ns`) connects to `addr`, exchanges H/K, then
    /// closes with SO_LINGER 0. Returns how and how fast the backend saw
    /// the connection end (from the client's close).
    pub fn client_reset(&self, client_ns: &str, addr: SocketAddr) -> Result<(Outcome, Duration)> {
        self.drain();
        let t0 = in_netns(client_ns, || -> Result<Instant> {
            let mut s = connect(addr).with_context(|| format!("connect {addr}"))?;
            timeouts(&s, Duration::from_secs(5));
            s.write_all(b"H")?;
            let mut k = [0u8; 1];
            s.read_exact(&mut k)
                .context("waiting for the backend's K")?;
            set_linger_zero(&s)?;
            drop(s);
            Ok(Instant::now())
        })?;
        let ev = self.next_event(Duration::from_secs(5))?;
        Ok((ev.outcome, ev.at.saturating_duration_since(t0)))
    }

    /// Client connects, sends R, reads K, then blocks reading; the backend
    /// resets. Returns the error kind the client saw and the delay after the
    /// backend's RST. Err if the client saw no reset/EOF within 5 s.
    pub fn backend_reset(
        &self,
        client_ns: &str,
        addr: SocketAddr,
    ) -> Result<(Result<(), ErrorKind>, Duration)> {
        self.drain();
        let (res, t1) = in_netns(client_ns, || -> Result<(Result<(), ErrorKind>, Instant)> {
            let mut s = connect(addr).with_context(|| format!("connect {addr}"))?;
            timeouts(&s, Duration::from_secs(5));
            s.write_all(b"R")?;
            let mut k = [0u8; 1];
            s.read_exact(&mut k)
                .context("waiting for the backend's K")?;
            let mut buf = [0u8; 16];
            let r = match s.read(&mut buf) {
                Ok(0) => Ok(()),
                Ok(n) => bail!("unexpected {n} bytes after K"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    bail!("client saw neither reset nor EOF within 5 s")
                }
                Err(e) => Err(e.kind()),
            };
            Ok((r, Instant::now()))
        })?;
        let ev = self.next_event(Duration::from_secs(5))?;
        Ok((res, t1.saturating_duration_since(ev.at)))
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Backends that answer each connection with their name, then echo.
pub struct NameServers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl NameServers {
    pub fn start(ns: &str, addrs: &[(SocketAddr, &str)]) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &(addr, name) in addrs {
            let l = in_netns(ns, || listen(addr))?;
            l.set_nonblocking(true)?;
            let stop = stop.clone();
            let name = name.to_string();
            threads.push(std::thread::spawn(move || {
                // Bounded: the test stops it, or it ends after 5 minutes.
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let name = name.clone();
                            std::thread::spawn(move || {
                                let _ = s.set_nonblocking(false);
                                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                                    return;
                                }
                                let mut buf = [0u8; 4096];
                                while let Ok(n) = s.read(&mut buf) {
                                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        Ok(Self { stop, threads })
    }
}

impl Drop for NameServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_pattern_equals_slow() {
        for off in 0..17u64 {
            for len in [0usize, 1, 7, 8, 9, 100] {
                let mut a = vec![0u8; len];
                let mut b = vec![0u8; len];
                pattern_fill(42, off, &mut a);
                pattern_fill_slow(42, off, &mut b);
                assert_eq!(a, b, "off {off} len {len}");
            }
        }
    }

    #[test]
    fn pattern_is_chunking_independent() {
        let mut whole = vec![0u8; 1000];
        pattern_fill(7, 0, &mut whole);
        let mut v = Verifier::new(7);
        for c in whole.chunks(13) {
            v.feed(c);
        }
        v.check(1000).unwrap();
        let mut part = vec![0u8; 100];
        pattern_fill(7, 333, &mut part);
        assert_eq!(&part[..], &whole[333..433]);
        let mut bad = whole.clone();
        bad[500] ^= 1;
        let mut v = Verifier::new(7);
        v.feed(&bad);
        assert_eq!(v.first_mismatch, Some(500));
        assert!(v.check(1000).is_err());
    }

    #[test]
    fn specs_respect_caps() {
        let mut rng = Rng::new(1);
        let s = random_specs(&mut rng, 200, 8 << 20, 1 << 30);
        assert_eq!(s.len(), 200);
        assert!(s.iter().all(|x| x.c2s <= 8 << 20 && x.s2c <= 8 << 20));
        let total: u64 = s.iter().map(|x| x.c2s + x.s2c).sum();
        assert!(total <= (1 << 30) + (16 << 20) + 2 * 200 * 4096);
    }
}
