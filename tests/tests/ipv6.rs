//! The seed PostgreSQL example over IPv6.

use lb_tests::scenario::*;
use lb_tests::*;
use std::time::Duration;

fn run(name: &str, bind: &str, port: u16) -> anyhow::Result<()> {
    let topo = Topology::new(name)?;
    let _pgs = pg_trio(&topo, true)?;
    let cfg = pgsql_config(bind, &BACKENDS_V6, "check");
    let lb = topo.start_lb(&cfg, &[])?;
    let t = wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
    println!("[lb-tests] all 3 IPv6 backends UP after {t:?}");
    for r in lb.show_servers()? {
        assert!(
            r.addr.contains("fd10:210:2::"),
            "unexpected server addr {}",
            r.addr
        );
    }
    assert_eq!(psql_ok(&topo.client, LB_V6, port, "select 42")?, "42");
    let before = total_conns(&lb)?;
    psql_42_many(&topo.client, LB_V6, port, 30)?;
    let after = total_conns(&lb)?;
    assert_round_robin(&before, &after, &PG_NODES, 30)?;
    lb.stop()?;
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn ipv6_seed_config() {
    run_test(|| run("ipv6", "[fd10:210:1::1]:5432", 5432))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn ipv6_wildcard_bind() {
    run_test(|| run("ipv6wild", ":::5433", 5433))
}
