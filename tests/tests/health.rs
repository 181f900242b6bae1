//! Health checks: a stopped backend goes DOWN and gets no traffic, comes
//! back UP, and with every backend down clients are closed at once.

use lb_tests::scenario::*;
use lb_tests::*;
use std::time::Duration;

const INTER: u64 = 1;
const RISE: u64 = 2;
const FALL: u64 = 3;

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn health_down_up_all_down() {
    run_test(|| {
        let topo = Topology::new("health")?;
        let mut pgs = pg_trio(&topo, false)?;
        let cfg = pgsql_config(
            "10.210.1.1:5432",
            &BACKENDS_V4,
            &format!("check inter {INTER}s rise {RISE} fall {FALL}"),
        );
        let lb = topo.start_lb(&cfg, &[])?;
        wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
        psql_42_many(&topo.client, LB_V4, 5432, 3)?;

        // Let health reach its maximum (rise + fall - 1) so that going DOWN
        // really takes `fall` consecutive failures.
        std::thread::sleep(Duration::from_secs((FALL + 1) * INTER));

        // node2 down.
        pgs[1].stop()?;
        let down = lb.wait_state("pgsql_node2", "DOWN", Duration::from_secs(FALL * INTER + 1))?;
        println!(
            "[lb-tests] pgsql_node2 DOWN {down:?} after pg_ctl stop (limit {}s)",
            FALL * INTER + 1
        );
        let min_down = Duration::from_millis((FALL - 1) * INTER * 1000 - 300);
        assert!(
            down >= min_down,
            "DOWN after {down:?}, before {FALL} consecutive failed checks could have run"
        );
        let before = total_conns(&lb)?;
        psql_42_many(&topo.client, LB_V4, 5432, 30)?;
        let after = total_conns(&lb)?;
        let d = deltas(&before, &after, &PG_NODES);
        println!("[lb-tests] with node2 DOWN, growth per server = {d:?}");
        assert_eq!(d[1], 0, "DOWN server pgsql_node2 got connections: {d:?}");
        assert_eq!(d[0] + d[2], 30, "{d:?}");
        assert!(
            (d[0] - d[2]).abs() <= 1,
            "remaining servers not round robin: {d:?}"
        );
        for r in lb.show_servers()? {
            if r.name != "pgsql_node2" {
                assert_eq!(r.state, "UP", "{r:?}");
            }
        }

        // node2 back.
        pgs[1].start()?;
        let up = lb.wait_state("pgsql_node2", "UP", Duration::from_secs(RISE * INTER + 2))?;
        println!(
            "[lb-tests] pgsql_node2 UP {up:?} after pg_ctl start (limit {}s)",
            RISE * INTER + 2
        );
        let before = total_conns(&lb)?;
        psql_42_many(&topo.client, LB_V4, 5432, 30)?;
        let after = total_conns(&lb)?;
        assert_round_robin(&before, &after, &PG_NODES, 30)?;

        // Everything down: a new client is closed at once.
        for pg in pgs.iter_mut() {
            pg.stop()?;
        }
        let t = wait_all(
            &lb,
            &PG_NODES,
            "DOWN",
            Duration::from_secs(FALL * INTER + 2),
        )?;
        println!("[lb-tests] all backends DOWN after {t:?}");
        for i in 0..3 {
            let r = psql(&topo.client, LB_V4, 5432, "select 42")?;
            println!(
                "[lb-tests] all down: psql #{i} failed={} in {:?}: {}",
                !r.ok, r.elapsed, r.stderr
            );
            assert!(!r.ok, "psql succeeded with every backend stopped: {r:?}");
            assert!(
                r.elapsed < Duration::from_secs(2),
                "client not closed at once: {:?}",
                r.elapsed
            );
        }
        let mut lb = lb;
        lb.assert_alive()?;
        lb.stop()?;
        Ok(())
    })
}
