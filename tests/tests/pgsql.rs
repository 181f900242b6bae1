//! The seed PostgreSQL example through lb: psql, pgbench, round robin.

use lb_tests::postgres::parse_pgbench;
use lb_tests::scenario::*;
use lb_tests::*;
use std::time::Duration;

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pgsql_seed_config() {
    run_test(|| {
        let topo = Topology::new("pgsql")?;
        let _pgs = pg_trio(&topo, false)?;
        let lb = topo.start_lb(SEED_PGSQL, &[])?;
        let t = wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
        println!("[lb-tests] all 3 backends UP after {t:?}");

        let out = psql_ok(&topo.client, LB_V4, 5432, "select 42")?;
        assert_eq!(out, "42");

        // psql negotiates TLS with these servers (ssl = on, as Debian sets
        // up its clusters) unless told not to. A TLS session must end when
        // psql exits: the server's close_notify meets a client that already
        // closed, and lb once kept such sessions until `timeout client`.
        for round in 0..3 {
            let r =
                lb_tests::postgres::psql_ssl(&topo.client, LB_V4, 5432, "select 42", "require")?;
            anyhow::ensure!(
                r.ok && r.stdout == "42",
                "psql over TLS, round {round}: {r:?}"
            );
        }
        let took = lb_tests::util::wait_until(
            "the TLS sessions to end",
            Duration::from_secs(2),
            Duration::from_millis(20),
            || Ok(lb.show_servers()?.iter().all(|r| r.cur_conns == 0)),
        )?;
        println!("[lb-tests] 3 psql sessions over TLS: all ended {took:?} after the last one");

        // pgbench tables on every backend, initialized directly from the lb ns.
        for b in BACKENDS_V4 {
            pgbench(&topo.lb, &["-i", "-q", "-s", "1", "-h", b, "-p", "5432"])?;
        }
        let out = pgbench(
            &topo.client,
            &[
                "-S", "-c", "8", "-j", "2", "-T", "5", "-h", LB_V4, "-p", "5432",
            ],
        )?;
        let (tps, failed) = parse_pgbench(&out)?;
        println!(
            "[lb-tests] pgbench -S -c 8 -j 2 -T 5 through lb: tps = {tps:.1}, failed = {failed}"
        );
        assert!(tps > 0.0, "tps {tps}\n{out}");
        assert_eq!(failed, 0, "{out}");

        let before = total_conns(&lb)?;
        psql_42_many(&topo.client, LB_V4, 5432, 30)?;
        let after = total_conns(&lb)?;
        assert_round_robin(&before, &after, &PG_NODES, 30)?;
        println!("[lb-tests] servers: {:#?}", lb.show_servers()?);
        lb.stop()?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pgsql_wildcard_bind() {
    run_test(|| {
        let topo = Topology::new("pgsqlwild")?;
        let _pgs = pg_trio(&topo, false)?;
        let cfg = SEED_PGSQL.replace("bind 10.210.1.1:5432", "bind *:5432");
        assert!(cfg.contains("bind *:5432"));
        let lb = topo.start_lb(&cfg, &[])?;
        wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
        let before = total_conns(&lb)?;
        psql_42_many(&topo.client, LB_V4, 5432, 30)?;
        let after = total_conns(&lb)?;
        assert_round_robin(&before, &after, &PG_NODES, 30)?;
        lb.stop()?;
        Ok(())
    })
}

/// A specific bind wins over a wildcard bind on the same port, for every address
/// the wildcard covers: 10.210.1.1:5432 goes to one backend, any other local
/// address on 5432 to the other.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pgsql_specific_bind_before_wildcard() {
    run_test(|| {
        let topo = Topology::new("pgsqlspec")?;
        let _pgs = pg_trio(&topo, false)?;
        // A second address on the balancer, covered only by the wildcard.
        topo.lb
            .ip(&["addr", "add", "10.210.1.5/24", "dev", "eth-c"])?;
        let cfg = "\
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend specific
    bind 10.210.1.1:5432
    default_backend node1
frontend wildcard
    bind *:5432
    default_backend node2
backend node1
    server pgsql_node1 10.210.2.11:5432 check
backend node2
    server pgsql_node2 10.210.2.12:5432 check
";
        let lb = topo.start_lb(cfg, &[])?;
        wait_all(&lb, &PG_NODES[..2], "UP", Duration::from_secs(10))?;
        let q = "select inet_server_addr()";
        for _ in 0..3 {
            assert_eq!(psql_ok(&topo.client, LB_V4, 5432, q)?, "10.210.2.11");
            assert_eq!(psql_ok(&topo.client, "10.210.1.5", 5432, q)?, "10.210.2.12");
        }
        lb.stop()?;
        Ok(())
    })
}

/// The README's quick start with `data-path connect`: psql, pgbench and a
/// plain socket on the balancer's host (lb's namespace) connected straight to
/// the servers, round robin, `getpeername` showing 127.0.0.1:5432, and no
/// proxied connection.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pgsql_seed_config_connect() {
    run_test(|| {
        let topo = Topology::new("pgsqlconn")?;
        let _pgs = pg_trio(&topo, false)?;
        // The example's wildcard bind, as the README runs it.
        let cfg = SEED_PGSQL
            .replace("    bind 10.210.1.1:5432\n", "    bind *:5432\n")
            .replace(
                "    mode tcp\n    default_backend",
                "    mode tcp\n    data-path connect\n    default_backend",
            );
        assert!(cfg.contains("data-path connect"), "{cfg}");
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
            let vip: std::net::SocketAddr = "127.0.0.1:5432".parse()?;
            let s = topo.in_lb(|| lb_tests::traffic::connect(vip))?;
            anyhow::ensure!(s.peer_addr()? == vip, "getpeername: {:?}", s.peer_addr());
            drop(s);
            for b in BACKENDS_V4 {
                pgbench(&topo.lb, &["-i", "-q", "-s", "1", "-h", b, "-p", "5432"])?;
            }
            let out = pgbench(
                &topo.lb,
                &[
                    "-S",
                    "-c",
                    "8",
                    "-j",
                    "2",
                    "-T",
                    "5",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    "5432",
                ],
            )?;
            let (tps, failed) = parse_pgbench(&out)?;
            println!("[lb-tests] pgbench -S -c 8 -j 2 -T 5 through lb connect: tps = {tps:.1}, failed = {failed}");
            anyhow::ensure!(tps > 0.0 && failed == 0, "{out}");
            // The daemon adds the kernel's counts every 100 ms.
            std::thread::sleep(Duration::from_millis(300));
            let before = total_conns(&lb)?;
            psql_42_many(&topo.lb, "127.0.0.1", 5432, 30)?;
            std::thread::sleep(Duration::from_millis(300));
            let after = total_conns(&lb)?;
            assert_round_robin(&before, &after, &PG_NODES, 30)?;
            let stats: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
            anyhow::ensure!(
                stats["connect_balanced"].as_u64() >= Some(39)
                    && stats["conn_spliced"] == 0
                    && stats["conn_copied"] == 0,
                "the connections did not all go straight to the servers: {stats}"
            );
            Ok(())
        })();
        let _ = lb.stop();
        let mut clear = lb_tests::netns::ns_cmd(&topo.lb.path(), lb_bin()?);
        clear.args(["clear", "connect", "--instance", &instance]);
        let _ = util::output(&mut clear);
        result
    })
}

/// The seed example with `data-path nat`: psql and pgbench from the client
/// namespace, round robin over the three servers, which see the balancer's
/// address and a port above the ephemeral range (no proxy connected them).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn pgsql_seed_config_nat() {
    run_test(|| {
        let topo = Topology::new("pgsqlnat")?;
        let _pgs = pg_trio(&topo, false)?;
        let cfg = SEED_PGSQL
            .replace(
                "    maxconn 4096\n",
                "    maxconn 4096\n    xdp-interface eth-c\n",
            )
            .replace(
                "    mode tcp\n    default_backend",
                "    mode tcp\n    data-path nat\n    default_backend",
            );
        assert!(cfg.contains("data-path nat"), "{cfg}");
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            wait_all(&lb, &PG_NODES, "UP", Duration::from_secs(10))?;
            let seen = psql_ok(
                &topo.client,
                LB_V4,
                5432,
                "select host(inet_client_addr()) || ' ' || inet_client_port()",
            )?;
            let (addr, port) = seen.split_once(' ').unwrap_or(("", "0"));
            let port: u32 = port.parse().unwrap_or(0);
            anyhow::ensure!(
                addr == LB_SRV_V4 && port > 60999,
                "the server saw {seen}: want the balancer's {LB_SRV_V4} and a NAT port"
            );
            for b in BACKENDS_V4 {
                pgbench(&topo.lb, &["-i", "-q", "-s", "1", "-h", b, "-p", "5432"])?;
            }
            let out = pgbench(
                &topo.client,
                &[
                    "-S", "-c", "8", "-j", "2", "-T", "5", "-h", LB_V4, "-p", "5432",
                ],
            )?;
            let (tps, failed) = parse_pgbench(&out)?;
            println!("[lb-tests] pgbench -S -c 8 -j 2 -T 5 through lb nat: tps = {tps:.1}, failed = {failed}");
            anyhow::ensure!(tps > 0.0 && failed == 0, "{out}");
            let before = total_conns(&lb)?;
            psql_42_many(&topo.client, LB_V4, 5432, 30)?;
            let after = total_conns(&lb)?;
            assert_round_robin(&before, &after, &PG_NODES, 30)?;
            let stats: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
            anyhow::ensure!(
                stats["nat_new"].as_u64() >= Some(39)
                    && stats["conn_spliced"] == 0
                    && stats["conn_copied"] == 0,
                "the connections did not all take the NAT path: {stats}"
            );
            Ok(())
        })();
        let _ = lb.stop();
        let mut clear = lb_tests::netns::ns_cmd(&topo.lb.path(), lb_bin()?);
        clear.args(["clear", "nat", "--instance", &instance]);
        let _ = util::output(&mut clear);
        result
    })
}
