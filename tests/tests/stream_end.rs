//! How a proxied stream ends when lb ends it, and streams that must not
//! stall. A FIN tells a peer that it received the whole stream, so lb may only
//! send one when nothing is left inside it: an inactivity timeout or a stop
//! that finds bytes still on their way (a backend that stopped reading) must
//! reset both sides, while an idle pair with nothing queued closes cleanly.
//! With a small in-flight budget (`tune.lb.splice-budget`) the two directions
//! must not wait on each other (pipelined requests, replies bigger than the
//! budget), and with a budget of one byte every segment goes through userspace
//! and back to the kernel path without a byte lost or reordered. Both data
//! paths.

use lb_tests::traffic::{
    check_blast, connect, pattern_fill, run_blast, write_pattern, Verifier, S2C_XOR,
};
use lb_tests::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const SEED: u64 = 0x7374_7265_616d_656e;
/// The inactivity timeout of case 1 (`timeout client` and `timeout server`).
const IDLE: Duration = Duration::from_secs(2);
/// How long after the timeout (or the stop) the ends may take to arrive.
const SLACK: Duration = Duration::from_secs(3);
/// The stalled writer gives up (and the test fails) past these: lb should
/// have stopped taking bytes long before.
const STALL_MAX_BYTES: u64 = 64 << 20;
const STALL_MAX_TIME: Duration = Duration::from_secs(5);
/// A write side that stays unwritable this long is stalled.
const STALL_QUIET: Duration = Duration::from_millis(500);
/// The backend's receive buffer in the stall cases: its window closes after a
/// few KiB, so nearly everything the client writes stays inside lb.
const SMALL_RCVBUF: usize = 4096;

fn config(port: u16, timeout: &str, budget: Option<&str>) -> String {
    let budget = budget
        .map(|b| format!("    tune.lb.splice-budget {b}\n"))
        .unwrap_or_default();
    format!(
        "global\n    maxconn 4096\n{budget}\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client {timeout}\n    timeout server {timeout}\n\
         frontend fe\n    bind {}\n    default_backend be\n\
         backend be\n    server s1 {}\n",
        hp(LB_V4, port),
        hp(BACKENDS_V4[0], port)
    )
}

/// The splice runs must run on the kernel path: lb falls back to the
/// userspace copy for everything (and still starts) when its start-up
/// self-test through the verdict fails.
fn require_kernel_path(lb: &Lb, extra: &[&str]) -> anyhow::Result<()> {
    if !extra.is_empty() {
        return Ok(());
    }
    let log = std::fs::read_to_string(lb.log_path())?;
    if !log.contains("splice self-test passed") {
        let line = log
            .lines()
            .find(|l| l.contains("self-test"))
            .unwrap_or("no self-test line in the log");
        anyhow::bail!(
            "the kernel path is off, so this splice run would test the copy path: {line}"
        );
    }
    Ok(())
}

/// A listener in the server namespace that hands every accepted connection
/// to the test, which then plays the backend by hand.
struct Backend {
    rx: mpsc::Receiver<TcpStream>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// `rcvbuf`: SO_RCVBUF set on the listener before `listen`, so that the
    /// window the accepted sockets announce (and its scale) follows it.
    fn start(topo: &Topology, addr: SocketAddr, rcvbuf: Option<usize>) -> anyhow::Result<Self> {
        use socket2::{Domain, Socket, Type};
        let l = topo.in_srv(|| -> anyhow::Result<std::net::TcpListener> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            if let Some(n) = rcvbuf {
                s.set_recv_buffer_size(n)?;
            }
            s.bind(&addr.into())?;
            s.listen(128)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        if tx.send(s).is_err() {
                            return;
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Backend { rx, stop })
    }

    fn next(&self) -> anyhow::Result<TcpStream> {
        self.rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("the backend accepted no connection within 5 s"))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How a reader's stream ended.
#[derive(Debug, PartialEq)]
enum End {
    Eof,
    Reset,
    /// Nothing within the read timeout.
    Silent,
    Other(String),
}

/// Reads until the stream ends (or stays silent for `timeout`), checking
/// every byte against the pattern of `seed`: (bytes, end, time to the end).
fn read_end(s: &mut TcpStream, seed: u64, timeout: Duration) -> (Verifier, End, Duration) {
    let t = Instant::now();
    let _ = s.set_read_timeout(Some(timeout));
    let mut v = Verifier::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => v.feed(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break End::Silent
            }
            Err(e) => break End::Other(e.to_string()),
        }
    };
    (v, end, t.elapsed())
}

fn writable_within(s: &TcpStream, t: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, t.as_millis() as libc::c_int) };
    r > 0 && pfd.revents & libc::POLLOUT != 0
}

/// A client whose writes lb stopped taking.
struct Stalled {
    s: TcpStream,
    written: u64,
    last_write: Instant,
}

/// Connects and writes the pattern without blocking until the socket stays
/// unwritable for [`STALL_QUIET`]: the backend reads nothing, so the bytes
/// fill its window, then lb's buffers, then the client's send buffer.
fn stall(addr: SocketAddr) -> anyhow::Result<Stalled> {
    let s = connect(addr)?;
    s.set_nonblocking(true)?;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    let mut last_write = start;
    loop {
        anyhow::ensure!(
            written < STALL_MAX_BYTES && start.elapsed() < STALL_MAX_TIME,
            "lb kept taking bytes toward a backend that reads nothing: {written} in {:?}",
            start.elapsed()
        );
        pattern_fill(SEED, written, &mut buf);
        match (&s).write(&buf) {
            Ok(n) => {
                written += n as u64;
                last_write = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !writable_within(&s, STALL_QUIET) {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => anyhow::bail!("writing toward the stalled backend: {e}"),
        }
    }
    s.set_nonblocking(false)?;
    Ok(Stalled {
        s,
        written,
        last_write,
    })
}

/// An idle pair with nothing queued: the client sent 10 bytes that the
/// backend read. Returns (client, backend).
fn idle_pair(
    topo: &Topology,
    backend: &Backend,
    port: u16,
) -> anyhow::Result<(TcpStream, TcpStream)> {
    let mut c = topo.in_client(|| connect(sa(LB_V4, port)))?;
    let mut msg = [0u8; 10];
    pattern_fill(SEED, 0, &mut msg);
    c.write_all(&msg)?;
    let mut b = backend.next()?;
    b.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = [0u8; 10];
    b.read_exact(&mut got)?;
    anyhow::ensure!(
        got == msg,
        "the backend read {got:?}, not the client's 10 bytes"
    );
    Ok((c, b))
}

/// What one side of a pair saw when lb ended it.
struct Seen {
    what: &'static str,
    end: End,
    after: Duration,
    bytes: u64,
    mismatch: Option<u64>,
    /// After an EOF, the socket's pending error a moment later: a reset that
    /// followed the FIN (reads keep returning 0 once a FIN arrived, so only
    /// SO_ERROR shows it).
    then: Option<String>,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {:?} after {:.2} s ({} bytes read{}{})",
            self.what,
            self.end,
            self.after.as_secs_f64(),
            self.bytes,
            self.mismatch
                .map(|o| format!(", mismatch at {o}"))
                .unwrap_or_default(),
            self.then
                .as_ref()
                .map(|t| format!("; SO_ERROR 200 ms later: {t}"))
                .unwrap_or_default()
        )
    }
}

/// `what` reads `s` to its end; `since` is when the countdown started (the
/// last activity, or the stop).
fn watch(what: &'static str, s: &mut TcpStream, seed: u64, since: Instant, wait: Duration) -> Seen {
    let (v, end, _) = read_end(s, seed, wait);
    let after = since.elapsed();
    let then = (end == End::Eof).then(|| {
        std::thread::sleep(Duration::from_millis(200));
        match s.take_error() {
            Ok(Some(e)) => format!("{:?}", e.kind()),
            Ok(None) => "none".to_string(),
            Err(e) => format!("unreadable ({e})"),
        }
    });
    Seen {
        what,
        end,
        after,
        bytes: v.received,
        mismatch: v.first_mismatch,
        then,
    }
}

/// The stalled and the idle pair both end by the inactivity timeout (`stop`
/// false) or by a SIGTERM to lb; returns what every side saw, for the caller
/// to judge.
fn end_pairs(
    topo: &Topology,
    lb: &Lb,
    port: u16,
    stop: bool,
    tag: &str,
) -> anyhow::Result<(Vec<Seen>, Stalled)> {
    let backend = Backend::start(topo, sa(BACKENDS_V4[0], port), Some(SMALL_RCVBUF))?;
    let (mut idle_c, mut idle_b) = idle_pair(topo, &backend, port)?;
    let idle_since = Instant::now();
    let stalled = topo.in_client(|| stall(sa(LB_V4, port)))?;
    let mut stall_b = backend.next()?;
    println!(
        "[lb-tests] {tag}: the client wrote {:.1} MiB before lb stopped taking bytes ({:.2} s after its last write)",
        stalled.written as f64 / (1 << 20) as f64,
        stalled.last_write.elapsed().as_secs_f64()
    );
    let (t0_idle, t0_stall) = if stop {
        let now = Instant::now();
        util::signal(lb.pid(), libc::SIGTERM);
        (now, now)
    } else {
        (idle_since, stalled.last_write)
    };
    // Generous reads, so that a late end is measured rather than cut short.
    let wait = IDLE + SLACK + Duration::from_secs(3);
    let mut stall_c = stalled.s.try_clone()?;
    let seen = std::thread::scope(|sc| {
        let a = sc.spawn(|| watch("idle client", &mut idle_c, 0, t0_idle, wait));
        let b = sc.spawn(|| watch("stalled client", &mut stall_c, 0, t0_stall, wait));
        // The idle backend's stream continues after the 10 bytes it read.
        let c = sc.spawn(|| {
            let mut s = watch("idle backend", &mut idle_b, 0, t0_idle, wait);
            s.mismatch = None;
            s
        });
        let a = a.join().expect("idle client");
        let b = b.join().expect("stalled client");
        let c = c.join().expect("idle backend");
        // The stalled backend reads what it can only now, after the client
        // saw its end: whatever reached it, then the end lb gave it.
        let d = watch("stalled backend", &mut stall_b, SEED, t0_stall, wait);
        vec![a, b, c, d]
    });
    Ok((seen, stalled))
}

/// Checks what the four sides saw: the stalled pair reset on both sides, the
/// idle pair closed cleanly, all within `bound` of the countdown's start and
/// not before `min` (`min_stalled` for the stalled pair).
fn judge(
    tag: &str,
    seen: &[Seen],
    stalled: &Stalled,
    (min, min_stalled): (Duration, Duration),
    bound: Duration,
) -> Vec<String> {
    let mut bad = Vec::new();
    for s in seen {
        println!("[lb-tests] {tag}: {s}");
        let (want, min) = if s.what.starts_with("stalled") {
            (End::Reset, min_stalled)
        } else {
            (End::Eof, min)
        };
        if s.end != want {
            bad.push(format!("{tag}: {s}; expected {want:?}"));
        } else if s.after > bound || s.after < min {
            bad.push(format!(
                "{tag}: {s}; expected between {:.1} s and {:.1} s",
                min.as_secs_f64(),
                bound.as_secs_f64()
            ));
        }
        if s.what == "stalled backend" && (s.mismatch.is_some() || s.bytes > stalled.written) {
            bad.push(format!(
                "{tag}: {s}; not a prefix of the {} bytes the client wrote",
                stalled.written
            ));
        }
        if s.what == "stalled client" && s.bytes > 0 {
            bad.push(format!("{tag}: {s}; the backend sent nothing"));
        }
    }
    bad
}

/// Case 1: `timeout client/server 2s`. The stalled pair must end with an RST
/// on both sides within timeout + 3 s of the client's last write; the idle
/// one with nothing queued with a FIN on both sides.
fn idle_timeout_ends(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let mut lb = topo.start_lb(&config(port, "2s", None), extra)?;
    require_kernel_path(&lb, extra)?;
    let (seen, stalled) = end_pairs(&topo, &lb, port, false, tag)?;
    // The end must be the timeout's, so not before it. The idle pair's last
    // activity is known to within a millisecond; the stalled pair's was lb's
    // last byte taken, a little before the client's last write, which only
    // filled the client's own send buffer.
    let min = (IDLE - Duration::from_millis(100), IDLE / 2);
    let bad = judge(tag, &seen, &stalled, min, IDLE + SLACK);
    lb.assert_alive()?;
    lb.stop()?;
    anyhow::ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// Case 2: SIGTERM to lb (timeouts 30 s, far away): the stalled pair is
/// reset on both sides, the idle one closed with FINs.
fn stop_ends(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let lb = topo.start_lb(&config(port, "30s", None), extra)?;
    require_kernel_path(&lb, extra)?;
    let (seen, stalled) = end_pairs(&topo, &lb, port, true, tag)?;
    let bad = judge(
        tag,
        &seen,
        &stalled,
        (Duration::ZERO, Duration::ZERO),
        SLACK,
    );
    // Reaps the daemon (already exiting on SIGTERM) and checks its status.
    lb.stop()?;
    anyhow::ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

const REQ: u64 = 1 << 20;
const REPLY: u64 = 4 << 20;
const REQUESTS: u64 = 8;

/// Case 3: a backend that reads a whole 1 MiB request, then writes its 4 MiB
/// reply before it reads the next; the client pipelines 8 requests. With a
/// 64 KiB budget the client->server direction is over budget (and passed to
/// userspace) while the replies flow the other way: neither may wait on the
/// other.
fn pipelined(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    const BOUND: Duration = Duration::from_secs(60);
    let topo = Topology::new(tag)?;
    let backend = Backend::start(&topo, sa(BACKENDS_V4[0], port), None)?;
    let mut lb = topo.start_lb(&config(port, "30s", Some("64k")), extra)?;
    require_kernel_path(&lb, extra)?;
    let mut c = topo.in_client(|| connect(sa(LB_V4, port)))?;
    let mut b = backend.next()?;
    let start = Instant::now();
    let (server, writer, reader) = std::thread::scope(|sc| {
        let server = sc.spawn(move || -> anyhow::Result<Duration> {
            b.set_read_timeout(Some(BOUND))?;
            b.set_write_timeout(Some(BOUND))?;
            let mut v = Verifier::new(SEED);
            let mut buf = vec![0u8; 64 * 1024];
            for i in 0..REQUESTS {
                while v.received < (i + 1) * REQ {
                    let want = ((i + 1) * REQ - v.received).min(buf.len() as u64) as usize;
                    let n = b.read(&mut buf[..want])?;
                    anyhow::ensure!(
                        n > 0,
                        "backend: EOF in request {i} after {} bytes",
                        v.received
                    );
                    v.feed(&buf[..n]);
                }
                v.check((i + 1) * REQ)
                    .map_err(|e| anyhow::anyhow!("backend, request {i}: {e:#}"))?;
                // The reply continues one stream of REQUESTS x REPLY bytes.
                let mut off = i * REPLY;
                while off < (i + 1) * REPLY {
                    pattern_fill(SEED ^ S2C_XOR, off, &mut buf);
                    b.write_all(&buf)?;
                    off += buf.len() as u64;
                }
            }
            let n = b.read(&mut buf)?;
            anyhow::ensure!(n == 0, "backend: {n} bytes after the last request");
            b.shutdown(Shutdown::Write)?;
            Ok(start.elapsed())
        });
        let cw = c.try_clone().expect("clone");
        let writer = sc.spawn(move || -> anyhow::Result<Duration> {
            cw.set_write_timeout(Some(BOUND))?;
            write_pattern(&cw, SEED, REQUESTS * REQ)?;
            cw.shutdown(Shutdown::Write)?;
            Ok(start.elapsed())
        });
        let (v, end, took) = read_end(&mut c, SEED ^ S2C_XOR, BOUND);
        let reader = (|| -> anyhow::Result<Duration> {
            anyhow::ensure!(
                end == End::Eof,
                "client: {end:?} after {} bytes",
                v.received
            );
            v.check(REQUESTS * REPLY)
                .map_err(|e| anyhow::anyhow!("client: {e:#}"))?;
            Ok(took)
        })();
        (
            server.join().expect("backend thread"),
            writer.join().expect("writer thread"),
            reader,
        )
    });
    let shown = |r: &anyhow::Result<Duration>| match r {
        Ok(d) => format!("{:.2} s", d.as_secs_f64()),
        Err(e) => format!("{e:#}"),
    };
    println!(
        "[lb-tests] {tag}: {REQUESTS} x 1 MiB requests, {REQUESTS} x 4 MiB replies: client wrote all in {}, \
         read all in {}, backend done in {}",
        shown(&writer),
        shown(&reader),
        shown(&server)
    );
    if extra.is_empty() {
        println!("[lb-tests] {tag}: lb show stats: {}", lb.show_stats()?);
    }
    let total = reader?;
    writer?;
    server?;
    anyhow::ensure!(total < BOUND, "took {total:?}");
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

/// Case 4: `tune.lb.splice-budget 1` (the smallest size the parser takes):
/// every segment on the kernel path goes over budget, is passed to
/// userspace and forwarded before the direction goes back to the kernel.
/// 20 connections with 4 MiB each way and half-close, byte-exact.
fn small_budget(tag: &str, port: u16, budget: &str, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let server = BlastServer::start(topo.srv.name(), &[sa(BACKENDS_V4[0], port)])?;
    let mut lb = topo.start_lb(&config(port, "30s", Some(budget)), extra)?;
    // Judged at the end: the transfers are byte-exact or not either way.
    let kernel = require_kernel_path(&lb, extra);
    let splice = extra.is_empty();
    let stats = |lb: &Lb| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&lb.show_stats()?)?)
    };
    let stat = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or(0);
    // The start-up self-test already went through the verdict with this
    // budget: only what the transfers add counts.
    let before = if splice {
        stats(&lb)?
    } else {
        serde_json::Value::Null
    };
    let mut rng = Rng::new(SEED);
    let specs: Vec<BlastSpec> = (0..20)
        .map(|_| BlastSpec {
            c2s: 4 << 20,
            s2c: 4 << 20,
            seed: rng.next_u64(),
        })
        .collect();
    let clients = run_blast(
        topo.client.name(),
        sa(LB_V4, port),
        &specs,
        &[ClientMode::Full],
    );
    let exact = check_blast(
        &format!("{tag} 20 x 4 MiB each way, budget {budget}"),
        &specs,
        &clients,
        &server,
        Duration::from_secs(60),
    );
    if splice {
        let after = stats(&lb)?;
        println!("[lb-tests] {tag}: lb show stats: {after}");
        // The counters tell how the bytes went, also (above all) when they
        // did not all arrive.
        exact?;
        let d = |k: &str| stat(&after, k).saturating_sub(stat(&before, k));
        let (hits, pass, redirect) = (d("budget_hit"), d("verdict_pass"), d("verdict_redirect"));
        println!(
            "[lb-tests] {tag}: during the transfers: budget_hit {hits}, verdict_pass {pass}, verdict_redirect {redirect}"
        );
        let mut bad: Vec<String> = kernel.err().map(|e| format!("{e:#}")).into_iter().collect();
        if hits == 0 {
            bad.push(format!(
                "the budget of {budget} never applied (budget_hit 0)"
            ));
        }
        if pass == 0 {
            bad.push("no segment was passed to userspace (verdict_pass 0)".into());
        }
        anyhow::ensure!(bad.is_empty(), "{}", bad.join("\n"));
    } else {
        exact?;
    }
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

/// Case 5: the client leaves (its FIN after a last request); the server
/// answers that request and then resets, as PostgreSQL does over TLS (its
/// `close_notify` meets a closed socket). Both sockets of lb end reset: the
/// client's because it had closed when the answer came, the server's by its
/// own RST. Nothing is left to deliver to anyone, so the session must end at
/// once, not at the inactivity timeout (30 s here). Run after 300 ms of
/// traffic, past the promotion to the kernel path.
fn answer_after_client_left(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    const ENDED_WITHIN: Duration = Duration::from_secs(2);
    let topo = Topology::new(tag)?;
    let backend = Backend::start(&topo, sa(BACKENDS_V4[0], port), None)?;
    let mut lb = topo.start_lb(&config(port, "30s", None), extra)?;
    require_kernel_path(&lb, extra)?;
    for round in 0..3 {
        let mut c = topo.in_client(|| connect(sa(LB_V4, port)))?;
        c.write_all(b"hello")?;
        let mut b = backend.next()?;
        b.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut k = [0u8; 5];
        b.read_exact(&mut k)?;
        b.write_all(b"HELLO")?;
        c.read_exact(&mut k)?;
        std::thread::sleep(Duration::from_millis(300));
        c.write_all(b"bye")?;
        drop(c);
        let mut rest = Vec::new();
        b.read_to_end(&mut rest)?;
        anyhow::ensure!(rest == b"bye", "round {round}: the backend got {rest:?}");
        // TLS's close_notify, then the close with it unread on the far side.
        b.write_all(&[0x15; 24])?;
        lb_tests::traffic::set_linger_zero(&b)?;
        drop(b);
        let t = Instant::now();
        let took = lb_tests::util::wait_until(
            "the session to end",
            ENDED_WITHIN,
            Duration::from_millis(20),
            || Ok(lb.server("s1")?.cur_conns == 0),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "round {round}: {e} (still open after {:?}); log tail:\n{}",
                t.elapsed(),
                lb.log_tail(20)
            )
        })?;
        println!("[lb-tests] {tag} round {round}: session ended {took:?} after the server's reset");
    }
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn idle_timeout_ends_splice() {
    run_test(|| idle_timeout_ends("sidle", 9501, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn idle_timeout_ends_no_splice() {
    run_test(|| idle_timeout_ends("sidlens", 9502, &["--no-splice"]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn stop_ends_splice() {
    run_test(|| stop_ends("sstop", 9503, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn stop_ends_no_splice() {
    run_test(|| stop_ends("sstopns", 9504, &["--no-splice"]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pipelined_small_budget_splice() {
    run_test(|| pipelined("spipe", 9505, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pipelined_small_budget_no_splice() {
    run_test(|| pipelined("spipens", 9506, &["--no-splice"]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn budget_one_byte_exact_splice() {
    run_test(|| small_budget("sbud1", 9507, "1", &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn budget_one_byte_exact_no_splice() {
    run_test(|| small_budget("sbud1ns", 9508, "1", &["--no-splice"]));
}

/// The same with 64 KiB, the smallest budget under which lb's start-up
/// self-test (64 KiB each way through the verdict, before the splice manager
/// runs) keeps the kernel path on: the PASS/redirect flips still happen on
/// the kernel path while a budget of 1 turns it off.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn budget_64k_byte_exact_splice() {
    run_test(|| small_budget("sbud64", 9509, "64k", &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn answer_after_client_left_splice() {
    run_test(|| answer_after_client_left("sleft", 9511, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn answer_after_client_left_no_splice() {
    run_test(|| answer_after_client_left("sleftns", 9512, &["--no-splice"]));
}
