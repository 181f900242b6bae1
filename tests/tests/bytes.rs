//! Byte-exact transfers through lb: 200 concurrent connections with random
//! sizes and half-close, early close, and RST propagation both ways; with
//! splice (default) and with --no-splice.

use lb_tests::traffic::{check_blast, random_specs, run_blast, run_seed, Outcome};
use lb_tests::*;
use std::io::ErrorKind;
use std::time::Duration;

const PORT: u16 = 9000;
const NAMES: [&str; 3] = ["blast1", "blast2", "blast3"];

fn backends(port: u16) -> Vec<std::net::SocketAddr> {
    BACKENDS_V4.iter().map(|b| sa(b, port)).collect()
}

fn start(topo: &Topology, port: u16, extra: &[&str]) -> anyhow::Result<Lb> {
    let servers: Vec<(&str, &str)> = NAMES.iter().copied().zip(BACKENDS_V4).collect();
    let cfg = tcp_config("blast", &hp(LB_V4, port), &servers, port, "check", "30s");
    let lb = topo.start_lb(&cfg, extra)?;
    lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
    Ok(lb)
}

fn blast(tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let server = BlastServer::start(topo.srv.name(), &backends(PORT))?;
    let mut lb = start(&topo, PORT, extra)?;
    let mut rng = Rng::new(run_seed());
    let specs = random_specs(&mut rng, 200, 8 << 20, 1 << 30);
    let clients = run_blast(
        topo.client.name(),
        sa(LB_V4, PORT),
        &specs,
        &[ClientMode::Full],
    );
    check_blast(
        &format!("{tag} 200 concurrent"),
        &specs,
        &clients,
        &server,
        Duration::from_secs(20),
    )?;
    let rows = lb.show_servers()?;
    for r in &rows {
        println!(
            "[lb-tests] {}: total_conns {} bytes_in {} bytes_out {}",
            r.name, r.total_conns, r.bytes_in, r.bytes_out
        );
    }
    match lb.show_stats() {
        Ok(s) => println!("[lb-tests] lb show stats: {s}"),
        Err(e) => println!("[lb-tests] lb show stats failed: {e:#}"),
    }
    let total: u64 = rows.iter().map(|r| r.total_conns).sum();
    assert!(
        total >= 200,
        "show servers counts {total} connections, expected >= 200"
    );
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

fn early_close(tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let server = BlastServer::start(topo.srv.name(), &backends(PORT))?;
    let mut lb = start(&topo, PORT, extra)?;
    let mut rng = Rng::new(run_seed());
    let specs: Vec<BlastSpec> = (0..200)
        .map(|_| BlastSpec {
            c2s: rng.range(1, 64 << 10),
            s2c: 0,
            seed: rng.next_u64(),
        })
        .collect();
    let clients = run_blast(
        topo.client.name(),
        sa(LB_V4, PORT),
        &specs,
        &[ClientMode::EarlyClose, ClientMode::EarlyShutdown],
    );
    check_blast(
        &format!("{tag} 200 early-close"),
        &specs,
        &clients,
        &server,
        Duration::from_secs(5),
    )?;
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

fn rst(tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let probe = ProbeServer::start(topo.srv.name(), &backends(PORT))?;
    let mut lb = start(&topo, PORT, extra)?;
    let addr = sa(LB_V4, PORT);
    for i in 0..6 {
        let (outcome, dt) = probe.client_reset(topo.client.name(), addr)?;
        println!("[lb-tests] {tag} client RST #{i}: backend saw {outcome:?} after {dt:?}");
        assert!(
            matches!(outcome, Outcome::Reset | Outcome::Eof),
            "backend saw {outcome:?}"
        );
        assert!(
            dt < Duration::from_secs(2),
            "backend saw the client's RST only after {dt:?}"
        );
    }
    for i in 0..6 {
        let (res, dt) = probe.backend_reset(topo.client.name(), addr)?;
        println!("[lb-tests] {tag} backend RST #{i}: client saw {res:?} after {dt:?}");
        assert_eq!(
            res,
            Err(ErrorKind::ConnectionReset),
            "client did not see a reset"
        );
        assert!(
            dt < Duration::from_secs(2),
            "client saw the backend's RST only after {dt:?}"
        );
    }
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

/// FIN forwarding in both orders, each within 2 s.
fn half_close(tag: &str, extra: &[&str]) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let probe = ProbeServer::start(topo.srv.name(), &backends(PORT))?;
    let mut lb = start(&topo, PORT, extra)?;
    let addr = sa(LB_V4, PORT);
    let mut failures = Vec::new();
    for i in 0..6 {
        let server_first = i % 2 == 1;
        let order = if server_first { "backend" } else { "client" };
        match probe.half_close(topo.client.name(), addr, server_first) {
            Ok((c2s, s2c)) => {
                println!(
                    "[lb-tests] {tag} half-close #{i} ({order} first): FIN client->backend after {c2s:?}, \
                     backend->client after {s2c:?}"
                );
                if c2s >= Duration::from_secs(2) || s2c >= Duration::from_secs(2) {
                    failures.push(format!(
                        "#{i} ({order} first): FIN delays {c2s:?} / {s2c:?} (limit 2 s)"
                    ));
                }
            }
            Err(e) => {
                println!("[lb-tests] {tag} half-close #{i} ({order} first): {e:#}");
                failures.push(format!("#{i} ({order} first): {e:#}"));
            }
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "half-close failures:\n{}",
        failures.join("\n")
    );
    lb.assert_alive()?;
    lb.stop()?;
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn half_close_splice() {
    run_test(|| half_close("half", &[]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn half_close_no_splice() {
    run_test(|| half_close("halfns", &["--no-splice"]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn bytes_splice() {
    run_test(|| blast("bytes", &[]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn bytes_no_splice() {
    run_test(|| blast("bytesns", &["--no-splice"]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn early_close_splice() {
    run_test(|| early_close("early", &[]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn early_close_no_splice() {
    run_test(|| early_close("earlyns", &["--no-splice"]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn rst_splice() {
    run_test(|| rst("rst", &[]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn rst_no_splice() {
    run_test(|| rst("rstns", &["--no-splice"]))
}
