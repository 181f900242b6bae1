//! Harness sanity check without lb: the blast server runs in the lb
//! namespace and the client talks to it directly from the client namespace.

use lb_tests::traffic::{check_blast, random_specs, run_blast, run_seed};
use lb_tests::*;
use std::time::Duration;

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn harness_direct_blast() {
    run_test(|| {
        let topo = Topology::new("direct")?;
        let addr = sa(LB_V4, 9000);
        let server = BlastServer::start(topo.lb.name(), &[addr])?;
        let mut rng = Rng::new(run_seed());
        let specs = random_specs(&mut rng, 50, 4 << 20, 256 << 20);
        let clients = run_blast(topo.client.name(), addr, &specs, &[ClientMode::Full]);
        check_blast(
            "direct v4",
            &specs,
            &clients,
            &server,
            Duration::from_secs(20),
        )?;

        // Same over IPv6, with the early-close client modes.
        let addr6 = sa(LB_V6, 9000);
        let server6 = BlastServer::start(topo.lb.name(), &[addr6])?;
        let specs6 = random_specs(&mut rng, 30, 64 << 10, 16 << 20)
            .into_iter()
            .map(|mut s| {
                s.s2c = 0;
                s
            })
            .collect::<Vec<_>>();
        let clients6 = run_blast(
            topo.client.name(),
            addr6,
            &specs6,
            &[
                ClientMode::Full,
                ClientMode::EarlyShutdown,
                ClientMode::EarlyClose,
            ],
        );
        check_blast(
            "direct v6 early close",
            &specs6,
            &clients6,
            &server6,
            Duration::from_secs(5),
        )?;

        // RST in both directions, directly.
        let probe = ProbeServer::start(topo.lb.name(), &[sa(LB_V4, 9001)])?;
        let (outcome, dt) = probe.client_reset(topo.client.name(), sa(LB_V4, 9001))?;
        println!("[lb-tests] direct client RST: backend saw {outcome:?} after {dt:?}");
        assert_eq!(outcome, lb_tests::traffic::Outcome::Reset);
        let (res, dt) = probe.backend_reset(topo.client.name(), sa(LB_V4, 9001))?;
        println!("[lb-tests] direct backend RST: client saw {res:?} after {dt:?}");
        assert_eq!(res, Err(std::io::ErrorKind::ConnectionReset));
        for server_first in [false, true] {
            let (c2s, s2c) = probe.half_close(topo.client.name(), sa(LB_V4, 9001), server_first)?;
            println!(
                "[lb-tests] direct half-close (server first: {server_first}): {c2s:?} / {s2c:?}"
            );
        }
        Ok(())
    })
}

/// The PostgreSQL guard without lb: three instances in the srv namespace
/// reached directly from the lb namespace over IPv4 and IPv6; stop/start.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn harness_postgres_direct() {
    run_test(|| {
        let topo = Topology::new("pgdirect")?;
        let t = std::time::Instant::now();
        let mut pgs = Postgres::trio(
            &topo.srv,
            [
                &[BACKENDS_V4[0], BACKENDS_V6[0]],
                &[BACKENDS_V4[1], BACKENDS_V6[1]],
                &[BACKENDS_V4[2], BACKENDS_V6[2]],
            ],
        )?;
        println!("[lb-tests] 3 postgres up in {:?}", t.elapsed());
        for (i, pg) in pgs.iter().enumerate() {
            for addr in [BACKENDS_V4[i], BACKENDS_V6[i]] {
                let out = psql_ok(&topo.lb, addr, 5432, "select inet_server_addr()")?;
                println!("[lb-tests] {} at {addr}: server addr {out}", pg.name);
                assert_eq!(out, addr);
            }
        }
        pgbench(
            &topo.lb,
            &["-i", "-q", "-s", "1", "-h", BACKENDS_V4[0], "-p", "5432"],
        )?;
        pgs[1].stop()?;
        let r = psql(&topo.lb, BACKENDS_V4[1], 5432, "select 1")?;
        assert!(!r.ok, "stopped postgres still answers");
        println!("[lb-tests] stopped postgres refused in {:?}", r.elapsed);
        pgs[1].start()?;
        assert_eq!(psql_ok(&topo.lb, BACKENDS_V4[1], 5432, "select 42")?, "42");
        pgs[2].restart()?;
        assert_eq!(psql_ok(&topo.lb, BACKENDS_V6[2], 5432, "select 42")?, "42");
        Ok(())
    })
}
