//! `data-path` per frontend: a `copy` frontend's connections stay on the
//! userspace copy however long they live, a `splice` frontend's move to the
//! kernel path, both byte-exact, in one daemon.

use lb_tests::traffic::{connect, pattern_fill, Verifier};
use lb_tests::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SEED: u64 = 0x6461_7461;
const LEN: usize = 4 << 20;

/// Sends LEN pattern bytes through `port`, reads them back from the echo
/// server, checks them.
fn echo_through(topo: &Topology, port: u16) -> anyhow::Result<()> {
    topo.in_client(|| -> anyhow::Result<()> {
        let s = connect(sa(LB_V4, port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut w = s.try_clone()?;
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; LEN];
            pattern_fill(SEED, 0, &mut buf);
            w.write_all(&buf)?;
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut r = s;
        let mut v = Verifier::new(SEED);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            v.feed(&buf[..n]);
        }
        writer.join().expect("writer")?;
        v.check(LEN as u64)
    })
}

/// An echo server on the first backend's port 9820 (FIN after the echo).
fn echo_server(topo: &Topology, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    lb_tests::traffic::serve(
        topo.srv.name(),
        &[sa(BACKENDS_V4[0], 9820)],
        stop.clone(),
        |mut s, _| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let mut w = match s.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let _ = std::io::copy(&mut s, &mut w);
            let _ = w.shutdown(std::net::Shutdown::Write);
        },
    )
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn copy_and_splice_frontends_side_by_side() {
    run_test(|| {
        let topo = Topology::new("dpath")?;
        let stop = Arc::new(AtomicBool::new(false));
        echo_server(&topo, &stop)?;
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
             frontend spliced\n    bind {}\n    default_backend be\n\
             frontend copied\n    bind {}\n    data-path copy\n    default_backend be\n\
             backend be\n    server s1 {}\n",
            hp(LB_V4, 9821),
            hp(LB_V4, 9822),
            hp(BACKENDS_V4[0], 9820)
        );
        let lb = topo.start_lb(&cfg, &[])?;
        echo_through(&topo, 9821)?;
        echo_through(&topo, 9822)?;
        let mut last = String::new();
        let settled = util::wait_until(
            "one spliced and one copied connection counted",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                last = lb.show_stats()?;
                let st: serde_json::Value = serde_json::from_str(&last)?;
                Ok(st["conn_spliced"] == 1 && st["conn_copied"] == 1)
            },
        );
        stop.store(true, Ordering::Relaxed);
        println!("[lb-tests] data-path: 4 MiB echoed through each frontend; stats {last}");
        settled.map(|_| ())
    });
}

/// `user`/`group` and `pidfile` in `global` (Debian's stock haproxy.cfg has
/// them): once set up, every thread of lb runs as nobody/nogroup with no
/// capability, and the daemon still does its whole job: health checks,
/// a connection moved to the kernel path (SOCKHASH written by an
/// unprivileged process), a runtime change, a SIGHUP reload, a clean stop
/// that removes its pinned maps.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn runs_as_the_configured_user() {
    use std::os::unix::fs::PermissionsExt;
    run_test(|| {
        let topo = Topology::new("dpuser")?;
        let stop = Arc::new(AtomicBool::new(false));
        echo_server(&topo, &stop)?;
        // The daemon re-reads its file as nobody on SIGHUP (as a file in
        // /etc/haproxy is readable by all), and writes its ready file as
        // nobody once it serves.
        std::fs::set_permissions(topo.dir.path(), std::fs::Permissions::from_mode(0o777))?;
        let pidfile = topo.dir.path().join("lb.pid");
        let cfg = |rule: &str| {
            format!(
                "global\n    user nobody\n    group nogroup\n    pidfile {}\n\
                 defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend spliced\n    bind {}\n{rule}    default_backend be\n\
                 backend be\n    server s1 {} check inter 300ms\n",
                pidfile.display(),
                hp(LB_V4, 9821),
                hp(BACKENDS_V4[0], 9820)
            )
        };
        let lb = topo.start_lb(&cfg(""), &[])?;
        let pid = lb.pid();
        assert_eq!(std::fs::read_to_string(&pidfile)?.trim(), pid.to_string());
        let mut threads = 0;
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let status = std::fs::read_to_string(t?.path().join("status"))?;
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
            };
            assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
            assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
            assert_eq!(field("CapEff:"), ["0000000000000000"], "{status}");
            assert_eq!(field("CapPrm:"), ["0000000000000000"], "{status}");
            threads += 1;
        }
        lb.wait_state("s1", "UP", Duration::from_secs(5))?;
        echo_through(&topo, 9821)?;
        util::wait_until(
            "the connection counted as spliced",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                let st: serde_json::Value = serde_json::from_str(&lb.show_stats()?)?;
                Ok(st["conn_spliced"] == 1)
            },
        )?;
        let mut set = lb_tests::netns::ns_cmd(&topo.lb.path(), lb_tests::lb::lb_bin()?);
        set.args(["set", "server", "be/s1", "state", "drain", "--instance"])
            .arg(lb.instance());
        anyhow::ensure!(set.status()?.success(), "set server state drain failed");
        util::wait_until(
            "s1 drained",
            Duration::from_secs(2),
            Duration::from_millis(50),
            || Ok(lb.server("s1")?.admin == "DRAIN"),
        )?;
        let reloaded = lb.reload(&cfg(&format!(
            "    tcp-request connection reject if {{ src {CLIENT_V4} }}\n"
        )))?;
        anyhow::ensure!(reloaded.contains("reload: "), "{reloaded}");
        let refused = echo_through(&topo, 9821);
        anyhow::ensure!(refused.is_err(), "the reloaded reject rule did not apply");
        let instance = lb.instance().to_string();
        stop.store(true, Ordering::Relaxed);
        lb.stop()?;
        let pins = std::path::Path::new("/sys/fs/bpf/lb").join(&instance);
        let left: Vec<_> = std::fs::read_dir(&pins)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        anyhow::ensure!(left.is_empty(), "pinned maps left after the stop: {left:?}");
        let _ = std::fs::remove_dir(&pins);
        println!(
            "[lb-tests] lb ran as nobody/nogroup ({threads} threads, no capability): \
             checks, a spliced 4 MiB echo, set server, reload, clean stop"
        );
        Ok(())
    });
}
