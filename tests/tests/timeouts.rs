//! Inactivity timeouts (`timeout client` / `timeout server`), on the kernel path
//! and the userspace path: traffic keeps a connection open past the timeout, and
//! an idle one is closed on both sides once it expires.

use lb_tests::traffic::{connect, Outcome, ProbeServer};
use lb_tests::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const PORT: u16 = 9300;

fn idle_timeout(tag: &str, extra: &[&str]) {
    run_test(|| {
        let topo = Topology::new(tag)?;
        let backend = sa(BACKENDS_V4[0], PORT);
        let probe = ProbeServer::start(topo.srv.name(), &[backend])?;
        let cfg = tcp_config(
            "idle",
            &hp(LB_V4, PORT),
            &[("p1", BACKENDS_V4[0])],
            PORT,
            "",
            "1s",
        );
        let mut lb = topo.start_lb(&cfg, extra)?;
        let (kept, closed_after) = topo.in_client(|| -> anyhow::Result<_> {
            let mut s = connect(sa(LB_V4, PORT))?;
            s.write_all(b"H")?;
            let mut k = [0u8; 1];
            s.read_exact(&mut k)?;
            anyhow::ensure!(&k == b"K", "unexpected reply {k:?}");
            // Active for 3.2 s, three times the timeout.
            let start = Instant::now();
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(400));
                s.write_all(b"x")?;
            }
            let kept = start.elapsed();
            // Now idle: lb must close the client side by itself.
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let idle = Instant::now();
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf)?;
            anyhow::ensure!(n == 0, "expected EOF, read {n} bytes");
            Ok((kept, idle.elapsed()))
        })?;
        println!(
            "[lb-tests] {tag}: active connection kept {:.1} s; idle one closed after {:.2} s (timeout 1 s)",
            kept.as_secs_f64(),
            closed_after.as_secs_f64()
        );
        assert!(
            closed_after >= Duration::from_millis(900)
                && closed_after < Duration::from_millis(2000),
            "closed after {closed_after:?}, timeout is 1 s"
        );
        // The server side is closed too, after receiving every byte.
        let ev = probe.next_event(Duration::from_secs(3))?;
        assert_eq!(ev.outcome, Outcome::Eof, "backend saw {:?}", ev.outcome);
        assert_eq!(ev.data, b"xxxxxxxx");
        lb.assert_alive()?;
        lb.stop()?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn idle_timeout_splice() {
    idle_timeout("idle", &[]);
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn idle_timeout_no_splice() {
    idle_timeout("idlens", &["--no-splice"]);
}

/// `timeout connect` bounds each server connect attempt: a server address nobody
/// answers for (no host behind it, ARP never resolves) makes lb give up after the
/// initial attempt and `retries 1` more (a timeout retries at once), then close
/// the client, on both data paths.
fn connect_timeout(tag: &str, extra: &[&str]) {
    run_test(|| {
        let topo = Topology::new(tag)?;
        let cfg = "\
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 1
frontend fe
    bind 10.210.1.1:9400
    default_backend be
backend be
    server ghost 10.210.2.99:9400
";
        let mut lb = topo.start_lb(cfg, extra)?;
        let closed_after = topo.in_client(|| -> anyhow::Result<_> {
            let mut s = connect(sa(LB_V4, 9400))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let t = Instant::now();
            let mut buf = [0u8; 16];
            // EOF or a reset: either way the client is not left hanging.
            let r = s.read(&mut buf);
            anyhow::ensure!(
                matches!(r, Ok(0)) || r.is_err(),
                "expected the connection to close, got {r:?}"
            );
            Ok(t.elapsed())
        })?;
        println!(
            "[lb-tests] {tag}: client closed {:.2} s after connecting (timeout connect 1 s, retries 1)",
            closed_after.as_secs_f64()
        );
        // The first attempt times out after 1 s; the retry either times out too
        // (2 s) or fails at once when the neighbour entry has gone FAILED.
        assert!(
            closed_after >= Duration::from_millis(900)
                && closed_after < Duration::from_millis(3500),
            "closed after {closed_after:?}"
        );
        lb.assert_alive()?;
        lb.stop()?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_timeout_splice() {
    connect_timeout("ctmo", &[]);
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_timeout_no_splice() {
    connect_timeout("ctmons", &["--no-splice"]);
}
