//! `tcp-request connection accept|reject [if|unless <cond>]` compiled into
//! longest-prefix-match entries, one table per frontend.
//!
//! Only conditions on the client address (`src`, with `always_true`,
//! `always_false` and the predefined ACLs built on them) are compiled: then the
//! verdict for an address depends only on which of the configured networks
//! contain it. Networks nest or are disjoint, so the networks containing an
//! address are exactly the ancestors of the longest one that does: computing the
//! rules' verdict once per configured network (plus the whole space) gives a
//! table in which the longest match decides, which is what an LPM trie does in
//! the XDP program. Userspace looks the same table up at accept, so connections
//! that did not pass through the XDP program (another interface, loopback,
//! `--no-xdp`, fragments) get the same verdict.
//!
//! Rules that test more (`dst`, `src_port`, `dst_port`) or read a PROXY
//! header (`expect-proxy layer4`) make the frontend's table an empty one for
//! XDP and are run as written at accept ([`Table::verdict`]).
//!
//! Addresses live in one 128-bit space: IPv4 as `::ffff:a.b.c.d`, so an IPv4
//! pattern also matches its v4-mapped IPv6 form and the other way round.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{AclTest, Fetch, Pattern, TcpRequestAction, TcpRequestRule};

/// `::ffff:0:0/96`, the IPv4 part of the address space.
const V4_MAPPED: u128 = 0xffff << 32;

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => V4_MAPPED | u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len as u32))
    }
}

/// A pattern as (prefix length, masked address) in the 128-bit space.
fn net_of(p: &Pattern) -> Option<(u8, u128)> {
    let Pattern::Net(n) = p else { return None };
    let len = match n.addr {
        IpAddr::V4(_) => 96 + n.prefix.min(32),
        IpAddr::V6(_) => n.prefix.min(128),
    };
    Some((len, mask(to_u128(n.addr), len)))
}

/// One ACL test, ready to be asked "does it contain this network?".
enum Test {
    Const(bool),
    /// The networks, and their distinct prefix lengths.
    Src(HashSet<(u8, u128)>, Vec<u8>),
}

impl Test {
    fn new(t: &AclTest) -> Self {
        match t.fetch {
            Fetch::AlwaysTrue => Test::Const(true),
            Fetch::Src => {
                let nets: HashSet<(u8, u128)> = t.patterns.iter().filter_map(net_of).collect();
                let lens: BTreeSet<u8> = nets.iter().map(|n| n.0).collect();
                Test::Src(nets, lens.into_iter().collect())
            }
            // `unsupported` keeps the other fetches out; never matching is the
            // safe reading should one slip through.
            _ => Test::Const(false),
        }
    }

    /// Whether every address of the network (len, addr) matches.
    fn covers(&self, len: u8, addr: u128) -> bool {
        match self {
            Test::Const(b) => *b,
            Test::Src(nets, lens) => lens
                .iter()
                .take_while(|&&l| l <= len)
                .any(|&l| nets.contains(&(l, mask(addr, l)))),
        }
    }
}

/// An AND of terms: (negate, tests of which any must match).
type Conj = Vec<(bool, Vec<usize>)>;

struct Rule {
    reject: bool,
    unless: bool,
    /// None: no condition (always applies). OR of AND of (negate, tests: any).
    any_of: Option<Vec<Conj>>,
}

/// One frontend's rules, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// (prefix length, masked address, reject) in the 128-bit space, sorted.
    entries: Vec<(u8, u128, bool)>,
    /// Prefix lengths present, longest first.
    lens: Vec<u8>,
    by_net: HashMap<(u8, u128), bool>,
    /// Number of rules compiled.
    pub rules: usize,
    /// Rules that test more than the client address (`dst`, `src_port`,
    /// `dst_port`) or read a PROXY header (`expect-proxy layer4`): run as
    /// they are at accept, with nothing for the XDP program (it would have
    /// to drop a SYN on a verdict it cannot reach).
    pub at_accept: Option<Vec<TcpRequestRule>>,
}

/// What `tcp-request connection` rules decide for one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnVerdict {
    pub reject: bool,
    /// `expect-proxy layer4` applied: read a PROXY header first.
    pub expect_proxy: bool,
}

/// Whether a rule needs more than the client address.
pub(crate) fn needs_accept(r: &TcpRequestRule) -> bool {
    r.action == TcpRequestAction::ExpectProxy
        || r.cond
            .iter()
            .flat_map(|c| c.any_of.iter().flatten())
            .any(|t| {
                t.tests
                    .iter()
                    .any(|t| matches!(t.fetch, Fetch::Dst | Fetch::SrcPort | Fetch::DstPort))
            })
}

/// Compiles a frontend's rules; None when it has none (everything is accepted).
/// Rules `unsupported` refuses must have been filtered out by the caller.
pub fn compile(rules: &[TcpRequestRule]) -> Option<Table> {
    if rules.is_empty() {
        return None;
    }
    if rules.iter().any(needs_accept) {
        return Some(Table {
            entries: Vec::new(),
            lens: Vec::new(),
            by_net: HashMap::new(),
            rules: rules.len(),
            at_accept: Some(rules.to_vec()),
        });
    }
    let mut tests: Vec<Test> = Vec::new();
    let mut compiled = Vec::new();
    let mut nodes: BTreeSet<(u8, u128)> = BTreeSet::new();
    nodes.insert((0, 0));
    nodes.insert((96, V4_MAPPED));
    for r in rules {
        let any_of = r.cond.as_ref().map(|c| {
            c.any_of
                .iter()
                .map(|conj| {
                    conj.iter()
                        .map(|term| {
                            let idx = term
                                .tests
                                .iter()
                                .map(|t| {
                                    let test = Test::new(t);
                                    if let Test::Src(nets, _) = &test {
                                        nodes.extend(nets.iter().copied());
                                    }
                                    tests.push(test);
                                    tests.len() - 1
                                })
                                .collect();
                            (term.negate, idx)
                        })
                        .collect()
                })
                .collect()
        });
        compiled.push(Rule {
            reject: r.action == TcpRequestAction::Reject,
            unless: r.cond.as_ref().is_some_and(|c| c.unless),
            any_of,
        });
    }
    let verdict = |len: u8, addr: u128| -> bool {
        for r in &compiled {
            let applies = match &r.any_of {
                None => true,
                Some(any_of) => {
                    let v = any_of.iter().any(|conj| {
                        conj.iter()
                            .all(|(neg, idx)| neg ^ idx.iter().any(|&i| tests[i].covers(len, addr)))
                    });
                    v != r.unless
                }
            };
            if applies {
                return r.reject;
            }
        }
        false
    };
    let entries: Vec<(u8, u128, bool)> = nodes
        .iter()
        .map(|&(len, addr)| (len, addr, verdict(len, addr)))
        .collect();
    let lens: BTreeSet<u8> = entries.iter().map(|e| e.0).collect();
    Some(Table {
        by_net: entries.iter().map(|&(l, a, v)| ((l, a), v)).collect(),
        entries,
        lens: lens.into_iter().rev().collect(),
        rules: rules.len(),
        at_accept: None,
    })
}

impl Table {
    /// The rules' verdict on a connection from `src` to `dst`; `dst` is
    /// asked for (a `getsockname`) only by rules that test it.
    pub fn verdict(
        &self,
        src: std::net::SocketAddr,
        dst: impl FnOnce() -> Option<std::net::SocketAddr>,
    ) -> ConnVerdict {
        let Some(rules) = &self.at_accept else {
            return ConnVerdict {
                reject: self.rejects(src.ip()),
                expect_proxy: false,
            };
        };
        let l4 = crate::config::matching::L4 {
            src,
            dst: dst().unwrap_or(src),
        };
        let mut v = ConnVerdict::default();
        for r in rules {
            if !r.cond.as_ref().is_none_or(|c| c.holds(&l4)) {
                continue;
            }
            match r.action {
                // Not a final action in HAProxy: the next rules still run.
                TcpRequestAction::ExpectProxy => v.expect_proxy = true,
                TcpRequestAction::Accept => return v,
                TcpRequestAction::Reject => {
                    v.reject = true;
                    return v;
                }
            }
        }
        v
    }

    /// Whether a connection from `ip` is rejected: the longest entry decides.
    pub fn rejects(&self, ip: IpAddr) -> bool {
        let a = to_u128(ip);
        self.lens
            .iter()
            .find_map(|&l| self.by_net.get(&(l, mask(a, l))))
            .copied()
            .unwrap_or(false)
    }

    /// Entries for the IPv4 trie: (prefix length, address, reject).
    pub fn v4(&self) -> impl Iterator<Item = (u8, Ipv4Addr, bool)> + '_ {
        self.entries
            .iter()
            .filter(|&&(l, a, _)| l >= 96 && mask(a, 96) == V4_MAPPED)
            .map(|&(l, a, v)| (l - 96, Ipv4Addr::from(a as u32), v))
    }

    /// Entries for the IPv6 trie (v4-mapped networks included, for IPv6
    /// packets with such a source).
    pub fn v6(&self) -> impl Iterator<Item = (u8, Ipv6Addr, bool)> + '_ {
        self.entries
            .iter()
            .map(|&(l, a, v)| (l, Ipv6Addr::from(a), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn rules(body: &str) -> Vec<TcpRequestRule> {
        let text = format!(
            "defaults\n mode tcp\n timeout client 1s\n timeout server 1s\n timeout connect 1s\n\
             frontend f\n bind :80\n{body}\n default_backend b\nbackend b\n server s 127.0.0.1:1\n"
        );
        let cfg = parse_str(&text, std::path::Path::new("t.cfg"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        cfg.frontends[0].tcp_request_connection.clone()
    }

    /// HAProxy's semantics, straight from the rules: the first rule whose
    /// condition holds decides; accept when none does.
    fn reference(rules: &[TcpRequestRule], ip: IpAddr) -> bool {
        let a = to_u128(ip);
        let test = |t: &AclTest| match t.fetch {
            Fetch::AlwaysTrue => true,
            Fetch::Src => t
                .patterns
                .iter()
                .filter_map(net_of)
                .any(|(l, n)| mask(a, l) == n),
            _ => false,
        };
        for r in rules {
            let applies = match &r.cond {
                None => true,
                Some(c) => {
                    let v = c.any_of.iter().any(|conj| {
                        conj.iter()
                            .all(|term| term.negate ^ term.tests.iter().any(test))
                    });
                    v != c.unless
                }
            };
            if applies {
                return r.action == TcpRequestAction::Reject;
            }
        }
        false
    }

    /// A deterministic stream of addresses near the configured networks and
    /// anywhere else.
    fn probes(t: &Table) -> Vec<IpAddr> {
        let mut out = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for &(l, a, _) in &t.entries {
            let span = if l == 128 { 0 } else { u128::MAX >> l };
            for off in [0, 1, span, span.wrapping_add(1), span / 2] {
                let v = a.wrapping_add(off);
                out.push(IpAddr::V6(Ipv6Addr::from(v)));
                if mask(v, 96) == V4_MAPPED {
                    out.push(IpAddr::V4(Ipv4Addr::from(v as u32)));
                }
                let below = a.wrapping_sub(1);
                if mask(below, 96) == V4_MAPPED {
                    out.push(IpAddr::V4(Ipv4Addr::from(below as u32)));
                }
            }
        }
        for _ in 0..2000 {
            out.push(IpAddr::V4(Ipv4Addr::from(next() as u32)));
            out.push(IpAddr::V6(Ipv6Addr::from(
                ((next() as u128) << 64) | next() as u128,
            )));
        }
        out
    }

    fn agrees(body: &str) -> Table {
        let r = rules(body);
        let t = compile(&r).expect("rules");
        for ip in probes(&t) {
            assert_eq!(t.rejects(ip), reference(&r, ip), "{ip} with\n{body}");
        }
        t
    }

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    #[test]
    fn deny_list() {
        let t = agrees(" tcp-request connection reject if { src 10.0.0.0/8 192.168.1.5 }");
        assert!(t.rejects(v4("10.1.2.3")));
        assert!(t.rejects(v4("192.168.1.5")));
        assert!(!t.rejects(v4("192.168.1.6")));
        assert!(!t.rejects("2001:db8::1".parse().unwrap()));
        assert!(t.rejects("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn allow_list_then_reject_everything_else() {
        let t = agrees(
            " tcp-request connection accept if { src 10.1.0.0/16 2001:db8::/32 }\n \
             tcp-request connection reject",
        );
        assert!(!t.rejects(v4("10.1.200.1")));
        assert!(t.rejects(v4("10.2.0.1")));
        assert!(!t.rejects("2001:db8:1::1".parse().unwrap()));
        assert!(t.rejects("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn reject_unless_and_nesting() {
        // An exception inside a denied range, then a deny inside the exception.
        agrees(
            " acl inner src 10.1.1.0/24\n acl hole src 10.1.1.128/25\n \
             tcp-request connection reject if hole\n \
             tcp-request connection accept if inner\n \
             tcp-request connection reject if { src 10.0.0.0/8 }",
        );
        let t = agrees(" tcp-request connection reject unless { src 172.16.0.0/12 ::1 }");
        assert!(t.rejects(v4("8.8.8.8")));
        assert!(!t.rejects(v4("172.20.0.1")));
        assert!(!t.rejects("::1".parse().unwrap()));
    }

    #[test]
    fn and_or_negation() {
        agrees(
            " acl a src 10.0.0.0/8\n acl b src 10.5.0.0/16 192.0.2.0/24\n \
             tcp-request connection reject if a !b or { src 192.0.2.128/25 }",
        );
        agrees(" tcp-request connection reject if { always_true } !LOCALHOST");
        agrees(" tcp-request connection reject if FALSE");
    }

    #[test]
    fn first_match_wins_over_later_rules() {
        let t = agrees(
            " tcp-request connection accept if { src 10.0.0.1 }\n \
             tcp-request connection reject if { src 10.0.0.0/24 }",
        );
        assert!(!t.rejects(v4("10.0.0.1")));
        assert!(t.rejects(v4("10.0.0.2")));
        let v4s: Vec<_> = t.v4().collect();
        assert!(v4s.contains(&(32, "10.0.0.1".parse().unwrap(), false)));
        assert!(v4s.contains(&(24, "10.0.0.0".parse().unwrap(), true)));
        assert!(v4s.contains(&(0, Ipv4Addr::UNSPECIFIED, false)));
    }

    #[test]
    fn rules_beyond_the_source_run_at_accept() {
        let sa = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let t = compile(&rules(
            " tcp-request connection expect-proxy layer4 if { src 10.0.0.0/8 }\n\
             tcp-request connection reject if { dst_port 8080 } !{ src 10.0.0.0/8 }\n\
             tcp-request connection accept if { src_port 1024: }\n\
             tcp-request connection reject",
        ))
        .unwrap();
        // Nothing for the XDP program, which decides on the source alone.
        assert!(t.is_empty() && t.at_accept.is_some());
        let v = |src: &str, dst: &str| t.verdict(sa(src), || Some(sa(dst)));
        let (acc, rej) = (false, true);
        assert_eq!(v("10.1.1.1:2000", "10.9.9.9:8080").reject, acc);
        assert!(v("10.1.1.1:2000", "10.9.9.9:8080").expect_proxy);
        assert_eq!(v("192.0.2.1:2000", "10.9.9.9:8080").reject, rej);
        assert_eq!(v("192.0.2.1:2000", "10.9.9.9:80").reject, acc);
        assert_eq!(v("192.0.2.1:999", "10.9.9.9:80").reject, rej);
        assert!(!v("192.0.2.1:2000", "10.9.9.9:80").expect_proxy);
        // Source-only rules stay XDP tables.
        let t = compile(&rules(" tcp-request connection reject if { src 1.2.3.4 }")).unwrap();
        assert!(t.at_accept.is_none() && !t.is_empty());
        assert!(t.verdict(sa("1.2.3.4:1"), || None).reject);
        assert!(compile(&[]).is_none());
    }
}
