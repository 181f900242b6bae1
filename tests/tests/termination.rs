//! The termination state of `option tcplog` lines, compared with HAProxy 2.6
//! on the same situations: normal end, client reset, server reset, client
//! timeout, server timeout, equal timeouts, connection refused; both data
//! paths. lb and
//! HAProxy run the same proxies side by side (HAProxy 100 ports higher) and
//! log to one syslog socket.

use lb_tests::haproxy::Haproxy;
use lb_tests::syslog::Syslog;
use lb_tests::traffic::{connect, ProbeServer};
use lb_tests::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

const BASE: u16 = 9740;
const SRV_PORT: u16 = 9740;
/// Nothing listens there.
const REFUSED_PORT: u16 = 9749;

fn config(log: &std::path::Path, base: u16) -> String {
    let b = BACKENDS_V4[0];
    format!(
        "global\n    log {log} local0\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    retries 0\n\
         \x20   timeout connect 1s\n    timeout client 4s\n    timeout server 4s\n\
         frontend plain\n    bind {lb}:{p0}\n    default_backend be_plain\n\
         frontend client_idle\n    bind {lb}:{p1}\n    timeout client 1s\n    default_backend be_plain\n\
         frontend server_idle\n    bind {lb}:{p2}\n    default_backend be_short\n\
         frontend equal_idle\n    bind {lb}:{p3}\n    timeout client 1s\n    default_backend be_short\n\
         frontend refused\n    bind {lb}:{p4}\n    default_backend be_refused\n\
         backend be_plain\n    server s1 {b}:{SRV_PORT}\n\
         backend be_short\n    timeout server 1s\n    server s1 {b}:{SRV_PORT}\n\
         backend be_refused\n    server s1 {b}:{REFUSED_PORT}\n",
        log = log.display(),
        lb = LB_V4,
        p0 = base,
        p1 = base + 1,
        p2 = base + 2,
        p3 = base + 3,
        p4 = base + 4,
    )
}

/// One client action against the frontend at `port`.
fn scenario(name: &str, port: u16) -> anyhow::Result<()> {
    let mut s = connect(sa(LB_V4, port))?;
    s.set_read_timeout(Some(Duration::from_secs(8)))?;
    let mut k = [0u8; 1];
    let mut rest = Vec::new();
    match name {
        "normal end" => {
            // The ProbeServer's `F`: we close first, it answers and closes.
            s.write_all(b"F")?;
            s.read_exact(&mut k)?;
            s.write_all(b"HELLO")?;
            s.shutdown(Shutdown::Write)?;
            s.read_to_end(&mut rest)?;
        }
        "client reset" => {
            s.write_all(b"H")?;
            s.read_exact(&mut k)?;
            lb_tests::traffic::set_linger_zero(&s)?;
        }
        "server reset" => {
            s.write_all(b"R")?;
            s.read_exact(&mut k)?;
            let _ = s.read_to_end(&mut rest);
        }
        // Idle until the balancer closes; refused: closed at once.
        _ => {
            if name != "connection refused" {
                s.write_all(b"H")?;
                s.read_exact(&mut k)?;
            }
            let _ = s.read_to_end(&mut rest);
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn termination_states_match_haproxy() {
    run_test(|| {
        let topo = Topology::new("term")?;
        let _probe = ProbeServer::start(topo.srv.name(), &[sa(BACKENDS_V4[0], SRV_PORT)])?;
        let syslog = Syslog::bind(&topo.dir.path().join("log.sock"))?;
        let log_path = syslog.path().to_path_buf();
        let ha_cfg = topo.write_cfg("haproxy.cfg", &config(&log_path, BASE + 100))?;
        let ha = Haproxy::start(&topo.lb, &ha_cfg)?;
        std::thread::sleep(Duration::from_millis(500));
        let scenarios = [
            ("normal end", 0u16, "plain"),
            ("client reset", 0, "plain"),
            ("server reset", 0, "plain"),
            ("client timeout", 1, "client_idle"),
            ("server timeout", 2, "server_idle"),
            ("equal timeouts", 3, "equal_idle"),
            ("connection refused", 4, "refused"),
        ];
        let mut table = BTreeMap::new();
        let mut differ = Vec::new();
        for (path, extra) in [("splice", &[][..]), ("copy", &["--no-splice"][..])] {
            let lb = topo.start_lb(&config(&log_path, BASE), extra)?;
            for (name, off, fe) in scenarios {
                let mut got = Vec::new();
                for (who, base) in [("lb", BASE), ("haproxy", BASE + 100)] {
                    let before = syslog.len();
                    topo.in_client(|| scenario(name, base + off))
                        .map_err(|e| anyhow::anyhow!("{name} through {who}: {e:#}"))?;
                    // Its log line: the first new one from `who` for this frontend.
                    let tag = format!(" {who}[");
                    let term = util::wait_until(
                        &format!("{who}'s log line for {name}"),
                        Duration::from_secs(5),
                        Duration::from_millis(20),
                        || {
                            Ok(syslog.lines()[before..]
                                .iter()
                                .any(|l| l.contains(&tag) && l.contains(&format!(" {fe} "))))
                        },
                    )
                    .and_then(|_| {
                        let l = syslog.lines()[before..]
                            .iter()
                            .find(|l| l.contains(&tag) && l.contains(&format!(" {fe} ")))
                            .cloned()
                            .unwrap_or_default();
                        let msg = l.split_once("]: ").map(|x| x.1).unwrap_or("");
                        let f: Vec<&str> = msg.split(' ').collect();
                        f.get(6)
                            .map(|t| t.to_string())
                            .ok_or_else(|| anyhow::anyhow!("no termination state in {l:?}"))
                    })?;
                    got.push(term);
                }
                if got[0] != got[1] {
                    differ.push(format!(
                        "{name} ({path}): lb {} vs haproxy {}",
                        got[0], got[1]
                    ));
                }
                table.insert(format!("{name} ({path})"), got.join("/"));
            }
            lb.stop()?;
        }
        drop(ha);
        drop(syslog);
        println!("[lb-tests] termination states lb/haproxy: {table:?}");
        anyhow::ensure!(differ.is_empty(), "{}", differ.join("\n"));
        Ok(())
    })
}
