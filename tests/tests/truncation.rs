//! A cut stream never looks complete. When lb dies (SIGKILL) every proxied
//! connection is reset, so no client takes a truncated download for a whole
//! one and no uploader writes into a dead socket; bytes a peer sent before it
//! reset its connection reach the other end before the reset does. Both data
//! paths.

use lb_tests::traffic::{connect, pattern_fill, set_linger_zero, Verifier};
use lb_tests::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const SEED: u64 = 0x7472_756e_6361_7465;
/// The size of the reply the backend resets after (issue: "100,011 bytes").
const BEFORE_RESET: u64 = 100_011;

fn outq(s: &TcpStream) -> i32 {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCOUTQ on a valid socket into an int.
    unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut v) };
    v
}

/// Until every byte written to `s` was acknowledged (bounded).
fn wait_acked(s: &TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while outq(s) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn write_pattern(s: &mut TcpStream, len: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern_fill(SEED, off, &mut buf[..n]);
        s.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// How a reader's stream ended.
#[derive(Debug, PartialEq)]
enum End {
    Eof,
    Reset,
    Other(String),
}

/// Reads everything, checking the pattern; returns the byte count and the end.
fn read_all(s: &mut TcpStream) -> (u64, End, Verifier) {
    let mut v = Verifier::new(SEED);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(k) => {
                v.feed(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
            Err(e) => break End::Other(e.to_string()),
        }
    };
    (n, end, v)
}

/// Backend. The client's first byte says what to do:
/// `D` stream the pattern until the connection fails; `U` read until it
/// ends; `R` send [`BEFORE_RESET`] bytes, wait until they were acknowledged,
/// then reset; `C` read until the end and report it on `seen`.
fn backend(topo: &Topology, addr: SocketAddr, stop: Arc<AtomicBool>) -> mpsc::Receiver<(u64, End)> {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    lb_tests::traffic::serve(topo.srv.name(), &[addr], stop, move |mut s, _| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
        let mut cmd = [0u8; 1];
        if s.read_exact(&mut cmd).is_err() {
            return;
        }
        match cmd[0] {
            b'D' => {
                let _ = write_pattern(&mut s, 1 << 40);
            }
            b'U' => {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
            b'R' if write_pattern(&mut s, BEFORE_RESET).is_ok() => {
                wait_acked(&s);
                let _ = set_linger_zero(&s);
            }
            b'C' => {
                let (n, end, v) = read_all(&mut s);
                let end = match v.check(n) {
                    Ok(()) => end,
                    Err(e) => End::Other(format!("{e:#}")),
                };
                let _ = tx.lock().unwrap().send((n, end));
            }
            _ => {}
        }
    })
    .expect("backend");
    rx
}

fn config(port: u16) -> String {
    format!(
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind {}\n    default_backend be\n\
         backend be\n    server s1 {}\n",
        hp(LB_V4, port),
        hp(BACKENDS_V4[0], port)
    )
}

/// 10 clients downloading and 10 uploading when lb is SIGKILLed: every one
/// sees its connection fail within 3 s (a reset, never a clean end of
/// stream, never a write that hangs).
fn crash_resets_every_session(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let stop = Arc::new(AtomicBool::new(false));
    let _seen = backend(&topo, sa(BACKENDS_V4[0], port), stop.clone());
    let lb = topo.start_lb(&config(port), extra)?;
    let instance = lb.instance().to_string();
    let moved: Arc<Vec<AtomicU64>> = Arc::new((0..20).map(|_| AtomicU64::new(0)).collect());
    let killed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut threads = Vec::new();
    for i in 0..20usize {
        let (moved, killed_at) = (moved.clone(), killed_at.clone());
        let ns = topo.client.name().to_string();
        threads.push(lb_tests::spawn_in_netns(
            &ns,
            move || -> anyhow::Result<String> {
                let mut s = connect(sa(LB_V4, port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                let download = i < 10;
                s.write_all(if download { b"D" } else { b"U" })?;
                let mut buf = vec![0u8; 64 * 1024];
                let failure = loop {
                    let r = if download {
                        s.read(&mut buf)
                    } else {
                        s.write(&buf[..16 * 1024])
                    };
                    match r {
                        Ok(0) => break "a clean end of stream".to_string(),
                        Ok(n) => {
                            moved[i].fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => break format!("{:?}", e.kind()),
                    }
                };
                let at = killed_at
                    .lock()
                    .unwrap()
                    .ok_or_else(|| anyhow::anyhow!("client {i}: {failure} before lb was killed"))?;
                let took = at.elapsed();
                anyhow::ensure!(
                    took < Duration::from_secs(3),
                    "client {i}: {failure} only {took:?} after the kill"
                );
                Ok(failure)
            },
        ));
    }
    util::wait_until(
        "every client moving data",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok(moved.iter().all(|m| m.load(Ordering::Relaxed) > 1 << 20)),
    )?;
    *killed_at.lock().unwrap() = Some(Instant::now());
    lb.kill()?;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut errors = Vec::new();
    for (i, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(Ok(f)) => {
                let kind = if i < 10 { "download" } else { "upload" };
                *outcomes.entry(format!("{kind}: {f}")).or_default() += 1;
                if i < 10 && f != "ConnectionReset" {
                    errors.push(format!("download client {i} ended with {f}, not a reset"));
                }
                if i >= 10 && !["ConnectionReset", "BrokenPipe"].contains(&f.as_str()) {
                    errors.push(format!("upload client {i} ended with {f}"));
                }
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push(format!("client {i} panicked")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    // A crash leaves the pinned maps and the socket file (for the next daemon
    // of the instance); this test has none.
    let _ = std::fs::remove_dir_all(std::path::Path::new("/sys/fs/bpf/lb").join(&instance));
    let _ = std::fs::remove_file(format!("/run/lb/{instance}.sock"));
    println!("[lb-tests] {tag}: after SIGKILL: {outcomes:?}");
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn crash_resets_every_session_splice() {
    run_test(|| crash_resets_every_session("crashsp", 9801, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn crash_resets_every_session_no_splice() {
    run_test(|| crash_resets_every_session("crashcp", 9802, &["--no-splice"]));
}

/// The backend sends 100,011 bytes, then resets; the client must get every
/// byte, then the reset. And the other way: a client's bytes before its
/// reset reach the backend, then the reset. 25 rounds each, both data paths.
fn bytes_before_a_reset_are_delivered(tag: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
    const ROUNDS: usize = 25;
    let topo = Topology::new(tag)?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = backend(&topo, sa(BACKENDS_V4[0], port), stop.clone());
    let lb = topo.start_lb(&config(port), extra)?;
    let addr = sa(LB_V4, port);
    let mut bad = Vec::new();
    for round in 0..ROUNDS {
        let (n, end, check) = topo.in_client(|| -> anyhow::Result<_> {
            let mut s = connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"R")?;
            let (n, end, v) = read_all(&mut s);
            Ok((n, end, v.check(n)))
        })?;
        if n != BEFORE_RESET || end != End::Reset || check.is_err() {
            bad.push(format!(
                "server reset, round {round}: client got {n} bytes then {end:?} ({check:?})"
            ));
        }
        topo.in_client(|| -> anyhow::Result<()> {
            let mut s = connect(addr)?;
            s.write_all(b"C")?;
            write_pattern(&mut s, BEFORE_RESET)?;
            wait_acked(&s);
            set_linger_zero(&s)?;
            Ok(())
        })?;
        match seen.recv_timeout(Duration::from_secs(10)) {
            Ok((n, End::Reset)) if n == BEFORE_RESET => {}
            Ok((n, end)) => bad.push(format!(
                "client reset, round {round}: backend got {n} bytes then {end:?}"
            )),
            Err(_) => bad.push(format!("client reset, round {round}: backend saw no end")),
        }
    }
    let stats = lb.show_servers()?;
    stop.store(true, Ordering::Relaxed);
    println!(
        "[lb-tests] {tag}: {ROUNDS} rounds each way, {} bad; server row {:?}",
        bad.len(),
        stats.first().map(|s| (s.total_conns, s.bytes_out))
    );
    anyhow::ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn bytes_before_a_reset_are_delivered_splice() {
    run_test(|| bytes_before_a_reset_are_delivered("rstsp", 9803, &[]));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn bytes_before_a_reset_are_delivered_no_splice() {
    run_test(|| bytes_before_a_reset_are_delivered("rstcp", 9804, &["--no-splice"]));
}

/// A client that resets while its pair moves from the userspace copy to the
/// kernel path, after bytes queued that no verdict saw yet: a reset socket
/// stays in the SOCKHASH until it is closed (6.18's `tcp_bpf` has no unhash
/// hook), so the kick still runs the verdict over its queue and the bytes
/// reach the server before the reset. lb runs with a test-only pause before
/// the insertion (the tail queues in it) and another before the kick (the
/// reset lands in it).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn a_reset_during_the_hand_over_loses_nothing() {
    run_test(|| {
        const ROUNDS: usize = 8;
        const LEN: u64 = 100_000;
        let topo = Topology::new("rsthand")?;
        let port = 9805;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = backend(&topo, sa(BACKENDS_V4[0], port), stop.clone());
        std::env::set_var("LB_TEST_KICK_DELAY_MS", "150");
        let lb = topo.start_lb(&config(port), &[]);
        std::env::remove_var("LB_TEST_KICK_DELAY_MS");
        let lb = lb?;
        let addr = sa(LB_V4, port);
        let mut bad = Vec::new();
        for round in 0..ROUNDS {
            topo.in_client(|| -> anyhow::Result<()> {
                // 64 KiB: the copy moves them and hands the pair over; the
                // manager pauses 150 ms before it inserts the pair and again
                // before it kicks the queue. The tail lands in the first
                // pause (queued, acknowledged, read by no one), the reset in
                // the second.
                let mut buf = vec![0u8; LEN as usize];
                pattern_fill(SEED, 0, &mut buf);
                let mut s = connect(addr)?;
                s.write_all(b"C")?;
                s.write_all(&buf[..65_535])?;
                wait_acked(&s);
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(&buf[65_535..])?;
                wait_acked(&s);
                std::thread::sleep(Duration::from_millis(170));
                set_linger_zero(&s)?;
                Ok(())
            })?;
            match seen.recv_timeout(Duration::from_secs(15)) {
                Ok((n, End::Reset)) if n == LEN => {}
                Ok((n, end)) => {
                    bad.push(format!("round {round}: backend got {n} bytes then {end:?}"))
                }
                Err(_) => bad.push(format!("round {round}: backend saw no end")),
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let st: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
        let n = |k: &str| st[k].as_u64().unwrap_or(0);
        stop.store(true, Ordering::Relaxed);
        println!(
            "[lb-tests] hand-over resets: {ROUNDS} rounds, {} bad; spliced {} copied {} refused {}",
            bad.len(),
            n("conn_spliced"),
            n("conn_copied"),
            n("conn_refused"),
        );
        anyhow::ensure!(bad.is_empty(), "{}", bad.join("\n"));
        // Every pair went to the kernel path (the self-test pair is not
        // counted): the bytes did not stay on the copy.
        anyhow::ensure!(
            n("conn_spliced") == ROUNDS as u64 && n("conn_copied") == 0,
            "the pairs did not move to the kernel path"
        );
        Ok(())
    });
}
