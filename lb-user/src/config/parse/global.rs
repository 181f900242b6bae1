//! The `global` section, and `log` lines (global and per proxy).
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::{kw, lookup, Act, ConfigError, Kw, Line, Parser, ALL};
use crate::config::model::*;
use crate::config::values::{
    near, parse_size, parse_time, parse_u32, parse_uint, split_address, suggest, Family, Host,
};

/// Most threads, as Debian's HAProxy build (`MAX_THREADS=64`).
const MAX_THREADS: u32 = 64;

const GLOBAL_KWS: &[Kw<Act>] = &[
    kw("maxconn", ALL, Act::Run(g_maxconn)),
    kw("tune.lb.splice-budget", ALL, Act::Run(g_splice_budget)),
    kw("xdp-interface", ALL, Act::Run(g_xdp_interface)),
    kw("xdp-syn-rate", ALL, Act::Run(g_xdp_syn_rate)),
    kw("xdp-syn-cookies", ALL, Act::Run(g_xdp_syn_cookies)),
    kw("log", ALL, Act::Run(g_log)),
    kw("daemon", ALL, Act::Run(g_daemon)),
    kw("master-worker", ALL, Act::Run(g_daemon)),
    kw("nbthread", ALL, Act::Run(g_nbthread)),
    kw("user", ALL, Act::Run(g_user)),
    kw("uid", ALL, Act::Run(g_user)),
    kw("group", ALL, Act::Run(g_group)),
    kw("gid", ALL, Act::Run(g_group)),
    kw("pidfile", ALL, Act::Run(g_pidfile)),
    kw("chroot", ALL, Act::Run(g_chroot)),
    kw("hard-stop-after", ALL, Act::Run(g_hard_stop_after)),
    kw("stats", ALL, Act::Run(g_stats)),
    kw("setenv", ALL, Act::Run(g_setenv)),
    kw("presetenv", ALL, Act::Run(g_setenv)),
    kw("unsetenv", ALL, Act::Run(g_setenv)),
    kw("resetenv", ALL, Act::Run(g_setenv)),
    kw("nbproc", ALL, Act::Removed("nbthread")),
    // Settings of HAProxy's own process: accepted, recorded.
    kw("description", ALL, Act::Other),
    kw("node", ALL, Act::Other),
    kw("log-tag", ALL, Act::Other),
    kw("log-send-hostname", ALL, Act::Other),
    kw("ca-base", ALL, Act::Run(g_ca_base)),
    kw("ssl-server-verify", ALL, Act::Run(g_ssl_server_verify)),
    kw("crt-base", ALL, Act::Other),
    kw("ssl-*", ALL, Act::Other),
    kw("issuers-chain-path", ALL, Act::Other),
    kw("tune.*", ALL, Act::Other),
    kw("spread-checks", ALL, Act::Run(g_spread_checks)),
    kw("max-spread-checks", ALL, Act::Other),
    kw("ulimit-n", ALL, Act::Other),
    kw("fd-hard-limit", ALL, Act::Other),
    kw("strict-limits", ALL, Act::Other),
    kw("maxconnrate", ALL, Act::Run(g_rate)),
    kw("maxsessrate", ALL, Act::Run(g_rate)),
    kw("maxsslconn", ALL, Act::Other),
    kw("maxsslrate", ALL, Act::Other),
    kw("maxpipes", ALL, Act::Other),
    kw("maxzlibmem", ALL, Act::Other),
    kw("maxcomprate", ALL, Act::Other),
    kw("maxcompcpuusage", ALL, Act::Other),
    kw("busy-polling", ALL, Act::Other),
    kw("cpu-map", ALL, Act::Other),
    kw("numa-cpu-mapping", ALL, Act::Other),
    kw("noepoll", ALL, Act::Other),
    kw("nopoll", ALL, Act::Other),
    kw("nosplice", ALL, Act::Other),
    kw("noreuseport", ALL, Act::Other),
    kw("nogetaddrinfo", ALL, Act::Other),
    kw("no-memory-trimming", ALL, Act::Other),
    kw("profiling.tasks", ALL, Act::Other),
    kw("set-dumpable", ALL, Act::Other),
    kw("grace", ALL, Act::Other),
    kw("mworker-max-reloads", ALL, Act::Other),
    kw("localpeer", ALL, Act::Other),
    kw("insecure-fork-wanted", ALL, Act::Other),
    kw("insecure-setuid-wanted", ALL, Act::Other),
    kw("expose-experimental-directives", ALL, Act::Other),
    kw("quiet", ALL, Act::Other),
    kw("zero-warning", ALL, Act::Other),
    kw("default-path", ALL, Act::Other),
    kw("pp2-never-send-local", ALL, Act::Other),
    kw("unix-bind", ALL, Act::Other),
    kw("server-state-base", ALL, Act::Run(g_server_state_base)),
    kw("server-state-file", ALL, Act::Run(g_server_state_file)),
    kw("external-check", ALL, Act::Other),
    kw("lua-*", ALL, Act::NotYet("")),
    kw("set-var", ALL, Act::NotYet("")),
    kw("cluster-secret", ALL, Act::NotYet("")),
    kw("httpclient.*", ALL, Act::Http),
    kw("h1-*", ALL, Act::Http),
    kw("h2-*", ALL, Act::Http),
    kw("51degrees-*", ALL, Act::Http),
    kw("deviceatlas-*", ALL, Act::Http),
    kw("wurfl-*", ALL, Act::Http),
];

pub(crate) fn global_line(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let Some(k) = lookup(GLOBAL_KWS, &l.kw.text) else {
        let hint = suggest(&l.kw.text, GLOBAL_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(
            l.no,
            &l.kw,
            format!("unknown keyword '{}' in 'global' section", l.kw.text),
            hint,
        ));
    };
    p.run(l, k.act, &l.kw.text)
}

fn g_maxconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, "maxconn")?;
    let n = parse_u32(&v.text, 0).map_err(|m| p.err(l.no, v, format!("invalid 'maxconn': {m}")))?;
    // As HAProxy, 0 leaves the limit to be computed.
    p.global.maxconn = (n != 0).then_some(n);
    p.global.maxconn_origin = (n != 0).then(|| p.origin(l.no));
    Ok(())
}

fn g_splice_budget(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<size> as an argument (e.g. 4m)")?;
    p.no_more(l, 1, &l.kw.text)?;
    let size =
        parse_size(&v.text).map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", l.kw.text)))?;
    if size == 0 {
        return Err(p.err(l.no, v, format!("'{}' must be greater than 0", l.kw.text)));
    }
    p.global.splice_budget = size;
    Ok(())
}

/// A Linux interface name: 1-15 bytes, no '/', ':' or whitespace (IFNAMSIZ).
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name '{name}' must be 1 to 15 characters long"
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!("invalid interface name '{name}'"));
    }
    Ok(())
}

fn g_xdp_interface(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<interface> [native|skb|tc]")?;
    check_ifname(&v.text).map_err(|m| p.err(l.no, v, m))?;
    let mode = match l.args.get(1) {
        None => XdpAttach::Auto,
        Some(m) => match m.text.as_str() {
            "native" => XdpAttach::Native,
            "skb" => XdpAttach::Skb,
            "tc" => XdpAttach::Tc,
            _ => {
                return Err(p.err(
                    l.no,
                    m,
                    format!(
                        "invalid mode '{}' for 'xdp-interface': expected 'native', 'skb' or 'tc'",
                        m.text
                    ),
                ))
            }
        },
    };
    p.no_more(l, 2, &l.kw.text)?;
    if p.global
        .xdp_interfaces
        .iter()
        .any(|i| i.value.name == v.text)
    {
        return Err(p.err(
            l.no,
            v,
            format!("interface '{}' is already named by 'xdp-interface'", v.text),
        ));
    }
    let origin = p.origin(l.no);
    p.global.xdp_interfaces.push(Located {
        value: XdpInterface {
            name: v.text.clone(),
            mode,
        },
        origin,
    });
    Ok(())
}

fn g_xdp_syn_rate(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    const EXPECTS: &str = "<rate> per-source [burst <n>]";
    let v = p.arg(l, 0, EXPECTS)?;
    let per_second = parse_u32(&v.text, 1)
        .map_err(|m| p.err(l.no, v, format!("invalid rate for 'xdp-syn-rate': {m}")))?;
    let scope = p.arg(l, 1, EXPECTS)?;
    if scope.text != "per-source" {
        return Err(p.err(
            l.no,
            scope,
            format!(
                "'xdp-syn-rate' expects 'per-source' after the rate, not '{}'",
                scope.text
            ),
        ));
    }
    let mut burst = per_second;
    if let Some(b) = l.args.get(2) {
        if b.text != "burst" {
            return Err(p.err(
                l.no,
                b,
                format!(
                    "unexpected '{}' in 'xdp-syn-rate': expected 'burst <n>'",
                    b.text
                ),
            ));
        }
        let n = p.arg(l, 3, EXPECTS)?;
        burst = parse_u32(&n.text, 1)
            .map_err(|m| p.err(l.no, n, format!("invalid burst for 'xdp-syn-rate': {m}")))?;
        p.no_more(l, 4, &l.kw.text)?;
    }
    if per_second > 1_000_000_000 {
        return Err(p.err(
            l.no,
            v,
            "'xdp-syn-rate' is at most 1000000000 per second".to_string(),
        ));
    }
    let origin = p.origin(l.no);
    p.global.xdp_syn_rate = Some(Located {
        value: SynRate { per_second, burst },
        origin,
    });
    Ok(())
}

fn g_xdp_syn_cookies(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "on|off")?;
    let on = match v.text.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(p.err(
                l.no,
                v,
                format!("'xdp-syn-cookies' expects 'on' or 'off', not '{other}'"),
            ))
        }
    };
    p.no_more(l, 1, &l.kw.text)?;
    let origin = p.origin(l.no);
    p.global.xdp_syn_cookies = Some(Located { value: on, origin });
    Ok(())
}

fn g_daemon(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.no_more(l, 0, &l.kw.text)?;
    p.global.daemon = Some(p.origin(l.no));
    Ok(())
}

fn g_nbthread(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, "nbthread")?;
    let n = parse_uint(&v.text, 1, u64::from(MAX_THREADS))
        .map_err(|m| p.err(l.no, v, format!("invalid 'nbthread': {m}")))?;
    p.global.nbthread = Some(Located {
        // At most MAX_THREADS.
        value: n as u32,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_spread_checks(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a percentage as an argument")?;
    p.no_more(l, 1, "spread-checks")?;
    // HAProxy: 0..50.
    let n = parse_uint(&v.text, 0, 50).map_err(|m| {
        p.err(
            l.no,
            v,
            format!("'spread-checks' needs a positive argument between 0 and 50: {m}"),
        )
    })?;
    p.global.spread_checks = Some(Located {
        // At most 50.
        value: n as u32,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_rate(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "an integer as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    let n = parse_u32(&v.text, 0)
        .map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", l.kw.text)))?;
    let located = Some(Located {
        value: n,
        origin: p.origin(l.no),
    });
    if l.kw.text == "maxconnrate" {
        p.global.maxconnrate = located;
    } else {
        p.global.maxsessrate = located;
    }
    Ok(())
}

fn g_ca_base(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a directory as an argument")?;
    p.no_more(l, 1, "ca-base")?;
    p.global.ca_base = Some(PathBuf::from(&v.text));
    Ok(())
}

fn g_ssl_server_verify(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "'none' or 'required' as an argument")?;
    p.no_more(l, 1, "ssl-server-verify")?;
    let value = match v.text.as_str() {
        "required" => true,
        "none" => false,
        _ => {
            return Err(p.err(
                l.no,
                v,
                format!(
                    "'ssl-server-verify' expects 'none' or 'required' as argument, not '{}'",
                    v.text
                ),
            ))
        }
    };
    p.global.ssl_server_verify = Some(Located {
        value,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_user(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a user name (or uid) as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    let account = if l.kw.text == "uid" {
        let id =
            parse_u32(&v.text, 0).map_err(|m| p.err(l.no, v, format!("invalid 'uid': {m}")))?;
        Account { name: None, id }
    } else {
        let id = p
            .sys
            .user(&v.text)
            .ok_or_else(|| p.err(l.no, v, format!("cannot find user id for '{}'", v.text)))?;
        Account {
            name: Some(v.text.clone()),
            id,
        }
    };
    p.global.user = Some(Located {
        value: account,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_group(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a group name (or gid) as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    let account = if l.kw.text == "gid" {
        let id =
            parse_u32(&v.text, 0).map_err(|m| p.err(l.no, v, format!("invalid 'gid': {m}")))?;
        Account { name: None, id }
    } else {
        let id = p
            .sys
            .group(&v.text)
            .ok_or_else(|| p.err(l.no, v, format!("cannot find group id for '{}'", v.text)))?;
        Account {
            name: Some(v.text.clone()),
            id,
        }
    };
    p.global.group = Some(Located {
        value: account,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_pidfile(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a file name as an argument")?;
    p.no_more(l, 1, "pidfile")?;
    p.global.pidfile = Some(Located {
        value: PathBuf::from(&v.text),
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_server_state_file(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a file name as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    if v.text.is_empty() {
        return Err(p.err(l.no, v, "'server-state-file' expects a file name"));
    }
    p.global.server_state_file = Some(Located {
        value: PathBuf::from(&v.text),
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_server_state_base(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a directory as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    if v.text.is_empty() {
        return Err(p.err(l.no, v, "'server-state-base' expects a directory"));
    }
    p.global.server_state_base = Some(Located {
        value: PathBuf::from(&v.text),
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_chroot(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a directory as an argument")?;
    p.no_more(l, 1, "chroot")?;
    p.global.chroot = Some(Located {
        value: PathBuf::from(&v.text),
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_hard_stop_after(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a time as an argument")?;
    p.no_more(l, 1, "hard-stop-after")?;
    let d = parse_time(&v.text)
        .map_err(|m| p.err(l.no, v, format!("invalid 'hard-stop-after': {m}")))?;
    p.global.hard_stop_after = Some(Located {
        value: d,
        origin: p.origin(l.no),
    });
    Ok(())
}

fn g_setenv(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    match l.kw.text.as_str() {
        "setenv" | "presetenv" => {
            let n = p.arg(l, 0, "<name> and <value> as arguments")?;
            let v = p.arg(l, 1, "<name> and <value> as arguments")?;
            p.no_more(l, 2, &l.kw.text)?;
            if l.kw.text == "setenv" || p.env(&n.text).is_none() {
                p.env_overlay.insert(n.text.clone(), Some(v.text.clone()));
            }
        }
        "unsetenv" => {
            for n in &l.args {
                p.env_overlay.insert(n.text.clone(), None);
            }
        }
        _ => {
            // resetenv [name...]: only the named variables stay.
            let keep: std::collections::HashSet<String> =
                l.args.iter().map(|t| t.text.clone()).collect();
            p.env_overlay.retain(|k, _| keep.contains(k));
            p.env_keep = Some(keep);
        }
    }
    Ok(())
}

fn g_log(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let first = p.arg(
        l,
        0,
        "<address> [len <n>] [format <f>] <facility> [level [minlevel]]",
    )?;
    if first.text == "global" {
        return Err(p.err(
            l.no,
            first,
            "'log global' is only for proxies, not for the global section",
        ));
    }
    let t = parse_log_target(p, l)?;
    p.global.logs.push(Located {
        value: t,
        origin: p.origin(l.no),
    });
    Ok(())
}

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
const FORMATS: &[&str] = &[
    "local", "rfc3164", "rfc5424", "priority", "short", "timed", "iso", "raw",
];

/// `log <address> [len N] [format F] [sample R:S] <facility> [level [minlevel]]`
/// (the arguments of a `log` line).
pub(crate) fn parse_log_target(p: &Parser<'_>, l: &Line) -> Result<LogTarget, ConfigError> {
    let a = p.arg(l, 0, "<address> and <facility> as arguments")?;
    let text = p.expand(&a.text);
    let address = if text == "stdout" {
        LogAddress::Fd(1)
    } else if text == "stderr" {
        LogAddress::Fd(2)
    } else if let Some(fd) = text.strip_prefix("fd@") {
        LogAddress::Fd(
            parse_uint(fd, 0, i32::MAX as u64)
                .map_err(|m| p.err(l.no, a, format!("invalid log fd: {m}")))? as i32,
        )
    } else if let Some(ring) = text.strip_prefix("ring@") {
        LogAddress::Ring(ring.to_string())
    } else if text.starts_with('/') || text.starts_with("unix@") {
        LogAddress::Unix(PathBuf::from(text.trim_start_matches("unix@")))
    } else {
        let t = text.strip_prefix("udp@").unwrap_or(&text);
        let hp =
            split_address(t).map_err(|m| p.err(l.no, a, format!("invalid log address: {m}")))?;
        let ip = match hp.host {
            Host::Ip(ip) => ip,
            Host::Wildcard(_) => {
                return Err(p.err(
                    l.no,
                    a,
                    "invalid log address: a specific IP address is required",
                ))
            }
            Host::Name(n) => super::resolve_one(p, &n, hp.family)
                .map_err(|m| p.err(l.no, a, format!("invalid log address: {m}")))?,
        };
        let _ = Family::Any;
        let port = match hp.port {
            None | Some("") => 514,
            Some(port) => crate::config::values::parse_port(port)
                .map_err(|m| p.err(l.no, a, format!("invalid log address: {m}")))?,
        };
        LogAddress::Udp(SocketAddr::new(ip, port))
    };
    let mut t = LogTarget {
        address,
        len: None,
        format: None,
        sample: None,
        facility: String::new(),
        level: None,
        minlevel: None,
    };
    let mut i = 1;
    loop {
        let Some(w) = l.args.get(i) else {
            return Err(p.err(
                l.no,
                &l.kw,
                "'log' expects <address> and <facility> as arguments",
            ));
        };
        let value = |i: usize| {
            l.args
                .get(i)
                .ok_or_else(|| p.err(l.no, w, format!("'log {}' expects a value", w.text)))
        };
        match w.text.as_str() {
            "len" => {
                let v = value(i + 1)?;
                let n = parse_uint(&v.text, 80, 65535)
                    .map_err(|m| p.err(l.no, v, format!("invalid log length: {m}")))?;
                // At most 65535.
                t.len = Some(n as u32);
                i += 2;
            }
            "format" => {
                let v = value(i + 1)?;
                if !FORMATS.contains(&v.text.as_str()) {
                    return Err(p.err_hint(
                        l.no,
                        v,
                        format!("unknown log format '{}'", v.text),
                        suggest(&v.text, FORMATS.iter().copied()),
                    ));
                }
                t.format = Some(v.text.clone());
                i += 2;
            }
            "sample" => {
                let v = value(i + 1)?;
                let ok = v.text.split_once(':').is_some_and(|(ranges, size)| {
                    !ranges.is_empty()
                        && ranges.split(',').all(|r| {
                            r.split('-')
                                .all(|n| parse_uint(n, 1, u64::from(u32::MAX)).is_ok())
                        })
                        && parse_uint(size, 1, u64::from(u32::MAX)).is_ok()
                });
                if !ok {
                    return Err(p.err(
                        l.no,
                        v,
                        format!(
                            "invalid log sample '{}' (expected <ranges>:<size>)",
                            near(&v.text)
                        ),
                    ));
                }
                t.sample = Some(v.text.clone());
                i += 2;
            }
            f => {
                if !FACILITIES.contains(&f) {
                    return Err(p.err_hint(
                        l.no,
                        w,
                        format!("unknown log facility '{f}'"),
                        suggest(f, FACILITIES.iter().copied()),
                    ));
                }
                t.facility = f.to_string();
                i += 1;
                break;
            }
        }
    }
    for slot in [&mut t.level, &mut t.minlevel] {
        if let Some(w) = l.args.get(i) {
            if !LEVELS.contains(&w.text.as_str()) {
                return Err(p.err_hint(
                    l.no,
                    w,
                    format!("unknown log level '{}'", w.text),
                    suggest(&w.text, LEVELS.iter().copied()),
                ));
            }
            *slot = Some(w.text.clone());
            i += 1;
        }
    }
    p.no_more(l, i, "log")?;
    Ok(t)
}

/// `stats socket|timeout|maxconn|bind-process ...`.
fn g_stats(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let sub = p.arg(l, 0, "'socket', 'timeout', 'maxconn' or 'bind-process'")?;
    match sub.text.as_str() {
        "timeout" => {
            let v = p.arg(l, 1, "a time after 'stats timeout'")?;
            p.no_more(l, 2, "stats timeout")?;
            let d = parse_time(&v.text)
                .map_err(|m| p.err(l.no, v, format!("invalid 'stats timeout': {m}")))?;
            if d.is_zero() {
                return Err(p.err(l.no, v, "'stats timeout' must be greater than 0"));
            }
            p.global.stats_timeout = Some(Located {
                value: d,
                origin: p.origin(l.no),
            });
        }
        "maxconn" => {
            let v = p.arg(l, 1, "a number after 'stats maxconn'")?;
            p.no_more(l, 2, "stats maxconn")?;
            let n = parse_u32(&v.text, 1)
                .map_err(|m| p.err(l.no, v, format!("invalid 'stats maxconn': {m}")))?;
            p.global.stats_maxconn = Some(Located {
                value: n,
                origin: p.origin(l.no),
            });
        }
        "bind-process" => {}
        "socket" => {
            let s = stats_socket(p, l)?;
            p.global.stats_sockets.push(Located {
                value: s,
                origin: p.origin(l.no),
            });
        }
        _ => {
            return Err(p.err_hint(
                l.no,
                sub,
                format!(
                    "'stats' only supports 'socket', 'maxconn', 'bind-process' and 'timeout' (got '{}')",
                    sub.text
                ),
                suggest(&sub.text, ["socket", "maxconn", "bind-process", "timeout"]),
            ))
        }
    }
    Ok(())
}

fn stats_socket(p: &Parser<'_>, l: &Line) -> Result<StatsSocket, ConfigError> {
    let a = p.arg(
        l,
        1,
        "an address or a path to a UNIX socket after 'stats socket'",
    )?;
    let text = p.expand(&a.text);
    let address = if text.starts_with('/') || text.starts_with("unix@") {
        StatsAddress::Unix(PathBuf::from(text.trim_start_matches("unix@")))
    } else {
        let hp = split_address(&text)
            .map_err(|m| p.err(l.no, a, format!("invalid stats socket address: {m}")))?;
        let port = match hp.port {
            Some(port) if !port.is_empty() => crate::config::values::parse_port(port)
                .map_err(|m| p.err(l.no, a, format!("invalid stats socket address: {m}")))?,
            _ => {
                return Err(p.err(
                    l.no,
                    a,
                    "invalid stats socket address: a port is required (or a UNIX socket path)",
                ))
            }
        };
        let ip = match hp.host {
            Host::Ip(ip) => ip,
            Host::Wildcard(Some(ip)) => ip,
            Host::Wildcard(None) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Host::Name(n) => super::resolve_one(p, &n, hp.family)
                .map_err(|m| p.err(l.no, a, format!("invalid stats socket address: {m}")))?,
        };
        StatsAddress::Tcp(SocketAddr::new(ip, port))
    };
    let mut s = StatsSocket {
        address,
        mode: None,
        uid: None,
        gid: None,
        level: StatsLevel::Operator,
        expose_fd_listeners: false,
        severity_output: None,
        other: Vec::new(),
    };
    let mut i = 2;
    while let Some(t) = l.args.get(i) {
        let v = || {
            l.args.get(i + 1).ok_or_else(|| {
                p.err(
                    l.no,
                    t,
                    format!("'stats socket' : '{}' expects a value", t.text),
                )
            })
        };
        match t.text.as_str() {
            "level" => {
                let v = v()?;
                s.level = match v.text.as_str() {
                    "user" => StatsLevel::User,
                    "operator" => StatsLevel::Operator,
                    "admin" => StatsLevel::Admin,
                    _ => {
                        return Err(p.err_hint(
                            l.no,
                            v,
                            format!(
                                "'level' only supports 'user', 'operator' and 'admin' (got '{}')",
                                v.text
                            ),
                            suggest(&v.text, ["user", "operator", "admin"]),
                        ))
                    }
                };
                i += 2;
            }
            "mode" => {
                let v = v()?;
                let m = u32::from_str_radix(&v.text, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        p.err(
                            l.no,
                            v,
                            format!("'mode' expects an octal mode, got '{}'", v.text),
                        )
                    })?;
                s.mode = Some(m);
                i += 2;
            }
            "uid" | "gid" => {
                let v = v()?;
                let n = parse_u32(&v.text, 0)
                    .map_err(|m| p.err(l.no, v, format!("invalid '{}': {m}", t.text)))?;
                if t.text == "uid" {
                    s.uid = Some(n);
                } else {
                    s.gid = Some(n);
                }
                i += 2;
            }
            "user" => {
                let v = v()?;
                s.uid = Some(p.sys.user(&v.text).ok_or_else(|| {
                    p.err(l.no, v, format!("cannot find user id for '{}'", v.text))
                })?);
                i += 2;
            }
            "group" => {
                let v = v()?;
                s.gid = Some(p.sys.group(&v.text).ok_or_else(|| {
                    p.err(l.no, v, format!("cannot find group id for '{}'", v.text))
                })?);
                i += 2;
            }
            "expose-fd" => {
                let v = v()?;
                if v.text != "listeners" {
                    return Err(p.err(l.no, v, "'expose-fd' only supports 'listeners'"));
                }
                s.expose_fd_listeners = true;
                i += 2;
            }
            "severity-output" => {
                let v = v()?;
                if !["none", "number", "string"].contains(&v.text.as_str()) {
                    return Err(p.err(
                        l.no,
                        v,
                        "'severity-output' only supports 'none', 'number' and 'string'",
                    ));
                }
                s.severity_output = Some(v.text.clone());
                i += 2;
            }
            "name" | "maxconn" | "backlog" | "process" | "thread" | "nice" | "id" | "interface"
            | "namespace" => {
                let v = v()?;
                s.other.push(format!("{} {}", t.text, v.text));
                i += 2;
            }
            "accept-proxy" | "v4v6" | "v6only" | "transparent" | "defer-accept" | "tfo" => {
                s.other.push(t.text.clone());
                i += 1;
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    t,
                    format!("unknown 'stats socket' parameter '{}'", t.text),
                    suggest(
                        &t.text,
                        [
                            "level",
                            "mode",
                            "uid",
                            "gid",
                            "user",
                            "group",
                            "expose-fd",
                            "severity-output",
                            "name",
                            "maxconn",
                        ],
                    ),
                ))
            }
        }
    }
    Ok(s)
}
