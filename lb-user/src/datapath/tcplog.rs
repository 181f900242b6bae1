//! `option tcplog`: one line per ended session in HAProxy's TCP log format,
//! sent to the frontend's `log` targets (syslog over UDP or a UNIX datagram
//! socket, `stdout`/`stderr`), or to stderr when it has none.
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;

use crate::config::{Config, Frontend, LogAddress, LogTarget, ProxyLog};
use crate::state::admin::Session;

const SEVERITY_INFO: u32 = 6;

enum Out {
    Udp(UdpSocket, std::net::SocketAddr),
    Unix(UnixDatagram, std::path::PathBuf),
    Stdout,
    Stderr,
}

struct Target {
    out: Out,
    pri: u32,
    /// `format raw`: the message alone; otherwise RFC 3164 (`<PRI>date tag: `).
    raw: bool,
    max_len: usize,
}

/// Where one frontend's tcplog lines go.
pub struct Sink {
    targets: Vec<Target>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sink({} targets)", self.targets.len())
    }
}

fn facility(name: &str) -> u32 {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
        "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
        "local5", "local6", "local7",
    ];
    NAMES.iter().position(|n| *n == name).unwrap_or(16) as u32
}

fn severity(name: &str) -> u32 {
    const NAMES: [&str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];
    NAMES.iter().position(|n| *n == name).unwrap_or(7) as u32
}

fn target(t: &LogTarget) -> std::io::Result<Option<Target>> {
    // Lines above the target's level are not sent (info is 6).
    if t.level
        .as_deref()
        .is_some_and(|l| severity(l) < SEVERITY_INFO)
    {
        return Ok(None);
    }
    let out = match &t.address {
        LogAddress::Udp(a) => {
            let bind: std::net::SocketAddr = if a.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let s = UdpSocket::bind(bind)?;
            s.set_nonblocking(true)?;
            Out::Udp(s, *a)
        }
        LogAddress::Unix(p) => {
            let s = UnixDatagram::unbound()?;
            s.set_nonblocking(true)?;
            Out::Unix(s, p.clone())
        }
        LogAddress::Fd(1) => Out::Stdout,
        LogAddress::Fd(_) | LogAddress::Ring(_) => Out::Stderr,
    };
    Ok(Some(Target {
        out,
        pri: facility(&t.facility) * 8 + SEVERITY_INFO,
        raw: t.format.as_deref() == Some("raw"),
        max_len: t.len.unwrap_or(1024) as usize,
    }))
}

impl Sink {
    /// The sink of a frontend with `option tcplog`, None without it.
    pub fn for_frontend(cfg: &Config, f: &Frontend) -> std::io::Result<Option<Self>> {
        if f.tcplog.is_none() {
            return Ok(None);
        }
        let mut targets = Vec::new();
        for l in &f.logs {
            match &l.value {
                ProxyLog::Global => {
                    for g in &cfg.global.logs {
                        targets.extend(target(&g.value)?);
                    }
                }
                ProxyLog::Target(t) => targets.extend(target(t)?),
            }
        }
        if f.logs.is_empty() {
            targets.push(Target {
                out: Out::Stderr,
                pri: 0,
                raw: true,
                max_len: 65535,
            });
        }
        Ok(Some(Self { targets }))
    }

    /// Sends one message; a full or absent receiver loses the line (as syslog
    /// over UDP does) rather than slow the session's end.
    pub fn send(&self, msg: &str, unix_ms: u64) {
        use std::io::Write;
        for t in &self.targets {
            let mut line = if t.raw {
                msg.to_string()
            } else {
                format!(
                    "<{}>{} lb[{}]: {msg}",
                    t.pri,
                    syslog_date(unix_ms),
                    std::process::id()
                )
            };
            if line.len() > t.max_len {
                let mut n = t.max_len;
                while !line.is_char_boundary(n) {
                    n -= 1;
                }
                line.truncate(n);
            }
            match &t.out {
                Out::Udp(s, a) => {
                    let _ = s.send_to(line.as_bytes(), a);
                }
                Out::Unix(s, p) => {
                    let _ = s.send_to(line.as_bytes(), p);
                }
                Out::Stdout => {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                }
                Out::Stderr => {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn parts(unix_ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil((secs / 86400) as i64);
    let t = secs % 86400;
    (y, m, d, t / 3600, t % 3600 / 60, t % 60, unix_ms % 1000)
}

/// HAProxy's accept date, `06/Feb/2009:12:12:51.443` (UTC).
pub fn accept_date(unix_ms: u64) -> String {
    let (y, m, d, h, mi, s, ms) = parts(unix_ms);
    format!(
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02}.{ms:03}",
        MONTHS[m as usize - 1]
    )
}

/// RFC 3164 timestamp, `Feb  6 12:12:56` (UTC).
fn syslog_date(unix_ms: u64) -> String {
    let (_, m, d, h, mi, s, _) = parts(unix_ms);
    format!("{} {d:>2} {h:02}:{mi:02}:{s:02}", MONTHS[m as usize - 1])
}

fn ms_or_minus(v: u32) -> String {
    if v == u32::MAX {
        "-1".into()
    } else {
        v.to_string()
    }
}

/// The TCP log line of an ended session (HAProxy's "TCP log format"):
/// `client:port [date] frontend backend/server Tw/Tc/Tt bytes_read term
/// actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue`.
pub fn line(
    s: &Session,
    frontend: &str,
    backend: &str,
    server: Option<&str>,
    now_ns: u64,
) -> String {
    let tt = now_ns.saturating_sub(s.accept_ns) / 1_000_000;
    let term = s.term();
    format!(
        "{}:{} [{}] {frontend} {backend}/{} {}/{}/{tt} {} {}{} {}/{}/{}/{}/{} {}/{}",
        s.client.ip(),
        s.client.port(),
        accept_date(s.accept_unix_ms),
        server.unwrap_or("<NOSRV>"),
        ms_or_minus(s.tw_ms.load(Ordering::Relaxed)),
        ms_or_minus(s.tc_ms.load(Ordering::Relaxed)),
        s.bytes_out.load(Ordering::Relaxed),
        term[0] as char,
        term[1] as char,
        s.actconn.load(Ordering::Relaxed),
        s.feconn.load(Ordering::Relaxed),
        s.beconn.load(Ordering::Relaxed),
        s.srv_conn.load(Ordering::Relaxed),
        s.retries.load(Ordering::Relaxed),
        s.srv_queue.load(Ordering::Relaxed),
        s.backend_queue.load(Ordering::Relaxed),
    )
}

/// The TCP log line of a NAT flow that ended: the same fields, with what a
/// path without a connection cannot know (connect time, the counts of
/// connections at its start) as `-1` and `0`. `now_*` place the monotonic
/// times of the record on the wall clock.
pub fn nat_line(
    e: &lb_common::NatLog,
    frontend: &str,
    backend: &str,
    server: Option<&str>,
    now_ns: u64,
    now_unix_ms: u64,
) -> String {
    let ip: std::net::IpAddr = if e.family == lb_common::AF_INET {
        std::net::IpAddr::from([
            e.client_be[0],
            e.client_be[1],
            e.client_be[2],
            e.client_be[3],
        ])
    } else {
        std::net::IpAddr::from(e.client_be)
    };
    let tt = e.ended_ns.saturating_sub(e.created_ns) / 1_000_000;
    let accept_ms = now_unix_ms.saturating_sub(now_ns.saturating_sub(e.created_ns) / 1_000_000);
    format!(
        "{}:{} [{}] {frontend} {backend}/{} 0/-1/{tt} {} {}{} 0/0/0/0/0 0/0",
        ip,
        e.client_port,
        accept_date(accept_ms),
        server.unwrap_or("<NOSRV>"),
        e.bytes_out,
        e.term[0] as char,
        e.term[1] as char,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::admin::Sessions;

    #[test]
    fn nat_line_has_every_field() {
        let e = lb_common::NatLog {
            client_be: [10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            family: lb_common::AF_INET,
            client_port: 33313,
            created_ns: 1_000_000_000,
            ended_ns: 6_007_000_000,
            bytes_out: 212,
            term: *b"CD",
            ..Default::default()
        };
        let l = nat_line(
            &e,
            "fnt",
            "bck",
            Some("srv1"),
            7_000_000_000,
            1_233_922_377_443,
        );
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f[0], "10.0.1.2:33313");
        assert_eq!(f[1], "[06/Feb/2009:12:12:51.443]");
        assert_eq!(
            &f[2..],
            [
                "fnt",
                "bck/srv1",
                "0/-1/5007",
                "212",
                "CD",
                "0/0/0/0/0",
                "0/0"
            ]
        );
    }

    fn sink(logs: &str) -> Sink {
        let cfg = crate::config::parse_str(
            &format!(
                "global\n{logs}\ndefaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n\
                 frontend fe\n bind 127.0.0.1:1\n option tcplog\n log global\n default_backend be\n\
                 backend be\n server s1 127.0.0.1:2\n"
            ),
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        Sink::for_frontend(&cfg, &cfg.frontends[0])
            .unwrap()
            .unwrap()
    }

    #[test]
    fn syslog_over_udp_and_levels() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let port = rx.local_addr().unwrap().port();
        let s = sink(&format!(
            " log 127.0.0.1:{port} local1\n log 127.0.0.1:{port} local2 err"
        ));
        // The `err` target drops info lines: one target left.
        assert_eq!(s.targets.len(), 1);
        s.send("hello", 1_233_922_371_443);
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        // local1 (17) * 8 + info (6) = 142.
        let want = format!("<142>Feb  6 12:12:51 lb[{}]: hello", std::process::id());
        assert_eq!(got, want);
        let raw = sink(&format!(" log 127.0.0.1:{port} format raw local0"));
        raw.send("x", 0);
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"x");
    }

    #[test]
    fn dates_match_haproxy_layout() {
        // 2009-02-06 12:12:51.443 UTC, HAProxy's documentation example.
        let ms = 1_233_922_371_443;
        assert_eq!(accept_date(ms), "06/Feb/2009:12:12:51.443");
        assert_eq!(syslog_date(ms), "Feb  6 12:12:51");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn line_has_every_field() {
        let t = Sessions::default();
        let s = t.open(0, 0, "10.0.1.2:33313".parse().unwrap());
        s.tw_ms.store(0, Ordering::Relaxed);
        s.tc_ms.store(0, Ordering::Relaxed);
        s.bytes_out.store(212, Ordering::Relaxed);
        for c in [&s.actconn, &s.feconn, &s.beconn, &s.srv_conn] {
            c.store(1, Ordering::Relaxed);
        }
        let l = line(&s, "fnt", "bck", Some("srv1"), s.accept_ns + 5_007_000_000);
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f[0], "10.0.1.2:33313");
        assert!(f[1].starts_with('[') && f[1].ends_with(']'));
        assert_eq!(
            &f[2..],
            [
                "fnt",
                "bck/srv1",
                "0/0/5007",
                "212",
                "--",
                "1/1/1/1/0",
                "0/0"
            ]
        );
        let none = t.open(0, 0, "[::1]:1".parse().unwrap());
        none.set_term(*b"SC");
        let l = line(&none, "f", "b", None, none.accept_ns);
        assert!(l.contains(" b/<NOSRV> -1/-1/0 0 SC "), "{l}");
    }
}
