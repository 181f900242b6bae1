//! Tests of the TCP keyword set beyond the basics: ACLs and conditions,
//! routing rules, health checks, server and bind settings, the global section,
//! conditional blocks, several files, and what `lb run` does not apply.
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::tests::{parse, parse_err, try_parse_files, FILE};
use super::*;

/// Timeouts so that no "missing timeouts" warning shows.
const T: &str =
    "defaults\n    timeout client 30s\n    timeout connect 5s\n    timeout server 30s\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(a: &str, prefix: u8) -> Pattern {
    Pattern::Net(IpNet {
        addr: ip(a),
        prefix,
    })
}

const BIG: i64 = i64::MAX / 2;
const SMALL: i64 = i64::MIN / 2;

/// The tests of the only ACL of the first frontend.
fn acl_of(lines: &str) -> Vec<AclTest> {
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n{lines}    default_backend b\nbackend b\n"
    ));
    cfg.frontends[0].acls[0].tests.clone()
}

fn err_text(cfg: &str) -> String {
    parse_err(cfg).to_string()
}

#[test]
fn acl_ip_patterns() {
    let t = acl_of(
        "    acl a src 10.0.0.1 10.0.0.0/8 127.1 10.12/8 192.168.0.0/255.255.0.0 ::1 2001:db8::/32 db1.example\n",
    );
    assert_eq!(t[0].fetch, Fetch::Src);
    assert_eq!(
        t[0].patterns,
        [
            net("10.0.0.1", 32),
            net("10.0.0.0", 8),
            // inet_aton()'s short forms, as HAProxy.
            net("127.0.0.1", 32),
            net("10.0.0.12", 8),
            net("192.168.0.0", 16),
            net("::1", 128),
            net("2001:db8::", 32),
            // A host name: its IPv4 address.
            net("10.0.1.1", 32),
        ]
    );
    let t = acl_of("    acl a dst -n -- 10.0.0.1\n");
    assert_eq!(
        (t[0].fetch, t[0].patterns.clone()),
        (Fetch::Dst, vec![net("10.0.0.1", 32)])
    );
    let e = err_text("frontend f\n    acl a src 10.0.0.0/255.0.255.0\n");
    assert!(
        e.contains("'255.0.255.0' is not a contiguous netmask"),
        "{e}"
    );
    let e = err_text("frontend f\n    acl a src nowhere.example\n");
    assert!(e.contains("is not a valid IPv4 or IPv6 address"), "{e}");
}

#[test]
fn acl_int_patterns_and_operators() {
    let t = acl_of("    acl a dst_port 80 1024:65535 :1023 8000: gt 10 le 5 eq 7 lt 0 ge 3\n");
    let int = |lo, hi| Pattern::Int { lo, hi };
    assert_eq!(t[0].fetch, Fetch::DstPort);
    assert_eq!(
        t[0].patterns,
        [
            int(80, 80),
            int(1024, 65535),
            int(SMALL, 1023),
            int(8000, BIG),
            int(11, BIG),
            int(SMALL, 5),
            int(7, 7),
            int(SMALL, -1),
            int(3, BIG),
        ]
    );
    let t = acl_of("    acl a src_port -m int 1:2\n");
    assert_eq!(t[0].patterns, [int(1, 2)]);
    let e = err_text("frontend f\n    acl a dst_port gt 1:2\n");
    assert!(
        e.contains("operator 'gt' cannot apply to the range '1:2'"),
        "{e}"
    );
    let e = err_text("frontend f\n    acl a dst_port http\n");
    assert!(e.contains("'http' is not an integer"), "{e}");
    let e = err_text("frontend f\n    acl a always_true 1\n");
    assert!(e.contains("'always_true' takes no pattern"), "{e}");
}

#[test]
fn acl_flags_and_files() {
    let t = acl_of("    acl a src -f /etc/lb/allow.lst -i -u 3 10.1.1.1\n");
    assert_eq!(
        t[0].patterns,
        [
            net("10.0.0.0", 8),
            net("192.168.1.5", 32),
            net("::1", 128),
            net("10.1.1.1", 32)
        ]
    );
    assert_eq!(t[0].files, [Path::new("/etc/lb/allow.lst")]);
    let t = acl_of("    acl a dst_port -f /etc/lb/ports.lst\n");
    assert_eq!(
        t[0].patterns,
        [
            Pattern::Int { lo: 80, hi: 80 },
            Pattern::Int { lo: 8000, hi: 8080 }
        ]
    );
    // An error in a pattern file names that file's line.
    let e = parse_err(&format!(
        "{T}frontend f\n    bind :80\n    acl a src -f /etc/lb/bad.lst\n"
    ));
    assert_eq!(e.file(), Path::new("/etc/lb/bad.lst"));
    assert_eq!((e.line(), e.col()), (Some(2), Some(1)));
    let e = err_text("frontend f\n    acl a src -f /etc/lb/nope.lst\n");
    assert!(
        e.contains("failed to open pattern file '/etc/lb/nope.lst'"),
        "{e}"
    );
    let e = err_text("frontend f\n    acl a src -m reg x\n");
    assert!(
        e.contains("matching method '-m reg' is not compatible with the sample of 'src'"),
        "{e}"
    );
    let e = err_text("frontend f\n    acl a src -x 1.2.3.4\n");
    assert!(e.contains("unknown ACL flag '-x'"), "{e}");
    let e = err_text("frontend f\n    acl a src,ipmask(24) 10.0.0.0\n");
    assert!(
        e.contains("is not supported yet ('src' is, without arguments or converters)"),
        "{e}"
    );
    // Without any pattern, HAProxy warns that the ACL never matches.
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n    acl a src\n    default_backend b\nbackend b\n"
    ));
    assert!(
        cfg.warnings[0].contains("'src' has no pattern to match against"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn acl_fetch_families() {
    for (fetch, frag) in [
        ("hdr(host)", "'hdr' is an HTTP-mode feature"),
        ("req.hdr(host)", "'req.hdr' is an HTTP-mode feature"),
        ("url_beg", "'url_beg' is an HTTP-mode feature"),
        ("ssl_fc_sni", "'ssl_fc_sni' is a TLS feature"),
        (
            "req.rdp_cookie",
            "'req.rdp_cookie' is not supported yet in ACLs (offered: src, dst",
        ),
        ("nbsrv(b)", "'nbsrv' is not supported yet in ACLs"),
        (
            "sc0_conn_rate",
            "'sc0_conn_rate' is not supported yet in ACLs",
        ),
        ("srcc", "unknown fetch method 'srcc' in ACL expression"),
    ] {
        let e = err_text(&format!("frontend f\n    acl a {fetch} x\n"));
        assert!(e.contains(frag), "{fetch}: {e}");
    }
    let e = err_text("frontend f\n    acl a srcc x\n");
    assert!(e.ends_with("did you mean 'src'?"), "{e}");
}

#[test]
fn conditions() {
    let cfg = parse(&format!(
        "{T}frontend f
    bind :80
    acl a src 10.0.0.0/8
    acl b dst_port 80
    use_backend x if a !b || !a b or {{ src 1.2.3.4 }} TRUE
    use_backend x if ! a
    use_backend x unless FALSE
    use_backend x
    acl a src 11.0.0.0/8
    default_backend x
backend x
"
    ));
    let u = &cfg.frontends[0].use_backends;
    let shape = |c: &Condition| -> Vec<Vec<(bool, Option<String>, usize)>> {
        c.any_of
            .iter()
            .map(|and| {
                and.iter()
                    .map(|t| (t.negate, t.name.clone(), t.tests.len()))
                    .collect()
            })
            .collect()
    };
    let s = |n: &str| Some(n.to_string());
    // 'a' got a second test after the rule: the rule sees it (HAProxy shares the ACL).
    assert_eq!(
        shape(u[0].cond.as_ref().unwrap()),
        [
            vec![(false, s("a"), 2), (true, s("b"), 1)],
            vec![(true, s("a"), 2), (false, s("b"), 1)],
            vec![(false, None, 1), (false, s("TRUE"), 1)],
        ]
    );
    assert_eq!(
        shape(u[1].cond.as_ref().unwrap()),
        [vec![(true, s("a"), 2)]]
    );
    assert!(u[2].cond.as_ref().unwrap().unless);
    assert_eq!(
        u[2].cond.as_ref().unwrap().any_of[0][0].tests[0].fetch,
        Fetch::AlwaysFalse
    );
    assert_eq!(u[3].cond, None);
    for (cond, frag) in [
        ("if", "'if' expects a condition"),
        ("if a or", "the condition ends without an ACL after it"),
        ("if or a", "'or' without a condition before it"),
        ("if !", "the condition ends without an ACL after it"),
        (
            "if { src 1.2.3.4 { dst 1.2.3.4 } }",
            "'{' inside an inline ACL",
        ),
        ("if HTTP", "'predefined ACL 'HTTP'' is an HTTP-mode feature"),
        ("if METH_GET", "is an HTTP-mode feature"),
        (
            "if RDP_COOKIE",
            "'predefined ACL 'RDP_COOKIE'' is not supported yet",
        ),
        ("if TRUEE", "did you mean 'TRUE'?"),
    ] {
        let e = err_text(&format!(
            "frontend f\n    bind :80\n    acl a src 1.2.3.4\n    use_backend x {cond}\n"
        ));
        assert!(e.contains(frag), "{cond}: {e}");
    }
}

#[test]
fn tcp_request_connection_rules() {
    let cfg = parse(
        "\
defaults filtered
    timeout client 30s
    timeout connect 5s
    timeout server 30s
    acl blocked src 10.66.0.0/16
    tcp-request connection reject if blocked
frontend f from filtered
    bind :80
    acl blocked src 10.99.0.0/16
    tcp-request connection expect-proxy layer4 if { src 10.1.0.0/16 }
    tcp-request connection accept if blocked
    tcp-request connection reject
    default_backend b
defaults
backend b
    timeout connect 5s
    timeout server 30s
",
    );
    let r = &cfg.frontends[0].tcp_request_connection;
    let actions: Vec<(&TcpRequestAction, usize)> =
        r.iter().map(|r| (&r.action, r.origin.line)).collect();
    // The named defaults' rules come first, with the defaults' own ACLs.
    assert_eq!(
        actions,
        [
            (&TcpRequestAction::Reject, 6),
            (&TcpRequestAction::ExpectProxy, 10),
            (&TcpRequestAction::Accept, 11),
            (&TcpRequestAction::Reject, 12)
        ]
    );
    let first = &r[0].cond.as_ref().unwrap().any_of[0][0];
    assert_eq!(first.tests[0].patterns, [net("10.66.0.0", 16)]);
    let third = &r[2].cond.as_ref().unwrap().any_of[0][0];
    assert_eq!(third.tests[0].patterns, [net("10.99.0.0", 16)]);
    assert_eq!(r[3].cond, None);
    for (rule, frag) in [
        (
            "tcp-request connection track-sc0 src",
            "'tcp-request connection track-sc0' is not supported yet",
        ),
        ("tcp-request connection silent-drop", "is not supported yet"),
        (
            "tcp-request connection expect-proxy",
            "expects 'layer4' after 'expect-proxy'",
        ),
        ("tcp-request connection rejct", "did you mean 'reject'?"),
        (
            "tcp-request session accept",
            "'tcp-request session' is not supported yet",
        ),
        (
            "tcp-request content track-sc0 src",
            "'tcp-request content track-sc0' is not supported yet (only 'accept' and 'reject' are)",
        ),
        ("tcp-request foo", "unknown 'tcp-request' rule set 'foo'"),
    ] {
        let e = err_text(&format!("frontend f\n    bind :80\n    {rule}\n"));
        assert!(e.contains(frag), "{rule}: {e}");
    }
}

#[test]
fn use_backend_dynamic_name_is_not_supported_yet() {
    let e = err_text("frontend f\n    bind :80\n    use_backend be_%[dst_port]\n");
    assert!(
        e.contains("log-format (dynamic) backend name' is not supported yet"),
        "{e}"
    );
}

#[test]
fn health_check_options() {
    let hc = |opt: &str| -> HealthCheck {
        let cfg = parse(&format!(
            "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    {opt}\n"
        ));
        cfg.backends[0].health_check.clone().unwrap().value
    };
    let http = |m: &str, u: &str, v: &str| HealthCheck::HttpChk {
        method: m.into(),
        uri: u.into(),
        version: v.into(),
    };
    assert_eq!(hc("option httpchk"), http("OPTIONS", "/", "HTTP/1.0"));
    assert_eq!(
        hc("option httpchk /health"),
        http("OPTIONS", "/health", "HTTP/1.0")
    );
    assert_eq!(hc("option httpchk GET /h"), http("GET", "/h", "HTTP/1.0"));
    assert_eq!(
        hc("option httpchk GET /h HTTP/1.1"),
        http("GET", "/h", "HTTP/1.1")
    );
    assert_eq!(
        hc("option pgsql-check user lb"),
        HealthCheck::PgsqlCheck { user: "lb".into() }
    );
    assert_eq!(
        hc("option mysql-check"),
        HealthCheck::MysqlCheck {
            user: None,
            post41: true
        }
    );
    assert_eq!(
        hc("option mysql-check user u pre-41"),
        HealthCheck::MysqlCheck {
            user: Some("u".into()),
            post41: false
        }
    );
    assert_eq!(hc("option redis-check"), HealthCheck::RedisCheck);
    assert_eq!(hc("option spop-check"), HealthCheck::SpopCheck);
    assert_eq!(
        hc("option smtpchk"),
        HealthCheck::SmtpChk {
            hello: "HELO".into(),
            domain: "localhost".into()
        }
    );
    // The last check option wins, as in HAProxy.
    assert_eq!(
        hc("option httpchk\n    option redis-check"),
        HealthCheck::RedisCheck
    );
    // In a frontend it does nothing (with HAProxy's warning).
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n    option redis-check\n    default_backend b\nbackend b\n"
    ));
    assert!(cfg.warnings[0]
        .contains("'option redis-check' ignored because frontend 'f' has no backend capability"));
    for (opt, frag) in [
        (
            "option redis-check x",
            "'option redis-check' cannot handle unexpected argument 'x'",
        ),
        (
            "option mysql-check user",
            "'option mysql-check user' expects <username>",
        ),
        (
            "option mysql-check user u post-42",
            "only supports 'post-41' or 'pre-41'",
        ),
        (
            "no option httpchk",
            "negation/default is not supported for option 'httpchk'",
        ),
        (
            "option external-check",
            "'option external-check' unable to find required 'global.external-check'",
        ),
    ] {
        let e = err_text(&format!(
            "frontend f\n    bind :80\n    default_backend b\nbackend b\n    {opt}\n"
        ));
        assert!(e.contains(frag), "{opt}: {e}");
    }
}

#[test]
fn tcp_check_rules() {
    let cfg = parse(&format!(
        "{T}    option tcp-check
    tcp-check comment inherited
frontend f
    bind :80
    default_backend b
backend b
    tcp-check comment first
    tcp-check set-var(check.port) int(6379)
    tcp-check connect port 6379 addr 10.0.0.9 send-proxy linger comment \"redis port\"
    tcp-check send-binary 50494e470d0a
    tcp-check send-lf %[var(check.x)]
    tcp-check expect min-recv 5 comment pong ok-status L7OK ! string -ERR
    tcp-check expect binary 2b504f4e47
    tcp-check expect rbinary ^2b
    tcp-check unset-var(check.port)
backend inherits
"
    ));
    let b = &cfg.backends[0];
    // Rules of the proxy replace the inherited ones.
    let rules: Vec<TcpCheckRule> = b.tcp_check_rules.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        rules,
        [
            TcpCheckRule::Comment("first".into()),
            TcpCheckRule::Var("set-var(check.port) int(6379)".into()),
            TcpCheckRule::Connect(CheckConnect {
                default: false,
                port: Some(6379),
                addr: Some(ip("10.0.0.9")),
                send_proxy: true,
                linger: true,
                other: vec!["comment redis port".into()],
            }),
            TcpCheckRule::Send(b"PING\r\n".to_vec()),
            TcpCheckRule::SendLf("%[var(check.x)]".into()),
            TcpCheckRule::Expect(CheckExpect {
                negate: true,
                matcher: ExpectMatch::String("-ERR".into()),
                min_recv: Some(5),
                comment: Some("pong".into()),
                other: vec!["ok-status L7OK".into()],
            }),
            TcpCheckRule::Expect(CheckExpect {
                negate: false,
                matcher: ExpectMatch::Binary(b"+PONG".to_vec()),
                min_recv: None,
                comment: None,
                other: vec![],
            }),
            TcpCheckRule::Expect(CheckExpect {
                negate: false,
                matcher: ExpectMatch::Rbinary("^2b".into()),
                min_recv: None,
                comment: None,
                other: vec![],
            }),
            TcpCheckRule::Var("unset-var(check.port)".into()),
        ]
    );
    assert_eq!(
        b.health_check.as_ref().unwrap().value,
        HealthCheck::TcpCheck
    );
    // A backend without rules takes the defaults' ones.
    let inherited = &cfg.backends[1].tcp_check_rules;
    assert_eq!(inherited.len(), 1);
    assert_eq!(
        inherited[0].value,
        TcpCheckRule::Comment("inherited".into())
    );
    for (rule, frag) in [
        (
            "tcp-check connect port x",
            "'tcp-check connect port <sample expression>' is not supported yet",
        ),
        ("tcp-check connect port 0", "expects a valid TCP port"),
        (
            "tcp-check connect ssl",
            "'tcp-check connect ssl' is a TLS feature",
        ),
        (
            "tcp-check expect string",
            "'string' expects a <pattern> as argument",
        ),
        (
            "tcp-check expect string a string b",
            "only one pattern is allowed per rule",
        ),
        (
            "tcp-check expect ok-status L9OK string a",
            "'ok-status' expects one of L7OK, L7OKC, L6OK, L4OK",
        ),
        (
            "tcp-check send",
            "'tcp-check send' expects the data to send as argument",
        ),
        (
            "tcp-check send x y",
            "unexpected argument 'y' (only 'comment <msg>' may follow)",
        ),
        ("tcp-check expect min-recv x string a", "invalid min-recv"),
    ] {
        let e = err_text(&format!("backend b\n    {rule}\n"));
        assert!(e.contains(frag), "{rule}: {e}");
    }
}

#[test]
fn http_check_rules() {
    let cfg = parse(&format!(
        "{T}frontend f
    bind :80
    default_backend b
backend b
    option httpchk
    http-check connect port 8008
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host lb.example hdr X-A b body ok
    http-check expect rstatus ^2
    http-check expect ! hdr name X-Down
    http-check expect hdr name -m str Content-Type value -m beg text/
    http-check expect string OK
    http-check disable-on-404
    http-check send-state
    http-check comment done
"
    ));
    let rules: Vec<HttpCheckRule> = cfg.backends[0]
        .http_check_rules
        .iter()
        .map(|r| r.value.clone())
        .collect();
    let expect = |negate, matcher| {
        HttpCheckRule::Expect(CheckExpect {
            negate,
            matcher,
            min_recv: None,
            comment: None,
            other: vec![],
        })
    };
    assert_eq!(
        rules,
        [
            HttpCheckRule::Connect(CheckConnect {
                port: Some(8008),
                ..Default::default()
            }),
            HttpCheckRule::Send {
                method: Some("GET".into()),
                uri: Some("/health".into()),
                version: Some("HTTP/1.1".into()),
                headers: vec![
                    ("Host".into(), "lb.example".into()),
                    ("X-A".into(), "b".into())
                ],
                body: Some("ok".into()),
            },
            expect(false, ExpectMatch::Rstatus("^2".into())),
            expect(
                true,
                ExpectMatch::Header(vec!["name".into(), "X-Down".into()])
            ),
            expect(
                false,
                ExpectMatch::Header(vec![
                    "name".into(),
                    "-m str".into(),
                    "Content-Type".into(),
                    "value".into(),
                    "-m beg".into(),
                    "text/".into()
                ])
            ),
            expect(false, ExpectMatch::String("OK".into())),
            HttpCheckRule::DisableOn404,
            HttpCheckRule::SendState,
            HttpCheckRule::Comment("done".into()),
        ]
    );
    for (rule, frag) in [
        ("http-check expect status 2xx", "invalid status list"),
        (
            "http-check expect binary 00",
            "'http-check expect' only supports min-recv",
        ),
        ("http-check send meth", "'meth' expects a value"),
        ("http-check send verb GET", "did you mean 'ver'?"),
        (
            "http-check disable-on-404 now",
            "unexpected extra argument to 'http-check disable-on-404'",
        ),
    ] {
        let e = err_text(&format!("backend b\n    {rule}\n"));
        assert!(e.contains(frag), "{rule}: {e}");
    }
    // Rules without the option are ignored, with HAProxy's warning.
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    http-check expect status 200\n"
    ));
    assert!(
        cfg.warnings[0].contains("uses http-check rules without 'option httpchk'"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn default_server_and_server_settings() {
    let cfg = parse(&format!(
        "{T}frontend f
    bind :80
    default_backend b
backend b
    default-server check backup send-proxy maxconn 10 agent-check agent-port 9 agent-addr 10.9.9.9
    server a 10.0.0.1:80 no-backup no-send-proxy no-agent-check no-check
    server b db1.example:5432 init-addr libc,10.0.0.99
    server c ipv6@db2.example:5432
    server d nowhere.example:5432 init-addr last,none
    server e nowhere.example:5432 init-addr 10.0.0.7
    server f 10.0.0.6:-100 port 80 weight 0 maxconn 0
    server g :80
    server h [::]:80 send-proxy-v2
"
    ));
    let s = &cfg.backends[0].servers;
    assert!(
        !s[0].params.backup
            && s[0].params.send_proxy.is_none()
            && !s[0].params.agent.enabled
            && !s[0].params.check
    );
    assert_eq!(s[0].params.maxconn, Some(10));
    assert!(s[1].params.backup && s[1].params.check);
    assert_eq!(s[1].params.send_proxy, Some(ProxyProtocol::V1));
    assert_eq!(s[1].params.agent.addr, Some(ip("10.9.9.9")));
    // Host names resolve at start-up, as HAProxy: the first address...
    assert_eq!(s[1].addr, "10.0.1.1:5432".parse().unwrap());
    assert_eq!(s[1].fqdn.as_deref(), Some("db1.example"));
    // ... of the forced family.
    assert_eq!(s[2].addr, "[fd00::2]:5432".parse().unwrap());
    // 'none': no address, the server starts in maintenance.
    assert!(s[3].unresolved && s[3].params.disabled);
    // An IP address of init-addr stands in.
    assert_eq!(s[4].addr, "10.0.0.7:5432".parse().unwrap());
    assert_eq!(s[5].port_mode, ServerPort::Offset(-100));
    assert_eq!((s[5].params.weight, s[5].params.maxconn), (0, Some(0)));
    // No address: the client's destination address.
    assert!(s[6].addr_from_client);
    assert_eq!(s[6].addr, "0.0.0.0:80".parse().unwrap());
    assert!(s[7].addr_from_client);
    assert_eq!(s[7].addr, "[::]:80".parse().unwrap());
    assert_eq!(s[7].params.send_proxy, Some(ProxyProtocol::V2));
    for (line, frag) in [
        (
            "default-server id 3",
            "'id' is not allowed on 'default-server'",
        ),
        (
            "server s 10.0.0.1:80 observe layer7",
            "'observe layer7' is an HTTP-mode feature",
        ),
        (
            "server s 10.0.0.1:80 on-error explode",
            "unknown mode 'explode'",
        ),
        (
            "server s 10.0.0.1:80 ssl verify none",
            "'server ... ssl' is a TLS feature",
        ),
        (
            "server s 10.0.0.1:80 cookie x",
            "'server ... cookie' is an HTTP-mode feature",
        ),
        (
            "server s 10.0.0.1:80 track b/x",
            "'server ... track' is not supported yet",
        ),
        (
            "server s 10.0.0.1:80 addr db1",
            "invalid 'addr': 'db1' is not an IP address",
        ),
        (
            "server s 10.0.0.1:80 fall x",
            "invalid 'fall': 'x' is not a number",
        ),
    ] {
        let e = err_text(&format!("backend b\n    {line}\n"));
        assert!(e.contains(frag), "{line}: {e}");
    }
}

#[test]
fn bind_settings() {
    let cfg = parse(&format!(
        "{T}frontend f
    bind db1.example:80 tfo defer-accept mss 1400 mode 600 level admin
    bind :81-82 maxconn 5 backlog 0
    default_backend b
backend b
"
    ));
    let b = &cfg.frontends[0].binds;
    assert_eq!(
        (b[0].addr, b[0].fqdn.as_deref()),
        (Some(ip("10.0.1.1")), Some("db1.example"))
    );
    // UNIX-socket settings do nothing on TCP sockets, as in HAProxy.
    assert_eq!(b[0].other, ["tfo", "defer-accept", "mss 1400"]);
    assert_eq!((b[1].maxconn, b[1].backlog), (Some(5), Some(0)));
    for (line, frag) in [
        (
            "bind :80-81 id 4",
            "'id' can only be set on a 'bind' line declaring a single socket",
        ),
        ("bind :80 crt /x.pem", "'bind ... crt' is a TLS feature"),
        ("bind :80 quic-force-retry", "is not supported yet"),
        (
            "bind nowhere.example:80",
            "could not resolve address 'nowhere.example'",
        ),
        (
            "bind ipv6@db1.example:80",
            "could not resolve address 'db1.example'",
        ),
        ("bind :80 backlog", "'bind' expects a value after 'backlog'"),
    ] {
        let e = err_text(&format!("frontend f\n    {line}\n"));
        assert!(e.contains(frag), "{line}: {e}");
    }
}

#[test]
fn global_settings() {
    let cfg = parse(&format!(
        "global
    log stdout format raw local0
    log fd@3 len 200 sample 1:2 daemon err
    log ring@buf user
    log udp@10.0.0.5:1514 local7 info debug
    nbthread 8
    uid 100
    gid 200
    stats socket unix@/run/lb.sock uid 0 gid 0 mode 600 level user severity-output number
    stats socket *:9000 user haproxy group haproxy name api
    stats timeout 1m
    master-worker
    tune.lb.splice-budget 2m
    tune.maxaccept 100
{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n"
    ));
    let g = &cfg.global;
    let addrs: Vec<&LogAddress> = g.logs.iter().map(|l| &l.value.address).collect();
    assert_eq!(
        addrs,
        [
            &LogAddress::Fd(1),
            &LogAddress::Fd(3),
            &LogAddress::Ring("buf".into()),
            &LogAddress::Udp("10.0.0.5:1514".parse().unwrap())
        ]
    );
    assert_eq!(g.logs[0].value.format.as_deref(), Some("raw"));
    assert_eq!(
        (
            g.logs[1].value.len,
            g.logs[1].value.sample.as_deref(),
            g.logs[1].value.level.as_deref()
        ),
        (Some(200), Some("1:2"), Some("err"))
    );
    assert_eq!(g.logs[3].value.minlevel.as_deref(), Some("debug"));
    assert_eq!(g.nbthread.as_ref().map(|n| n.value), Some(8));
    assert_eq!(
        g.user.as_ref().map(|u| u.value.clone()),
        Some(Account {
            name: None,
            id: 100
        })
    );
    assert_eq!(g.group.as_ref().map(|u| u.value.id), Some(200));
    let s0 = &g.stats_sockets[0].value;
    assert_eq!(s0.address, StatsAddress::Unix("/run/lb.sock".into()));
    assert_eq!(
        (s0.uid, s0.gid, s0.mode, s0.level),
        (Some(0), Some(0), Some(0o600), StatsLevel::User)
    );
    assert_eq!(s0.severity_output.as_deref(), Some("number"));
    let s1 = &g.stats_sockets[1].value;
    assert_eq!(
        s1.address,
        StatsAddress::Tcp("0.0.0.0:9000".parse().unwrap())
    );
    assert_eq!((s1.uid, s1.gid), (Some(115), Some(120)));
    assert_eq!(s1.other, ["name api"]);
    assert_eq!(
        g.stats_timeout.as_ref().map(|t| t.value),
        Some(Duration::from_secs(60))
    );
    assert!(g.daemon.is_some());
    assert_eq!(g.splice_budget, 2 << 20);
    assert_eq!(g.other[0].value, "tune.maxaccept");
    for (line, frag) in [
        ("log global", "'log global' is only for proxies"),
        ("log 10.0.0.1", "'log' expects <address> and <facility>"),
        (
            "log 10.0.0.1 local0 info debug extra",
            "unexpected extra argument to 'log'",
        ),
        ("log stdout format json local0", "unknown log format 'json'"),
        ("log stdout local0 infoo", "did you mean 'info'?"),
        ("log 10.0.0.1 sample 0:2 local0", "invalid log sample '0:2'"),
        ("group nogroup", "cannot find group id for 'nogroup'"),
        (
            "stats socket",
            "expects an address or a path to a UNIX socket after 'stats socket'",
        ),
        ("stats socket 10.0.0.1", "a port is required"),
        ("stats socket /x mode 999", "'mode' expects an octal mode"),
        (
            "stats socket /x expose-fd all",
            "'expose-fd' only supports 'listeners'",
        ),
        ("stats scoket /x", "did you mean 'socket'?"),
        ("daemon now", "unexpected extra argument to 'daemon'"),
        ("lua-load /x.lua", "'lua-load' is not supported yet"),
        ("h1-case-adjust a A", "is an HTTP-mode feature"),
    ] {
        let e = err_text(&format!("global\n    {line}\n"));
        assert!(e.contains(frag), "{line}: {e}");
    }
    // As HAProxy, global maxconn 0 leaves the limit to be computed.
    let cfg = parse(&format!(
        "global\n    maxconn 0\n{T}frontend f\n    bind :80\n"
    ));
    assert_eq!(cfg.global.maxconn, None);
}

#[test]
fn environment_settings() {
    let cfg = parse(&format!(
        "global
    setenv A 1.2.3.4
    presetenv PORT 1
    presetenv B 5
    setenv W 9
    unsetenv W
{T}frontend f
    bind \"$A:$PORT\"
    bind $A:$B
    default_backend b
backend b
    server s 10.0.0.1:80 weight \"${{W-3}}\"
"
    ));
    let b = &cfg.frontends[0].binds;
    // presetenv does not replace a set variable (PORT=6432).
    assert_eq!((b[0].addr, b[0].port_first), (Some(ip("1.2.3.4")), 6432));
    assert_eq!(b[1].port_first, 5);
    assert_eq!(cfg.backends[0].servers[0].params.weight, 3);
    // resetenv keeps only the named variables.
    let e = err_text("global\n    resetenv ADDR\nfrontend f\n    bind \"$ADDR:$PORT\"\n");
    assert!(e.contains("missing port in '10.1.2.3:'"), "{e}");
}

#[test]
fn conditional_blocks() {
    let cfg = parse(&format!(
        "{T}.if defined(ADDR)
frontend a
    bind :1
  .if 0
    bind :2
  .elif streq(x,x)
    bind :3
  .elif 1
    bind :4
  .else
    bind :5
  .endif
.else
frontend b
.endif
.if !defined(ADDR) || version_before(2.6)
.alert \"never\"
.endif
.warning \"a warning\"
    default_backend x
backend x
"
    ));
    let ports: Vec<u16> = cfg.frontends[0]
        .binds
        .iter()
        .map(|b| b.port_first)
        .collect();
    assert_eq!(ports, [1, 3]);
    assert_eq!(cfg.frontends.len(), 1);
    assert!(
        cfg.warnings[0].ends_with(": warning: a warning"),
        "{:?}",
        cfg.warnings
    );
    for (text, frag) in [
        (".else\n", "'.else' without a matching '.if'"),
        (".if 1\n.else\n.elif 1\n.endif\n", "'.elif' after '.else'"),
        (
            ".if 1\n.else\n.else\n.endif\n",
            "several '.else' in one '.if' block",
        ),
        (".if bogus(1)\n.endif\n", "unknown predicate 'bogus'"),
        (".if (1\n.endif\n", "missing ')'"),
    ] {
        let e = err_text(text);
        assert!(e.contains(frag), "{text:?}: {e}");
    }
}

#[test]
fn several_files() {
    let cfg = try_parse_files(&[
        ("global\n    maxconn 10\n", "a.cfg"),
        (T, "b.cfg"),
        ("frontend f\n    bind :80\n    default_backend b\n", "c.cfg"),
        ("backend b\n    server s 10.0.0.1:80\n", "d.cfg"),
    ])
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.frontends[0].origin.file, Path::new("c.cfg"));
    assert_eq!(
        cfg.backends[0].timeout_server,
        Some(Duration::from_secs(30))
    );
    // A file ends the section it is in: the next one starts out of section.
    let e = try_parse_files(&[
        ("frontend f\n    bind :80\n", "a.cfg"),
        ("    default_backend b\n", "b.cfg"),
    ])
    .unwrap_err();
    assert_eq!(e.file(), Path::new("b.cfg"));
    assert!(e.to_string().contains("out of section"), "{e}");
    // Cross checks name the right file.
    let e = try_parse_files(&[
        ("frontend f\n    bind :80\n", "a.cfg"),
        ("frontend g\n    bind :80\n", "b.cfg"),
    ])
    .unwrap_err();
    assert_eq!(e.to_string().split(": error").next(), Some("b.cfg:2:10"));
    assert!(e.to_string().contains("of frontend 'f' at a.cfg:2"), "{e}");
    let e = try_parse_files(&[(".if 1\n", "a.cfg"), (".endif\n", "b.cfg")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("a.cfg:1:1: error: '.if' block not terminated"),
        "{e}"
    );
}

#[test]
fn reading_files_and_directories() {
    let dir = std::env::temp_dir().join(format!("lb-config-files-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("b.cfg"), "backend b\n    server s 10.0.0.1:80\n").unwrap();
    std::fs::write(
        dir.join("a.cfg"),
        "frontend f\n    bind :80\n    default_backend b\n",
    )
    .unwrap();
    std::fs::write(dir.join("B.cfg"), "global\n    maxconn 5\n").unwrap();
    std::fs::write(dir.join(".c.cfg"), "garbage\n").unwrap();
    std::fs::write(dir.join("c.conf"), "garbage\n").unwrap();
    std::fs::write(dir.join("sub/x.cfg"), "garbage\n").unwrap();
    let files = expand_paths(std::slice::from_ref(&dir)).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Byte order: upper case first, as LC_COLLATE=C.
    assert_eq!(names, ["B.cfg", "a.cfg", "b.cfg"]);
    let cfg = parse_files(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(cfg.global.maxconn, Some(5));
    // A file and a directory mixed, in order.
    let cfg = parse_files(&[dir.join("b.cfg"), dir.join("a.cfg")]).unwrap();
    assert_eq!(cfg.backends[0].origin.file, dir.join("b.cfg"));
    let e = parse_files(&[dir.join("nope.cfg")]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");
    let e = parse_files(&[dir.join("sub/..").join("sub").join("missing")]).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");
    std::fs::remove_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let e = parse_files(&[dir.join("empty")]).unwrap_err();
    assert!(e.to_string().contains("no configuration file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn named_defaults_used_explicitly_and_implicitly() {
    let cfg = parse(
        "\
defaults d
    timeout client 1s
    timeout connect 1s
    timeout server 1s
frontend f from d
    bind :80
    default_backend b
backend b
",
    );
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with(&format!(
        "{FILE}:8: warning: defaults section 'd' (declared at {FILE}:1) is explicitly referenced"
    )));
}

#[test]
fn balance_algorithms() {
    let balance = |line: &str| -> Balance {
        let cfg = parse(&format!(
            "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    {line}\n"
        ));
        cfg.backends[0].balance
    };
    assert_eq!(balance("balance roundrobin"), Balance::RoundRobin);
    assert_eq!(balance("balance static-rr"), Balance::StaticRr);
    assert_eq!(balance("balance leastconn"), Balance::LeastConn);
    assert_eq!(balance("balance first"), Balance::First);
    assert_eq!(balance("balance source"), Balance::Source);
    assert_eq!(balance("balance random"), Balance::Random { draws: 2 });
    assert_eq!(balance("balance random(5)"), Balance::Random { draws: 5 });
    // The last one wins.
    assert_eq!(
        balance("balance first\n    balance leastconn"),
        Balance::LeastConn
    );
    for (line, frag) in [
        ("balance random(x)", "balance random: 'x' is not a number"),
        ("balance random(2", "missing ')'"),
        ("balance leastconn(2)", "takes no argument in parentheses"),
        (
            "balance leastconn now",
            "unexpected extra argument to 'balance leastconn'",
        ),
        (
            "balance rdp-cookie",
            "'balance rdp-cookie' is not supported yet",
        ),
        ("balance hdr(host)", "'balance hdr' is an HTTP-mode feature"),
        (
            "hash-type map-based sdbm avalanche x",
            "unexpected extra argument to 'hash-type'",
        ),
        (
            "hash-type map-based sdbm other",
            "unknown hash modifier 'other'",
        ),
    ] {
        let e = err_text(&format!("backend b\n    {line}\n"));
        assert!(e.contains(frag), "{line}: {e}");
    }
    // 'first' without maxconn: a warning.
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    balance first\n    server a 10.0.0.1:80\n    server z 10.0.0.2:80 maxconn 3\n"
    ));
    assert_eq!(cfg.warnings.len(), 1);
    assert!(
        cfg.warnings[0].contains("'balance first' but server(s) a have no 'maxconn'"),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn runtime_gaps_name_what_lb_run_does_not_apply() {
    let cfg = parse(&format!(
        "global
    pidfile /run/x.pid
    maxsessrate 100
    nbthread 2
    log /dev/log local0
{T}frontend f
    bind :80 accept-proxy
    bind :81 name plain
    maxconn 100
    option clitcpka
    option logasap
    option nolinger
    tcp-request connection reject if {{ src_port 1024 }}
    use_backend b if {{ dst_port 81 }}
    disabled
    default_backend b
backend b
    balance leastconn
    retries 0
    timeout tunnel 1h
    timeout queue 10s
    option tcp-check
    tcp-check send PING\\r\\n
    server s 10.0.0.1:80 check weight 3 inter 1s
    server t 10.0.0.2:80 check backup maxconn 5 send-proxy slowstart 1s
    server u 10.0.0.3 check port 81 agent-check agent-port 82
backend quiet
    retries 3
    option tcp-check
    server s 10.0.0.1:80 check
"
    ));
    let gaps: Vec<(usize, String)> = runtime_gaps(&cfg)
        .into_iter()
        .map(|(o, w)| (o.line, w))
        .collect();
    // Applied now, so not gaps: `src` rules, `bind ... interface`.
    let applied = parse(&format!(
        "{T}frontend g\n    bind :80 interface lo\n    \
         tcp-request connection reject if {{ src 10.0.0.0/8 }}\n    default_backend b\n\
         backend b\n    server s 10.0.0.1:80\n"
    ));
    assert_eq!(runtime_gaps(&applied), vec![]);
    let want: Vec<(usize, &str)> = vec![(16, "option nolinger (frontend 'f')")];
    let mut got = gaps.clone();
    got.sort();
    let mut want: Vec<(usize, String)> =
        want.into_iter().map(|(l, w)| (l, w.to_string())).collect();
    want.sort();
    assert_eq!(got, want);
    let ignored: Vec<String> = runtime_ignored(&cfg).into_iter().map(|(_, w)| w).collect();
    for want in [
        "nbthread",
        "log (global): only `option tcplog` lines of frontends with `log global` go there",
        "option logasap (frontend 'f')",
        "bind name/id (frontend 'f')",
    ] {
        assert!(
            ignored.iter().any(|i| i == want),
            "{want} not in {ignored:?}"
        );
    }
}

#[test]
fn large_configurations_parse_in_linear_time() {
    // Many ACLs, named defaults sections, proxies and servers: lookups are
    // indexed, so this stays well within a second in release builds.
    let mut cfg = String::new();
    for i in 0..5000 {
        cfg.push_str(&format!(
            "defaults d{i}\n    timeout client 1s\n    timeout connect 1s\n    timeout server 1s\n"
        ));
    }
    cfg.push_str(
        "defaults\n    timeout client 1s\n    timeout connect 1s\n    timeout server 1s\n",
    );
    cfg.push_str("frontend f from d4999\n    bind :80\n");
    for i in 0..20000 {
        cfg.push_str(&format!(
            "    acl a{i} src 10.{}.{}.0/24\n",
            i / 256,
            i % 256
        ));
    }
    for i in (0..20000).step_by(7) {
        cfg.push_str(&format!(
            "    tcp-request connection reject if a{i} !a{}\n",
            19999 - i
        ));
    }
    cfg.push_str("    default_backend b0\n");
    for i in 0..2000 {
        cfg.push_str(&format!(
            "backend b{i}\n    server s 10.0.{}.{}:80 check\n",
            i / 256,
            i % 256
        ));
    }
    let start = std::time::Instant::now();
    let parsed = parse(&cfg);
    assert_eq!(parsed.frontends[0].acls.len(), 20000);
    assert_eq!(parsed.backends.len(), 2000);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn xdp_interface_tc_mode() {
    let cfg = parse(&format!(
        "global\n    xdp-interface eth3 tc\n{T}frontend f\n    bind :80\n"
    ));
    let i = &cfg.global.xdp_interfaces[0];
    assert_eq!(
        (i.value.name.as_str(), i.value.mode),
        ("eth3", XdpAttach::Tc)
    );
}

#[test]
fn xdp_keywords() {
    let cfg = parse(&format!(
        "global
    xdp-interface eth0
    xdp-interface veth-lb native
    xdp-interface eth2 skb
    xdp-syn-rate 100 per-source
{T}frontend f\n    bind :80\n"
    ));
    let g = &cfg.global;
    let got: Vec<(&str, XdpAttach, usize)> = g
        .xdp_interfaces
        .iter()
        .map(|i| (i.value.name.as_str(), i.value.mode, i.origin.line))
        .collect();
    assert_eq!(
        got,
        [
            ("eth0", XdpAttach::Auto, 2),
            ("veth-lb", XdpAttach::Native, 3),
            ("eth2", XdpAttach::Skb, 4)
        ]
    );
    let r = g.xdp_syn_rate.as_ref().unwrap();
    assert_eq!(
        (r.value, r.origin.line),
        (
            SynRate {
                per_second: 100,
                burst: 100
            },
            5
        )
    );
    let cfg = parse(&format!(
        "global\n    xdp-syn-rate 5 per-source burst 50\n{T}frontend f\n    bind :80\n"
    ));
    assert_eq!(cfg.global.xdp_syn_rate.as_ref().unwrap().value.burst, 50);
    assert!(
        crate::kernel::xdp::syn_cookies_on(&cfg),
        "SYN cookies from XDP by default"
    );
    for (text, on) in [("on", true), ("off", false)] {
        let cfg = parse(&format!(
            "global\n    xdp-syn-cookies {text}\n{T}frontend f\n    bind :80\n"
        ));
        let c = cfg.global.xdp_syn_cookies.as_ref().unwrap();
        assert_eq!((c.value, c.origin.line), (on, 2));
        assert_eq!(crate::kernel::xdp::syn_cookies_on(&cfg), on);
    }
    for (line, frag) in [
        ("xdp-syn-cookies", "'xdp-syn-cookies' expects on|off"),
        (
            "xdp-syn-cookies yes",
            "'xdp-syn-cookies' expects 'on' or 'off', not 'yes'",
        ),
        ("xdp-syn-cookies on off", "unexpected extra argument"),
        (
            "xdp-interface",
            "'xdp-interface' expects <interface> [native|skb|tc]",
        ),
        (
            "xdp-interface eth0 hw",
            "invalid mode 'hw' for 'xdp-interface'",
        ),
        ("xdp-interface eth0 skb now", "unexpected extra argument"),
        (
            "xdp-interface averyveryverylongname",
            "must be 1 to 15 characters long",
        ),
        ("xdp-interface a/b", "invalid interface name 'a/b'"),
        ("xdp-syn-rate", "expects <rate> per-source [burst <n>]"),
        (
            "xdp-syn-rate 0 per-source",
            "invalid rate for 'xdp-syn-rate'",
        ),
        ("xdp-syn-rate 10", "expects <rate> per-source"),
        (
            "xdp-syn-rate 10 total",
            "expects 'per-source' after the rate",
        ),
        ("xdp-syn-rate 10 per-source max 3", "expected 'burst <n>'"),
        (
            "xdp-syn-rate 10 per-source burst",
            "expects <rate> per-source",
        ),
        ("xdp-syn-rate 10 per-source burst 0", "invalid burst"),
        (
            "xdp-syn-rate 10 per-source burst 5 x",
            "unexpected extra argument",
        ),
        ("xdp-syn-rate 2000000000 per-source", "at most 1000000000"),
        ("xdp-interfaces eth0", "did you mean 'xdp-interface'?"),
    ] {
        let e = err_text(&format!("global\n    {line}\n"));
        assert!(e.contains(frag), "{line}: {e}");
        assert!(e.contains("t.cfg:2"), "{line}: no file:line in {e}");
    }
    let e = err_text("global\n    xdp-interface eth0\n    xdp-interface eth0 skb\n");
    assert!(e.contains("t.cfg:3") && e.contains("already named"), "{e}");
}

#[test]
fn use_server_force_persist_and_tcpka_settings() {
    let cfg = parse(&format!(
        "{T}frontend f\n    bind :80\n    clitcpka-idle 30\n    clitcpka-intvl 1500ms\n    default_backend b\n\
         backend b\n    srvtcpka-cnt 4\n    srvtcpka-idle 2m\n    force-persist if {{ dst_port 81 }}\n    \
         ignore-persist unless {{ dst_port 81 }}\n    use-server s2 if {{ dst_port 80 }}\n    \
         server s1 10.0.0.1:80\n    server s2 10.0.0.2:80\n"
    ));
    let b = &cfg.backends[0];
    assert_eq!(b.use_servers.len(), 1);
    assert_eq!(
        (
            b.use_servers[0].server.as_str(),
            b.use_servers[0].server_pos
        ),
        ("s2", 1)
    );
    assert_eq!(
        b.persist_rules.iter().map(|r| r.force).collect::<Vec<_>>(),
        [true, false]
    );
    assert!(b.persist_rules[1].cond.unless);
    let f = &cfg.frontends[0];
    assert_eq!(
        f.clitcpka_tune,
        TcpKeepalive {
            idle_s: Some(30),
            intvl_s: Some(2),
            cnt: None
        }
    );
    assert_eq!(
        b.srvtcpka_tune,
        TcpKeepalive {
            idle_s: Some(120),
            intvl_s: None,
            cnt: Some(4)
        }
    );
    let e = err_text(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    use-server s9 if TRUE\n    server s1 10.0.0.1:80\n"
    ));
    assert!(
        e.contains(":9:")
            && e.contains("unable to find server 's9' referenced in a 'use-server' rule"),
        "{e}"
    );
    let e = err_text(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    use-server s1\n    server s1 10.0.0.1:80\n"
    ));
    assert!(e.contains("requires either 'if' or 'unless'"), "{e}");
    let e = err_text(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    force-persist\n    server s1 10.0.0.1:80\n"
    ));
    assert!(
        e.contains("'force-persist' requires either 'if' or 'unless'"),
        "{e}"
    );
}

#[test]
fn resolvers_sections_and_server_templates() {
    let cfg = parse(&format!(
        "resolvers dns\n    nameserver a 10.0.0.53\n    nameserver b [fd00::53]:5353\n    \
         resolve_retries 5\n    timeout resolve 2s\n    timeout retry 500ms\n    hold nx 10s\n    \
         hold obsolete 5s\n    accepted_payload_size 4096\n\
         {T}frontend f\n    bind :80\n    default_backend b\n\
         backend b\n    server-template web 2-4 app.test:8080 resolvers dns init-addr none resolve-prefer ipv4 check\n"
    ));
    let r = &cfg.resolvers[0];
    assert_eq!(r.name, "dns");
    assert_eq!(
        r.nameservers,
        [
            ("a".to_string(), "10.0.0.53:53".parse().unwrap()),
            ("b".to_string(), "[fd00::53]:5353".parse().unwrap())
        ]
    );
    assert_eq!((r.resolve_retries, r.payload_size), (5, 4096));
    assert_eq!(r.timeout_resolve, Duration::from_secs(2));
    assert_eq!(r.timeout_retry, Duration::from_millis(500));
    assert_eq!(r.hold.nx, Duration::from_secs(10));
    assert_eq!(r.hold.obsolete, Duration::from_secs(5));
    assert_eq!(r.hold.other, Duration::from_secs(30));
    let names: Vec<&str> = cfg.backends[0]
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["web2", "web3", "web4"]);
    let s = &cfg.backends[0].servers[1];
    assert_eq!(s.fqdn.as_deref(), Some("app.test"));
    assert_eq!(s.params.resolvers.as_deref(), Some("dns"));
    assert!(s.params.resolve_prefer_v4 && s.unresolved && s.params.check);
    assert_eq!(s.addr.port(), 8080);
    assert_eq!(runtime_gaps(&cfg), vec![]);
    for (text, want) in [
        (
            "resolvers dns\n    nameserver a 10.0.0.53\nresolvers dns\n    nameserver a 10.0.0.53\n",
            "has the same name as another resolvers section",
        ),
        ("resolvers dns\n    timeout resolve 1s\n", "resolvers 'dns': no nameserver found"),
        ("resolvers dns\n    nameserver a tcp@10.0.0.53:53\n", "only UDP name servers"),
        ("resolvers dns\n    nameserver a 10.0.0.53\n    hold nxx 1s\n", "did you mean 'nx'"),
    ] {
        let e = err_text(&format!("{text}{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n"));
        assert!(e.contains(want), "{want}: {e}");
    }
    let e = err_text(&format!(
        "{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    server s app.test:80 resolvers nope init-addr none\n"
    ));
    assert!(
        e.contains("unable to find required resolvers 'nope'"),
        "{e}"
    );
    let e = err_text(&format!(
        "resolvers dns\n    nameserver a 10.0.0.53\n{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    \
         server-template s 0 app.test:80 resolvers dns init-addr none\n"
    ));
    assert!(
        e.contains("'server-template' expects a number or a range"),
        "{e}"
    );
    // An SRV name: address and port from its records, nothing at start.
    let cfg = parse(&format!(
        "resolvers dns\n    nameserver a 10.0.0.53\n{T}frontend f\n    bind :80\n    default_backend b\nbackend b\n    \
         server-template s 2 _http._tcp.app.test resolvers dns check\n"
    ));
    let s = &cfg.backends[0].servers[0];
    assert!(s.unresolved && s.port_mode == ServerPort::Fixed, "{s:?}");
    assert_eq!(runtime_gaps(&cfg), vec![]);
}
