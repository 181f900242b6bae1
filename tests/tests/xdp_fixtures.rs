//! `lb_xdp` under BPF_PROG_TEST_RUN: built frames (valid, VLAN, IPv4 options,
//! IPv6 extension headers, fragments, truncated at every header boundary, bad
//! IHL, SYN/ACK/RST, denied and allowed sources, SYN rate) through the real
//! program and maps, each with the expected action and counter deltas.
//!
//! Needs root (loading BPF); the object is the one `cargo xtask build` embeds.

use std::net::{Ipv4Addr, Ipv6Addr};

use lb_common::stat;
use lb_tests::report::run_test;
use lb_user::kernel::harness::{Runner, Standalone};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CFG: &str = "\
global
    xdp-syn-rate 1 per-source burst 3
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 10.0.0.1:80
    bind [fd00::1]:80
    tcp-request connection reject if { src 192.0.2.0/24 2001:db8:bad::/48 }
    tcp-request connection accept if { src 198.51.100.7 }
    tcp-request connection reject if { src 198.51.100.0/24 }
    default_backend b
frontend g
    bind *:81
    default_backend b
backend b
    server s 127.0.0.1:1
";

// ------------------------------------------------------------ frame builders

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

fn tcp(dport: u16, flags: u8, doff: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = doff << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    // Options to fill the declared header length (when it is > 5 words).
    t.resize((doff.max(5) as usize) * 4, 1);
    t
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

struct V4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    /// Header length in 32-bit words (options of NOPs beyond 5).
    ihl: u8,
    version: u8,
    frags: u16,
    /// Override of the total length field.
    tot_len: Option<u16>,
}

impl V4 {
    fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        V4 {
            src,
            dst,
            proto: 6,
            ihl: 5,
            version: 4,
            frags: 0x4000, // DF
            tot_len: None,
        }
    }

    fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hl = (self.ihl.max(5) as usize) * 4;
        let mut h = vec![1u8; hl]; // NOP options
        h[0] = (self.version << 4) | self.ihl;
        h[1] = 0;
        let tot = self.tot_len.unwrap_or((hl + payload.len()) as u16);
        h[2..4].copy_from_slice(&tot.to_be_bytes());
        h[4..6].copy_from_slice(&7u16.to_be_bytes());
        h[6..8].copy_from_slice(&self.frags.to_be_bytes());
        h[8] = 64;
        h[9] = self.proto;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// IPv6 with extension headers `exts` (their next-header numbers), in order,
/// ending in `last` (6 for TCP).
fn v6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[u8], last: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let chain: Vec<u8> = exts.iter().copied().chain([last]).collect();
    for (i, &kind) in exts.iter().enumerate() {
        let next = chain[i + 1];
        match kind {
            // AH: length in 4-octet units minus 2; 16 bytes here.
            51 => {
                let mut e = vec![0u8; 16];
                e[0] = next;
                e[1] = 2;
                body.extend(e);
            }
            // Fragment header: fixed 8 bytes.
            44 => {
                let mut e = vec![0u8; 8];
                e[0] = next;
                e[3] = 1; // offset 0, MF
                body.extend(e);
            }
            // Hop-by-hop, routing, destination options: 16 bytes (len 1).
            _ => {
                let mut e = vec![0u8; 16];
                e[0] = next;
                e[1] = 1;
                e[2] = 1; // PadN
                e[3] = 12;
                body.extend(e);
            }
        }
    }
    body.extend_from_slice(payload);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    h[6] = exts.first().copied().unwrap_or(last);
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend(body);
    h
}

/// Ethernet with VLAN tags (TPIDs) in front of `ethertype`.
fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A TCP/IPv4 frame from `src` to 10.0.0.1 (frontend f) port `dport`.
fn v4_frame(src: &str, dport: u16, flags: u8) -> Vec<u8> {
    eth(
        &[],
        0x0800,
        &V4::new(ip4(src), ip4("10.0.0.1")).build(&tcp(dport, flags, 5)),
    )
}

fn v6_frame(src: &str, exts: &[u8], flags: u8) -> Vec<u8> {
    eth(
        &[],
        0x86DD,
        &v6(ip6(src), ip6("fd00::1"), exts, 6, &tcp(80, flags, 5)),
    )
}

// ------------------------------------------------------------ expectations

/// Counter deltas a frame must cause (anything not named must not move).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Delta {
    /// Frontend index the packet belongs to, if any.
    fe: Option<u32>,
    syn: bool,
    acl_drop: bool,
    syn_drop: bool,
    truncated: bool,
    malformed: bool,
    fragment: bool,
    ext_depth: bool,
    syn_cookie: bool,
}

const GLOBALS: [(u32, &str); 8] = [
    (stat::XDP_FRONTEND, "xdp_frontend"),
    (stat::XDP_TRUNCATED, "xdp_truncated"),
    (stat::XDP_MALFORMED, "xdp_malformed"),
    (stat::XDP_FRAGMENT, "xdp_fragment"),
    (stat::XDP_EXT_DEPTH, "xdp_ext_depth"),
    (stat::XDP_ACL_DROP, "xdp_acl_drop"),
    (stat::XDP_SYN_DROP, "xdp_syn_drop"),
    (stat::XDP_SYN_COOKIE, "xdp_syn_cookie"),
];

struct Snap {
    globals: Vec<u64>,
    seen: u64,
    fes: Vec<lb_common::XdpFeStats>,
}

fn snap(r: &Runner) -> Snap {
    Snap {
        globals: GLOBALS.iter().map(|(i, _)| r.stat(*i).unwrap()).collect(),
        seen: r.stat(stat::XDP_SEEN).unwrap(),
        fes: (0..2).map(|i| r.frontend(i).unwrap()).collect(),
    }
}

/// Runs `frame` once and checks the action and every counter; returns the
/// frame as the program left it.
fn check(r: &mut Runner, name: &str, frame: &[u8], action: u32, d: Delta) -> Vec<u8> {
    let before = snap(r);
    let (got, _, out) = r
        .run_out(frame, 1)
        .unwrap_or_else(|e| panic!("{name}: test run: {e}"));
    let after = snap(r);
    assert_eq!(
        got,
        action,
        "{name}: action {got} (1 drop, 2 pass, 3 tx), expected {action}; frame {} bytes",
        frame.len()
    );
    assert_eq!(after.seen - before.seen, 1, "{name}: xdp_seen");
    let want = [
        d.fe.is_some(),
        d.truncated,
        d.malformed,
        d.fragment,
        d.ext_depth,
        d.acl_drop,
        d.syn_drop,
        d.syn_cookie,
    ];
    for (k, (idx, label)) in GLOBALS.iter().enumerate() {
        let _ = idx;
        assert_eq!(
            after.globals[k] - before.globals[k],
            want[k] as u64,
            "{name}: {label}"
        );
    }
    for fe in 0..2u32 {
        let (b, a) = (&before.fes[fe as usize], &after.fes[fe as usize]);
        let mine = d.fe == Some(fe);
        assert_eq!(
            a.packets - b.packets,
            mine as u64,
            "{name}: fe {fe} packets"
        );
        let bytes = if mine { frame.len() as u64 } else { 0 };
        assert_eq!(a.bytes - b.bytes, bytes, "{name}: fe {fe} bytes");
        assert_eq!(
            a.syns - b.syns,
            (mine && d.syn) as u64,
            "{name}: fe {fe} syns"
        );
        assert_eq!(
            a.acl_drops - b.acl_drops,
            (mine && d.acl_drop) as u64,
            "{name}: fe {fe} acl_drops"
        );
        assert_eq!(
            a.syn_drops - b.syn_drops,
            (mine && d.syn_drop) as u64,
            "{name}: fe {fe} syn_drops"
        );
        assert_eq!(
            a.syn_cookies - b.syn_cookies,
            (mine && d.syn_cookie) as u64,
            "{name}: fe {fe} syn_cookies"
        );
    }
    if action != XDP_TX {
        assert_eq!(out, frame, "{name}: a frame not sent back was changed");
    }
    out
}

const F: Option<u32> = Some(0);
const G: Option<u32> = Some(1);

fn counted(syn: bool) -> Delta {
    Delta {
        fe: F,
        syn,
        ..Default::default()
    }
}

fn truncated() -> Delta {
    Delta {
        truncated: true,
        ..Default::default()
    }
}

fn load() -> anyhow::Result<Standalone> {
    lb_tests::util::require_root()?;
    let cfg = lb_user::config::parse_str(CFG, std::path::Path::new("xdp.cfg"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Standalone::new(&cfg).map_err(|e| {
        anyhow::anyhow!(
            "loading lb_xdp (needs root, a BPF kernel and the object from `cargo xtask build`): {e}"
        )
    })
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn xdp_fixtures_parse_count_and_act() {
    run_test(|| {
        let sa = load()?;
        let mut r = sa.runner;
        let r = &mut r;

        // Valid TCP: counted per frontend; only a bare SYN is a SYN.
        check(
            r,
            "v4 SYN",
            &v4_frame("10.1.0.1", 80, SYN),
            XDP_PASS,
            counted(true),
        );
        check(
            r,
            "v4 ACK",
            &v4_frame("10.1.0.1", 80, ACK),
            XDP_PASS,
            counted(false),
        );
        let synack = v4_frame("10.1.0.1", 80, SYN | ACK);
        check(r, "v4 SYN+ACK", &synack, XDP_PASS, counted(false));
        check(
            r,
            "v4 RST",
            &v4_frame("10.1.0.1", 80, RST),
            XDP_PASS,
            counted(false),
        );
        let mut opts = V4::new(ip4("10.1.0.2"), ip4("10.0.0.1"));
        opts.ihl = 8;
        let f = eth(&[], 0x0800, &opts.build(&tcp(80, SYN, 5)));
        check(r, "v4 options (IHL 8)", &f, XDP_PASS, counted(true));
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("10.1.0.3"), ip4("10.0.0.1")).build(&tcp(80, SYN, 10)),
        );
        check(r, "TCP options (doff 10)", &f, XDP_PASS, counted(true));

        // VLANs: one 802.1Q tag, 802.1ad + 802.1Q; a third tag is not parsed.
        let payload = V4::new(ip4("10.1.0.4"), ip4("10.0.0.1")).build(&tcp(80, SYN, 5));
        let f = eth(&[0x8100], 0x0800, &payload);
        check(r, "802.1Q", &f, XDP_PASS, counted(true));
        let f = eth(&[0x88A8, 0x8100], 0x0800, &payload);
        check(r, "802.1ad + 802.1Q", &f, XDP_PASS, counted(true));
        let f = eth(&[0x88A8, 0x8100, 0x8100], 0x0800, &payload);
        check(
            r,
            "three tags: passed untouched",
            &f,
            XDP_PASS,
            Delta::default(),
        );

        // IPv6, with extension headers up to the fixed depth.
        check(
            r,
            "v6 SYN",
            &v6_frame("fd00::2", &[], SYN),
            XDP_PASS,
            counted(true),
        );
        let f = v6_frame("fd00::2", &[0, 60, 43], ACK);
        check(r, "v6 hop+dst+routing", &f, XDP_PASS, counted(false));
        let f = v6_frame("fd00::3", &[51], SYN);
        check(r, "v6 AH", &f, XDP_PASS, counted(true));
        let f = v6_frame("fd00::3", &[0, 60, 43, 60], ACK);
        check(r, "v6 four ext headers", &f, XDP_PASS, counted(false));
        let deep = Delta {
            ext_depth: true,
            ..Default::default()
        };
        let f = v6_frame("fd00::3", &[0, 60, 43, 60, 60], SYN);
        check(r, "v6 five ext headers", &f, XDP_PASS, deep);

        // Fragments: passed and counted, never matched on ports.
        let frag = Delta {
            fragment: true,
            ..Default::default()
        };
        let mut h = V4::new(ip4("192.0.2.9"), ip4("10.0.0.1"));
        h.frags = 0x2000; // MF, offset 0
        let f = eth(&[], 0x0800, &h.build(&tcp(80, SYN, 5)));
        check(r, "v4 first fragment (denied source)", &f, XDP_PASS, frag);
        h.frags = 0x0010; // offset 128 bytes, last
        let f = eth(&[], 0x0800, &h.build(&[0u8; 32]));
        check(r, "v4 later fragment", &f, XDP_PASS, frag);
        let f = v6_frame("fd00::4", &[0, 44], SYN);
        check(r, "v6 fragment header", &f, XDP_PASS, frag);

        // Malformed: dropped and counted.
        let bad = Delta {
            malformed: true,
            ..Default::default()
        };
        for (name, ihl, tot, version) in [
            ("IHL 4", 4u8, None, 4u8),
            ("IHL 0", 0, None, 4),
            ("IHL 15 > total length 40", 15, Some(40u16), 4),
            ("IP version 5", 5, None, 5),
        ] {
            let mut h = V4::new(ip4("10.1.0.5"), ip4("10.0.0.1"));
            h.ihl = ihl;
            h.tot_len = tot;
            h.version = version;
            let f = eth(&[], 0x0800, &h.build(&tcp(80, SYN, 5)));
            check(r, name, &f, XDP_DROP, bad);
        }
        let mut f = v6_frame("fd00::5", &[], SYN);
        f[14] = 0x40; // version 4 in an IPv6 EtherType
        check(r, "v6 wrong version", &f, XDP_DROP, bad);
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("10.1.0.6"), ip4("10.0.0.1")).build(&tcp(80, SYN, 3)),
        );
        check(r, "TCP doff 3", &f, XDP_DROP, bad);

        // Truncated at every byte past the Ethernet header (test runs need at
        // least 14): header boundaries and mid-header cuts all pass, counted.
        let mut opts = V4::new(ip4("10.1.0.7"), ip4("10.0.0.1"));
        opts.ihl = 6;
        let full = eth(&[0x8100, 0x8100], 0x0800, &opts.build(&tcp(80, SYN, 5)));
        for cut in 14..full.len() {
            let name = format!("VLAN+IPv4 cut at {cut} of {}", full.len());
            check(r, &name, &full[..cut], XDP_PASS, truncated());
        }
        check(r, "VLAN+IPv4 whole", &full, XDP_PASS, counted(true));
        let full = v6_frame("fd00::6", &[0, 51], SYN);
        for cut in 14..full.len() {
            let name = format!("IPv6+ext cut at {cut} of {}", full.len());
            check(r, &name, &full[..cut], XDP_PASS, truncated());
        }
        check(r, "IPv6+ext whole", &full, XDP_PASS, counted(true));

        // Not for a frontend, or not TCP: passed untouched.
        let none = Delta::default();
        check(
            r,
            "other port",
            &v4_frame("192.0.2.1", 82, SYN),
            XDP_PASS,
            none,
        );
        let mut udp = V4::new(ip4("192.0.2.1"), ip4("10.0.0.1"));
        udp.proto = 17;
        let f = eth(&[], 0x0800, &udp.build(&[0, 1, 0, 80, 0, 8, 0, 0]));
        check(r, "UDP to a frontend port", &f, XDP_PASS, none);
        check(r, "ARP", &eth(&[], 0x0806, &[0u8; 28]), XDP_PASS, none);
        // A wildcard bind: any destination address on port 81 is frontend g.
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("10.1.0.8"), ip4("172.16.5.5")).build(&tcp(81, SYN, 5)),
        );
        let g = Delta {
            fe: G,
            syn: true,
            ..Default::default()
        };
        check(r, "wildcard bind (frontend g)", &f, XDP_PASS, g);

        // tcp-request connection: denied sources dropped (any flag), the
        // accept exception and other sources passed.
        let deny = |syn| Delta {
            fe: F,
            syn,
            acl_drop: true,
            ..Default::default()
        };
        check(
            r,
            "denied v4 SYN",
            &v4_frame("192.0.2.77", 80, SYN),
            XDP_DROP,
            deny(true),
        );
        check(
            r,
            "denied v4 ACK",
            &v4_frame("192.0.2.77", 80, ACK),
            XDP_DROP,
            deny(false),
        );
        let f = v6_frame("2001:db8:bad:1::5", &[], SYN);
        check(r, "denied v6 SYN", &f, XDP_DROP, deny(true));
        let f = v6_frame("2001:db8:bad0::5", &[], SYN);
        check(r, "v6 next to the denied /48", &f, XDP_PASS, counted(true));
        let f = v4_frame("198.51.100.7", 80, SYN);
        check(r, "accept exception", &f, XDP_PASS, counted(true));
        let f = v4_frame("198.51.100.8", 80, SYN);
        check(r, "rest of the /24", &f, XDP_DROP, deny(true));
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("192.0.2.77"), ip4("172.16.5.5")).build(&tcp(81, SYN, 5)),
        );
        check(r, "denied source, frontend without rules", &f, XDP_PASS, g);

        // SYN rate: burst 3 at 1/s per source; ACKs are not limited, and
        // another source has its own bucket.
        for i in 0..3 {
            let f = v4_frame("10.9.9.9", 80, SYN);
            check(
                r,
                &format!("SYN {i} within burst"),
                &f,
                XDP_PASS,
                counted(true),
            );
        }
        let limited = Delta {
            fe: F,
            syn: true,
            syn_drop: true,
            ..Default::default()
        };
        for i in 3..6 {
            let f = v4_frame("10.9.9.9", 80, SYN);
            check(r, &format!("SYN {i} over the rate"), &f, XDP_DROP, limited);
        }
        let f = v4_frame("10.9.9.9", 80, ACK);
        check(r, "ACK from a limited source", &f, XDP_PASS, counted(false));
        let f = v4_frame("10.9.9.10", 80, SYN);
        check(r, "SYN from another source", &f, XDP_PASS, counted(true));
        let f = v6_frame("fd00::9", &[], SYN);
        check(
            r,
            "v6 source has its own bucket",
            &f,
            XDP_PASS,
            counted(true),
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let f = v4_frame("10.9.9.9", 80, SYN);
        check(
            r,
            "one SYN more a second later",
            &f,
            XDP_PASS,
            counted(true),
        );
        let f = v4_frame("10.9.9.9", 80, SYN);
        check(r, "and then limited again", &f, XDP_DROP, limited);

        // The program's own cost per packet (no NIC, no stack), for the report.
        for (name, f) in [
            ("denied v4 SYN (ACL drop)", v4_frame("192.0.2.77", 80, SYN)),
            ("allowed v4 ACK (pass)", v4_frame("10.1.0.1", 80, ACK)),
            (
                "v6 SYN, two ext headers (pass)",
                v6_frame("fd00::7", &[0, 60], SYN),
            ),
        ] {
            let (_, per_run) = r.run(&f, 1_000_000)?;
            println!("[lb-tests] lb_xdp {name}: {per_run:?} per packet (BPF_PROG_TEST_RUN x 1M)");
        }
        Ok(())
    })
}

/// Replacing the ACL tables flips generations: the new rules apply at once,
/// the old entries are gone, and a source denied by both the old and the new
/// rules is dropped by every packet sent while the tables are swapped.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn xdp_acl_swap_is_atomic() {
    run_test(|| {
        let sa = load()?;
        let Standalone {
            mut runner,
            mut front,
            tables,
        } = sa;
        let old = tables[0].clone().expect("frontend f has rules");
        let entries_old = front.acl_entries();
        let cfg2 = CFG.replace(
            "tcp-request connection accept if { src 198.51.100.7 }",
            "tcp-request connection reject if { src 203.0.113.0/24 }",
        );
        let cfg2 = lb_user::config::parse_str(&cfg2, std::path::Path::new("xdp2.cfg"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let new = lb_user::config::l4acl::compile(&cfg2.frontends[0].tcp_request_connection)
            .expect("rules");
        let gen0 = front.generation();
        front.install_acls(&[Some(&new), None])?;
        assert_ne!(front.generation(), gen0);
        assert_eq!(
            front.acl_entries(),
            new.v4().count() + new.v6().count(),
            "old generation left behind (had {entries_old})"
        );
        let (a, _) = runner.run(&v4_frame("203.0.113.5", 80, SYN), 1)?;
        assert_eq!(a, XDP_DROP, "new deny applies");
        let (a, _) = runner.run(&v4_frame("198.51.100.7", 80, SYN), 1)?;
        assert_eq!(a, XDP_DROP, "the old exception is gone");

        // Swap back and forth while packets from an always-denied source run.
        let denied = v4_frame("192.0.2.200", 80, SYN);
        let drops_before = runner.frontend(0)?.acl_drops;
        let runs = 400u64;
        std::thread::scope(|s| -> anyhow::Result<()> {
            let swapper = s.spawn(move || -> anyhow::Result<u32> {
                let mut swaps = 0;
                for i in 0..200 {
                    let t = if i % 2 == 0 { &old } else { &new };
                    front.install_acls(&[Some(t), None])?;
                    swaps += 1;
                }
                Ok(swaps)
            });
            for _ in 0..runs {
                let (a, _) = runner.run(&denied, 50)?;
                assert_eq!(a, XDP_DROP, "a denied packet passed during a swap");
            }
            let swaps = swapper.join().expect("swapper thread")?;
            println!(
                "[lb-tests] {swaps} ACL swaps while {} packets ran",
                runs * 50
            );
            Ok(())
        })?;
        let drops = runner.frontend(0)?.acl_drops - drops_before;
        assert_eq!(drops, runs * 50, "every run of the denied packet dropped");
        Ok(())
    })
}

/// A TCP header with the MSS option (`doff` 6), or none (`doff` 5).
fn tcp_mss(dport: u16, mss: Option<u16>) -> Vec<u8> {
    let mut t = tcp(dport, SYN, if mss.is_some() { 6 } else { 5 });
    t[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    if let Some(m) = mss {
        t[20..24].copy_from_slice(&[2, 4, (m >> 8) as u8, m as u8]);
    }
    t
}

/// Checks that `out` is the SYN-ACK answering the SYN `input` whose IP header
/// starts at `l3`: MACs swapped, link header otherwise kept, addresses and
/// ports swapped, ACK of the SYN's sequence + 1, the MSS option, valid
/// checksums. Returns the MSS offered.
fn assert_synack(name: &str, input: &[u8], out: &[u8], l3: usize, v6: bool) -> u16 {
    let (ip_len, a_len) = if v6 { (40, 16) } else { (20, 4) };
    assert_eq!(out.len(), l3 + ip_len + 24, "{name}: SYN-ACK length");
    assert_eq!(&out[0..6], &input[6..12], "{name}: destination MAC");
    assert_eq!(&out[6..12], &input[0..6], "{name}: source MAC");
    assert_eq!(
        &out[12..l3],
        &input[12..l3],
        "{name}: VLAN tags and EtherType"
    );
    let (i, o) = (&input[l3..], &out[l3..]);
    let (src, dst) = if v6 { (8, 24) } else { (12, 16) };
    assert_eq!(
        &o[src..src + a_len],
        &i[dst..dst + a_len],
        "{name}: source address"
    );
    assert_eq!(
        &o[dst..dst + a_len],
        &i[src..src + a_len],
        "{name}: destination address"
    );
    if !v6 {
        assert_eq!(o[0], 0x45, "{name}: IPv4 without options");
        assert_eq!(u16::from_be_bytes([o[2], o[3]]), 44, "{name}: total length");
        assert_eq!(csum(&o[..20]), 0, "{name}: IPv4 header checksum");
    } else {
        assert_eq!(o[6], 6, "{name}: next header TCP");
        assert_eq!(
            u16::from_be_bytes([o[4], o[5]]),
            24,
            "{name}: payload length"
        );
    }
    let (it, ot) = (&i[ip_len..], &o[ip_len..]);
    assert_eq!(&ot[0..2], &it[2..4], "{name}: source port");
    assert_eq!(&ot[2..4], &it[0..2], "{name}: destination port");
    let seq = u32::from_be_bytes([it[4], it[5], it[6], it[7]]);
    let ack = u32::from_be_bytes([ot[8], ot[9], ot[10], ot[11]]);
    assert_eq!(ack, seq.wrapping_add(1), "{name}: acknowledges the SYN");
    assert_eq!(ot[12] >> 4, 6, "{name}: data offset");
    assert_eq!(ot[13], SYN | ACK, "{name}: flags");
    assert_eq!(&ot[20..22], &[2, 4], "{name}: MSS option");
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&o[src..src + a_len]);
    pseudo.extend_from_slice(&o[dst..dst + a_len]);
    pseudo.extend_from_slice(&[0, 6, 0, 24]);
    pseudo.extend_from_slice(ot);
    assert_eq!(csum(&pseudo), 0, "{name}: TCP checksum");
    u16::from_be_bytes([ot[22], ot[23]])
}

/// SYN cookies from XDP: with `tcp_syncookies=2` in the listeners' namespace
/// (the kernel would answer every SYN with a cookie) the program turns SYNs
/// into the kernel's cookie SYN-ACK and sends them back; with 1 and an empty
/// SYN queue (no flood), or with `xdp-syn-cookies off`, SYNs pass untouched.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn xdp_syn_cookie_fixtures() {
    use std::os::fd::AsFd;
    run_test(|| {
        let ns = lb_tests::netns::Netns::new("xdpck")?;
        ns.run("sysctl", &["-qw", "net.ipv4.tcp_syncookies=2"])?;
        let (l4, l6) = ns.enter(|| -> std::io::Result<_> {
            Ok((
                std::net::TcpListener::bind("127.0.0.1:0")?,
                std::net::TcpListener::bind("[::1]:0")?,
            ))
        })?;
        let Standalone {
            mut runner,
            mut front,
            ..
        } = load()?;
        let r = &mut runner;
        // Frontend f: index 0 for its IPv4 bind, 1 for IPv6.
        r.set_listener(0, l4.as_fd())?;
        r.set_listener(1, l6.as_fd())?;
        let cookie = Delta {
            fe: F,
            syn: true,
            syn_cookie: true,
            ..Default::default()
        };
        // A new source each time: the configuration's SYN rate limit allows 3.
        let mut n = 0u8;
        let mut v4_syn = |tags: &[u16], mss| {
            n += 1;
            let src = std::net::Ipv4Addr::new(10, 1, 3, n);
            eth(
                tags,
                0x0800,
                &V4::new(src, ip4("10.0.0.1")).build(&tcp_mss(80, mss)),
            )
        };

        let f = v4_syn(&[], Some(1460));
        let out = check(r, "v4 SYN, MSS 1460", &f, XDP_TX, cookie);
        assert_eq!(assert_synack("v4 SYN, MSS 1460", &f, &out, 14, false), 1460);
        // No MSS option: the frame grows by the option; RFC 9293's default.
        let f = v4_syn(&[], None);
        let out = check(r, "v4 SYN, no options", &f, XDP_TX, cookie);
        assert_eq!(
            assert_synack("v4 SYN, no options", &f, &out, 14, false),
            536
        );
        // An MSS between the kernel's cookie table entries rounds down.
        let f = v4_syn(&[0x8100], Some(1400));
        let out = check(r, "802.1Q v4 SYN, MSS 1400", &f, XDP_TX, cookie);
        assert_eq!(assert_synack("802.1Q v4 SYN", &f, &out, 18, false), 1300);
        let f = v4_syn(&[0x88A8, 0x8100], Some(1460));
        let out = check(r, "QinQ v4 SYN", &f, XDP_TX, cookie);
        assert_synack("QinQ v4 SYN", &f, &out, 22, false);
        let f = eth(
            &[],
            0x86DD,
            &v6(
                ip6("fd00::2"),
                ip6("fd00::1"),
                &[],
                6,
                &tcp_mss(80, Some(1440)),
            ),
        );
        let out = check(r, "v6 SYN, MSS 1440", &f, XDP_TX, cookie);
        assert_eq!(assert_synack("v6 SYN", &f, &out, 14, true), 1440);

        // A SYN as Linux sends it: MSS, SACK permitted, timestamps, window
        // scaling; the cookie keeps only the MSS.
        let mut t = tcp(80, SYN, 10);
        t[20..40].copy_from_slice(&[
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("10.1.4.1"), ip4("10.0.0.1")).build(&t),
        );
        let out = check(r, "v4 SYN, Linux options", &f, XDP_TX, cookie);
        assert_eq!(
            assert_synack("v4 SYN, Linux options", &f, &out, 14, false),
            1460
        );

        // What the cookie path leaves to the kernel: IPv4 options, IPv6
        // extension headers, segments other than a bare SYN.
        let mut opts = V4::new(ip4("10.1.2.4"), ip4("10.0.0.1"));
        opts.ihl = 6;
        let f = eth(&[], 0x0800, &opts.build(&tcp_mss(80, Some(1460))));
        check(r, "v4 options", &f, XDP_PASS, counted(true));
        let f = eth(
            &[],
            0x86DD,
            &v6(
                ip6("fd00::3"),
                ip6("fd00::1"),
                &[60],
                6,
                &tcp_mss(80, Some(1440)),
            ),
        );
        check(r, "v6 destination options", &f, XDP_PASS, counted(true));
        let f = v4_frame("10.1.2.5", 80, ACK);
        check(r, "ACK", &f, XDP_PASS, counted(false));
        // Frontend g has no listener in the map: nothing to ask.
        let f = eth(
            &[],
            0x0800,
            &V4::new(ip4("10.1.2.6"), ip4("172.16.0.1")).build(&tcp_mss(81, Some(1460))),
        );
        let g = Delta {
            fe: G,
            syn: true,
            ..Default::default()
        };
        check(r, "frontend without a listener", &f, XDP_PASS, g);

        // No flood: the kernel keeps the SYN.
        ns.run("sysctl", &["-qw", "net.ipv4.tcp_syncookies=1"])?;
        let f = v4_syn(&[], Some(1460));
        check(r, "SYN queue not full", &f, XDP_PASS, counted(true));
        ns.run("sysctl", &["-qw", "net.ipv4.tcp_syncookies=2"])?;
        front.set_syn_cookies(false)?;
        check(r, "xdp-syn-cookies off", &f, XDP_PASS, counted(true));
        front.set_syn_cookies(true)?;
        check(r, "and on again", &f, XDP_TX, cookie);
        Ok(())
    })
}
