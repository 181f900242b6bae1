//! lb (HAProxy-style) config texts.

use crate::topology::hp;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The seed PostgreSQL example, verbatim.
pub const SEED_PGSQL: &str = "\
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend pgsql_frontend
    bind 10.210.1.1:5432
    mode tcp
    default_backend pgsql_backend
backend pgsql_backend
    mode tcp
    balance roundrobin
    server pgsql_node1 10.210.2.11:5432 check
    server pgsql_node2 10.210.2.12:5432 check
    server pgsql_node3 10.210.2.13:5432 check
";

/// Write `<dir>/lb.cfg`.
pub fn write_cfg(dir: &Path, text: &str) -> Result<PathBuf> {
    crate::util::write_file(dir, "lb.cfg", text)
}

/// A one-frontend, one-backend round-robin TCP config.
/// `bind`: e.g. "10.210.1.1:5432", "*:5432", ":::5433", "[fd10:210:1::1]:5432".
/// `servers`: (name, ip) pairs, all on `port`. `server_opts`: appended to
/// every server line, e.g. "check" or "check inter 1s rise 2 fall 3".
/// `timeout_cs`: timeout client/server, e.g. "30s".
pub fn tcp_config(
    name: &str,
    bind: &str,
    servers: &[(&str, &str)],
    port: u16,
    server_opts: &str,
    timeout_cs: &str,
) -> String {
    let mut s = format!(
        "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
         timeout client {timeout_cs}\n    timeout server {timeout_cs}\n\
         frontend {name}_frontend\n    bind {bind}\n    mode tcp\n    default_backend {name}_backend\n\
         backend {name}_backend\n    mode tcp\n    balance roundrobin\n"
    );
    for (sname, ip) in servers {
        s.push_str(&format!(
            "    server {sname} {} {server_opts}\n",
            hp(ip, port)
        ));
    }
    s
}

/// The pgsql example with the given bind, backend IPs and server options.
pub fn pgsql_config(bind: &str, backend_ips: &[&str; 3], server_opts: &str) -> String {
    let servers: Vec<(&str, &str)> = ["pgsql_node1", "pgsql_node2", "pgsql_node3"]
        .iter()
        .copied()
        .zip(backend_ips.iter().copied())
        .collect();
    tcp_config("pgsql", bind, &servers, 5432, server_opts, "30s")
}

#[cfg(test)]
mod tests {
    #[test]
    fn pgsql_config_matches_seed() {
        let c = super::pgsql_config("10.210.1.1:5432", &crate::topology::BACKENDS_V4, "check");
        assert_eq!(c.replace(" \n", "\n"), super::SEED_PGSQL);
        let c6 = super::pgsql_config(
            "[fd10:210:1::1]:5432",
            &crate::topology::BACKENDS_V6,
            "check",
        );
        assert!(c6.contains("server pgsql_node1 [fd10:210:2::11]:5432 check"));
    }
}
