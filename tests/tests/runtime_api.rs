//! The runtime API through a real client (`socat`): `show stat` against
//! HAProxy 2.6 running the same config (header and L4 columns, field by
//! field), HAProxy's answers to the same errors, levels, several sockets,
//! prompt mode; weight/state changes steering real connections; tcplog lines;
//! 10,000 random lines on a user-level socket while traffic flows.

use anyhow::{anyhow, bail, Context, Result};
use lb_tests::haproxy::Haproxy;
use lb_tests::syslog::Syslog;
use lb_tests::traffic::{connect, NameServers, Rng};
use lb_tests::*;
use lb_user::api::stat::L4_FIELDS;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: u16 = 9600;

use lb_tests::util::socat;

/// Opens a connection through lb and returns the server's name and the stream.
fn who(topo: &Topology) -> Result<(String, std::net::TcpStream)> {
    topo.in_client(|| -> Result<_> {
        let s = connect(sa(LB_V4, PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut r = BufReader::new(s.try_clone()?);
        let mut line = String::new();
        r.read_line(&mut line)?;
        Ok((line.trim().to_string(), s))
    })
}

/// Names of `n` new connections (each closed after its greeting).
fn spread(topo: &Topology, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let (name, _s) = who(topo)?;
        *m.entry(name).or_insert(0) += 1;
    }
    Ok(m)
}

/// `show stat` rows by (pxname, svname).
type StatRows = BTreeMap<(String, String), Vec<String>>;

fn csv_rows(out: &str) -> Result<(String, StatRows)> {
    let mut lines = out.lines();
    let header = lines
        .next()
        .ok_or_else(|| anyhow!("empty show stat"))?
        .to_string();
    let mut rows = BTreeMap::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let cols: Vec<String> = l.split(',').map(str::to_string).collect();
        rows.insert((cols[0].clone(), cols[1].clone()), cols);
    }
    Ok((header, rows))
}

fn config(sock_admin: &Path, sock_user: &Path, extra_global: &str, port: u16) -> String {
    format!(
        "\
global
    maxconn 1000
    stats socket {} mode 600 level admin
    stats socket {} level user
{extra_global}
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe
    bind {LB_V4}:{port}
    maxconn 500
    default_backend be
backend be
    server s1 {}:{PORT} weight 10
    server s2 {}:{PORT} weight 10 check inter 500ms
    server s3 {}:{PORT} backup
",
        sock_admin.display(),
        sock_user.display(),
        BACKENDS_V4[0],
        BACKENDS_V4[1],
        BACKENDS_V4[2],
    )
}

/// lb's L4 columns that depend on time, process or proxy numbering: not
/// compared with HAProxy's. The others must be equal cell for cell.
const NOT_COMPARED: &[&str] = &[
    "lastchg",
    "downtime",
    "pid",
    "iid",
    "check_duration",
    "lastsess",
];

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn runtime_api_matches_haproxy() {
    run_test(|| {
        let topo = Topology::new("rtapi")?;
        let dir = topo.dir.path().to_path_buf();
        let _backends = NameServers::start(
            topo.srv.name(),
            &[
                (sa(BACKENDS_V4[0], PORT), "s1"),
                (sa(BACKENDS_V4[1], PORT), "s2"),
                (sa(BACKENDS_V4[2], PORT), "s3"),
            ],
        )?;
        let (lb_sock, lb_user) = (dir.join("lb.sock"), dir.join("lb-user.sock"));
        let (ha_sock, ha_user) = (dir.join("ha.sock"), dir.join("ha-user.sock"));
        let lb = topo.start_lb(&config(&lb_sock, &lb_user, "", PORT), &[])?;
        // HAProxy serves the same proxies on another port of the same address.
        let ha_cfg = topo.write_cfg("haproxy.cfg", &config(&ha_sock, &ha_user, "", PORT + 1))?;
        let _ha = Haproxy::start(&topo.lb, &ha_cfg)?;
        util::wait_until(
            "haproxy's stats socket",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || Ok(UnixStream::connect(&ha_sock).is_ok()),
        )?;
        // Two checks passed on both sides: s2 settles at full health.
        std::thread::sleep(Duration::from_millis(1500));

        let (lb_header, lb_rows) = csv_rows(&socat(&lb_sock, "show stat\n")?)?;
        let (ha_header, ha_rows) = csv_rows(&socat(&ha_sock, "show stat\n")?)?;
        assert_eq!(lb_header, ha_header, "show stat headers differ");
        let names: Vec<&str> = ha_header.trim_start_matches("# ").split(',').collect();
        assert_eq!(
            lb_rows.keys().collect::<Vec<_>>(),
            ha_rows.keys().collect::<Vec<_>>()
        );
        let mut compared = 0;
        for (key, ha) in &ha_rows {
            let mine = &lb_rows[key];
            assert_eq!(mine.len(), ha.len(), "{key:?}: column count");
            for f in L4_FIELDS.iter().filter(|f| !NOT_COMPARED.contains(f)) {
                let i = names.iter().position(|n| n == f).expect("field");
                assert_eq!(
                    mine[i], ha[i],
                    "{key:?} column {i} ({f}): lb {:?} vs haproxy {:?}\nlb: {mine:?}\nhaproxy: {ha:?}",
                    mine[i], ha[i]
                );
                compared += 1;
            }
        }
        println!("[lb-tests] show stat: header and {compared} L4 cells equal to haproxy 2.6");

        // The same requests get the same answers.
        for req in [
            "get weight be/s1",
            "get weight be",
            "get weight be/zz",
            "set server be/zz state ready",
            "set server zz/s1 state ready",
            "set server be/s1 state foo",
            "set server be/s1 weight 300",
            "set server be/s1 weight abc",
            "set weight be/s1",
            "show backend",
            "show servers state zz",
            "set maxconn frontend zz 1",
            "user; set weight be/s1 3",
            "operator; clear counters all",
            "show cli level",
        ] {
            let a = socat(&lb_sock, &format!("{req}\n"))?;
            let b = socat(&ha_sock, &format!("{req}\n"))?;
            assert_eq!(a.trim_end(), b.trim_end(), "answers to {req:?} differ");
        }
        for req in ["set weight be/s1 5", "show sess", "clear counters"] {
            let a = socat(&lb_user, &format!("{req}\n"))?;
            let b = socat(&ha_user, &format!("{req}\n"))?;
            assert_eq!(a.trim(), "Permission denied", "{req} at level user");
            assert_eq!(a, b, "{req} at level user");
        }
        let unknown = socat(&lb_sock, "frobnicate\n")?;
        assert!(
            unknown.starts_with(
                "Unknown command, but maybe one of the following ones is a better match:"
            ),
            "{unknown}"
        );

        // Writes, then what show stat, servers state and the maps say.
        assert_eq!(socat(&lb_sock, "set server be/s1 weight 50%\n")?, "\n");
        assert_eq!(socat(&lb_sock, "get weight be/s1\n")?, "5 (initial 10)\n\n");
        socat(&lb_sock, "set server be/s2 state drain\n")?;
        socat(&lb_sock, "set server be/s3 state maint\n")?;
        let (_, rows) = csv_rows(&socat(&lb_sock, "show stat\n")?)?;
        let col = |r: &Vec<String>, f: &str| r[names.iter().position(|n| *n == f).unwrap()].clone();
        let s1 = &rows[&("be".into(), "s1".into())];
        let s2 = &rows[&("be".into(), "s2".into())];
        let s3 = &rows[&("be".into(), "s3".into())];
        assert_eq!(
            (col(s1, "weight"), col(s1, "uweight")),
            ("5".into(), "5".into())
        );
        assert_eq!(
            (col(s2, "status"), col(s2, "weight")),
            ("DRAIN".into(), "0".into())
        );
        assert_eq!(col(s3, "status"), "MAINT");
        let state = socat(&lb_sock, "show servers state be\n")?;
        let s2_line = state
            .lines()
            .find(|l| l.split(' ').nth(3) == Some("s2"))
            .ok_or_else(|| anyhow!("{state}"))?;
        let f: Vec<&str> = s2_line.split(' ').collect();
        assert_eq!(
            (f[5], f[6], f[7], f[8]),
            ("2", "8", "10", "10"),
            "{s2_line}"
        );
        // `lb show servers` reads the maps: the change is there at once.
        let maps = lb.show_servers()?;
        let m3 = maps.iter().find(|r| r.name == "s3").unwrap();
        assert_eq!(m3.state, "MAINT");
        let m1 = maps.iter().find(|r| r.name == "s1").unwrap();
        assert_eq!(m1.weight, 5);

        // The CLI: through the instance's own socket, tables and JSON.
        let inst = lb.instance().to_string();
        let cli = |args: &[&str]| -> Result<String> {
            let mut cmd = Command::new(lb_bin()?);
            cmd.args(args);
            let out = util::output(&mut cmd)?;
            if !out.status.success() {
                bail!("lb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let servers: serde_json::Value =
            serde_json::from_str(&cli(&["show", "servers", "--instance", &inst, "--json"])?)?;
        let s2j = servers
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == "s2"))
            .ok_or_else(|| anyhow!("{servers}"))?;
        assert_eq!(
            (s2j["state"].as_str(), s2j["status"].as_str()),
            (Some("UP"), Some("DRAIN"))
        );
        let table = cli(&["show", "servers", "--instance", &inst])?;
        assert!(
            table.starts_with("BACKEND") && table.contains("MAINT"),
            "{table}"
        );
        let fe: serde_json::Value =
            serde_json::from_str(&cli(&["show", "frontends", "--instance", &inst, "--json"])?)?;
        assert_eq!(fe[0]["pxname"], "fe");
        assert_eq!(fe[0]["slim"], 500);
        let be = cli(&["show", "backends", "--instance", &inst])?;
        assert!(be.contains("roundrobin"), "{be}");
        let info: serde_json::Value =
            serde_json::from_str(&cli(&["show", "info", "--instance", &inst, "--json"])?)?;
        assert_eq!(info["Name"], "lb");
        assert_eq!(info["Pid"], lb.pid().to_string());
        // A socket by path, at level user: reads work, writes are refused.
        let user_sock = lb_user.to_string_lossy().into_owned();
        cli(&["show", "sessions", "--socket", &user_sock]).expect_err("show sess needs operator");
        let denied = cli(&[
            "set", "server", "be/s1", "weight", "1", "--socket", &user_sock,
        ]);
        assert!(format!("{:#}", denied.unwrap_err()).contains("Permission denied"));
        cli(&[
            "set",
            "server",
            "be/s1",
            "weight",
            "50%",
            "--instance",
            &inst,
        ])?;
        let bad = cli(&[
            "set",
            "server",
            "be/nope",
            "state",
            "drain",
            "--instance",
            &inst,
        ]);
        assert!(format!("{:#}", bad.unwrap_err()).contains("No such server."));
        // lb top on a pseudo-terminal (script(1)): two refreshes, then `q`.
        let mut top = Command::new("script")
            .args(["-qfec"])
            .arg(format!(
                "stty cols 120 rows 40; {} top --instance {inst}",
                lb_bin()?.display()
            ))
            .arg("/dev/null")
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("script (util-linux) runs lb top on a pseudo-terminal")?;
        std::thread::sleep(Duration::from_millis(2500));
        top.stdin.as_mut().unwrap().write_all(b"q")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while top.try_wait()?.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if top.try_wait()?.is_none() {
            let _ = top.kill();
            bail!("lb top did not quit on q");
        }
        let out = top.wait_with_output()?;
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "lb top: {screen}");
        for want in ["frontends", "servers", "be/s1", "DRAIN", "L4OK"] {
            assert!(screen.contains(want), "lb top did not show {want}");
        }

        // The maps straight from bpffs, while the daemon is frozen.
        util::signal(lb.pid(), libc::SIGSTOP);
        let dumped = cli(&[
            "maps",
            "dump",
            "LB_SRV_STATE",
            "--instance",
            &inst,
            "--json",
        ]);
        let listed = cli(&["maps", "list", "--instance", &inst]);
        util::signal(lb.pid(), libc::SIGCONT);
        let dumped: serde_json::Value = serde_json::from_str(&dumped?)?;
        assert_eq!(dumped[0]["value"]["weight"], 5, "{dumped}");
        assert_eq!(dumped[2]["value"]["state"], "MAINT", "{dumped}");
        let listed = listed?;
        assert!(
            listed.contains("LB_SRV_KSTATS") && listed.contains("PerCpuArray"),
            "{listed}"
        );

        // Prompt mode: several requests on one connection.
        let mut c = UnixStream::connect(&lb_sock)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"prompt\nshow cli level\nget weight be/s1\nquit\n")?;
        let mut all = String::new();
        c.read_to_string(&mut all)?;
        assert_eq!(all, "\n> admin\n\n> 5 (initial 10)\n\n> ", "{all:?}");
        lb.stop()?;
        Ok(())
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn runtime_api_steers_connections_and_logs() {
    run_test(|| {
        let topo = Topology::new("rtsteer")?;
        let dir = topo.dir.path().to_path_buf();
        let _backends = NameServers::start(
            topo.srv.name(),
            &[
                (sa(BACKENDS_V4[0], PORT), "s1"),
                (sa(BACKENDS_V4[1], PORT), "s2"),
                (sa(BACKENDS_V4[2], PORT), "s3"),
            ],
        )?;
        let syslog = Syslog::bind(&dir.join("log.sock"))?;
        let log_path = syslog.path().to_path_buf();
        let (sock, user) = (dir.join("lb.sock"), dir.join("lb-user.sock"));
        let mut cfg = config(
            &sock,
            &user,
            &format!("    log {} local0", log_path.display()),
            PORT,
        );
        cfg = cfg.replace(
            "    maxconn 500\n",
            "    maxconn 500\n    option tcplog\n    log global\n",
        );
        let lb = topo.start_lb(&cfg, &["--metrics", "127.0.0.1:9101"])?;

        let d = spread(&topo, 20)?;
        println!("[lb-tests] start: {d:?}");
        assert_eq!((d.get("s1"), d.get("s2")), (Some(&10), Some(&10)), "{d:?}");

        // A connection to s2 that must survive its drain.
        let (name, mut held) = loop {
            let (n, s) = who(&topo)?;
            if n == "s2" {
                break (n, s);
            }
        };
        assert_eq!(name, "s2");
        assert_eq!(socat(&sock, "set server be/s2 state drain\n")?, "\n");
        let d = spread(&topo, 10)?;
        assert_eq!(
            d.get("s1"),
            Some(&10),
            "drained s2 took new connections: {d:?}"
        );
        held.write_all(b"still here\n")?;
        let mut r = BufReader::new(held.try_clone()?);
        let mut echo = String::new();
        r.read_line(&mut echo)?;
        assert_eq!(echo, "still here\n", "the drained server's session broke");
        // Weight 0 drains the same way: no new sessions, the held one goes on.
        assert_eq!(
            socat(&sock, "set server be/s2 state ready; set weight be/s2 0\n")?,
            "\n\n"
        );
        let d = spread(&topo, 10)?;
        assert_eq!(
            d.get("s1"),
            Some(&10),
            "s2 at weight 0 took new connections: {d:?}"
        );
        held.write_all(b"weight zero\n")?;
        echo.clear();
        r.read_line(&mut echo)?;
        assert_eq!(echo, "weight zero\n", "the weight-0 server's session broke");
        socat(&sock, "set weight be/s2 10\n")?;

        // Weights: 3:1.
        socat(
            &sock,
            "set server be/s2 state ready; set server be/s1 weight 30%\n",
        )?;
        let d = spread(&topo, 40)?;
        println!("[lb-tests] weights 3:10 -> {d:?}");
        let s1 = d.get("s1").copied().unwrap_or(0);
        assert!(
            (9..=10).contains(&s1) && s1 + d.get("s2").copied().unwrap_or(0) == 40,
            "{d:?}"
        );
        socat(&sock, "set weight be/s1 10\n")?;

        // set server addr: s1's new connections go to s3's address; a
        // session opened before goes on; back again.
        let (first, mut before) = loop {
            let (n, s) = who(&topo)?;
            if n == "s1" {
                break (n, s);
            }
        };
        let out = socat(
            &sock,
            &format!("set server be/s1 addr {}\n", BACKENDS_V4[2]),
        )?;
        assert_eq!(
            out.trim(),
            format!(
                "IP changed from '{}' to '{}' by 'stats socket command'",
                BACKENDS_V4[0], BACKENDS_V4[2]
            )
        );
        let d = spread(&topo, 10)?;
        assert_eq!((d.get("s3"), d.get("s2")), (Some(&5), Some(&5)), "{d:?}");
        before.write_all(b"old address\n")?;
        let mut rb = BufReader::new(before.try_clone()?);
        let mut e = String::new();
        rb.read_line(&mut e)?;
        assert_eq!((first.as_str(), e.as_str()), ("s1", "old address\n"));
        assert_eq!(
            socat(
                &sock,
                &format!("set server be/s1 addr {}\n", BACKENDS_V4[2])
            )?,
            "no need to change the addr\n\n"
        );
        assert!(socat(&sock, "set server be/s1 addr nope\n")?.contains("Invalid addr 'nope'"));
        let mut c = lb_tests::netns::ns_cmd(&topo.lb.path(), lb_bin()?);
        c.args([
            "set",
            "server",
            "be/s1",
            "addr",
            &format!("{}:{PORT}", BACKENDS_V4[0]),
        ])
        .args(["--socket", &sock.to_string_lossy()]);
        anyhow::ensure!(c.status()?.success(), "lb set server addr failed");
        let d = spread(&topo, 10)?;
        assert_eq!((d.get("s1"), d.get("s2")), (Some(&5), Some(&5)), "{d:?}");

        // set maxconn frontend: lowered below what is open, a new client waits
        // in the backlog until the limit is raised again.
        socat(&sock, "set maxconn frontend fe 1\n")?;
        // The accept already waiting holds its slot: one more gets in.
        let (_, _extra) = who(&topo)?;
        let waiting = topo.in_client(|| -> Result<std::net::TcpStream> {
            let s = connect(sa(LB_V4, PORT))?;
            s.set_read_timeout(Some(Duration::from_millis(1000)))?;
            Ok(s)
        })?;
        let mut b = [0u8; 8];
        let early = (&waiting).read(&mut b);
        assert!(
            early.is_err(),
            "a client was served over maxconn 1: {early:?}"
        );
        socat(&sock, "set maxconn frontend fe 500\n")?;
        waiting.set_read_timeout(Some(Duration::from_secs(5)))?;
        let n = (&waiting).read(&mut b)?;
        assert!(n > 0 && b[0] == b's', "no greeting once maxconn was raised");
        drop(waiting);
        drop(_extra);

        // Maintenance of both actives: the backup takes over, then gives back.
        socat(
            &sock,
            "disable server be/s1; set server be/s2 state maint\n",
        )?;
        let d = spread(&topo, 5)?;
        assert_eq!(d.get("s3"), Some(&5), "{d:?}");
        socat(&sock, "enable server be/s1; set server be/s2 state ready\n")?;
        let d = spread(&topo, 10)?;
        // Both back in the rotation (the smooth round robin's carried-over
        // state may shift one pick).
        let (a, b) = (
            d.get("s1").copied().unwrap_or(0),
            d.get("s2").copied().unwrap_or(0),
        );
        assert!(a >= 4 && b >= 4 && a + b == 10, "{d:?}");

        // Forced health down, then up.
        socat(&sock, "set server be/s1 health down\n")?;
        let d = spread(&topo, 6)?;
        assert_eq!(d.get("s2"), Some(&6), "{d:?}");
        socat(&sock, "set server be/s1 health up\n")?;

        // shutdown session: the held session is reset.
        let sess = socat(&sock, "show sess\n")?;
        let id = sess
            .lines()
            .find(|l| l.contains("srv=s2"))
            .and_then(|l| l.split(':').next())
            .ok_or_else(|| anyhow!("no s2 session in show sess: {sess}"))?
            .to_string();
        assert_eq!(socat(&sock, &format!("shutdown session {id}\n"))?, "\n");
        let mut buf = [0u8; 16];
        let gone = matches!(held.read(&mut buf), Ok(0) | Err(_));
        assert!(gone, "session {id} still open after shutdown session");
        assert!(socat(&sock, &format!("shutdown session {id}\n"))?.starts_with("No such session"));

        // tcplog: every ended session logged in HAProxy's TCP format.
        util::wait_until(
            "a tcplog line per session",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || Ok(syslog.len() >= 92),
        )?;
        let lines = syslog.lines();
        let re_line = |l: &str| -> Result<()> {
            // <134>Mmm dd hh:mm:ss lb[pid]: ip:port [dd/Mmm/yyyy:hh:mm:ss.mmm] fe be/srv Tw/Tc/Tt bytes term a/f/b/s/r sq/bq
            let (hdr, msg) = l.split_once("]: ").ok_or_else(|| anyhow!("no tag: {l}"))?;
            assert!(hdr.starts_with("<134>"), "local0.info priority: {l}");
            let f: Vec<&str> = msg.split(' ').collect();
            assert_eq!(f.len(), 9, "{l}");
            assert!(f[0].starts_with(CLIENT_V4), "{l}");
            assert!(
                f[1].starts_with('[') && f[1].ends_with(']') && f[1].len() == 26,
                "{l}"
            );
            assert_eq!(f[2], "fe");
            assert!(["be/s1", "be/s2", "be/s3"].contains(&f[3]), "{l}");
            let t: Vec<i64> = f[4].split('/').map(|x| x.parse().unwrap()).collect();
            assert_eq!(t.len(), 3, "{l}");
            assert!(t[0] >= 0 && t[1] >= 0 && t[2] >= t[0] + t[1], "{l}");
            // Every server sends its name and a newline.
            assert_eq!(f[5], "3", "bytes read: {l}");
            assert_eq!(f[6].len(), 2, "{l}");
            assert_eq!(f[7].split('/').count(), 5, "{l}");
            assert_eq!(f[8].split('/').count(), 2, "{l}");
            Ok(())
        };
        for l in lines.iter().filter(|l| !l.contains(" KD ")) {
            re_line(l)?;
        }
        println!("[lb-tests] {} tcplog lines, e.g. {}", lines.len(), lines[0]);

        // 10,000 random lines on the user-level socket while traffic flows:
        // answers only, no crash, no fd leak, traffic unaffected.
        let fds = || std::fs::read_dir(format!("/proc/{}/fd", lb.pid())).map(|d| d.count());
        let before = fds()?;
        let rss_before = lb_tests::mem::rss_kib(lb.pid())?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let traffic = {
            let stop = stop.clone();
            let served = served.clone();
            let client = topo.client.name().to_string();
            spawn_in_netns(&client, move || -> Result<usize> {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    let s = connect(sa(LB_V4, PORT))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line)?;
                    if !line.starts_with('s') {
                        bail!("bad greeting {line:?}");
                    }
                    n += 1;
                    served.store(n, Ordering::Relaxed);
                }
                Ok(n)
            })
        };
        let mut rng = Rng::new(0x5eed);
        let words = [
            "show", "stat", "info", "set", "server", "be/s1", "weight", "state", "drain", "maint",
            "get", "help", "prompt", "quit", "sess", "shutdown", "session", "0x1", "clear",
            "counters", "all", "maxconn", "global", "frontend", "fe", ";", "\\", "typed", "json",
            "servers", "100%", "-1", "", "enable", "disable", "health",
        ];
        let started = Instant::now();
        let mut c = UnixStream::connect(&user)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(b"prompt\n")?;
        let mut reader = BufReader::new(c.try_clone()?);
        let mut sent = 0;
        // At least 10,000 lines, for at least 2 s and until 200 sessions went
        // through meanwhile (bounded at 30 s).
        let mut i = 0;
        while (i < 10_000
            || started.elapsed() < Duration::from_secs(2)
            || served.load(Ordering::Relaxed) < 200)
            && started.elapsed() < Duration::from_secs(30)
        {
            i += 1;
            let n = rng.range(0, 8);
            let mut line = String::new();
            for _ in 0..n {
                if rng.range(0, 9) == 0 {
                    // Raw bytes, never a newline or `quit`.
                    let len = rng.range(1, 20);
                    for _ in 0..len {
                        let b = rng.range(1, 126) as u8;
                        line.push(if b == b'\n' { ' ' } else { b as char });
                    }
                } else {
                    line.push_str(words[rng.range(0, words.len() as u64 - 1) as usize]);
                }
                line.push(' ');
            }
            let line = line.replace("quit", "qu1t").replace("prompt", "pr0mpt");
            c.write_all(line.as_bytes())?;
            c.write_all(b"\n")?;
            sent += 1;
            // Read the answers up to the prompt so the socket never backs up.
            let mut got = Vec::new();
            loop {
                let mut b = [0u8; 1];
                reader
                    .read_exact(&mut b)
                    .with_context(|| format!("answer to line {i}: {line:?}"))?;
                got.push(b[0]);
                if got.ends_with(b"\n> ") || got == b"> " {
                    break;
                }
            }
        }
        drop(reader);
        drop(c);
        stop.store(true, Ordering::Relaxed);
        let conns = traffic
            .join()
            .map_err(|_| anyhow!("traffic thread panicked"))??;
        let took = started.elapsed();
        lb_alive(&lb)?;
        std::thread::sleep(Duration::from_millis(500));
        let after = fds()?;
        let rss_after = lb_tests::mem::rss_kib(lb.pid())?;
        println!(
            "[lb-tests] {sent} random lines in {took:?} alongside {conns} connections; lb fds {before} -> {after}, RSS {rss_before} -> {rss_after} KiB"
        );
        assert!(
            rss_after < rss_before + 16 * 1024,
            "lb RSS grew from {rss_before} to {rss_after} KiB"
        );
        assert!(
            conns >= 200,
            "only {conns} connections during the random lines"
        );
        drop(syslog);
        assert!(after <= before + 2, "fd leak: {before} -> {after}");
        // Nothing changed at level user.
        assert_eq!(socat(&sock, "get weight be/s1\n")?, "10 (initial 10)\n\n");

        // Prometheus: promtool accepts the exposition; values match the socket.
        let body = topo.in_lb(|| lb_tests::util::scrape_metrics("127.0.0.1:9101"))?;
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("promtool (Debian package prometheus) must be installed")?;
        promtool.stdin.take().unwrap().write_all(body.as_bytes())?;
        let checked = promtool.wait_with_output()?;
        assert!(
            checked.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let metric = |name: &str, labels: &str| -> Result<u64> {
            let key = format!("{name}{{{labels}}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&key))
                .ok_or_else(|| anyhow!("no {key} in metrics"))?
                .trim()
                .parse::<f64>()
                .map(|v| v as u64)
                .map_err(|e| anyhow!("{key}: {e}"))
        };
        let (_, rows) = csv_rows(&socat(&sock, "show stat\n")?)?;
        let header = socat(&sock, "show stat\n")?;
        let names: Vec<String> = header
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .map(String::from)
            .collect();
        let col = |r: &Vec<String>, f: &str| -> u64 {
            r[names.iter().position(|n| n == f).unwrap()]
                .parse()
                .unwrap_or(0)
        };
        let mut checked_values = 0;
        for srv in ["s1", "s2", "s3"] {
            let r = &rows[&("be".to_string(), srv.to_string())];
            let l = format!("proxy=\"be\",server=\"{srv}\"");
            for (m, f) in [
                ("haproxy_server_sessions_total", "stot"),
                ("haproxy_server_bytes_in_total", "bin"),
                ("haproxy_server_bytes_out_total", "bout"),
                ("haproxy_server_current_sessions", "scur"),
                ("haproxy_server_weight", "weight"),
            ] {
                assert_eq!(metric(m, &l)?, col(r, f), "{m} vs show stat {f} of {srv}");
                checked_values += 1;
            }
        }
        let be = &rows[&("be".to_string(), "BACKEND".to_string())];
        assert_eq!(
            metric("haproxy_backend_active_servers", "proxy=\"be\"")?,
            col(be, "act")
        );
        assert_eq!(
            metric("haproxy_backend_sessions_total", "proxy=\"be\"")?,
            col(be, "stot")
        );
        assert!(col(be, "stot") > 100, "{be:?}");
        assert!(
            metric("lb_sessions_ended_total", "path=\"kernel\",proxy=\"fe\"")
                .or_else(|_| metric("lb_sessions_ended_total", "proxy=\"fe\",path=\"kernel\""))?
                > 0
        );
        println!(
            "[lb-tests] metrics: promtool ok, {} bytes, {checked_values} server values equal to show stat",
            body.len()
        );
        lb.stop()?;
        Ok(())
    })
}

fn lb_alive(lb: &Lb) -> Result<()> {
    if !util::pid_alive(lb.pid()) {
        bail!("lb died; log:\n{}", lb.log_tail(40));
    }
    Ok(())
}
