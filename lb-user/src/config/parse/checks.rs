//! Health-check methods (`option tcp-check`, `option httpchk`, `option
//! pgsql-check`, ...) and their rules (`tcp-check ...`, `http-check ...`).
//! Parsed into the model here; run by the health checker.
use super::{ConfigError, Line, Parser, BE, DEF};
use crate::config::lexer::Token;
use crate::config::model::*;
use crate::config::values::{near, parse_hex, parse_int, parse_port, suggest};

/// Most `tcp-check`/`http-check` rules in one backend.
const MAX_RULES: usize = 1024;

/// `option <check> ...`.
pub(crate) fn option_check(p: &mut Parser<'_>, l: &Line, name: &str) -> Result<(), ConfigError> {
    let what = format!("option {name}");
    let args = &l.args[1..];
    let extra = |i: usize| -> Result<(), ConfigError> {
        match args.get(i) {
            Some(t) => Err(p.err(
                l.no,
                t,
                format!("'{what}' cannot handle unexpected argument '{}'", t.text),
            )),
            None => Ok(()),
        }
    };
    let hc = match name {
        "tcp-check" => {
            extra(0)?;
            HealthCheck::TcpCheck
        }
        "redis-check" => {
            extra(0)?;
            HealthCheck::RedisCheck
        }
        "ssl-hello-chk" => {
            extra(0)?;
            HealthCheck::SslHelloChk
        }
        "ldap-check" => {
            extra(0)?;
            HealthCheck::LdapCheck
        }
        "spop-check" => {
            extra(0)?;
            HealthCheck::SpopCheck
        }
        "external-check" => {
            extra(0)?;
            HealthCheck::ExternalCheck
        }
        "httpchk" => {
            extra(3)?;
            let a: Vec<&str> = args.iter().map(|t| t.text.as_str()).collect();
            let (method, uri, version) = match a.as_slice() {
                [] => ("OPTIONS", "/", "HTTP/1.0"),
                [uri] => ("OPTIONS", *uri, "HTTP/1.0"),
                [m, uri] => (*m, *uri, "HTTP/1.0"),
                [m, uri, v, ..] => (*m, *uri, *v),
            };
            HealthCheck::HttpChk {
                method: method.to_string(),
                uri: uri.to_string(),
                version: version.to_string(),
            }
        }
        "pgsql-check" => {
            let user = match (args.first(), args.get(1)) {
                (Some(u), Some(n)) if u.text == "user" => n.text.clone(),
                _ => {
                    return Err(p.err(
                        l.no,
                        args.first().unwrap_or(&l.args[0]),
                        "'option pgsql-check' expects 'user <username>' as argument",
                    ))
                }
            };
            extra(2)?;
            HealthCheck::PgsqlCheck { user }
        }
        "pgsql-role-check" => pgsql_role_check(p, l)?,
        "mysql-check" => {
            let mut user = None;
            let mut post41 = true;
            if let Some(u) = args.first() {
                if u.text != "user" {
                    return Err(p.err(
                        l.no,
                        u,
                        format!(
                            "'option mysql-check' only supports optional values: 'user' (got '{}')",
                            u.text
                        ),
                    ));
                }
                let n = args.get(1).ok_or_else(|| {
                    p.err(
                        l.no,
                        u,
                        "'option mysql-check user' expects <username> as argument",
                    )
                })?;
                user = Some(n.text.clone());
                if let Some(v) = args.get(2) {
                    match v.text.as_str() {
                        "post-41" => post41 = true,
                        "pre-41" => post41 = false,
                        _ => {
                            return Err(p.err(
                                l.no,
                                v,
                                format!(
                                    "'option mysql-check user <username>' only supports 'post-41' \
                                     or 'pre-41' after the name (got '{}')",
                                    v.text
                                ),
                            ))
                        }
                    }
                }
                extra(3)?;
            }
            HealthCheck::MysqlCheck { user, post41 }
        }
        "smtpchk" => {
            extra(2)?;
            let hello = match args.first().map(|t| t.text.as_str()) {
                Some("EHLO") => "EHLO",
                _ => "HELO",
            };
            let domain = args.get(1).map_or("localhost", |t| t.text.as_str());
            HealthCheck::SmtpChk {
                hello: hello.into(),
                domain: domain.into(),
            }
        }
        _ => return Err(p.not_yet_err(l.no, &l.args[0], &what, "")),
    };
    if p.warn_caps(l, DEF | BE, &what) {
        return Ok(());
    }
    let origin = p.origin(l.no);
    p.settings(l)?.health_check = Some(Located { value: hc, origin });
    Ok(())
}

/// `option pgsql-role-check user U [password P | password-file F |
/// password-env V] [database D] role primary|standby|any [max-lag S]`.
fn pgsql_role_check(p: &Parser<'_>, l: &Line) -> Result<HealthCheck, ConfigError> {
    const WHAT: &str = "option pgsql-role-check";
    let args = &l.args[1..];
    let (mut user, mut password, mut database, mut role, mut max_lag) =
        (None, None, None, None, None);
    let mut i = 0;
    while let Some(t) = args.get(i) {
        let v = args
            .get(i + 1)
            .ok_or_else(|| p.err(l.no, t, format!("'{WHAT}' : '{}' expects a value", t.text)))?;
        match t.text.as_str() {
            "user" => user = Some(v.text.clone()),
            "password" => password = Some(PasswordSource::Literal(v.text.clone())),
            "password-file" => password = Some(PasswordSource::File(v.text.clone().into())),
            "password-env" => password = Some(PasswordSource::Env(v.text.clone())),
            "database" => database = Some(v.text.clone()),
            "role" => {
                role = Some(match v.text.as_str() {
                    "primary" => PgRole::Primary,
                    "standby" => PgRole::Standby,
                    "any" => PgRole::Any,
                    _ => {
                        return Err(p.err(
                            l.no,
                            v,
                            format!(
                            "'{WHAT}' : 'role' expects 'primary', 'standby' or 'any' (got '{}')",
                            v.text
                        ),
                        ))
                    }
                })
            }
            "max-lag" => {
                // A bare number is seconds here (`max-lag 5`); units work too.
                let text = if v.text.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{}s", v.text)
                } else {
                    v.text.clone()
                };
                max_lag = Some(
                    crate::config::values::parse_time(&text)
                        .map_err(|m| p.err(l.no, v, format!("'{WHAT}' : invalid max-lag: {m}")))?,
                )
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    t,
                    format!(
                        "'{WHAT}' expects 'user', 'password', 'password-file', 'password-env', \
                         'database', 'role' or 'max-lag' but got '{}'",
                        t.text
                    ),
                    suggest(
                        &t.text,
                        [
                            "user",
                            "password",
                            "password-file",
                            "password-env",
                            "database",
                            "role",
                            "max-lag",
                        ],
                    ),
                ))
            }
        }
        i += 2;
    }
    let Some(user) = user else {
        return Err(p.err(
            l.no,
            &l.args[0],
            format!("'{WHAT}' expects 'user <username>'"),
        ));
    };
    let Some(role) = role else {
        return Err(p.err(
            l.no,
            &l.args[0],
            format!("'{WHAT}' expects 'role primary|standby|any'"),
        ));
    };
    Ok(HealthCheck::PgsqlRoleCheck(PgRoleCheck {
        user,
        password,
        database,
        role,
        max_lag,
    }))
}

/// Makes the section's rule set its own (inherited rules are dropped on the
/// first own rule) and checks its size.
fn rules_start(p: &mut Parser<'_>, l: &Line, http: bool) -> Result<(), ConfigError> {
    let s = p.settings(l)?;
    let (own, len) = if http {
        (&mut s.http_check_own, s.http_check_rules.len())
    } else {
        (&mut s.tcp_check_own, s.tcp_check_rules.len())
    };
    let inherited = !*own;
    *own = true;
    if inherited {
        if http {
            s.http_check_rules.clear();
        } else {
            s.tcp_check_rules.clear();
        }
    } else if len >= MAX_RULES {
        return Err(p.err(
            l.no,
            &l.kw,
            format!("too many '{}' rules (at most {MAX_RULES})", l.kw.text),
        ));
    }
    Ok(())
}

/// `... comment <msg>` at the end of a rule, from argument `i`.
fn trailing_comment(
    p: &Parser<'_>,
    l: &Line,
    i: usize,
    what: &str,
) -> Result<Option<String>, ConfigError> {
    match l.args.get(i) {
        None => Ok(None),
        Some(t) if t.text == "comment" => {
            let c = l.args.get(i + 1).ok_or_else(|| {
                p.err(
                    l.no,
                    t,
                    format!("'{what}' : 'comment' expects a string as argument"),
                )
            })?;
            p.no_more(l, i + 2, what)?;
            Ok(Some(c.text.clone()))
        }
        Some(t) => Err(p.err(
            l.no,
            t,
            format!(
                "'{what}' : unexpected argument '{}' (only 'comment <msg>' may follow)",
                t.text
            ),
        )),
    }
}

/// `connect` options, from argument 1 on.
fn parse_connect(p: &Parser<'_>, l: &Line, what: &str) -> Result<CheckConnect, ConfigError> {
    let mut c = CheckConnect::default();
    let mut i = 1;
    while let Some(t) = l.args.get(i) {
        let value = |i: usize| {
            l.args
                .get(i)
                .ok_or_else(|| p.err(l.no, t, format!("'{what}' : '{}' expects a value", t.text)))
        };
        match t.text.as_str() {
            "default" => c.default = true,
            "send-proxy" => c.send_proxy = true,
            "linger" => c.linger = true,
            "via-socks4" => c.other.push(t.text.clone()),
            "port" => {
                let v = value(i + 1)?;
                i += 1;
                if !v.text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(p.not_yet_err(
                        l.no,
                        v,
                        &format!("{what} port <sample expression>"),
                        " (only a port number is)",
                    ));
                }
                c.port = Some(parse_port(&v.text).map_err(|m| {
                    p.err(
                        l.no,
                        v,
                        format!("'{what}' : expects a valid TCP port (from range 1 to 65535): {m}"),
                    )
                })?);
            }
            "addr" => {
                let v = value(i + 1)?;
                i += 1;
                c.addr = Some(v.text.parse().map_err(|_| {
                    p.err(
                        l.no,
                        v,
                        format!("'{what}' : '{}' is not an IP address", v.text),
                    )
                })?);
            }
            "proto" | "comment" => {
                let v = value(i + 1)?;
                i += 1;
                c.other.push(format!("{} {}", t.text, v.text));
            }
            "ssl" | "sni" | "alpn" => {
                return Err(p.tls_err(l.no, t, &format!("{what} {}", t.text)))
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    t,
                    format!(
                        "'{what}' expects 'comment', 'port', 'addr', 'send-proxy', 'via-socks4', \
                         'linger', 'proto' or 'default' but got '{}'",
                        t.text
                    ),
                    suggest(
                        &t.text,
                        [
                            "comment",
                            "port",
                            "addr",
                            "send-proxy",
                            "via-socks4",
                            "linger",
                            "default",
                            "proto",
                        ],
                    ),
                ))
            }
        }
        i += 1;
    }
    Ok(c)
}

const OK_STATUS: &[&str] = &["L7OK", "L7OKC", "L6OK", "L4OK"];
const ERROR_STATUS: &[&str] = &["L7OKC", "L7RSP", "L7STS", "L6RSP", "L4CON"];
const TOUT_STATUS: &[&str] = &["L7TOUT", "L6TOUT", "L4TOUT"];

/// `expect [options] [!] <match> <pattern>`, from argument 1 on.
fn parse_expect(p: &Parser<'_>, l: &Line, http: bool) -> Result<CheckExpect, ConfigError> {
    let what = format!("{} expect", l.kw.text);
    let mut negate = false;
    let mut matcher: Option<ExpectMatch> = None;
    let mut min_recv = None;
    let mut comment = None;
    let mut other = Vec::new();
    let matches: &[&str] = if http {
        &[
            "status",
            "rstatus",
            "hdr",
            "fhdr",
            "string",
            "rstring",
            "string-lf",
        ]
    } else {
        &[
            "string",
            "rstring",
            "string-lf",
            "binary",
            "rbinary",
            "binary-lf",
        ]
    };
    let mut i = 1;
    while let Some(t) = l.args.get(i) {
        let value = |i: usize| -> Result<&Token, ConfigError> {
            l.args.get(i).ok_or_else(|| {
                p.err(
                    l.no,
                    t,
                    format!("'{what}' : '{}' expects a value as argument", t.text),
                )
            })
        };
        let mut word = t.text.as_str();
        if let Some(rest) = word.strip_prefix('!') {
            negate = true;
            word = rest;
            if word.is_empty() {
                i += 1;
                continue;
            }
        }
        match word {
            "min-recv" => {
                let v = value(i + 1)?;
                i += 1;
                let n = parse_int(&v.text, -1, i64::from(i32::MAX))
                    .map_err(|m| p.err(l.no, v, format!("'{what}' : invalid min-recv: {m}")))?;
                // Within i32.
                min_recv = Some(n as i32);
            }
            "comment" => {
                comment = Some(value(i + 1)?.text.clone());
                i += 1;
            }
            "ok-status" | "error-status" | "tout-status" => {
                let v = value(i + 1)?;
                i += 1;
                let allowed = match word {
                    "ok-status" => OK_STATUS,
                    "error-status" => ERROR_STATUS,
                    _ => TOUT_STATUS,
                };
                if !allowed.contains(&v.text.as_str()) {
                    return Err(p.err(
                        l.no,
                        v,
                        format!(
                            "'{what}' : '{word}' expects one of {} but got '{}'",
                            allowed.join(", "),
                            v.text
                        ),
                    ));
                }
                other.push(format!("{word} {}", v.text));
            }
            "on-success" | "on-error" | "status-code" => {
                let v = value(i + 1)?;
                i += 1;
                other.push(format!("{word} {}", v.text));
            }
            m if matches.contains(&m) => {
                if matcher.is_some() {
                    return Err(p.err(
                        l.no,
                        t,
                        format!("'{what}' : only one pattern is allowed per rule"),
                    ));
                }
                let v = l.args.get(i + 1).ok_or_else(|| {
                    p.err(
                        l.no,
                        t,
                        format!("'{what}' : '{m}' expects a <pattern> as argument"),
                    )
                })?;
                i += 1;
                matcher = Some(match m {
                    "string" => ExpectMatch::String(v.text.clone()),
                    "rstring" => ExpectMatch::Rstring(v.text.clone()),
                    "string-lf" => ExpectMatch::StringLf(v.text.clone()),
                    "binary" => ExpectMatch::Binary(parse_hex(&v.text).map_err(|e| {
                        p.err(l.no, v, format!("'{what}' : invalid binary string: {e}"))
                    })?),
                    "rbinary" => ExpectMatch::Rbinary(v.text.clone()),
                    "binary-lf" => ExpectMatch::BinaryLf(v.text.clone()),
                    "status" => {
                        check_status_list(&v.text).map_err(|e| {
                            p.err(l.no, v, format!("'{what}' : invalid status list: {e}"))
                        })?;
                        ExpectMatch::Status(v.text.clone())
                    }
                    "rstatus" => ExpectMatch::Rstatus(v.text.clone()),
                    _ => {
                        // hdr/fhdr: name|name-lf [-m meth] <name> [value|value-lf [-m meth] <pattern>]
                        let mut parts = vec![v.text.clone()];
                        if v.text != "name" && v.text != "name-lf" {
                            return Err(p.err(
                                l.no,
                                v,
                                format!("'{what}' : '{m}' expects 'name' or 'name-lf' first"),
                            ));
                        }
                        let mut want_value = true;
                        let mut stage = 0;
                        while let Some(w) = l.args.get(i + 1) {
                            if stage % 2 == 0 && w.text == "-m" {
                                let meth = l.args.get(i + 2).ok_or_else(|| {
                                    p.err(l.no, w, format!("'{what}' : '-m' expects a method"))
                                })?;
                                parts.push(format!("-m {}", meth.text));
                                i += 2;
                                continue;
                            }
                            match stage {
                                0 | 2 => {
                                    parts.push(w.text.clone());
                                    i += 1;
                                    stage += 1;
                                    if stage == 3 {
                                        break;
                                    }
                                }
                                _ if want_value && (w.text == "value" || w.text == "value-lf") => {
                                    parts.push(w.text.clone());
                                    i += 1;
                                    stage = 2;
                                    want_value = false;
                                }
                                _ => break,
                            }
                        }
                        if stage == 0 || stage == 2 {
                            return Err(p.err(
                                l.no,
                                t,
                                format!("'{what}' : '{m}' expects a header name (and a value pattern after 'value')"),
                            ));
                        }
                        ExpectMatch::Header(parts)
                    }
                });
            }
            _ => {
                let cands: Vec<&str> = matches
                    .iter()
                    .copied()
                    .chain([
                        "min-recv",
                        "comment",
                        "ok-status",
                        "error-status",
                        "tout-status",
                        "on-success",
                        "on-error",
                        "status-code",
                    ])
                    .collect();
                return Err(p.err_hint(
                    l.no,
                    t,
                    format!(
                        "'{what}' only supports min-recv, comment, ok-status, error-status, \
                         tout-status, on-success, on-error, status-code and [!]{} but got '{}'",
                        matches.join(", [!]"),
                        t.text
                    ),
                    suggest(word, cands),
                ));
            }
        }
        i += 1;
    }
    let Some(matcher) = matcher else {
        return Err(p.err(
            l.no,
            &l.args[0],
            format!(
                "'{what}' expects [!]{} and a pattern",
                matches.join(", [!]")
            ),
        ));
    };
    Ok(CheckExpect {
        negate,
        matcher,
        min_recv,
        comment,
        other,
    })
}

/// `200`, `200-399`, `200,301-302`.
fn check_status_list(s: &str) -> Result<(), String> {
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        for n in [a, b] {
            if n.is_empty() || n.len() > 3 || !n.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("'{}' is not a status code or range", near(part)));
            }
        }
    }
    Ok(())
}

/// `set-var(...)` / `set-var-fmt(...)` / `unset-var(...)`: validated loosely,
/// kept as written.
fn parse_var(p: &Parser<'_>, l: &Line) -> Result<String, ConfigError> {
    let t = &l.args[0];
    let unset = t.text.starts_with("unset-var(");
    if !t.text.ends_with(')') {
        return Err(p.err(l.no, t, format!("missing ')' in '{}'", t.text)));
    }
    if unset {
        p.no_more(l, 1, &t.text)?;
    } else {
        p.arg(l, 1, &format!("an expression after '{}'", t.text))?;
    }
    let words: Vec<&str> = l.args.iter().map(|t| t.text.as_str()).collect();
    Ok(words.join(" "))
}

/// A rule that must be preceded only by comments and variables when the set
/// has a `connect`.
fn is_prelude_tcp(r: &TcpCheckRule) -> bool {
    matches!(r, TcpCheckRule::Comment(_) | TcpCheckRule::Var(_))
}

/// `tcp-check <rule> ...`.
pub(crate) fn p_tcp_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let sub = p.arg(
        l,
        0,
        "'comment', 'connect', 'send', 'send-lf', 'send-binary', 'send-binary-lf', 'expect', 'set-var' or 'unset-var'",
    )?;
    let what = format!("tcp-check {}", sub.text);
    let rule = match sub.text.as_str() {
        "comment" => {
            let c = p.arg(l, 1, "a string after 'comment'")?;
            p.no_more(l, 2, &what)?;
            TcpCheckRule::Comment(c.text.clone())
        }
        "connect" => TcpCheckRule::Connect(parse_connect(p, l, &what)?),
        "send" | "send-lf" | "send-binary" | "send-binary-lf" => {
            let d = l.args.get(1).ok_or_else(|| {
                p.err(
                    l.no,
                    sub,
                    format!("'{what}' expects the data to send as argument"),
                )
            })?;
            trailing_comment(p, l, 2, &what)?;
            match sub.text.as_str() {
                "send" => TcpCheckRule::Send(d.text.clone().into_bytes()),
                "send-lf" => TcpCheckRule::SendLf(d.text.clone()),
                "send-binary" => TcpCheckRule::Send(parse_hex(&d.text).map_err(|e| {
                    p.err(
                        l.no,
                        d,
                        format!("'{what}' : invalid hexadecimal string: {e}"),
                    )
                })?),
                _ => TcpCheckRule::SendBinaryLf(d.text.clone()),
            }
        }
        "expect" => TcpCheckRule::Expect(parse_expect(p, l, false)?),
        s if s.starts_with("set-var(")
            || s.starts_with("set-var-fmt(")
            || s.starts_with("unset-var(") =>
        {
            TcpCheckRule::Var(parse_var(p, l)?)
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                sub,
                format!(
                    "'tcp-check' only supports 'comment', 'connect', 'send', 'send-lf', \
                     'send-binary', 'send-binary-lf', 'expect', 'set-var(*)', 'set-var-fmt(*)' \
                     and 'unset-var(*)' but got '{}'",
                    sub.text
                ),
                suggest(
                    &sub.text,
                    [
                        "comment",
                        "connect",
                        "send",
                        "send-lf",
                        "send-binary",
                        "send-binary-lf",
                        "expect",
                    ],
                ),
            ))
        }
    };
    rules_start(p, l, false)?;
    if matches!(rule, TcpCheckRule::Connect(_)) {
        let s = p.settings(l)?;
        if let Some(first) = s.tcp_check_rules.iter().find(|r| !is_prelude_tcp(&r.value)) {
            if !matches!(first.value, TcpCheckRule::Connect(_)) {
                return Err(p.err(
                    l.no,
                    sub,
                    "'tcp-check connect': the first step of a ruleset with a 'connect' must also \
                     be a 'connect' (optionally preceded by 'comment', 'set-var' or 'unset-var')",
                ));
            }
        }
    }
    let origin = p.origin(l.no);
    p.settings(l)?.tcp_check_rules.push(Located {
        value: rule,
        origin,
    });
    Ok(())
}

/// `http-check <rule> ...`.
pub(crate) fn p_http_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let sub = p.arg(
        l,
        0,
        "'comment', 'connect', 'disable-on-404', 'expect', 'send', 'send-state', 'set-var' or 'unset-var'",
    )?;
    let what = format!("http-check {}", sub.text);
    let rule = match sub.text.as_str() {
        "comment" => {
            let c = p.arg(l, 1, "a string after 'comment'")?;
            p.no_more(l, 2, &what)?;
            HttpCheckRule::Comment(c.text.clone())
        }
        "connect" => HttpCheckRule::Connect(parse_connect(p, l, &what)?),
        "disable-on-404" => {
            p.no_more(l, 1, &what)?;
            HttpCheckRule::DisableOn404
        }
        "send-state" => {
            p.no_more(l, 1, &what)?;
            HttpCheckRule::SendState
        }
        "expect" => HttpCheckRule::Expect(parse_expect(p, l, true)?),
        "send" => {
            let (mut method, mut uri, mut version, mut body) = (None, None, None, None);
            let mut headers = Vec::new();
            let mut i = 1;
            while let Some(t) = l.args.get(i) {
                let value = |i: usize| {
                    l.args.get(i).ok_or_else(|| {
                        p.err(l.no, t, format!("'{what}' : '{}' expects a value", t.text))
                    })
                };
                match t.text.as_str() {
                    "meth" => method = Some(value(i + 1)?.text.clone()),
                    "uri" | "uri-lf" => uri = Some(value(i + 1)?.text.clone()),
                    "ver" => version = Some(value(i + 1)?.text.clone()),
                    "body" | "body-lf" => body = Some(value(i + 1)?.text.clone()),
                    "comment" => {
                        value(i + 1)?;
                    }
                    "hdr" => {
                        let n = value(i + 1)?;
                        let v = value(i + 2)?;
                        headers.push((n.text.clone(), v.text.clone()));
                        i += 1;
                    }
                    _ => {
                        return Err(p.err_hint(
                            l.no,
                            t,
                            format!(
                                "'{what}' expects 'meth', 'uri', 'uri-lf', 'ver', 'hdr', 'body', \
                                 'body-lf' or 'comment' but got '{}'",
                                t.text
                            ),
                            suggest(
                                &t.text,
                                ["meth", "uri", "uri-lf", "ver", "hdr", "body", "body-lf", "comment"],
                            ),
                        ))
                    }
                }
                i += 2;
            }
            HttpCheckRule::Send {
                method,
                uri,
                version,
                headers,
                body,
            }
        }
        s if s.starts_with("set-var(") || s.starts_with("set-var-fmt(") || s.starts_with("unset-var(") => {
            HttpCheckRule::Var(parse_var(p, l)?)
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                sub,
                format!(
                    "'http-check' only supports 'comment', 'connect', 'disable-on-404', 'expect', \
                     'send', 'send-state', 'set-var(*)', 'set-var-fmt(*)' and 'unset-var(*)' but got '{}'",
                    sub.text
                ),
                suggest(
                    &sub.text,
                    ["comment", "connect", "disable-on-404", "expect", "send", "send-state"],
                ),
            ))
        }
    };
    rules_start(p, l, true)?;
    let origin = p.origin(l.no);
    p.settings(l)?.http_check_rules.push(Located {
        value: rule,
        origin,
    });
    Ok(())
}
