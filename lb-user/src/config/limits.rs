//! What a valid configuration must also satisfy to run: the sizes of the
//! kernel maps, and no connection lb makes itself steered back into lb. Checked
//! by the parser, so `lb check`, `lb run` and a reload refuse the same files,
//! each with the line to change.
use std::net::{IpAddr, SocketAddr};

use super::model::{Backend, Config, Frontend, Origin, ServerPort, StatsAddress};
use super::parse::ConfigError;

/// Servers: the last `LB_SRV_*` slot is kept for the splice self-test.
pub const MAX_SERVERS: usize = lb_common::MAX_SERVERS as usize - 1;
/// Frontends: one IPv4 and one IPv6 listener each in `LB_LISTENERS`.
pub const MAX_FRONTENDS: usize = lb_common::MAX_FRONTENDS as usize;
/// `LB_BINDS` keys (address family, address, port).
pub const MAX_BIND_KEYS: usize = lb_common::MAX_BINDS as usize;

pub(super) fn at(origin: &Origin, near: &str, msg: String) -> ConfigError {
    ConfigError::Invalid {
        file: origin.file.clone(),
        line: origin.line,
        col: 1,
        msg,
        near: near.to_string(),
        hint: None,
    }
}

/// The first server, frontend or bind line past what the maps hold.
pub fn capacity(frontends: &[Frontend], backends: &[Backend]) -> Result<(), ConfigError> {
    let total: usize = backends.iter().map(|b| b.servers.len()).sum();
    if total > MAX_SERVERS {
        let s = backends
            .iter()
            .flat_map(|b| &b.servers)
            .nth(MAX_SERVERS)
            .expect("counted");
        return Err(at(
            &s.origin,
            "server",
            format!(
                "server '{}' is server number {} of {total}; lb holds at most {MAX_SERVERS} \
                 servers in all backends",
                s.name,
                MAX_SERVERS + 1
            ),
        ));
    }
    if let Some(f) = frontends.get(MAX_FRONTENDS) {
        return Err(at(
            &f.origin,
            "frontend",
            format!(
                "'{}' is frontend number {} of {}; lb holds at most {MAX_FRONTENDS} frontends \
                 (listen sections included)",
                f.name,
                MAX_FRONTENDS + 1,
                frontends.len()
            ),
        ));
    }
    let mut keys = 0usize;
    for f in frontends {
        for b in &f.binds {
            keys += b.keys().len();
            if keys > MAX_BIND_KEYS {
                return Err(at(
                    &b.origin,
                    "bind",
                    format!(
                        "with this line the binds expand to more than {MAX_BIND_KEYS} \
                         address:port keys (one per port and address family), lb's limit"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Addresses lb connects to by itself, with the line that set each and what
/// the connection is for: servers (proxied traffic and checks), check and
/// agent addresses, TCP stats sockets.
fn own_destinations(cfg: &Config) -> Vec<(SocketAddr, &Origin, String)> {
    let mut out = Vec::new();
    for b in &cfg.backends {
        for s in &b.servers {
            if s.addr_from_client || s.addr.ip().is_unspecified() {
                continue;
            }
            let fixed = s.port_mode == ServerPort::Fixed;
            let name = format!("server {}/{}", b.name, s.name);
            if fixed {
                out.push((s.addr, &s.origin, name.clone()));
            }
            if s.params.check {
                let port = s.params.check_port.or(fixed.then(|| s.addr.port()));
                if let Some(port) = port {
                    let ip = s.params.check_addr.unwrap_or(s.addr.ip());
                    out.push((
                        SocketAddr::new(ip, port),
                        &s.origin,
                        format!("health checks of {name}"),
                    ));
                }
            }
            if let (true, Some(port)) = (s.params.agent.enabled, s.params.agent.port) {
                let ip = s.params.agent.addr.unwrap_or(s.addr.ip());
                out.push((
                    SocketAddr::new(ip, port),
                    &s.origin,
                    format!("the agent of {name}"),
                ));
            }
        }
    }
    for sock in &cfg.global.stats_sockets {
        if let StatsAddress::Tcp(a) = &sock.value.address {
            out.push((*a, &sock.origin, "stats socket".into()));
        }
    }
    out
}

/// A destination lb connects to that a frontend's bind would steer back to
/// lb: every such connection would loop through the balancer. `is_local`
/// says which addresses are this host's ([`super::always_local`] where the
/// host is not known, as in `lb check`).
pub fn self_steering(cfg: &Config, is_local: &dyn Fn(IpAddr) -> bool) -> Result<(), ConfigError> {
    for (to, origin, what) in own_destinations(cfg) {
        for f in &cfg.frontends {
            if let Some(b) = f.binds.iter().find(|b| b.steers(to, is_local)) {
                return Err(at(
                    origin,
                    &to.to_string(),
                    format!(
                        "{what} connects to {to}, which frontend '{}' binds ({}): lb would \
                         connect to itself",
                        f.name, b.origin
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The most servers one `server-template` line may declare (the maps hold
/// `MAX_SERVERS` in all anyway).
pub const MAX_SERVERS_PER_TEMPLATE: u32 = 1024;

#[cfg(test)]
mod tests {
    use crate::config::parse_str;
    use std::path::Path;

    fn cfg(frontends: &str, servers: &str) -> String {
        format!(
            "defaults\n  mode tcp\n  timeout client 1s\n  timeout connect 1s\n  timeout server 1s\n\
             {frontends}backend b\n{servers}"
        )
    }

    fn err(text: &str) -> String {
        match parse_str(text, Path::new("t.cfg")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn too_many_servers_names_the_first_one_past_the_limit() {
        let servers: String = (0..super::MAX_SERVERS + 5)
            .map(|i| format!("  server s{i} 10.{}.{}.1:80\n", i / 256, i % 256))
            .collect();
        let text = cfg("frontend f\n  bind :80\n  default_backend b\n", &servers);
        let e = err(&text);
        // Nine lines of defaults, frontend and backend, then a server a line.
        let line = 10 + super::MAX_SERVERS;
        assert!(
            e.starts_with(&format!("t.cfg:{line}:1: error: server 's4095'")),
            "{e}"
        );
        assert!(e.contains("at most 4095 servers"), "{e}");
        // One fewer is fine.
        let servers: String = (0..super::MAX_SERVERS)
            .map(|i| format!("  server s{i} 10.{}.{}.1:80\n", i / 256, i % 256))
            .collect();
        parse_str(
            &cfg("frontend f\n  bind :80\n  default_backend b\n", &servers),
            Path::new("t.cfg"),
        )
        .expect("4095 servers are valid");
    }

    #[test]
    fn too_many_frontends_and_bind_keys() {
        let fes: String = (0..super::MAX_FRONTENDS + 1)
            .map(|i| format!("frontend f{i}\n  bind :{}\n  default_backend b\n", 1000 + i))
            .collect();
        let e = err(&cfg(&fes, "  server s 10.0.0.1:80\n"));
        assert!(e.contains("'f256' is frontend number 257"), "{e}");
        let e = err(&cfg(
            "frontend f\n  bind :1-65535\n  bind :::1-2 v6only\n  default_backend b\n",
            "  server s 10.0.0.1:80\n",
        ));
        assert!(
            e.starts_with("t.cfg:8:1: error: with this line the binds expand"),
            "{e}"
        );
    }

    #[test]
    fn a_server_a_bind_steers_back_is_refused() {
        let e = err(&cfg(
            "frontend f\n  bind *:5432\n  default_backend b\n",
            "  server pg 127.0.0.1:5432\n",
        ));
        assert!(
            e.starts_with("t.cfg:10:1: error: server b/pg connects to 127.0.0.1:5432, which frontend 'f' binds (t.cfg:7)"),
            "{e}"
        );
        let e = err(&cfg(
            "frontend f\n  bind 127.0.0.1:20000-39999\n  default_backend b\n",
            "  server pg 10.0.0.1:5432 check port 30000 addr 127.0.0.1\n",
        ));
        assert!(e.contains("health checks of server b/pg"), "{e}");
        let e = err(&cfg(
            "frontend f\n  bind :::7000\n  default_backend b\n",
            "  server pg 10.0.0.1:5432 agent-check agent-port 7000 agent-addr ::1\n",
        ));
        assert!(e.contains("the agent of server b/pg"), "{e}");
        // Another port, another address, or a remote address under a
        // wildcard: fine.
        for (fe, srv) in [
            ("  bind *:5432\n", "  server pg 127.0.0.1:5433\n"),
            ("  bind 10.0.0.2:5432\n", "  server pg 10.0.0.3:5432\n"),
            ("  bind *:5432\n", "  server pg 10.0.0.3:5432 check\n"),
        ] {
            let text = cfg(&format!("frontend f\n{fe}  default_backend b\n"), srv);
            parse_str(&text, Path::new("t.cfg")).expect("no loop");
        }
    }
}
