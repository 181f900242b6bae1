//! `data-path connect`: a process on the balancer's host (here: in lb's
//! network namespace) that connects to a frontend address is connected
//! straight to a server by `lb_connect4/6`, and `getpeername` shows the
//! address it asked for. Round robin, v4-mapped addresses, counts, health,
//! weights, what stays untouched (another namespace, another cgroup, remote
//! clients), and a daemon that dies while local clients keep connecting.

use lb_tests::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

const NAMES: [&str; 3] = ["c1", "c2", "c3"];

fn config(port: u16, data_path: &str, weights: [u32; 3]) -> String {
    let mut s = format!(
        "global\n    maxconn 4096\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend local_frontend\n    bind *:{port}\n    mode tcp\n    data-path {data_path}\n    default_backend local_backend\n\
         backend local_backend\n    mode tcp\n    balance roundrobin\n"
    );
    for ((n, ip), w) in NAMES.iter().zip(BACKENDS_V4).zip(weights) {
        s.push_str(&format!(
            "    server {n} {} weight {w} check inter 300ms fall 2 rise 2\n",
            hp(ip, port)
        ));
    }
    s
}

fn named_servers(
    topo: &Topology,
    port: u16,
) -> anyhow::Result<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>> {
    let addrs: Vec<SocketAddr> = BACKENDS_V4.iter().map(|b| sa(b, port)).collect();
    lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)
}

/// Connects from lb's namespace (this host's client) and reads the id.
fn local(topo: &Topology, to: SocketAddr) -> anyhow::Result<(TcpStream, u8)> {
    let mut s = topo.in_lb(|| lb_tests::traffic::connect(to))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut id = [0u8; 1];
    s.read_exact(&mut id)?;
    Ok((s, id[0]))
}

fn stat(lb: &Lb, name: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
    v.get(name)
        .and_then(|x| x.as_u64())
        .ok_or_else(|| anyhow::anyhow!("no counter {name} in {v}"))
}

/// The end of a test: the echo servers stop, lb (if still ours) stops, and
/// the connect state it keeps pinned goes.
fn wind_down(
    topo: &Topology,
    lb: Option<Lb>,
    instance: &str,
    stops: &[std::sync::Arc<std::sync::atomic::AtomicBool>],
) {
    for s in stops {
        s.store(true, Ordering::Relaxed);
    }
    if let Some(lb) = lb {
        let _ = lb.stop();
    }
    clear_connect(topo, instance);
}

/// Removes the connect state the daemon keeps pinned across restarts.
fn clear_connect(topo: &Topology, instance: &str) {
    let Ok(bin) = lb_bin() else {
        return;
    };
    let mut cmd = lb_tests::netns::ns_cmd(&topo.lb.path(), &bin);
    cmd.args(["clear", "connect", "--instance", instance]);
    let _ = util::output(&mut cmd);
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_balances_this_hosts_clients() {
    run_test(|| {
        let topo = Topology::new("conn")?;
        let port = 9301;
        let stops = named_servers(&topo, port)?;
        let lb = topo.start_lb(&config(port, "connect", [1, 1, 1]), &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let vip = sa("127.0.0.1", port);
            // Round robin, and getpeername shows the frontend address.
            let mut per = BTreeMap::new();
            let mut held = Vec::new();
            for _ in 0..6 {
                let (s, id) = local(&topo, vip)?;
                anyhow::ensure!(s.peer_addr()? == vip, "getpeername: {:?}", s.peer_addr());
                *per.entry(id).or_insert(0) += 1;
                held.push(s);
            }
            anyhow::ensure!(
                per == BTreeMap::from([(11, 2), (12, 2), (13, 2)]),
                "round robin 2/2/2 over .11/.12/.13, got {per:?}"
            );
            anyhow::ensure!(stat(&lb, "connect_balanced")? == 6, "connect_balanced");
            // The kernel counts them: current sessions, then none once closed.
            let cur: Vec<u64> = lb.show_servers()?.iter().map(|r| r.cur_conns).collect();
            anyhow::ensure!(cur == [2, 2, 2], "current connections {cur:?}");
            drop(held);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let rows = lb.show_servers()?;
                if rows.iter().all(|r| r.cur_conns == 0 && r.total_conns == 2) {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "current and total connections: {:?}",
                    rows.iter()
                        .map(|r| (r.cur_conns, r.total_conns))
                        .collect::<Vec<_>>()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            // An IPv6 socket to the v4-mapped address: balanced too.
            let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse()?;
            let (s, id) = local(&topo, mapped)?;
            anyhow::ensure!(
                (11..=13).contains(&id) && s.peer_addr()? == mapped,
                "v4-mapped: id {id}, peer {:?}",
                s.peer_addr()
            );
            drop(s);
            // A remote client takes the frontend's proxy, untouched.
            let before = stat(&lb, "connect_balanced")?;
            let mut r = topo.in_client(|| lb_tests::traffic::connect(sa(LB_V4, port)))?;
            r.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut id = [0u8; 1];
            r.read_exact(&mut id)?;
            drop(r);
            // Another network namespace (the client's) is not touched: its
            // own 127.0.0.1 has nothing listening there.
            let other = topo.in_client(|| lb_tests::traffic::connect(sa("127.0.0.1", port)));
            anyhow::ensure!(
                other.as_ref().err().map(|e| e.kind())
                    == Some(std::io::ErrorKind::ConnectionRefused),
                "a connect in another namespace: {other:?}"
            );
            anyhow::ensure!(
                stat(&lb, "connect_balanced")? == before,
                "the remote client or the other namespace was balanced at connect"
            );
            // shutdown sessions: the server's sockets are destroyed (the
            // client sees the connection aborted), the others go on.
            let mut three: Vec<(TcpStream, u8)> = (0..3)
                .map(|_| local(&topo, vip))
                .collect::<anyhow::Result<_>>()?;
            let sock = std::path::PathBuf::from(format!("/run/lb/{instance}.sock"));
            util::socat(&sock, "shutdown sessions server local_backend/c2\n")?;
            // Killed by the daemon's connect thread: wait for it without
            // sending (a read ends with the abort).
            for (s, id) in three.iter_mut().filter(|(_, id)| *id == 12) {
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let mut b = [0u8; 4];
                let r = s.read(&mut b);
                anyhow::ensure!(
                    r.as_ref()
                        .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                            && e.kind() != std::io::ErrorKind::TimedOut),
                    "c2's socket (.{id}) after shutdown sessions: {r:?}"
                );
            }
            for (s, id) in three.iter_mut().filter(|(_, id)| *id != 12) {
                use std::io::Write;
                let mut b = [0u8; 4];
                let r = s.write_all(b"ping").and_then(|_| s.read_exact(&mut b));
                anyhow::ensure!(r.is_ok() && &b == b"ping", "socket on .{id}: {r:?}");
            }
            drop(three);
            // Health: a server whose listener stops gets no new connect.
            let t0 = std::time::Instant::now();
            stops[0].store(true, Ordering::Relaxed);
            lb_tests::scenario::wait_all(&lb, &NAMES[..1], "DOWN", Duration::from_secs(5))?;
            // fall 2 x inter 300 ms, plus a second.
            let took = t0.elapsed();
            anyhow::ensure!(
                took <= Duration::from_millis(1600),
                "DOWN only {took:?} after the listener closed"
            );
            let mut after = BTreeMap::new();
            for _ in 0..6 {
                let (_s, id) = local(&topo, vip)?;
                *after.entry(id).or_insert(0) += 1;
            }
            anyhow::ensure!(
                after == BTreeMap::from([(12, 3), (13, 3)]),
                "with .11 DOWN: {after:?}"
            );
            println!(
                "[lb-tests] connect: 2/2/2 with getpeername {vip}, counted in and out, \
                 v4-mapped balanced, remote and other-namespace clients untouched, \
                 shutdown sessions destroyed c2's socket, DOWN after {took:?} and skipped: {after:?}"
            );
            Ok(())
        })();
        wind_down(&topo, Some(lb), &instance, &stops);
        result
    });
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_weights_and_a_daemon_gone() {
    run_test(|| {
        let topo = Topology::new("connw")?;
        let port = 9302;
        let stops = named_servers(&topo, port)?;
        let cfg = config(port, "connect", [1, 2, 3]);
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let vip = sa("127.0.0.1", port);
            let mut per = BTreeMap::new();
            for _ in 0..600 {
                let (_s, id) = local(&topo, vip)?;
                *per.entry(id).or_insert(0u32) += 1;
            }
            for (id, w) in [(11u8, 1u32), (12, 2), (13, 3)] {
                let want = 100 * w;
                let got = per.get(&id).copied().unwrap_or(0);
                anyhow::ensure!(
                    got.abs_diff(want) * 10 <= want,
                    "weights 1:2:3 over 600 connects: {per:?}"
                );
            }
            // The daemon dies with a local client connected: the programs
            // stay, new connects still go straight to the servers.
            let (held, _) = local(&topo, vip)?;
            lb.kill()?;
            let mut while_gone = BTreeMap::new();
            for _ in 0..6 {
                let (s, id) = local(&topo, vip)?;
                anyhow::ensure!(s.peer_addr()? == vip, "getpeername while lb is gone");
                *while_gone.entry(id).or_insert(0) += 1;
            }
            anyhow::ensure!(
                while_gone.values().sum::<u32>() == 6,
                "connects while lb is gone: {while_gone:?}"
            );
            // A new daemon takes the links over and counts the socket the
            // old one connected.
            let lb = topo.start_lb_instance(&cfg, &instance, &[])?;
            let log = std::fs::read_to_string(lb.log_path())?;
            anyhow::ensure!(
                log.contains("previous daemon's links")
                    && log.contains("counted on their servers again"),
                "restart log:\n{log}"
            );
            let cur: u64 = lb.show_servers()?.iter().map(|r| r.cur_conns).sum();
            anyhow::ensure!(cur == 1, "adopted socket counted: {cur}");
            drop(held);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while lb.show_servers()?.iter().map(|r| r.cur_conns).sum::<u64>() != 0 {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "adopted socket not counted out"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = lb.stop();
            println!(
                "[lb-tests] connect: weights 1:2:3 over 600 = {per:?}; with lb killed, 6 more \
                 connects {while_gone:?}; the restarted daemon took the links and the socket over"
            );
            Ok(())
        })();
        wind_down(&topo, None, &instance, &stops);
        result
    });
}

/// The cgroup v2 hierarchy's root, from /proc/self/mounts.
fn cgroup2_root() -> anyhow::Result<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .ok_or_else(|| anyhow::anyhow!("no cgroup2 filesystem mounted"))
}

/// A process moved into `cgroup` (in lb's namespace) connects to `port` on
/// 127.0.0.1 and prints the server's id byte.
fn id_from_cgroup(topo: &Topology, cgroup: &std::path::Path, port: u16) -> anyhow::Result<u8> {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec 3<>/dev/tcp/127.0.0.1/{port} && head -c1 <&3 | od -An -tu1",
        cgroup.display()
    );
    let mut cmd = lb_tests::netns::ns_cmd(&topo.lb.path(), "bash");
    cmd.args(["-c", &script]);
    let out = util::run(&mut cmd)?;
    Ok(out.trim().parse()?)
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_only_the_named_cgroup() {
    run_test(|| {
        let topo = Topology::new("conncg")?;
        let port = 9303;
        let stops = named_servers(&topo, port)?;
        let cg = cgroup2_root()?.join(format!("lbtest-{}", std::process::id()));
        std::fs::create_dir_all(&cg)?;
        let cfg = config(
            port,
            &format!("splice connect cgroup {}", cg.display()),
            [1, 1, 1],
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(id_from_cgroup(&topo, &cg, port)?);
            }
            ids.sort();
            anyhow::ensure!(ids == [11, 12, 13], "connects from the cgroup: {ids:?}");
            anyhow::ensure!(stat(&lb, "connect_balanced")? == 3, "connect_balanced");
            // This process is not in the cgroup: it reaches the frontend's
            // listener (the splice path), not a server directly.
            let (_s, id) = local(&topo, sa("127.0.0.1", port))?;
            anyhow::ensure!(
                (11..=13).contains(&id) && stat(&lb, "connect_balanced")? == 3,
                "a process outside the cgroup was balanced at connect"
            );
            println!(
                "[lb-tests] connect: the cgroup's processes balanced at connect ({ids:?}), \
                 others proxied"
            );
            Ok(())
        })();
        wind_down(&topo, Some(lb), &instance, &stops);
        let _ = std::fs::remove_dir(&cg);
        result
    });
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_counts_out_a_connect_the_kernel_failed() {
    run_test(|| {
        let topo = Topology::new("connfail")?;
        let port = 9304;
        // No route to it and no check: the server stays UP, every connect to
        // it fails in the kernel after lb_connect4 counted it in.
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend f\n    bind 127.0.0.1:{port}\n    data-path connect\n    default_backend b\n\
             backend b\n    server nowhere 10.254.254.1:{port}\n"
        );
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            let r = topo.in_lb(|| lb_tests::traffic::connect(sa("127.0.0.1", port)));
            anyhow::ensure!(r.is_err(), "a connect to an unroutable server: {r:?}");
            anyhow::ensure!(stat(&lb, "connect_balanced")? == 1, "connect_balanced");
            let t0 = std::time::Instant::now();
            while lb.server("nowhere")?.cur_conns != 0 {
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(25),
                    "the failed connect is still counted after {:?}",
                    t0.elapsed()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            println!(
                "[lb-tests] connect: a connect the kernel failed was counted out after {:?}",
                t0.elapsed()
            );
            Ok(())
        })();
        let _ = lb.stop();
        clear_connect(&topo, &instance);
        result
    });
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_maxconn_is_a_hard_limit() {
    run_test(|| {
        let topo = Topology::new("connmax")?;
        let port = 9305;
        let stops = named_servers(&topo, port)?;
        let cfg = config(port, "connect", [1, 1, 1]).replace(" weight 1 ", " weight 1 maxconn 1 ");
        anyhow::ensure!(cfg.matches("maxconn 1 ").count() == 3, "{cfg}");
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let vip = sa("127.0.0.1", port);
            let mut held: Vec<(TcpStream, u8)> = (0..3)
                .map(|_| local(&topo, vip))
                .collect::<anyhow::Result<_>>()?;
            let mut ids: Vec<u8> = held.iter().map(|(_, id)| *id).collect();
            ids.sort();
            anyhow::ensure!(ids == [11, 12, 13], "one per server: {ids:?}");
            // Every server at its maxconn: the fourth goes to the frontend's
            // listener, whose proxy queues it until a server frees up.
            let waiter = {
                let topo = &topo;
                std::thread::scope(|sc| {
                    let h = sc.spawn(move || local(topo, vip));
                    std::thread::sleep(Duration::from_millis(500));
                    let (s, freed) = held.remove(1);
                    drop(s);
                    h.join().map(|r| (r, freed))
                })
            };
            let (r, freed) = waiter.map_err(|_| anyhow::anyhow!("client thread panicked"))?;
            let (_s, id) = r?;
            anyhow::ensure!(
                id == freed,
                "the queued client went to .{id}, not the freed .{freed}"
            );
            anyhow::ensure!(
                stat(&lb, "connect_no_server")? == 1 && stat(&lb, "connect_balanced")? == 3,
                "counters: {}",
                lb.show_stats()?
            );
            println!(
                "[lb-tests] connect: maxconn 1 x 3 held, the 4th queued by the proxy and served by \
                 .{freed} once it was free"
            );
            Ok(())
        })();
        wind_down(&topo, Some(lb), &instance, &stops);
        result
    });
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn connect_ipv6() {
    run_test(|| {
        let topo = Topology::new("conn6")?;
        let port = 9306;
        let addrs: Vec<SocketAddr> = BACKENDS_V6.iter().map(|b| sa(b, port)).collect();
        let stops = lb_tests::traffic::named_echo_servers(topo.srv.name(), &addrs)?;
        let mut cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
             frontend f6\n    bind :::{port}\n    data-path connect\n    default_backend b6\n\
             backend b6\n    balance roundrobin\n"
        );
        for (n, b) in NAMES.iter().zip(BACKENDS_V6) {
            cfg.push_str(&format!(
                "    server {n} {} check inter 300ms\n",
                hp(b, port)
            ));
        }
        let lb = topo.start_lb(&cfg, &[])?;
        let instance = lb.instance().to_string();
        let result = (|| -> anyhow::Result<()> {
            lb_tests::scenario::wait_all(&lb, &NAMES, "UP", Duration::from_secs(10))?;
            let mut per = BTreeMap::new();
            for vip in [sa("::1", port), sa(LB_V6, port), sa("::1", port)] {
                let (s, id) = local(&topo, vip)?;
                anyhow::ensure!(
                    s.peer_addr()? == vip,
                    "getpeername {:?} for {vip}",
                    s.peer_addr()
                );
                *per.entry(id).or_insert(0) += 1;
            }
            anyhow::ensure!(
                per == BTreeMap::from([(0x11, 1), (0x12, 1), (0x13, 1)]),
                "round robin over the IPv6 servers: {per:?}"
            );
            anyhow::ensure!(stat(&lb, "connect_balanced")? == 3, "connect_balanced");
            println!(
                "[lb-tests] connect: IPv6 ([::1] and {LB_V6}) balanced {per:?}, getpeername kept"
            );
            Ok(())
        })();
        wind_down(&topo, Some(lb), &instance, &stops);
        result
    });
}
