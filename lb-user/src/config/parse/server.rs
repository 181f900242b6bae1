//! `server` and `default-server` lines: the server parameters and their
//! handlers, and the resolution of host names at start-up.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::config::lexer::Token;

/// Resolves a host name as HAProxy's `str2ip2()`: the first address (of the
/// forced family, if any).
pub(crate) fn resolve_one(p: &Parser<'_>, name: &str, family: Family) -> Result<IpAddr, String> {
    let addrs = p
        .sys
        .resolve(name)
        .map_err(|e| format!("could not resolve address '{}': {e}", near(name)))?;
    let first = addrs.iter().copied().find(|a| match family {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    });
    first.ok_or_else(|| format!("could not resolve address '{}'", near(name)))
}

impl Parser<'_> {
    /// `server`/`default-server` parameters from argument `start` on.
    pub(super) fn server_params(
        &self,
        l: &Line,
        start: usize,
        sd: &mut ServerParams,
    ) -> Result<(), ConfigError> {
        let is_default = l.kw.text == "default-server";
        let mut i = start;
        while let Some(t) = l.args.get(i) {
            let Some(k) = lookup(SERVER_KWS, &t.text) else {
                let hint = suggest(&t.text, SERVER_KWS.iter().map(|k| k.name));
                return Err(self.err_hint(
                    l.no,
                    t,
                    format!("unknown '{}' parameter '{}'", l.kw.text, t.text),
                    hint,
                ));
            };
            let what = format!("{} ... {}", l.kw.text, t.text);
            let mut value = || -> Result<&Token, ConfigError> {
                i += 1;
                self.arg(l, i, &format!("a value after '{}'", t.text))
            };
            let invalid =
                |v: &Token, m: String| self.err(l.no, v, format!("invalid '{}': {m}", t.text));
            let time = |v: &Token| -> Result<Duration, ConfigError> {
                let d = parse_time(&v.text).map_err(|m| invalid(v, m))?;
                if d.is_zero() {
                    return Err(invalid(v, "must be greater than 0".into()));
                }
                Ok(d)
            };
            match k.act {
                SrvAct::Check => sd.check = true,
                SrvAct::NoCheck => sd.check = false,
                SrvAct::Disabled => sd.disabled = true,
                SrvAct::Enabled => sd.disabled = false,
                SrvAct::Backup => sd.backup = true,
                SrvAct::NoBackup => sd.backup = false,
                SrvAct::SendProxy => sd.send_proxy = Some(ProxyProtocol::V1),
                SrvAct::SendProxyV2 => sd.send_proxy = Some(ProxyProtocol::V2),
                SrvAct::NoSendProxy | SrvAct::NoSendProxyV2 => sd.send_proxy = None,
                SrvAct::CheckSendProxy => sd.check_send_proxy = true,
                SrvAct::Resolvers => {
                    let v = value()?;
                    if t.text == "resolvers" {
                        sd.resolvers = Some(v.text.clone());
                    } else {
                        sd.resolve_prefer_v4 = match v.text.as_str() {
                            "ipv4" => true,
                            "ipv6" => false,
                            _ => return Err(invalid(v, "expected 'ipv4' or 'ipv6'".into())),
                        };
                    }
                }
                SrvAct::CheckTls0 => match t.text.as_str() {
                    "check-ssl" => sd.check_tls.enabled = true,
                    "no-check-ssl" => sd.check_tls.enabled = false,
                    _ => sd.check_tls.no_verifyhost = true,
                },
                SrvAct::CheckTls1 => {
                    let v = value()?;
                    let tls = &mut sd.check_tls;
                    match t.text.as_str() {
                        "verify" => {
                            tls.verify = Some(match v.text.as_str() {
                                "required" => true,
                                "none" => false,
                                _ => {
                                    return Err(invalid(v, "expected 'none' or 'required'".into()))
                                }
                            })
                        }
                        "ca-file" => tls.ca_file = Some(PathBuf::from(&v.text)),
                        "check-sni" => tls.sni = Some(v.text.clone()),
                        _ => {
                            tls.verifyhost = Some(v.text.clone());
                            tls.no_verifyhost = false;
                        }
                    }
                }
                SrvAct::AgentCheck => sd.agent.enabled = true,
                SrvAct::NoAgentCheck => sd.agent.enabled = false,
                SrvAct::Weight => {
                    let v = value()?;
                    sd.weight = parse_uint(&v.text, 0, u64::from(MAX_WEIGHT))
                        .and_then(|w| u32::try_from(w).map_err(|e| e.to_string()))
                        .map_err(|m| invalid(v, m))?;
                }
                SrvAct::Inter => sd.check_params.inter = time(value()?)?,
                SrvAct::FastInter => sd.fastinter = Some(time(value()?)?),
                SrvAct::DownInter => sd.downinter = Some(time(value()?)?),
                SrvAct::AgentInter => sd.agent.inter = Some(time(value()?)?),
                SrvAct::Slowstart => {
                    let v = value()?;
                    let d = parse_time(&v.text).map_err(|m| invalid(v, m))?;
                    sd.slowstart = (!d.is_zero()).then_some(d);
                }
                SrvAct::Rise | SrvAct::Fall | SrvAct::ErrorLimit => {
                    let v = value()?;
                    let n = parse_u32(&v.text, 1).map_err(|m| invalid(v, m))?;
                    match k.act {
                        SrvAct::Rise => sd.check_params.rise = n,
                        SrvAct::Fall => sd.check_params.fall = n,
                        _ => sd.error_limit = Some(n),
                    }
                }
                SrvAct::Maxconn | SrvAct::Minconn | SrvAct::Maxqueue => {
                    let v = value()?;
                    let n = parse_u32(&v.text, 0).map_err(|m| invalid(v, m))?;
                    match k.act {
                        SrvAct::Maxconn => sd.maxconn = Some(n),
                        SrvAct::Minconn => sd.minconn = Some(n),
                        _ => sd.maxqueue = Some(n),
                    }
                }
                SrvAct::Id => {
                    if is_default {
                        return Err(self.err(
                            l.no,
                            t,
                            "'id' is not allowed on 'default-server' (ids are unique per server)",
                        ));
                    }
                    let v = value()?;
                    sd.id = Some(parse_u32(&v.text, 1).map_err(|m| invalid(v, m))?);
                }
                SrvAct::Port | SrvAct::AgentPort => {
                    let v = value()?;
                    let port = parse_port(&v.text).map_err(|m| invalid(v, m))?;
                    if let SrvAct::Port = k.act {
                        sd.check_port = Some(port);
                    } else {
                        sd.agent.port = Some(port);
                    }
                }
                SrvAct::Addr | SrvAct::AgentAddr => {
                    let v = value()?;
                    let ip = self.plain_ip(&v.text).map_err(|m| invalid(v, m))?;
                    if let SrvAct::Addr = k.act {
                        sd.check_addr = Some(ip);
                    } else {
                        sd.agent.addr = Some(ip);
                    }
                }
                SrvAct::AgentSend => sd.agent.send = Some(value()?.text.clone()),
                SrvAct::OnMarkedDown => {
                    let v = value()?;
                    if v.text != "shutdown-sessions" {
                        return Err(invalid(
                            v,
                            format!(
                                "unknown action '{}' (expected 'shutdown-sessions')",
                                near(&v.text)
                            ),
                        ));
                    }
                    sd.on_marked_down_shutdown = true;
                }
                SrvAct::OnMarkedUp => {
                    let v = value()?;
                    if v.text != "shutdown-backup-sessions" {
                        return Err(invalid(
                            v,
                            format!(
                                "unknown action '{}' (expected 'shutdown-backup-sessions')",
                                near(&v.text)
                            ),
                        ));
                    }
                    sd.on_marked_up_shutdown_backup = true;
                }
                SrvAct::OnError => {
                    let v = value()?;
                    sd.on_error = Some(match v.text.as_str() {
                        "fastinter" => OnError::FastInter,
                        "fail-check" => OnError::FailCheck,
                        "sudden-death" => OnError::SuddenDeath,
                        "mark-down" => OnError::MarkDown,
                        _ => {
                            return Err(invalid(
                                v,
                                format!(
                                    "unknown mode '{}' (expected 'fastinter', 'fail-check', \
                                     'sudden-death' or 'mark-down')",
                                    near(&v.text)
                                ),
                            ))
                        }
                    });
                }
                SrvAct::Observe => {
                    let v = value()?;
                    match v.text.as_str() {
                        "layer4" => sd.observe_layer4 = true,
                        "layer7" => return Err(self.http_err(l.no, v, "observe layer7")),
                        _ => {
                            return Err(invalid(
                                v,
                                format!("unknown mode '{}' (expected 'layer4')", near(&v.text)),
                            ))
                        }
                    }
                }
                SrvAct::InitAddr => {
                    let v = value()?;
                    let mut methods = Vec::new();
                    for m in v.text.split(',') {
                        methods.push(match m {
                            "last" => InitAddr::Last,
                            "libc" => InitAddr::Libc,
                            "none" => InitAddr::None,
                            _ => InitAddr::Ip(self.plain_ip(m).map_err(|_| {
                                invalid(
                                    v,
                                    format!(
                                        "'{}' is not 'last', 'libc', 'none' or an IP address",
                                        near(m)
                                    ),
                                )
                            })?),
                        });
                    }
                    sd.init_addr = Some(methods);
                }
                SrvAct::Other0 => sd.other.push(t.text.clone()),
                SrvAct::Other1 => {
                    let v = value()?;
                    sd.other.push(format!("{} {}", t.text, v.text));
                }
                SrvAct::Tls0 | SrvAct::Tls1 => return Err(self.tls_err(l.no, t, &what)),
                SrvAct::NotYet => return Err(self.not_yet_err(l.no, t, &what, "")),
                SrvAct::Http => return Err(self.http_err(l.no, t, &what)),
            }
            i += 1;
        }
        Ok(())
    }

    /// An IPv4 or IPv6 address, no port, no host name.
    pub(super) fn plain_ip(&self, s: &str) -> Result<IpAddr, String> {
        let s = self.expand(s);
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&s);
        inner
            .parse()
            .map_err(|_| format!("'{}' is not an IP address", near(&s)))
    }
}

pub(super) fn p_default_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 0, &mut sd)?;
    p.settings(l)?.default_server = sd;
    Ok(())
}

/// A parsed server address: the address (unspecified for a host name), how
/// the port is chosen, the host name to resolve with its family, and whether
/// the address is the client's destination.
pub(super) type ServerAddr = (SocketAddr, ServerPort, Option<(String, Family)>, bool);

/// A server address: `(addr, port mode, host name to resolve)`.
pub(super) fn server_addr(p: &Parser<'_>, s: &str) -> Result<ServerAddr, String> {
    let hp = split_address(s)?;
    let (port, mode) = match hp.port {
        None | Some("") => (0, ServerPort::SameAsClient),
        Some(port) if port.starts_with('+') || port.starts_with('-') => {
            let n = parse_int(port.trim_start_matches('+'), -65535, 65535)
                .map_err(|m| format!("invalid port offset: {m}"))?;
            // Within ±65535.
            (0, ServerPort::Offset(n as i32))
        }
        Some(port) if port.contains('-') => {
            return Err("port ranges are not allowed on servers".into())
        }
        Some("0") => (0, ServerPort::SameAsClient),
        Some(port) => (parse_port(port)?, ServerPort::Fixed),
    };
    let (ip, host, from_client) = match (hp.family, hp.host) {
        (_, Host::Ip(ip)) => (ip, None, false),
        (Family::V6, Host::Wildcard(_)) | (_, Host::Wildcard(Some(IpAddr::V6(_)))) => {
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), None, true)
        }
        (_, Host::Wildcard(_)) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None, true),
        (family, Host::Name(name)) => {
            let _ = p;
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some((name, family)),
                false,
            )
        }
    };
    Ok((SocketAddr::new(ip, port), mode, host, from_client))
}

pub(super) fn p_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = p.arg(l, 0, "<name> and <address>:<port> as arguments")?;
    p.check_name(l.no, name, "server")?;
    add_server(p, l, name)
}

/// `server-template <prefix> <num | low-high> <fqdn>[:<port>] [params*]`:
/// servers `<prefix><n>`, each as a `server` line with that address.
pub(super) fn p_server_template(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let prefix = p.arg(l, 0, "<prefix> <num | range> <fqdn>[:<port>]")?;
    let n = p.arg(l, 1, "<prefix> <num | range> <fqdn>[:<port>]")?;
    p.arg(l, 2, "<prefix> <num | range> <fqdn>[:<port>]")?;
    if l.args.get(3).is_some_and(|t| t.text == "from") {
        return Err(p.not_yet_err(l.no, &l.args[3], "server-template ... from", ""));
    }
    let bad = || {
        p.err(
            l.no,
            n,
            format!(
                "'server-template' expects a number or a range 'low-high' of at most {} servers, not '{}'",
                crate::config::limits::MAX_SERVERS_PER_TEMPLATE,
                n.text
            ),
        )
    };
    let (low, high) = match n.text.split_once('-') {
        Some((a, b)) => (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        ),
        None => (1, n.text.parse::<u32>().map_err(|_| bad())?),
    };
    if low == 0 || high < low || high - low >= crate::config::limits::MAX_SERVERS_PER_TEMPLATE {
        return Err(bad());
    }
    // The same line with `<prefix><i> <fqdn> params...` for each server.
    for i in low..=high {
        let mut line = Line {
            no: l.no,
            kw: l.kw.clone(),
            args: l.args[2..].to_vec(),
        };
        let mut name = prefix.clone();
        name.text = format!("{}{i}", prefix.text);
        line.args.insert(0, name.clone());
        p.check_name(l.no, &name, "server")?;
        add_server(p, &line, &name)?;
    }
    Ok(())
}

fn add_server(p: &mut Parser<'_>, l: &Line, name: &Token) -> Result<(), ConfigError> {
    let a = p.arg(l, 1, "<name> and <address>:<port> as arguments")?;
    let expanded = p.expand(&a.text);
    let (addr, port_mode, host, from_client) = server_addr(p, &expanded)
        .map_err(|m| p.err(l.no, a, format!("invalid server address: {m}")))?;
    let mut sd = p.settings(l)?.default_server.clone();
    p.server_params(l, 2, &mut sd)?;
    if sd.agent.enabled && sd.agent.port.is_none() {
        return Err(p.err(
            l.no,
            name,
            format!(
                "server '{}' has 'agent-check' but no 'agent-port'",
                name.text
            ),
        ));
    }
    let origin = p.origin(l.no);
    let file = p.file.clone();
    let proxy = p.proxy(l)?;
    if let Some(prev) = proxy.server_lines.get(&name.text) {
        let msg = format!(
            "{} '{}': server name '{}' is already used at {}:{prev}",
            proxy.kind(),
            proxy.name.text,
            name.text,
            file.display()
        );
        return Err(p.err(l.no, name, msg));
    }
    proxy.server_lines.insert(name.text.clone(), l.no);
    let server = Server {
        name: name.text.clone(),
        addr,
        origin,
        port_mode,
        fqdn: host.as_ref().map(|(h, _)| h.clone()),
        addr_from_client: from_client,
        unresolved: false,
        params: sd,
    };
    proxy.servers.push(ServerDraft {
        server,
        host: host.map(|(h, f)| (h, f, a.col)),
        addr_col: a.col,
        addr_text: a.text.clone(),
    });
    Ok(())
}
