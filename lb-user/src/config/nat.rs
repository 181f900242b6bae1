//! What `data-path nat` cannot do, refused with the line that asks for it:
//! the kernel rewrites packets and never holds the connection, so whatever
//! needs a terminated connection (bytes added or read, a queue, a retry, a
//! choice made after the first byte) has no place on that path. Checked by the
//! parser, so `lb check`, `lb run` and a reload refuse the same files.
use super::limits::at;
use super::model::{Balance, Config, DataPath, ServerPort};
use super::parse::ConfigError;

/// Backends the NAT path can balance over.
pub const MAX_NAT_BACKENDS: usize = lb_common::MAX_NAT_BACKENDS as usize;
/// Servers a leastconn or first backend of the NAT path scans.
pub const MAX_SCAN_SERVERS: usize = lb_common::NAT_SCAN_SERVERS as usize;

/// The first setting of a `data-path nat` frontend or its backend that the
/// NAT path cannot honour.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    let mut nat_backends = Vec::new();
    for f in cfg.frontends.iter().filter(|f| f.path() == DataPath::Nat) {
        let dp = f.data_path.as_ref().map(|d| &d.origin).unwrap_or(&f.origin);
        let why = |what: &str| {
            format!("{what}: frontend '{}' uses 'data-path nat', where the kernel rewrites packets and no connection is terminated", f.name)
        };
        if let Some(u) = f.use_backends.first() {
            return Err(at(
                &u.origin,
                "use_backend",
                why("'use_backend' rules choose after the connection is accepted"),
            ));
        }
        if let Some(r) = f
            .tcp_request_connection
            .iter()
            .find(|r| super::l4acl::needs_accept(r))
        {
            return Err(at(
                &r.origin,
                "tcp-request",
                why("'tcp-request connection' rules on more than the client address ('dst', ports, 'expect-proxy') run on an accepted connection"),
            ));
        }
        if let Some(r) = f.tcp_request_content.first() {
            return Err(at(
                &r.origin,
                "tcp-request",
                why("'tcp-request content' rules read the client's first bytes on an accepted connection"),
            ));
        }
        if let Some(r) = &f.rate_limit_sessions {
            return Err(at(&r.origin, "rate-limit", why("'rate-limit sessions' paces accepted connections (use 'xdp-syn-rate' to pace SYNs)")));
        }
        if let Some(o) = &f.maxconn_origin {
            return Err(at(o, "maxconn", why("a frontend 'maxconn' needs a queue of accepted connections (use 'maxconn' on the servers: a SYN beyond it is refused)")));
        }
        for b in &f.binds {
            if b.accept_proxy {
                return Err(at(
                    &b.origin,
                    "accept-proxy",
                    why("'accept-proxy' reads a header from the connection"),
                ));
            }
        }
        let has_iface =
            !cfg.global.xdp_interfaces.is_empty() || f.binds.iter().all(|b| b.interface.is_some());
        if !has_iface {
            return Err(at(dp, "data-path", format!(
                "frontend '{}' uses 'data-path nat' but names no interface for its clients: add 'xdp-interface IFACE' to global or 'interface IFACE' to its binds",
                f.name
            )));
        }
        let Some(bi) = f.default_backend_idx else {
            return Err(at(
                dp,
                "data-path",
                format!(
                    "frontend '{}' uses 'data-path nat' without a 'default_backend'",
                    f.name
                ),
            ));
        };
        let b = &cfg.backends[bi];
        if !nat_backends.contains(&bi) {
            nat_backends.push(bi);
        }
        if nat_backends.len() > MAX_NAT_BACKENDS {
            return Err(at(
                dp,
                "data-path",
                format!("more than {MAX_NAT_BACKENDS} backends behind 'data-path nat' frontends"),
            ));
        }
        if let Some(r) = b.tcp_request_content.first() {
            return Err(at(
                &r.origin,
                "tcp-request",
                why(&format!("backend '{}': 'tcp-request content' rules read the client's first bytes on an accepted connection", b.name)),
            ));
        }
        if let Some(u) = b.use_servers.first() {
            return Err(at(
                &u.origin,
                "use-server",
                why(&format!("backend '{}': 'use-server' rules choose the server after the connection is accepted", b.name)),
            ));
        }
        let scans = matches!(b.balance, Balance::LeastConn | Balance::First);
        if scans && b.servers.len() > MAX_SCAN_SERVERS {
            let o = b.balance_origin.as_ref().unwrap_or(&b.origin);
            return Err(at(o, "balance", format!(
                "backend '{}' has {} servers; behind 'data-path nat' (frontend '{}') leastconn and first scan at most {MAX_SCAN_SERVERS}",
                b.name, b.servers.len(), f.name
            )));
        }
        for s in &b.servers {
            let p = &s.params;
            let what = if p.send_proxy.is_some() {
                Some((
                    "send-proxy",
                    "'send-proxy' writes a header into the connection",
                ))
            } else if p.maxqueue.is_some() {
                Some(("maxqueue", "'maxqueue' queues connections, the NAT path refuses a SYN beyond 'maxconn' instead"))
            } else if p.minconn.is_some() {
                Some((
                    "minconn",
                    "'minconn' (dynamic maxconn) needs the backend's queue",
                ))
            } else if s.port_mode != ServerPort::Fixed {
                Some((
                    "server",
                    "a server without a fixed port follows the port each client asked for",
                ))
            } else if s.unresolved || s.addr.ip().is_unspecified() {
                Some(("server", "the server has no address yet"))
            } else if s.params.resolvers.is_some() {
                Some((
                    "resolvers",
                    "the server's address follows DNS, which the kernel's flow table does not",
                ))
            } else {
                None
            };
            if let Some((near, msg)) = what {
                return Err(at(&s.origin, near, format!("{msg}: server '{}' of backend '{}' is behind frontend '{}' ('data-path nat')", s.name, b.name, f.name)));
            }
        }
    }
    Ok(())
}
