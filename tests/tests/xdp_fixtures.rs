//! `lb_xdp` under BPF_PROG_TEST_RUN, as tables: each row is a frame built
//! with [`lb_tests::packet::Frame`], what the program must do with it (pass,
//! drop, or send back a SYN-ACK checked field by field) and the delta of every
//! global and per-frontend counter. Rows run in order through one loaded
//! program with the real maps, so state carries from row to row on purpose:
//! SYN rate buckets fill and refill, ACL generations are swapped.
//!
//! Needs root (loading BPF); the object is the one `cargo xtask build` embeds.

use std::fmt::Debug;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{ensure, Result};
use lb_common::stat;
use lb_tests::packet::{
    ip4, ip6, Frame, Ip, Parsed, ACK, ETH_HLEN, ETH_P_ARP, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IP_MF, RST, SYN,
};
use lb_tests::report::run_test;
use lb_user::kernel::harness::{Runner, Standalone};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// `lb_front`'s answers (tc): TC_ACT_SHOT, and tcx's "next" (-1).
const TC_ACT_SHOT: u32 = 2;
const TCX_NEXT: u32 = u32::MAX;

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

const F_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const F_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// TCP from `src` to frontend f (IPv4 bind, port 80).
fn to_f(src: &str) -> Frame {
    Frame::tcp4(ip4(src), F_V4)
}

/// TCP from `src` to frontend f (IPv6 bind, port 80).
fn to_f6(src: &str) -> Frame {
    Frame::tcp6(ip6(src), F_V6)
}

/// TCP from `src` to `dst`:81, frontend g's wildcard bind.
fn to_g(src: &str, dst: &str) -> Frame {
    Frame::tcp4(ip4(src), ip4(dst)).dport(81)
}

// ------------------------------------------------------------------- rows

/// What the program must do with a row's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// XDP_PASS, the frame untouched.
    Passed,
    /// XDP_DROP, the frame untouched.
    Dropped,
    /// XDP_TX of the SYN-ACK answering the SYN, offering this MSS.
    SynAck(u16),
}
use Verdict::{Dropped, Passed, SynAck};

/// Counter deltas a frame must cause; anything not named must not move
/// (`xdp_seen` always moves by one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Delta {
    /// Frontend index the packet belongs to (`xdp_frontend`, packets, bytes).
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

const NONE: Delta = Delta {
    fe: None,
    syn: false,
    acl_drop: false,
    syn_drop: false,
    truncated: false,
    malformed: false,
    fragment: false,
    ext_depth: false,
    syn_cookie: false,
};
/// Frontend f's packet that is not a bare SYN.
const F_PKT: Delta = Delta {
    fe: Some(0),
    ..NONE
};
const F_SYN: Delta = Delta { syn: true, ..F_PKT };
const F_ACL: Delta = Delta {
    acl_drop: true,
    ..F_PKT
};
const F_ACL_SYN: Delta = Delta { syn: true, ..F_ACL };
const F_SYN_DROP: Delta = Delta {
    syn_drop: true,
    ..F_SYN
};
const F_COOKIE: Delta = Delta {
    syn_cookie: true,
    ..F_SYN
};
const G_SYN: Delta = Delta {
    fe: Some(1),
    syn: true,
    ..NONE
};
const TRUNCATED: Delta = Delta {
    truncated: true,
    ..NONE
};
const MALFORMED: Delta = Delta {
    malformed: true,
    ..NONE
};
const FRAGMENT: Delta = Delta {
    fragment: true,
    ..NONE
};
const EXT_DEPTH: Delta = Delta {
    ext_depth: true,
    ..NONE
};

struct Row {
    what: String,
    frame: Frame,
    verdict: Verdict,
    delta: Delta,
    /// Time to let pass before the row runs (SYN rate refill).
    wait: Duration,
}

fn row(what: impl Into<String>, frame: Frame, verdict: Verdict, delta: Delta) -> Row {
    Row {
        what: what.into(),
        frame,
        verdict,
        delta,
        wait: Duration::ZERO,
    }
}

impl Row {
    fn after(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

// ----------------------------------------------------------------- tables
//
// Tables are `rustfmt::skip`: one row per line is what makes them readable
// as tables.

const HOP: u8 = IPPROTO_HOPOPTS;
const DST: u8 = IPPROTO_DSTOPTS;
const RTG: u8 = IPPROTO_ROUTING;

/// Well-formed TCP (only a bare SYN is a SYN), VLAN tags, IPv6 extension
/// headers up to the program's fixed depth, fragments, malformed headers.
#[rustfmt::skip]
fn parse_table() -> Vec<Row> {
    let tagged = || to_f("10.1.0.4").flags(SYN);
    vec![
        row("v4 SYN", to_f("10.1.0.1").flags(SYN), Passed, F_SYN),
        row("v4 ACK", to_f("10.1.0.1").flags(ACK), Passed, F_PKT),
        row("v4 SYN+ACK", to_f("10.1.0.1").flags(SYN | ACK), Passed, F_PKT),
        row("v4 RST", to_f("10.1.0.1").flags(RST), Passed, F_PKT),
        row("v4 options (IHL 8)", to_f("10.1.0.2").ihl(8).flags(SYN), Passed, F_SYN),
        row("TCP options (doff 10)", to_f("10.1.0.3").doff(10).flags(SYN), Passed, F_SYN),
        row("802.1Q", tagged().vlan(&[100]), Passed, F_SYN),
        row("802.1ad + 802.1Q", tagged().qinq(100, 101), Passed, F_SYN),
        // The program parses two tags; a third is someone else's business.
        row("three tags: passed untouched", tagged().qinq(100, 101).vlan(&[102]), Passed, NONE),
        row("v6 SYN", to_f6("fd00::2").flags(SYN), Passed, F_SYN),
        row("v6 hop+dst+routing", to_f6("fd00::2").ext(&[HOP, DST, RTG]).flags(ACK), Passed, F_PKT),
        row("v6 AH", to_f6("fd00::3").ext(&[IPPROTO_AH]).flags(SYN), Passed, F_SYN),
        row("v6 four ext headers", to_f6("fd00::3").ext(&[HOP, DST, RTG, DST]).flags(ACK), Passed, F_PKT),
        row("v6 five ext headers", to_f6("fd00::3").ext(&[HOP, DST, RTG, DST, DST]).flags(SYN), Passed, EXT_DEPTH),
        // Fragments are passed and counted, never matched on ports: a denied
        // source's first fragment is not dropped.
        row("v4 first fragment (denied source)", Frame::tcp4(ip4("192.0.2.9"), F_V4).frag_off(IP_MF).flags(SYN), Passed, FRAGMENT),
        row("v4 later fragment", Frame::ip4(ip4("192.0.2.9"), F_V4, IPPROTO_TCP).frag_off(128 / 8).payload(&[0; 32]), Passed, FRAGMENT),
        row("v6 fragment header", to_f6("fd00::4").ext(&[HOP, IPPROTO_FRAGMENT]).flags(SYN), Passed, FRAGMENT),
        row("IHL 4", to_f("10.1.0.5").ihl(4).flags(SYN), Dropped, MALFORMED),
        row("IHL 0", to_f("10.1.0.5").ihl(0).flags(SYN), Dropped, MALFORMED),
        row("IHL 15 > total length 40", to_f("10.1.0.5").ihl(15).tot_len(40).flags(SYN), Dropped, MALFORMED),
        row("IP version 5", to_f("10.1.0.5").ip_version(5).flags(SYN), Dropped, MALFORMED),
        row("v6 wrong version", to_f6("fd00::5").ip_version(4).flags(SYN), Dropped, MALFORMED),
        row("TCP doff 3", to_f("10.1.0.6").doff(3).flags(SYN), Dropped, MALFORMED),
    ]
}

/// Two frames cut at every byte past the Ethernet header (test runs need at
/// least that much), so every header boundary and every cut inside a header
/// is tried: all passed and counted as truncated; the whole frames count.
#[rustfmt::skip]
fn truncation_table() -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, whole) in [
        ("VLAN+IPv4", to_f("10.1.0.7").vlan(&[100, 101]).ihl(6).flags(SYN)),
        ("IPv6+ext", to_f6("fd00::6").ext(&[HOP, IPPROTO_AH]).flags(SYN)),
    ] {
        let len = whole.build().len();
        for cut in ETH_HLEN..len {
            let what = format!("{name} cut at {cut} of {len}");
            rows.push(row(what, whole.clone().cut(cut), Passed, TRUNCATED));
        }
        rows.push(row(format!("{name} whole"), whole, Passed, F_SYN));
    }
    rows
}

/// Not for a frontend, or not TCP: passed untouched, counted nowhere; a
/// wildcard bind takes any destination address.
#[rustfmt::skip]
fn not_ours_table() -> Vec<Row> {
    vec![
        row("other port", to_f("192.0.2.1").dport(82).flags(SYN), Passed, NONE),
        row("UDP to a frontend port", Frame::udp4(ip4("192.0.2.1"), F_V4).sport(1).dport(80), Passed, NONE),
        row("ARP", Frame::ethertype(ETH_P_ARP, &[0; 28]), Passed, NONE),
        row("wildcard bind (frontend g)", to_g("10.1.0.8", "172.16.5.5").flags(SYN), Passed, G_SYN),
    ]
}

/// tcp-request connection: denied sources dropped whatever the flags, the
/// accept exception and other sources passed, rules apply per frontend.
#[rustfmt::skip]
fn acl_table() -> Vec<Row> {
    vec![
        row("denied v4 SYN", to_f("192.0.2.77").flags(SYN), Dropped, F_ACL_SYN),
        row("denied v4 ACK", to_f("192.0.2.77").flags(ACK), Dropped, F_ACL),
        row("denied v6 SYN", to_f6("2001:db8:bad:1::5").flags(SYN), Dropped, F_ACL_SYN),
        row("v6 next to the denied /48", to_f6("2001:db8:bad0::5").flags(SYN), Passed, F_SYN),
        row("accept exception", to_f("198.51.100.7").flags(SYN), Passed, F_SYN),
        row("rest of the /24", to_f("198.51.100.8").flags(SYN), Dropped, F_ACL_SYN),
        row("denied source, frontend without rules", to_g("192.0.2.77", "172.16.5.5").flags(SYN), Passed, G_SYN),
    ]
}

/// `xdp-syn-rate 1 per-source burst 3`: ACKs are not limited, every source
/// (v4 or v6) has its own bucket, a second refills one token.
#[rustfmt::skip]
fn syn_rate_table() -> Vec<Row> {
    let syn = || to_f("10.9.9.9").flags(SYN);
    let mut rows = Vec::new();
    rows.extend((0..3).map(|i| row(format!("SYN {i} within burst"), syn(), Passed, F_SYN)));
    rows.extend((3..6).map(|i| row(format!("SYN {i} over the rate"), syn(), Dropped, F_SYN_DROP)));
    rows.extend([
        row("ACK from a limited source", to_f("10.9.9.9").flags(ACK), Passed, F_PKT),
        row("SYN from another source", to_f("10.9.9.10").flags(SYN), Passed, F_SYN),
        row("v6 source has its own bucket", to_f6("fd00::9").flags(SYN), Passed, F_SYN),
        row("one SYN more a second later", syn(), Passed, F_SYN).after(Duration::from_millis(1100)),
        row("and then limited again", syn(), Dropped, F_SYN_DROP),
    ]);
    rows
}

/// After the swap to rules that deny 203.0.113.0/24 instead of excepting
/// 198.51.100.7.
#[rustfmt::skip]
fn acl_after_swap_table() -> Vec<Row> {
    vec![
        row("new deny applies", to_f("203.0.113.5").flags(SYN), Dropped, F_ACL_SYN),
        row("the old exception is gone", to_f("198.51.100.7").flags(SYN), Dropped, F_ACL_SYN),
    ]
}

// ----------------------------------------------------------------- runner

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

fn snap(r: &Runner) -> Result<Snap, String> {
    fn err(e: impl std::fmt::Display) -> String {
        format!("reading counters: {e}")
    }
    Ok(Snap {
        globals: GLOBALS
            .iter()
            .map(|(i, _)| r.stat(*i).map_err(err))
            .collect::<Result<_, _>>()?,
        seen: r.stat(stat::XDP_SEEN).map_err(err)?,
        fes: (0..2)
            .map(|i| r.frontend(i).map_err(err))
            .collect::<Result<_, _>>()?,
    })
}

fn expect<T: PartialEq + Debug>(bad: &mut Vec<String>, what: &str, got: T, want: T) {
    if got != want {
        bad.push(format!("{what}: {got:?}, expected {want:?}"));
    }
}

/// Runs one row; the error lists every way it went wrong.
fn check(r: &mut Runner, row: &Row) -> Result<(), String> {
    std::thread::sleep(row.wait);
    let frame = row.frame.build();
    let before = snap(r)?;
    let (got, _, out) = r.run_out(&frame, 1).map_err(|e| format!("test run: {e}"))?;
    let after = snap(r)?;
    let mut bad = Vec::new();
    let action = match (row.verdict, r.tc) {
        (Passed, false) => XDP_PASS,
        (Dropped, false) => XDP_DROP,
        (SynAck(_), false) => XDP_TX,
        (Passed, true) => TCX_NEXT,
        (Dropped, true) => TC_ACT_SHOT,
        (SynAck(_), true) => return Err("no SYN cookies at tc: not a row for lb_front".into()),
    };
    let legend = if r.tc {
        "action (2 shot, 4294967295 next)"
    } else {
        "action (1 drop, 2 pass, 3 tx)"
    };
    expect(&mut bad, legend, got, action);
    expect(&mut bad, "xdp_seen", after.seen - before.seen, 1);
    let d = row.delta;
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
    for (k, (_, label)) in GLOBALS.iter().enumerate() {
        let delta = after.globals[k] - before.globals[k];
        expect(&mut bad, label, delta, want[k] as u64);
    }
    for fe in 0..2u32 {
        let (b, a) = (&before.fes[fe as usize], &after.fes[fe as usize]);
        let mine = d.fe == Some(fe);
        let bytes = if mine { frame.len() as u64 } else { 0 };
        for (label, got, want) in [
            ("packets", a.packets - b.packets, mine as u64),
            ("bytes", a.bytes - b.bytes, bytes),
            ("syns", a.syns - b.syns, (mine && d.syn) as u64),
            (
                "acl_drops",
                a.acl_drops - b.acl_drops,
                (mine && d.acl_drop) as u64,
            ),
            (
                "syn_drops",
                a.syn_drops - b.syn_drops,
                (mine && d.syn_drop) as u64,
            ),
            (
                "syn_cookies",
                a.syn_cookies - b.syn_cookies,
                (mine && d.syn_cookie) as u64,
            ),
        ] {
            expect(&mut bad, &format!("frontend {fe} {label}"), got, want);
        }
    }
    match row.verdict {
        SynAck(mss) if got == XDP_TX => synack_mismatches(&frame, &out, mss, &mut bad),
        SynAck(_) => {}
        Passed | Dropped => {
            if out != frame {
                bad.push("a frame not sent back was changed".into());
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{} ({}-byte frame)", bad.join("; "), frame.len()))
    }
}

/// Checks that `out` is the SYN-ACK answering `syn`: MACs swapped, tags and
/// EtherType kept, addresses and ports swapped, ACK of the SYN's sequence + 1,
/// no IP options or extension headers, the MSS option alone, both checksums.
fn synack_mismatches(syn: &[u8], out: &[u8], mss: u16, bad: &mut Vec<String>) {
    let (i, o) = match (Parsed::parse(syn), Parsed::parse(out)) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) => return bad.push(format!("the SYN does not parse: {e}")),
        (_, Err(e)) => return bad.push(format!("the SYN-ACK does not parse: {e}")),
    };
    expect(bad, "destination MAC", o.dst_mac, i.src_mac);
    expect(bad, "source MAC", o.src_mac, i.dst_mac);
    expect(bad, "VLAN tags", &o.tags, &i.tags);
    expect(bad, "EtherType", o.ethertype, i.ethertype);
    expect(bad, "bytes after the IP datagram", o.trailer, 0);
    let (Some(iip), Some(oip)) = (&i.ip, &o.ip) else {
        return bad.push("no IP header".into());
    };
    expect(bad, "source address", oip.src(), iip.dst());
    expect(bad, "destination address", oip.dst(), iip.src());
    match oip {
        Ip::V4(h) => {
            expect(bad, "IHL (no options)", h.ihl, 5);
            expect(bad, "IPv4 total length", h.tot_len, 44);
            expect(bad, "IPv4 header checksum valid", h.checksum_ok, true);
        }
        Ip::V6(h) => {
            expect(bad, "IPv6 extension headers", h.ext.len(), 0);
            expect(bad, "IPv6 next header", h.next_header, IPPROTO_TCP);
            expect(bad, "IPv6 payload length", h.payload_len, 24);
        }
    }
    let (Some(it), Some(ot)) = (i.tcp(), o.tcp()) else {
        return bad.push("no TCP header".into());
    };
    expect(bad, "source port", ot.sport, it.dport);
    expect(bad, "destination port", ot.dport, it.sport);
    expect(bad, "ACK of the SYN", ot.ack, it.seq.wrapping_add(1));
    expect(bad, "data offset", ot.doff, 6);
    expect(bad, "flags", ot.flags, SYN | ACK);
    expect(bad, "MSS option", ot.mss(), Some(mss));
    expect(bad, "option bytes (the MSS alone)", ot.options.len(), 4);
    expect(bad, "TCP checksum valid", ot.checksum_ok, true);
}

/// Collects a table's failures: the test fails with every failed row named
/// rather than at the first one, so one run shows the whole picture.
struct Tally {
    table: &'static str,
    rows: usize,
    failed: Vec<String>,
}

impl Tally {
    fn new(table: &'static str) -> Self {
        Tally {
            table,
            rows: 0,
            failed: Vec::new(),
        }
    }

    fn run(&mut self, r: &mut Runner, row: &Row) {
        self.rows += 1;
        if let Err(e) = check(r, row) {
            let n = self.rows;
            self.failed
                .push(format!("{} #{n} `{}`: {e}", self.table, row.what));
        }
    }

    fn finish(self) -> Result<()> {
        println!(
            "[lb-tests] table {}: {} rows, {} failed",
            self.table,
            self.rows,
            self.failed.len()
        );
        ensure!(self.failed.is_empty(), "\n{}", self.failed.join("\n"));
        Ok(())
    }
}

fn run_table(r: &mut Runner, table: &'static str, rows: &[Row]) -> Result<()> {
    let mut tally = Tally::new(table);
    for row in rows {
        tally.run(r, row);
    }
    tally.finish()
}

/// Every table's failures together, so one run shows the whole picture.
fn all_passed(results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    ensure!(failed.is_empty(), "{}", failed.join("\n"));
    Ok(())
}

fn load() -> Result<Standalone> {
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
        let mut r = load()?.runner;
        // Every table runs even when one fails: the failures of all are shown.
        let results = [
            run_table(&mut r, "parse", &parse_table()),
            run_table(&mut r, "truncation", &truncation_table()),
            run_table(&mut r, "not ours", &not_ours_table()),
            run_table(&mut r, "acl", &acl_table()),
            run_table(&mut r, "syn rate", &syn_rate_table()),
        ];
        // The program's own cost per packet (no NIC, no stack), for the report.
        for (name, f) in [
            ("denied v4 SYN (ACL drop)", to_f("192.0.2.77").flags(SYN)),
            ("allowed v4 ACK (pass)", to_f("10.1.0.1").flags(ACK)),
            (
                "v6 SYN, two ext headers (pass)",
                to_f6("fd00::7").ext(&[HOP, DST]).flags(SYN),
            ),
        ] {
            let (_, per_run) = r.run(&f.build(), 1_000_000)?;
            println!("[lb-tests] lb_xdp {name}: {per_run:?} per packet (BPF_PROG_TEST_RUN x 1M)");
        }
        all_passed(results)
    })
}

/// The same tables through `lb_front`, the front door at tc ingress: the
/// same counters and decisions (drop = TC_ACT_SHOT, pass = tcx's next, so
/// `lb_nat` after it still sees the packet).
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn tc_fixtures_parse_count_and_act() {
    run_test(|| {
        let mut r = load()?.runner;
        r.tc = true;
        // BPF_PROG_TEST_RUN builds no skb of an IPv6 frame shorter than the
        // IPv6 header (EINVAL), so those cuts can only be tried on XDP.
        let (truncation, unbuildable): (Vec<Row>, Vec<Row>) =
            truncation_table().into_iter().partition(|row| {
                !(row.what.starts_with("IPv6") && row.frame.build().len() < ETH_HLEN + 40)
            });
        println!(
            "[lb-tests] tc truncation: {} IPv6 cuts inside the IPv6 header left to the XDP table \
             (the test run makes no skb of them)",
            unbuildable.len()
        );
        let results = [
            run_table(&mut r, "tc parse", &parse_table()),
            run_table(&mut r, "tc truncation", &truncation),
            run_table(&mut r, "tc not ours", &not_ours_table()),
            run_table(&mut r, "tc acl", &acl_table()),
            run_table(&mut r, "tc syn rate", &syn_rate_table()),
        ];
        let (_, per_run) = r.run(&to_f("192.0.2.77").flags(SYN).build(), 1_000_000)?;
        println!(
            "[lb-tests] lb_front denied v4 SYN: {per_run:?} per packet (BPF_PROG_TEST_RUN x 1M)"
        );
        all_passed(results)
    })
}

/// Replacing the ACL tables flips generations: the new rules apply at once,
/// the old entries are gone, and a source denied by both the old and the new
/// rules is dropped by every packet sent while the tables are swapped.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn xdp_acl_swap_is_atomic() {
    run_test(|| {
        let Standalone {
            mut runner,
            mut front,
            tables,
        } = load()?;
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
        run_table(&mut runner, "acl after swap", &acl_after_swap_table())?;

        // Swap back and forth while packets from an always-denied source run.
        let denied = to_f("192.0.2.200").flags(SYN).build();
        let drops_before = runner.frontend(0)?.acl_drops;
        let runs = 400u64;
        std::thread::scope(|s| -> Result<()> {
            let swapper = s.spawn(move || -> Result<u32> {
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

/// The SYN cookie decision's inputs besides the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Env {
    /// `net.ipv4.tcp_syncookies` in the listeners' namespace: 2 makes the
    /// kernel answer every SYN with a cookie, 1 only when the queue is full.
    tcp_syncookies: u8,
    xdp_syn_cookies: bool,
}

const ALWAYS: Env = Env {
    tcp_syncookies: 2,
    xdp_syn_cookies: true,
};
const QUEUE_NOT_FULL: Env = Env {
    tcp_syncookies: 1,
    ..ALWAYS
};
const XDP_OFF: Env = Env {
    xdp_syn_cookies: false,
    ..ALWAYS
};

/// A SYN as Linux sends it: MSS 1460, SACK permitted, timestamps, window
/// scaling.
const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// A SYN whose sequence number has every high bit set, so that an ACK
/// computed in the wrong byte order or width shows.
fn syn4(src: &str) -> Frame {
    to_f(src).seq(0xffff_fff0).flags(SYN)
}

fn syn6(src: &str) -> Frame {
    to_f6(src).seq(0xffff_fff0).flags(SYN)
}

/// Each cookie row comes from a new source (or repeats one at most 3 times):
/// the configuration's SYN rate limit allows a burst of 3.
#[rustfmt::skip]
fn syn_cookie_table() -> Vec<(Env, Row)> {
    let cookie = |what: &str, f: Frame, mss: u16| (ALWAYS, row(what, f, SynAck(mss), F_COOKIE));
    let pass = |env: Env, what: &str, f: Frame, d: Delta| (env, row(what, f, Passed, d));
    vec![
        cookie("v4 SYN, MSS 1460", syn4("10.1.3.1").mss(1460), 1460),
        // The frame grows by the option; RFC 9293's default MSS.
        cookie("v4 SYN, no options", syn4("10.1.3.2"), 536),
        // Between the kernel's cookie table entries: rounded down.
        cookie("802.1Q v4 SYN, MSS 1400", syn4("10.1.3.3").vlan(&[100]).mss(1400), 1300),
        cookie("QinQ v4 SYN", syn4("10.1.3.4").qinq(100, 101).mss(1460), 1460),
        cookie("v6 SYN, MSS 1440", syn6("fd00::2").mss(1440), 1440),
        // The cookie keeps only the MSS of the full set.
        cookie("v4 SYN, Linux options", to_f("10.1.4.1").flags(SYN).tcp_options(&LINUX_SYN_OPTIONS), 1460),
        // What the cookie path leaves to the kernel.
        pass(ALWAYS, "v4 options", syn4("10.1.2.4").ihl(6).mss(1460), F_SYN),
        pass(ALWAYS, "v6 destination options", syn6("fd00::3").ext(&[DST]).mss(1440), F_SYN),
        pass(ALWAYS, "ACK", to_f("10.1.2.5").flags(ACK), F_PKT),
        // Frontend g has no listener in the map: nothing to ask.
        pass(ALWAYS, "frontend without a listener", to_g("10.1.2.6", "172.16.0.1").seq(0xffff_fff0).flags(SYN).mss(1460), G_SYN),
        pass(QUEUE_NOT_FULL, "SYN queue not full", syn4("10.1.3.5").mss(1460), F_SYN),
        pass(XDP_OFF, "xdp-syn-cookies off", syn4("10.1.3.5").mss(1460), F_SYN),
        cookie("and on again", syn4("10.1.3.5").mss(1460), 1460),
    ]
}

/// SYN cookies from XDP: with `tcp_syncookies=2` in the listeners' namespace
/// the program turns SYNs into the kernel's cookie SYN-ACK and sends them
/// back; with 1 and an empty SYN queue (no flood), or with
/// `xdp-syn-cookies off`, SYNs pass untouched.
#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn xdp_syn_cookie_fixtures() {
    use std::os::fd::AsFd;
    run_test(|| {
        let ns = lb_tests::netns::Netns::new("xdpck")?;
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
        let mut tally = Tally::new("syn cookies");
        let mut env: Option<Env> = None;
        for (want, row) in &syn_cookie_table() {
            if env.map(|e| e.tcp_syncookies) != Some(want.tcp_syncookies) {
                let set = format!("net.ipv4.tcp_syncookies={}", want.tcp_syncookies);
                ns.run("sysctl", &["-qw", &set])?;
            }
            if env.map(|e| e.xdp_syn_cookies) != Some(want.xdp_syn_cookies) {
                front.set_syn_cookies(want.xdp_syn_cookies)?;
            }
            env = Some(*want);
            tally.run(r, row);
        }
        tally.finish()
    })
}
