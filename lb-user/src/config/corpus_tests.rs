//! The configuration corpus of `tests/configs/`: real-world TCP configurations
//! parsed to the expected model (field by field), the multi-file directory,
//! the broken configurations of `tests/configs/errors/` with the position and
//! message each header announces, and `runtime_gaps`.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::Sys;
use super::parse::{expand_paths, parse_with};
use super::*;

/// `tests/configs/` of the repository.
fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs")
}

/// The corpus' system: no environment, no name resolution (the corpus uses
/// addresses), the `haproxy` account, files relative to `tests/configs/` (the
/// differential test runs HAProxy there too).
struct CorpusSys;

impl Sys for CorpusSys {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        Err(format!("Name or service not known ({host})"))
    }
    fn user(&self, name: &str) -> Option<u32> {
        (name == "haproxy").then_some(115)
    }
    fn group(&self, name: &str) -> Option<u32> {
        (name == "haproxy").then_some(120)
    }
    fn read(&self, path: &Path) -> Result<String, String> {
        std::fs::read_to_string(configs_dir().join(path)).map_err(|e| e.to_string())
    }
}

/// Parses `tests/configs/<name>` (named `<name>` in messages).
fn load(name: &str) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(configs_dir().join(name))
        .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    parse_with(&[(&text, Path::new(name))], &CorpusSys)
}

fn corpus(name: &str) -> Config {
    load(name).unwrap_or_else(|e| panic!("{e}"))
}

fn o(file: &str, line: usize) -> Origin {
    Origin {
        file: PathBuf::from(file),
        line,
    }
}

fn at<T>(value: T, file: &str, line: usize) -> Located<T> {
    Located {
        value,
        origin: o(file, line),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything `lb run` refuses, check settings included.
fn gaps(cfg: &Config) -> Vec<(usize, String)> {
    crate::health::runtime_gaps(cfg)
        .into_iter()
        .map(|(o, w)| (o.line, w))
        .collect()
}

#[test]
fn seed_pgsql() {
    const F: &str = "seed-pgsql.cfg";
    let cfg = corpus(F);
    let server = |name: &str, addr: &str, line: usize| Server {
        name: name.into(),
        addr: sa(addr),
        origin: o(F, line),
        params: ServerParams {
            check: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let expected = Config {
        resolvers: vec![],
        stats_pages: Vec::new(),
        global: Global {
            maxconn: Some(4096),
            maxconn_origin: Some(o(F, 3)),
            ..Default::default()
        },
        frontends: vec![Frontend {
            name: "pgsql_frontend".into(),
            binds: vec![Bind {
                addr: None,
                port_first: 5432,
                port_last: 5432,
                origin: o(F, 12),
                ..Default::default()
            }],
            default_backend: Some("pgsql_backend".into()),
            default_backend_idx: Some(0),
            timeout_client: Some(secs(1800)),
            origin: o(F, 11),
            ..Default::default()
        }],
        backends: vec![Backend {
            name: "pgsql_backend".into(),
            balance: Balance::RoundRobin,
            balance_origin: Some(o(F, 18)),
            servers: vec![
                server("pgsql_node1", "10.0.0.1:5432", 19),
                server("pgsql_node2", "10.0.0.2:5432", 20),
                server("pgsql_node3", "10.0.0.3:5432", 21),
            ],
            timeout_connect: Some(secs(5)),
            timeout_server: Some(secs(1800)),
            origin: o(F, 16),
            ..Default::default()
        }],
        warnings: vec![],
    };
    assert_eq!(cfg, expected);
    // Everything it asks for, lb run applies.
    assert!(runtime_gaps(&cfg).is_empty(), "{:?}", runtime_gaps(&cfg));
}

#[test]
fn patroni() {
    const F: &str = "patroni.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.global.maxconn, Some(100));
    assert_eq!(cfg.frontends.len(), 2);
    assert_eq!(cfg.backends.len(), 2);
    for (i, (name, port, path, line)) in [
        ("primary", 5000, "/primary", 17),
        ("replicas", 5001, "/replica", 27),
    ]
    .into_iter()
    .enumerate()
    {
        let f = &cfg.frontends[i];
        assert_eq!(f.name, name);
        assert_eq!(f.origin, o(F, if i == 0 { 15 } else { 24 }));
        assert_eq!(
            (f.binds[0].addr, f.binds[0].port_first, f.binds[0].port_last),
            (None, port, port)
        );
        // A listen section is its own default backend.
        assert_eq!(f.default_backend.as_deref(), Some(name));
        assert_eq!(f.default_backend_idx, Some(i));
        assert_eq!(f.timeout_client, Some(secs(1800)));
        assert_eq!(f.logs, [at(ProxyLog::Global, F, 7)]);
        let b = &cfg.backends[i];
        assert_eq!(b.name, name);
        assert_eq!(b.timeout_connect, Some(secs(4)));
        assert_eq!(b.timeout_server, Some(secs(1800)));
        assert_eq!(b.timeout_check, Some(at(secs(5), F, 13)));
        assert_eq!(b.retries, Some(at(2, F, 9)));
        assert_eq!(
            b.health_check,
            Some(at(
                HealthCheck::HttpChk {
                    method: "OPTIONS".into(),
                    uri: path.into(),
                    version: "HTTP/1.0".into()
                },
                F,
                line
            ))
        );
        assert_eq!(
            b.http_check_rules,
            [at(
                HttpCheckRule::Expect(CheckExpect {
                    negate: false,
                    matcher: ExpectMatch::Status("200".into()),
                    min_recv: None,
                    comment: None,
                    other: vec![],
                }),
                F,
                line + 1
            )]
        );
        assert_eq!(b.servers.len(), 3);
        for (j, s) in b.servers.iter().enumerate() {
            let host = format!("10.0.0.{}", 11 + j);
            assert_eq!(s.name, format!("postgresql_{host}_5432"));
            assert_eq!(s.addr, SocketAddr::new(ip(&host), 5432));
            assert!(s.params.check);
            assert_eq!(
                s.params.check_params,
                CheckParams {
                    inter: secs(3),
                    rise: 2,
                    fall: 3
                }
            );
            assert_eq!(s.params.check_port, Some(8008));
            assert_eq!(s.params.maxconn, Some(100));
            assert!(s.params.on_marked_down_shutdown);
            assert_eq!(s.params.weight, 1);
            assert_eq!(s.origin, o(F, line + 3 + j));
        }
    }
    assert_eq!(cfg.backends[0].balance, Balance::RoundRobin);
    assert_eq!(cfg.backends[0].balance_origin, None);
    assert_eq!(cfg.backends[1].balance, Balance::LeastConn);
    assert_eq!(cfg.backends[1].balance_origin, Some(o(F, 26)));
    // lb run applies all of it, the HTTP checks on Patroni's port included.
    assert_eq!(gaps(&cfg), []);
}

#[test]
fn redis_sentinel() {
    const F: &str = "redis-sentinel.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let f = &cfg.frontends[0];
    assert_eq!(f.name, "ft_redis");
    assert_eq!(
        (
            f.binds[0].addr,
            f.binds[0].port_first,
            f.binds[0].name.as_deref()
        ),
        (Some(ip("10.0.0.100")), 6379, Some("redis"))
    );
    assert_eq!(f.timeout_client, Some(secs(6)));
    let b = &cfg.backends[0];
    assert_eq!(b.timeout_connect, Some(secs(3)));
    assert_eq!(b.timeout_server, Some(secs(6)));
    assert_eq!(b.health_check, Some(at(HealthCheck::TcpCheck, F, 14)));
    let expect = |s: &str| {
        TcpCheckRule::Expect(CheckExpect {
            negate: false,
            matcher: ExpectMatch::String(s.into()),
            min_recv: None,
            comment: None,
            other: vec![],
        })
    };
    let send = |s: &str| TcpCheckRule::Send(s.as_bytes().to_vec());
    let rules: Vec<TcpCheckRule> = b.tcp_check_rules.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        rules,
        [
            TcpCheckRule::Connect(CheckConnect::default()),
            send("AUTH s3cret\r\n"),
            expect("+OK"),
            send("PING\r\n"),
            expect("+PONG"),
            send("info replication\r\n"),
            expect("role:master"),
            send("QUIT\r\n"),
            expect("+OK"),
        ]
    );
    assert_eq!(b.tcp_check_rules[8].origin, o(F, 23));
    let names: Vec<(&str, SocketAddr, Duration)> = b
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.addr, s.params.check_params.inter))
        .collect();
    assert_eq!(
        names,
        [
            ("R1", sa("10.0.0.11:6379"), secs(1)),
            ("R2", sa("10.0.0.12:6379"), secs(1)),
            ("R3", sa("10.0.0.13:6379"), secs(1)),
        ]
    );
    // The tcp-check rules (PING, expect +PONG, role:master) are applied.
    assert_eq!(gaps(&cfg), []);
}

#[test]
fn mysql_galera() {
    const F: &str = "mysql-galera.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let g = &cfg.global;
    assert_eq!(
        g.logs,
        [at(
            LogTarget {
                address: LogAddress::Udp(sa("127.0.0.1:514")),
                len: None,
                format: None,
                sample: None,
                facility: "local0".into(),
                level: Some("notice".into()),
                minlevel: None,
            },
            F,
            4
        )]
    );
    assert_eq!(g.nbthread, Some(at(2, F, 6)));
    let (w, r) = (&cfg.backends[0], &cfg.backends[1]);
    assert_eq!(
        (w.name.as_str(), w.balance),
        ("galera_writer", Balance::First)
    );
    assert_eq!(
        w.health_check,
        Some(at(
            HealthCheck::MysqlCheck {
                user: Some("haproxy_check".into()),
                post41: true
            },
            F,
            22
        ))
    );
    assert_eq!(w.redispatch, Some(at(-1, F, 13)));
    assert_eq!(w.retries, Some(at(3, F, 14)));
    let writer: Vec<(&str, bool, Option<u32>)> = w
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.params.backup, s.params.maxconn))
        .collect();
    assert_eq!(
        writer,
        [
            ("galera1", false, Some(500)),
            ("galera2", true, None),
            ("galera3", true, None)
        ]
    );
    assert_eq!(
        (r.name.as_str(), r.balance),
        ("galera_readers", Balance::LeastConn)
    );
    assert_eq!(r.allbackups, Some(o(F, 31)));
    for (s, weight) in r.servers.iter().zip([10, 10, 5]) {
        assert!(s.params.check);
        assert_eq!(s.params.weight, weight);
        assert_eq!(
            s.params.check_params,
            CheckParams {
                inter: secs(2),
                rise: 3,
                fall: 2
            }
        );
        assert_eq!(s.params.downinter, Some(secs(5)));
        assert_eq!(s.params.fastinter, Some(ms(500)));
        assert_eq!(s.params.slowstart, Some(secs(30)));
    }
    let f = &cfg.frontends[1];
    assert_eq!(f.tcplog, Some(o(F, 11)));
    assert_eq!(f.dontlognull, Some(o(F, 12)));
    assert_eq!(f.timeout_client, Some(secs(8 * 3600)));
    let gaps = gaps(&cfg);
    // Backups, 'first', 'leastconn', maxconn, slowstart, the MySQL checks and
    // the check intervals are applied.
    assert!(
        !gaps.iter().any(|(_, w)| w.contains("check")
            || w.contains("fastinter")
            || w.contains("backup")
            || w.contains("balance")),
        "{gaps:?}"
    );
}

#[test]
fn listen_and_several_defaults() {
    const F: &str = "listen-defaults.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let g = &cfg.global;
    assert_eq!(g.daemon, Some(o(F, 4)));
    assert_eq!(g.pidfile, Some(at(PathBuf::from("/run/lb-test.pid"), F, 5)));
    assert_eq!(g.hard_stop_after, Some(at(secs(30), F, 6)));
    let names: Vec<&str> = cfg.frontends.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["ssh", "ldap", "smtp"]);
    let names: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ssh", "ldap_servers", "smtp"]);
    // 'ssh' follows the last (anonymous) defaults section.
    let (ssh_f, ssh_b) = (&cfg.frontends[0], &cfg.backends[0]);
    assert_eq!(ssh_f.timeout_client, Some(secs(60)));
    assert_eq!(ssh_b.timeout_connect, Some(secs(5)));
    assert_eq!(ssh_b.balance, Balance::StaticRr);
    assert_eq!(ssh_b.balance_origin, Some(o(F, 26)));
    assert_eq!(ssh_b.servers[0].params.check_params, CheckParams::default());
    assert_eq!(ssh_b.servers[1].params.weight, 3);
    // 'ldap' takes 'long', which copies 'short' and changes some timeouts.
    let ldap = &cfg.frontends[1];
    assert_eq!(ldap.timeout_client, Some(secs(3600)));
    assert_eq!(ldap.maxconn, Some(2000));
    assert_eq!(ldap.maxconn_origin, Some(o(F, 18)));
    assert_eq!(ldap.default_backend_idx, Some(1));
    // 'ldap_servers' takes 'short'.
    let b = &cfg.backends[1];
    assert_eq!(b.timeout_connect, Some(secs(2)));
    assert_eq!(b.timeout_server, Some(secs(10)));
    assert_eq!(b.balance, Balance::Source);
    assert_eq!(
        b.hash_type,
        Some(at(
            HashType {
                method: HashMethod::Consistent,
                function: HashFunction::Sdbm,
                avalanche: true
            },
            F,
            39
        ))
    );
    assert_eq!(b.health_check, Some(at(HealthCheck::LdapCheck, F, 40)));
    assert_eq!(
        b.servers[0].params.check_params,
        CheckParams {
            inter: secs(1),
            rise: 1,
            fall: 2
        }
    );
    let smtp = &cfg.backends[2];
    assert_eq!(
        smtp.health_check,
        Some(at(
            HealthCheck::SmtpChk {
                hello: "EHLO".into(),
                domain: "lb.example.org".into()
            },
            F,
            46
        ))
    );
    assert!(smtp.servers[1].params.backup && !smtp.servers[0].params.backup);
    assert_eq!(cfg.frontends[2].default_backend_idx, Some(2));
}

#[test]
fn port_ranges_and_binds() {
    const F: &str = "port-ranges.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let ftp = &cfg.frontends[0];
    let got: Vec<(Option<IpAddr>, u16, u16)> = ftp
        .binds
        .iter()
        .map(|b| (b.addr, b.port_first, b.port_last))
        .collect();
    assert_eq!(
        got,
        [
            (Some(ip("10.0.0.100")), 21, 21),
            (Some(ip("10.0.0.100")), 50000, 50100)
        ]
    );
    let dual = &cfg.frontends[1];
    let b = &dual.binds;
    assert_eq!(
        (b[0].addr, b[0].port_first, b[0].v4v6, b[0].v6only),
        (Some(ip("::")), 8080, true, false)
    );
    assert_eq!((b[1].addr, b[1].port_first), (Some(ip("::1")), 8443));
    assert_eq!(
        (b[2].addr, b[2].port_first, b[2].port_last),
        (Some(ip("127.0.0.1")), 9000, 9009)
    );
    assert_eq!(
        (b[2].name.as_deref(), b[2].backlog, b[2].maxconn),
        (Some("loopback"), Some(256), Some(100))
    );
    assert_eq!(
        (b[3].addr, b[3].port_first, b[3].v6only),
        (Some(ip("::")), 9100, true)
    );
    assert!(b.iter().all(|b| b.origin.file == Path::new(F)));
    let p = &cfg.frontends[2].binds[0];
    assert!(p.accept_proxy);
    assert_eq!(p.interface.as_deref(), Some("eth0"));
    // Servers without a port use the port the client connected to.
    let ftp_b = &cfg.backends[0];
    assert_eq!(ftp_b.balance, Balance::Source);
    for s in &ftp_b.servers {
        assert_eq!(s.port_mode, ServerPort::SameAsClient);
        assert_eq!(s.addr.port(), 0);
        assert_eq!(s.params.check_port, Some(21));
    }
    let web = &cfg.backends[1];
    assert_eq!(web.servers[0].addr, sa("[fd00::10]:8080"));
    assert_eq!(web.servers[1].params.send_proxy, Some(ProxyProtocol::V2));
}

#[test]
fn acls_and_routing() {
    const F: &str = "acls.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let f = &cfg.frontends[0];
    assert_eq!(f.binds.len(), 3);
    let net = |a: &str, prefix: u8| {
        Pattern::Net(IpNet {
            addr: ip(a),
            prefix,
        })
    };
    let trusted = f.acls.iter().find(|a| a.name == "trusted").unwrap();
    assert_eq!(trusted.tests.len(), 2);
    assert_eq!(trusted.tests[0].fetch, Fetch::Src);
    assert_eq!(trusted.tests[0].files, [PathBuf::from("acl/trusted.lst")]);
    assert_eq!(
        trusted.tests[0].patterns,
        [
            net("10.0.0.0", 8),
            net("192.168.1.10", 32),
            net("2001:db8::", 32),
            net("127.0.0.1", 32)
        ]
    );
    assert_eq!(trusted.tests[1].patterns, [net("192.168.7.0", 24)]);
    assert_eq!(trusted.tests[1].origin, o(F, 13));
    let acl = |name: &str| f.acls.iter().find(|a| a.name == name).unwrap();
    assert_eq!(
        acl("office").tests[0].patterns,
        [net("172.16.0.0", 12), net("::1", 128)]
    );
    assert_eq!(
        acl("high_ports").tests[0],
        AclTest {
            fetch: Fetch::DstPort,
            method: Match::Int,
            icase: false,
            patterns: vec![Pattern::Int { lo: 6005, hi: 6010 }],
            files: vec![],
            origin: o(F, 15),
        }
    );
    let Pattern::Int { lo, hi } = acl("low_ports").tests[0].patterns[0] else {
        panic!()
    };
    assert!(lo < 0 && hi == 1023);
    // tcp-request connection rules, in order.
    let r = &f.tcp_request_connection;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].action, TcpRequestAction::Reject);
    let c = r[0].cond.as_ref().unwrap();
    assert!(!c.unless);
    assert_eq!(c.any_of.len(), 1);
    let terms: Vec<(bool, Option<&str>, usize)> = c.any_of[0]
        .iter()
        .map(|t| (t.negate, t.name.as_deref(), t.tests.len()))
        .collect();
    // The condition sees both 'trusted' lines.
    assert_eq!(
        terms,
        [(true, Some("trusted"), 2), (true, Some("office"), 1)]
    );
    assert_eq!(r[1].action, TcpRequestAction::Accept);
    let local = &r[1].cond.as_ref().unwrap().any_of[0][0];
    assert_eq!(local.name.as_deref(), Some("LOCALHOST"));
    assert_eq!(
        local.tests[0].patterns,
        [net("127.0.0.1", 8), net("::1", 128)]
    );
    // use_backend rules, in order, resolved to backend indexes.
    let u: Vec<(&str, usize, usize)> = f
        .use_backends
        .iter()
        .map(|u| (u.backend.as_str(), u.backend_idx, u.origin.line))
        .collect();
    assert_eq!(
        u,
        [("replicas", 1, 20), ("batch", 2, 21), ("primary", 0, 22)]
    );
    let batch = f.use_backends[1].cond.as_ref().unwrap();
    assert_eq!(batch.any_of.len(), 2);
    assert_eq!(batch.any_of[0][0].name.as_deref(), Some("high_ports"));
    let inline = &batch.any_of[1][0];
    assert_eq!(inline.name, None);
    assert_eq!(inline.tests[0].fetch, Fetch::SrcPort);
    assert_eq!(
        inline.tests[0].patterns,
        [Pattern::Int {
            lo: 40000,
            hi: 65535
        }]
    );
    assert!(batch.any_of[1][1].negate);
    assert!(f.use_backends[2].cond.as_ref().unwrap().unless);
    assert_eq!(f.default_backend_idx, Some(0));
    assert_eq!(cfg.backends[1].balance, Balance::Random { draws: 3 });
    assert_eq!(cfg.backends[2].balance, Balance::Random { draws: 2 });
}

#[test]
fn debian_global_section() {
    const F: &str = "debian-tcp.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let g = &cfg.global;
    assert_eq!(g.logs.len(), 2);
    assert_eq!(
        g.logs[0].value.address,
        LogAddress::Unix(PathBuf::from("/dev/log"))
    );
    assert_eq!(g.logs[1].value.level.as_deref(), Some("notice"));
    assert_eq!(g.chroot, Some(at(PathBuf::from("/var/lib/haproxy"), F, 5)));
    assert_eq!(
        g.stats_sockets,
        [at(
            StatsSocket {
                address: StatsAddress::Unix(PathBuf::from("/run/haproxy/admin.sock")),
                mode: Some(0o660),
                uid: None,
                gid: None,
                level: StatsLevel::Admin,
                expose_fd_listeners: true,
                severity_output: None,
                other: vec![],
            },
            F,
            6
        )]
    );
    assert_eq!(g.stats_timeout, Some(at(secs(30), F, 7)));
    assert_eq!(
        g.user,
        Some(at(
            Account {
                name: Some("haproxy".into()),
                id: 115
            },
            F,
            8
        ))
    );
    assert_eq!(g.group.as_ref().map(|g| g.value.id), Some(120));
    assert_eq!(g.daemon, Some(o(F, 10)));
    assert_eq!(g.ca_base, Some(PathBuf::from("/etc/ssl/certs")));
    let other: Vec<&str> = g.other.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(
        other,
        [
            "crt-base",
            "ssl-default-bind-ciphers",
            "ssl-default-bind-ciphersuites",
            "ssl-default-bind-options"
        ]
    );
    let f = &cfg.frontends[0];
    assert_eq!(f.timeout_client, Some(ms(50000)));
    assert_eq!(f.tcplog, Some(o(F, 23)));
    assert_eq!(
        cfg.backends[0].health_check,
        Some(at(HealthCheck::SslHelloChk, F, 34))
    );
    // user/group are applied (lb leaves root once set up); chroot is the
    // one setting of Debian's stock global section lb refuses.
    let gaps: Vec<String> = gaps(&cfg).into_iter().map(|(_, w)| w).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].starts_with("chroot"), "{gaps:?}");
    // Checked now.
    assert!(
        !gaps.iter().any(|g| g.contains("ssl-hello-chk")),
        "{gaps:?}"
    );
}

#[test]
fn environment_and_conditional_blocks() {
    const F: &str = "env-and-conditions.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // Only the .if branch's frontend.
    assert_eq!(cfg.frontends.len(), 1);
    let f = &cfg.frontends[0];
    assert_eq!(f.name, "pg_front");
    assert_eq!(f.origin, o(F, 14));
    // "${LB_TEST_ADDR-127.0.0.1}:${LB_TEST_BACKEND_PORT}0", the port set by setenv.
    assert_eq!(
        (f.binds[0].addr, f.binds[0].port_first),
        (Some(ip("127.0.0.1")), 54330)
    );
    assert_eq!(
        f.description.as_deref(),
        Some("Section pg_front at line 16")
    );
    let b = &cfg.backends[0];
    assert_eq!(b.name, "pg");
    assert_eq!(b.timeout_connect, Some(secs(3)));
    let s: Vec<(&str, SocketAddr, u32, bool)> = b
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.addr, s.params.weight, s.params.check))
        .collect();
    assert_eq!(
        s,
        [
            ("node-1", sa("10.0.9.1:5433"), 20, false),
            ("node-2", sa("10.0.9.2:5433"), 1, true)
        ]
    );
    assert_eq!(b.servers[1].params.check_params.rise, 1);
}

#[test]
fn options_and_server_settings() {
    const F: &str = "options.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let g = &cfg.global;
    assert_eq!(g.maxconn, Some(20000));
    assert_eq!(g.nbthread, Some(at(4, F, 5)));
    assert_eq!(
        g.stats_sockets[0].value.address,
        StatsAddress::Tcp(sa("127.0.0.1:9999"))
    );
    assert_eq!(g.stats_sockets[0].value.level, StatsLevel::Operator);
    assert_eq!(g.stats_maxconn, Some(at(5, F, 7)));
    let f = &cfg.frontends[0];
    assert_eq!(f.id, Some(at(10, F, 27)));
    assert_eq!(f.description.as_deref(), Some("application entry point"));
    assert_eq!(f.maxconn, Some(10000));
    assert_eq!(f.backlog, Some(at(4096, F, 30)));
    assert_eq!(f.clitcpka, Some(o(F, 31)));
    assert_eq!(f.timeout_client_fin, Some(at(secs(5), F, 16)));
    assert_eq!(
        (f.binds[0].id, f.binds[0].name.as_deref()),
        (Some(7), Some("app"))
    );
    let other: Vec<&str> = f.other.iter().map(|o| o.value.as_str()).collect();
    assert_eq!(other, ["option splice-auto", "option nolinger"]);
    let log = &f.logs[0].value;
    assert_eq!(
        *log,
        ProxyLog::Target(LogTarget {
            address: LogAddress::Udp(sa("127.0.0.1:514")),
            len: Some(2048),
            format: Some("rfc5424".into()),
            sample: None,
            facility: "local2".into(),
            level: Some("info".into()),
            minlevel: Some("notice".into()),
        })
    );
    let b = &cfg.backends[0];
    assert_eq!(b.id, Some(at(11, F, 36)));
    assert_eq!(
        b.hash_type.as_ref().map(|h| h.value),
        Some(HashType {
            method: HashMethod::Consistent,
            function: HashFunction::Crc32,
            avalanche: true
        })
    );
    assert_eq!(b.fullconn, Some(at(1000, F, 39)));
    assert_eq!(b.srvtcpka, Some(o(F, 40)));
    assert_eq!(b.redispatch, Some(at(2, F, 41)));
    assert_eq!(b.retries, Some(at(0, F, 23)));
    assert_eq!(b.timeout_tunnel, Some(at(secs(3600), F, 18)));
    assert_eq!(b.timeout_queue, Some(at(secs(30), F, 19)));
    assert_eq!(b.timeout_server_fin, Some(at(secs(5), F, 17)));
    assert_eq!(b.health_check, Some(at(HealthCheck::TcpCheck, F, 42)));
    let s = &b.servers;
    assert_eq!(s.len(), 5);
    // Every server takes the default-server line.
    for s in s {
        assert!(s.params.check);
        assert_eq!(s.params.fastinter, Some(ms(500)));
        assert_eq!(s.params.downinter, Some(secs(10)));
        assert_eq!(s.params.slowstart, Some(secs(20)));
        assert_eq!(s.params.maxqueue, Some(50));
    }
    assert_eq!(
        (
            s[0].params.id,
            s[0].params.maxconn,
            s[0].params.minconn,
            s[0].params.weight
        ),
        (Some(1), Some(100), Some(10), 100)
    );
    assert_eq!(
        s[0].params.agent,
        AgentCheck {
            enabled: true,
            port: Some(9000),
            inter: Some(secs(5)),
            send: Some("ping\n".into()),
            addr: None
        }
    );
    assert_eq!(s[1].params.send_proxy, Some(ProxyProtocol::V1));
    assert!(s[1].params.observe_layer4);
    assert_eq!(
        (s[1].params.on_error, s[1].params.error_limit),
        (Some(OnError::MarkDown), Some(5))
    );
    assert!(s[2].params.check_send_proxy);
    assert_eq!(
        (s[2].params.check_addr, s[2].params.check_port),
        (Some(ip("10.0.11.3")), Some(8001))
    );
    assert!(s[2].params.on_marked_up_shutdown_backup);
    assert_eq!(s[3].port_mode, ServerPort::Offset(1000));
    assert_eq!(s[3].addr, sa("10.0.10.4:0"));
    assert_eq!(
        s[3].params.init_addr,
        Some(vec![InitAddr::Last, InitAddr::Libc, InitAddr::None])
    );
    assert_eq!(s[3].params.other, ["tfo"]);
    assert!(s[4].params.backup && s[4].params.disabled);
    // `option tcp-check` without rules is the plain connect check lb runs.
    let g = gaps(&cfg);
    assert!(!g.iter().any(|(_, w)| w.contains("tcp-check")), "{g:?}");
    // A port offset is applied now.
    assert!(!g.iter().any(|(_, w)| w.contains("port")), "{g:?}");
    // agent-check is applied.
    assert!(!g.iter().any(|(_, w)| w.contains("agent")), "{g:?}");
}

#[test]
fn directory_of_files_in_haproxy_order() {
    let dir = configs_dir().join("dir");
    let files = expand_paths(std::slice::from_ref(&dir)).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Only regular, non-hidden '*.cfg' files, in byte order.
    assert_eq!(
        names,
        [
            "10-global.cfg",
            "20-defaults.cfg",
            "30-frontend.cfg",
            "40-backend.cfg"
        ]
    );
    let texts: Vec<(String, PathBuf)> = files
        .iter()
        .map(|f| (std::fs::read_to_string(f).unwrap(), f.clone()))
        .collect();
    let refs: Vec<(&str, &Path)> = texts
        .iter()
        .map(|(t, f)| (t.as_str(), f.as_path()))
        .collect();
    let cfg = parse_with(&refs, &CorpusSys).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.global.maxconn, Some(1000));
    // The defaults of one file preset the proxies of the next ones.
    assert_eq!(cfg.frontends[0].timeout_client, Some(secs(30)));
    assert_eq!(cfg.backends[0].timeout_connect, Some(secs(5)));
    assert_eq!(cfg.frontends[0].default_backend_idx, Some(0));
    assert_eq!(cfg.frontends[0].origin.file, dir.join("30-frontend.cfg"));
    assert_eq!(
        cfg.backends[0].servers[0].origin,
        Origin {
            file: dir.join("40-backend.cfg"),
            line: 2
        }
    );
    // And parse_files reads them the same way.
    assert_eq!(parse_files(&[dir]).unwrap(), cfg);
}

/// One broken configuration of `tests/configs/errors/`: its header, then the
/// error lb reports.
struct ErrorCase {
    name: String,
    /// `line:col` (or `file:line:col` when the error is in another file).
    pos: String,
    fragment: String,
    hint: Option<String>,
}

fn error_cases() -> Vec<ErrorCase> {
    let dir = configs_dir().join("errors");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cfg"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let mut lines = text.lines();
            let expect = lines
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{name}: no '# expect: LINE:COL fragment' header"));
            let (pos, fragment) = expect.split_once(' ').unwrap();
            let hint = lines
                .next()
                .and_then(|l| l.strip_prefix("# hint: "))
                .map(str::to_string);
            ErrorCase {
                name,
                pos: pos.into(),
                fragment: fragment.into(),
                hint,
            }
        })
        .collect()
}

#[test]
fn broken_configurations_report_where_and_what() {
    let cases = error_cases();
    assert!(cases.len() >= 40, "only {} error cases", cases.len());
    for c in &cases {
        let file = format!("errors/{}", c.name);
        let e = load(&file)
            .err()
            .unwrap_or_else(|| panic!("{file}: parsed without error"));
        let shown = e.to_string();
        let pos = if c.pos.matches(':').count() == 2 {
            c.pos.clone()
        } else {
            format!("{file}:{}", c.pos)
        };
        assert!(
            shown.starts_with(&format!("{pos}: error: ")),
            "{file}: expected an error at {pos}, got: {shown}"
        );
        assert!(
            shown.contains(&c.fragment),
            "{file}: expected '{}' in: {shown}",
            c.fragment
        );
        if let Some(h) = &c.hint {
            assert!(
                shown.ends_with(&format!("; did you mean '{h}'?")),
                "{file}: expected the hint '{h}' in: {shown}"
            );
        }
        // Every message names the token it is about.
        assert!(shown.contains(", near '"), "{file}: {shown}");
    }
}

#[test]
fn every_valid_corpus_file_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".cfg") {
            corpus(&name);
            n += 1;
        }
    }
    assert!(n >= 10, "{n} corpus files");
}

#[test]
fn misplaced_keywords_are_ignored_with_warnings() {
    const F: &str = "misplaced-keywords.cfg";
    let cfg = corpus(F);
    let lines: Vec<usize> = cfg
        .warnings
        .iter()
        .map(|w| w.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    // The lines HAProxy 2.6 warns about.
    assert_eq!(lines, [11, 12, 13, 14, 18, 19, 20]);
    assert!(cfg.warnings[0]
        .ends_with("warning: 'balance' ignored because frontend 'f' has no backend capability"));
    let (f, b) = (&cfg.frontends[0], &cfg.backends[0]);
    assert_eq!(f.timeout_client, Some(secs(30)));
    assert_eq!(f.maxconn, None);
    assert_eq!(f.clitcpka, None);
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.balance_origin, None);
    assert_eq!(b.retries, None);
    assert_eq!(b.redispatch, None);
    assert_eq!(b.timeout_server, Some(secs(30)));
    assert_eq!(
        b.servers,
        [Server {
            name: "s1".into(),
            addr: sa("10.0.13.1:6000"),
            origin: o(F, 21),
            ..Default::default()
        }]
    );
    assert!(runtime_gaps(&cfg).is_empty());
}

#[test]
fn tls_sni_passthrough_and_protocol_sniffing() {
    const F: &str = "tls-sni-passthrough.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert!(gaps(&cfg).is_empty(), "{:?}", gaps(&cfg));
    let tls = &cfg.frontends[0];
    // From the named defaults it follows.
    assert_eq!(tls.inspect_delay, Some(secs(5)));
    let actions: Vec<(TcpRequestAction, usize)> = tls
        .tcp_request_content
        .iter()
        .map(|r| (r.action.clone(), r.origin.line))
        .collect();
    assert_eq!(
        actions,
        [
            (TcpRequestAction::Accept, 24),
            (TcpRequestAction::Reject, 25),
            (TcpRequestAction::Reject, 29),
        ]
    );
    let acl = |name: &str| tls.acls.iter().find(|a| a.name == name).unwrap();
    let api = &acl("is_api").tests[0];
    assert_eq!(
        (api.fetch, api.method, api.icase),
        (Fetch::ReqSslSni, Match::Str, true)
    );
    assert_eq!(api.patterns, [Pattern::Bytes(b"api.example.com".to_vec())]);
    let web = &acl("is_web").tests[0];
    assert_eq!((web.fetch, web.method), (Fetch::ReqSslSni, Match::End));
    // TLS 1.0 is 3.1: `lt 3.1` is every version below.
    assert_eq!(
        acl("old_tls").tests[0].patterns,
        [Pattern::Int {
            lo: i64::MIN / 2,
            hi: (3 << 16 | 1) - 1
        }]
    );
    let sniff = &cfg.frontends[1];
    assert_eq!(sniff.inspect_delay, Some(secs(2)));
    let fetches: Vec<Fetch> = sniff
        .use_backends
        .iter()
        .map(|u| u.cond.as_ref().unwrap().any_of[0][0].tests[0].fetch)
        .collect();
    assert_eq!(
        fetches,
        [
            Fetch::ReqPayload { off: 0, len: 6 },
            Fetch::ReqPayload { off: 0, len: 8 },
            Fetch::ReqPayloadLv {
                off: 0,
                size: 4,
                start: LvStart::AfterLength
            },
        ]
    );
    let redis = &sniff.use_backends[0].cond.as_ref().unwrap().any_of[0][0].tests[0];
    assert_eq!(redis.patterns, [Pattern::Bytes(b"*1\r\n$4".to_vec())]);
    // `accept if A || WAIT_END`: two alternatives.
    let accept = sniff.tcp_request_content[0].cond.as_ref().unwrap();
    assert_eq!(accept.any_of.len(), 2);
    assert_eq!(accept.any_of[1][0].tests[0].fetch, Fetch::WaitEnd);
}

#[test]
fn stats_page_beside_tcp_proxies() {
    const F: &str = "stats-page.cfg";
    let cfg = corpus(F);
    assert_eq!(cfg.stats_pages.len(), 1);
    let page = &cfg.stats_pages[0];
    assert_eq!(page.origin, o(F, 16));
    assert_eq!(page.uri(), "/");
    assert_eq!(page.realm(), "Haproxy Statistics");
    assert_eq!(page.stats.refresh, Some(secs(10)));
    assert_eq!(page.monitor_uri.as_deref(), Some("/healthz"));
    assert!(page.stats.show_legends);
    let names: Vec<&str> = cfg.frontends.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["primary"]);
}

#[test]
fn tcp_service_settings_all_applied() {
    const F: &str = "tcp-service-settings.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(gaps(&cfg), vec![]);
    let g = &cfg.global;
    assert_eq!(
        g.pidfile,
        Some(at(PathBuf::from("/run/lb-tcp-service.pid"), F, 9))
    );
    let (f, b) = (&cfg.frontends[0], &cfg.backends[0]);
    assert_eq!(f.listen_backlog(), 1024);
    assert_eq!(f.clitcpka, Some(o(F, 14)));
    assert_eq!(b.srvtcpka, Some(o(F, 14)));
    assert_eq!(f.clitcpka_tune.idle_s, Some(120));
    assert_eq!(
        b.srvtcpka_tune,
        TcpKeepalive {
            idle_s: Some(60),
            intvl_s: Some(10),
            cnt: Some(3)
        }
    );
    assert_eq!(b.timeout_tunnel, Some(at(secs(3600), F, 22)));
    assert_eq!(f.timeout_client_fin, Some(at(secs(10), F, 23)));
    assert_eq!(b.timeout_server_fin, Some(at(secs(10), F, 24)));
    assert_eq!(b.use_servers[0].server_pos, 0);
    assert!(b.persist_rules[0].force);
}

#[test]
fn consul_dns_discovery() {
    const F: &str = "consul-dns-discovery.cfg";
    let cfg = corpus(F);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(gaps(&cfg), vec![]);
    let r = &cfg.resolvers[0];
    assert_eq!(r.name, "consul");
    assert_eq!(r.nameservers, [("consul".into(), sa("127.0.0.1:8600"))]);
    assert_eq!(r.payload_size, 8192);
    assert_eq!(r.hold.nx, secs(10));
    let redis = &cfg.backends[0];
    assert_eq!(redis.servers.len(), 5);
    assert!(redis.servers.iter().all(|s| s.unresolved
        && s.params.resolvers.as_deref() == Some("consul")
        && s.fqdn.as_deref() == Some("redis.service.consul")));
    let api: Vec<&str> = cfg.backends[1]
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(api, ["api1", "api2", "api3"]);
    let mysql = &cfg.backends[2].servers;
    assert!(mysql
        .iter()
        .all(|s| s.unresolved && s.port_mode == ServerPort::Fixed));
    let groups = crate::health::resolve::groups(&cfg);
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[2].fqdn, "_mysql._tcp.service.consul");
    assert_eq!(groups[0].servers, [0, 1, 2, 3, 4]);
    assert_eq!(groups[1].servers, [5, 6, 7]);
}
