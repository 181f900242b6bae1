//! Once every file is read: the cross checks (bind conflicts, names, ids,
//! references) and the [`Config`] model.
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use super::*;

// ---------------------------------------------------------------------------
// Cross checks and the model.

/// What a bind listens on, for conflict detection: `(kind, addr)` with kind 0
/// for IPv4 any, 1 for IPv6 any, 2 for a specific address.
pub(super) type BindKey = (u8, IpAddr, Option<String>);

pub(super) struct BindSlot {
    key: BindKey,
    first: u16,
    last: u16,
    origin: Origin,
    col: usize,
    text: String,
    frontend: usize,
    /// This IPv4-any slot comes from a dual-stack `::`.
    dual: bool,
}

pub(super) fn invalid_at(sp: &Spanned, msg: String, hint: Option<String>) -> ConfigError {
    ConfigError::Invalid {
        file: sp.origin.file.clone(),
        line: sp.origin.line,
        col: sp.col,
        msg,
        near: near(&sp.text),
        hint,
    }
}

impl Parser<'_> {
    pub(crate) fn finish(mut self) -> Result<Config, ConfigError> {
        self.close_section()?;
        if !self.proxies.iter().any(|p| p.caps & FE != 0) {
            return Err(ConfigError::File {
                file: self.file.clone(),
                msg: "no 'frontend' or 'listen' section: nothing to do".into(),
            });
        }
        self.check_defaults_use()?;
        self.check_ids()?;

        let mut proxies = std::mem::take(&mut self.proxies);
        let mut stats_pages = Vec::new();
        let mut keep = Vec::new();
        for mut p in proxies.drain(..) {
            if let Some(page) = self.http_mode_check(&mut p)? {
                stats_pages.push(page);
                continue;
            }
            self.resolve_servers(&mut p)?;
            self.external_check_needs(&p)?;
            keep.push(p);
        }
        let proxies = keep;
        if !proxies.iter().any(|p| p.caps & FE != 0) {
            return Err(ConfigError::File {
                file: self.file.clone(),
                msg: "no 'frontend' or 'listen' section carries traffic (only stats pages): \
                      nothing to do"
                    .into(),
            });
        }
        let mut backends = Vec::new();
        let mut backend_idx: HashMap<&str, usize> = HashMap::new();
        for p in proxies.iter().filter(|p| p.caps & BE != 0) {
            backend_idx.insert(&p.name.text, backends.len());
            backends.push(self.backend(p)?);
        }

        let mut frontends = Vec::new();
        let mut slots = Vec::new();
        for p in proxies.iter().filter(|p| p.caps & FE != 0) {
            if p.binds.is_empty() {
                return Err(invalid_at(
                    &p.name,
                    format!(
                        "{} '{}' has no 'bind' directive (declare it as a 'backend' if this was intended)",
                        p.kind(),
                        p.name.text
                    ),
                    None,
                ));
            }
            let find_backend = |t: &Spanned, what: &str| match backend_idx.get(t.text.as_str()) {
                Some(&i) => Ok(i),
                None => {
                    let hint = suggest(&t.text, backend_idx.keys().copied());
                    Err(invalid_at(
                        t,
                        format!(
                            "{} '{}': '{what}' names unknown backend '{}'",
                            p.kind(),
                            p.name.text,
                            t.text
                        ),
                        hint,
                    ))
                }
            };
            // A listen section is its own default backend, unless told otherwise.
            let target = match (&p.s.default_backend, p.caps & BE != 0) {
                (Some(d), _) => Some(d.clone()),
                (None, true) => Some(p.name.clone()),
                (None, false) => None,
            };
            let idx = match &target {
                Some(t) => Some(find_backend(t, "default_backend")?),
                None => None,
            };
            let mut use_backends = Vec::new();
            for u in &p.use_backends {
                let i = find_backend(&u.backend, "use_backend")?;
                use_backends.push(UseBackend {
                    backend: u.backend.text.clone(),
                    backend_idx: i,
                    cond: u.cond.clone(),
                    origin: u.origin.clone(),
                });
            }
            if idx.is_none() {
                let msg = if use_backends.is_empty() {
                    format!(
                        "frontend '{}' has no 'default_backend': its connections will be closed",
                        p.name.text
                    )
                } else {
                    format!(
                        "frontend '{}' has no 'default_backend': connections no 'use_backend' \
                         rule matches will be closed",
                        p.name.text
                    )
                };
                self.warn_at(&p.name.origin, msg);
            }
            // `bind *:P` beside `bind :::P`: HAProxy listens on both, the
            // IPv4 wildcard taking IPv4. So the `::` bind is IPv6 only here
            // (its socket too), instead of conflicting with its neighbour.
            let v4_any = |b: &Bind| {
                p.binds.iter().any(|(o, _, _)| {
                    o.addr
                        .is_none_or(|a| a == IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                        && o.interface == b.interface
                        && o.port_first <= b.port_last
                        && b.port_first <= o.port_last
                })
            };
            let binds: Vec<(Bind, usize, String)> = p
                .binds
                .iter()
                .map(|(b, col, text)| {
                    let mut b = b.clone();
                    if b.addr.is_some_and(|a| a.is_ipv6() && a.is_unspecified()) && v4_any(&b) {
                        b.v6only = true;
                    }
                    (b, *col, text.clone())
                })
                .collect();
            for (b, col, text) in &binds {
                let mut push = |key: BindKey, dual: bool| {
                    slots.push(BindSlot {
                        key,
                        first: b.port_first,
                        last: b.port_last,
                        origin: b.origin.clone(),
                        col: *col,
                        text: text.clone(),
                        frontend: frontends.len(),
                        dual,
                    })
                };
                let dev = b.interface.clone();
                match b.addr {
                    None => push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), dev), false),
                    Some(ip @ IpAddr::V6(v6)) if v6.is_unspecified() => {
                        push((1, ip, dev.clone()), false);
                        if !b.v6only {
                            push((0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), dev), true);
                        }
                    }
                    Some(ip) => push((2, ip, dev), false),
                }
            }
            let opt = |name: &str| p.s.option(name).map(|o| o.origin.clone());
            let inspects = !p.content_rules.is_empty()
                || use_backends
                    .iter()
                    .any(|u| u.cond.as_ref().is_some_and(|c| c.needs_content()));
            frontends.push(Frontend {
                name: p.name.text.clone(),
                data_path: p.s.data_path.clone(),
                connect: p.s.connect.clone(),
                binds: binds.iter().map(|(b, _, _)| b.clone()).collect(),
                default_backend: target.map(|t| t.text),
                default_backend_idx: idx,
                timeout_client: p.s.timeout_client,
                maxconn: p.s.maxconn,
                origin: p.name.origin.clone(),
                maxconn_origin: p.s.maxconn_origin.clone(),
                use_backends,
                tcp_request_connection: p.tcp_rules.clone(),
                inspect_delay: p.s.inspect_delay.as_ref().map(|d| d.value),
                tcp_request_content: p.content_rules.clone(),
                inspects,
                acls: p.acls.clone(),
                backlog: p.s.backlog.clone(),
                timeout_client_fin: p.s.timeout_client_fin.clone(),
                clitcpka: opt("clitcpka").or_else(|| opt("tcpka")),
                clitcpka_tune: p.s.clitcpka,
                rate_limit_sessions: p.s.rate_limit_sessions.clone(),
                logs: p.s.logs.clone(),
                tcplog: opt("tcplog"),
                dontlognull: opt("dontlognull"),
                disabled: p.s.disabled.clone(),
                id: p.id.as_ref().map(|(v, _)| v.clone()),
                description: p.description.clone(),
                other: other_settings(&p.s, FE),
            });
        }

        self.check_bind_conflicts(&mut slots, &frontends)?;
        crate::config::limits::capacity(&frontends, &backends)?;

        for p in &proxies {
            let fe_missing = p.caps & FE != 0 && p.s.timeout_client.is_none();
            let be_missing =
                p.caps & BE != 0 && (p.s.timeout_connect.is_none() || p.s.timeout_server.is_none());
            if fe_missing || be_missing {
                let kind = if p.caps == LISTEN { "proxy" } else { p.kind() };
                self.warn_at(
                    &p.name.origin,
                    format_args!(
                        "missing timeouts for {kind} '{}'. While not properly invalid, you will \
                         certainly encounter various problems with such a configuration. To fix \
                         this, please ensure that all following timeouts are set to a non-zero \
                         value: 'client', 'connect', 'server'.",
                        p.name.text
                    ),
                );
            }
            if p.caps & BE != 0 {
                self.backend_warnings(p);
            }
        }

        let cfg = Config {
            stats_pages,
            global: self.global,
            frontends,
            backends,
            resolvers: self.resolvers,
            warnings: self.warnings,
        };
        crate::config::limits::self_steering(&cfg, &crate::config::always_local)?;
        crate::config::nat::check(&cfg)?;
        Ok(cfg)
    }

    /// The servers of `p`, their `resolvers` checked, their `check-ssl`
    /// settings resolved against the
    /// global ones (`ssl-server-verify`, `ca-base`), refused as HAProxy
    /// refuses them: verifying without a CA file to verify against.
    fn servers_resolved(&self, p: &Proxy) -> Result<Vec<Server>, ConfigError> {
        let mut out = Vec::new();
        for d in &p.servers {
            let mut s = d.server.clone();
            if let Some(r) = &s.params.resolvers {
                if !self.resolvers.iter().any(|x| x.name == *r) {
                    return Err(ConfigError::Invalid {
                        file: s.origin.file.clone(),
                        line: s.origin.line,
                        col: 1,
                        msg: format!(
                            "{} '{}', server '{}': unable to find required resolvers '{r}'",
                            p.kind(),
                            p.name.text,
                            s.name
                        ),
                        near: r.clone(),
                        hint: suggest(r, self.resolvers.iter().map(|x| x.name.as_str())),
                    });
                }
            }
            let tls = &mut s.params.check_tls;
            if tls.enabled {
                let verify = tls
                    .verify
                    .or(self.global.ssl_server_verify.as_ref().map(|v| v.value))
                    .unwrap_or(true);
                tls.verify = Some(verify);
                if let (Some(base), Some(f)) = (&self.global.ca_base, &tls.ca_file) {
                    if f.is_relative() {
                        tls.ca_file = Some(base.join(f));
                    }
                }
                if verify && tls.ca_file.is_none() {
                    return Err(ConfigError::Invalid {
                        file: s.origin.file.clone(),
                        line: s.origin.line,
                        col: 1,
                        msg: format!(
                            "Proxy '{}', server '{}': verify is enabled by default but no CA \
                             file specified. If you're running on a LAN where you're certain \
                             to trust the server's certificate, please set an explicit 'verify \
                             none' statement on the 'server' line, or use 'ssl-server-verify \
                             none' in the global section to disable server-side verifications \
                             by default",
                            p.name.text, s.name
                        ),
                        near: "check-ssl".into(),
                        hint: None,
                    });
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    pub(super) fn backend(&self, p: &Proxy) -> Result<Backend, ConfigError> {
        let opt = |name: &str| p.s.option(name).map(|o| o.origin.clone());
        let mut use_servers = Vec::new();
        for (name, cond, origin) in &p.use_servers {
            let Some(pos) = p.servers.iter().position(|d| d.server.name == name.text) else {
                let hint = suggest(&name.text, p.servers.iter().map(|d| d.server.name.as_str()));
                return Err(invalid_at(
                    name,
                    format!(
                        "{} '{}' : unable to find server '{}' referenced in a 'use-server' rule",
                        p.kind(),
                        p.name.text,
                        name.text
                    ),
                    hint,
                ));
            };
            use_servers.push(UseServer {
                server: name.text.clone(),
                server_pos: pos,
                cond: cond.clone(),
                origin: origin.clone(),
            });
        }
        let servers = self.servers_resolved(p)?;
        Ok(Backend {
            port_from_client: servers.iter().any(|s| s.port_mode != ServerPort::Fixed),
            use_servers,
            persist_rules: p.persist_rules.clone(),
            name: p.name.text.clone(),
            balance: p.s.balance,
            servers,
            timeout_connect: p.s.timeout_connect,
            timeout_server: p.s.timeout_server,
            external_check_command: p.s.external_check_command.clone(),
            external_check_path: p.s.external_check_path.clone(),
            first_listener: p.binds.first().map(|(b, _, _)| {
                std::net::SocketAddr::new(
                    b.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    b.port_first,
                )
            }),
            inspect_delay: p.s.inspect_delay.as_ref().map(|d| d.value),
            tcp_request_content: if p.caps & super::FE == 0 {
                p.content_rules.clone()
            } else {
                Vec::new()
            },
            origin: p.name.origin.clone(),
            balance_origin: p.s.balance_origin.clone(),
            hash_type: p.s.hash_type.clone(),
            retries: p.s.retries.clone(),
            redispatch: p.s.option("redispatch").map(|o| Located {
                value: o.arg.unwrap_or(-1),
                origin: o.origin.clone(),
            }),
            allbackups: opt("allbackups"),
            srvtcpka: opt("srvtcpka").or_else(|| opt("tcpka")),
            srvtcpka_tune: p.s.srvtcpka,
            timeout_queue: p.s.timeout_queue.clone(),
            timeout_check: p.s.timeout_check.clone(),
            timeout_tunnel: p.s.timeout_tunnel.clone(),
            timeout_server_fin: p.s.timeout_server_fin.clone(),
            fullconn: p.s.fullconn.clone(),
            health_check: p.s.health_check.clone(),
            tcp_check_rules: p.s.tcp_check_rules.clone(),
            http_check_rules: p.s.http_check_rules.clone(),
            acls: if p.caps & FE == 0 {
                p.acls.clone()
            } else {
                Vec::new()
            },
            logs: p.s.logs.clone(),
            log_health_checks: opt("log-health-checks"),
            disabled: p.s.disabled.clone(),
            id: p.id.as_ref().map(|(v, _)| v.clone()),
            description: p.description.clone(),
            load_server_state: p.s.load_server_state.clone(),
            server_state_file_name: p.s.server_state_file_name.clone(),
            other: other_settings(&p.s, BE),
        })
    }

    /// A proxy left in `mode http` is refused. A TCP proxy's HTTP-only
    /// settings (often from a `defaults` in `mode http`) are dropped with
    /// HAProxy 2.6's warnings, once per proxy and message; `option httplog`
    /// in a frontend becomes `option tcplog`, as in HAProxy.
    /// A proxy left in HTTP mode is refused, unless all it does is serve
    /// HAProxy's stats page (or `monitor-uri`): then it is returned as one.
    /// A TCP proxy gets HAProxy's warnings for its HTTP-only settings.
    pub(super) fn http_mode_check(
        &mut self,
        p: &mut Proxy,
    ) -> Result<Option<StatsPage>, ConfigError> {
        if let Some(o) = p.s.mode_http.clone() {
            let serves = p.s.stats.enabled.is_some() || p.s.monitor_uri.is_some();
            let carries = !p.servers.is_empty()
                || !p.use_backends.is_empty()
                || p.s.default_backend.is_some()
                || !p.content_rules.is_empty();
            if p.caps & FE != 0 && serves && !carries && !p.binds.is_empty() {
                if let Some(h) =
                    p.s.http_only
                        .iter()
                        .find(|h| matches!(h.note, HttpNote::Rules | HttpNote::Cookie))
                {
                    return Err(ConfigError::Invalid {
                        file: h.origin.file.clone(),
                        line: h.origin.line,
                        col: 1,
                        msg: format!(
                            "{} '{}' serves the stats page in HTTP mode ('mode http' at {o}); \
                             lb serves that page only, without HTTP rules: '{}' is not supported there",
                            p.kind(),
                            p.name.text,
                            h.what
                        ),
                        near: h.what.clone(),
                        hint: None,
                    });
                }
                return Ok(Some(StatsPage {
                    name: p.name.text.clone(),
                    binds: p.binds.iter().map(|(b, _, _)| b.clone()).collect(),
                    stats: p.s.stats.clone(),
                    monitor_uri: p.s.monitor_uri.clone(),
                    origin: p.name.origin.clone(),
                }));
            }
            return Err(invalid_at(
                &p.name,
                format!(
                    "{} '{}' is in HTTP mode ('mode http' at {o}): this load balancer runs \
                     TCP proxies only; give it 'mode tcp'",
                    p.kind(),
                    p.name.text
                ),
                None,
            ));
        }
        let kind = match p.caps {
            FE => "frontend",
            BE => "backend",
            _ => "proxy",
        };
        let name = p.name.text.clone();
        let mut said = HashSet::new();
        for h in std::mem::take(&mut p.s.http_only) {
            let msg = match h.note {
                HttpNote::Rules => format!(
                    "'{}' rules ignored for {kind} '{name}' as they require HTTP mode.",
                    h.what
                ),
                HttpNote::Ignored => format!(
                    "'{}' ignored for {kind} '{name}' as it requires HTTP mode.",
                    h.what
                ),
                HttpNote::Cookie if p.caps & BE != 0 => {
                    format!("cookie will be ignored for {kind} '{name}' (needs 'mode http').")
                }
                HttpNote::MonitorUri if p.caps & FE != 0 => {
                    format!("monitor-uri will be ignored for {kind} '{name}' (needs 'mode http').")
                }
                HttpNote::Stats => {
                    format!(
                        "'stats' statement ignored for {kind} '{name}' as it requires HTTP mode."
                    )
                }
                HttpNote::Httplog if p.caps & FE != 0 => {
                    if p.s.option("tcplog").is_none() {
                        p.s.options.push(OptSet {
                            name: "tcplog",
                            origin: h.origin.clone(),
                            arg: None,
                        });
                    }
                    format!(
                        "'{}' not usable with {kind} '{name}' (needs 'mode http'). Falling \
                         back to 'option tcplog'.",
                        h.what
                    )
                }
                _ => continue,
            };
            if said.insert(msg.clone()) {
                self.warn_at(&h.origin, msg);
            }
        }
        Ok(None)
    }

    /// `option external-check` needs `external-check` in global and a
    /// command; without `insecure-fork-wanted` HAProxy warns. Its words.
    fn external_check_needs(&mut self, p: &Proxy) -> Result<(), ConfigError> {
        let uses = p.caps & BE != 0
            && matches!(
                p.s.health_check.as_ref().map(|h| &h.value),
                Some(HealthCheck::ExternalCheck)
            );
        if !uses {
            return Ok(());
        }
        let has = |k: &str| self.global.other.iter().any(|o| o.value == k);
        let missing = if !has("external-check") {
            Some("global.external-check")
        } else if p.s.external_check_command.is_none() {
            Some("external-check command")
        } else {
            None
        };
        if let Some(m) = missing {
            return Err(invalid_at(
                &p.name,
                format!(
                    "Proxy '{}' : 'option external-check' unable to find required '{m}'.",
                    p.name.text
                ),
                None,
            ));
        }
        if !has("insecure-fork-wanted") {
            self.warn_at(
                &p.name.origin,
                format!(
                    "Proxy '{}' : 'insecure-fork-wanted' not enabled in the global section, \
                     'option external-check' will likely fail.",
                    p.name.text
                ),
            );
        }
        Ok(())
    }

    pub(super) fn backend_warnings(&mut self, p: &Proxy) {
        let origin = &p.name.origin;
        let hc = p.s.health_check.as_ref().map(|h| &h.value);
        if !p.s.tcp_check_rules.is_empty() && hc != Some(&HealthCheck::TcpCheck) {
            self.warn_at(
                origin,
                format_args!(
                    "backend '{}' uses tcp-check rules without 'option tcp-check', so the rules are ignored",
                    p.name.text
                ),
            );
        }
        if !p.s.http_check_rules.is_empty() && !matches!(hc, Some(HealthCheck::HttpChk { .. })) {
            self.warn_at(
                origin,
                format_args!(
                    "backend '{}' uses http-check rules without 'option httpchk', so the rules are ignored",
                    p.name.text
                ),
            );
        }
        if p.s.balance == Balance::First {
            let without: Vec<&str> = p
                .servers
                .iter()
                .filter(|s| !s.server.params.backup && s.server.params.maxconn.unwrap_or(0) == 0)
                .map(|s| s.server.name.as_str())
                .collect();
            if !without.is_empty() {
                let at = p.s.balance_origin.clone().unwrap_or_else(|| origin.clone());
                self.warn_at(
                    &at,
                    format_args!(
                        "backend '{}' uses 'balance first' but server(s) {} have no 'maxconn': \
                         the first one will take every connection",
                        p.name.text,
                        without.join(", ")
                    ),
                );
            }
        }
    }

    /// Resolves host names of servers (HAProxy does it once the whole
    /// configuration is read, following `init-addr`).
    pub(super) fn resolve_servers(&self, p: &mut Proxy) -> Result<(), ConfigError> {
        let (kind, proxy_name) = (p.kind(), p.name.text.clone());
        // A `tcp-check connect port N` first gives checks a port of their own.
        let rules_port =
            p.s.health_check
                .as_ref()
                .is_some_and(|h| h.value == HealthCheck::TcpCheck)
                && p.s.tcp_check_rules.iter().find_map(|r| match &r.value {
                    TcpCheckRule::Comment(_) | TcpCheckRule::Var(_) => None,
                    TcpCheckRule::Connect(c) => Some(c.port.is_some()),
                    _ => Some(false),
                }) == Some(true);
        // An SRV name (`_service._proto.name`) with resolvers: address and
        // port come from its records at run time; libc cannot resolve it.
        for d in &mut p.servers {
            let srv = d.server.params.resolvers.is_some()
                && d.host.as_ref().is_some_and(|(h, _, _)| h.starts_with('_'));
            if srv {
                d.host = None;
                d.server.port_mode = ServerPort::Fixed;
                d.server.unresolved = true;
                d.server.params.disabled = true;
            }
        }
        for d in &p.servers {
            let s = &d.server;
            if s.params.check
                && s.port_mode != ServerPort::Fixed
                && s.params.check_port.is_none()
                && !rules_port
            {
                return Err(ConfigError::Invalid {
                    file: s.origin.file.clone(),
                    line: s.origin.line,
                    col: d.addr_col,
                    msg: format!(
                        "{kind} '{proxy_name}': server '{}' has neither service port nor check port \
                         (add 'port N' for its checks)",
                        s.name
                    ),
                    near: near(&d.addr_text),
                    hint: None,
                });
            }
        }
        for d in &mut p.servers {
            let Some((host, family, col)) = d.host.clone() else {
                continue;
            };
            let methods = d
                .server
                .params
                .init_addr
                .clone()
                .unwrap_or_else(|| vec![InitAddr::Last, InitAddr::Libc]);
            let mut found = None;
            let mut last_err = String::new();
            for m in &methods {
                match m {
                    // No server-state file is read.
                    InitAddr::Last => {}
                    InitAddr::Libc => match resolve_one(self, &host, family) {
                        Ok(ip) => {
                            found = Some(ip);
                            break;
                        }
                        Err(e) => last_err = e,
                    },
                    InitAddr::Ip(ip) => {
                        found = Some(*ip);
                        break;
                    }
                    InitAddr::None => {
                        d.server.unresolved = true;
                        d.server.params.disabled = true;
                        break;
                    }
                }
            }
            match found {
                Some(ip) => d.server.addr.set_ip(ip),
                None if d.server.unresolved => {}
                None => {
                    if last_err.is_empty() {
                        last_err = format!("could not resolve address '{}'", near(&host));
                    }
                    return Err(ConfigError::Invalid {
                        file: d.server.origin.file.clone(),
                        line: d.server.origin.line,
                        col,
                        msg: format!(
                            "{kind} '{proxy_name}': server '{}': {last_err}",
                            d.server.name
                        ),
                        near: near(&host),
                        hint: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Proxy ids (frontends and backends share them) and server ids (per
    /// backend) are unique.
    pub(super) fn check_ids(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<u32, (String, Origin)> = HashMap::new();
        for p in &self.proxies {
            if let Some((id, col)) = &p.id {
                if let Some((other, at)) = seen.get(&id.value) {
                    return Err(ConfigError::Invalid {
                        file: id.origin.file.clone(),
                        line: id.origin.line,
                        col: *col,
                        msg: format!(
                            "{} '{}' reuses the id {} of {other} (declared at {at})",
                            p.kind(),
                            p.name.text,
                            id.value
                        ),
                        near: id.value.to_string(),
                        hint: None,
                    });
                }
                seen.insert(
                    id.value,
                    (format!("{} '{}'", p.kind(), p.name.text), id.origin.clone()),
                );
            }
            if p.caps & BE == 0 {
                continue;
            }
            let mut ids: HashMap<u32, &Server> = HashMap::new();
            for d in &p.servers {
                let Some(id) = d.server.params.id else {
                    continue;
                };
                if let Some(prev) = ids.get(&id) {
                    return Err(ConfigError::Invalid {
                        file: d.server.origin.file.clone(),
                        line: d.server.origin.line,
                        col: d.addr_col,
                        msg: format!(
                            "{} '{}': server '{}': id {id} is already used by server '{}' at {}",
                            p.kind(),
                            p.name.text,
                            d.server.name,
                            prev.name,
                            prev.origin
                        ),
                        near: format!("id {id}"),
                        hint: None,
                    });
                }
                ids.insert(id, &d.server);
            }
        }
        Ok(())
    }

    /// HAProxy's rules about named `defaults` sections: one used both
    /// explicitly (`from`) and implicitly is a warning; one defining
    /// `tcp-request` rules cannot serve both frontends and backends, nor a
    /// `listen`.
    pub(super) fn check_defaults_use(&mut self) -> Result<(), ConfigError> {
        let explicit: HashSet<usize> = self
            .proxies
            .iter()
            .filter_map(|p| match p.defaults_ref {
                DefaultsRef::Explicit(i) => Some(i),
                _ => None,
            })
            .collect();
        let mut warnings = Vec::new();
        let mut users: HashMap<usize, (u8, &Proxy)> = HashMap::new();
        for p in &self.proxies {
            let idx = match p.defaults_ref {
                DefaultsRef::Explicit(i) => i,
                DefaultsRef::Implicit(i) => {
                    if explicit.contains(&i) {
                        let d = &self.defaults_list[i];
                        warnings.push((
                            p.name.origin.clone(),
                            format!(
                                "defaults section '{}' (declared at {}) is explicitly referenced \
                                 by another proxy and implicitly used here. To avoid any \
                                 ambiguity don't mix both usage. Add a last defaults section not \
                                 explicitly used or always use explicit references.",
                                d.name.as_deref().unwrap_or(""),
                                d.origin
                            ),
                        ));
                    }
                    i
                }
                DefaultsRef::None => continue,
            };
            let d = &self.defaults_list[idx];
            if d.tcp_rules.is_empty() {
                continue;
            }
            if p.caps == LISTEN {
                return Err(invalid_at(
                    &p.name,
                    format!(
                        "a listen section cannot inherit from a defaults section defining TCP \
                         rules (defaults section at {})",
                        d.origin
                    ),
                    None,
                ));
            }
            match users.get(&idx) {
                Some((caps, _)) if *caps != p.caps => {
                    return Err(invalid_at(
                        &p.name,
                        format!(
                            "frontends and backends cannot inherit from the same defaults section \
                             if it defines TCP rules (defaults section at {})",
                            d.origin
                        ),
                        None,
                    ));
                }
                Some(_) => {}
                None => {
                    users.insert(idx, (p.caps, p));
                }
            }
        }
        for (o, w) in warnings {
            self.warn_at(&o, w);
        }
        Ok(())
    }

    /// Two binds (in any frontends) on the same address with overlapping ports.
    pub(super) fn check_bind_conflicts(
        &self,
        slots: &mut [BindSlot],
        frontends: &[Frontend],
    ) -> Result<(), ConfigError> {
        slots.sort_by(|a, b| {
            (&a.key, a.first, &a.origin.file, a.origin.line, a.col).cmp(&(
                &b.key,
                b.first,
                &b.origin.file,
                b.origin.line,
                b.col,
            ))
        });
        let mut widest: Option<&BindSlot> = None;
        for s in slots.iter() {
            if let Some(w) = widest.filter(|w| w.key == s.key && s.first <= w.last) {
                // Report the later one.
                let pos = |b: &BindSlot| (b.origin.file.clone(), b.origin.line, b.col);
                let (early, late) = if pos(w) <= pos(s) { (w, s) } else { (s, w) };
                let fe_name = |i: usize| frontends.get(i).map_or("?", |f| f.name.as_str());
                let dual = if early.dual || late.dual {
                    " ('::' also takes IPv4 unless 'v6only' is set)"
                } else {
                    ""
                };
                return Err(ConfigError::Invalid {
                    file: late.origin.file.clone(),
                    line: late.origin.line,
                    col: late.col,
                    msg: format!(
                        "bind '{}' of frontend '{}' conflicts with bind '{}' of frontend '{}' at {}{dual}",
                        late.text,
                        fe_name(late.frontend),
                        early.text,
                        fe_name(early.frontend),
                        early.origin
                    ),
                    near: near(&late.text),
                    hint: None,
                });
            }
            if widest.is_none_or(|w| w.key != s.key || s.last > w.last) {
                widest = Some(s);
            }
        }
        Ok(())
    }
}

/// The `other` settings of a proxy for one side: accepted keywords and the
/// options not modelled by a field.
pub(super) fn other_settings(s: &Settings, side: u8) -> Vec<Located<String>> {
    const MODELLED: &[&str] = &[
        "tcplog",
        "dontlognull",
        "clitcpka",
        "srvtcpka",
        "tcpka",
        "redispatch",
        "allbackups",
        "log-health-checks",
    ];
    let mut out: Vec<Located<String>> = Vec::new();
    for o in &s.options {
        if MODELLED.contains(&o.name) {
            continue;
        }
        let caps = OPTION_KWS
            .iter()
            .find(|k| k.name == o.name)
            .map_or(ANY, |k| k.caps);
        if caps & side != 0 {
            out.push(Located {
                value: format!("option {}", o.name),
                origin: o.origin.clone(),
            });
        }
    }
    for x in &s.other {
        let caps = lookup(PROXY_KWS, &x.value).map_or(ANY, |k| k.caps);
        if caps & side != 0 {
            out.push(x.clone());
        }
    }
    out
}
