//! Tests of the configuration parser: model, inheritance, addresses, lexing,
//! units, errors (with exact positions) and a no-panic property test.
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::Sys;
use super::parse::{parse_with, MAX_CONFIG_SIZE, MAX_LINE_LEN};
use super::values::{parse_size, parse_time, time_trailing};
use super::*;

pub(super) const FILE: &str = "t.cfg";

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "ADDR" => Some("10.1.2.3".into()),
        "PORT" => Some("6432".into()),
        "W" => Some("7".into()),
        "BACKEND" => Some("pg_be".into()),
        "SPACED" => Some("hello world".into()),
        _ => None,
    }
}

/// A system with a fixed environment, host names, accounts and files.
pub(super) struct FakeSys;

impl Sys for FakeSys {
    fn env(&self, name: &str) -> Option<String> {
        env(name)
    }
    fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let ips: &[&str] = match host {
            "localhost" => &["127.0.0.1", "::1"],
            "db1.example" => &["10.0.1.1"],
            "db2.example" => &["fd00::2", "10.0.1.2"],
            "v6only.example" => &["fd00::6"],
            _ => return Err("Name or service not known".into()),
        };
        Ok(ips.iter().map(|s| s.parse().unwrap()).collect())
    }
    fn user(&self, name: &str) -> Option<u32> {
        (name == "haproxy").then_some(115)
    }
    fn group(&self, name: &str) -> Option<u32> {
        (name == "haproxy").then_some(120)
    }
    fn read(&self, path: &Path) -> Result<String, String> {
        match path.to_str() {
            Some("/etc/lb/allow.lst") => Ok("# trusted\n10.0.0.0/8\n  192.168.1.5\n\n::1\n".into()),
            Some("/etc/lb/bad.lst") => Ok("10.0.0.1\nnot-an-ip!\n".into()),
            Some("/etc/lb/ports.lst") => Ok("80\n8000:8080\n".into()),
            _ => Err("No such file or directory".into()),
        }
    }
}

pub(super) fn try_parse_files(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let files: Vec<(&str, &Path)> = files.iter().map(|(t, f)| (*t, Path::new(*f))).collect();
    parse_with(&files, &FakeSys)
}

pub(super) fn parse(cfg: &str) -> Config {
    match try_parse_files(&[(cfg, FILE)]) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}\n--- config:\n{cfg}"),
    }
}

pub(super) fn parse_err(cfg: &str) -> ConfigError {
    match try_parse_files(&[(cfg, FILE)]) {
        Ok(c) => panic!("expected an error, got {c:#?}\n--- config:\n{cfg}"),
        Err(e) => e,
    }
}

fn origin(line: usize) -> Origin {
    Origin {
        file: PathBuf::from(FILE),
        line,
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Timeouts so that no "missing timeouts" warning shows.
const TIMEOUTS: &str =
    "defaults\n    timeout client 30s\n    timeout connect 5s\n    timeout server 30s\n";

const SEED: &str = "\
frontend pgsql_frontend
    bind *:5432
    mode tcp
    default_backend pgsql_backend
backend pgsql_backend
    mode tcp
    balance roundrobin
    server pgsql_node1 10.0.0.1:5432 check
    server pgsql_node2 10.0.0.2:5432 check
    server pgsql_node3 10.0.0.3:5432 check
";

#[test]
fn seed_example_exact_model() {
    let cfg = parse(SEED);
    let server = |name: &str, addr: &str, line: usize| Server {
        name: name.into(),
        addr: sa(addr),
        origin: origin(line),
        params: ServerParams {
            check: true,
            check_params: CheckParams {
                inter: Duration::from_millis(2000),
                rise: 2,
                fall: 3,
            },
            weight: 1,
            disabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let expected = Config {
        resolvers: vec![],
        stats_pages: Vec::new(),
        global: Global {
            maxconn: None,
            splice_budget: 4 * 1024 * 1024,
            ..Default::default()
        },
        frontends: vec![Frontend {
            name: "pgsql_frontend".into(),
            binds: vec![Bind {
                addr: None,
                port_first: 5432,
                port_last: 5432,
                v6only: false,
                origin: origin(2),
                ..Default::default()
            }],
            default_backend: Some("pgsql_backend".into()),
            default_backend_idx: Some(0),
            timeout_client: None,
            maxconn: None,
            origin: origin(1),
            ..Default::default()
        }],
        backends: vec![Backend {
            name: "pgsql_backend".into(),
            balance: Balance::RoundRobin,
            servers: vec![
                server("pgsql_node1", "10.0.0.1:5432", 8),
                server("pgsql_node2", "10.0.0.2:5432", 9),
                server("pgsql_node3", "10.0.0.3:5432", 10),
            ],
            timeout_connect: None,
            timeout_server: None,
            origin: origin(5),
            balance_origin: Some(origin(7)),
            ..Default::default()
        }],
        warnings: vec![
            "t.cfg:1: warning: missing timeouts for frontend 'pgsql_frontend'. While not properly \
             invalid, you will certainly encounter various problems with such a configuration. To \
             fix this, please ensure that all following timeouts are set to a non-zero value: \
             'client', 'connect', 'server'."
                .into(),
            "t.cfg:5: warning: missing timeouts for backend 'pgsql_backend'. While not properly \
             invalid, you will certainly encounter various problems with such a configuration. To \
             fix this, please ensure that all following timeouts are set to a non-zero value: \
             'client', 'connect', 'server'."
                .into(),
        ],
    };
    assert_eq!(cfg, expected);
}

#[test]
fn seed_example_from_file_and_crlf() {
    let dir = std::env::temp_dir().join(format!("lb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("seed.cfg");
    std::fs::write(&path, SEED.replace('\n', "\r\n")).unwrap();
    let cfg = parse_file(&path).unwrap();
    assert_eq!(cfg.frontends.len(), 1);
    assert_eq!(cfg.backends[0].servers.len(), 3);
    assert_eq!(cfg.frontends[0].origin.file, path);
    assert_eq!(cfg.backends[0].servers[2].origin.line, 10);

    // Invalid UTF-8 is reported at its place.
    std::fs::write(&path, b"frontend f\n    bind :80 \xff\xfe\n").unwrap();
    let e = parse_file(&path).unwrap_err();
    assert_eq!((e.line(), e.col()), (Some(2), Some(14)), "{e}");
    assert!(e.to_string().contains("invalid UTF-8"), "{e}");

    let missing = dir.join("missing.cfg");
    let e = parse_file(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e
        .to_string()
        .starts_with(&format!("{}: error: cannot read", missing.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defaults_inheritance_and_replacement() {
    let cfg = parse(
        "\
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    balance roundrobin
    maxconn 1000
    retries 3
    option tcplog
    option dontlognull
    option redispatch
    log global
    default-server inter 3s rise 3 fall 2 weight 10 check
frontend f
    bind :80
    default_backend b
backend b
    server s1 10.0.0.1:80
    server s2 10.0.0.2:80 weight 5 no-check
    default-server weight 20
    server s3 10.0.0.3:80
defaults
    timeout client 10s
frontend g
    bind :81
    default_backend b
backend c
    server s4 10.0.0.4:80
",
    );
    let f = &cfg.frontends[0];
    assert_eq!(f.timeout_client, Some(Duration::from_secs(60)));
    assert_eq!(f.maxconn, Some(1000));
    let b = &cfg.backends[0];
    assert_eq!(b.timeout_connect, Some(Duration::from_secs(5)));
    assert_eq!(b.timeout_server, Some(Duration::from_secs(60)));
    let inherited = CheckParams {
        inter: Duration::from_secs(3),
        rise: 3,
        fall: 2,
    };
    let s = &b.servers;
    assert_eq!(
        (
            s[0].params.check,
            s[0].params.weight,
            s[0].params.check_params
        ),
        (true, 10, inherited)
    );
    assert_eq!(
        (
            s[1].params.check,
            s[1].params.weight,
            s[1].params.check_params
        ),
        (false, 5, inherited)
    );
    assert_eq!(
        (
            s[2].params.check,
            s[2].params.weight,
            s[2].params.check_params
        ),
        (true, 20, inherited)
    );

    // The second defaults section starts from scratch.
    let g = &cfg.frontends[1];
    assert_eq!(g.timeout_client, Some(Duration::from_secs(10)));
    assert_eq!(g.maxconn, None);
    assert_eq!(g.default_backend_idx, Some(0));
    let c = &cfg.backends[1];
    assert_eq!((c.timeout_connect, c.timeout_server), (None, None));
    let s4 = &c.servers[0];
    assert_eq!(
        (s4.params.check, s4.params.weight, s4.params.check_params),
        (false, 1, CheckParams::default())
    );
    assert_eq!(
        cfg.warnings,
        [
            "t.cfg:27: warning: missing timeouts for backend 'c'. While not properly invalid, you \
          will certainly encounter various problems with such a configuration. To fix this, \
          please ensure that all following timeouts are set to a non-zero value: 'client', \
          'connect', 'server'."
        ]
    );
}

#[test]
fn named_defaults_and_from() {
    let cfg = parse(
        "\
defaults short
    timeout client 1s
    timeout connect 1s
    timeout server 1s
defaults long
    timeout client 1h
    timeout connect 1h
    timeout server 1h
    default_backend b
frontend f from short
    bind :80
    default_backend b
frontend g
    bind :81
backend b from short
",
    );
    assert_eq!(
        cfg.frontends[0].timeout_client,
        Some(Duration::from_secs(1))
    );
    // Without 'from', the last defaults section applies, default_backend included.
    assert_eq!(
        cfg.frontends[1].timeout_client,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(cfg.frontends[1].default_backend.as_deref(), Some("b"));
    assert_eq!(cfg.backends[0].timeout_server, Some(Duration::from_secs(1)));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn listen_is_a_frontend_and_a_backend() {
    let cfg = parse(
        "\
listen pg
    bind :5432
    timeout client 30s
    timeout connect 5s
    timeout server 30s
    maxconn 500
    server a 10.0.0.1:5432 check
    server b 10.0.0.2:5432 disabled
backend other
    server c 10.0.0.3:5432
listen redirected
    bind :5433
    default_backend other
",
    );
    assert_eq!(cfg.frontends.len(), 2);
    assert_eq!(cfg.backends.len(), 3);
    let pg = &cfg.frontends[0];
    assert_eq!(pg.name, "pg");
    assert_eq!(pg.default_backend.as_deref(), Some("pg"));
    assert_eq!(pg.default_backend_idx, Some(0));
    assert_eq!(pg.maxconn, Some(500));
    assert_eq!(pg.timeout_client, Some(Duration::from_secs(30)));
    assert_eq!(pg.origin, origin(1));
    let be = &cfg.backends[0];
    assert_eq!(be.name, "pg");
    assert_eq!(be.timeout_connect, Some(Duration::from_secs(5)));
    assert_eq!(be.servers.len(), 2);
    assert!(be.servers[1].params.disabled && !be.servers[1].params.check);
    assert_eq!(be.origin, origin(1));
    // An explicit default_backend wins over the listen's own servers.
    let r = &cfg.frontends[1];
    assert_eq!(r.default_backend.as_deref(), Some("other"));
    assert_eq!(r.default_backend_idx, Some(1));
    assert_eq!(cfg.backends[r.default_backend_idx.unwrap()].name, "other");
    // 'redirected' and 'other' lack timeouts.
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("t.cfg:9: warning: missing timeouts for backend 'other'."));
    assert!(
        cfg.warnings[1].starts_with("t.cfg:11: warning: missing timeouts for proxy 'redirected'.")
    );
}

#[test]
fn ipv6_and_ipv4_binds() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend f
    bind :::5432 v6only
    bind [::1]:5433
    bind ::1:5434
    bind ipv6@:5435
    bind ipv4@*:5436
    bind 0.0.0.0:5437
    bind 192.168.1.1:5438 name x backlog 100 maxconn 10
    bind 2001:db8::1:5439 v6only v4v6
    bind ipv6@[2001:db8::2]:5440
    bind [::]:5441
    default_backend b
backend b
"
    ));
    let got: Vec<(Option<IpAddr>, u16, bool, usize)> = cfg.frontends[0]
        .binds
        .iter()
        .map(|b| {
            assert_eq!(b.port_first, b.port_last);
            (b.addr, b.port_first, b.v6only, b.origin.line)
        })
        .collect();
    let any6 = Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert_eq!(
        got,
        [
            (any6, 5432, true, 6),
            (ip("::1"), 5433, false, 7),
            (ip("::1"), 5434, false, 8),
            (any6, 5435, false, 9),
            (None, 5436, false, 10),
            (None, 5437, false, 11),
            (ip("192.168.1.1"), 5438, false, 12),
            // v6only wins over v4v6, as documented.
            (ip("2001:db8::1"), 5439, true, 13),
            (ip("2001:db8::2"), 5440, false, 14),
            (any6, 5441, false, 15),
        ]
    );
}

#[test]
fn ipv6_and_ipv4_servers() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend f
    bind :80
    default_backend b
backend b
    server a [2001:db8::10]:5432
    server b 2001:db8::11:5433
    server c ipv6@[fe80::1]:1
    server d ipv4@10.0.0.1:65535
    server e ::ffff:10.0.0.2:80
"
    ));
    let addrs: Vec<SocketAddr> = cfg.backends[0].servers.iter().map(|s| s.addr).collect();
    assert_eq!(
        addrs,
        [
            sa("[2001:db8::10]:5432"),
            sa("[2001:db8::11]:5433"),
            sa("[fe80::1]:1"),
            sa("10.0.0.1:65535"),
            sa("[::ffff:10.0.0.2]:80"),
        ]
    );
}

#[test]
fn port_ranges_and_address_lists() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend f
    bind :8000-8010,10.0.0.1:9000,[::1]:9001-9002 v6only
    bind 10.0.0.2:1-65000
    default_backend b
backend b
"
    ));
    let got: Vec<(Option<IpAddr>, u16, u16, bool)> = cfg.frontends[0]
        .binds
        .iter()
        .map(|b| (b.addr, b.port_first, b.port_last, b.v6only))
        .collect();
    assert_eq!(
        got,
        [
            (None, 8000, 8010, true),
            (ip("10.0.0.1"), 9000, 9000, true),
            (ip("::1"), 9001, 9002, true),
            (ip("10.0.0.2"), 1, 65000, false),
        ]
    );
    // Overlapping ranges conflict, in the same frontend too.
    let e = parse_err("frontend f\n    bind :8000-8010\n    bind *:8010\n");
    assert_eq!((e.line(), e.col()), (Some(3), Some(10)), "{e}");
}

#[test]
fn no_conflict_between_distinct_binds() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend a
    bind *:80
    bind :::80 v6only
    bind 10.0.0.1:80
    bind [::1]:80
    bind :8000-8010
    default_backend b
frontend c
    bind 10.0.0.2:80
    bind :8011-8020
    bind :::8021
    default_backend b
backend b
"
    ));
    assert_eq!(cfg.frontends.len(), 2);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn quoting_and_environment() {
    // As HAProxy 2.6: variables expand inside double quotes only, except in
    // addresses, which expand `$NAME` / `${NAME}` anywhere (no default value).
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend \"f\"   # a comment
\tbind \"${{ADDR}}:${{PORT}}\",'[::1]':80  # another
    description \"${{SPACED}} # not a comment\" and more
    default_backend \"${{BACKEND}}\"
backend pg_be
    server 'a' \"10.0.0.1:${{PORT}}\" weight \"${{W}}\"
    server \"b\"'-'2 10.0.0.2:$PORT
    server c ${{ADDR}}:5434 \"${{UNSET-check}}\"
    server d '${{ADDR}}':1 weight \"$W\"
"
    ));
    let f = &cfg.frontends[0];
    assert_eq!(f.name, "f");
    assert_eq!(f.binds[0].addr, ip("10.1.2.3"));
    assert_eq!(f.binds[0].port_first, 6432);
    assert_eq!(f.binds[1].addr, ip("::1"));
    assert_eq!(f.default_backend.as_deref(), Some("pg_be"));
    assert_eq!(
        f.description.as_deref(),
        Some("hello world # not a comment and more")
    );
    let s = &cfg.backends[0].servers;
    assert_eq!(
        (s[0].name.as_str(), s[0].addr, s[0].params.weight),
        ("a", sa("10.0.0.1:6432"), 7)
    );
    assert_eq!(
        (s[1].name.as_str(), s[1].addr),
        ("b-2", sa("10.0.0.2:6432"))
    );
    assert_eq!(s[2].addr, sa("10.1.2.3:5434"));
    assert!(s[2].params.check);
    assert_eq!((s[3].addr, s[3].params.weight), (sa("10.1.2.3:1"), 7));
    // Outside double quotes, '$' is an ordinary character.
    let e = parse_err("backend b\n    server s 10.0.0.1:80 ${W}\n");
    assert!(
        e.to_string().contains("unknown 'server' parameter '${W}'"),
        "{e}"
    );
}

#[test]
fn process_environment_expansion() {
    // A name no other test uses.
    std::env::set_var("LB_CONFIG_TEST_PORT_5c1e", "7777");
    let cfg = parse_str(
        "frontend f\n bind :${LB_CONFIG_TEST_PORT_5c1e}\n default_backend b\nbackend b\n",
        Path::new("env.cfg"),
    )
    .unwrap();
    assert_eq!(cfg.frontends[0].binds[0].port_first, 7777);
    assert_eq!(cfg.frontends[0].origin.file, PathBuf::from("env.cfg"));
}

#[test]
fn time_units() {
    let ms = Duration::from_millis;
    assert_eq!(parse_time("1500"), Ok(ms(1500)));
    assert_eq!(parse_time("1500ms"), Ok(ms(1500)));
    assert_eq!(parse_time("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_time("30s"), Ok(ms(30_000)));
    assert_eq!(parse_time("2m"), Ok(ms(120_000)));
    assert_eq!(parse_time("1h"), Ok(ms(3_600_000)));
    assert_eq!(parse_time("1d"), Ok(ms(86_400_000)));
    assert_eq!(parse_time("0"), Ok(Duration::ZERO));
    assert_eq!(parse_time("2147483647"), Ok(ms(2_147_483_647)));
    assert!(parse_time("2147483648").unwrap_err().contains("overflow"));
    assert!(parse_time("25d").unwrap_err().contains("overflow"));
    assert!(parse_time("99999999999999999999999s")
        .unwrap_err()
        .contains("overflow"));
    assert!(parse_time("10x")
        .unwrap_err()
        .contains("unknown time unit 'x'"));
    assert!(parse_time("1.5s")
        .unwrap_err()
        .contains("fractions are not allowed"));
    // After the unit, HAProxy 2.6 ignores the rest (with a warning).
    assert_eq!(parse_time("30min"), Ok(ms(1_800_000)));
    assert_eq!(parse_time("5sec"), Ok(ms(5_000)));
    assert!(time_trailing("5sec")
        .unwrap()
        .contains("unexpected character 'e'"));
    assert_eq!(time_trailing("5s"), None);
    assert_eq!(time_trailing("500"), None);
    assert!(parse_time("s").is_err());
    assert!(parse_time("").is_err());
    assert!(parse_time("-1").is_err());
}

#[test]
fn size_units() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("4k"), Ok(4096));
    assert_eq!(parse_size("4K"), Ok(4096));
    assert_eq!(parse_size("4m"), Ok(4 << 20));
    assert_eq!(parse_size("4M"), Ok(4 << 20));
    assert_eq!(parse_size("2g"), Ok(2 << 30));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    assert!(parse_size("4t").unwrap_err().contains("unknown size unit"));
    assert!(parse_size("4kb").is_err());
    assert!(parse_size("m").is_err());
    assert!(parse_size("18446744073709551615k")
        .unwrap_err()
        .contains("too large"));
}

#[test]
fn global_section() {
    let cfg = parse(&format!(
        "\
global
    log /dev/log local0
    log 127.0.0.1:514 local1 notice
    daemon
    nbthread 2
    user haproxy
    group haproxy
    pidfile /run/haproxy.pid
    stats socket /run/haproxy.sock mode 660 level admin
    stats timeout 30s
    chroot /var/lib/haproxy
    hard-stop-after 30s
    ca-base /etc/ssl/certs
    crt-base /etc/ssl/private
    ssl-default-bind-ciphers ECDHE+AESGCM
    ssl-default-bind-options no-sslv3
    maxconn 20000
    tune.lb.splice-budget 1m
{TIMEOUTS}\
frontend f
    bind :80
    default_backend b
backend b
"
    ));
    assert_eq!(cfg.global.maxconn, Some(20000));
    assert_eq!(cfg.global.splice_budget, 1 << 20);
    let cfg = parse(&format!(
        "global\n tune.lb.splice-budget 65536\n{TIMEOUTS}frontend f\n bind :1\n default_backend b\nbackend b\n"
    ));
    assert_eq!(cfg.global.splice_budget, 65536);
}

#[test]
fn accepted_options_and_timeouts() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
    timeout queue 10s
    timeout check 2s
    option tcpka
    option log-health-checks
    no option clitcpka
    no option logasap
    default option redispatch
    no log
frontend f
    bind :80
    option clitcpka
    option tcplog
    log global
    timeout client 0
    default_backend b
backend b
    option srvtcpka
    timeout tunnel 1h
    timeout server 0
    server s 10.0.0.1:80 check inter 500ms rise 1 fall 1 weight 0
"
    ));
    // timeout 0 is "no timeout", as HAProxy.
    assert_eq!(cfg.frontends[0].timeout_client, None);
    assert_eq!(cfg.backends[0].timeout_server, None);
    let s = &cfg.backends[0].servers[0];
    assert_eq!(s.params.weight, 0);
    assert_eq!(
        s.params.check_params,
        CheckParams {
            inter: Duration::from_millis(500),
            rise: 1,
            fall: 1
        }
    );
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("t.cfg:13: warning: missing timeouts for frontend 'f'"));
    assert!(cfg.warnings[1].starts_with("t.cfg:20: warning: missing timeouts for backend 'b'"));
    let (f, b) = (&cfg.frontends[0], &cfg.backends[0]);
    let at = |line: usize| Some(origin(line));
    assert_eq!(f.clitcpka, at(15));
    assert_eq!(f.tcplog, at(16));
    assert_eq!(
        f.logs,
        [Located {
            value: ProxyLog::Global,
            origin: origin(17)
        }]
    );
    assert_eq!(b.srvtcpka, at(21));
    assert_eq!(b.log_health_checks, at(8));
    assert_eq!(b.redispatch, None);
    assert_eq!(
        b.timeout_tunnel,
        Some(Located {
            value: Duration::from_secs(3600),
            origin: origin(22)
        })
    );
    assert_eq!(
        b.timeout_queue.as_ref().map(|t| t.value),
        Some(Duration::from_secs(10))
    );
    assert_eq!(b.timeout_check.as_ref().map(|t| t.origin.line), Some(6));
}

#[test]
fn capability_mismatch_warnings() {
    let cfg = parse(&format!(
        "{TIMEOUTS}\
frontend f
    bind :80
    timeout server 10s
    option redispatch
    default_backend b
backend b
    timeout client 10s
frontend lonely
    bind :81
backend empty
"
    ));
    assert_eq!(
        cfg.warnings,
        [
            "t.cfg:7: warning: 'timeout server' ignored because frontend 'f' has no backend capability",
            "t.cfg:8: warning: 'option redispatch' ignored because frontend 'f' has no backend capability",
            "t.cfg:11: warning: 'timeout client' ignored because backend 'b' has no frontend capability",
            "t.cfg:12: warning: frontend 'lonely' has no 'default_backend': its connections will be closed",
        ]
    );
    assert_eq!(cfg.frontends[1].default_backend_idx, None);
    // Keywords of the other side are ignored with a warning too, as HAProxy.
    let cfg = parse(&format!(
        "{TIMEOUTS}frontend f\n    bind :80\n    balance leastconn\n    retries 2\n    default_backend b\n\
         backend b\n    bind :81\n    maxconn 5\n    use_backend x\n"
    ));
    assert_eq!(cfg.frontends.len(), 1);
    assert_eq!(cfg.frontends[0].binds.len(), 1);
    assert_eq!(cfg.backends[0].balance, Balance::RoundRobin);
    assert_eq!(
        cfg.warnings,
        [
            "t.cfg:7: warning: 'balance' ignored because frontend 'f' has no backend capability",
            "t.cfg:8: warning: 'retries' ignored because frontend 'f' has no backend capability",
            "t.cfg:11: warning: 'bind' ignored because backend 'b' has no frontend capability",
            "t.cfg:12: warning: 'maxconn' ignored because backend 'b' has no frontend capability",
            "t.cfg:13: warning: 'use_backend' ignored because backend 'b' has no frontend capability",
        ]
    );
}

#[test]
fn error_display_format() {
    let e = parse_err("frontend f\n    bind :80\n    default-backend b\n");
    assert_eq!(
        e.to_string(),
        "t.cfg:3:5: error: unknown keyword 'default-backend' in 'frontend' section, near \
         'default-backend'; did you mean 'default_backend'?"
    );
    assert_eq!(e.file(), Path::new(FILE));
    let e = parse_err("frontend f\n    bind :80 \"\\x01\"\n");
    assert_eq!(
        e.to_string(),
        "t.cfg:2:14: error: unknown 'bind' parameter '\u{1}', near '\\u{1}'"
    );
}

#[test]
fn no_frontend_at_all() {
    for cfg in [
        "",
        "# only a comment\n",
        "backend b\n    server s 10.0.0.1:80\n",
        "global\n",
    ] {
        let e = parse_err(cfg);
        assert_eq!(
            e.to_string(),
            "t.cfg: error: no 'frontend' or 'listen' section: nothing to do"
        );
        assert_eq!(e.line(), None);
    }
}

#[test]
fn size_limits() {
    let big = "#".repeat(MAX_CONFIG_SIZE + 1);
    let e = parse_err(&big);
    assert!(matches!(e, ConfigError::TooLarge { .. }), "{e}");
    assert!(e
        .to_string()
        .starts_with("t.cfg: error: the configuration is larger than"));

    let long = format!("frontend f\n    description {}\n", "x".repeat(MAX_LINE_LEN));
    let e = parse_err(&long);
    assert_eq!((e.line(), e.col()), (Some(2), Some(1)), "{e}");
    assert!(e.to_string().contains("line too long"), "{e}");
}

/// Asserts the error of `cfg` is at `pos` ("line:col") and contains `frag`.
fn assert_error(cfg: &str, pos: &str, frag: &str) {
    let e = parse_err(cfg).to_string();
    assert!(
        e.starts_with(&format!("{FILE}:{pos}: error: ")),
        "expected an error at {pos}, got: {e}\n--- config:\n{cfg}"
    );
    assert!(e.contains(frag), "expected '{frag}' in: {e}");
}

macro_rules! error_cases {
    ($($name:ident: $cfg:expr, $pos:expr, $frag:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_error($cfg, $pos, $frag);
            }
        )*
    };
}

error_cases! {
    err_unknown_keyword_suggestion:
        "frontend f\n    bind :80\n    defualt_backend b\n", "3:5",
        "unknown keyword 'defualt_backend' in 'frontend' section, near 'defualt_backend'; did you mean 'default_backend'?";
    err_unknown_global_keyword:
        "global\n    maxcon 100\n", "2:5", "did you mean 'maxconn'?";
    err_unknown_global_keyword_nbproc:
        "global\n    nbproc 2\n", "2:5", "'nbproc' was removed from HAProxy, use 'nbthread' instead";
    err_keyword_out_of_section:
        "# header\nbind :80\n", "2:1", "unknown keyword 'bind' out of section";
    err_section_typo:
        "frontnd f\n", "1:1", "did you mean 'frontend'?";
    err_mode_http_inherited:
        "defaults\n    mode http\nfrontend f\n    bind :80\n", "3:10",
        "frontend 'f' is in HTTP mode ('mode http' at t.cfg:2): this load balancer runs TCP proxies only; give it 'mode tcp'";
    err_mode_http_own:
        "frontend f\n    bind :80\n    mode http\n", "1:10", "('mode http' at t.cfg:3)";
    err_mode_unknown:
        "defaults\n    mode tpc\n", "2:10", "unknown proxy mode 'tpc' (expected 'tcp'), near 'tpc'; did you mean 'tcp'?";
    err_timeout_http_request_value:
        "defaults\n  timeout http-request 10x\n", "2:24", "invalid 'timeout http-request'";
    err_http_errors_section:
        "http-errors e\n", "1:1", "'http-errors' is an HTTP-mode feature";
    err_use_backend_unknown_acl:
        "frontend f\n    bind :80\n    use_backend b if x\n", "3:22", "no such ACL 'x'";
    err_acl_http_fetch:
        "frontend f\n    acl x path_beg /api\n", "2:11", "'path_beg' is an HTTP-mode feature";
    err_tcp_request_content:
        "defaults d\n\ttcp-request content accept\n", "2:14", "'tcp-request content in a 'defaults' section' is not supported yet";
    err_balance_hash:
        "backend b\n    balance hash src\n", "2:13", "'balance hash' is not supported yet";
    err_balance_uri:
        "backend b\n    balance uri\n", "2:13", "'balance uri' is an HTTP-mode feature";
    err_balance_unknown:
        "backend b\n    balance roundrobn\n", "2:13", "did you mean 'roundrobin'?";
    err_option_httpchk_args:
        "backend b\n    option httpchk GET / HTTP/1.1 x\n", "2:35", "'option httpchk' cannot handle unexpected argument 'x'";
    err_option_unknown:
        "backend b\n    option tcpkeepalive\n", "2:12", "unknown option 'tcpkeepalive'";
    err_server_source:
        "backend b\n    server s1 10.0.0.1:80 check source 10.0.0.9\n", "2:33", "'server ... source' is not supported yet";
    err_server_param_typo:
        "backend b\n    server s1 10.0.0.1:80 wieght 3\n", "2:27", "did you mean 'weight'?";
    err_weight_too_big:
        "backend b\n    server s1 10.0.0.1:80 weight 257\n", "2:34", "invalid 'weight': 257 is out of range (expected 0..=256)";
    err_weight_missing_value:
        "backend b\n    server s1 10.0.0.1:80 weight\n", "2:5", "'server' expects a value after 'weight'";
    err_inter_zero:
        "backend b\n    default-server inter 0\n", "2:26", "invalid 'inter': must be greater than 0";
    err_rise_zero:
        "backend b\n    server s 10.0.0.1:80 rise 0\n", "2:31", "invalid 'rise': 0 is out of range";
    err_server_port_range:
        "backend b\n    server s1 10.0.0.1:80-81\n", "2:15", "port ranges are not allowed on servers";
    err_server_port_too_big:
        "backend b\n    server s1 10.0.0.1:65536\n", "2:15", "port 65536 is out of range (expected 1-65535)";
    err_server_hostname_unresolved:
        "frontend f\n    bind :80\n    default_backend b\nbackend b\n    server s1 db.example.com:5432\n", "5:15",
        "backend 'b': server 's1': could not resolve address 'db.example.com'";
    err_server_bad_address:
        "backend b\n    server s1 10.0.0.300:80\n", "2:15", "invalid address '10.0.0.300'";
    err_server_port_offset_range:
        "backend b\n    server s1 10.0.0.1:+70000\n", "2:15", "invalid port offset";
    err_server_unix:
        "backend b\n    server s1 /run/pg.sock\n", "2:15", "UNIX socket addresses are not supported";
    err_server_missing_args:
        "backend b\n    server s1\n", "2:5", "'server' expects <name> and <address>:<port>";
    err_bind_port_zero:
        "frontend f\n    bind :0\n", "2:10", "port 0 is not valid";
    err_bind_port_too_big:
        "frontend f\n    bind *:70000\n", "2:10", "port 70000 is out of range";
    err_bind_missing_port:
        "frontend f\n    bind 10.0.0.1\n", "2:10", "missing port in '10.0.0.1'";
    err_bind_ipv6_missing_port:
        "frontend f\n    bind ::1\n", "2:10", "missing port: HAProxy reads the last ':'";
    err_bind_reversed_range:
        "frontend f\n    bind :8010-8000\n", "2:10", "the first port is above the last";
    err_bind_list_column:
        "frontend f\n    bind :80,10.0.0.1:81,:0\n", "2:26", "port 0 is not valid (expected 1-65535), near ':0'";
    err_bind_list_empty:
        "frontend f\n    bind :80,\n", "2:14", "empty address in the list";
    err_bind_family_mismatch:
        "frontend f\n    bind ipv4@[::1]:80\n", "2:10", "an IPv6 address cannot follow 'ipv4@'";
    err_bind_unix:
        "frontend f\n    bind /run/lb.sock\n", "2:10", "UNIX socket addresses are not supported";
    err_bind_udp:
        "frontend f\n    bind udp@:53\n", "2:10", "address family 'udp@' is not supported";
    err_bind_bad_bracket:
        "frontend f\n    bind [::1:80\n", "2:10", "missing ']'";
    err_bind_param_typo:
        "frontend f\n    bind :80 v6-only\n", "2:14", "did you mean 'v6only'?";
    err_bind_ssl:
        "frontend f\n    bind :443 ssl crt /x.pem\n", "2:15", "'bind ... ssl' is a TLS feature, which this L4 (TCP) load balancer does not offer";
    err_bind_in_defaults:
        "defaults\n    bind :80\n", "2:5", "'bind' is not allowed in a 'defaults' section (only in 'frontend', 'listen')";
    err_server_in_frontend:
        "frontend f\n    server s 10.0.0.1:80\n", "2:5", "'server' is not allowed in a 'frontend' section";
    err_default_backend_unknown:
        "frontend f\n    bind :80\n    default_backend pgsql_backnd\nbackend pgsql_backend\n", "3:21",
        "frontend 'f': 'default_backend' names unknown backend 'pgsql_backnd', near 'pgsql_backnd'; did you mean 'pgsql_backend'?";
    err_default_backend_is_a_frontend:
        "frontend f\n    bind :80\n    default_backend g\nfrontend g\n    bind :81\n", "3:21", "unknown backend 'g'";
    err_duplicate_frontend:
        "frontend f\n    bind :80\nfrontend f\n    bind :81\n", "3:10",
        "frontend 'f' has the same name as frontend 'f' declared at t.cfg:1";
    err_duplicate_backend:
        "backend b\nlisten b\n", "2:8", "listen 'b' has the same name as backend 'b' declared at t.cfg:1";
    err_duplicate_server:
        "backend b\n    server s 10.0.0.1:80\n    server s 10.0.0.2:80\n", "3:12",
        "backend 'b': server name 's' is already used at t.cfg:2";
    err_frontend_without_bind:
        "frontend f\n    default_backend b\nbackend b\n", "1:10", "frontend 'f' has no 'bind' directive";
    err_listen_without_bind:
        "listen l\n    server s 10.0.0.1:80\n", "1:8", "listen 'l' has no 'bind' directive";
    err_bind_conflict:
        "frontend a\n    bind *:5432\nfrontend b\n    bind 0.0.0.0:5432\n", "4:10",
        "bind '0.0.0.0:5432' of frontend 'b' conflicts with bind '*:5432' of frontend 'a' at t.cfg:2";
    err_bind_conflict_range:
        "frontend a\n    bind 10.0.0.1:8000-8100\nfrontend b\n    bind 10.0.0.1:8050\n", "4:10", "conflicts with bind";
    err_bind_conflict_dual_stack:
        "frontend a\n    bind :::80\nfrontend b\n    bind *:80\n", "4:10", "('::' also takes IPv4 unless 'v6only' is set)";
    err_unterminated_quote:
        "frontend f\n    bind \":80\n", "2:10", "unterminated double quote";
    err_unterminated_env:
        "frontend f\n    bind \":${PORT\"\n", "2:12", "unmatched brace in environment variable name 'PORT'";
    err_timeout_typo:
        "defaults\n    timeout clinet 5s\n", "2:13", "unknown timeout 'clinet', near 'clinet'; did you mean 'client'?";
    err_timeout_bad_unit:
        "defaults\n    timeout client 10x\n", "2:20", "invalid 'timeout client': unknown time unit 'x'";
    err_timeout_overflow:
        "defaults\n    timeout connect 25d\n", "2:21", "timer overflow";
    err_timeout_missing_value:
        "defaults\n    timeout server\n", "2:5", "'timeout' expects a timeout name and a time";
    err_timeout_extra_arg:
        "defaults\n    timeout server 1s 2s\n", "2:23", "unexpected extra argument to 'timeout server'";
    err_removed_keyword:
        "defaults\n    clitimeout 5000\n", "2:5", "'clitimeout' was removed from HAProxy, use 'timeout client' instead";
    err_splice_budget_unit:
        "global\n    tune.lb.splice-budget 4t\n", "2:27", "unknown size unit 't'";
    err_splice_budget_zero:
        "global\n    tune.lb.splice-budget 0\n", "2:27", "must be greater than 0";
    err_maxconn_not_a_number:
        "global\n    maxconn 1k\n", "2:13", "invalid 'maxconn': '1k' is not a number";
    err_default_server_in_frontend:
        "frontend f\n    default-server check\n", "2:5", "'default-server' is not allowed in a 'frontend' section";
    err_mode_extra_arg:
        "defaults\n    mode tcp extra\n", "2:14", "unexpected extra argument to 'mode'";
    err_bad_proxy_name:
        "frontend f/x\n", "1:10", "character '/' is not permitted in frontend name 'f/x'";
    err_missing_proxy_name:
        "backend\n", "1:1", "'backend' expects <name> as an argument";
    err_unknown_defaults_from:
        "defaults base\nfrontend f from bsae\n", "2:17",
        "unknown 'defaults' section 'bsae', near 'bsae'; did you mean 'base'?";
    err_peers_section:
        "peers p\n", "1:1", "section 'peers' is not supported yet";
    err_no_unknown:
        "defaults\n    no retries\n", "2:8", "'no' only applies to 'option' and 'log'";
    err_global_extra_arg:
        "global extra\n", "1:8", "unexpected extra argument to 'global'";
    err_nul_byte:
        "frontend f\n    bind :80\0\n", "2:13", "NUL character not allowed";
}

// ---------------------------------------------------------------------------
// No-panic property test.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const VOCAB: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "bind",
    "server",
    "mode",
    "tcp",
    "http",
    "timeout",
    "client",
    "connect",
    "server",
    "tunnel",
    "balance",
    "roundrobin",
    "default_backend",
    "default-server",
    "option",
    "tcplog",
    "no",
    "log",
    "maxconn",
    "check",
    "weight",
    "inter",
    "rise",
    "fall",
    "disabled",
    "backup",
    "v6only",
    "v4v6",
    "name",
    "from",
    "tune.lb.splice-budget",
    "*:80",
    ":::80",
    "[::1]:81",
    "::1:82",
    "10.0.0.1:80",
    "10.0.0.1:8000-8010",
    ":0",
    ":65536",
    "ipv6@:1",
    "ipv4@*:2",
    "a,b",
    ":1,:2",
    "256",
    "257",
    "0",
    "4m",
    "10s",
    "1d",
    "25d",
    "${PORT}",
    "${X-",
    "\"",
    "'",
    "\\",
    "#",
    "\\x4",
    "${",
    "[",
    "]",
    "-",
    "@",
    "f",
    "b",
    "s",
    "\t",
    "é",
    "\u{0}",
    "acl",
    "a",
    "use_backend",
    "tcp-request",
    "connection",
    "reject",
    "accept",
    "if",
    "unless",
    "or",
    "!",
    "{",
    "}",
    "src",
    "dst_port",
    "10.0.0.0/8",
    "1024:65535",
    "gt",
    "-f",
    "/etc/lb/allow.lst",
    "tcp-check",
    "http-check",
    "connect",
    "send",
    "expect",
    "string",
    "httpchk",
    "pgsql-check",
    "user",
    "hash-type",
    "consistent",
    "leastconn",
    "first",
    "source",
    "random(2)",
    "maxconn",
    "agent-check",
    "agent-port",
    "init-addr",
    "none",
    "send-proxy",
    "port",
    "addr",
    "db1.example",
    ".if",
    ".elif",
    ".else",
    ".endif",
    "defined(ADDR)",
    "setenv",
    "\"${ADDR}\"",
    "\"$.LINE\"",
    "stats",
    "socket",
    "level",
    "admin",
    "10.0.0.1",
    "d",
];

const CORPUS: &[&str] = &[
    SEED,
    "defaults\n mode tcp\n timeout client 1s\n timeout connect 1s\n timeout server 1s\n default-server check inter 1s\nlisten l\n bind :::5432,10.0.0.1:80-90 v6only\n server a [::1]:5432 weight 3\n",
    "global\n maxconn 10\n tune.lb.splice-budget 4m\nfrontend f\n bind \"${ADDR}:${PORT}\" name x\n default_backend b\nbackend b\n server s 10.0.0.1:80 check\n",
];

fn check_invariants(cfg: &Config) {
    assert!(!cfg.frontends.is_empty());
    for f in &cfg.frontends {
        assert!(!f.binds.is_empty());
        for b in &f.binds {
            assert!(b.port_first >= 1 && b.port_first <= b.port_last);
        }
        if let Some(i) = f.default_backend_idx {
            assert_eq!(
                Some(cfg.backends[i].name.as_str()),
                f.default_backend.as_deref()
            );
        }
    }
    for b in &cfg.backends {
        for s in &b.servers {
            assert!(s.params.weight <= 256);
            if s.port_mode == ServerPort::Fixed {
                assert_ne!(s.addr.port(), 0);
            } else {
                assert_eq!(s.addr.port(), 0);
            }
        }
    }
}

fn try_parse(text: &str) {
    match try_parse_files(&[(text, FILE)]) {
        Ok(cfg) => check_invariants(&cfg),
        Err(e) => {
            let s = e.to_string();
            assert!(s.starts_with(FILE), "{s}");
            assert!(s.contains("error: "), "{s}");
        }
    }
}

#[test]
fn no_panic_on_random_and_mutated_input() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz_-.:*[]@,#\"'\\${}0123456789 \t\n\r/";
    for round in 0..3000 {
        let text = match round % 3 {
            // Random characters.
            0 => {
                let len = rng.below(200);
                (0..len)
                    .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len())]))
                    .collect::<String>()
            }
            // Random lines of plausible words.
            1 => {
                let mut t = String::new();
                for _ in 0..rng.below(12) {
                    if rng.below(3) != 0 {
                        t.push_str("    ");
                    }
                    for _ in 0..=rng.below(5) {
                        t.push_str(rng.pick(VOCAB));
                        t.push(if rng.below(8) == 0 { '\t' } else { ' ' });
                    }
                    t.push('\n');
                }
                t
            }
            // Mutations of valid configurations.
            _ => {
                let mut chars: Vec<char> = rng.pick(CORPUS).chars().collect();
                for _ in 0..=rng.below(6) {
                    let at = rng.below(chars.len() + 1);
                    match rng.below(4) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 => {
                            let c = char::from(ALPHABET[rng.below(ALPHABET.len())]);
                            chars.insert(at.min(chars.len()), c);
                        }
                        2 => {
                            let w: Vec<char> = format!(" {} ", rng.pick(VOCAB)).chars().collect();
                            let at = at.min(chars.len());
                            chars.splice(at..at, w);
                        }
                        _ => {
                            let end = (at + rng.below(20)).min(chars.len());
                            let at = at.min(end);
                            let dup: Vec<char> = chars[at..end].to_vec();
                            chars.splice(at..at, dup);
                        }
                    }
                }
                chars.into_iter().collect()
            }
        };
        try_parse(&text);
    }
    // Every prefix of the corpus.
    for text in CORPUS {
        for (i, _) in text.char_indices() {
            try_parse(&text[..i]);
        }
    }
    // Pathological shapes.
    try_parse(&"frontend f\n".repeat(2000));
    try_parse(&format!("frontend f\n bind {}\n", ":1-65535,".repeat(3000)));
    try_parse(&format!(
        "frontend f\n{}default_backend b\nbackend b\n",
        (1..4000)
            .map(|p| format!(" bind :{p}\n"))
            .collect::<String>()
    ));
    try_parse(&"\"".repeat(1000));
    try_parse(&".if 1\n".repeat(100));
    try_parse(&format!(
        ".if {}1{}\n.endif\n",
        "(".repeat(100),
        ")".repeat(100)
    ));
    try_parse(&format!(
        "frontend f\n bind :1\n use_backend b if {}\n",
        "{ src 1.2.3.4 } ".repeat(30)
    ));
    try_parse(&"${".repeat(1000));
    try_parse(&format!("{}\n", "a ".repeat(100)));
}

/// A FIFO (or any special file) is refused at once instead of blocking the
/// open until a writer appears; a directory of `*.cfg` still works.
#[test]
fn special_files_are_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("lb-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("lb.cfg");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let t = std::time::Instant::now();
    let e = crate::config::parse_files(std::slice::from_ref(&fifo)).unwrap_err();
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: error: not a regular file or a directory of '*.cfg' files (a FIFO)",
            fifo.display()
        )
    );
    // In a directory, a FIFO named *.cfg is not a file HAProxy would read
    // either: skipped, so the directory holds no configuration.
    let e = crate::config::parse_files(std::slice::from_ref(&dir)).unwrap_err();
    assert!(e.to_string().contains("no configuration file"), "{e}");
    let e = crate::config::parse_files(&[std::path::PathBuf::from("/dev/null")]).unwrap_err();
    assert!(e.to_string().contains("(a character device)"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn data_path_per_frontend_and_from_defaults() {
    let cfg = parse(&format!(
        "{TIMEOUTS}    data-path copy\n\
         frontend a\n    bind :7001\n    default_backend be\n\
         frontend b\n    bind :7002\n    data-path splice\n    default_backend be\n\
         backend be\n    server s1 10.0.0.1:1\n"
    ));
    assert_eq!(cfg.frontends[0].path(), DataPath::Copy);
    assert_eq!(
        cfg.frontends[0].data_path.as_ref().map(|d| d.origin.line),
        Some(5)
    );
    assert_eq!(cfg.frontends[1].path(), DataPath::Splice);
    let plain = parse(&format!(
        "{TIMEOUTS}frontend a\n    bind :7001\n    default_backend be\n\
         backend be\n    server s1 10.0.0.1:1\n"
    ));
    assert_eq!(plain.frontends[0].path(), DataPath::Splice);
    assert!(plain.frontends[0].data_path.is_none());
}

#[test]
fn data_path_connect_with_or_without_a_remote_path() {
    for (arg, path, cgroup) in [
        ("connect", DataPath::Splice, None),
        ("copy connect", DataPath::Copy, None),
        (
            "splice connect cgroup /sys/fs/cgroup/app",
            DataPath::Splice,
            Some("/sys/fs/cgroup/app"),
        ),
    ] {
        let cfg = parse(&format!(
            "{TIMEOUTS}frontend a\n    bind :7001\n    data-path {arg}\n    default_backend be\n\
             backend be\n    server s1 10.0.0.1:1\n"
        ));
        let f = &cfg.frontends[0];
        assert_eq!(f.path(), path, "{arg}");
        let c = f.connect.as_ref().expect(arg);
        assert_eq!(c.value.cgroup.as_deref(), cgroup, "{arg}");
        assert_eq!(c.origin.line, 7, "{arg}");
    }
}

#[test]
fn data_path_refusals_name_the_line() {
    for (arg, want) in [
        ("nat", "names no interface for its clients"),
        ("tunnel", "unknown data path 'tunnel'"),
        ("nat splice", "unexpected 'splice' after 'data-path nat'"),
        ("connect cgroup", "a cgroup v2 directory after 'cgroup'"),
        ("connect cgroup rel/dir", "must be an absolute path"),
        ("copy connect cgroup /x y", "unexpected extra argument"),
    ] {
        let e = parse_err(&format!(
            "{TIMEOUTS}frontend a\n    bind :7001\n    data-path {arg}\n    default_backend be\n\
             backend be\n    server s1 10.0.0.1:1\n"
        ))
        .to_string();
        assert!(e.contains(want) && e.contains(":7"), "{arg}: {e}");
    }
}

#[test]
fn nat_refuses_what_needs_a_terminated_connection() {
    let head = "global\n    xdp-interface eth0\ndefaults\n    mode tcp\n    timeout client 5s\n    timeout server 5s\n    timeout connect 5s\n";
    for (fe_extra, srv_extra, want, line) in [
        ("", " send-proxy", "'send-proxy' writes a header", 14),
        ("", " maxqueue 5", "'maxqueue' queues connections", 14),
        (
            "",
            " minconn 5 maxconn 9",
            "'minconn' (dynamic maxconn)",
            14,
        ),
        (
            "    use_backend be if TRUE\n",
            "",
            "'use_backend' rules",
            11,
        ),
        ("    maxconn 100\n", "", "a frontend 'maxconn'", 11),
        (
            "    tcp-request content reject if { req.len lt 4 }\n",
            "",
            "'tcp-request content' rules read the client's first bytes",
            11,
        ),
        (
            "    tcp-request connection reject if { dst_port 7001 }\n",
            "",
            "rules on more than the client address",
            11,
        ),
        (
            "",
            "\n    tcp-request content reject if { req.len lt 4 }",
            "backend 'be': 'tcp-request content' rules",
            15,
        ),
    ] {
        let text = format!(
            "{head}frontend a\n    bind 10.0.0.9:7001\n    data-path nat\n{fe_extra}    default_backend be\n\
             backend be\n    server s0 10.0.0.1:1\n    server s1 10.0.0.2:1{srv_extra}\n"
        );
        let e = parse_err(&text).to_string();
        assert!(e.contains(want), "{want}: {e}");
        let at = format!(":{line}:");
        assert!(e.contains(&at), "{want}: expected line {line}: {e}");
    }
    let e = parse_err(&format!(
        "{head}frontend a\n    bind 10.0.0.9:7001 accept-proxy\n    data-path nat\n    default_backend be\n\
         backend be\n    server s0 10.0.0.1\n"
    ))
    .to_string();
    assert!(
        e.contains("'accept-proxy' reads a header") && e.contains(":9:"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{head}frontend a\n    bind 10.0.0.9:7001\n    data-path nat\n    default_backend be\n\
         backend be\n    server s0 10.0.0.1\n"
    ))
    .to_string();
    assert!(
        e.contains("without a fixed port") && e.contains(":13:"),
        "{e}"
    );
    // The same frontend with what NAT can do is accepted.
    parse(&format!(
        "{head}frontend a\n    bind 10.0.0.9:7001\n    data-path nat\n    default_backend be\n\
         backend be\n    balance leastconn\n    server s0 10.0.0.1:1 maxconn 10 weight 3 check\n    server s1 10.0.0.2:1 backup\n"
    ));
}

/// A `defaults` in `mode http` with the usual HTTP settings, proxies that all
/// say `mode tcp`: accepted, with HAProxy 2.6's own warnings (`haproxy -c` on
/// the same file gave these words), `option httplog` turned into tcplog.
#[test]
fn http_defaults_with_tcp_proxies_warn_like_haproxy() {
    let cfg = parse(
        "\
defaults
    mode http
    option httplog
    option forwardfor
    option http-server-close
    timeout connect 5s
    timeout client 50s
    timeout server 50s
    timeout http-request 10s
    timeout http-keep-alive 10s
    errorfile 503 /etc/haproxy/errors/503.http
frontend pg
    bind *:5432
    mode tcp
    http-request deny if { src 1.2.3.4 }
    http-request deny if { src 1.2.3.5 }
    redirect prefix http://x if { src 1.2.3.4 }
    capture request header Host len 20
    default_backend pgb
backend pgb
    mode tcp
    cookie SRV insert
    http-response set-header X a
    server a 127.0.0.1:5433
",
    );
    assert_eq!(
        cfg.warnings,
        [
            "t.cfg:3: warning: 'option httplog' not usable with frontend 'pg' (needs 'mode \
             http'). Falling back to 'option tcplog'.",
            "t.cfg:4: warning: 'option forwardfor' ignored for frontend 'pg' as it requires HTTP \
             mode.",
            "t.cfg:15: warning: 'http-request' rules ignored for frontend 'pg' as they require \
             HTTP mode.",
            "t.cfg:17: warning: 'redirect' rules ignored for frontend 'pg' as they require HTTP \
             mode.",
            "t.cfg:4: warning: 'option forwardfor' ignored for backend 'pgb' as it requires HTTP \
             mode.",
            "t.cfg:22: warning: cookie will be ignored for backend 'pgb' (needs 'mode http').",
            "t.cfg:23: warning: 'http-response' rules ignored for backend 'pgb' as they require \
             HTTP mode.",
        ]
    );
    assert!(
        cfg.frontends[0].tcplog.is_some(),
        "httplog falls back to tcplog"
    );
    assert_eq!(
        cfg.frontends[0].timeout_client,
        Some(Duration::from_secs(50))
    );
}

/// `mode tcp` in a proxy overrides a `mode http` default, silently; `no
/// option http-keep-alive` is taken (as HAProxy, `no option httplog` is not).
#[test]
fn mode_tcp_overrides_a_mode_http_default() {
    let cfg = parse(
        "defaults\n    mode http\n    option http-keep-alive\n    timeout connect 5s\n    \
         timeout client 5s\n    timeout server 5s\nlisten l\n    bind :80\n    mode tcp\n    \
         no option http-keep-alive\n    server a 127.0.0.1:1\n",
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert!(cfg.frontends[0].tcplog.is_none());
}

/// `stats` and `monitor-uri` in a TCP listen: HAProxy's words (`haproxy -c`).
#[test]
fn stats_in_a_tcp_listen_is_ignored_with_haproxys_warning() {
    let cfg = parse(&format!(
        "{TIMEOUTS}listen st\n    bind *:8404\n    mode tcp\n    stats enable\n    stats uri /\n    \
         monitor-uri /health\n    server a 127.0.0.1:1\n"
    ));
    assert_eq!(
        cfg.warnings,
        [
            "t.cfg:8: warning: 'stats' statement ignored for proxy 'st' as it requires HTTP mode.",
            "t.cfg:10: warning: monitor-uri will be ignored for proxy 'st' (needs 'mode http').",
        ]
    );
}

/// An HTTP-mode listen whose only job is the stats page is served by lb;
/// HTTP rules there, or servers, keep it an HTTP proxy, which is refused.
#[test]
fn http_listen_serving_only_stats_is_a_stats_page() {
    let cfg = parse(&format!(
        "{TIMEOUTS}listen stats\n    mode http\n    bind :7000\n    stats enable\n    stats uri /\n    \
         stats realm Haproxy\\ Statistics\n    stats auth u:p\n    stats admin if TRUE\n    stats hide-version\n\
         frontend fe\n    bind :80\n    default_backend be\nbackend be\n    server a 127.0.0.1:1\n"
    ));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.frontends.len(), 1);
    let page = &cfg.stats_pages[0];
    assert_eq!(
        (page.name.as_str(), page.uri(), page.realm()),
        ("stats", "/", "Haproxy Statistics")
    );
    assert_eq!(page.stats.auth, [("u".to_string(), "p".to_string())]);
    assert!(page.stats.hide_version && page.stats.admin.is_some());
    assert_eq!(page.binds[0].port_first, 7000);
    let e = parse_err(&format!(
        "{TIMEOUTS}listen stats\n    mode http\n    bind :7000\n    stats enable\n    \
         http-request deny if {{ src 10.0.0.0/8 }}\nlisten x\n    bind :80\n    server a 127.0.0.1:1\n"
    ))
    .to_string();
    assert!(
        e.contains("lb serves that page only, without HTTP rules: 'http-request'")
            && e.contains(":9:"),
        "{e}"
    );
    let e = parse_err(&format!(
        "{TIMEOUTS}listen web\n    mode http\n    bind :7000\n    stats enable\n    server a 127.0.0.1:1\n"
    ))
    .to_string();
    assert!(e.contains("is in HTTP mode"), "{e}");
    let e = parse_err("listen s\n    mode http\n    bind :1\n    stats foo\n").to_string();
    assert!(e.contains("unknown stats parameter 'foo'"), "{e}");
}

/// What HAProxy 2.6 accepts or says on these, lb accepts or says too.
#[test]
fn haproxy_26_differences() {
    // `bind *:P` and `bind :::P` in one frontend: both listen, the IPv6
    // wildcard takes IPv6 only.
    let cfg = parse(&format!(
        "{TIMEOUTS}frontend f\n    bind *:81\n    bind :::81\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    ));
    let binds = &cfg.frontends[0].binds;
    assert!(!binds[0].v6only && binds[1].v6only, "{binds:?}");
    // Alone, `:::P` still takes IPv4 too.
    let cfg = parse(&format!(
        "{TIMEOUTS}frontend f\n    bind :::81\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    ));
    assert!(!cfg.frontends[0].binds[0].v6only);
    // `30min`: read as 30m, with HAProxy's warning.
    let cfg = parse(&format!(
        "{TIMEOUTS}frontend f\n    bind :82\n    timeout client 30min\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    ));
    assert_eq!(
        cfg.frontends[0].timeout_client,
        Some(Duration::from_secs(1800))
    );
    assert!(
        cfg.warnings[0].contains("unexpected character 'i' after the timer value '30min'"),
        "{:?}",
        cfg.warnings
    );
    // `1.5s`: no fractions.
    let e = parse_err(&format!(
        "{TIMEOUTS}frontend f\n    bind :82\n    timeout client 1.5s\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    ))
    .to_string();
    assert!(e.contains("fractions are not allowed"), "{e}");
    // `maxconn -1`: no limit.
    let cfg = parse(&format!(
        "{TIMEOUTS}frontend f\n    bind :83\n    maxconn -1\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n"
    ));
    assert_eq!(cfg.frontends[0].maxconn, None);
    // An address on the listen line.
    let e = parse_err(&format!(
        "{TIMEOUTS}listen l 0.0.0.0:84\n    server s 127.0.0.1:1\n"
    ))
    .to_string();
    assert!(
        e.contains("please use the 'bind' keyword for listening addresses"),
        "{e}"
    );
    // A duplicate names the earlier section's kind.
    let e = parse_err(&format!(
        "{TIMEOUTS}listen x\n    bind :85\n    server s 127.0.0.1:1\nbackend x\n    server s 127.0.0.1:1\n"
    ))
    .to_string();
    assert!(
        e.contains("backend 'x' has the same name as listen 'x' declared at"),
        "{e}"
    );
}

/// A file with only a stats page has nothing to balance (found by the
/// fuzzer: the rest of lb assumes one frontend at least).
#[test]
fn stats_page_alone_is_nothing_to_do() {
    let e = parse_err("listen s\n    mode http\n    bind :1\n    stats enable\n").to_string();
    assert!(e.contains("only stats pages"), "{e}");
}
