//! `data-path nat`: remote clients balanced by `lb_nat` rewriting packets at
//! tc ingress, no socket on the balancer. Byte-exact concurrent transfers with
//! half-close over IPv4 and IPv6, the servers seeing the balancer's address
//! and a port of its range, round robin over the three servers, and flows
//! that outlive a SIGKILLed daemon.

use lb_tests::traffic::{check_blast, random_specs, run_blast, run_seed, ServerConn};
use lb_tests::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const NAMES: [&str; 3] = ["nat1", "nat2", "nat3"];

/// The pgsql example's shape with `data-path nat` and the client-side veth
/// named for the NAT path.
fn nat_config(bind: &str, backends: &[&str; 3], port: u16, extra_global: &str) -> String {
    let mut s = format!(
        "global\n    maxconn 4096\n    xdp-interface eth-c\n{extra_global}\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend nat_frontend\n    bind {bind}\n    mode tcp\n    data-path nat\n    default_backend nat_backend\n\
         backend nat_backend\n    mode tcp\n    balance roundrobin\n"
    );
    for (n, ip) in NAMES.iter().zip(backends) {
        s.push_str(&format!(
            "    server {n} {} check inter 500ms\n",
            hp(ip, port)
        ));
    }
    s
}

/// Removes the NAT state the daemon keeps pinned across restarts.
fn clear_nat(topo: &Topology, instance: &str) {
    let Ok(bin) = lb_bin() else {
        return;
    };
    let mut cmd = lb_tests::netns::ns_cmd(&topo.lb.path(), &bin);
    cmd.args(["clear", "nat", "--instance", instance]);
    let _ = util::output(&mut cmd);
}

/// The end of a test: the echo servers stop, lb stops, its NAT state goes.
fn wind_down(
    topo: &Topology,
    lb: Lb,
    instance: &str,
    stops: &[&Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>],
) {
    for s in stops.iter().flat_map(|v| v.iter()) {
        s.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let _ = lb.stop();
    clear_nat(topo, instance);
}

/// Every server-side connection came from the balancer's own address, from a
/// port above the host's ephemeral range, and the servers took turns.
fn check_server_view(
    conns: &[ServerConn],
    lb_addr: &str,
    backends: &[&str; 3],
) -> anyhow::Result<()> {
    let lb_ip: IpAddr = lb_addr.parse()?;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let hi: u16 = range.split_whitespace().nth(1).unwrap_or("60999").parse()?;
    let mut per = [0usize; 3];
    for c in conns {
        anyhow::ensure!(
            c.peer.ip() == lb_ip,
            "a server saw {} as its client: full NAT must show the balancer's {lb_ip}",
            c.peer
        );
        anyhow::ensure!(
            c.peer.port() > hi,
            "balancer port {} is inside the host's ephemeral range (ends at {hi})",
            c.peer.port()
        );
        if let Some(l) = c.local {
            if let Some(i) = backends
                .iter()
                .position(|b| l.ip() == b.parse::<IpAddr>().unwrap())
            {
                per[i] += 1;
            }
        }
    }
    let n = conns.len();
    for (i, &k) in per.iter().enumerate() {
        anyhow::ensure!(
            k.abs_diff(n / 3) <= 2,
            "round robin: server {} took {k} of {n} flows ({per:?})",
            NAMES[i]
        );
    }
    println!("[lb-tests] nat: {n} flows from {lb_ip}, per server {per:?}");
    Ok(())
}

fn blast(
    tag: &str,
    client_to: &str,
    lb_srv: &str,
    backends: &[&str; 3],
    port: u16,
) -> anyhow::Result<()> {
    let topo = Topology::new(tag)?;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| sa(b, port)).collect();
    let server = BlastServer::start(topo.srv.name(), &addrs)?;
    let cfg = nat_config(&hp(client_to, port), backends, port, "").replace(
        "    data-path nat\n",
        "    data-path nat\n    option tcplog\n",
    );
    let mut lb = topo.start_lb(&cfg, &[])?;
    let instance = lb.instance().to_string();
    let result = (|| -> anyhow::Result<()> {
        lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
        // `lb xdp status` says where lb_nat runs: the client side and the
        // servers' side of the balancer namespace, each a live link.
        let xs = lb.xdp_status()?;
        let nat = xs["nat"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(nat.len() == 2, "lb xdp status, nat: {nat:?}");
        for n in &nat {
            anyhow::ensure!(
                n["ifindex"].as_u64().unwrap_or(0) > 0
                    && n["prog_id"].as_u64().unwrap_or(0) > 0
                    && n["hook"] == "tcx ingress",
                "lb xdp status, nat entry: {n}"
            );
        }
        let mut rng = Rng::new(run_seed());
        let specs = random_specs(&mut rng, 200, 8 << 20, 1 << 30);
        let clients = run_blast(
            topo.client.name(),
            sa(client_to, port),
            &specs,
            &[ClientMode::Full],
        );
        if let Ok(st) = lb.show_stats() {
            println!("[lb-tests] nat stats after the transfers: {st}");
        }
        check_blast(
            &format!("{tag} 200 concurrent through nat"),
            &specs,
            &clients,
            &server,
            Duration::from_secs(30),
        )?;
        check_server_view(&server.conns(), lb_srv, backends)?;
        // One tcplog line per flow, written when lb_nat saw it end.
        let mut lines = 0;
        util::wait_until(
            "200 tcplog lines",
            Duration::from_secs(3),
            Duration::from_millis(100),
            || {
                let log = std::fs::read_to_string(lb.log_path())?;
                lines = log
                    .lines()
                    .filter(|l| l.contains(" nat_frontend nat_backend/nat") && l.contains(" -- "))
                    .count();
                Ok(lines == 200)
            },
        )
        .map_err(|e| anyhow::anyhow!("{e:#}: {lines} tcplog lines"))?;
        let log = std::fs::read_to_string(lb.log_path())?;
        if let Some(l) = log
            .lines()
            .find(|l| l.contains(" nat_frontend nat_backend/"))
        {
            println!("[lb-tests] tcplog: {l}");
        }
        let stats: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
        println!("[lb-tests] nat stats: {stats}");
        anyhow::ensure!(
            stats["nat_new"].as_u64() >= Some(200),
            "nat_new {} < 200: the flows did not take the NAT path",
            stats["nat_new"]
        );
        lb.assert_alive()
    })();
    let _ = lb.stop();
    clear_nat(&topo, &instance);
    result
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_blast_ipv4() {
    run_test(|| blast("natv4", LB_V4, LB_SRV_V4, &BACKENDS_V4, 9100));
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_blast_ipv6() {
    run_test(|| blast("natv6", LB_V6, LB_SRV_V6, &BACKENDS_V6, 9101));
}

/// One idle connection through the echo frontend: a round trip proves it
/// works; it stays open for the next.
fn echo_round(s: &mut std::net::TcpStream, tag: u8) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let msg = [tag; 100];
    s.write_all(&msg)?;
    let mut back = [0u8; 100];
    s.read_exact(&mut back)?;
    anyhow::ensure!(back == msg, "echo came back changed");
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_flows_outlive_a_killed_daemon() {
    run_test(|| {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let topo = Topology::new("natkill")?;
        let (blast_port, echo_port) = (9102, 9103);
        let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, blast_port)).collect();
        let server = BlastServer::start(topo.srv.name(), &addrs)?;
        let stop = Arc::new(AtomicBool::new(false));
        let echo_addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, echo_port)).collect();
        lb_tests::traffic::serve(topo.srv.name(), &echo_addrs, stop.clone(), |mut s, _| {
            let mut w = match s.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let _ = std::io::copy(&mut s, &mut w);
        })?;
        let mut cfg = nat_config(&hp(LB_V4, blast_port), &BACKENDS_V4, blast_port, "");
        cfg.push_str(&format!(
            "frontend echo_frontend\n    bind {}\n    data-path nat\n    default_backend echo_backend\n\
             backend echo_backend\n    balance roundrobin\n",
            hp(LB_V4, echo_port)
        ));
        for (i, b) in BACKENDS_V4.iter().enumerate() {
            cfg.push_str(&format!("    server echo{} {}\n", i + 1, hp(b, echo_port)));
        }
        let instance = format!("natkill{}", util::unique_id());
        let lb = topo.start_lb_instance(&cfg, &instance, &[])?;
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            // Ten idle sessions, each proven once.
            let mut idle: Vec<std::net::TcpStream> = topo.in_client(|| {
                (0..10)
                    .map(|_| lb_tests::traffic::connect(sa(LB_V4, echo_port)))
                    .collect::<std::io::Result<_>>()
            })?;
            for s in idle.iter_mut() {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                echo_round(s, 1)?;
            }
            // Bulk transfers running when the daemon dies.
            let specs: Vec<BlastSpec> = (0..8)
                .map(|i| BlastSpec {
                    c2s: 384 << 20,
                    s2c: 384 << 20,
                    seed: 0x6e61_7400 + i,
                })
                .collect();
            let client_ns = topo.client.name().to_string();
            let specs2 = specs.clone();
            let bulk = std::thread::spawn(move || {
                run_blast(
                    &client_ns,
                    sa(LB_V4, blast_port),
                    &specs2,
                    &[ClientMode::Full],
                )
            });
            std::thread::sleep(Duration::from_millis(700));
            lb.kill()?;
            println!("[lb-tests] lb SIGKILLed with 8 bulk and 10 idle NAT flows running");
            let clients = bulk.join().expect("bulk thread");
            check_blast(
                "bulk across SIGKILL",
                &specs,
                &clients,
                &server,
                Duration::from_secs(60),
            )?;
            for s in idle.iter_mut() {
                echo_round(s, 2)?;
            }
            println!("[lb-tests] the 10 idle sessions still answer with no daemon");
            // A new daemon adopts the table: the idle flows are counted again.
            let lb2 = topo.start_lb_instance(&cfg, &instance, &[])?;
            anyhow::ensure!(
                lb2.log_tail(200)
                    .contains("adopted from the previous daemon"),
                "no adoption in the log:\n{}",
                lb2.log_tail(40)
            );
            let rows = lb2.show_servers()?;
            let echo_conns: u64 = rows
                .iter()
                .filter(|r| r.name.starts_with("echo"))
                .map(|r| r.cur_conns)
                .sum();
            anyhow::ensure!(
                echo_conns == 10,
                "after adoption the echo servers count {echo_conns} flows, not 10: {rows:?}"
            );
            for s in idle.iter_mut() {
                echo_round(s, 3)?;
            }
            drop(idle);
            util::wait_until(
                "the closed idle flows counted out",
                Duration::from_secs(5),
                Duration::from_millis(100),
                || {
                    let rows = lb2.show_servers()?;
                    Ok(rows
                        .iter()
                        .filter(|r| r.name.starts_with("echo"))
                        .all(|r| r.cur_conns == 0))
                },
            )?;
            // And new flows go through the new daemon's program.
            let mut s = topo.in_client(|| lb_tests::traffic::connect(sa(LB_V4, echo_port)))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            echo_round(&mut s, 4)?;
            lb2.stop()?;
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        clear_nat(&topo, &instance);
        result
    });
}

fn named_echo_servers(
    topo: &Topology,
    port: u16,
) -> anyhow::Result<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>> {
    let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, port)).collect();
    lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)
}

/// Connects through the frontend; returns the stream and which server took it.
fn open_named(topo: &Topology, port: u16) -> anyhow::Result<(std::net::TcpStream, u8)> {
    use std::io::Read;
    let mut s = topo.in_client(|| lb_tests::traffic::connect(sa(LB_V4, port)))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut id = [0u8; 1];
    s.read_exact(&mut id)?;
    Ok((s, id[0]))
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_failover_moves_new_flows_and_keeps_old_ones() {
    run_test(|| {
        use std::sync::atomic::Ordering;
        let topo = Topology::new("natfail")?;
        let port = 9104;
        let stops = named_echo_servers(&topo, port)?;
        let cfg = nat_config(&hp(LB_V4, port), &BACKENDS_V4, port, "")
            .replace("check inter 500ms", "check inter 300ms fall 2 rise 2");
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let mut old = Vec::new();
            let mut per = std::collections::BTreeMap::new();
            for _ in 0..6 {
                let (s, id) = open_named(&topo, port)?;
                *per.entry(id).or_insert(0) += 1;
                old.push((s, id));
            }
            anyhow::ensure!(
                per.values().all(|&n| n == 2),
                "round robin 2/2/2, got {per:?}"
            );
            // The runtime API lists them, one line per flow.
            let sock = std::path::PathBuf::from(format!("/run/lb/{instance}.sock"));
            let sess = util::socat(&sock, "show sess\n")?;
            let nat_lines: Vec<&str> = sess
                .lines()
                .filter(|l| l.contains("path=nat") && l.contains("state=running"))
                .collect();
            anyhow::ensure!(
                nat_lines.len() == 6
                    && nat_lines
                        .iter()
                        .all(|l| l.contains(&format!("src={CLIENT_V4}:"))),
                "show sess:\n{sess}"
            );
            println!("[lb-tests] show sess: {}", nat_lines[0]);
            let t0 = std::time::Instant::now();
            stops[0].store(true, Ordering::Relaxed);
            lb_tests::scenario::wait_all(&lb, &NAMES[..1], "DOWN", Duration::from_secs(5))?;
            println!(
                "[lb-tests] nat1 DOWN {:?} after its listener closed",
                t0.elapsed()
            );
            let mut new = std::collections::BTreeMap::new();
            for _ in 0..6 {
                let (_s, id) = open_named(&topo, port)?;
                *new.entry(id).or_insert(0) += 1;
            }
            anyhow::ensure!(
                !new.contains_key(&11) && new.values().all(|&n| n == 3),
                "new flows while nat1 is DOWN: {new:?} (want 3 each on .12 and .13)"
            );
            for (s, id) in old.iter_mut() {
                echo_round(s, *id).map_err(|e| anyhow::anyhow!("old flow on .{id}: {e}"))?;
            }
            println!(
                "[lb-tests] new flows {new:?}; the 6 old flows (2 on the DOWN server) still echo"
            );
            Ok(())
        })();
        wind_down(&topo, lb, &instance, &[&stops]);
        result
    });
}

/// Waits (up to 3 s, without sending) for the reset lb sends a killed flow.
fn expect_reset(s: &mut std::net::TcpStream, what: &str) -> anyhow::Result<()> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        other => anyhow::bail!("{what}: expected a reset, got {other:?}"),
    }
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_shutdown_sessions_resets_both_ends() {
    run_test(|| {
        use std::sync::atomic::Ordering;
        let topo = Topology::new("natkillsess")?;
        let port = 9105;
        let stops = named_echo_servers(&topo, port)?;
        let cfg = nat_config(&hp(LB_V4, port), &BACKENDS_V4, port, "").replace(
            "check inter 500ms",
            "check inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions",
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let mut flows = Vec::new();
            for _ in 0..6 {
                flows.push(open_named(&topo, port)?);
            }
            // on-marked-down shutdown-sessions.
            stops[0].store(true, Ordering::Relaxed);
            lb_tests::scenario::wait_all(&lb, &NAMES[..1], "DOWN", Duration::from_secs(5))?;
            for (s, id) in flows.iter_mut().filter(|(_, id)| *id == 11) {
                expect_reset(s, &format!("flow on .{id} after its server went DOWN"))?;
            }
            // The runtime API's shutdown sessions.
            let sock = std::path::PathBuf::from(format!("/run/lb/{instance}.sock"));
            let answer = util::socat(&sock, "shutdown sessions server nat_backend/nat2\n")?;
            anyhow::ensure!(
                answer.trim().is_empty(),
                "shutdown sessions answered {answer:?}"
            );
            for (s, id) in flows.iter_mut().filter(|(_, id)| *id == 12) {
                expect_reset(s, &format!("flow on .{id} after shutdown sessions"))?;
            }
            for (s, id) in flows.iter_mut().filter(|(_, id)| *id == 13) {
                echo_round(s, *id)?;
            }
            // The servers got theirs too: only the two flows of .13 remain.
            let mut established = 0;
            util::wait_until(
                "the servers' sockets of the reset flows gone",
                Duration::from_secs(3),
                Duration::from_millis(100),
                || {
                    let mut ss = lb_tests::netns::ns_cmd(&topo.srv.path(), "ss");
                    ss.args([
                        "-Htn",
                        "state",
                        "established",
                        &format!("( sport = :{port} )"),
                    ]);
                    let out = util::run(&mut ss)?;
                    established = out.lines().filter(|l| !l.trim().is_empty()).count();
                    Ok(established == 2)
                },
            )
            .map_err(|e| anyhow::anyhow!("{e:#}: {established} server sockets established"))?;
            let rows = lb.show_servers()?;
            let left: Vec<(String, u64)> =
                rows.iter().map(|r| (r.name.clone(), r.cur_conns)).collect();
            anyhow::ensure!(
                left == vec![("nat1".into(), 0), ("nat2".into(), 0), ("nat3".into(), 2)],
                "flows counted after the resets: {left:?}"
            );
            println!("[lb-tests] nat: DOWN and shutdown sessions reset their flows at both ends, others still echo; counts {left:?}");
            Ok(())
        })();
        wind_down(&topo, lb, &instance, &[&stops]);
        result
    });
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_refusals_are_resets_counted_and_logged() {
    run_test(|| {
        let topo = Topology::new("natrefuse")?;
        let (full_port, ports_port) = (9106, 9107);
        let stops = named_echo_servers(&topo, full_port)?;
        let stops2 = named_echo_servers(&topo, ports_port)?;
        // Five balancer ports: 65531-65535.
        let mut sysctl = lb_tests::netns::ns_cmd(&topo.lb.path(), "sysctl");
        sysctl.args(["-qw", "net.ipv4.ip_local_port_range=1024 65530"]);
        util::run(&mut sysctl)?;
        let cfg = format!(
            "global\n    xdp-interface eth-c\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend full\n    bind {}\n    data-path nat\n    default_backend one\n\
             backend one\n    server only {} maxconn 2\n\
             frontend ports\n    bind {}\n    data-path nat\n    default_backend two\n\
             backend two\n    server other {}\n",
            hp(LB_V4, full_port),
            hp(BACKENDS_V4[0], full_port),
            hp(LB_V4, ports_port),
            hp(BACKENDS_V4[1], ports_port),
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let refused = |port: u16| -> anyhow::Result<()> {
            let t = std::time::Instant::now();
            match topo.in_client(|| lb_tests::traffic::connect(sa(LB_V4, port))) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    anyhow::ensure!(
                        t.elapsed() < Duration::from_secs(1),
                        "refused only after {:?}",
                        t.elapsed()
                    );
                    Ok(())
                }
                other => anyhow::bail!("port {port}: expected a refusal, got {other:?}"),
            }
        };
        let result = (|| -> anyhow::Result<()> {
            let a = open_named(&topo, full_port)?;
            let b = open_named(&topo, full_port)?;
            refused(full_port)?;
            // A flow that ends frees its slot.
            drop(a);
            util::wait_until(
                "the closed flow counted out",
                Duration::from_secs(3),
                Duration::from_millis(50),
                || {
                    Ok(lb
                        .show_servers()?
                        .iter()
                        .any(|r| r.name == "only" && r.cur_conns == 1))
                },
            )?;
            let c = open_named(&topo, full_port)?;
            let mut five = Vec::new();
            for _ in 0..5 {
                five.push(open_named(&topo, ports_port)?);
            }
            refused(ports_port)?;
            let stats: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
            anyhow::ensure!(
                stats["nat_full"] == 1 && stats["nat_no_port"] == 1,
                "refusal counters: nat_full {} nat_no_port {}",
                stats["nat_full"],
                stats["nat_no_port"]
            );
            util::wait_until(
                "the refusals in the log",
                Duration::from_secs(3),
                Duration::from_millis(100),
                || {
                    let log = lb.log_tail(200);
                    Ok(log.contains("every usable server is at its maxconn")
                        && log.contains("no free balancer port"))
                },
            )?;
            let log = lb.log_tail(200);
            for l in log.lines().filter(|l| l.contains("SYN(s) refused")) {
                println!("[lb-tests] log: {l}");
            }
            drop((b, c, five));
            Ok(())
        })();
        wind_down(&topo, lb, &instance, &[&stops, &stops2]);
        result
    });
}

/// What lb decides without a connection still holds in front of the NAT
/// path: the XDP front door drops a rejected source's SYNs, a drained server
/// gets no new flow, leastconn spreads concurrent flows, and a flow idle past
/// its timeout is gone (its next packet meets the host, which resets it).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_rules_drain_leastconn_and_idle_timeout() {
    run_test(|| {
        let topo = Topology::new("natrules")?;
        let (port, lc_port) = (9108, 9109);
        let stops = named_echo_servers(&topo, port)?;
        let stops2 = named_echo_servers(&topo, lc_port)?;
        // A second client address, rejected by the rules.
        topo.client
            .ip(&["addr", "add", "10.210.1.9/24", "dev", "eth0"])?;
        let mut cfg = nat_config(&hp(LB_V4, port), &BACKENDS_V4, port, "")
            .replace("timeout client 30s", "timeout client 2s")
            .replace("timeout server 30s", "timeout server 2s")
            .replace(
                "    data-path nat\n",
                "    data-path nat\n    tcp-request connection reject if { src 10.210.1.9 }\n",
            );
        cfg.push_str(&format!(
            "frontend lc\n    bind {}\n    data-path nat\n    default_backend lc_backend\n\
             backend lc_backend\n    balance leastconn\n",
            hp(LB_V4, lc_port)
        ));
        for (i, b) in BACKENDS_V4.iter().enumerate() {
            cfg.push_str(&format!("    server lc{} {}\n", i + 1, hp(b, lc_port)));
        }
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            // The front door: the rejected source's SYNs never get an answer.
            let rejected = topo.in_client(|| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                s.bind(&sa("10.210.1.9", 0).into())?;
                s.connect_timeout(&sa(LB_V4, port).into(), Duration::from_secs(2))
            });
            anyhow::ensure!(
                rejected.is_err(),
                "a rejected source got through: {rejected:?}"
            );
            let stats: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
            anyhow::ensure!(
                stats["xdp_acl_drop"].as_u64() >= Some(1) && stats["nat_new"] == 0,
                "xdp_acl_drop {} nat_new {}",
                stats["xdp_acl_drop"],
                stats["nat_new"]
            );
            // A drained server takes no new flow.
            let sock = std::path::PathBuf::from(format!("/run/lb/{instance}.sock"));
            util::socat(&sock, "set server nat_backend/nat2 state drain\n")?;
            std::thread::sleep(Duration::from_millis(300));
            let mut seen = std::collections::BTreeMap::new();
            for _ in 0..6 {
                let (_s, id) = open_named(&topo, port)?;
                *seen.entry(id).or_insert(0) += 1;
            }
            anyhow::ensure!(
                !seen.contains_key(&12) && seen.values().all(|&n| n == 3),
                "with nat2 drained: {seen:?}"
            );
            // leastconn: six flows held open spread 2/2/2.
            let mut held = Vec::new();
            let mut lc = std::collections::BTreeMap::new();
            for _ in 0..6 {
                let (s, id) = open_named(&topo, lc_port)?;
                *lc.entry(id).or_insert(0) += 1;
                held.push(s);
            }
            anyhow::ensure!(lc.values().all(|&n| n == 2), "leastconn: {lc:?}");
            // Idle past the larger of timeout client/server (2 s): swept.
            let (mut idle, id) = open_named(&topo, port)?;
            echo_round(&mut idle, id)?;
            std::thread::sleep(Duration::from_millis(3500));
            let r = echo_round(&mut idle, id);
            anyhow::ensure!(
                r.is_err(),
                "a flow idle for 3.5 s with 2 s timeouts still answers"
            );
            println!(
                "[lb-tests] nat: ACL drop, drain {seen:?}, leastconn {lc:?}, idle flow ended ({})",
                r.unwrap_err()
            );
            drop(held);
            Ok(())
        })();
        wind_down(&topo, lb, &instance, &[&stops, &stops2]);
        result
    });
}

/// A flow table too small for the flows: the LRU evicts running flows; lb
/// says in the log that the table is full (and counts the halves it finds
/// alone, `nat_orphan`). No crash, and new flows still work.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_full_table_is_counted_and_logged() {
    run_test(|| {
        let topo = Topology::new("nattable")?;
        let port = 9110;
        let stops = named_echo_servers(&topo, port)?;
        let cfg = nat_config(&hp(LB_V4, port), &BACKENDS_V4, port, "");
        std::env::set_var("LB_TEST_NAT_FLOWS", "1024");
        let lb = topo.start_lb(&cfg, &[]);
        std::env::remove_var("LB_TEST_NAT_FLOWS");
        let lb = lb?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            // 700 flows held open: 1,400 entries for a table of 1,024 (a
            // flow whose entries are evicted while it opens is not counted).
            let mut held = Vec::new();
            for _ in 0..700 {
                if let Ok(f) = open_named(&topo, port) {
                    held.push(f);
                }
            }
            anyhow::ensure!(held.len() >= 300, "only {} of 700 flows opened", held.len());
            let mut orphans = 0;
            util::wait_until(
                "the full table in the log",
                Duration::from_secs(8),
                Duration::from_millis(200),
                || {
                    let st: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
                    orphans = st["nat_orphan"].as_u64().unwrap_or(0);
                    Ok(lb.log_tail(100).contains("the flow table is full (")
                        || lb
                            .log_tail(100)
                            .contains("the flow table (1024 entries) is full"))
                },
            )
            .map_err(|e| anyhow::anyhow!("{e:#}: nat_orphan {orphans}\n{}", lb.log_tail(20)))?;
            let held_n = held.len();
            drop(held);
            // The daemon is fine and new flows still work.
            let (mut s, id) = open_named(&topo, port)?;
            echo_round(&mut s, id)?;
            println!(
                "[lb-tests] nat: table of 1024 entries, {} flows held: {orphans} halves found alone, logged",
                held_n
            );
            Ok(())
        })();
        wind_down(&topo, lb, &instance, &[&stops]);
        result
    });
}
