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

/// `timeout tunnel` replaces `timeout client`/`server` for an established
/// session; once one direction ended, `timeout client-fin` replaces the
/// client side's (HAProxy's stream timeouts in TCP mode).
fn tunnel_and_fin(tag: &str, extra: &[&str]) {
    run_test(|| {
        let topo = Topology::new(tag)?;
        let backend = sa(BACKENDS_V4[0], PORT);
        let probe = ProbeServer::start(topo.srv.name(), &[backend])?;
        let cfg = tcp_config(
            "tun",
            &hp(LB_V4, PORT),
            &[("p1", BACKENDS_V4[0])],
            PORT,
            "",
            "300ms",
        )
        .replace(
            "    default_backend tun_backend\n",
            "    default_backend tun_backend\n    timeout client-fin 500ms\n",
        )
        .replace(
            "    balance roundrobin\n",
            "    balance roundrobin\n    timeout tunnel 1500ms\n",
        );
        let mut lb = topo.start_lb(&cfg, extra)?;
        // Idle both ways: the tunnel timeout, not the 300 ms ones.
        let tunnel = topo.in_client(|| -> anyhow::Result<_> {
            let mut s = connect(sa(LB_V4, PORT))?;
            s.write_all(b"H")?;
            let mut k = [0u8; 1];
            s.read_exact(&mut k)?;
            let idle = Instant::now();
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let n = s.read(&mut [0u8; 16])?;
            anyhow::ensure!(n == 0, "expected EOF, read {n} bytes");
            Ok(idle.elapsed())
        })?;
        let ev = probe.next_event(Duration::from_secs(3))?;
        assert_eq!(ev.outcome, Outcome::Eof, "backend saw {:?}", ev.outcome);
        // Half-closed: the server said BYE and shut its side; the client
        // keeps its own open and idle. client-fin ends it.
        let fin = topo.in_client(|| -> anyhow::Result<_> {
            let mut s = connect(sa(LB_V4, PORT))?;
            s.write_all(b"S")?;
            let mut bye = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.read_to_end(&mut bye)?;
            // `K` (the command taken), then the server's last words.
            anyhow::ensure!(bye == b"KBYE", "read {bye:?}");
            // Held open until the server side saw the end.
            Ok(s)
        })?;
        let ev = probe.next_event(Duration::from_secs(5))?;
        drop(fin);
        let half = ev.at - ev.fin_sent.expect("S sends a FIN");
        println!(
            "[lb-tests] {tag}: idle session closed after {:.2} s (tunnel 1.5 s, client/server 0.3 s); \
             half-closed one after {:.2} s (client-fin 0.5 s)",
            tunnel.as_secs_f64(),
            half.as_secs_f64()
        );
        assert!(
            tunnel >= Duration::from_millis(1400) && tunnel < Duration::from_millis(2500),
            "idle session closed after {tunnel:?}, timeout tunnel is 1.5 s"
        );
        assert!(
            half >= Duration::from_millis(400) && half < Duration::from_millis(1300),
            "half-closed session ended after {half:?}, timeout client-fin is 0.5 s"
        );
        lb.assert_alive()?;
        lb.stop()?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn tunnel_and_fin_timeouts_splice() {
    tunnel_and_fin("tunfin", &[]);
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn tunnel_and_fin_timeouts_no_splice() {
    tunnel_and_fin("tunfinns", &["--no-splice"]);
}

/// `option tcpka` with `clitcpka-idle`/`srvtcpka-idle`/`-intvl`/`-cnt`: both of
/// lb's sockets of a session run the kernel's keepalive timer with those
/// values (read back with `ss -o` in lb's namespace); `backlog` sizes the
/// frontend's accept queue (`ss -l`'s Send-Q).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn keepalive_and_backlog() {
    run_test(|| {
        let topo = Topology::new("tcpka")?;
        let backend = sa(BACKENDS_V4[0], PORT);
        let _probe = ProbeServer::start(topo.srv.name(), &[backend])?;
        let cfg = tcp_config(
            "ka",
            &hp(LB_V4, PORT),
            &[("p1", BACKENDS_V4[0])],
            PORT,
            "",
            "30s",
        )
        .replace(
            "defaults\n",
            "defaults\n    option tcpka\n    clitcpka-idle 1m\n    srvtcpka-idle 90\n    \
             srvtcpka-intvl 5s\n    srvtcpka-cnt 4\n",
        )
        .replace(
            "    default_backend ka_backend\n",
            "    default_backend ka_backend\n    backlog 77\n",
        );
        let mut lb = topo.start_lb(&cfg, &[])?;
        let listening = topo.lb.run("ss", &["-Hltn"])?;
        assert!(
            listening
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("77")),
            "no listener with a backlog of 77:\n{listening}"
        );
        let mut s = topo.in_client(|| connect(sa(LB_V4, PORT)))?;
        s.write_all(b"H")?;
        let mut k = [0u8; 1];
        s.read_exact(&mut k)?;
        let out = topo.lb.run("ss", &["-Htno", "state", "established"])?;
        println!("[lb-tests] tcpka: ss -o in lb's namespace:\n{out}");
        let line = |peer: &str| {
            out.lines()
                .find(|l| l.contains(peer))
                .unwrap_or_else(|| panic!("no socket to {peer} in:\n{out}"))
                .to_string()
        };
        let client_side = line(&format!("{}:", CLIENT_V4));
        let server_side = line(&hp(BACKENDS_V4[0], PORT));
        // ss prints the time left before the first probe, and the probes
        // left (0 before the first one); the values are under the idle
        // times set, and well above the kernel's default of 2 h would not
        // be: both at most 1m/90s.
        let left = |l: &str| -> f64 {
            let t = l
                .split("timer:(keepalive,")
                .nth(1)
                .expect("a keepalive timer");
            let t = t.split(',').next().expect("time");
            if let Some((m, sec)) = t.split_once("min") {
                let sec: f64 = sec.trim_end_matches("sec").parse().unwrap_or(0.0);
                m.parse::<f64>().expect("minutes") * 60.0 + sec
            } else if let Some(sec) = t.strip_suffix("sec") {
                sec.parse().expect("seconds")
            } else {
                panic!("unexpected timer {t}")
            }
        };
        assert!(client_side.contains("timer:(keepalive"), "{client_side}");
        assert!(server_side.contains("timer:(keepalive"), "{server_side}");
        let (c, sv) = (left(&client_side), left(&server_side));
        assert!(
            c > 50.0 && c <= 60.0,
            "client side keepalive in {c} s, idle is 60 s"
        );
        assert!(
            sv > 80.0 && sv <= 90.0,
            "server side keepalive in {sv} s, idle is 90 s"
        );
        drop(s);
        lb.assert_alive()?;
        lb.stop()?;
        Ok(())
    })
}
