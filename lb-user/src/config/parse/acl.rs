//! ACLs (`acl` lines and inline `{ }`), conditions (`if|unless`), and the
//! rules using them (`use_backend` in `parse.rs`, `tcp-request connection`).
//!
//! Only layer-4 fetches are offered: `src`, `dst` (IP networks), `src_port`,
//! `dst_port` (integers, ranges, operators), `always_true`, `always_false`, and
//! the predefined `TRUE`, `FALSE`, `LOCALHOST`. Patterns may come from `-f`
//! files (one per line, `#` comments), read at parse time as HAProxy does.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use super::{with_hint, ConfigError, Defaults, Line, Parser, PendingCond, Proxy, Section, DEF, FE};
use crate::config::lexer::Token;
use crate::config::model::*;
use crate::config::values::{near, parse_int, parse_ipv4_loose, suggest};

/// Most patterns in one ACL test (line and files together).
const MAX_PATTERNS: usize = 1 << 20;

/// The sample type of a fetch, which decides its default matching method
/// and how its patterns parse.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ip,
    Int,
    Bool,
    /// A TLS version: `3.1`-style patterns, `major << 16 | minor`.
    Ver,
    Str,
    Bin,
}

const FETCHES: &[(&str, Fetch, Kind)] = &[
    ("src", Fetch::Src, Kind::Ip),
    ("dst", Fetch::Dst, Kind::Ip),
    ("src_port", Fetch::SrcPort, Kind::Int),
    ("dst_port", Fetch::DstPort, Kind::Int),
    ("always_true", Fetch::AlwaysTrue, Kind::Bool),
    ("always_false", Fetch::AlwaysFalse, Kind::Bool),
    ("req.len", Fetch::ReqLen, Kind::Int),
    ("req_len", Fetch::ReqLen, Kind::Int),
    ("req.ssl_hello_type", Fetch::ReqSslHelloType, Kind::Int),
    ("req_ssl_hello_type", Fetch::ReqSslHelloType, Kind::Int),
    ("req.ssl_ver", Fetch::ReqSslVer, Kind::Ver),
    ("req_ssl_ver", Fetch::ReqSslVer, Kind::Ver),
    ("req.ssl_sni", Fetch::ReqSslSni, Kind::Str),
    ("req_ssl_sni", Fetch::ReqSslSni, Kind::Str),
    ("wait_end", Fetch::WaitEnd, Kind::Bool),
];

/// Fetches with arguments in parentheses: `req.payload(off,len)`,
/// `req.payload_lv(off1,len1[,off2])` (`payload` and `payload_lv` are their
/// older names).
const ARG_FETCHES: &[&str] = &["req.payload", "payload", "req.payload_lv", "payload_lv"];

/// HAProxy fetches (and ACL derivatives) that need HTTP.
const HTTP_FETCHES: &[&str] = &[
    "base",
    "base32",
    "baseq",
    "capture.req",
    "capture.res",
    "cook",
    "cookie",
    "hdr",
    "http_auth",
    "http_first_req",
    "method",
    "path",
    "pathq",
    "query",
    "req.body",
    "req.cook",
    "req.fhdr",
    "req.hdr",
    "req.hdrs",
    "req.ver",
    "req_ver",
    "res.body",
    "res.cache",
    "res.comp",
    "res.cook",
    "res.fhdr",
    "res.hdr",
    "res.hdrs",
    "res.ver",
    "resp_ver",
    "scook",
    "set-cookie",
    "shdr",
    "status",
    "unique-id",
    "url",
    "url32",
    "url_ip",
    "url_param",
    "url_port",
    "urlp",
    "urlp_val",
    "http",
    "txn",
    "req.proto_http",
    "req_proto_http",
];

/// HAProxy fetches that need to inspect the payload (tcp-request content),
/// not offered yet.
const CONTENT_FETCHES: &[&str] = &[
    "req.rdp_cookie",
    "req.rdp_cookie_cnt",
    "rdp_cookie",
    "rdp_cookie_cnt",
    "req.ssl_alpn",
    "req.ssl_ec_ext",
    "req.ssl_st_ext",
    "rep_ssl_hello_type",
    "res.ssl_hello_type",
    "res.len",
    "res.payload",
    "res.payload_lv",
    "distcc_body",
    "distcc_param",
];

/// Other HAProxy fetches (internal states, layer 4/5): known, not offered yet.
const OTHER_FETCHES: &[&str] = &[
    "avg_queue",
    "be_conn",
    "be_conn_free",
    "be_sess_rate",
    "bin",
    "bool",
    "connslots",
    "cpu_calls",
    "cpu_ns_avg",
    "cpu_ns_tot",
    "date",
    "date_us",
    "env",
    "fe_conn",
    "fe_req_rate",
    "fe_sess_rate",
    "hostname",
    "int",
    "ipv4",
    "ipv6",
    "lat_ns_avg",
    "lat_ns_tot",
    "meth",
    "nbsrv",
    "not",
    "prio_class",
    "prio_offset",
    "proc",
    "queue",
    "rand",
    "srv_conn",
    "srv_conn_free",
    "srv_is_up",
    "srv_iweight",
    "srv_queue",
    "srv_sess_rate",
    "srv_uweight",
    "srv_weight",
    "stopping",
    "str",
    "table_avl",
    "table_cnt",
    "thread",
    "uuid",
    "var",
    "bc_dst",
    "bc_dst_port",
    "bc_src",
    "bc_src_port",
    "be_id",
    "be_name",
    "dst_conn",
    "dst_is_local",
    "fc_dst",
    "fc_dst_port",
    "fc_src",
    "fc_src_port",
    "fc_rtt",
    "fc_rttvar",
    "fc_rcvd_proxy",
    "fe_id",
    "fe_name",
    "fe_defbe",
    "so_id",
    "so_name",
    "src_is_local",
    "srv_id",
    "srv_name",
    "sc_",
    "sc0_",
    "sc1_",
    "sc2_",
    "src_conn",
    "src_sess",
    "src_http",
    "src_bytes",
    "src_kbytes",
    "src_get",
    "src_inc",
    "src_clr",
    "src_gpc",
    "src_updt",
    "ssl_",
];

/// Predefined ACLs.
const PREDEFINED: &[&str] = &[
    "TRUE",
    "FALSE",
    "LOCALHOST",
    "HTTP",
    "HTTP_1.0",
    "HTTP_1.1",
    "HTTP_2.0",
    "HTTP_CONTENT",
    "HTTP_URL_ABS",
    "HTTP_URL_SLASH",
    "HTTP_URL_STAR",
    "METH_CONNECT",
    "METH_DELETE",
    "METH_GET",
    "METH_HEAD",
    "METH_OPTIONS",
    "METH_POST",
    "METH_PUT",
    "METH_TRACE",
    "RDP_COOKIE",
    "REQ_CONTENT",
    "WAIT_END",
];

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

fn matches_family(name: &str, list: &[&str]) -> bool {
    list.iter().any(|f| {
        name == *f
            || (f.ends_with('_') && name.starts_with(f))
            || name
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('_') || rest.starts_with('.'))
    })
}

/// `acl <name> <criterion> [flags] [operator] <value> ...`.
pub(crate) fn p_acl(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    if let Section::Defaults(d) = &p.section {
        if d.name.is_none() {
            return Err(p.err(
                l.no,
                &l.kw,
                "'acl' is not allowed in an anonymous 'defaults' section (only in named ones)",
            ));
        }
    }
    let name = p.arg(l, 0, "<name> <criterion> [flags] [operator] <value> ...")?;
    if !name_ok(&name.text) {
        return Err(p.err(
            l.no,
            name,
            format!(
                "invalid ACL name '{}': use letters, digits, '-', '_', '.' and ':'",
                name.text
            ),
        ));
    }
    p.arg(l, 1, "<name> <criterion> [flags] [operator] <value> ...")?;
    let test = parse_test(p, l, &l.args[1..], "acl")?;
    let (acls, index) = match &mut p.section {
        Section::Defaults(d) => (&mut d.acls, &mut d.acl_index),
        Section::Proxy(px) => (&mut px.acls, &mut px.acl_index),
        _ => return Err(p.internal(l, "acl out of a proxy")),
    };
    match index.get(&name.text).and_then(|&i| acls.get_mut(i)) {
        Some(a) => a.tests.push(test),
        None => {
            index.insert(name.text.clone(), acls.len());
            acls.push(Acl {
                name: name.text.clone(),
                tests: vec![test],
            });
        }
    }
    Ok(())
}

/// One ACL test: `<criterion> [flags] [operator] <value> ...` in `words`.
fn parse_test(
    p: &mut Parser<'_>,
    l: &Line,
    words: &[Token],
    ctx: &str,
) -> Result<AclTest, ConfigError> {
    let Some(crit) = words.first() else {
        return Err(p.err(
            l.no,
            &l.kw,
            format!("missing fetch method in {ctx} expression"),
        ));
    };
    let (fetch, kind) = fetch_of(p, l, crit)?;
    let mut method = default_method(kind);
    let mut icase = false;
    let mut file_args: Vec<&Token> = Vec::new();
    let mut i = 1;
    // Flags.
    while let Some(t) = words.get(i) {
        if !t.text.starts_with('-') || t.text.len() < 2 || t.text.as_bytes()[1].is_ascii_digit() {
            break;
        }
        i += 1;
        let value = |i: usize| {
            words
                .get(i)
                .ok_or_else(|| p.err(l.no, t, format!("ACL flag '{}' expects a value", t.text)))
        };
        match t.text.as_str() {
            "--" => break,
            "-i" => icase = true,
            "-n" => {}
            "-u" => {
                let v = value(i)?;
                parse_int(&v.text, 0, i64::from(i32::MAX))
                    .map_err(|m| p.err(l.no, v, format!("invalid ACL unique id: {m}")))?;
                i += 1;
            }
            "-m" => {
                let v = value(i)?;
                method = match_method(p, l, v, kind, &crit.text)?;
                i += 1;
            }
            "-M" => {
                return Err(p.not_yet_err(l.no, t, "ACL flag -M (map files)", ""));
            }
            "-f" => {
                file_args.push(value(i)?);
                i += 1;
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    t,
                    format!("unknown ACL flag '{}'", t.text),
                    suggest(&t.text, ["-i", "-f", "-m", "-n", "-M", "-u", "--"]),
                ))
            }
        }
    }
    let takes_patterns = !matches!(method, Match::Bool | Match::Found);
    let mut patterns = Vec::new();
    let mut files = Vec::new();
    for v in file_args {
        let path = PathBuf::from(&v.text);
        let text = p.sys.read(&path).map_err(|e| {
            p.err(
                l.no,
                v,
                format!("failed to open pattern file '{}': {e}", path.display()),
            )
        })?;
        for (n, raw) in text.split('\n').enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let pat = raw
                .trim_start_matches([' ', '\t'])
                .trim_end_matches(['\r', ' ', '\t']);
            if pat.is_empty() || !takes_patterns {
                continue;
            }
            let col = raw.len() - raw.trim_start_matches([' ', '\t']).len() + 1;
            let pat = parse_pattern(p, kind, method, icase, None, pat).map_err(|m| {
                ConfigError::Invalid {
                    file: path.clone(),
                    line: n + 1,
                    col,
                    msg: format!(
                        "invalid pattern in file loaded by {}:{}: {m}",
                        p.file.display(),
                        l.no
                    ),
                    near: near(pat),
                    hint: None,
                }
            })?;
            patterns.push(pat);
            if patterns.len() > MAX_PATTERNS {
                return Err(p.err(
                    l.no,
                    v,
                    format!("too many patterns (at most {MAX_PATTERNS})"),
                ));
            }
        }
        files.push(path);
    }
    // Values.
    let int_like = matches!(method, Match::Int | Match::Len);
    let mut op: Option<&str> = None;
    for t in &words[i.min(words.len())..] {
        if int_like && matches!(t.text.as_str(), "eq" | "ge" | "gt" | "le" | "lt") {
            op = Some(t.text.as_str());
            continue;
        }
        if !takes_patterns {
            return Err(p.err(l.no, t, format!("'{}' takes no pattern here", crit.text)));
        }
        let pat = parse_pattern(p, kind, method, icase, op, &t.text)
            .map_err(|m| p.err(l.no, t, format!("invalid pattern for '{}': {m}", crit.text)))?;
        patterns.push(pat);
        if patterns.len() > MAX_PATTERNS {
            return Err(p.err(
                l.no,
                t,
                format!("too many patterns (at most {MAX_PATTERNS})"),
            ));
        }
    }
    if patterns.is_empty() && takes_patterns {
        p.warn(
            l.no,
            format_args!(
                "'{}' has no pattern to match against, so this ACL will never match",
                crit.text
            ),
        );
    }
    Ok(AclTest {
        fetch,
        method,
        icase,
        patterns,
        files,
        origin: p.origin(l.no),
    })
}

fn default_method(kind: Kind) -> Match {
    match kind {
        Kind::Ip => Match::Ip,
        Kind::Int | Kind::Ver => Match::Int,
        Kind::Bool => Match::Bool,
        Kind::Str => Match::Str,
        Kind::Bin => Match::Bin,
    }
}

/// `-m <method>`: the methods HAProxy allows for the fetch's sample type.
fn match_method(
    p: &Parser<'_>,
    l: &Line,
    v: &Token,
    kind: Kind,
    crit: &str,
) -> Result<Match, ConfigError> {
    let m = match v.text.as_str() {
        "found" => Match::Found,
        "bool" => Match::Bool,
        "int" => Match::Int,
        "ip" => Match::Ip,
        "bin" => Match::Bin,
        "len" => Match::Len,
        "str" => Match::Str,
        "sub" => Match::Sub,
        "reg" => Match::Reg,
        "beg" => Match::Beg,
        "end" => Match::End,
        "dir" => Match::Dir,
        "dom" => Match::Dom,
        _ => {
            return Err(p.err_hint(
                l.no,
                v,
                format!("unknown ACL matching method '{}'", v.text),
                suggest(
                    &v.text,
                    [
                        "found", "bool", "int", "ip", "bin", "len", "str", "sub", "reg", "beg",
                        "end", "dir", "dom",
                    ],
                ),
            ))
        }
    };
    let textual = matches!(
        m,
        Match::Str
            | Match::Beg
            | Match::End
            | Match::Sub
            | Match::Reg
            | Match::Dir
            | Match::Dom
            | Match::Len
            | Match::Bin
    );
    let ok = m == Match::Found
        || m == default_method(kind)
        || (matches!(kind, Kind::Str | Kind::Bin) && textual);
    if !ok {
        return Err(p.err(
            l.no,
            v,
            format!(
                "matching method '-m {}' is not compatible with the sample of '{crit}'",
                v.text
            ),
        ));
    }
    Ok(m)
}

fn fetch_of(p: &Parser<'_>, l: &Line, crit: &Token) -> Result<(Fetch, Kind), ConfigError> {
    let base = crit.text.split(['(', ',']).next().unwrap_or_default();
    if let Some((_, f, k)) = FETCHES.iter().find(|(n, _, _)| *n == base) {
        if crit.text != base {
            return Err(p.not_yet_err(
                l.no,
                crit,
                &crit.text,
                &format!(" ('{base}' is, without arguments or converters)"),
            ));
        }
        return Ok((*f, *k));
    }
    if ARG_FETCHES.contains(&base) {
        return payload_fetch(p, l, crit, base).map(|f| (f, Kind::Bin));
    }
    if matches_family(base, HTTP_FETCHES) {
        return Err(p.http_err(l.no, crit, base));
    }
    if base.starts_with("ssl_") {
        return Err(p.tls_err(l.no, crit, base));
    }
    let offered = " in ACLs (offered: src, dst, src_port, dst_port, req.len, req.payload, \
                   req.payload_lv, req.ssl_hello_type, req.ssl_ver, req.ssl_sni)";
    if matches_family(base, CONTENT_FETCHES) || matches_family(base, OTHER_FETCHES) {
        return Err(p.not_yet_err(l.no, crit, base, offered));
    }
    let hint = suggest(
        base,
        FETCHES
            .iter()
            .map(|(n, _, _)| *n)
            .chain(ARG_FETCHES.iter().copied()),
    );
    Err(with_hint(
        p.err(
            l.no,
            crit,
            format!("unknown fetch method '{base}' in ACL expression"),
        ),
        hint,
    ))
}

/// `req.payload(off,len)` and `req.payload_lv(off1,len1[,off2])`.
fn payload_fetch(p: &Parser<'_>, l: &Line, crit: &Token, base: &str) -> Result<Fetch, ConfigError> {
    let lv = base.ends_with("_lv");
    let usage = if lv {
        format!("'{base}(<offset1>,<length>[,<offset2>])'")
    } else {
        format!("'{base}(<offset>,<length>)'")
    };
    let bad = |m: String| p.err(l.no, crit, format!("{m}: expected {usage}"));
    let rest = &crit.text[base.len()..];
    let Some(inner) = rest.strip_prefix('(') else {
        return Err(bad(format!("'{base}' expects arguments")));
    };
    let Some((inner, after)) = inner.split_once(')') else {
        return Err(bad(format!("missing ')' after '{base}' arguments")));
    };
    if !after.is_empty() {
        return Err(p.not_yet_err(
            l.no,
            crit,
            &format!("converter '{}'", after.trim_start_matches(',')),
            &format!(" ('{base}(...)' is, without converters)"),
        ));
    }
    let args: Vec<&str> = inner.split(',').map(str::trim).collect();
    let num = |s: &str, what: &str| -> Result<u32, ConfigError> {
        parse_int(s, 0, i64::from(i32::MAX))
            .map(|n| n as u32)
            .map_err(|_| bad(format!("invalid {what} '{}'", near(s))))
    };
    if !lv {
        if args.len() != 2 {
            return Err(bad(format!("'{base}' takes 2 arguments")));
        }
        return Ok(Fetch::ReqPayload {
            off: num(args[0], "offset")?,
            len: num(args[1], "length")?,
        });
    }
    if !(2..=3).contains(&args.len()) {
        return Err(bad(format!("'{base}' takes 2 or 3 arguments")));
    }
    let off = num(args[0], "offset")?;
    let size = num(args[1], "length")?;
    if !(1..=4).contains(&size) {
        return Err(bad(format!(
            "the length field of '{base}' is 1 to 4 bytes, not {size}"
        )));
    }
    let start = match args.get(2) {
        None => LvStart::AfterLength,
        Some(a) if a.starts_with(['+', '-']) => {
            let n = parse_int(a, -i64::from(i32::MAX), i64::from(i32::MAX))
                .map_err(|_| bad(format!("invalid offset '{}'", near(a))))?;
            LvStart::Shift(n as i32)
        }
        Some(a) => LvStart::At(num(a, "offset")?),
    };
    Ok(Fetch::ReqPayloadLv {
        off,
        size: size as u8,
        start,
    })
}

/// One pattern, parsed as the matching method reads it.
fn parse_pattern(
    p: &Parser<'_>,
    kind: Kind,
    method: Match,
    icase: bool,
    op: Option<&str>,
    s: &str,
) -> Result<Pattern, String> {
    match method {
        Match::Ip => parse_net(p, s).map(Pattern::Net),
        Match::Int if kind == Kind::Ver => parse_ver_pattern(op, s),
        Match::Int | Match::Len => parse_int_pattern(op, s),
        Match::Bool | Match::Found => Err("takes no pattern".into()),
        Match::Bin => parse_hex(s).map(Pattern::Bytes),
        Match::Reg => regex::bytes::RegexBuilder::new(s)
            .case_insensitive(icase)
            .build()
            .map(|r| Pattern::Regex(AclRegex(r)))
            .map_err(|e| format!("invalid regular expression '{}': {e}", near(s))),
        Match::Str | Match::Beg | Match::End | Match::Sub | Match::Dir | Match::Dom => {
            let b = s.as_bytes();
            Ok(Pattern::Bytes(if icase {
                b.to_ascii_lowercase()
            } else {
                b.to_vec()
            }))
        }
    }
}

fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{}' is not an even number of hexadecimal digits",
            near(s)
        ));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// `3.1`, `3.0:3.3`, `ge 3.3`: TLS versions as `major << 16 | minor`.
fn parse_ver_pattern(op: Option<&str>, s: &str) -> Result<Pattern, String> {
    let ver = |t: &str| -> Result<String, String> {
        let (maj, min) = t.split_once('.').unwrap_or((t, "0"));
        let maj: i64 = maj
            .parse()
            .map_err(|_| format!("'{}' is not a version (major.minor)", near(s)))?;
        let min: i64 = min
            .parse()
            .map_err(|_| format!("'{}' is not a version (major.minor)", near(s)))?;
        if !(0..=0xffff).contains(&maj) || !(0..=0xffff).contains(&min) {
            return Err(format!("'{}' is not a version (major.minor)", near(s)));
        }
        Ok(((maj << 16) | min).to_string())
    };
    let as_ints = match s.split_once(':') {
        Some((a, b)) => {
            let a = if a.is_empty() { String::new() } else { ver(a)? };
            let b = if b.is_empty() { String::new() } else { ver(b)? };
            format!("{a}:{b}")
        }
        None => ver(s)?,
    };
    parse_int_pattern(op, &as_ints).map_err(|_| format!("'{}' is not a version range", near(s)))
}

fn parse_net(p: &Parser<'_>, s: &str) -> Result<IpNet, String> {
    let bad = || format!("'{}' is not a valid IPv4 or IPv6 address", near(s));
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    if let Ok(v6) = addr.parse::<Ipv6Addr>() {
        let prefix = match mask {
            None => 128,
            Some(m) => m
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= 128 && !m.starts_with('+'))
                .ok_or_else(bad)?,
        };
        return Ok(IpNet {
            addr: IpAddr::V6(v6),
            prefix,
        });
    }
    let v4 = match parse_ipv4_loose(addr) {
        Some(a) => a,
        None if addr.chars().any(|c| c.is_ascii_alphabetic())
            && addr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) =>
        {
            // A host name: its IPv4 address, as HAProxy (IPv6 never).
            let ips = p.sys.resolve(addr).map_err(|_| bad())?;
            match ips.into_iter().find_map(|ip| match ip {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }) {
                Some(a) => a,
                None => return Err(bad()),
            }
        }
        None => return Err(bad()),
    };
    let prefix = match mask {
        None => 32,
        Some(m) if m.contains('.') => {
            let mask = m.parse::<Ipv4Addr>().map_err(|_| bad())?;
            let bits = u32::from(mask);
            let ones = bits.leading_ones();
            if bits.checked_shl(ones).unwrap_or(0) != 0 {
                return Err(format!("'{}' is not a contiguous netmask", near(m)));
            }
            ones as u8
        }
        Some(m) => m
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= 32 && !m.starts_with('+'))
            .ok_or_else(bad)?,
    };
    Ok(IpNet {
        addr: IpAddr::V4(v4),
        prefix,
    })
}

fn parse_int_pattern(op: Option<&str>, s: &str) -> Result<Pattern, String> {
    let num = |t: &str| -> Result<i64, String> {
        parse_int(t, i64::MIN / 2, i64::MAX / 2)
            .map_err(|_| format!("'{}' is not an integer", near(s)))
    };
    if let Some((a, b)) = s.split_once(':') {
        if op.is_some_and(|o| o != "eq") {
            return Err(format!(
                "operator '{}' cannot apply to the range '{}'",
                op.unwrap_or_default(),
                near(s)
            ));
        }
        let lo = if a.is_empty() { i64::MIN / 2 } else { num(a)? };
        let hi = if b.is_empty() { i64::MAX / 2 } else { num(b)? };
        if a.is_empty() && b.is_empty() {
            return Err(format!("'{}' is not an integer range", near(s)));
        }
        return Ok(Pattern::Int { lo, hi });
    }
    let n = num(s)?;
    let (lo, hi) = match op.unwrap_or("eq") {
        "ge" => (n, i64::MAX / 2),
        "gt" => (n + 1, i64::MAX / 2),
        "le" => (i64::MIN / 2, n),
        "lt" => (i64::MIN / 2, n - 1),
        _ => (n, n),
    };
    Ok(Pattern::Int { lo, hi })
}

/// `{if | unless} <condition>` from argument `start` to the end of the line.
pub(crate) fn parse_condition(
    p: &mut Parser<'_>,
    l: &Line,
    start: usize,
    what: &str,
) -> Result<Condition, ConfigError> {
    let Some(kw) = l.args.get(start) else {
        return Err(p.internal(l, "no condition"));
    };
    let unless = match kw.text.as_str() {
        "if" => false,
        "unless" => true,
        _ => {
            return Err(p.err_hint(
                l.no,
                kw,
                format!(
                    "unexpected '{}' after '{what}': only 'if' or 'unless' followed by a condition may follow",
                    kw.text
                ),
                suggest(&kw.text, ["if", "unless"]),
            ))
        }
    };
    let words = &l.args[start + 1..];
    if words.is_empty() {
        return Err(p.err(l.no, kw, format!("'{}' expects a condition", kw.text)));
    }
    let mut any_of: Vec<Vec<CondTerm>> = vec![Vec::new()];
    let mut i = 0;
    let mut negate = false;
    while let Some(t) = words.get(i) {
        i += 1;
        if t.text == "or" || t.text == "||" {
            if negate || any_of.last().is_none_or(|v| v.is_empty()) {
                return Err(p.err(
                    l.no,
                    t,
                    format!("'{}' without a condition before it", t.text),
                ));
            }
            any_of.push(Vec::new());
            continue;
        }
        let mut word = t.text.as_str();
        while let Some(rest) = word.strip_prefix('!') {
            negate = !negate;
            word = rest;
        }
        if word.is_empty() {
            continue;
        }
        let term = if word == "{" {
            let close = words[i..]
                .iter()
                .position(|w| w.text == "}")
                .ok_or_else(|| p.err(l.no, t, "missing closing '}' in condition"))?;
            let inner = &words[i..i + close];
            if inner.is_empty() {
                return Err(p.err(l.no, t, "missing fetch method in ACL expression '{ }'"));
            }
            if let Some(nested) = inner.iter().find(|w| w.text == "{") {
                return Err(p.err(l.no, nested, "'{' inside an inline ACL"));
            }
            let test = parse_test(p, l, inner, "inline ACL")?;
            i += close + 1;
            CondTerm {
                negate,
                name: None,
                tests: Arc::new(vec![test]),
            }
        } else {
            named_term(p, l, t, word, negate)?
        };
        negate = false;
        if let Some(last) = any_of.last_mut() {
            last.push(term);
        }
    }
    if negate || any_of.last().is_none_or(|v| v.is_empty()) {
        let last = words.last().unwrap_or(kw);
        return Err(p.err(l.no, last, "the condition ends without an ACL after it"));
    }
    Ok(Condition { unless, any_of })
}

/// A term naming an ACL: declared in this section (its tests are filled in
/// when the section ends) or predefined.
fn named_term(
    p: &Parser<'_>,
    l: &Line,
    t: &Token,
    word: &str,
    negate: bool,
) -> Result<CondTerm, ConfigError> {
    let (declared, index): (&[Acl], _) = match &p.section {
        Section::Defaults(d) => (&d.acls, Some(&d.acl_index)),
        Section::Proxy(px) => (&px.acls, Some(&px.acl_index)),
        _ => (&[], None),
    };
    if index.is_some_and(|i| i.contains_key(word)) {
        return Ok(CondTerm {
            negate,
            name: Some(word.to_string()),
            tests: Arc::default(),
        });
    }
    let origin = p.origin(l.no);
    let test = |fetch, patterns| AclTest {
        fetch,
        method: if fetch == Fetch::Src {
            Match::Ip
        } else {
            Match::Bool
        },
        icase: false,
        patterns,
        files: Vec::new(),
        origin: origin.clone(),
    };
    let tests = match word {
        "TRUE" => vec![test(Fetch::AlwaysTrue, Vec::new())],
        "FALSE" => vec![test(Fetch::AlwaysFalse, Vec::new())],
        "LOCALHOST" => vec![test(
            Fetch::Src,
            vec![
                Pattern::Net(IpNet {
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                    prefix: 8,
                }),
                Pattern::Net(IpNet {
                    addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    prefix: 128,
                }),
            ],
        )],
        "REQ_CONTENT" => vec![AclTest {
            method: Match::Int,
            ..test(
                Fetch::ReqLen,
                vec![Pattern::Int {
                    lo: 1,
                    hi: i64::MAX / 2,
                }],
            )
        }],
        "WAIT_END" => vec![test(Fetch::WaitEnd, Vec::new())],
        "RDP_COOKIE" => {
            return Err(p.not_yet_err(l.no, t, &format!("predefined ACL '{word}'"), ""))
        }
        w if PREDEFINED.contains(&w) => {
            return Err(p.http_err(l.no, t, &format!("predefined ACL '{w}'")))
        }
        _ => {
            let hint = suggest(
                word,
                declared.iter().map(|a| a.name.as_str()).chain([
                    "TRUE",
                    "FALSE",
                    "LOCALHOST",
                    "REQ_CONTENT",
                    "WAIT_END",
                ]),
            );
            return Err(with_hint(
                p.err(
                    l.no,
                    t,
                    format!("no such ACL '{word}' (ACLs must be declared before they are used)"),
                ),
                hint,
            ));
        }
    };
    Ok(CondTerm {
        negate,
        name: Some(word.to_string()),
        tests: Arc::new(tests),
    })
}

/// The tests of every ACL of a section, shared.
fn shared(acls: &[Acl]) -> HashMap<&str, Arc<Vec<AclTest>>> {
    acls.iter()
        .map(|a| (a.name.as_str(), Arc::new(a.tests.clone())))
        .collect()
}

fn fill(cond: &mut Condition, acls: &HashMap<&str, Arc<Vec<AclTest>>>) {
    for term in cond.any_of.iter_mut().flatten() {
        if let Some(tests) = term.name.as_deref().and_then(|n| acls.get(n)) {
            term.tests = Arc::clone(tests);
        }
    }
}

/// Fills the tests of the ACLs the section's rules name.
pub(crate) fn resolve_proxy(px: &mut Proxy) {
    if px.pending.is_empty() {
        return;
    }
    let acls = shared(&px.acls);
    for pc in std::mem::take(&mut px.pending) {
        let cond = match pc {
            PendingCond::UseBackend(i) => px.use_backends.get_mut(i).and_then(|u| u.cond.as_mut()),
            PendingCond::UseServer(i) => px.use_servers.get_mut(i).map(|u| &mut u.1),
            PendingCond::Persist(i) => px.persist_rules.get_mut(i).map(|r| &mut r.cond),
            PendingCond::TcpRequest(i) => px.tcp_rules.get_mut(i).and_then(|r| r.cond.as_mut()),
            PendingCond::TcpContent(i) => px.content_rules.get_mut(i).and_then(|r| r.cond.as_mut()),
            PendingCond::StatsAdmin => px.s.stats.admin.as_mut(),
        };
        if let Some(c) = cond {
            fill(c, &acls);
        }
    }
}

pub(crate) fn resolve_defaults(d: &mut Defaults) {
    if d.pending.is_empty() {
        return;
    }
    let acls = shared(&d.acls);
    for pc in std::mem::take(&mut d.pending) {
        if let PendingCond::TcpRequest(i) = pc {
            if let Some(c) = d.tcp_rules.get_mut(i).and_then(|r| r.cond.as_mut()) {
                fill(c, &acls);
            }
        }
    }
}

/// `tcp-request connection|content <action> [if|unless <cond>]`,
/// `tcp-request inspect-delay <time>`.
pub(crate) fn p_tcp_request(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let what = p.arg(
        l,
        0,
        "'connection', 'content', 'session' or 'inspect-delay' as an argument",
    )?;
    let content = match what.text.as_str() {
        "connection" => false,
        "content" => true,
        "inspect-delay" => return p_inspect_delay(p, l),
        "session" => {
            return Err(p.not_yet_err(
                l.no,
                what,
                "tcp-request session",
                " (only 'tcp-request connection', 'content' and 'inspect-delay' are)",
            ))
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                what,
                format!("unknown 'tcp-request' rule set '{}'", what.text),
                suggest(
                    &what.text,
                    ["connection", "content", "session", "inspect-delay"],
                ),
            ))
        }
    };
    let set = format!("tcp-request {}", what.text);
    let caps = p.caps();
    if caps == DEF {
        if content {
            return Err(p.not_yet_err(
                l.no,
                what,
                "tcp-request content in a 'defaults' section",
                " (in 'frontend', 'listen' and 'backend' sections it is)",
            ));
        }
        if let Section::Defaults(d) = &p.section {
            if d.name.is_none() {
                return Err(p.err(
                    l.no,
                    &l.kw,
                    "'tcp-request connection' is not allowed in an anonymous 'defaults' section (only in named ones)",
                ));
            }
        }
    } else if caps & FE == 0 && !content {
        return Err(p.err(
            l.no,
            what,
            "'tcp-request connection' is not allowed in a 'backend' section (only in 'defaults', 'frontend', 'listen')",
        ));
    }
    let act = p.arg(
        l,
        1,
        "an action ('accept', 'reject', 'expect-proxy layer4'...)",
    )?;
    let offered = if content {
        " (only 'accept' and 'reject' are)"
    } else {
        " (only 'accept', 'reject' and 'expect-proxy layer4' are)"
    };
    let (action, next) = match act.text.as_str() {
        "accept" => (TcpRequestAction::Accept, 2),
        "reject" => (TcpRequestAction::Reject, 2),
        "expect-proxy" if !content => {
            let v = p.arg(l, 2, "'layer4' after 'expect-proxy'")?;
            if v.text != "layer4" {
                return Err(p.err(l.no, v, "'expect-proxy' expects 'layer4'"));
            }
            (TcpRequestAction::ExpectProxy, 3)
        }
        a if a.starts_with("sc-")
            || a.starts_with("track-sc")
            || a.starts_with("set-")
            || a.starts_with("unset-var")
            || a.starts_with("do-resolve")
            || a.starts_with("lua.")
            || matches!(
                a,
                "silent-drop"
                    | "expect-netscaler-cip"
                    | "capture"
                    | "switch-mode"
                    | "use-service"
                    | "send-spoe-group"
                    | "attach-srv"
            ) =>
        {
            return Err(p.not_yet_err(l.no, act, &format!("{set} {}", act.text), offered))
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                act,
                format!("unknown '{set}' action '{}'", act.text),
                suggest(&act.text, ["accept", "reject", "expect-proxy"]),
            ))
        }
    };
    let cond = match l.args.get(next) {
        None => None,
        Some(_) => Some(parse_condition(p, l, next, &set)?),
    };
    if !content {
        // HAProxy's words: the fetch runs before any byte was read.
        let inline = cond.iter().flat_map(|c| c.any_of.iter().flatten());
        let late = inline
            .flat_map(|t| t.tests.iter())
            .find(|t| t.fetch.needs_content())
            .map(|t| fetch_name(t.fetch));
        if let Some(name) = late {
            p.warn(
                l.no,
                format_args!(
                    "anonymous acl will never match in 'tcp-request connection' because it uses \
                     keyword '{name}' which is incompatible with 'frontend tcp-request connection rule'"
                ),
            );
        }
    }
    let rule = TcpRequestRule {
        action,
        cond,
        origin: p.origin(l.no),
    };
    match &mut p.section {
        Section::Defaults(d) => {
            d.pending.push(PendingCond::TcpRequest(d.tcp_rules.len()));
            d.tcp_rules.push(rule);
        }
        Section::Proxy(px) if content => {
            px.pending
                .push(PendingCond::TcpContent(px.content_rules.len()));
            px.content_rules.push(rule);
        }
        Section::Proxy(px) => {
            px.pending.push(PendingCond::TcpRequest(px.tcp_rules.len()));
            px.tcp_rules.push(rule);
        }
        _ => return Err(p.internal(l, "tcp-request out of a proxy")),
    }
    Ok(())
}

/// `tcp-request inspect-delay <time>` (defaults, frontend, listen, backend).
fn p_inspect_delay(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    if let Section::Defaults(d) = &p.section {
        if d.name.is_none() {
            return Err(p.err(
                l.no,
                &l.kw,
                "tcp-request inspect-delay is not allowed in anonymous 'defaults' sections",
            ));
        }
    }
    let v = p.arg(l, 1, "a time after 'inspect-delay' (e.g. 5s)")?;
    p.no_more(l, 2, "tcp-request inspect-delay")?;
    let d = crate::config::values::parse_time(&v.text)
        .map_err(|m| p.err(l.no, v, format!("invalid 'tcp-request inspect-delay': {m}")))?;
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.inspect_delay = (!d.is_zero()).then_some(Located { value: d, origin });
    Ok(())
}

/// The name HAProxy's messages use for a fetch.
pub(crate) fn fetch_name(f: Fetch) -> &'static str {
    match f {
        Fetch::Src => "src",
        Fetch::Dst => "dst",
        Fetch::SrcPort => "src_port",
        Fetch::DstPort => "dst_port",
        Fetch::AlwaysTrue => "always_true",
        Fetch::AlwaysFalse => "always_false",
        Fetch::ReqLen => "req.len",
        Fetch::ReqPayload { .. } => "req.payload",
        Fetch::ReqPayloadLv { .. } => "req.payload_lv",
        Fetch::ReqSslHelloType => "req.ssl_hello_type",
        Fetch::ReqSslVer => "req.ssl_ver",
        Fetch::ReqSslSni => "req.ssl_sni",
        Fetch::WaitEnd => "wait_end",
    }
}
