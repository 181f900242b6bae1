//! Conditions evaluated on a connection's layer-4 facts (`src`, `dst`,
//! `src_port`, `dst_port`): what `use_backend ... if|unless COND` asks at
//! accept. HAProxy's matching: a term holds when any of its ACL's tests
//! matches any of its patterns; terms joined by AND, alternatives by `or`;
//! `!` negates a term, `unless` the whole condition. IPv4 addresses and
//! networks compare with IPv4-mapped IPv6 ones (a dual-stack listener).
use std::net::{IpAddr, SocketAddr};

use super::model::{AclTest, Condition, Fetch, Pattern};

/// The facts a condition may test.
#[derive(Clone, Copy, Debug)]
pub struct L4 {
    /// The client, as the PROXY header said when the bind reads one.
    pub src: SocketAddr,
    /// The address the client connected to.
    pub dst: SocketAddr,
}

const V4_MAPPED: u128 = 0xffff << 32;

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => V4_MAPPED | u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let len = match net {
        IpAddr::V4(_) => 96 + u32::from(prefix.min(32)),
        IpAddr::V6(_) => u32::from(prefix.min(128)),
    };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    to_u128(ip) & mask == to_u128(net) & mask
}

fn test_matches(t: &AclTest, l4: &L4) -> bool {
    let addr = |ip: IpAddr| {
        t.patterns.iter().any(|p| match p {
            Pattern::Net(n) => in_net(ip, n.addr, n.prefix),
            Pattern::Int { .. } => false,
        })
    };
    let port = |v: u16| {
        t.patterns.iter().any(|p| match *p {
            Pattern::Int { lo, hi } => (lo..=hi).contains(&i64::from(v)),
            Pattern::Net(_) => false,
        })
    };
    match t.fetch {
        Fetch::AlwaysTrue => true,
        Fetch::AlwaysFalse => false,
        Fetch::Src => addr(l4.src.ip()),
        Fetch::Dst => addr(l4.dst.ip()),
        Fetch::SrcPort => port(l4.src.port()),
        Fetch::DstPort => port(l4.dst.port()),
    }
}

impl Condition {
    /// Whether the condition holds for this connection.
    pub fn holds(&self, l4: &L4) -> bool {
        let any = self.any_of.iter().any(|all| {
            all.iter()
                .all(|term| term.tests.iter().any(|t| test_matches(t, l4)) != term.negate)
        });
        any != self.unless
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    fn l4(src: &str, dst: &str) -> L4 {
        L4 {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    /// The backend `use_backend` picks in frontend f of `rules`, or the default.
    fn pick(rules: &str, c: &L4) -> String {
        let cfg = parse(&format!(
            "defaults\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\
             frontend f\n    bind :80\n{rules}    default_backend dflt\n\
             backend dflt\n    server s 10.9.9.9:1\nbackend a\n    server s 10.9.9.9:1\n\
             backend b\n    server s 10.9.9.9:1\n"
        ));
        let f = &cfg.frontends[0];
        let idx = f
            .use_backends
            .iter()
            .find(|u| u.cond.as_ref().is_none_or(|cond| cond.holds(c)))
            .map(|u| u.backend_idx)
            .or(f.default_backend_idx)
            .unwrap();
        cfg.backends[idx].name.clone()
    }

    #[test]
    fn src_dst_and_ports() {
        let r =
            "    use_backend a if { src 10.1.0.0/16 }\n    use_backend b if { dst_port 5433 }\n";
        assert_eq!(pick(r, &l4("10.1.2.3:40000", "10.0.0.1:80")), "a");
        assert_eq!(pick(r, &l4("10.2.2.3:40000", "10.0.0.1:5433")), "b");
        assert_eq!(pick(r, &l4("10.2.2.3:40000", "10.0.0.1:80")), "dflt");
        // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6.
        assert_eq!(
            pick(r, &l4("[::ffff:10.1.9.9]:1", "[::ffff:10.0.0.1]:80")),
            "a"
        );
        let r = "    use_backend a if { dst 192.0.2.1 } { src_port 1024:2047 }\n";
        assert_eq!(pick(r, &l4("10.0.0.9:1500", "192.0.2.1:80")), "a");
        assert_eq!(pick(r, &l4("10.0.0.9:3000", "192.0.2.1:80")), "dflt");
        let r = "    use_backend a if { src fd00::/8 }\n";
        assert_eq!(pick(r, &l4("[fd12::1]:1", "[fd00::1]:80")), "a");
        assert_eq!(pick(r, &l4("10.0.0.1:1", "10.0.0.2:80")), "dflt");
    }

    #[test]
    fn named_acls_negation_or_and_unless() {
        let r = "    acl lan src 10.0.0.0/8 192.168.0.0/16\n    acl pg dst_port 5432\n    \
                 use_backend a if lan pg || !lan { dst_port 6379 }\n    use_backend b unless lan\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:5432")), "a");
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:6379")), "dflt");
        assert_eq!(pick(r, &l4("172.16.0.1:1", "10.0.0.1:6379")), "a");
        assert_eq!(pick(r, &l4("172.16.0.1:1", "10.0.0.1:80")), "b");
        // The first rule that holds wins; one without a condition always does.
        let r = "    use_backend b\n    use_backend a if TRUE\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:1")), "b");
        let r = "    use_backend a if FALSE\n";
        assert_eq!(pick(r, &l4("10.1.1.1:1", "10.0.0.1:1")), "dflt");
    }
}
