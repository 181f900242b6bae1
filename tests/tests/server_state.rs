//! Server state across daemon restarts: the runtime API drains a server and
//! changes a weight; a clean stop writes the global `server-state-file`
//! (`load-server-state-from-file global` reads it back), and a SIGKILLed
//! daemon's pinned maps restore it on the next start. Real backends, real
//! connections through the kernel path.

use anyhow::{anyhow, bail, Context, Result};
use lb_tests::traffic::{connect, NameServers};
use lb_tests::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

const PORT: u16 = 9610;

use lb_tests::util::socat;

/// A command that must answer nothing (HAProxy's success).
fn admin(sock: &Path, cmd: &str) -> Result<()> {
    let out = socat(sock, &format!("{cmd}\n"))?;
    if !out.trim().is_empty() {
        bail!("`{cmd}` answered {out:?}");
    }
    Ok(())
}

/// Which servers `n` new connections reach.
fn spread(topo: &Topology, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let name = topo.in_client(|| -> Result<String> {
            let s = connect(sa(LB_V4, PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
            Ok(line.trim().to_string())
        })?;
        *m.entry(name).or_insert(0) += 1;
    }
    Ok(m)
}

/// `show servers state` fields of server `name`.
fn state_fields(sock: &Path, name: &str) -> Result<Vec<String>> {
    let out = socat(sock, "show servers state\n")?;
    out.lines()
        .map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() > 8 && f[1] == "b" && f[3] == name)
        .ok_or_else(|| anyhow!("no line for b/{name} in show servers state:\n{out}"))
}

/// The daemon's lines about restored state (printed for the CI log).
fn restore_lines(lb: &Lb) -> Result<String> {
    let log = std::fs::read_to_string(lb.log_path())?;
    for l in log
        .lines()
        .filter(|l| l.contains("restored") || l.contains("server-state") || l.contains("cleanly"))
    {
        println!("[lb-tests]   {l}");
    }
    Ok(log)
}

/// The servers' (admin, weight) as `lb show servers --json` reports them.
fn admin_weights(lb: &Lb) -> Result<BTreeMap<String, (String, u64)>> {
    Ok(lb
        .show_servers()?
        .into_iter()
        .map(|r| (r.name, (r.admin, r.weight)))
        .collect())
}

fn config(sock: &Path, state: &Path) -> String {
    format!(
        "\
global
    stats socket {} level admin
    server-state-file {}
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
frontend fe
    bind {LB_V4}:{PORT}
    default_backend b
backend b
    server s1 {}:{PORT} weight 10
    server s2 {}:{PORT} weight 10 check inter 300ms
    server s3 {}:{PORT} weight 10
",
        sock.display(),
        state.display(),
        BACKENDS_V4[0],
        BACKENDS_V4[1],
        BACKENDS_V4[2],
    )
}

/// Removes the instance's pin directory if the test fails between the
/// SIGKILL and the clean stop (nothing else would).
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn server_state_survives_restart_and_crash() {
    run_test(|| {
        let t0 = Instant::now();
        let topo = Topology::new("srvstate")?;
        let dir = topo.dir.path().to_path_buf();
        let _backends = NameServers::start(
            topo.srv.name(),
            &[
                (sa(BACKENDS_V4[0], PORT), "s1"),
                (sa(BACKENDS_V4[1], PORT), "s2"),
                (sa(BACKENDS_V4[2], PORT), "s3"),
            ],
        )?;
        let (sock, state) = (dir.join("lb.sock"), dir.join("servers.state"));
        let cfg = config(&sock, &state);
        let instance = format!("lbss{}", std::process::id());
        let pins = Pins(Path::new("/sys/fs/bpf/lb").join(&instance));

        // 1. Fresh start: no file yet (a warning, not a failure); all three serve.
        let lb = topo.start_lb_instance(&cfg, &instance, &[])?;
        restore_lines(&lb)?;
        let d = spread(&topo, 30)?;
        println!("[lb-tests] first run: {d:?}");
        assert_eq!(d.len(), 3, "every server takes connections: {d:?}");
        admin(&sock, "set server b/s2 state drain")?;
        admin(&sock, "set server b/s1 weight 7")?;
        // A second daemon of the same instance refuses to start (it would take
        // the live daemon's pins for a crashed one's) and changes nothing.
        let second = topo.start_lb_instance(&cfg, &instance, &[]);
        let err = format!(
            "{:#}",
            second
                .err()
                .context("a second lb of one instance started")?
        );
        assert!(err.contains("is already running"), "{err}");
        assert_eq!(admin_weights(&lb)?["s1"], (String::new(), 7));
        lb.stop()?;
        let saved = std::fs::read_to_string(&state)
            .with_context(|| format!("{} after a clean stop", state.display()))?;
        assert!(saved.starts_with("1\n# be_id be_name"), "{saved}");
        assert!(
            !dir.read_dir()?
                .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(".tmp"))),
            "temporary file left behind"
        );

        // 2. Restart after a clean stop: the file restores drain and weight.
        let lb = topo.start_lb_instance(&cfg, &instance, &[])?;
        let log = restore_lines(&lb)?;
        assert!(
            log.contains("server b/s2 restored from") && log.contains("DRAIN, weight 10"),
            "{log}"
        );
        assert!(
            log.contains("server b/s1 restored from") && log.contains("UP, weight 7"),
            "{log}"
        );
        let s2 = state_fields(&sock, "s2")?;
        let s1 = state_fields(&sock, "s1")?;
        assert_eq!(
            (s2[6].as_str(), s1[7].as_str()),
            ("8", "7"),
            "{s2:?} {s1:?}"
        );
        let aw = admin_weights(&lb)?;
        assert_eq!(aw["s2"].0, "DRAIN", "{aw:?}");
        assert_eq!(aw["s1"], (String::new(), 7), "{aw:?}");
        let d = spread(&topo, 34)?;
        println!("[lb-tests] after a clean restart: {d:?}");
        assert_eq!(
            d.get("s2"),
            None,
            "the drained server takes no connection: {d:?}"
        );
        assert_eq!(
            (d.get("s1"), d.get("s3")),
            (Some(&14), Some(&20)),
            "7:10: {d:?}"
        );

        // 3. One more change only the maps know, then a crash.
        admin(&sock, "set server b/s3 state maint")?;
        // The daemon publishes at once; give the map write a moment anyway.
        std::thread::sleep(Duration::from_millis(300));
        lb.kill()?;
        assert!(
            pins.0.join("LB_SRV_STATE").exists(),
            "SIGKILL leaves the pins"
        );

        // 4. Restart after the crash: the maps win over the (older) file.
        let lb = topo.start_lb_instance(&cfg, &instance, &[])?;
        let log = restore_lines(&lb)?;
        assert!(log.contains("did not stop cleanly"), "{log}");
        assert!(
            log.contains("pinned maps of the previous daemon are newer"),
            "{log}"
        );
        assert!(
            log.contains("server b/s3 restored from LB_SRV_STATE[2]: MAINT"),
            "{log}"
        );
        let aw = admin_weights(&lb)?;
        assert_eq!(
            (aw["s1"].1, aw["s2"].0.as_str(), aw["s3"].0.as_str()),
            (7, "DRAIN", "MAINT"),
            "{aw:?}"
        );
        assert_eq!(state_fields(&sock, "s3")?[6], "1");
        // The counters came back too: s1 served 14 connections in the
        // crashed run (a state file carries none, so the first run's are gone).
        let s1 = lb.server("s1")?;
        assert_eq!(s1.total_conns, 14, "{s1:?}");
        let d = spread(&topo, 10)?;
        println!("[lb-tests] after a crash: {d:?}");
        assert_eq!(d.get("s1"), Some(&10), "only s1 is in service: {d:?}");
        lb.stop()?;
        assert!(!pins.0.exists(), "a clean stop removes the pins");
        println!("[lb-tests] server state test took {:?}", t0.elapsed());
        Ok(())
    })
}
