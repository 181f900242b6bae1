//! `bind` lines: the table of bind parameters and its handler.
use std::net::{IpAddr, Ipv6Addr};

use super::*;
use crate::config::lexer::Token;

#[derive(Clone, Copy)]
pub(super) enum BindAct {
    V6Only,
    V4V6,
    Name,
    Id,
    Backlog,
    Maxconn,
    Interface,
    AcceptProxy,
    /// A socket setting recorded in `other`, taking no value.
    Other0,
    /// A socket setting recorded in `other`, taking one value.
    Other1,
    /// UNIX-socket (or stats-socket) setting: no effect on TCP sockets, as in
    /// HAProxy; takes one value.
    Unix1,
    Tls0,
    Tls1,
    NotYet,
}

pub(super) const BIND_KWS: &[Kw<BindAct>] = &[
    kw("v6only", ALL, BindAct::V6Only),
    kw("v4v6", ALL, BindAct::V4V6),
    kw("name", ALL, BindAct::Name),
    kw("id", ALL, BindAct::Id),
    kw("backlog", ALL, BindAct::Backlog),
    kw("maxconn", ALL, BindAct::Maxconn),
    kw("interface", ALL, BindAct::Interface),
    kw("accept-proxy", ALL, BindAct::AcceptProxy),
    kw("tfo", ALL, BindAct::Other0),
    kw("defer-accept", ALL, BindAct::Other0),
    kw("transparent", ALL, BindAct::Other0),
    kw("mss", ALL, BindAct::Other1),
    kw("nice", ALL, BindAct::Other1),
    kw("tcp-ut", ALL, BindAct::Other1),
    kw("namespace", ALL, BindAct::Other1),
    kw("process", ALL, BindAct::Other1),
    kw("thread", ALL, BindAct::Other1),
    kw("shards", ALL, BindAct::Other1),
    kw("proto", ALL, BindAct::Other1),
    kw("accept-netscaler-cip", ALL, BindAct::Other1),
    kw("mode", ALL, BindAct::Unix1),
    kw("uid", ALL, BindAct::Unix1),
    kw("gid", ALL, BindAct::Unix1),
    kw("user", ALL, BindAct::Unix1),
    kw("group", ALL, BindAct::Unix1),
    kw("level", ALL, BindAct::Unix1),
    kw("severity-output", ALL, BindAct::Unix1),
    kw("expose-fd", ALL, BindAct::Unix1),
    kw("ssl", ALL, BindAct::Tls0),
    kw("crt", ALL, BindAct::Tls1),
    kw("crt-list", ALL, BindAct::Tls1),
    kw("ca-file", ALL, BindAct::Tls1),
    kw("alpn", ALL, BindAct::Tls1),
    kw("npn", ALL, BindAct::Tls1),
    kw("verify", ALL, BindAct::Tls1),
    kw("ciphers", ALL, BindAct::Tls1),
    kw("ciphersuites", ALL, BindAct::Tls1),
    kw("curves", ALL, BindAct::Tls1),
    kw("ecdhe", ALL, BindAct::Tls1),
    kw("crl-file", ALL, BindAct::Tls1),
    kw("ssl-min-ver", ALL, BindAct::Tls1),
    kw("ssl-max-ver", ALL, BindAct::Tls1),
    kw("strict-sni", ALL, BindAct::Tls0),
    kw("allow-0rtt", ALL, BindAct::Tls0),
    kw("prefer-client-ciphers", ALL, BindAct::Tls0),
    kw("generate-certificates", ALL, BindAct::Tls0),
    kw("no-ca-names", ALL, BindAct::Tls0),
    kw("no-tls-tickets", ALL, BindAct::Tls0),
    kw("no-sslv3", ALL, BindAct::Tls0),
    kw("no-tlsv1*", ALL, BindAct::Tls0),
    kw("force-*", ALL, BindAct::Tls0),
    kw("tls-ticket-keys", ALL, BindAct::Tls1),
    kw("ca-*", ALL, BindAct::Tls1),
    kw("crt-ignore-err", ALL, BindAct::Tls1),
    kw("quic-*", ALL, BindAct::NotYet),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SrvAct {
    Check,
    NoCheck,
    Weight,
    Inter,
    FastInter,
    DownInter,
    Rise,
    Fall,
    Disabled,
    Enabled,
    Backup,
    NoBackup,
    Maxconn,
    Minconn,
    Maxqueue,
    Id,
    Slowstart,
    Port,
    Addr,
    SendProxy,
    SendProxyV2,
    NoSendProxy,
    NoSendProxyV2,
    CheckSendProxy,
    OnMarkedDown,
    OnMarkedUp,
    OnError,
    ErrorLimit,
    Observe,
    AgentCheck,
    NoAgentCheck,
    AgentPort,
    AgentInter,
    AgentSend,
    AgentAddr,
    InitAddr,
    /// A connection setting recorded in `other`, no value.
    Other0,
    /// Same, one value.
    Other1,
    /// `resolvers NAME`, `resolve-prefer ipv4|ipv6`.
    Resolvers,
    /// `check-ssl`, `no-check-ssl`, `no-verifyhost`.
    CheckTls0,
    /// `verify`, `ca-file`, `check-sni`, `verifyhost`.
    CheckTls1,
    Tls0,
    Tls1,
    NotYet,
    Http,
}

pub(crate) const SERVER_KWS: &[Kw<SrvAct>] = &[
    kw("check", ALL, SrvAct::Check),
    kw("no-check", ALL, SrvAct::NoCheck),
    kw("weight", ALL, SrvAct::Weight),
    kw("inter", ALL, SrvAct::Inter),
    kw("fastinter", ALL, SrvAct::FastInter),
    kw("downinter", ALL, SrvAct::DownInter),
    kw("rise", ALL, SrvAct::Rise),
    kw("fall", ALL, SrvAct::Fall),
    kw("disabled", ALL, SrvAct::Disabled),
    kw("enabled", ALL, SrvAct::Enabled),
    kw("backup", ALL, SrvAct::Backup),
    kw("no-backup", ALL, SrvAct::NoBackup),
    kw("maxconn", ALL, SrvAct::Maxconn),
    kw("minconn", ALL, SrvAct::Minconn),
    kw("maxqueue", ALL, SrvAct::Maxqueue),
    kw("id", ALL, SrvAct::Id),
    kw("slowstart", ALL, SrvAct::Slowstart),
    kw("port", ALL, SrvAct::Port),
    kw("addr", ALL, SrvAct::Addr),
    kw("send-proxy", ALL, SrvAct::SendProxy),
    kw("send-proxy-v2", ALL, SrvAct::SendProxyV2),
    kw("no-send-proxy", ALL, SrvAct::NoSendProxy),
    kw("no-send-proxy-v2", ALL, SrvAct::NoSendProxyV2),
    kw("check-send-proxy", ALL, SrvAct::CheckSendProxy),
    kw("on-marked-down", ALL, SrvAct::OnMarkedDown),
    kw("on-marked-up", ALL, SrvAct::OnMarkedUp),
    kw("on-error", ALL, SrvAct::OnError),
    kw("error-limit", ALL, SrvAct::ErrorLimit),
    kw("observe", ALL, SrvAct::Observe),
    kw("agent-check", ALL, SrvAct::AgentCheck),
    kw("no-agent-check", ALL, SrvAct::NoAgentCheck),
    kw("agent-port", ALL, SrvAct::AgentPort),
    kw("agent-inter", ALL, SrvAct::AgentInter),
    kw("agent-send", ALL, SrvAct::AgentSend),
    kw("agent-addr", ALL, SrvAct::AgentAddr),
    kw("init-addr", ALL, SrvAct::InitAddr),
    kw("tfo", ALL, SrvAct::Other0),
    kw("no-tfo", ALL, SrvAct::Other0),
    kw("non-stick", ALL, SrvAct::Other0),
    kw("stick", ALL, SrvAct::Other0),
    kw("tcp-ut", ALL, SrvAct::Other1),
    kw("namespace", ALL, SrvAct::Other1),
    kw("proto", ALL, SrvAct::Other1),
    kw("max-reuse", ALL, SrvAct::Other1),
    kw("ssl", ALL, SrvAct::Tls0),
    kw("no-ssl", ALL, SrvAct::Tls0),
    kw("check-ssl", ALL, SrvAct::CheckTls0),
    kw("no-check-ssl", ALL, SrvAct::CheckTls0),
    kw("ssl-reuse", ALL, SrvAct::Tls0),
    kw("no-ssl-reuse", ALL, SrvAct::Tls0),
    kw("tls-tickets", ALL, SrvAct::Tls0),
    kw("no-tls-tickets", ALL, SrvAct::Tls0),
    kw("no-sslv3", ALL, SrvAct::Tls0),
    kw("no-tlsv1*", ALL, SrvAct::Tls0),
    kw("force-*", ALL, SrvAct::Tls0),
    kw("no-verifyhost", ALL, SrvAct::CheckTls0),
    kw("allow-0rtt", ALL, SrvAct::Tls0),
    kw("send-proxy-v2-ssl", ALL, SrvAct::Tls0),
    kw("send-proxy-v2-ssl-cn", ALL, SrvAct::Tls0),
    kw("no-send-proxy-v2-ssl", ALL, SrvAct::Tls0),
    kw("no-send-proxy-v2-ssl-cn", ALL, SrvAct::Tls0),
    kw("check-via-socks4", ALL, SrvAct::Tls0),
    kw("verify", ALL, SrvAct::CheckTls1),
    kw("verifyhost", ALL, SrvAct::CheckTls1),
    kw("sni", ALL, SrvAct::Tls1),
    kw("check-sni", ALL, SrvAct::CheckTls1),
    kw("ca-file", ALL, SrvAct::CheckTls1),
    kw("crl-file", ALL, SrvAct::Tls1),
    kw("crt", ALL, SrvAct::Tls1),
    kw("alpn", ALL, SrvAct::Tls1),
    kw("check-alpn", ALL, SrvAct::Tls1),
    kw("npn", ALL, SrvAct::Tls1),
    kw("ciphers", ALL, SrvAct::Tls1),
    kw("ciphersuites", ALL, SrvAct::Tls1),
    kw("ssl-min-ver", ALL, SrvAct::Tls1),
    kw("ssl-max-ver", ALL, SrvAct::Tls1),
    kw("proxy-v2-options", ALL, SrvAct::Tls1),
    kw("check-proto", ALL, SrvAct::Tls1),
    kw("socks4", ALL, SrvAct::NotYet),
    kw("resolvers", ALL, SrvAct::Resolvers),
    kw("resolve-prefer", ALL, SrvAct::Resolvers),
    kw("resolve-net", ALL, SrvAct::NotYet),
    kw("resolve-opts", ALL, SrvAct::NotYet),
    kw("track", ALL, SrvAct::NotYet),
    kw("source", ALL, SrvAct::NotYet),
    kw("log-proto", ALL, SrvAct::NotYet),
    kw("cookie", ALL, SrvAct::Http),
    kw("redir", ALL, SrvAct::Http),
    kw("ws", ALL, SrvAct::Http),
    kw("pool-max-conn", ALL, SrvAct::Http),
    kw("pool-low-conn", ALL, SrvAct::Http),
    kw("pool-purge-delay", ALL, SrvAct::Http),
    kw("pool-conn-name", ALL, SrvAct::Http),
];

pub(super) fn p_bind(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(l, 0, "[address]:port[,...] as an argument")?;
    let expanded = p.expand(&a.text);
    // Columns point into the word only when it was written as is.
    let plain = a.verbatim && expanded == a.text;
    let mut binds = Vec::new();
    let mut offset = 0usize;
    for part in expanded.split(',') {
        // Point at the failing address in `a,b,c` when the word was plain.
        let col = if plain { a.col + offset } else { a.col };
        offset += part.chars().count() + 1;
        let shown = if part.is_empty() {
            expanded.as_str()
        } else {
            part
        };
        let (addr, fqdn, port_first, port_last) = if part.is_empty() {
            Err("empty address in the list".to_string())
        } else {
            bind_addr(p, part)
        }
        .map_err(|m| p.err_at(l.no, col, shown, format!("invalid bind address: {m}")))?;
        binds.push((
            Bind {
                addr,
                port_first,
                port_last,
                v6only: false,
                origin: p.origin(l.no),
                fqdn,
                v4v6: false,
                interface: None,
                backlog: None,
                maxconn: None,
                accept_proxy: false,
                name: None,
                id: None,
                other: Vec::new(),
            },
            col,
            part.to_string(),
        ));
    }
    let mut proto = binds
        .first()
        .map(|(b, _, _)| b.clone())
        .ok_or_else(|| p.internal(l, "no address"))?;
    let mut i = 1;
    while let Some(t) = l.args.get(i) {
        let Some(k) = lookup(BIND_KWS, &t.text) else {
            let hint = suggest(&t.text, BIND_KWS.iter().map(|k| k.name));
            return Err(p.err_hint(
                l.no,
                t,
                format!("unknown 'bind' parameter '{}'", t.text),
                hint,
            ));
        };
        let what = format!("bind ... {}", t.text);
        let mut value = || -> Result<&Token, ConfigError> {
            i += 1;
            p.arg(l, i, &format!("a value after '{}'", t.text))
        };
        match k.act {
            BindAct::V6Only => proto.v6only = true,
            BindAct::V4V6 => proto.v4v6 = true,
            BindAct::AcceptProxy => proto.accept_proxy = true,
            BindAct::Name => proto.name = Some(value()?.text.clone()),
            BindAct::Interface => proto.interface = Some(value()?.text.clone()),
            BindAct::Id => {
                let v = value()?;
                let n = parse_u32(&v.text, 1)
                    .map_err(|m| p.err(l.no, v, format!("invalid 'id': {m}")))?;
                let sockets: usize = binds
                    .iter()
                    .map(|(b, _, _)| usize::from(b.port_last - b.port_first) + 1)
                    .sum();
                if sockets > 1 {
                    return Err(p.err(
                        l.no,
                        t,
                        "'id' can only be set on a 'bind' line declaring a single socket",
                    ));
                }
                proto.id = Some(n);
            }
            BindAct::Backlog | BindAct::Maxconn => {
                let v = value()?;
                let n = parse_u32(&v.text, 0)
                    .map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", k.name)))?;
                if let BindAct::Backlog = k.act {
                    proto.backlog = Some(n);
                } else {
                    proto.maxconn = Some(n);
                }
            }
            BindAct::Other0 => proto.other.push(t.text.clone()),
            BindAct::Other1 => {
                let v = value()?;
                proto.other.push(format!("{} {}", t.text, v.text));
            }
            BindAct::Unix1 => {
                value()?;
            }
            BindAct::Tls0 | BindAct::Tls1 => return Err(p.tls_err(l.no, t, &what)),
            BindAct::NotYet => return Err(p.not_yet_err(l.no, t, &what, "")),
        }
        i += 1;
    }
    let proxy = p.proxy(l)?;
    for (b, col, text) in binds {
        let b = Bind {
            addr: b.addr,
            port_first: b.port_first,
            port_last: b.port_last,
            fqdn: b.fqdn,
            ..proto.clone()
        };
        proxy.binds.push((b, col, text));
    }
    Ok(())
}

/// A `bind` address: `(addr, fqdn, port_first, port_last)`, `addr` None for IPv4 any.
pub(super) fn bind_addr(
    p: &Parser<'_>,
    s: &str,
) -> Result<(Option<IpAddr>, Option<String>, u16, u16), String> {
    let hp = split_address(s)?;
    let port = match hp.port {
        Some(p) if !p.is_empty() => p,
        _ => {
            return Err(format!(
                "missing port in '{}' (expected [address]:port)",
                near(s)
            ))
        }
    };
    let (first, last) = parse_port_range(port)?;
    let (addr, fqdn) = match (hp.family, hp.host) {
        (Family::V6, Host::Wildcard(_)) => (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), None),
        (_, Host::Wildcard(Some(IpAddr::V6(a)))) => (Some(IpAddr::V6(a)), None),
        (_, Host::Wildcard(_)) => (None, None),
        (_, Host::Ip(ip)) => (Some(ip), None),
        (family, Host::Name(name)) => {
            let ip = resolve_one(p, &name, family)?;
            let addr = if ip.is_unspecified() && ip.is_ipv4() {
                None
            } else {
                Some(ip)
            };
            (addr, Some(name))
        }
    };
    Ok((addr, fqdn, first, last))
}
