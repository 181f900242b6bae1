//! Start-up: binds over the ephemeral port range start and serve (lb's own
//! loopback self-test connection must never be steered to a frontend), and
//! a start-up interrupted at any moment leaves nothing behind.

use lb_tests::netns::ns_cmd;
use lb_tests::traffic::{connect, NameServers};
use lb_tests::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn served_by(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut name = String::new();
    BufReader::new(s).read_line(&mut name)?;
    Ok(name.trim().to_string())
}

/// `bind 127.0.0.1:32768-60999` (the whole ephemeral range of loopback) and
/// `bind 10.210.1.1:20000-39999`: lb gets ready, and connections to ports of
/// both ranges reach the backend.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn binds_over_the_ephemeral_ports_start_and_serve() {
    run_test(|| {
        let topo = Topology::new("ephem")?;
        let _servers = NameServers::start(topo.srv.name(), &[(sa(BACKENDS_V4[0], 9720), "s1")])?;
        let cfg = "\
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend lo
    bind 127.0.0.1:32768-60999
    default_backend b
frontend wide
    bind 10.210.1.1:20000-39999
    default_backend b
backend b
    server s1 10.210.2.11:9720 check inter 500ms
";
        let t = Instant::now();
        let lb = topo.start_lb(cfg, &[])?;
        let ready = t.elapsed();
        lb.wait_state("s1", "UP", Duration::from_secs(5))?;
        for port in [32768u16, 45000, 60999] {
            let who = topo.in_lb(|| served_by(sa("127.0.0.1", port)))?;
            anyhow::ensure!(who == "s1", "127.0.0.1:{port} served by {who:?}");
        }
        for port in [20000u16, 33333, 39999] {
            let who = topo.in_client(|| served_by(sa(LB_V4, port)))?;
            anyhow::ensure!(who == "s1", "{LB_V4}:{port} served by {who:?}");
        }
        let log = std::fs::read_to_string(lb.log_path())?;
        anyhow::ensure!(
            log.contains("splice self-test passed"),
            "the self-test did not pass:\n{log}"
        );
        println!(
            "[lb-tests] 48,232 bind keys over the ephemeral ports: ready in {:.2} s, 6 connections served",
            ready.as_secs_f64()
        );
        Ok(())
    })
}

/// SIGINT at a range of moments from the process start to well after
/// ready: every run ends by itself within 5 s and leaves no pinned maps and
/// no runtime socket; the next run finds nothing to recover. Some of the
/// signals must land during start-up itself.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn an_interrupted_start_up_leaves_nothing_behind() {
    run_test(|| {
        let topo = Topology::new("intr")?;
        let cfg = "\
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend f
    bind 10.210.1.1:9730
    default_backend b
frontend many
    bind 10.210.1.1:10000-29999
    bind 127.0.0.1:30000-49999
    default_backend b
backend b
    server s1 10.210.2.11:9730 check inter 500ms
";
        let instance = format!("lbintr{}", std::process::id());
        let cfg_path = topo.write_cfg("intr.cfg", cfg)?;
        let pins = Path::new("/sys/fs/bpf/lb").join(&instance);
        let sock = Path::new("/run/lb").join(format!("{instance}.sock"));
        let bin = lb_bin()?;
        let mut outcomes = Vec::new();
        // From the process start to well after ready (40,001 bind keys make
        // start-up last a few hundred milliseconds).
        for delay_ms in (0..=600u64).step_by(20).chain([800, 1200]) {
            let log = topo.dir.path().join(format!("intr-{delay_ms}.log"));
            let mut child = ns_cmd(&topo.lb.path(), &bin)
                .args(["run", "-f"])
                .arg(&cfg_path)
                .args(["--instance", &instance])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()?;
            std::thread::sleep(Duration::from_millis(delay_ms));
            util::signal(child.id(), libc::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(st) = child.try_wait()? {
                    break st;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(&pins);
                    anyhow::bail!(
                        "SIGINT {delay_ms} ms after the start: lb still running 5 s later\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let stage = if text.contains("lb ready") {
                "ready"
            } else if text.contains("stopped during start-up") {
                "starting"
            } else {
                "before start-up"
            };
            let left: Vec<String> = [&pins, &sock]
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if !left.is_empty() {
                let _ = std::fs::remove_dir_all(&pins);
                let _ = std::fs::remove_file(&sock);
                anyhow::bail!(
                    "SIGINT {delay_ms} ms after the start ({stage}, {status}) left {left:?}\n{text}"
                );
            }
            anyhow::ensure!(
                !text.contains("did not stop cleanly"),
                "a previous run was taken for a crash:\n{text}"
            );
            outcomes.push(format!("{delay_ms}ms:{stage}"));
        }
        println!(
            "[lb-tests] SIGINT during start-up, nothing left behind: {}",
            outcomes.join(" ")
        );
        anyhow::ensure!(
            outcomes.iter().any(|o| o.ends_with(":starting")),
            "no SIGINT landed during start-up: {outcomes:?}"
        );
        Ok(())
    })
}
