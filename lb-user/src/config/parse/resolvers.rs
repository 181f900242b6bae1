//! `resolvers <name>` sections: the name servers lb asks at run time for the
//! addresses of servers that name one (`server ... resolvers <name>`,
//! `server-template`), with HAProxy's timers.
use std::net::SocketAddr;
use std::path::Path;

use super::*;

/// What a keyword of a `resolvers` section does.
#[derive(Clone, Copy)]
pub(super) enum ResAct {
    Run(fn(&mut Parser<'_>, &Line, &mut Resolvers) -> Result<(), ConfigError>),
    NotYet,
}

pub(super) const RESOLVERS_KWS: &[Kw<ResAct>] = &[
    kw("nameserver", ALL, ResAct::Run(r_nameserver)),
    kw("parse-resolv-conf", ALL, ResAct::Run(r_parse_resolv_conf)),
    kw("resolve_retries", ALL, ResAct::Run(r_retries)),
    kw("timeout", ALL, ResAct::Run(r_timeout)),
    kw("hold", ALL, ResAct::Run(r_hold)),
    kw("accepted_payload_size", ALL, ResAct::Run(r_payload)),
    kw("resolution_pool_size", ALL, ResAct::Run(r_ignored)),
    kw("ring", ALL, ResAct::NotYet),
];

pub(super) fn resolvers_line(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let Some(k) = lookup(RESOLVERS_KWS, &l.kw.text) else {
        let hint = suggest(&l.kw.text, RESOLVERS_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(
            l.no,
            &l.kw,
            format!("unknown keyword '{}' in 'resolvers' section", l.kw.text),
            hint,
        ));
    };
    let mut r = match std::mem::replace(&mut p.section, Section::None) {
        Section::Resolvers(r) => r,
        other => {
            p.section = other;
            return Err(p.internal(l, "resolvers line out of its section"));
        }
    };
    let out = match k.act {
        ResAct::Run(f) => f(p, l, &mut r),
        ResAct::NotYet => Err(p.not_yet_err(l.no, &l.kw, &l.kw.text, "")),
    };
    p.section = Section::Resolvers(r);
    out
}

fn r_nameserver(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    let name = p.arg(l, 0, "<name> <address>[:port]")?;
    let a = p.arg(l, 1, "<name> <address>[:port]")?;
    p.no_more(l, 2, "nameserver")?;
    if r.nameservers.iter().any(|(n, _)| *n == name.text) {
        return Err(p.err(
            l.no,
            name,
            format!(
                "resolvers '{}': nameserver '{}' declared twice",
                r.name, name.text
            ),
        ));
    }
    let text = p.expand(&a.text);
    let plain = text
        .strip_prefix("udp@")
        .or_else(|| text.strip_prefix("ipv4@"))
        .or_else(|| text.strip_prefix("ipv6@"))
        .unwrap_or(&text);
    if plain.contains('@') {
        return Err(p.not_yet_err(
            l.no,
            a,
            &format!("nameserver address '{text}' (only UDP name servers)"),
            "",
        ));
    }
    let addr = nameserver_addr(plain).ok_or_else(|| {
        p.err(
            l.no,
            a,
            format!("'nameserver {}': invalid address '{text}'", name.text),
        )
    })?;
    r.nameservers.push((name.text.clone(), addr));
    Ok(())
}

/// `IP`, `IP:port`, `[v6]:port` (port 53 unless given).
fn nameserver_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, port) = s.rsplit_once(':')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

fn r_parse_resolv_conf(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    p.no_more(l, 0, "parse-resolv-conf")?;
    let text = p
        .sys
        .read(Path::new("/etc/resolv.conf"))
        .map_err(|e| p.err(l.no, &l.kw, format!("could not read /etc/resolv.conf: {e}")))?;
    for (i, line) in text.lines().enumerate() {
        let mut w = line.split_whitespace();
        if w.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = w.next().and_then(nameserver_addr) else {
            p.warn(
                l.no,
                format!(
                    "parse-resolv-conf: /etc/resolv.conf line {}: no address, skipped",
                    i + 1
                ),
            );
            continue;
        };
        let name = format!("resolvconf-{}", r.nameservers.len() + 1);
        r.nameservers.push((name, addr));
    }
    Ok(())
}

fn r_retries(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<nb> as an argument")?;
    p.no_more(l, 1, "resolve_retries")?;
    r.resolve_retries = parse_u32(&v.text, 1)
        .map_err(|m| p.err(l.no, v, format!("invalid 'resolve_retries': {m}")))?;
    Ok(())
}

fn r_timeout(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    let what = p.arg(l, 0, "'resolve' or 'retry', then a time")?;
    let v = p.arg(l, 1, "a time")?;
    p.no_more(l, 2, "timeout")?;
    let d = parse_time(&v.text)
        .map_err(|m| p.err(l.no, v, format!("invalid 'timeout {}': {m}", what.text)))?;
    match what.text.as_str() {
        "resolve" => r.timeout_resolve = d,
        "retry" => r.timeout_retry = d,
        _ => {
            return Err(p.err_hint(
                l.no,
                what,
                format!(
                    "'timeout' in a resolvers section expects 'resolve' or 'retry', not '{}'",
                    what.text
                ),
                suggest(&what.text, ["resolve", "retry"]),
            ))
        }
    }
    Ok(())
}

fn r_hold(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    let what = p.arg(l, 0, "a status, then a time")?;
    let v = p.arg(l, 1, "a time")?;
    p.no_more(l, 2, "hold")?;
    let d = parse_time(&v.text)
        .map_err(|m| p.err(l.no, v, format!("invalid 'hold {}': {m}", what.text)))?;
    let slot = match what.text.as_str() {
        "nx" => &mut r.hold.nx,
        "refused" => &mut r.hold.refused,
        "timeout" => &mut r.hold.timeout,
        "other" => &mut r.hold.other,
        "valid" => &mut r.hold.valid,
        "obsolete" => &mut r.hold.obsolete,
        _ => {
            let all = ["nx", "refused", "timeout", "other", "valid", "obsolete"];
            return Err(p.err_hint(
                l.no,
                what,
                format!(
                    "'hold' expects a status ({}), not '{}'",
                    all.join(", "),
                    what.text
                ),
                suggest(&what.text, all),
            ));
        }
    };
    *slot = d;
    Ok(())
}

fn r_payload(p: &mut Parser<'_>, l: &Line, r: &mut Resolvers) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<nb> as an argument")?;
    p.no_more(l, 1, "accepted_payload_size")?;
    let n = parse_uint(&v.text, 512, 65535).map_err(|m| {
        p.err(
            l.no,
            v,
            format!("invalid 'accepted_payload_size': {m} (512 to 65535)"),
        )
    })?;
    r.payload_size = n as u16;
    Ok(())
}

fn r_ignored(p: &mut Parser<'_>, l: &Line, _: &mut Resolvers) -> Result<(), ConfigError> {
    p.warn(l.no, format!("'{}' is deprecated and ignored", l.kw.text));
    Ok(())
}
