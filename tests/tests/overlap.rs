//! TCP segments that repeat bytes the receiving socket already has
//! (`seq < rcv_nxt < end_seq`), sent on demand by a raw userspace peer
//! (`lb_tests::rawtcp`), through lb in both directions, splice and
//! `--no-splice`. The receiver must get exactly the sender's stream.
//!
//! Why: the kernel queues such a segment whole (tcp_data_queue, "Partial
//! packet"; tcp_ofo_queue for one that waited out of order; neither trims
//! it) and a normal reader skips the old head through `copied_seq`, but
//! sockmap's `tcp_read_skb` hands the whole skb to the stream verdict
//! (sk_psock_verdict_recv: `skb->len`, offset 0), so a redirect (and a PASS
//! read back by lb) forwards the repeated head a second time, and
//! `tcp_eat_skb` moves `copied_seq` past `rcv_nxt` by as much. A lossy path
//! makes real senders re-pack retransmissions like this; a CI run once saw
//! a client receive more bytes than the server sent.
//!
//! The raw peer uses an address configured on no interface of its
//! namespace (10.210.2.50 as a backend, 10.210.1.50 as a client); the lb
//! namespace reaches it through a static neighbour entry. TcpExt counters of
//! the lb namespace (TCPDSACKOldSent above all) show that the overlaps
//! reached lb's sockets.

use anyhow::{anyhow, bail, ensure, Context, Result};
use lb_tests::rawtcp::{self, Plan, RawLink, Report};
use lb_tests::traffic::{listen, read_verify, Verifier};
use lb_tests::*;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PORT: u16 = 9300;
/// Configured nowhere: only the raw endpoints answer for them.
const RAW_SRV: Ipv4Addr = Ipv4Addr::new(10, 210, 2, 50);
const RAW_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 210, 1, 50);
const RAW_CLIENT_PORT: u16 = 41_000;
const LEN: u64 = 4 << 20;
const SEED: u64 = 0x006f_7665_726c_6170;
/// Bounds every raw connection, handshake to last ACK.
const DEADLINE: Duration = Duration::from_secs(120);
/// TcpExt counters of the lb namespace printed before/after.
const COUNTERS: [&str; 9] = [
    "TCPDSACKOldSent",
    "TCPDSACKOfoSent",
    "TCPOFOQueue",
    "TCPRcvCoalesce",
    "TCPRcvCollapsed",
    "PruneCalled",
    "TCPRcvQDrop",
    "TCPZeroWindowDrop",
    "TCPBacklogCoalesce",
];

/// 4 MiB in segments of 1000 new bytes, every 5th repeating the 300 bytes
/// before it; `ahead`: each overlapping segment goes out before the one it
/// overlaps and waits in lb's out-of-order queue.
fn plan(ahead: bool) -> Plan {
    Plan {
        len: LEN,
        seg: 1000,
        every: 5,
        overlap: 300,
        ahead,
        seed: SEED,
    }
}

/// The same stream without overlaps: the control, showing that the raw
/// peer and the harness are exact through lb on their own.
fn plain() -> Plan {
    Plan {
        every: 0,
        overlap: 0,
        ..plan(false)
    }
}

/// TcpExt counters of `ns`, read on a thread inside it (thread-self: the
/// process's own /proc/net is the root namespace's).
fn tcp_ext(ns: &Netns) -> Result<BTreeMap<String, u64>> {
    let text = ns.enter(|| std::fs::read_to_string("/proc/thread-self/net/netstat"))?;
    let mut lines = text.lines();
    while let (Some(h), Some(v)) = (lines.next(), lines.next()) {
        if !h.starts_with("TcpExt:") {
            continue;
        }
        return Ok(h
            .split_whitespace()
            .zip(v.split_whitespace())
            .skip(1)
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect());
    }
    bail!("no TcpExt in netstat")
}

fn print_counters(tag: &str, before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) {
    let cells: Vec<String> = COUNTERS
        .iter()
        .map(|k| {
            let a = after.get(*k).copied().unwrap_or(0);
            let b = before.get(*k).copied().unwrap_or(0);
            format!("TcpExt{k} {b} -> {a} (+{})", a.saturating_sub(b))
        })
        .collect();
    println!("[lb-tests] {tag}: lb netns {}", cells.join(", "));
}

/// What the receiver got against what the raw sender sent.
fn verdict(tag: &str, who: &str, p: &Plan, v: &Verifier, io: &std::io::Result<()>) -> Result<()> {
    let (k, dup) = p.overlapping();
    let line = format!(
        "{tag}: {who} received {} bytes of {} sent ({:+}); first mismatch at {}; \
         read ended with {:?}; the sender repeated {dup} bytes in {k} overlapping segments",
        v.received,
        p.len,
        v.received as i64 - p.len as i64,
        v.first_mismatch
            .map(|o| o.to_string())
            .unwrap_or_else(|| "none".into()),
        io.as_ref().map_err(|e| e.to_string()),
    );
    println!("[lb-tests] {line}");
    if v.received != p.len || v.first_mismatch.is_some() || io.is_err() {
        bail!("{line}");
    }
    Ok(())
}

/// Prints the kernel counters and, through the splice path, checks that the
/// verdict carried the stream and cut every overlap (so that a pass cannot
/// come from the bytes having gone another way).
fn check_lb(tag: &str, lb: &Lb, spliced: bool, p: &Plan) -> Result<()> {
    let text = lb.show_stats()?;
    println!("[lb-tests] {tag}: lb show stats: {text}");
    if !spliced {
        return Ok(());
    }
    let st: serde_json::Value = serde_json::from_str(&text).context("lb show stats --json")?;
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    ensure!(
        n("verdict_redirect") > 0,
        "{tag}: the verdict redirected nothing"
    );
    ensure!(
        n("overlap_failed") == 0,
        "{tag}: {} skbs not trimmed",
        n("overlap_failed")
    );
    if p.every == 0 {
        ensure!(n("overlap_trimmed") == 0, "{tag}: trims without overlaps");
    } else {
        ensure!(
            n("overlap_trimmed") > 0,
            "{tag}: no overlapping skb reached the verdict"
        );
        // Each overlap is cut by its length; one cut may differ: the first
        // skb after the pair moved from the userspace copy to the kernel
        // path, of which userspace had read a part.
        let (bytes, trims) = (n("overlap_bytes"), n("overlap_trimmed"));
        ensure!(
            bytes >= (trims - 1) * p.overlap as u64
                && bytes <= trims * p.overlap as u64 + (64 << 10),
            "{tag}: {bytes} bytes cut from {trims} skbs, expected {} each",
            p.overlap
        );
    }
    Ok(())
}

fn print_raw(tag: &str, who: &str, r: &Result<Report>) {
    match r {
        Ok(r) => println!("[lb-tests] {tag}: {who}: {r:?}"),
        Err(e) => println!("[lb-tests] {tag}: {who} failed: {e:#}"),
    }
}

/// The raw peer is the backend and sends; an ordinary client reads through lb.
fn server_to_client(tag: &str, extra: &[&str], p: Plan) -> Result<()> {
    let topo = Topology::new(tag)?;
    let srv_mac = rawtcp::mac_of(&topo.srv, "eth0")?;
    let lb_mac = rawtcp::mac_of(&topo.lb, "eth-s")?;
    rawtcp::add_neighbour(&topo.lb, RAW_SRV, &srv_mac, "eth-s")?;
    let raw_ip = RAW_SRV.to_string();
    // No health check: its probes would land on the raw peer.
    let cfg = tcp_config(
        "ovl",
        &hp(LB_V4, PORT),
        &[("raw", &raw_ip)],
        PORT,
        "",
        "30s",
    );
    let mut lb = topo.start_lb(&cfg, extra)?;
    let before = tcp_ext(&topo.lb)?;

    let (ready_tx, ready_rx) = mpsc::channel();
    let raw = spawn_in_netns(topo.srv.name(), move || -> Result<Report> {
        let link = RawLink::open("eth0")?;
        let _ = ready_tx.send(());
        rawtcp::serve(
            link,
            srv_mac,
            lb_mac,
            SocketAddrV4::new(RAW_SRV, PORT),
            p,
            DEADLINE,
        )
    });
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let r = raw.join().map_err(|_| anyhow!("raw server panicked"))?;
        bail!("raw server did not start: {:?}", r.err());
    }

    let t0 = Instant::now();
    let (v, io) = topo.in_client(|| {
        let s = match TcpStream::connect_timeout(&sa(LB_V4, PORT), Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return (Verifier::new(p.seed), Err(e)),
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        // Bounded: a stream that grows past twice the length is wrong anyway.
        read_verify(s, p.seed, 2 * p.len)
    });
    println!("[lb-tests] {tag}: client done in {:?}", t0.elapsed());
    let r = raw.join().map_err(|_| anyhow!("raw server panicked"))?;
    let after = tcp_ext(&topo.lb)?;
    print_raw(tag, "raw server", &r);
    print_counters(tag, &before, &after);
    let kernel = check_lb(tag, &lb, extra.is_empty(), &p);
    let got = verdict(tag, "client", &p, &v, &io);
    lb.assert_alive()?;
    lb.stop()?;
    got?;
    kernel?;
    r.context("raw server")?;
    Ok(())
}

/// The raw peer is the client and sends; an ordinary backend reads.
fn client_to_server(tag: &str, extra: &[&str], p: Plan) -> Result<()> {
    let topo = Topology::new(tag)?;
    let client_mac = rawtcp::mac_of(&topo.client, "eth0")?;
    let lb_mac = rawtcp::mac_of(&topo.lb, "eth-c")?;
    rawtcp::add_neighbour(&topo.lb, RAW_CLIENT, &client_mac, "eth-c")?;
    let backend = BACKENDS_V4[0];
    let cfg = tcp_config("ovl", &hp(LB_V4, PORT), &[("s1", backend)], PORT, "", "30s");
    let mut lb = topo.start_lb(&cfg, extra)?;
    let before = tcp_ext(&topo.lb)?;

    let (ready_tx, ready_rx) = mpsc::channel();
    let server = spawn_in_netns(
        topo.srv.name(),
        move || -> Result<(Verifier, std::io::Result<()>)> {
            let l = listen(sa(backend, PORT))?;
            l.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            let end = Instant::now() + DEADLINE;
            let s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > end {
                            bail!("backend: no connection within {DEADLINE:?}");
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            Ok(read_verify(s, p.seed, 2 * p.len))
        },
    );
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let r = server.join().map_err(|_| anyhow!("backend panicked"))?;
        bail!("backend did not start: {:?}", r.err());
    }

    let raw = spawn_in_netns(topo.client.name(), move || -> Result<Report> {
        let link = RawLink::open("eth0")?;
        rawtcp::connect_send(
            link,
            client_mac,
            lb_mac,
            SocketAddrV4::new(RAW_CLIENT, RAW_CLIENT_PORT),
            SocketAddrV4::new(LB_V4.parse()?, PORT),
            p,
            DEADLINE,
        )
    });
    let r = raw.join().map_err(|_| anyhow!("raw client panicked"))?;
    print_raw(tag, "raw client", &r);
    // The backend ends with the client's FIN, or with its read timeout.
    let got = server.join().map_err(|_| anyhow!("backend panicked"))?;
    let after = tcp_ext(&topo.lb)?;
    print_counters(tag, &before, &after);
    let kernel = check_lb(tag, &lb, extra.is_empty(), &p);
    let checked = got
        .context("backend")
        .and_then(|(v, io)| verdict(tag, "backend", &p, &v, &io));
    lb.assert_alive()?;
    lb.stop()?;
    checked?;
    kernel?;
    r.context("raw client")?;
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_server_to_client_splice() {
    run_test(|| server_to_client("ovls2c", &[], plan(false)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_server_to_client_no_splice() {
    run_test(|| server_to_client("ovls2cns", &["--no-splice"], plan(false)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_client_to_server_splice() {
    run_test(|| client_to_server("ovlc2s", &[], plan(false)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_client_to_server_no_splice() {
    run_test(|| client_to_server("ovlc2sns", &["--no-splice"], plan(false)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_ahead_server_to_client_splice() {
    run_test(|| server_to_client("ovas2c", &[], plan(true)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_ahead_server_to_client_no_splice() {
    run_test(|| server_to_client("ovas2cns", &["--no-splice"], plan(true)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_ahead_client_to_server_splice() {
    run_test(|| client_to_server("ovac2s", &[], plan(true)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn overlap_ahead_client_to_server_no_splice() {
    run_test(|| client_to_server("ovac2sns", &["--no-splice"], plan(true)))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn plain_server_to_client_splice() {
    run_test(|| server_to_client("pls2c", &[], plain()))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn plain_client_to_server_splice() {
    run_test(|| client_to_server("plc2s", &[], plain()))
}
