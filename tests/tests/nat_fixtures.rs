//! `lb_nat` under BPF_PROG_TEST_RUN, as a table: each row is a frame built
//! with [`lb_tests::packet::Frame`], the interface it arrives on, and what
//! the program must do with it (rewrite it toward the server or the client,
//! refuse it with a RST, pass it untouched, drop it), the output parsed and
//! its checksums verified by the test's own computation. Rows run in order
//! through one loaded program, so the flow a SYN opens is the flow later rows
//! use, and a second client finds the one balancer port taken.
//!
//! Needs root (loading BPF); the object is the one `cargo xtask build` embeds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{ensure, Context, Result};
use lb_common::{
    stat, BindKey, NatBackend, NatServer, NatVip, AF_INET, AF_INET6, NAT_ALGO_RR, NAT_VIP_LOG,
};
use lb_tests::packet::{ip4, ip6, Frame, Parsed, ACK, FIN, IPPROTO_FRAGMENT, IP_MF, PSH, RST, SYN};
use lb_tests::report::run_test;
use lb_user::kernel::harness::NatRunner;

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

const CLIENT_IF: u32 = 3;
const SERVER_IF: u32 = 7;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SRV4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const OWN4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const SRV6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 2);
const OWN6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);
/// The one balancer port: a second flow to the same server is refused.
const PORT: u16 = 61000;

fn addr16(ip: IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v) => a[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => a = v.octets(),
    }
    a
}

fn family(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// Frontend 0 on VIP4:80 (backend 0: server 0, SRV4:5432) and VIP6:80
/// (backend 1: server 1, SRV6:5432), round robin over one server each.
fn setup(r: &mut NatRunner) -> Result<()> {
    let vips: Vec<(BindKey, NatVip)> = [(IpAddr::V4(VIP4), 0), (IpAddr::V6(VIP6), 1)]
        .iter()
        .map(|&(ip, b)| {
            (
                BindKey {
                    family: family(ip),
                    port_host: 80,
                    addr_be: addr16(ip),
                },
                NatVip {
                    frontend: 0,
                    backend: b,
                    // Ended flows go through the log ring, as with tcplog.
                    flags: NAT_VIP_LOG,
                    _pad: 0,
                },
            )
        })
        .collect();
    r.maps.set_vips(&vips)?;
    for (i, (srv, own)) in [
        (IpAddr::V4(SRV4), IpAddr::V4(OWN4)),
        (IpAddr::V6(SRV6), IpAddr::V6(OWN6)),
    ]
    .into_iter()
    .enumerate()
    {
        r.maps.set_server(
            i as u32,
            &NatServer {
                addr_be: addr16(srv),
                src_be: addr16(own),
                port_be: 5432u16.to_be_bytes(),
                family: family(srv),
                ifindex: SERVER_IF,
                port_lo: PORT as u32,
                port_hi: PORT as u32,
                port_tries: 1,
                usable: 1,
                ..Default::default()
            },
        )?;
        let be = NatBackend {
            algo: NAT_ALGO_RR,
            slots: 1,
            ..Default::default()
        };
        r.maps.set_backend(i as u32, &be, &[i as u32])?;
    }
    Ok(())
}

/// What the program must do with a row's frame.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Redirected, rewritten to these addresses and ports, TTL one less,
    /// payload and flags as they came.
    Rewritten {
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
    },
    /// Answered with RST | ACK to the sender, out of the interface it came by.
    Refused,
    /// Left to the host, untouched.
    Passed,
    /// Dropped.
    Dropped,
}
use Want::{Dropped, Passed, Refused, Rewritten};

struct Row {
    what: &'static str,
    frame: Frame,
    ingress: u32,
    want: Want,
    /// Counters that must move by exactly one.
    counts: &'static [u32],
    /// Wait this long before the row (grace periods).
    pause_ms: u64,
}

fn c4(port: u16) -> (IpAddr, u16) {
    (IpAddr::V4(ip4("192.0.2.7")), port)
}
fn c6(port: u16) -> (IpAddr, u16) {
    (IpAddr::V6(ip6("2001:db8::7")), port)
}
fn vip4() -> (IpAddr, u16) {
    (IpAddr::V4(VIP4), 80)
}
fn vip6() -> (IpAddr, u16) {
    (IpAddr::V6(VIP6), 80)
}
fn srv4() -> (IpAddr, u16) {
    (IpAddr::V4(SRV4), 5432)
}
fn srv6() -> (IpAddr, u16) {
    (IpAddr::V6(SRV6), 5432)
}
fn own4() -> (IpAddr, u16) {
    (IpAddr::V4(OWN4), PORT)
}
fn own6() -> (IpAddr, u16) {
    (IpAddr::V6(OWN6), PORT)
}

fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8) -> Frame {
    Frame::tcp(src.0, dst.0)
        .sport(src.1)
        .dport(dst.1)
        .flags(flags)
        .seq(1_000)
        .ack(if flags & ACK != 0 { 5_000 } else { 0 })
}

fn rows() -> Vec<Row> {
    let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    vec![
        Row {
            what: "v4 SYN opens a flow",
            frame: tcp(c4(40000), vip4(), SYN).mss(1460),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_NEW, stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 SYN retransmitted: same flow",
            frame: tcp(c4(40000), vip4(), SYN).mss(1460),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 SYN-ACK back to the client",
            frame: tcp(srv4(), own4(), SYN | ACK).mss(1400),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40000),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 data to the server",
            frame: tcp(c4(40000), vip4(), ACK | PSH).payload(&data),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 data with IP options",
            frame: tcp(c4(40000), vip4(), ACK)
                .ip_options(&[1, 1, 1, 0])
                .payload(&data[..7]),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 data behind a VLAN tag",
            frame: tcp(c4(40000), vip4(), ACK).vlan(&[100]).payload(&data[..9]),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 data back",
            frame: tcp(srv4(), own4(), ACK | PSH).payload(&data[..33]),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40000),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 second client: the one port is taken, refused",
            frame: tcp(c4(40001), vip4(), SYN),
            ingress: CLIENT_IF,
            want: Refused,
            counts: &[stat::NAT_NO_PORT, stat::NAT_PORT_HELD],
            pause_ms: 0,
        },
        Row {
            what: "v4 TTL 1 is not forwarded",
            frame: tcp(c4(40000), vip4(), ACK).ttl(1),
            ingress: CLIENT_IF,
            want: Dropped,
            counts: &[stat::NAT_TTL],
            pause_ms: 0,
        },
        Row {
            what: "v4 ACK of no flow goes to the host",
            frame: tcp(c4(40002), vip4(), ACK),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[stat::NAT_UNKNOWN],
            pause_ms: 0,
        },
        Row {
            what: "v4 to another port goes to the host",
            frame: tcp(c4(40000), (IpAddr::V4(VIP4), 81), SYN),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[],
            pause_ms: 0,
        },
        Row {
            what: "v4 truncated TCP header goes to the host",
            frame: tcp(c4(40000), vip4(), ACK).cut(14 + 20 + 10),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[],
            pause_ms: 0,
        },
        Row {
            what: "v4 fragment goes to the host",
            frame: tcp(c4(40000), vip4(), ACK).frag_off(IP_MF),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[],
            pause_ms: 0,
        },
        Row {
            what: "v4 UDP goes to the host",
            frame: Frame::udp4(ip4("192.0.2.7"), VIP4).dport(80),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[],
            pause_ms: 0,
        },
        Row {
            what: "v4 FIN from the client",
            frame: tcp(c4(40000), vip4(), FIN | ACK),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 FIN from the server ends the flow",
            frame: tcp(srv4(), own4(), FIN | ACK),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40000),
            },
            counts: &[stat::NAT_PACKETS, stat::NAT_ENDED],
            pause_ms: 0,
        },
        Row {
            what: "v4 last ACK still finds its flow",
            frame: tcp(c4(40000), vip4(), ACK),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 SYN reusing the ended flow's port: a new flow",
            frame: tcp(c4(40000), vip4(), SYN),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_NEW, stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 RST from the server ends it",
            frame: tcp(srv4(), own4(), RST | ACK),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40000),
            },
            counts: &[stat::NAT_PACKETS, stat::NAT_ENDED],
            pause_ms: 0,
        },
        Row {
            what: "v4 third client, after the RST's grace: the port is taken over",
            frame: tcp(c4(40003), vip4(), SYN),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_NEW, stat::NAT_PACKETS, stat::NAT_PORT_REUSED],
            pause_ms: 1100,
        },
        Row {
            what: "v4 the old client's late ACK meets no flow",
            frame: tcp(c4(40000), vip4(), ACK),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[stat::NAT_UNKNOWN],
            pause_ms: 0,
        },
        Row {
            what: "v4 client FIN at 2000",
            frame: tcp(c4(40003), vip4(), FIN | ACK).seq(2000).ack(7000),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 server FIN at 7000 acking it ends the flow",
            frame: tcp(srv4(), own4(), FIN | ACK).seq(7000).ack(2001),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40003),
            },
            counts: &[stat::NAT_PACKETS, stat::NAT_ENDED],
            pause_ms: 0,
        },
        Row {
            what: "v4 a duplicate ACK below the server's FIN keeps it",
            frame: tcp(c4(40003), vip4(), ACK).seq(2001).ack(7000),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 the last ACK closes it",
            frame: tcp(c4(40003), vip4(), ACK).seq(2001).ack(7001),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_PACKETS, stat::NAT_CLOSED],
            pause_ms: 0,
        },
        Row {
            what: "v4 after the close, late packets still find the flow",
            frame: tcp(srv4(), own4(), ACK).seq(7001).ack(2001).window(9000),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip4(),
                dst: c4(40003),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v4 and its port is free at once",
            frame: tcp(c4(40004), vip4(), SYN),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own4(),
                dst: srv4(),
            },
            counts: &[stat::NAT_NEW, stat::NAT_PACKETS, stat::NAT_PORT_REUSED],
            pause_ms: 0,
        },
        Row {
            what: "v6 SYN opens a flow",
            frame: tcp(c6(40000), vip6(), SYN).mss(1440),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own6(),
                dst: srv6(),
            },
            counts: &[stat::NAT_NEW, stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v6 SYN-ACK back",
            frame: tcp(srv6(), own6(), SYN | ACK),
            ingress: SERVER_IF,
            want: Rewritten {
                src: vip6(),
                dst: c6(40000),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v6 data",
            frame: tcp(c6(40000), vip6(), ACK | PSH).payload(&data),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own6(),
                dst: srv6(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v6 data behind an extension header",
            frame: tcp(c6(40000), vip6(), ACK)
                .ext(&[lb_tests::packet::IPPROTO_DSTOPTS])
                .payload(&data[..5]),
            ingress: CLIENT_IF,
            want: Rewritten {
                src: own6(),
                dst: srv6(),
            },
            counts: &[stat::NAT_PACKETS],
            pause_ms: 0,
        },
        Row {
            what: "v6 second client refused",
            frame: tcp(c6(40001), vip6(), SYN),
            ingress: CLIENT_IF,
            want: Refused,
            counts: &[stat::NAT_NO_PORT, stat::NAT_PORT_HELD],
            pause_ms: 0,
        },
        Row {
            what: "v6 hop limit 1 is not forwarded",
            frame: tcp(c6(40000), vip6(), ACK).ttl(1),
            ingress: CLIENT_IF,
            want: Dropped,
            counts: &[stat::NAT_TTL],
            pause_ms: 0,
        },
        Row {
            what: "v6 fragment goes to the host",
            frame: tcp(c6(40000), vip6(), ACK).ext(&[IPPROTO_FRAGMENT]),
            ingress: CLIENT_IF,
            want: Passed,
            counts: &[],
            pause_ms: 0,
        },
    ]
}

fn ends(p: &Parsed) -> Option<((IpAddr, u16), (IpAddr, u16))> {
    let t = p.tcp()?;
    let (s, d): (IpAddr, IpAddr) = match (p.ipv4(), p.ipv6()) {
        (Some(h), _) => (h.src.into(), h.dst.into()),
        (_, Some(h)) => (h.src.into(), h.dst.into()),
        _ => return None,
    };
    Some(((s, t.sport), (d, t.dport)))
}

fn ttl(p: &Parsed) -> u8 {
    p.ipv4()
        .map(|h| h.ttl)
        .or(p.ipv6().map(|h| h.hop_limit))
        .unwrap_or(0)
}

fn check(row: &Row, ret: i32, input: &[u8], out: &[u8]) -> Result<()> {
    match row.want {
        Passed | Dropped => {
            let want = if matches!(row.want, Passed) {
                TC_ACT_OK
            } else {
                TC_ACT_SHOT
            };
            ensure!(ret == want, "action {ret}, want {want}");
            ensure!(out == input, "the frame was changed");
        }
        Rewritten { src, dst } => {
            ensure!(ret == TC_ACT_REDIRECT, "action {ret}, want redirect");
            let (i, o) = (Parsed::parse(input)?, Parsed::parse(out)?);
            ensure!(
                ends(&o) == Some((src, dst)),
                "rewritten to {:?}, want {src:?} -> {dst:?}",
                ends(&o)
            );
            ensure!(o.checksums_ok(), "checksums wrong after the rewrite: {o:?}");
            ensure!(ttl(&o) + 1 == ttl(&i), "TTL {} -> {}", ttl(&i), ttl(&o));
            let (ti, to) = (i.tcp().context("tcp in")?, o.tcp().context("tcp out")?);
            ensure!(
                (ti.seq, ti.ack, ti.flags, &ti.options, &ti.payload)
                    == (to.seq, to.ack, to.flags, &to.options, &to.payload),
                "more than addresses and ports changed"
            );
            ensure!(
                o.tags == i.tags && o.dst_mac == i.dst_mac,
                "the link header changed"
            );
        }
        Refused => {
            ensure!(
                ret == TC_ACT_REDIRECT,
                "action {ret}, want redirect (the RST)"
            );
            let (i, o) = (Parsed::parse(input)?, Parsed::parse(out)?);
            let ((isrc, idst), (osrc, odst)) = (ends(&i).context("in")?, ends(&o).context("out")?);
            ensure!(
                (osrc, odst) == (idst, isrc),
                "RST {osrc:?} -> {odst:?} does not answer {isrc:?} -> {idst:?}"
            );
            let (ti, to) = (i.tcp().context("tcp in")?, o.tcp().context("tcp out")?);
            ensure!(to.flags == RST | ACK, "flags {:#x}", to.flags);
            ensure!(
                to.ack == ti.seq.wrapping_add(1),
                "ack {} for SYN seq {}",
                to.ack,
                ti.seq
            );
            ensure!(to.payload.is_empty(), "RST carries data");
            ensure!(o.checksums_ok(), "RST checksums wrong: {o:?}");
            ensure!(
                (o.src_mac, o.dst_mac) == (i.dst_mac, i.src_mac),
                "MACs not swapped"
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs root; run via `cargo xtask test`"]
fn nat_packet_fixtures() {
    run_test(|| {
        let mut r = NatRunner::new()?;
        setup(&mut r)?;
        let mut failures = Vec::new();
        for row in rows() {
            std::thread::sleep(std::time::Duration::from_millis(row.pause_ms));
            let before: Vec<u64> = (0..stat::COUNT).map(|i| r.stat(i).unwrap_or(0)).collect();
            let input = row.frame.build();
            let (ret, out) = r.run(&input, row.ingress)?;
            let mut res = check(&row, ret, &input, &out);
            if res.is_ok() {
                for i in 0..stat::COUNT {
                    let d = r.stat(i)? - before[i as usize];
                    let want = row.counts.contains(&i) as u64;
                    if d != want {
                        res = Err(anyhow::anyhow!(
                            "counter {} moved by {d}, want {want}",
                            stat::NAMES[i as usize]
                        ));
                        break;
                    }
                }
            }
            match res {
                Ok(()) => println!("[lb-tests] ok   {}", row.what),
                Err(e) => {
                    println!("[lb-tests] FAIL {}: {e:#}", row.what);
                    failures.push(format!("{}: {e:#}", row.what));
                }
            }
        }
        ensure!(
            failures.is_empty(),
            "{} row(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    });
}
