//! `defaults`, `frontend`, `backend` and `listen` keywords: the table of
//! proxy keywords (with `option`, `timeout` and `balance`) and their handlers.

use super::*;

pub(super) const PROXY_KWS: &[Kw<Act>] = &[
    // Parsed.
    kw("mode", ANY, Act::Run(p_mode)),
    kw("data-path", DEF | FE, Act::Run(p_data_path)),
    kw("timeout", ANY, Act::Run(p_timeout)),
    kw("balance", DEF | BE, Act::Run(p_balance)),
    kw("hash-type", DEF | BE, Act::Run(p_hash_type)),
    kw("retries", DEF | BE, Act::Run(p_retries)),
    kw("maxconn", DEF | FE, Act::Run(p_maxconn)),
    kw("backlog", DEF | FE, Act::Run(p_backlog)),
    kw("fullconn", DEF | BE, Act::Run(p_fullconn)),
    kw(
        "load-server-state-from-file",
        DEF | BE,
        Act::Run(p_load_server_state),
    ),
    kw(
        "server-state-file-name",
        DEF | BE,
        Act::Run(p_server_state_file_name),
    ),
    kw("option", ANY, Act::Run(p_option)),
    kw("default-server", DEF | BE, Act::Run(p_default_server)),
    kw("bind", FE, Act::Run(p_bind)),
    kw("default_backend", DEF | FE, Act::Run(p_default_backend)),
    kw("use_backend", FE, Act::Run(p_use_backend)),
    kw("server", BE, Act::Run(p_server)),
    kw("acl", ANY, Act::Run(p_acl)),
    kw("tcp-request", ANY, Act::Run(p_tcp_request)),
    kw("tcp-check", DEF | BE, Act::Run(p_tcp_check)),
    kw("http-check", DEF | BE, Act::Run(p_http_check)),
    kw("log", ANY, Act::Run(p_log)),
    kw("id", LISTEN, Act::Run(p_id)),
    kw("description", LISTEN, Act::Run(p_description)),
    kw("disabled", ANY, Act::Run(p_disabled)),
    kw("enabled", ANY, Act::Run(p_enabled)),
    // Accepted, recorded.
    kw("log-format", DEF | FE, Act::Other),
    kw("log-format-sd", DEF | FE, Act::Other),
    kw("error-log-format", DEF | FE, Act::Other),
    kw("log-tag", ANY, Act::Other),
    kw("clitcpka-cnt", DEF | FE, Act::Run(p_tcpka)),
    kw("clitcpka-idle", DEF | FE, Act::Run(p_tcpka)),
    kw("clitcpka-intvl", DEF | FE, Act::Run(p_tcpka)),
    kw("srvtcpka-cnt", DEF | BE, Act::Run(p_tcpka)),
    kw("srvtcpka-idle", DEF | BE, Act::Run(p_tcpka)),
    kw("srvtcpka-intvl", DEF | BE, Act::Run(p_tcpka)),
    kw("bind-process", ANY, Act::Ignore),
    // TCP features not implemented yet.
    kw("tcp-response", DEF | BE, Act::NotYet("")),
    kw("external-check", DEF | BE, Act::Run(p_external_check)),
    kw("use-server", BE, Act::Run(p_use_server)),
    kw("server-template", BE, Act::Run(p_server_template)),
    kw("stick-table", LISTEN, Act::NotYet("")),
    kw("stick", BE, Act::NotYet("")),
    kw("source", DEF | BE, Act::NotYet("")),
    kw("hash-balance-factor", DEF | BE, Act::NotYet("")),
    kw("persist", DEF | BE, Act::NotYet("")),
    kw("dispatch", BE, Act::NotYet("")),
    kw("transparent", DEF | BE, Act::NotYet("")),
    kw("rate-limit", DEF | FE, Act::Run(p_rate_limit)),
    kw("email-alert", ANY, Act::NotYet("")),
    kw("force-persist", BE, Act::Run(p_persist)),
    kw("ignore-persist", BE, Act::Run(p_persist)),
    kw("filter", LISTEN, Act::NotYet("")),
    // HTTP mode only.
    kw("http-request", ANY, Act::Http),
    kw("http-response", ANY, Act::Http),
    kw("http-after-response", ANY, Act::Http),
    kw("http-error", ANY, Act::Http),
    kw("http-reuse", ANY, Act::Http),
    kw("http-send-name-header", ANY, Act::Http),
    kw("redirect", ANY, Act::Http),
    kw("stats", ANY, Act::Run(super::stats::p_stats)),
    kw("errorfile", ANY, Act::Http),
    kw("errorfiles", ANY, Act::Http),
    kw("errorloc", ANY, Act::Http),
    kw("errorloc302", ANY, Act::Http),
    kw("errorloc303", ANY, Act::Http),
    kw("cookie", ANY, Act::Http),
    kw("dynamic-cookie-key", ANY, Act::Http),
    kw("capture", ANY, Act::Http),
    kw("declare", ANY, Act::Http),
    kw("monitor-uri", ANY, Act::Run(super::stats::p_monitor_uri)),
    kw("monitor", ANY, Act::Http),
    kw("compression", ANY, Act::Http),
    kw("unique-id-format", ANY, Act::Http),
    kw("unique-id-header", ANY, Act::Http),
    kw("max-keep-alive-queue", ANY, Act::Http),
    kw("retry-on", ANY, Act::Http),
    kw("use-fcgi-app", ANY, Act::Http),
    // Removed from HAProxy.
    kw("contimeout", ANY, Act::Removed("timeout connect")),
    kw("clitimeout", ANY, Act::Removed("timeout client")),
    kw("srvtimeout", ANY, Act::Removed("timeout server")),
    kw("redispatch", ANY, Act::Removed("option redispatch")),
    kw("reqadd", ANY, Act::Removed("http-request add-header")),
    kw("reqrep", ANY, Act::Removed("http-request replace-header")),
    kw("block", ANY, Act::Removed("http-request deny")),
];

/// What an `option` does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptAct {
    /// A flag option (maybe with an argument), recorded.
    Flag,
    /// A health-check method (`option httpchk`, ...).
    Check,
    Http,
    NotYet(&'static str),
}

/// `(name, caps, act, negatable)`: `no option X` / `default option X` only
/// for the options HAProxy marks with (*).
pub(crate) struct OptKw {
    pub name: &'static str,
    pub caps: u8,
    pub act: OptAct,
    pub negatable: bool,
}

pub(super) const fn opt(name: &'static str, caps: u8, act: OptAct, negatable: bool) -> OptKw {
    OptKw {
        name,
        caps,
        act,
        negatable,
    }
}

pub(crate) const OPTION_KWS: &[OptKw] = &[
    opt("tcplog", ANY, OptAct::Flag, false),
    opt("dontlognull", DEF | FE, OptAct::Flag, true),
    opt("dontlog-normal", DEF | FE, OptAct::Flag, true),
    opt("log-separate-errors", DEF | FE, OptAct::Flag, true),
    opt("logasap", DEF | FE, OptAct::Flag, true),
    opt("log-health-checks", DEF | BE, OptAct::Flag, true),
    opt("redispatch", DEF | BE, OptAct::Flag, true),
    opt("allbackups", DEF | BE, OptAct::Flag, true),
    opt("tcpka", ANY, OptAct::Flag, false),
    opt("clitcpka", DEF | FE, OptAct::Flag, true),
    opt("srvtcpka", DEF | BE, OptAct::Flag, true),
    opt("tcp-smart-accept", DEF | FE, OptAct::Flag, true),
    opt("tcp-smart-connect", DEF | BE, OptAct::Flag, true),
    opt("splice-auto", ANY, OptAct::Flag, true),
    opt("splice-request", ANY, OptAct::Flag, true),
    opt("splice-response", ANY, OptAct::Flag, true),
    opt("nolinger", ANY, OptAct::Flag, true),
    opt("independent-streams", ANY, OptAct::Flag, true),
    opt("abortonclose", DEF | BE, OptAct::Flag, true),
    opt("contstats", DEF | FE, OptAct::Flag, true),
    opt("socket-stats", DEF | FE, OptAct::Flag, true),
    opt("persist", DEF | BE, OptAct::NotYet(""), true),
    opt("transparent", DEF | BE, OptAct::NotYet(""), true),
    opt("tcp-check", DEF | BE, OptAct::Check, false),
    opt("httpchk", DEF | BE, OptAct::Check, false),
    opt("ssl-hello-chk", DEF | BE, OptAct::Check, false),
    opt("smtpchk", DEF | BE, OptAct::Check, false),
    opt("mysql-check", DEF | BE, OptAct::Check, false),
    opt("pgsql-check", DEF | BE, OptAct::Check, false),
    opt("pgsql-role-check", DEF | BE, OptAct::Check, false),
    opt("redis-check", DEF | BE, OptAct::Check, false),
    opt("ldap-check", DEF | BE, OptAct::Check, false),
    opt("spop-check", DEF | BE, OptAct::Check, false),
    opt("external-check", DEF | BE, OptAct::Check, false),
    opt("forwardfor", ANY, OptAct::Http, false),
    opt("forwarded", ANY, OptAct::Http, false),
    opt("originalto", ANY, OptAct::Http, false),
    opt("httplog", ANY, OptAct::Http, false),
    opt("httpslog", ANY, OptAct::Http, false),
    opt("httpclose", ANY, OptAct::Http, true),
    opt("forceclose", ANY, OptAct::Http, true),
    opt("http-server-close", ANY, OptAct::Http, true),
    opt("http-keep-alive", ANY, OptAct::Http, true),
    opt("http-buffer-request", ANY, OptAct::Http, true),
    opt("http-pretend-keepalive", ANY, OptAct::Http, true),
    opt("http-no-delay", ANY, OptAct::Http, true),
    opt("http-use-proxy-header", ANY, OptAct::Http, true),
    opt("http-ignore-probes", ANY, OptAct::Http, true),
    opt("http-restrict-req-hdr-names", ANY, OptAct::Http, false),
    opt("http-use-htx", ANY, OptAct::Http, true),
    opt("accept-invalid-http-request", ANY, OptAct::Http, true),
    opt("accept-invalid-http-response", ANY, OptAct::Http, true),
    opt("h1-case-adjust-bogus-client", ANY, OptAct::Http, true),
    opt("h1-case-adjust-bogus-server", ANY, OptAct::Http, true),
    opt("checkcache", ANY, OptAct::Http, true),
    opt("prefer-last-server", ANY, OptAct::Http, true),
    opt("disable-h2-upgrade", ANY, OptAct::Http, true),
    opt("idle-close-on-response", ANY, OptAct::Http, true),
];

/// Where a `timeout` goes.
#[derive(Clone, Copy)]
pub(super) enum TSlot {
    Client,
    Connect,
    Server,
    ClientFin,
    ServerFin,
    Queue,
    Check,
    Tunnel,
    Http,
}

pub(super) const TIMEOUT_KWS: &[Kw<TSlot>] = &[
    kw("client", DEF | FE, TSlot::Client),
    kw("connect", DEF | BE, TSlot::Connect),
    kw("server", DEF | BE, TSlot::Server),
    kw("queue", DEF | BE, TSlot::Queue),
    kw("check", DEF | BE, TSlot::Check),
    kw("tunnel", DEF | BE, TSlot::Tunnel),
    kw("client-fin", DEF | FE, TSlot::ClientFin),
    kw("server-fin", DEF | BE, TSlot::ServerFin),
    kw("http-request", ANY, TSlot::Http),
    kw("http-keep-alive", ANY, TSlot::Http),
    kw("tarpit", ANY, TSlot::Http),
];

#[derive(Clone, Copy)]
pub(super) enum BalAct {
    Algo(Balance),
    Random,
    NotYet,
    Http,
}

pub(super) const BALANCE_KWS: &[Kw<BalAct>] = &[
    kw("roundrobin", ALL, BalAct::Algo(Balance::RoundRobin)),
    kw("static-rr", ALL, BalAct::Algo(Balance::StaticRr)),
    kw("leastconn", ALL, BalAct::Algo(Balance::LeastConn)),
    kw("first", ALL, BalAct::Algo(Balance::First)),
    kw("source", ALL, BalAct::Algo(Balance::Source)),
    kw("random", ALL, BalAct::Random),
    kw("hash", ALL, BalAct::NotYet),
    kw("rdp-cookie", ALL, BalAct::NotYet),
    kw("uri", ALL, BalAct::Http),
    kw("url_param", ALL, BalAct::Http),
    kw("hdr", ALL, BalAct::Http),
];

// ---------------------------------------------------------------------------
// Proxy keywords (defaults, frontend, backend, listen).

pub(super) fn p_mode(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let m = p.arg(l, 0, "'tcp' as an argument")?;
    p.no_more(l, 1, "mode")?;
    match m.text.as_str() {
        "tcp" => {
            p.settings(l)?.mode_http = None;
            Ok(())
        }
        "http" => {
            // Fine in a `defaults` whose proxies all say `mode tcp`: only a
            // proxy left in HTTP mode is refused, once the file is read.
            let origin = p.origin(l.no);
            p.settings(l)?.mode_http = Some(origin);
            Ok(())
        }
        "log" | "spop" | "health" => Err(p.err(
            l.no,
            m,
            format!(
                "'mode {}' is not supported (this load balancer only offers 'mode tcp')",
                m.text
            ),
        )),
        _ => Err(p.err_hint(
            l.no,
            m,
            format!("unknown proxy mode '{}' (expected 'tcp')", m.text),
            suggest(&m.text, ["tcp", "http"]),
        )),
    }
}

pub(super) fn p_timeout(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = p.arg(
        l,
        0,
        "a timeout name ('client', 'connect', 'server'...) and a time",
    )?;
    let Some(k) = lookup(TIMEOUT_KWS, &name.text) else {
        let hint = suggest(&name.text, TIMEOUT_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(l.no, name, format!("unknown timeout '{}'", name.text), hint));
    };
    let what = format!("timeout {}", k.name);
    let v = p.arg(l, 1, "a timeout name and a time (e.g. 30s)")?;
    p.no_more(l, 2, &what)?;
    let d = parse_time(&v.text).map_err(|m| p.err(l.no, v, format!("invalid '{what}': {m}")))?;
    if let Some(w) = time_trailing(&v.text) {
        p.warn(l.no, w);
    }
    if let TSlot::Http = k.act {
        return p.http_only(l, &what, super::HttpNote::Silent);
    }
    if p.warn_caps(l, k.caps, &what) {
        return Ok(());
    }
    // As HAProxy, 0 is no timeout.
    let d = (!d.is_zero()).then_some(d);
    let origin = p.origin(l.no);
    let located = d.map(|value| Located { value, origin });
    let s = p.settings(l)?;
    match k.act {
        TSlot::Client => s.timeout_client = d,
        TSlot::Connect => s.timeout_connect = d,
        TSlot::Server => s.timeout_server = d,
        TSlot::ClientFin => s.timeout_client_fin = located,
        TSlot::ServerFin => s.timeout_server_fin = located,
        TSlot::Queue => s.timeout_queue = located,
        TSlot::Check => s.timeout_check = located,
        TSlot::Tunnel => s.timeout_tunnel = located,
        TSlot::Http => {}
    }
    Ok(())
}

pub(super) fn p_balance(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let a = p.arg(
        l,
        0,
        "an algorithm ('roundrobin', 'leastconn'...) as an argument",
    )?;
    // `hdr(name)`, `rdp-cookie(name)`, `random(2)`: the algorithm is before '('.
    let (algo, paren) = match a.text.split_once('(') {
        Some((algo, rest)) => (algo, Some(rest)),
        None => (a.text.as_str(), None),
    };
    let Some(k) = lookup(BALANCE_KWS, algo) else {
        let hint = suggest(algo, BALANCE_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(
            l.no,
            a,
            format!("unknown load balancing algorithm '{}'", a.text),
            hint,
        ));
    };
    let what = format!("balance {}", k.name);
    let balance = match k.act {
        BalAct::Http => return Err(p.http_err(l.no, a, &what)),
        BalAct::NotYet => return Err(p.not_yet_err(l.no, a, &what, "")),
        BalAct::Algo(b) => {
            if paren.is_some() {
                return Err(p.err(
                    l.no,
                    a,
                    format!("'{what}' takes no argument in parentheses"),
                ));
            }
            b
        }
        BalAct::Random => {
            let draws = match paren {
                None => 2,
                Some(rest) => {
                    let n = rest.strip_suffix(')').ok_or_else(|| {
                        p.err(
                            l.no,
                            a,
                            "balance random: missing ')' after the number of draws",
                        )
                    })?;
                    let n = parse_u32(n, 0)
                        .map_err(|m| p.err(l.no, a, format!("balance random: {m}")))?;
                    if n == 0 {
                        return Err(p.err(
                            l.no,
                            a,
                            "balance random: the number of draws must be at least 1",
                        ));
                    }
                    n
                }
            };
            Balance::Random { draws }
        }
    };
    p.no_more(l, 1, &what)?;
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.balance = balance;
    s.balance_origin = Some(origin);
    Ok(())
}

pub(super) fn p_hash_type(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let m = p.arg(l, 0, "'map-based' or 'consistent' as an argument")?;
    let method = match m.text.as_str() {
        "map-based" => HashMethod::MapBased,
        "consistent" => HashMethod::Consistent,
        _ => {
            return Err(p.err_hint(
                l.no,
                m,
                format!(
                    "unknown hash method '{}' (expected 'map-based' or 'consistent')",
                    m.text
                ),
                suggest(&m.text, ["map-based", "consistent"]),
            ))
        }
    };
    let mut ht = HashType {
        method,
        function: HashFunction::Sdbm,
        // As documented, consistent hashing without a function is sdbm with avalanche.
        avalanche: method == HashMethod::Consistent && l.args.len() == 1,
    };
    if let Some(f) = l.args.get(1) {
        ht.function = match f.text.as_str() {
            "sdbm" => HashFunction::Sdbm,
            "djb2" => HashFunction::Djb2,
            "wt6" => HashFunction::Wt6,
            "crc32" => HashFunction::Crc32,
            "avalanche" => {
                return Err(p.err(
                    l.no,
                    f,
                    "'avalanche' is a modifier: it follows a hash function \
                     (e.g. 'hash-type consistent sdbm avalanche')",
                ))
            }
            _ => {
                return Err(p.err_hint(
                    l.no,
                    f,
                    format!(
                        "unknown hash function '{}' (expected 'sdbm', 'djb2', 'wt6' or 'crc32')",
                        f.text
                    ),
                    suggest(&f.text, ["sdbm", "djb2", "wt6", "crc32"]),
                ))
            }
        };
    }
    if let Some(m) = l.args.get(2) {
        if m.text != "avalanche" {
            return Err(p.err(
                l.no,
                m,
                format!("unknown hash modifier '{}' (expected 'avalanche')", m.text),
            ));
        }
        ht.avalanche = true;
    }
    p.no_more(l, 3, "hash-type")?;
    let origin = p.origin(l.no);
    p.settings(l)?.hash_type = Some(Located { value: ht, origin });
    Ok(())
}

pub(super) fn located_u32(
    p: &Parser<'_>,
    l: &Line,
    min: u32,
    what: &str,
) -> Result<Located<u32>, ConfigError> {
    let v = p.arg(l, 0, "<number> as an argument")?;
    p.no_more(l, 1, what)?;
    let n =
        parse_u32(&v.text, min).map_err(|m| p.err(l.no, v, format!("invalid '{what}': {m}")))?;
    Ok(Located {
        value: n,
        origin: p.origin(l.no),
    })
}

pub(super) fn p_retries(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "retries")?;
    p.settings(l)?.retries = Some(v);
    Ok(())
}

pub(super) fn p_load_server_state(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "one of 'global', 'local' or 'none' as an argument")?;
    p.no_more(l, 1, &l.kw.text)?;
    let mode = match v.text.as_str() {
        "global" => LoadServerState::Global,
        "local" => LoadServerState::Local,
        "none" => LoadServerState::None,
        other => {
            return Err(p.err(
                l.no,
                v,
                format!(
                    "'{}' expects 'global', 'local' or 'none'. Got '{other}'",
                    l.kw.text
                ),
            ))
        }
    };
    p.settings(l)?.load_server_state = Some(Located {
        value: mode,
        origin: p.origin(l.no),
    });
    Ok(())
}

pub(super) fn p_server_state_file_name(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = match l.args.first() {
        None => StateFileName::BackendName,
        Some(v) if v.text == "use-backend-name" => StateFileName::BackendName,
        Some(v) if v.text.is_empty() => {
            return Err(p.err(l.no, v, format!("'{}' expects a file name", l.kw.text)))
        }
        Some(v) => StateFileName::File(std::path::PathBuf::from(&v.text)),
    };
    p.no_more(l, 1, &l.kw.text)?;
    p.settings(l)?.server_state_file_name = Some(Located {
        value: name,
        origin: p.origin(l.no),
    });
    Ok(())
}

pub(super) fn p_fullconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "fullconn")?;
    p.settings(l)?.fullconn = Some(v);
    Ok(())
}

/// `data-path [splice|copy|nat] [connect [cgroup PATH]]`: lb's own keyword
/// (HAProxy has none), so a configuration that uses it no longer runs on
/// HAProxy. The first word is how remote clients' connections move (splice
/// by default); `connect` adds connect-time balancing for this host's own
/// clients (in the root cgroup, or the one named).
pub(super) fn p_data_path(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    const WANT: &str = "'splice', 'copy', 'nat' or 'connect'";
    let v = p.arg(l, 0, &format!("{WANT} as an argument"))?;
    let (value, mut next) = match v.text.as_str() {
        "splice" => (DataPath::Splice, 1),
        "copy" => (DataPath::Copy, 1),
        "nat" => (DataPath::Nat, 1),
        "connect" => (DataPath::Splice, 0),
        other => {
            return Err(p.err(
                l.no,
                v,
                format!("unknown data path '{other}' (expected {WANT})"),
            ))
        }
    };
    let mut connect = None;
    if let Some(w) = l.args.get(next) {
        if w.text != "connect" {
            return Err(p.err(
                l.no,
                w,
                format!(
                    "unexpected '{}' after 'data-path {}' (expected 'connect')",
                    w.text, v.text
                ),
            ));
        }
        next += 1;
        let mut cgroup = None;
        if let Some(c) = l.args.get(next) {
            if c.text != "cgroup" {
                return Err(p.err(
                    l.no,
                    c,
                    format!(
                        "unexpected '{}' after 'connect' (expected 'cgroup PATH')",
                        c.text
                    ),
                ));
            }
            let path = p.arg(l, next + 1, "a cgroup v2 directory after 'cgroup'")?;
            if !path.text.starts_with('/') {
                return Err(p.err(
                    l.no,
                    path,
                    format!("cgroup '{}' must be an absolute path", path.text),
                ));
            }
            cgroup = Some(path.text.clone());
            next += 2;
        }
        connect = Some(Located {
            value: ConnectPath { cgroup },
            origin: p.origin(l.no),
        });
    }
    p.no_more(l, next, "data-path")?;
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.data_path = Some(Located { value, origin });
    s.connect = connect;
    Ok(())
}

/// `clitcpka-idle|intvl <time>` (seconds unless a unit says otherwise) and
/// `clitcpka-cnt <n>`, and the `srvtcpka-*` ones.
pub(super) fn p_tcpka(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let name = l.kw.text.as_str();
    let v = p.arg(l, 0, "a value")?;
    p.no_more(l, 1, name)?;
    let n = if name.ends_with("-cnt") {
        parse_u32(&v.text, 0).map_err(|m| p.err(l.no, v, format!("invalid '{name}': {m}")))?
    } else {
        parse_time_secs(&v.text).map_err(|m| p.err(l.no, v, format!("invalid '{name}': {m}")))?
    };
    let s = p.settings(l)?;
    let ka = if name.starts_with("cli") {
        &mut s.clitcpka
    } else {
        &mut s.srvtcpka
    };
    let slot = match name.rsplit('-').next() {
        Some("idle") => &mut ka.idle_s,
        Some("intvl") => &mut ka.intvl_s,
        _ => &mut ka.cnt,
    };
    // 0 leaves the kernel's default, as HAProxy skips the setsockopt.
    *slot = (n > 0).then_some(n);
    Ok(())
}

/// `rate-limit sessions <rate>`.
pub(super) fn p_rate_limit(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let what = p.arg(l, 0, "'sessions' and a rate")?;
    if what.text != "sessions" {
        return Err(p.err(
            l.no,
            what,
            format!("'rate-limit' supports 'sessions', not '{}'", what.text),
        ));
    }
    let v = p.arg(l, 1, "a rate (sessions per second)")?;
    p.no_more(l, 2, "rate-limit sessions")?;
    let n = parse_u32(&v.text, 0)
        .map_err(|m| p.err(l.no, v, format!("invalid 'rate-limit sessions': {m}")))?;
    let origin = p.origin(l.no);
    p.settings(l)?.rate_limit_sessions = Some(Located { value: n, origin });
    Ok(())
}

pub(super) fn p_backlog(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = located_u32(p, l, 0, "backlog")?;
    p.settings(l)?.backlog = Some(v);
    Ok(())
}

pub(super) fn p_maxconn(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    // HAProxy reads a negative maxconn as an int that the unsigned session
    // count never reaches: no limit.
    if let Some(t) = l.args.first().filter(|t| t.text.starts_with('-')) {
        if parse_int(&t.text, i64::from(i32::MIN), -1).is_ok() {
            p.no_more(l, 1, "maxconn")?;
            let s = p.settings(l)?;
            s.maxconn = None;
            s.maxconn_origin = None;
            return Ok(());
        }
    }
    let v = located_u32(p, l, 1, "maxconn")?;
    let s = p.settings(l)?;
    s.maxconn = Some(v.value);
    s.maxconn_origin = Some(v.origin);
    Ok(())
}

pub(super) fn p_option(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let o = p.arg(l, 0, "an option name as an argument")?;
    let Some(k) = OPTION_KWS.iter().find(|k| k.name == o.text) else {
        let hint = suggest(&o.text, OPTION_KWS.iter().map(|k| k.name));
        return Err(p.err_hint(l.no, o, format!("unknown option '{}'", o.text), hint));
    };
    let what = format!("option {}", k.name);
    match k.act {
        OptAct::Http => return p.http_only(l, &what, super::HttpNote::for_option(k.name)),
        OptAct::NotYet(hint) => return Err(p.not_yet_err(l.no, o, &what, hint)),
        OptAct::Check => return super::checks::option_check(p, l, k.name),
        OptAct::Flag => {}
    }
    let mut arg = None;
    if k.name == "redispatch" {
        if let Some(v) = l.args.get(1) {
            let n = parse_int(&v.text, i64::from(i32::MIN), i64::from(i32::MAX))
                .map_err(|m| p.err(l.no, v, format!("invalid '{what}' interval: {m}")))?;
            // Both bounds are i32's.
            arg = Some(n as i32);
        }
        p.no_more(l, 2, &what)?;
    } else {
        p.no_more(l, 1, &what)?;
    }
    if p.warn_caps(l, k.caps, &what) {
        return Ok(());
    }
    let origin = p.origin(l.no);
    let s = p.settings(l)?;
    s.options.retain(|x| x.name != k.name);
    s.options.push(OptSet {
        name: k.name,
        origin,
        arg,
    });
    Ok(())
}

pub(super) fn p_default_backend(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let b = p.arg(l, 0, "<backend name> as an argument")?;
    p.no_more(l, 1, "default_backend")?;
    p.check_name(l.no, b, "backend")?;
    let sp = p.spanned(l.no, b);
    p.settings(l)?.default_backend = Some(sp);
    Ok(())
}

pub(super) fn p_use_backend(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let b = p.arg(l, 0, "<backend name> [{if | unless} <condition>]")?;
    if b.text.contains("%[") || b.text.contains('%') {
        return Err(p.not_yet_err(
            l.no,
            b,
            "use_backend with a log-format (dynamic) backend name",
            "",
        ));
    }
    p.check_name(l.no, b, "backend")?;
    let cond = match l.args.get(1) {
        None => None,
        Some(_) => Some(super::acl::parse_condition(p, l, 1, "use_backend")?),
    };
    let backend = p.spanned(l.no, b);
    let origin = p.origin(l.no);
    let proxy = p.proxy(l)?;
    let idx = proxy.use_backends.len();
    proxy.use_backends.push(UseDraft {
        backend,
        cond,
        origin,
    });
    proxy.pending.push(PendingCond::UseBackend(idx));
    Ok(())
}

/// `use-server <server> if|unless <condition>` (a condition is required).
pub(super) fn p_use_server(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let srv = p.arg(l, 0, "a server name")?;
    if srv.text.contains('%') {
        return Err(p.not_yet_err(
            l.no,
            srv,
            "use-server with a log-format (dynamic) server name",
            "",
        ));
    }
    if !matches!(
        l.args.get(1).map(|t| t.text.as_str()),
        Some("if" | "unless")
    ) {
        let at = l.args.get(1).unwrap_or(srv);
        return Err(p.err(
            l.no,
            at,
            "'use-server' requires either 'if' or 'unless' followed by a condition".to_string(),
        ));
    }
    let cond = super::acl::parse_condition(p, l, 1, "use-server")?;
    let name = p.spanned(l.no, srv);
    let origin = p.origin(l.no);
    let proxy = p.proxy(l)?;
    proxy
        .pending
        .push(PendingCond::UseServer(proxy.use_servers.len()));
    proxy.use_servers.push((name, cond, origin));
    Ok(())
}

/// `force-persist|ignore-persist if|unless <condition>`.
pub(super) fn p_persist(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let what = l.kw.text.clone();
    if !matches!(
        l.args.first().map(|t| t.text.as_str()),
        Some("if" | "unless")
    ) {
        return Err(p.err(
            l.no,
            l.args.first().unwrap_or(&l.kw),
            format!("'{what}' requires either 'if' or 'unless' followed by a condition"),
        ));
    }
    let cond = super::acl::parse_condition(p, l, 0, &what)?;
    let origin = p.origin(l.no);
    let proxy = p.proxy(l)?;
    proxy
        .pending
        .push(PendingCond::Persist(proxy.persist_rules.len()));
    proxy.persist_rules.push(PersistRule {
        force: what == "force-persist",
        cond,
        origin,
    });
    Ok(())
}

pub(super) fn p_id(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let v = p.arg(l, 0, "a positive number as an argument")?;
    p.no_more(l, 1, "id")?;
    let n = parse_u32(&v.text, 1).map_err(|m| p.err(l.no, v, format!("invalid 'id': {m}")))?;
    let origin = p.origin(l.no);
    let col = v.col;
    p.proxy(l)?.id = Some((Located { value: n, origin }, col));
    Ok(())
}

pub(super) fn p_description(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.arg(l, 0, "a string as an argument")?;
    let text: Vec<&str> = l.args.iter().map(|t| t.text.as_str()).collect();
    p.proxy(l)?.description = Some(text.join(" "));
    Ok(())
}

pub(super) fn p_disabled(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.no_more(l, 0, "disabled")?;
    let origin = p.origin(l.no);
    p.settings(l)?.disabled = Some(origin);
    Ok(())
}

pub(super) fn p_enabled(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    p.no_more(l, 0, "enabled")?;
    p.settings(l)?.disabled = None;
    Ok(())
}

pub(super) fn p_log(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let first = p.arg(
        l,
        0,
        "'global' or <address> [len <n>] [format <f>] <facility> [level [minlevel]]",
    )?;
    let origin = p.origin(l.no);
    let value = if first.text == "global" {
        p.no_more(l, 1, "log global")?;
        ProxyLog::Global
    } else {
        ProxyLog::Target(super::global::parse_log_target(p, l)?)
    };
    p.settings(l)?.logs.push(Located { value, origin });
    Ok(())
}

pub(super) fn p_acl(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::acl::p_acl(p, l)
}

pub(super) fn p_tcp_request(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::acl::p_tcp_request(p, l)
}

pub(super) fn p_tcp_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::checks::p_tcp_check(p, l)
}

pub(super) fn p_http_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    super::checks::p_http_check(p, l)
}

/// `external-check command <cmd>` / `external-check path <PATH>`.
pub(super) fn p_external_check(p: &mut Parser<'_>, l: &Line) -> Result<(), ConfigError> {
    let what = p.arg(l, 0, "'command' or 'path' as an argument")?;
    let which = what.text.clone();
    let v = p.arg(l, 1, &format!("a value after 'external-check {which}'"))?;
    let v = v.text.clone();
    p.no_more(l, 2, "external-check")?;
    let s = p.settings(l)?;
    match which.as_str() {
        "command" => s.external_check_command = Some(v),
        "path" => s.external_check_path = Some(v),
        _ => {
            return Err(p.err_hint(
                l.no,
                what,
                format!("'external-check' expects 'command' or 'path', not '{which}'"),
                suggest(&which, ["command", "path"]),
            ))
        }
    }
    Ok(())
}
