//! `use_backend NAME if|unless COND` on layer-4 facts, end to end: the rule
//! that holds first picks the backend (by destination port, by client
//! address, through a PROXY header's addresses), otherwise the default.
//! Each server answers with the last byte of its address, so the client
//! sees which backend it reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lb_tests::report::run_test;
use lb_tests::*;

/// Which server answered (the last byte of its address), and that the
/// connection then echoes.
fn reached(mut s: TcpStream, prefix: &[u8]) -> Result<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(prefix)?;
    let mut id = [0u8; 1];
    s.read_exact(&mut id)?;
    s.write_all(b"ping")?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back)?;
    ensure!(&back == b"ping", "echo came back as {back:?}");
    Ok(id[0])
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn use_backend_routes_by_l4_acls() {
    run_test(|| {
        let topo = Topology::new("route")?;
        topo.client
            .ip(&["addr", "add", "10.210.1.3/24", "dev", "eth0"])?;
        let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, 9700)).collect();
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {lb}:9700\n    bind {lb}:9701\n    bind {lb}:9702 accept-proxy\n\
             \x20   acl second_port dst_port 9701\n\
             \x20   use_backend two if second_port\n\
             \x20   use_backend three if {{ src 10.210.1.3 192.0.2.0/24 }}\n\
             \x20   default_backend one\n\
             backend one\n    server s1 {b1}:9700\n\
             backend two\n    server s2 {b2}:9700\n\
             backend three\n    server s3 {b3}:9700\n",
            lb = LB_V4,
            b1 = BACKENDS_V4[0],
            b2 = BACKENDS_V4[1],
            b3 = BACKENDS_V4[2],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let got = topo.in_client(|| -> Result<Vec<u8>> {
            let mut got = Vec::new();
            for (src, port, proxy) in [
                (CLIENT_V4, 9700, ""),
                (CLIENT_V4, 9701, ""),
                ("10.210.1.3", 9700, ""),
                // The second rule holds before the source is looked at.
                ("10.210.1.3", 9701, ""),
                // Rules see the PROXY header's addresses, not the socket's.
                (
                    CLIENT_V4,
                    9702,
                    "PROXY TCP4 192.0.2.7 10.210.1.1 5555 9702\r\n",
                ),
                (
                    "10.210.1.3",
                    9702,
                    "PROXY TCP4 198.51.100.1 10.210.1.1 5555 9701\r\n",
                ),
            ] {
                let s =
                    lb_tests::traffic::connect_from(src, sa(LB_V4, port), Duration::from_secs(3))
                        .with_context(|| format!("{src} -> :{port}"))?;
                got.push(
                    reached(s, proxy.as_bytes()).with_context(|| format!("{src} -> :{port}"))?,
                );
            }
            Ok(got)
        })?;
        println!("[lb-tests] route: servers reached {got:?}");
        ensure!(
            got == [11, 12, 13, 12, 13, 12],
            "use_backend picked servers {got:?}, expected [11, 12, 13, 12, 13, 12]"
        );
        // Sessions count against the backend the rule chose.
        let servers = lb.show_servers()?;
        for (name, want) in [("s1", 1), ("s2", 3), ("s3", 2)] {
            let row = servers
                .iter()
                .find(|r| r.name == name)
                .with_context(|| format!("no {name} in {servers:?}"))?;
            ensure!(
                row.total_conns == want,
                "{name}: {} sessions, expected {want}",
                row.total_conns
            );
        }
        lb.stop()?;
        Ok(())
    })
}

/// `reached` for a connection whose first bytes decided its backend: the
/// server's id, then `msg` echoed back whole (the bytes lb peeked reached
/// the server once, in order), then a ping.
fn reached_with(mut s: TcpStream, msg: &[&[u8]], gap: Duration) -> Result<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    for (i, part) in msg.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        s.write_all(part)?;
    }
    let mut id = [0u8; 1];
    s.read_exact(&mut id)?;
    let sent: Vec<u8> = msg.concat();
    let mut back = vec![0u8; sent.len()];
    s.read_exact(&mut back)?;
    ensure!(
        back == sent,
        "the server echoed {back:?}, the client sent {sent:?}"
    );
    s.write_all(b"ping")?;
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong)?;
    ensure!(&pong == b"ping", "echo came back as {pong:?}");
    Ok(id[0])
}

/// The client sends `msg`; lb must close the connection with a FIN and
/// nothing from any server.
fn rejected(mut s: TcpStream, msg: &[u8]) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg)?;
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    ensure!(
        r.is_ok() && got.is_empty(),
        "expected a clean close with nothing read, got {r:?} after {got:?}"
    );
    Ok(())
}

/// A self-signed certificate and key for `cn` in `dir`: (cert, key).
fn cert(dir: &std::path::Path, cn: &str) -> Result<(String, String)> {
    let (c, k) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .output()
        .context("openssl req (is openssl installed?)")?;
    ensure!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((c.display().to_string(), k.display().to_string()))
}

/// `tcp-request content` end to end: payload rules that reject, accept and
/// wait (a request in two segments, a client that stays silent until the
/// inspect-delay ends), `use_backend` on the payload, a backend's own rules
/// once it is chosen, and TLS passthrough
/// routed by SNI with real TLS clients and servers (openssl s_client and
/// s_server, each server with its own certificate).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn tcp_request_content_routes_by_payload_and_sni() {
    run_test(|| {
        const DELAY: Duration = Duration::from_millis(1500);
        let topo = Topology::new("content")?;
        let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, 9710)).collect();
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        // Two TLS servers: the certificate a client sees names the server.
        let dir = topo.dir.path();
        let mut tls_servers = Vec::new();
        for (b, cn) in [(BACKENDS_V4[0], "lb-test-a"), (BACKENDS_V4[1], "lb-test-b")] {
            let (c, k) = cert(dir, cn)?;
            let log = std::fs::File::create(dir.join(format!("{cn}.log")))?;
            let child = topo
                .srv
                .cmd("openssl")
                .args([
                    "s_server",
                    "-accept",
                    &format!("{b}:9711"),
                    "-cert",
                    &c,
                    "-key",
                    &k,
                ])
                .args(["-naccept", "20", "-quiet"])
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("openssl s_server")?;
            tls_servers.push(lb_tests::util::KillOnDrop(child));
        }
        for b in &BACKENDS_V4[..2] {
            lb_tests::util::wait_listening(&topo.srv, &[sa(b, 9711)], Duration::from_secs(5))?;
        }
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {lb}:9710\n    tcp-request inspect-delay {delay}ms\n\
             \x20   tcp-request content reject if {{ req.payload(0,4) -m str QUIT }}\n\
             \x20   tcp-request content accept if {{ req.len ge 4 }}\n\
             \x20   use_backend two if {{ req.payload(0,4) -m str PONG }}\n\
             \x20   use_backend three if {{ req.payload(0,2) -m str -i ab }}\n\
             \x20   default_backend one\n\
             frontend tls\n    bind {lb}:9711\n    tcp-request inspect-delay {delay}ms\n\
             \x20   tcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
             \x20   tcp-request content reject\n\
             \x20   use_backend tls_b if {{ req.ssl_sni -i b.example.com }}\n\
             \x20   use_backend tls_a if {{ req.ssl_sni -m end .a.example.com }}\n\
             backend one\n    server s1 {b1}:9710\n\
             backend two\n    server s2 {b2}:9710\n\
             backend three\n    tcp-request inspect-delay 1s\n\
             \x20   tcp-request content reject if {{ req.payload(2,2) -m str XX }}\n\
             \x20   server s3 {b3}:9710\n\
             backend tls_a\n    server ta {b1}:9711\n\
             backend tls_b\n    server tb {b2}:9711\n",
            lb = LB_V4,
            delay = DELAY.as_millis(),
            b1 = BACKENDS_V4[0],
            b2 = BACKENDS_V4[1],
            b3 = BACKENDS_V4[2],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let to = sa(LB_V4, 9710);
        let c = |s: &str| {
            lb_tests::traffic::connect_from(CLIENT_V4, to, Duration::from_secs(3))
                .context(s.to_string())
        };
        let short = Duration::from_millis(300);
        topo.in_client(|| -> Result<()> {
            let cases: [(&str, &[&[u8]], u8); 4] = [
                ("PONG", &[b"PONG"], 12),
                ("HELO", &[b"HELO"], 11),
                ("aB.. (-i)", &[b"aBcd"], 13),
                // The rules wait for the second segment.
                ("PO + NG", &[b"PO", b"NG"], 12),
            ];
            for (what, msg, want) in cases {
                let got = reached_with(c(what)?, msg, short).context(what)?;
                ensure!(got == want, "{what}: reached server {got}, expected {want}");
            }
            rejected(c("QUIT")?, b"QUIT").context("QUIT")?;
            // The backend's own rules, once `ab` chose it.
            rejected(c("abXX")?, b"abXX").context("abXX")?;
            // Two bytes and silence: nothing decides until the delay ends,
            // then the default backend takes it.
            let t = std::time::Instant::now();
            let got = reached_with(c("PO")?, &[b"PO"], short).context("PO")?;
            let took = t.elapsed();
            ensure!(
                got == 11,
                "a silent 'PO': reached server {got}, expected 11"
            );
            ensure!(
                took >= DELAY - Duration::from_millis(100),
                "a silent 'PO' was routed after {took:?}, before the inspect-delay ({DELAY:?})"
            );
            println!(
                "[lb-tests] content: payload routes right; a silent client routed after {took:?}"
            );
            // Not TLS on the TLS frontend: rejected at once.
            let s = lb_tests::traffic::connect_from(
                CLIENT_V4,
                sa(LB_V4, 9711),
                Duration::from_secs(3),
            )?;
            rejected(s, b"GET / HTTP/1.0\r\n\r\n").context("plain text to the TLS frontend")?;
            Ok(())
        })?;
        for (sni, cn) in [
            ("db.a.example.com", "lb-test-a"),
            ("B.Example.COM", "lb-test-b"),
            ("x.a.example.com", "lb-test-a"),
        ] {
            let out = topo
                .client
                .cmd("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &format!("{LB_V4}:9711"),
                    "-servername",
                    sni,
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .context("openssl s_client")?;
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            let subject = text
                .lines()
                .find(|l| l.starts_with("subject="))
                .unwrap_or_default()
                .to_string();
            ensure!(
                subject.contains(cn),
                "SNI {sni}: expected the certificate of {cn}, got {subject:?}\n{text}"
            );
            println!("[lb-tests] content: TLS with SNI {sni} reached {cn}");
        }
        // Rejections are HAProxy's denied requests of the frontend.
        for (fe, want) in [("fe", "2"), ("tls", "1")] {
            let dreq = lb.stat_field(fe, "FRONTEND", "dreq")?;
            ensure!(dreq == want, "frontend {fe}: dreq {dreq}, expected {want}");
        }
        lb.stop()?;
        Ok(())
    })
}

/// The connection ends (FIN or RST) before any server byte arrives.
/// A connection that lb closes (a FIN or, for a reject at accept, an RST).
/// The RST of a reject can land before a non-blocking connect is polled:
/// the connect then fails with ECONNRESET, which is the same answer.
fn turned_away(s: std::io::Result<TcpStream>) -> Result<()> {
    let mut s = match s {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
        other => other?,
    };
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = s.write_all(b"x");
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        other => anyhow::bail!("expected the connection to be closed, got {other:?} {b:?}"),
    }
}

/// `tcp-request connection` rules beyond the client address, run at accept:
/// a reject on the destination port, and `expect-proxy layer4` for one
/// client address (a PROXY header read from it, none from the others).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn tcp_request_connection_on_ports_and_expect_proxy() {
    run_test(|| {
        let topo = Topology::new("connrule")?;
        topo.client
            .ip(&["addr", "add", "10.210.1.3/24", "dev", "eth0"])?;
        let addrs = [sa(BACKENDS_V4[0], 9730)];
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {lb}:9730\n    bind {lb}:9731\n\
             \x20   tcp-request connection expect-proxy layer4 if {{ src 10.210.1.3 }}\n\
             \x20   tcp-request connection reject if {{ dst_port 9731 }} !{{ src 10.210.1.3 }}\n\
             \x20   default_backend one\n\
             backend one\n    server s1 {b1}:9730\n",
            lb = LB_V4,
            b1 = BACKENDS_V4[0],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        topo.in_client(|| -> Result<()> {
            let raw = |src: &str, port: u16| {
                lb_tests::traffic::connect_from(src, sa(LB_V4, port), Duration::from_secs(3))
            };
            let c =
                |src: &str, port: u16| raw(src, port).with_context(|| format!("{src} -> :{port}"));
            ensure!(
                reached(c(CLIENT_V4, 9730)?, b"")? == 11,
                "plain client, :9730"
            );
            turned_away(raw(CLIENT_V4, 9731)).context("plain client, :9731 (dst_port rule)")?;
            let hdr = "PROXY TCP4 192.0.2.9 10.210.1.1 5555 9731\r\n";
            ensure!(
                reached(c("10.210.1.3", 9731)?, hdr.as_bytes())? == 11,
                "PROXY client, :9731"
            );
            // Told to expect a header and sent none: closed.
            turned_away(raw("10.210.1.3", 9730)).context("PROXY client without a header")?;
            Ok(())
        })?;
        lb.stop()?;
        Ok(())
    })
}

/// `use-server NAME if COND` as HAProxy's `process_server_rules`: the first
/// rule that holds picks its server (weight 0 keeps it out of the
/// balancing) while that server is UP; a server in maintenance is skipped
/// (the balancing picks), unless a `force-persist` rule held first.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn use_server_and_force_persist() {
    run_test(|| {
        let topo = Topology::new("usesrv")?;
        let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, 9710)).collect();
        let _stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend fe\n    bind {lb}:9710\n    bind {lb}:9711\n    bind {lb}:9712\n\
             \x20   use_backend forced if {{ dst_port 9712 }}\n    default_backend b\n\
             backend b\n    balance roundrobin\n\
             \x20   use-server s3 if {{ dst_port 9711 }}\n\
             \x20   use-server s1 unless {{ dst_port 9710 9711 }}\n\
             \x20   server s1 {b1}:9710\n    server s2 {b2}:9710\n    server s3 {b3}:9710 weight 0\n\
             backend forced\n\
             \x20   force-persist if {{ dst_port 9712 }}\n\
             \x20   use-server f3 if TRUE\n\
             \x20   server f1 {b1}:9710\n    server f3 {b3}:9710\n",
            lb = LB_V4,
            b1 = BACKENDS_V4[0],
            b2 = BACKENDS_V4[1],
            b3 = BACKENDS_V4[2],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let round = |port: u16, n: usize| -> Result<Vec<u8>> {
            topo.in_client(|| {
                (0..n)
                    .map(|_| {
                        let s = lb_tests::traffic::connect(sa(LB_V4, port))?;
                        reached(s, b"")
                    })
                    .collect()
            })
        };
        let id = |ip: &str| ip.rsplit('.').next().unwrap().parse::<u8>().unwrap();
        let (s1, s2, s3) = (id(BACKENDS_V4[0]), id(BACKENDS_V4[1]), id(BACKENDS_V4[2]));
        // Port 9711: s3, every time, though its weight is 0.
        assert_eq!(round(9711, 4)?, vec![s3; 4]);
        // Port 9710: no rule holds (the second is `unless` on 9710):
        // round robin over s1 and s2, never s3.
        let rr = round(9710, 4)?;
        assert!(rr.iter().all(|&x| x == s1 || x == s2), "{rr:?}");
        assert!(rr.contains(&s1) && rr.contains(&s2), "{rr:?}");
        let api = |args: &[&str]| -> Result<()> {
            let mut c = lb_tests::netns::ns_cmd(&topo.lb.path(), lb_tests::lb::lb_bin()?);
            c.args(args).args(["--instance", lb.instance()]);
            ensure!(c.status()?.success(), "{args:?} failed");
            Ok(())
        };
        // s3 in maintenance: its rule is skipped, the balancing picks.
        api(&["set", "server", "b/s3", "state", "maint"])?;
        lb.wait_state("s3", "MAINT", Duration::from_secs(2))?;
        let skipped = round(9711, 4)?;
        assert!(skipped.iter().all(|&x| x == s1 || x == s2), "{skipped:?}");
        // force-persist held first: f3 is used in maintenance too.
        api(&["set", "server", "forced/f3", "state", "maint"])?;
        lb.wait_state("f3", "MAINT", Duration::from_secs(2))?;
        assert_eq!(round(9712, 3)?, vec![s3; 3]);
        println!(
            "[lb-tests] use-server: :9711 -> s3 x4 (weight 0), :9710 -> {rr:?}, \
             s3 in maint -> {skipped:?}, force-persist -> f3 in maint x3"
        );
        Ok(())
    });
}

/// Servers without a port take the port the client connected to (`server s
/// 10.210.2.11` behind `bind :9740-9741`), and `10.210.2.12:+5` that port
/// plus 5, as HAProxy (FTP passive ranges, port-per-tenant setups).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn servers_take_the_clients_port() {
    run_test(|| {
        let topo = Topology::new("portcl")?;
        let (a, b) = (BACKENDS_V4[0], BACKENDS_V4[1]);
        let _servers = lb_tests::traffic::NameServers::start(
            topo.srv.name(),
            &[
                (sa(a, 9740), "a9740"),
                (sa(a, 9741), "a9741"),
                (sa(b, 9750), "b9750"),
                (sa(b, 9751), "b9751"),
            ],
        )?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend same\n    bind {LB_V4}:9740-9741\n    default_backend noport\n\
             frontend offset\n    bind {LB_V4}:9745-9746\n    default_backend plus5\n\
             backend noport\n    server s {a} check port 9740 inter 300ms\n\
             backend plus5\n    server s {b}:+5 check port 9750 inter 300ms\n"
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let mut got = Vec::new();
        for port in [9740u16, 9741, 9745, 9746] {
            let name = topo.in_client(|| -> Result<String> {
                let s = lb_tests::traffic::connect(sa(LB_V4, port))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line)?;
                Ok(line.trim().to_string())
            })?;
            got.push(name);
        }
        assert_eq!(got, ["a9740", "a9741", "b9750", "b9751"]);
        println!("[lb-tests] client's port: :9740 :9741 :9745 :9746 -> {got:?}");
        lb.stop()?;
        Ok(())
    });
}

/// `disabled` proxies, as HAProxy: a disabled frontend does not listen (its
/// port refuses), a disabled backend takes no connection (closed at once),
/// the rest of the file runs.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn disabled_proxies() {
    run_test(|| {
        let topo = Topology::new("disabled")?;
        let _servers = lb_tests::traffic::NameServers::start(
            topo.srv.name(),
            &[(sa(BACKENDS_V4[0], 9760), "s1")],
        )?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
             frontend off\n    bind {LB_V4}:9760\n    disabled\n    default_backend b\n\
             frontend on\n    bind {LB_V4}:9761\n    default_backend b\n\
             frontend to_stopped\n    bind {LB_V4}:9762\n    default_backend stopped\n\
             backend b\n    server s1 {b1}:9760\n\
             backend stopped\n    disabled\n    server s1 {b1}:9760\n",
            b1 = BACKENDS_V4[0]
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let greeting = |port: u16| -> Result<String> {
            topo.in_client(|| {
                let s = lb_tests::traffic::connect(sa(LB_V4, port))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut line = String::new();
                std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line)?;
                Ok(line.trim().to_string())
            })
        };
        let off = topo.in_client(|| lb_tests::traffic::connect(sa(LB_V4, 9760)));
        ensure!(off.is_err(), "the disabled frontend accepted a connection");
        assert_eq!(greeting(9761)?, "s1");
        // Closed without a byte from any server.
        assert_eq!(greeting(9762)?, "");
        let log = std::fs::read_to_string(lb.log_path())?;
        ensure!(
            log.contains("frontend 'off' is disabled: not listening"),
            "{log}"
        );
        lb.stop()?;
        Ok(())
    });
}
