//! What a valid configuration asks for that `lb run` does not apply yet.
//!
//! [`runtime_gaps`] lists the configured features that change what clients or
//! servers would see (balancing, routing, limits, checks, PROXY protocol,
//! timeouts, ...) or services HAProxy would offer: `lb run`
//! refuses a configuration with any. [`runtime_ignored`] lists the settings
//! `lb run` accepts without applying because they only concern HAProxy's own
//! process or logging (`nbthread`, `tune.*`, names and ids shown in
//! statistics, ...).
//!
//! The daemon applies: binds (with `accept-proxy`), `default_backend`, every
//! `balance` algorithm (with `hash-type` for `source`), `maxconn` (global,
//! frontend, server, with the backend queue: `maxqueue`, `timeout queue`),
//! `retries`, `option redispatch`, backup servers and `option allbackups`,
//! `send-proxy`/`send-proxy-v2`, `slowstart`, `on-marked-down
//! shutdown-sessions`, `on-marked-up shutdown-backup-sessions`, server address,
//! `weight`, `disabled`, `check` with `inter`/`fastinter`/`downinter`/`rise`/
//! `fall`/`port`/`addr`/`check-send-proxy`, `timeout check`, `spread-checks`,
//! `option log-health-checks`, `agent-check` (`agent-port`, `agent-addr`,
//! `agent-inter`, `agent-send`), the check methods and rules
//! `crate::health::compile` accepts (it lists what it refuses) (`option
//! tcp-check` with rules, `pgsql-check`, `pgsql-role-check`, `redis-check`,
//! `mysql-check`, `ldap-check`, `smtpchk`, `httpchk` with `http-check`),
//! `timeout connect|client|server|tunnel|client-fin|server-fin`,
//! `option tcpka|clitcpka|srvtcpka` with `clitcpka-*`/`srvtcpka-*`,
//! `tune.lb.splice-budget`, `bind ...
//! interface`, `tcp-request connection accept|reject` on `src` conditions,
//! lb's own `xdp-interface`, `xdp-syn-rate` and `xdp-syn-cookies`, `stats socket` (with `mode`,
//! `uid`/`gid`, `level`), `stats timeout`, `stats maxconn`, `option tcplog`
//! with the frontend's `log` targets, `server-state-file`,
//! `server-state-base`, `load-server-state-from-file`,
//! `server-state-file-name` (`crate::state::persist`), `user`/`uid`,
//! `group`/`gid` (the daemon leaves root once set up), `pidfile`, `disabled`
//! proxies (splice and copy paths), `backlog`
//! (frontend and bind: `Frontend::listen_backlog`). Keep this list and
//! [`runtime_gaps`] in step with it.
use super::model::*;

/// Accepted proxy settings (see `Frontend::other`) with no effect on traffic.
const IGNORED_OTHER: &[&str] = &[
    "option splice-auto",
    "option splice-request",
    "option splice-response",
    "option tcp-smart-accept",
    "option tcp-smart-connect",
    "option contstats",
    "option socket-stats",
    "option logasap",
    "option dontlog-normal",
    "option log-separate-errors",
    "log-format",
    "log-format-sd",
    "error-log-format",
    "log-tag",
];

/// Accepted global settings that change traffic.
const GAP_GLOBAL_OTHER: &[&str] = &[];

/// Configured features `lb run` does not apply yet, with where they were set.
pub fn runtime_gaps(cfg: &Config) -> Vec<(Origin, String)> {
    let mut out = Vec::new();
    let mut gap = |o: &Origin, what: String| out.push((o.clone(), what));
    let g = &cfg.global;
    if let Some(v) = &g.chroot {
        // lb reads files after start-up (the configuration on SIGHUP, the
        // server-state file, its pinned maps); systemd's RootDirectory= or
        // ProtectSystem= confine it from outside instead.
        gap(
            &v.origin,
            "chroot (lb reads its files after start; confine it with systemd's ProtectSystem=/RootDirectory= instead)"
                .into(),
        );
    }
    for o in &g.other {
        if GAP_GLOBAL_OTHER.contains(&o.value.as_str()) {
            gap(&o.origin, format!("{} (global)", o.value));
        }
    }

    for f in &cfg.frontends {
        let scope = format!("frontend '{}'", f.name);
        let in_kernel = f.path() == DataPath::Nat || f.connect.is_some();
        if let Some(o) = f.disabled.as_ref().filter(|_| in_kernel) {
            gap(
                o,
                format!("disabled with data-path nat or connect ({scope})"),
            );
        }
        if f.connect.is_some() {
            // lb_connect4/6 pick from the default backend at connect():
            // a rule would hold for remote clients and not for local ones.
            for u in &f.use_backends {
                gap(
                    &u.origin,
                    format!("use_backend {} with data-path connect ({scope})", u.backend),
                );
            }
            // Local clients are connected straight to the server: nothing
            // reads their first bytes.
            let be_rules = f
                .default_backend_idx
                .map(|b| &cfg.backends[b].tcp_request_content[..])
                .unwrap_or_default();
            if let Some(b) = f.default_backend_idx.map(|b| &cfg.backends[b]) {
                for sv in b
                    .servers
                    .iter()
                    .filter(|s| s.port_mode != ServerPort::Fixed)
                {
                    gap(
                        &sv.origin,
                        format!("server without a fixed port behind data-path connect ({scope})"),
                    );
                }
                for sv in b
                    .servers
                    .iter()
                    .filter(|s| s.params.resolvers.is_some() || s.unresolved)
                {
                    gap(
                        &sv.origin,
                        format!("server with resolvers or init-addr none behind data-path connect ({scope})"),
                    );
                }
                for u in &b.use_servers {
                    gap(
                        &u.origin,
                        format!("use-server with data-path connect ({scope})"),
                    );
                }
            }
            for r in f.tcp_request_content.iter().chain(be_rules) {
                gap(
                    &r.origin,
                    format!("tcp-request content with data-path connect ({scope})"),
                );
            }
        }
        for o in &f.other {
            if !IGNORED_OTHER.contains(&o.value.as_str()) {
                gap(&o.origin, format!("{} ({scope})", o.value));
            }
        }
        for b in &f.binds {
            let mut setting = |what: &str| gap(&b.origin, format!("bind {what} ({scope})"));
            if let Some(n) = b.maxconn.filter(|&n| n > 0) {
                setting(&format!("maxconn {n}"));
            }
            for o in &b.other {
                setting(o);
            }
        }
    }

    for b in &cfg.backends {
        let scope = format!("backend '{}'", b.name);
        let kernel_balanced = cfg.frontends.iter().any(|f| {
            f.default_backend_idx
                .is_some_and(|i| std::ptr::eq(&cfg.backends[i], b))
                && (f.path() == DataPath::Nat || f.connect.is_some())
        });
        if let Some(o) = b.disabled.as_ref().filter(|_| kernel_balanced) {
            gap(
                o,
                format!("disabled behind data-path nat or connect ({scope})"),
            );
        }
        let minconn = b.servers.iter().any(|s| s.params.minconn.is_some());
        if let (Some(v), true) = (&b.fullconn, minconn) {
            gap(&v.origin, format!("fullconn ({scope})"));
        }
        // Check methods and rules lb cannot run are listed by
        // `crate::health::runtime_gaps` (this module builds alone for fuzzing).
        for o in &b.other {
            if !IGNORED_OTHER.contains(&o.value.as_str()) {
                gap(&o.origin, format!("{} ({scope})", o.value));
            }
        }
        for s in &b.servers {
            let scope = format!("server '{}/{}'", b.name, s.name);
            let mut setting = |what: String| gap(&s.origin, format!("{what} ({scope})"));
            if let Some(n) = s.params.minconn {
                setting(format!("minconn {n}"));
            }
            if s.addr_from_client {
                setting("address 0.0.0.0/:: (the client's destination address)".into());
            }
            if s.params.observe_layer4 {
                setting("observe layer4".into());
            }
            for o in &s.params.other {
                setting(format!("server option {o}"));
            }
        }
    }
    out.sort_by(|a, b| (&a.0.file, a.0.line).cmp(&(&b.0.file, b.0.line)));
    out
}

/// Accepted settings `lb run` does not apply because they only concern
/// HAProxy's own process, logging or statistics labels.
pub fn runtime_ignored(cfg: &Config) -> Vec<(Origin, String)> {
    let mut out = Vec::new();
    let mut note = |o: &Origin, what: String| out.push((o.clone(), what));
    let g = &cfg.global;
    if let Some(o) = &g.daemon {
        note(o, "daemon: lb runs in the foreground".into());
    }
    if let Some(v) = &g.nbthread {
        note(&v.origin, "nbthread".into());
    }
    if let Some(v) = &g.hard_stop_after {
        note(
            &v.origin,
            "hard-stop-after: lb closes every connection when it stops".into(),
        );
    }
    for l in &g.logs {
        note(
            &l.origin,
            "log (global): only `option tcplog` lines of frontends with `log global` go there"
                .into(),
        );
    }
    for s in &g.stats_sockets {
        let mut unused: Vec<String> = s.value.other.clone();
        if s.value.expose_fd_listeners {
            unused.push("expose-fd listeners".into());
        }
        if let Some(v) = &s.value.severity_output {
            unused.push(format!("severity-output {v}"));
        }
        if !unused.is_empty() {
            note(
                &s.origin,
                format!("stats socket settings: {}", unused.join(", ")),
            );
        }
    }
    // Applied (it enables `option external-check`), or what HAProxy asks
    // for forking the check commands, which lb does by design.
    const APPLIED: &[&str] = &["external-check", "insecure-fork-wanted"];
    for o in &g.other {
        let v = o.value.as_str();
        if !GAP_GLOBAL_OTHER.contains(&v) && !APPLIED.contains(&v) {
            note(&o.origin, format!("{} (global)", o.value));
        }
    }
    let proxy_logs =
        |note: &mut dyn FnMut(&Origin, String), logs: &[Located<ProxyLog>], scope: &str| {
            for l in logs {
                note(
                    &l.origin,
                    format!("log ({scope}): only `option tcplog` lines are logged"),
                );
            }
        };
    for f in &cfg.frontends {
        let scope = format!("frontend '{}'", f.name);
        proxy_logs(&mut note, &f.logs, &scope);
        if let Some(o) = &f.dontlognull {
            note(o, format!("option dontlognull ({scope})"));
        }
        if let Some(v) = &f.id {
            note(&v.origin, format!("id ({scope})"));
        }
        for o in &f.other {
            if IGNORED_OTHER.contains(&o.value.as_str()) {
                note(&o.origin, format!("{} ({scope})", o.value));
            }
        }
        for b in &f.binds {
            if b.name.is_some() || b.id.is_some() {
                note(&b.origin, format!("bind name/id ({scope})"));
            }
        }
    }
    for b in &cfg.backends {
        let scope = format!("backend '{}'", b.name);
        proxy_logs(&mut note, &b.logs, &scope);
        if let Some(v) = &b.id {
            note(&v.origin, format!("id ({scope})"));
        }
        for o in &b.other {
            if IGNORED_OTHER.contains(&o.value.as_str()) {
                note(&o.origin, format!("{} ({scope})", o.value));
            }
        }
        for s in &b.servers {
            if s.params.id.is_some() && b.balance != Balance::First {
                note(
                    &s.origin,
                    format!("server id (server '{}/{}')", b.name, s.name),
                );
            }
        }
    }
    out
}
