//! What a `bind` line stands for in the kernel: the `LB_BINDS` keys the
//! `sk_lookup` program matches, and whether a destination would be steered.
use std::net::{IpAddr, SocketAddr};

use lb_common::{BindKey, AF_INET, AF_INET6};

use super::model::{Bind, Frontend};

impl Bind {
    /// The `LB_BINDS` keys of this line, one per address family and port.
    pub fn keys(&self) -> Vec<BindKey> {
        let mut keys = Vec::new();
        for port in self.port_first..=self.port_last {
            let port_host = port as u32;
            for (family, addr) in self.families() {
                let mut addr_be = [0; 16];
                match addr {
                    Some(IpAddr::V4(a)) => addr_be[..4].copy_from_slice(&a.octets()),
                    Some(IpAddr::V6(a)) => addr_be = a.octets(),
                    None => {}
                }
                keys.push(BindKey {
                    family,
                    port_host,
                    addr_be,
                });
            }
        }
        keys
    }

    /// The (family, address) pairs this line binds; None: every address of
    /// that family.
    fn families(&self) -> Vec<(u32, Option<IpAddr>)> {
        match self.addr {
            None => vec![(AF_INET, None)],
            Some(IpAddr::V4(a)) if a.is_unspecified() => vec![(AF_INET, None)],
            Some(a @ IpAddr::V4(_)) => vec![(AF_INET, Some(a))],
            Some(IpAddr::V6(a)) if a.is_unspecified() => {
                // `::` also takes IPv4 (Linux's default bindv6only=0) unless
                // v6only.
                if self.v6only {
                    vec![(AF_INET6, None)]
                } else {
                    vec![(AF_INET6, None), (AF_INET, None)]
                }
            }
            // A v4-mapped address is also an IPv4 bind.
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => vec![
                    (AF_INET6, Some(IpAddr::V6(a))),
                    (AF_INET, Some(IpAddr::V4(v4))),
                ],
                None => vec![(AF_INET6, Some(IpAddr::V6(a)))],
            },
        }
    }

    /// Whether `sk_lookup` would steer a connection to `to` here: same port
    /// and family, and the same address or a wildcard while `to` is one of
    /// this host's addresses (`is_local`).
    pub fn steers(&self, to: SocketAddr, is_local: &dyn Fn(IpAddr) -> bool) -> bool {
        if !(self.port_first..=self.port_last).contains(&to.port()) {
            return false;
        }
        let ip = match to.ip() {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            a => a,
        };
        let family = if ip.is_ipv4() { AF_INET } else { AF_INET6 };
        self.families().into_iter().any(|(f, a)| {
            f == family
                && match a {
                    Some(a) => a == ip,
                    None => is_local(ip),
                }
        })
    }
}

impl Frontend {
    /// Every `LB_BINDS` key of this frontend.
    pub fn bind_keys(&self) -> Vec<BindKey> {
        self.binds.iter().flat_map(Bind::keys).collect()
    }
}

/// An address every host has: loopback or the unspecified address (which
/// connects to the host itself). Other local addresses are known only on the
/// host that runs lb.
pub fn always_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn fe(binds: &str) -> Frontend {
        let text = format!(
            "defaults\n  mode tcp\n  timeout client 1s\n  timeout connect 1s\n  timeout server 1s\n\
             frontend f\n{binds}  default_backend b\nbackend b\n  server s 10.9.9.9:1\n"
        );
        parse_str(&text, std::path::Path::new("t.cfg"))
            .expect("valid")
            .frontends
            .remove(0)
    }

    #[test]
    fn keys_cover_families_and_ports() {
        let f = fe("  bind :::80-81\n");
        let keys = f.bind_keys();
        assert_eq!(keys.len(), 4, "v6 and v4 wildcard for two ports");
        let f = fe("  bind :::80 v6only\n");
        assert_eq!(f.bind_keys().len(), 1);
        let f = fe("  bind ::ffff:10.1.2.3:80\n");
        let k = f.bind_keys();
        assert_eq!(k.len(), 2);
        assert_eq!(k[1].family, AF_INET);
        assert_eq!(&k[1].addr_be[..4], &[10, 1, 2, 3]);
    }

    #[test]
    fn steering_of_a_destination() {
        let local = |ip: IpAddr| always_local(ip) || ip == "10.0.0.5".parse::<IpAddr>().unwrap();
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let f = fe("  bind *:5432\n");
        let b = &f.binds[0];
        assert!(b.steers(sa("127.0.0.1:5432"), &local));
        assert!(b.steers(sa("10.0.0.5:5432"), &local));
        assert!(
            !b.steers(sa("10.0.0.6:5432"), &local),
            "not a local address"
        );
        assert!(!b.steers(sa("127.0.0.1:5433"), &local));
        assert!(!b.steers(sa("[::1]:5432"), &local), "IPv4 wildcard only");
        let f = fe("  bind 127.0.0.1:32768-60999\n");
        let b = &f.binds[0];
        assert!(b.steers(sa("127.0.0.1:40000"), &local));
        assert!(!b.steers(sa("127.0.0.2:40000"), &local));
        let f = fe("  bind :::6379\n");
        let b = &f.binds[0];
        assert!(b.steers(sa("[::1]:6379"), &local));
        assert!(b.steers(sa("127.0.0.1:6379"), &local), "dual stack");
        assert!(b.steers(sa("[::ffff:127.0.0.1]:6379"), &local));
    }
}
