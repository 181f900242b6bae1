//! Ethernet frames for packet-level tests: [`Frame`] builds them (VLAN tags,
//! IPv4 / IPv6 with options and extension headers, TCP / UDP / raw payloads,
//! deliberate defects, truncation) and [`Parsed`] reads one back field by
//! field with both checksums verified, to check what a program sent back.
//!
//! Defaults are fixed so that a frame is the same byte for byte on every run
//! (counters and failures can then be compared between runs): MACs
//! 02:00:00:00:00:02 -> 02:00:00:00:00:01, IPv4 id 7 with DF, TTL / hop limit
//! 64, ports 40000 -> 80, seq 1, ack 0, window 65535, no TCP flags.
//!
//! Checksums are always computed over what is built, whatever a field claims
//! (a lying IHL or total length still gets a correct checksum), so that a test
//! of a defect fails for that defect alone; `ip_checksum` / `l4_checksum`
//! override them when the checksum itself is the defect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{ensure, Result};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const ETH_P_IPV6: u16 = 0x86DD;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// IPv4 flags in the 16-bit flags + fragment offset field (offset in 8-byte
/// units in the low 13 bits).
pub const IP_DF: u16 = 0x4000;
pub const IP_MF: u16 = 0x2000;

/// TCP option kinds.
pub const TCPOPT_NOP: u8 = 1;
pub const TCPOPT_MSS: u8 = 2;

/// One's-complement sum of `bytes` as 16-bit big-endian words (an odd last
/// byte padded with zero), added to `acc`, not folded.
fn sum16(bytes: &[u8], mut acc: u64) -> u64 {
    for c in bytes.chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The Internet checksum (RFC 1071) of `bytes`: 0 over a header that carries
/// its correct checksum.
pub fn checksum(bytes: &[u8]) -> u16 {
    fold(sum16(bytes, 0))
}

/// The TCP / UDP checksum of `segment` (header and payload) with the pseudo
/// header of `src`, `dst` and `proto`: 0 over a segment that carries its
/// correct checksum. Panics on mixed address families.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let len = segment.len() as u32;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum16(&d.octets(), sum16(&s.octets(), 0)) + u64::from(proto) + u64::from(len)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let s = sum16(&d.octets(), sum16(&s.octets(), 0));
            s + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(proto)
        }
        _ => panic!("pseudo header of mixed families {src} -> {dst}"),
    };
    fold(sum16(segment, pseudo))
}

/// Pads a header with NOPs (1, for IPv4 and TCP options alike) to a whole
/// number of 32-bit words, and to at least `words` of them.
fn pad_nop(header: &mut Vec<u8>, words: u8) {
    let len = header.len().div_ceil(4).max(usize::from(words)) * 4;
    header.resize(len, 1);
}

// ------------------------------------------------------------------ builder

/// An Ethernet frame under construction: start with [`Frame::tcp4`] and the
/// like, chain setters, finish with [`Frame::build`]. Setters of a layer the
/// frame does not have (e.g. `.ihl()` on IPv6) panic: that is a bug in the
/// test, not a case.
///
/// ```
/// use lb_tests::packet::{Frame, SYN};
/// let f = Frame::tcp4("10.1.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap())
///     .dport(80)
///     .flags(SYN)
///     .mss(1460)
///     .vlan(&[100])
///     .build();
/// assert_eq!(f.len(), 14 + 4 + 20 + 24);
/// ```
#[derive(Clone, Debug)]
pub struct Frame {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    /// (TPID, TCI), outermost first.
    tags: Vec<(u16, u16)>,
    net: Net,
    l4: L4Spec,
    payload: Vec<u8>,
    cut: Option<usize>,
}

#[derive(Clone, Debug)]
enum Net {
    V4(V4Spec),
    V6(V6Spec),
    /// Any other EtherType: the payload is the whole body.
    Other(u16),
}

#[derive(Clone, Debug)]
struct V4Spec {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    version: u8,
    ihl: Option<u8>,
    options: Vec<u8>,
    tos: u8,
    id: u16,
    frag_off: u16,
    ttl: u8,
    tot_len: Option<u16>,
    checksum: Option<u16>,
}

#[derive(Clone, Debug)]
struct V6Spec {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    version: u8,
    hop_limit: u8,
    ext: Vec<u8>,
}

#[derive(Clone, Debug)]
enum L4Spec {
    Tcp(TcpSpec),
    Udp(UdpSpec),
    /// The payload as is, under this protocol number.
    Raw(u8),
}

#[derive(Clone, Debug)]
struct TcpSpec {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: Vec<u8>,
    doff: Option<u8>,
    checksum: Option<u16>,
}

#[derive(Clone, Debug)]
struct UdpSpec {
    sport: u16,
    dport: u16,
    checksum: Option<u16>,
}

impl L4Spec {
    fn proto(&self) -> u8 {
        match self {
            L4Spec::Tcp(_) => IPPROTO_TCP,
            L4Spec::Udp(_) => IPPROTO_UDP,
            L4Spec::Raw(p) => *p,
        }
    }
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Net {
    Net::V4(V4Spec {
        src,
        dst,
        version: 4,
        ihl: None,
        options: Vec::new(),
        tos: 0,
        id: 7,
        frag_off: IP_DF,
        ttl: 64,
        tot_len: None,
        checksum: None,
    })
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Net {
    Net::V6(V6Spec {
        src,
        dst,
        version: 6,
        hop_limit: 64,
        ext: Vec::new(),
    })
}

fn tcp_spec() -> L4Spec {
    L4Spec::Tcp(TcpSpec {
        sport: 40000,
        dport: 80,
        seq: 1,
        ack: 0,
        flags: 0,
        window: 65535,
        urgent: 0,
        options: Vec::new(),
        doff: None,
        checksum: None,
    })
}

fn udp_spec() -> L4Spec {
    L4Spec::Udp(UdpSpec {
        sport: 40000,
        dport: 80,
        checksum: None,
    })
}

fn net_of(src: IpAddr, dst: IpAddr) -> Net {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => v4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(s, d),
        _ => panic!("a frame from {src} to {dst}: mixed address families"),
    }
}

impl Frame {
    fn new(net: Net, l4: L4Spec) -> Self {
        Frame {
            dst_mac: [0x02, 0, 0, 0, 0, 1],
            src_mac: [0x02, 0, 0, 0, 0, 2],
            tags: Vec::new(),
            net,
            l4,
            payload: Vec::new(),
            cut: None,
        }
    }

    pub fn tcp4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::new(v4(src, dst), tcp_spec())
    }

    pub fn tcp6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self::new(v6(src, dst), tcp_spec())
    }

    /// TCP over the family of the addresses (which must agree).
    pub fn tcp(src: IpAddr, dst: IpAddr) -> Self {
        Self::new(net_of(src, dst), tcp_spec())
    }

    pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::new(v4(src, dst), udp_spec())
    }

    pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self::new(v6(src, dst), udp_spec())
    }

    pub fn udp(src: IpAddr, dst: IpAddr) -> Self {
        Self::new(net_of(src, dst), udp_spec())
    }

    /// IPv4 carrying `proto` whose bytes are the [`Frame::payload`] as is
    /// (e.g. a later fragment).
    pub fn ip4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self::new(v4(src, dst), L4Spec::Raw(proto))
    }

    /// IPv6 whose last next header is `proto`, its bytes the payload as is.
    pub fn ip6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8) -> Self {
        Self::new(v6(src, dst), L4Spec::Raw(proto))
    }

    /// Any EtherType (ARP, ...) with `body` after the Ethernet header.
    pub fn ethertype(ethertype: u16, body: &[u8]) -> Self {
        let mut f = Self::new(Net::Other(ethertype), L4Spec::Raw(0));
        f.payload = body.to_vec();
        f
    }

    // --- link

    pub fn src_mac(mut self, mac: [u8; 6]) -> Self {
        self.src_mac = mac;
        self
    }

    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    /// Appends one 802.1Q tag (TPID 0x8100) per VLAN id, outermost first.
    pub fn vlan(mut self, vids: &[u16]) -> Self {
        self.tags.extend(vids.iter().map(|&v| (ETH_P_8021Q, v)));
        self
    }

    /// Appends an 802.1ad service tag and an 802.1Q customer tag.
    pub fn qinq(mut self, outer: u16, inner: u16) -> Self {
        self.tags.push((ETH_P_8021AD, outer));
        self.tags.push((ETH_P_8021Q, inner));
        self
    }

    /// Appends a tag with any TPID and TCI (priority, DEI, id).
    pub fn tag(mut self, tpid: u16, tci: u16) -> Self {
        self.tags.push((tpid, tci));
        self
    }

    // --- network

    fn v4_mut(&mut self, what: &str) -> &mut V4Spec {
        match &mut self.net {
            Net::V4(h) => h,
            _ => panic!("{what}: not an IPv4 frame"),
        }
    }

    fn v6_mut(&mut self, what: &str) -> &mut V6Spec {
        match &mut self.net {
            Net::V6(h) => h,
            _ => panic!("{what}: not an IPv6 frame"),
        }
    }

    /// The version nibble, whatever the EtherType says.
    pub fn ip_version(mut self, version: u8) -> Self {
        match &mut self.net {
            Net::V4(h) => h.version = version,
            Net::V6(h) => h.version = version,
            Net::Other(_) => panic!("ip_version: not an IP frame"),
        }
        self
    }

    /// TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.net {
            Net::V4(h) => h.ttl = ttl,
            Net::V6(h) => h.hop_limit = ttl,
            Net::Other(_) => panic!("ttl: not an IP frame"),
        }
        self
    }

    /// The IHL field. Above 5 + options the header is filled with NOPs to
    /// match; below (0-4) the header stays 20 bytes and the field lies.
    pub fn ihl(mut self, ihl: u8) -> Self {
        self.v4_mut("ihl").ihl = Some(ihl);
        self
    }

    /// IPv4 options, padded with NOPs to a multiple of 4 bytes.
    pub fn ip_options(mut self, options: &[u8]) -> Self {
        self.v4_mut("ip_options").options.extend_from_slice(options);
        self
    }

    pub fn tos(mut self, tos: u8) -> Self {
        self.v4_mut("tos").tos = tos;
        self
    }

    pub fn ip_id(mut self, id: u16) -> Self {
        self.v4_mut("ip_id").id = id;
        self
    }

    /// The whole flags + fragment offset field ([`IP_DF`], [`IP_MF`], offset
    /// in 8-byte units); the default is DF alone.
    pub fn frag_off(mut self, field: u16) -> Self {
        self.v4_mut("frag_off").frag_off = field;
        self
    }

    /// Overrides the total length field (the checksum still covers it).
    pub fn tot_len(mut self, len: u16) -> Self {
        self.v4_mut("tot_len").tot_len = Some(len);
        self
    }

    /// Overrides the IPv4 header checksum.
    pub fn ip_checksum(mut self, sum: u16) -> Self {
        self.v4_mut("ip_checksum").checksum = Some(sum);
        self
    }

    /// IPv6 extension headers, in order, by next-header number:
    /// hop-by-hop, routing and destination options are 16 bytes (a PadN
    /// option; a routing header of type 0 with no segments left), AH 16
    /// bytes, a fragment header 8 bytes (offset 0, more fragments).
    pub fn ext(mut self, kinds: &[u8]) -> Self {
        self.v6_mut("ext").ext.extend_from_slice(kinds);
        self
    }

    // --- transport

    fn tcp_mut(&mut self, what: &str) -> &mut TcpSpec {
        match &mut self.l4 {
            L4Spec::Tcp(t) => t,
            _ => panic!("{what}: not a TCP frame"),
        }
    }

    pub fn sport(mut self, port: u16) -> Self {
        match &mut self.l4 {
            L4Spec::Tcp(t) => t.sport = port,
            L4Spec::Udp(u) => u.sport = port,
            L4Spec::Raw(_) => panic!("sport: neither TCP nor UDP"),
        }
        self
    }

    pub fn dport(mut self, port: u16) -> Self {
        match &mut self.l4 {
            L4Spec::Tcp(t) => t.dport = port,
            L4Spec::Udp(u) => u.dport = port,
            L4Spec::Raw(_) => panic!("dport: neither TCP nor UDP"),
        }
        self
    }

    pub fn seq(mut self, seq: u32) -> Self {
        self.tcp_mut("seq").seq = seq;
        self
    }

    /// The acknowledgment number (the ACK flag is set by [`Frame::flags`]).
    pub fn ack(mut self, ack: u32) -> Self {
        self.tcp_mut("ack").ack = ack;
        self
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.tcp_mut("flags").flags = flags;
        self
    }

    pub fn window(mut self, window: u16) -> Self {
        self.tcp_mut("window").window = window;
        self
    }

    pub fn urgent(mut self, ptr: u16) -> Self {
        self.tcp_mut("urgent").urgent = ptr;
        self
    }

    /// Appends the MSS option.
    pub fn mss(mut self, mss: u16) -> Self {
        let [hi, lo] = mss.to_be_bytes();
        self.tcp_mut("mss")
            .options
            .extend_from_slice(&[TCPOPT_MSS, 4, hi, lo]);
        self
    }

    /// Appends raw TCP options; the header is padded with NOPs to a multiple
    /// of 4 bytes.
    pub fn tcp_options(mut self, options: &[u8]) -> Self {
        self.tcp_mut("tcp_options")
            .options
            .extend_from_slice(options);
        self
    }

    /// The data offset field. Above what the options need the header is
    /// filled with NOPs to match; below (0-4) the header stays 20 bytes (plus
    /// options) and the field lies.
    pub fn doff(mut self, doff: u8) -> Self {
        self.tcp_mut("doff").doff = Some(doff);
        self
    }

    /// Overrides the TCP or UDP checksum.
    pub fn l4_checksum(mut self, sum: u16) -> Self {
        match &mut self.l4 {
            L4Spec::Tcp(t) => t.checksum = Some(sum),
            L4Spec::Udp(u) => u.checksum = Some(sum),
            L4Spec::Raw(_) => panic!("l4_checksum: neither TCP nor UDP"),
        }
        self
    }

    /// Data after the transport header (after the IP header for
    /// [`Frame::ip4`] / [`Frame::ip6`], after Ethernet for
    /// [`Frame::ethertype`]).
    pub fn payload(mut self, data: &[u8]) -> Self {
        self.payload = data.to_vec();
        self
    }

    /// Cuts the built frame after `len` bytes (headers and checksums are
    /// those of the whole frame).
    pub fn cut(mut self, len: usize) -> Self {
        self.cut = Some(len);
        self
    }

    // --- assembly

    fn addrs(&self) -> Option<(IpAddr, IpAddr)> {
        match &self.net {
            Net::V4(h) => Some((h.src.into(), h.dst.into())),
            Net::V6(h) => Some((h.src.into(), h.dst.into())),
            Net::Other(_) => None,
        }
    }

    fn segment(&self) -> Vec<u8> {
        let Some((src, dst)) = self.addrs() else {
            return self.payload.clone();
        };
        match &self.l4 {
            L4Spec::Tcp(t) => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&t.sport.to_be_bytes());
                h[2..4].copy_from_slice(&t.dport.to_be_bytes());
                h[4..8].copy_from_slice(&t.seq.to_be_bytes());
                h[8..12].copy_from_slice(&t.ack.to_be_bytes());
                h[13] = t.flags;
                h[14..16].copy_from_slice(&t.window.to_be_bytes());
                h[18..20].copy_from_slice(&t.urgent.to_be_bytes());
                h.extend_from_slice(&t.options);
                pad_nop(&mut h, t.doff.unwrap_or(0));
                h[12] = t.doff.unwrap_or((h.len() / 4) as u8) << 4;
                h.extend_from_slice(&self.payload);
                let sum = t
                    .checksum
                    .unwrap_or_else(|| l4_checksum(src, dst, IPPROTO_TCP, &h));
                h[16..18].copy_from_slice(&sum.to_be_bytes());
                h
            }
            L4Spec::Udp(u) => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&u.sport.to_be_bytes());
                h[2..4].copy_from_slice(&u.dport.to_be_bytes());
                h[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&self.payload);
                // 0 means "no checksum" in UDP: a computed 0 is sent as 0xffff.
                let sum =
                    u.checksum
                        .unwrap_or_else(|| match l4_checksum(src, dst, IPPROTO_UDP, &h) {
                            0 => 0xffff,
                            s => s,
                        });
                h[6..8].copy_from_slice(&sum.to_be_bytes());
                h
            }
            L4Spec::Raw(_) => self.payload.clone(),
        }
    }

    fn v6_ext(kinds: &[u8], last: u8) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, &kind) in kinds.iter().enumerate() {
            let next = kinds.get(i + 1).copied().unwrap_or(last);
            let e: Vec<u8> = match kind {
                // Length in 4-octet units minus 2.
                IPPROTO_AH => [&[next, 2][..], &[0; 14]].concat(),
                IPPROTO_FRAGMENT => vec![next, 0, 0, 1, 0, 0, 0, 0],
                // Hop-by-hop, routing (type 0, segments left 0), destination
                // options: length 1 (16 bytes), a PadN of 12 filling it.
                _ => [&[next, 1, 1, 12][..], &[0; 12]].concat(),
            };
            body.extend(e);
        }
        body
    }

    pub fn build(&self) -> Vec<u8> {
        let seg = self.segment();
        let (ethertype, l3) = match &self.net {
            Net::Other(t) => (*t, seg),
            Net::V4(h) => {
                let mut ip = vec![0u8; 20];
                ip.extend_from_slice(&h.options);
                pad_nop(&mut ip, h.ihl.unwrap_or(0));
                let ihl = h.ihl.unwrap_or((ip.len() / 4) as u8);
                ip[0] = (h.version << 4) | (ihl & 0xf);
                ip[1] = h.tos;
                let tot = h.tot_len.unwrap_or((ip.len() + seg.len()) as u16);
                ip[2..4].copy_from_slice(&tot.to_be_bytes());
                ip[4..6].copy_from_slice(&h.id.to_be_bytes());
                ip[6..8].copy_from_slice(&h.frag_off.to_be_bytes());
                ip[8] = h.ttl;
                ip[9] = self.l4.proto();
                ip[12..16].copy_from_slice(&h.src.octets());
                ip[16..20].copy_from_slice(&h.dst.octets());
                let sum = h.checksum.unwrap_or_else(|| checksum(&ip));
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                ip.extend(seg);
                (ETH_P_IP, ip)
            }
            Net::V6(h) => {
                let proto = self.l4.proto();
                let mut body = Self::v6_ext(&h.ext, proto);
                body.extend(seg);
                let mut ip = vec![0u8; 40];
                ip[0] = h.version << 4;
                ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
                ip[6] = h.ext.first().copied().unwrap_or(proto);
                ip[7] = h.hop_limit;
                ip[8..24].copy_from_slice(&h.src.octets());
                ip[24..40].copy_from_slice(&h.dst.octets());
                ip.extend(body);
                (ETH_P_IPV6, ip)
            }
        };
        let mut f = Vec::with_capacity(ETH_HLEN + 4 * self.tags.len() + l3.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend(l3);
        if let Some(n) = self.cut {
            f.truncate(n);
        }
        f
    }
}

// ------------------------------------------------------------------- parser

/// A frame read back: every header field, the checksums verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// (TPID, TCI), outermost first.
    pub tags: Vec<(u16, u16)>,
    /// The EtherType after the tags.
    pub ethertype: u16,
    /// Where the network header starts.
    pub l3_offset: usize,
    pub ip: Option<Ip>,
    pub l4: Option<L4>,
    /// Bytes after the end the IP header declares (Ethernet padding).
    pub trailer: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ip {
    V4(Ipv4Hdr),
    V6(Ipv6Hdr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub checksum: u16,
    pub checksum_ok: bool,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub options: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Hdr {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    /// The next header field of the fixed header.
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Extension headers walked, by next-header number, in order.
    pub ext: Vec<u8>,
    /// The protocol after the extension headers.
    pub proto: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpHdr),
    Udp(UdpHdr),
    /// Another protocol, or a fragment that is not the whole datagram.
    Other {
        proto: u8,
        bytes: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpHdr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub doff: u8,
    pub flags: u8,
    pub window: u16,
    pub checksum: u16,
    pub checksum_ok: bool,
    pub urgent: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpHdr {
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
    pub checksum: u16,
    /// True for a valid checksum, and for 0 ("none") over IPv4.
    pub checksum_ok: bool,
    pub payload: Vec<u8>,
}

impl TcpHdr {
    /// The data of the first option of `kind` (after kind and length).
    pub fn option(&self, kind: u8) -> Option<&[u8]> {
        let o = &self.options;
        let mut i = 0;
        while i < o.len() {
            match o[i] {
                0 => return None,
                TCPOPT_NOP => i += 1,
                k => {
                    let len = usize::from(*o.get(i + 1)?);
                    if len < 2 || i + len > o.len() {
                        return None;
                    }
                    if k == kind {
                        return Some(&o[i + 2..i + len]);
                    }
                    i += len;
                }
            }
        }
        None
    }

    pub fn mss(&self) -> Option<u16> {
        match self.option(TCPOPT_MSS)? {
            &[hi, lo] => Some(u16::from_be_bytes([hi, lo])),
            _ => None,
        }
    }
}

impl Ip {
    pub fn src(&self) -> IpAddr {
        match self {
            Ip::V4(h) => h.src.into(),
            Ip::V6(h) => h.src.into(),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            Ip::V4(h) => h.dst.into(),
            Ip::V6(h) => h.dst.into(),
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_l4(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> Result<L4> {
    Ok(match proto {
        IPPROTO_TCP => {
            ensure!(seg.len() >= 20, "TCP header cut: {} bytes", seg.len());
            let doff = seg[12] >> 4;
            let hl = usize::from(doff) * 4;
            ensure!(
                (20..=seg.len()).contains(&hl),
                "TCP data offset {doff} in a {}-byte segment",
                seg.len()
            );
            L4::Tcp(TcpHdr {
                sport: be16(seg, 0),
                dport: be16(seg, 2),
                seq: be32(seg, 4),
                ack: be32(seg, 8),
                doff,
                flags: seg[13],
                window: be16(seg, 14),
                checksum: be16(seg, 16),
                checksum_ok: l4_checksum(src, dst, proto, seg) == 0,
                urgent: be16(seg, 18),
                options: seg[20..hl].to_vec(),
                payload: seg[hl..].to_vec(),
            })
        }
        IPPROTO_UDP => {
            ensure!(seg.len() >= 8, "UDP header cut: {} bytes", seg.len());
            let len = be16(seg, 4);
            ensure!(
                (8..=seg.len()).contains(&usize::from(len)),
                "UDP length {len} in a {}-byte segment",
                seg.len()
            );
            let seg = &seg[..usize::from(len)];
            let checksum = be16(seg, 6);
            let none = checksum == 0 && src.is_ipv4();
            L4::Udp(UdpHdr {
                sport: be16(seg, 0),
                dport: be16(seg, 2),
                len,
                checksum,
                checksum_ok: none || l4_checksum(src, dst, proto, seg) == 0,
                payload: seg[8..].to_vec(),
            })
        }
        _ => L4::Other {
            proto,
            bytes: seg.to_vec(),
        },
    })
}

impl Parsed {
    /// Reads `frame`; an error names the first header that is cut short or
    /// inconsistent (a bad checksum is not an error: see `checksum_ok`).
    pub fn parse(frame: &[u8]) -> Result<Parsed> {
        ensure!(
            frame.len() >= ETH_HLEN,
            "{} bytes: no Ethernet header",
            frame.len()
        );
        let mut at = 12;
        let mut tags = Vec::new();
        let mut ethertype = be16(frame, at);
        while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ensure!(frame.len() >= at + 6, "VLAN tag {} cut", tags.len() + 1);
            tags.push((ethertype, be16(frame, at + 2)));
            at += 4;
            ethertype = be16(frame, at);
        }
        let l3_offset = at + 2;
        let mut p = Parsed {
            dst_mac: frame[0..6].try_into().expect("6 bytes"),
            src_mac: frame[6..12].try_into().expect("6 bytes"),
            tags,
            ethertype,
            l3_offset,
            ip: None,
            l4: None,
            trailer: 0,
        };
        let b = &frame[l3_offset..];
        match ethertype {
            ETH_P_IP => {
                ensure!(b.len() >= 20, "IPv4 header cut: {} bytes", b.len());
                ensure!(
                    b[0] >> 4 == 4,
                    "IP version {} under EtherType IPv4",
                    b[0] >> 4
                );
                let ihl = b[0] & 0xf;
                let hl = usize::from(ihl) * 4;
                let tot = usize::from(be16(b, 2));
                ensure!(ihl >= 5, "IHL {ihl}");
                ensure!(
                    hl <= tot && tot <= b.len(),
                    "IHL {ihl}, total length {tot}, {} bytes there",
                    b.len()
                );
                let h = Ipv4Hdr {
                    ihl,
                    tos: b[1],
                    tot_len: tot as u16,
                    id: be16(b, 4),
                    frag_off: be16(b, 6),
                    ttl: b[8],
                    proto: b[9],
                    checksum: be16(b, 10),
                    checksum_ok: checksum(&b[..hl]) == 0,
                    src: Ipv4Addr::from(be32(b, 12)),
                    dst: Ipv4Addr::from(be32(b, 16)),
                    options: b[20..hl].to_vec(),
                };
                let seg = &b[hl..tot];
                p.l4 = Some(if h.frag_off & (IP_MF | 0x1fff) != 0 {
                    L4::Other {
                        proto: h.proto,
                        bytes: seg.to_vec(),
                    }
                } else {
                    parse_l4(h.src.into(), h.dst.into(), h.proto, seg)?
                });
                p.trailer = b.len() - tot;
                p.ip = Some(Ip::V4(h));
            }
            ETH_P_IPV6 => {
                ensure!(b.len() >= 40, "IPv6 header cut: {} bytes", b.len());
                ensure!(
                    b[0] >> 4 == 6,
                    "IP version {} under EtherType IPv6",
                    b[0] >> 4
                );
                let plen = usize::from(be16(b, 4));
                ensure!(
                    40 + plen <= b.len(),
                    "IPv6 payload length {plen}, {} bytes there",
                    b.len() - 40
                );
                let body = &b[40..40 + plen];
                let (src, dst) = (
                    Ipv6Addr::from(<[u8; 16]>::try_from(&b[8..24]).expect("16 bytes")),
                    Ipv6Addr::from(<[u8; 16]>::try_from(&b[24..40]).expect("16 bytes")),
                );
                let mut ext = Vec::new();
                let (mut next, mut off, mut fragment) = (b[6], 0usize, false);
                loop {
                    let len = match next {
                        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                            ensure!(body.len() >= off + 2, "extension header {next} cut");
                            (usize::from(body[off + 1]) + 1) * 8
                        }
                        IPPROTO_AH => {
                            ensure!(body.len() >= off + 2, "AH cut");
                            (usize::from(body[off + 1]) + 2) * 4
                        }
                        IPPROTO_FRAGMENT => {
                            ensure!(body.len() >= off + 8, "fragment header cut");
                            fragment = be16(body, off + 2) != 0;
                            8
                        }
                        _ => break,
                    };
                    ensure!(body.len() >= off + len, "extension header {next} cut");
                    ext.push(next);
                    next = body[off];
                    off += len;
                }
                let seg = &body[off..];
                p.l4 = Some(if fragment {
                    L4::Other {
                        proto: next,
                        bytes: seg.to_vec(),
                    }
                } else {
                    parse_l4(src.into(), dst.into(), next, seg)?
                });
                p.trailer = b.len() - 40 - plen;
                p.ip = Some(Ip::V6(Ipv6Hdr {
                    traffic_class: ((be16(b, 0) >> 4) & 0xff) as u8,
                    flow_label: be32(b, 0) & 0xf_ffff,
                    payload_len: plen as u16,
                    next_header: b[6],
                    hop_limit: b[7],
                    src,
                    dst,
                    ext,
                    proto: next,
                }));
            }
            _ => {}
        }
        Ok(p)
    }

    pub fn ipv4(&self) -> Option<&Ipv4Hdr> {
        match &self.ip {
            Some(Ip::V4(h)) => Some(h),
            _ => None,
        }
    }

    pub fn ipv6(&self) -> Option<&Ipv6Hdr> {
        match &self.ip {
            Some(Ip::V6(h)) => Some(h),
            _ => None,
        }
    }

    pub fn tcp(&self) -> Option<&TcpHdr> {
        match &self.l4 {
            Some(L4::Tcp(t)) => Some(t),
            _ => None,
        }
    }

    pub fn udp(&self) -> Option<&UdpHdr> {
        match &self.l4 {
            Some(L4::Udp(u)) => Some(u),
            _ => None,
        }
    }

    /// The IPv4 header checksum (IPv6 has none) and the TCP / UDP checksum
    /// all hold.
    pub fn checksums_ok(&self) -> bool {
        let ip = self.ipv4().is_none_or(|h| h.checksum_ok);
        let l4 = match &self.l4 {
            Some(L4::Tcp(t)) => t.checksum_ok,
            Some(L4::Udp(u)) => u.checksum_ok,
            _ => true,
        };
        ip && l4
    }
}

/// Shorthand for test tables: `ip4("10.0.0.1")`.
pub fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Shorthand for test tables: `ip6("fd00::1")`.
pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_ipv4_header() {
        // The usual worked example (0xb861) of the Internet checksum.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        // An odd length is padded with a zero byte.
        assert_eq!(checksum(&[0x01]), !0x0100);
    }

    // Expected checksums in these tests were computed separately (a few lines
    // of Python over the same bytes), not by this module.

    #[test]
    fn tcp4_syn_byte_for_byte() {
        let f = Frame::tcp4(ip4("10.1.0.1"), ip4("10.0.0.1"))
            .flags(SYN)
            .mss(1460)
            .build();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00][..],
            // IPv4: IHL 5, total 44, id 7, DF, TTL 64, TCP, checksum 0x26c3.
            &[0x45, 0, 0, 44, 0, 7, 0x40, 0, 64, 6, 0x26, 0xc3, 10, 1, 0, 1, 10, 0, 0, 1],
            // TCP: 40000 -> 80, seq 1, ack 0, doff 6, SYN, window 65535,
            // checksum 0xe792, MSS 1460.
            &[0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0xff, 0xff, 0xe7, 0x92, 0, 0],
            &[2, 4, 0x05, 0xb4],
        ]
        .concat();
        assert_eq!(f, want);
    }

    #[test]
    fn tcp6_and_udp6_checksums() {
        let f = Frame::tcp6(ip6("fd00::2"), ip6("fd00::1"))
            .flags(SYN | ACK)
            .seq(0x0102_0304)
            .ack(0xa0b0_c0d0)
            .payload(b"hello")
            .build();
        assert_eq!(be16(&f, 14 + 40 + 16), 0x6fdf);
        let p = Parsed::parse(&f).unwrap();
        assert!(p.checksums_ok());
        let f = Frame::udp6(ip6("fd00::2"), ip6("fd00::1"))
            .sport(5353)
            .dport(53)
            .payload(b"abc")
            .build();
        assert_eq!(be16(&f, 14 + 40 + 6), 0x2c53);
        assert!(Parsed::parse(&f).unwrap().checksums_ok());
    }

    #[test]
    fn round_trip_tcp4_with_tags_options_and_payload() {
        let f = Frame::tcp4(ip4("192.0.2.1"), ip4("198.51.100.2"))
            .src_mac([2, 1, 2, 3, 4, 5])
            .dst_mac([2, 6, 7, 8, 9, 10])
            .qinq(100, 101)
            .ip_options(&[7, 3, 4])
            .ttl(9)
            .ip_id(0x1234)
            .sport(1234)
            .dport(5432)
            .seq(0xffff_fff0)
            .ack(77)
            .flags(PSH | ACK)
            .window(512)
            .mss(1400)
            .tcp_options(&[4, 2])
            .payload(b"select 1;")
            .build();
        let p = Parsed::parse(&f).unwrap();
        assert_eq!(p.src_mac, [2, 1, 2, 3, 4, 5]);
        assert_eq!(p.dst_mac, [2, 6, 7, 8, 9, 10]);
        assert_eq!(p.tags, [(ETH_P_8021AD, 100), (ETH_P_8021Q, 101)]);
        assert_eq!((p.ethertype, p.l3_offset, p.trailer), (ETH_P_IP, 22, 0));
        let ip = p.ipv4().unwrap();
        assert_eq!((ip.ihl, ip.ttl, ip.id, ip.frag_off), (6, 9, 0x1234, IP_DF));
        assert_eq!(ip.options, [7, 3, 4, 1]);
        assert_eq!(usize::from(ip.tot_len), f.len() - 22);
        let ip = p.ip.as_ref().unwrap();
        assert_eq!(ip.src(), IpAddr::from(ip4("192.0.2.1")));
        assert_eq!(ip.dst(), IpAddr::from(ip4("198.51.100.2")));
        let t = p.tcp().unwrap();
        assert_eq!(
            (t.sport, t.dport, t.seq, t.ack),
            (1234, 5432, 0xffff_fff0, 77)
        );
        assert_eq!((t.flags, t.window, t.doff), (PSH | ACK, 512, 7));
        assert_eq!(t.options, [2, 4, 0x05, 0x78, 4, 2, 1, 1]);
        assert_eq!(t.mss(), Some(1400));
        assert_eq!(t.option(4), Some(&[][..]));
        assert_eq!(t.payload, b"select 1;");
        assert!(p.checksums_ok());
    }

    #[test]
    fn round_trip_tcp6_with_extension_headers() {
        let chain = [
            IPPROTO_HOPOPTS,
            IPPROTO_DSTOPTS,
            IPPROTO_ROUTING,
            IPPROTO_AH,
        ];
        let f = Frame::tcp6(ip6("2001:db8::1"), ip6("fd00::1"))
            .vlan(&[7])
            .ext(&chain)
            .flags(SYN)
            .mss(1440)
            .payload(&[0xaa; 3])
            .build();
        assert_eq!(f.len(), 18 + 40 + 4 * 16 + 24 + 3);
        let p = Parsed::parse(&f).unwrap();
        let ip = p.ipv6().unwrap();
        assert_eq!(ip.ext, chain);
        assert_eq!(
            (ip.next_header, ip.proto, ip.hop_limit),
            (0, IPPROTO_TCP, 64)
        );
        assert_eq!(usize::from(ip.payload_len), f.len() - 18 - 40);
        let t = p.tcp().unwrap();
        assert_eq!((t.mss(), &t.payload[..]), (Some(1440), &[0xaa; 3][..]));
        assert!(p.checksums_ok());
    }

    #[test]
    fn round_trip_udp4_and_other_ethertypes() {
        let f = Frame::udp(ip4("10.0.0.2").into(), ip4("10.0.0.1").into())
            .sport(1)
            .dport(80)
            .payload(b"x")
            .build();
        let p = Parsed::parse(&f).unwrap();
        let u = p.udp().unwrap();
        assert_eq!(
            (u.sport, u.dport, u.len, &u.payload[..]),
            (1, 80, 9, &b"x"[..])
        );
        assert!(p.checksums_ok());
        let p = Parsed::parse(&Frame::ethertype(ETH_P_ARP, &[0; 28]).build()).unwrap();
        assert_eq!(
            (p.ethertype, p.ip.is_none(), p.l4.is_none()),
            (ETH_P_ARP, true, true)
        );
    }

    #[test]
    fn fragments_are_not_read_as_tcp() {
        let f = Frame::ip4(ip4("192.0.2.9"), ip4("10.0.0.1"), IPPROTO_TCP)
            .frag_off(128 / 8)
            .payload(&[0; 32])
            .build();
        let p = Parsed::parse(&f).unwrap();
        assert_eq!(p.ipv4().unwrap().frag_off, 16);
        assert!(matches!(p.l4, Some(L4::Other { proto: 6, ref bytes }) if bytes.len() == 32));
        let f = Frame::tcp6(ip6("fd00::4"), ip6("fd00::1"))
            .ext(&[IPPROTO_FRAGMENT])
            .build();
        let p = Parsed::parse(&f).unwrap();
        assert!(matches!(p.l4, Some(L4::Other { proto: 6, .. })));
    }

    #[test]
    fn defects_are_built_as_asked() {
        let base = || Frame::tcp4(ip4("10.1.0.5"), ip4("10.0.0.1")).flags(SYN);
        // A lying IHL keeps a 20-byte header and a valid checksum.
        let f = base().ihl(4).build();
        assert_eq!((f[14], f.len()), (0x44, 54));
        assert_eq!(checksum(&f[14..34]), 0);
        assert!(Parsed::parse(&f).is_err());
        let f = base().ihl(15).tot_len(40).build();
        assert_eq!((f[14], be16(&f, 16), f.len()), (0x4f, 40, 14 + 60 + 20));
        assert_eq!(checksum(&f[14..74]), 0);
        assert!(Parsed::parse(&f).is_err());
        let f = base().ip_version(5).build();
        assert_eq!(f[14], 0x55);
        let f = Frame::tcp6(ip6("fd00::5"), ip6("fd00::1"))
            .ip_version(4)
            .build();
        assert_eq!(f[14], 0x40);
        assert!(Parsed::parse(&f).is_err());
        // doff: filled with NOPs above, lying below.
        let f = base().doff(10).build();
        assert_eq!((f[14 + 20 + 12], f.len()), (0xa0, 14 + 20 + 40));
        assert!(f[54..74].iter().all(|&b| b == TCPOPT_NOP));
        let f = base().doff(3).build();
        assert_eq!((f[14 + 20 + 12], f.len()), (0x30, 54));
        assert!(Parsed::parse(&f).is_err());
        // Overridden checksums are reported, not refused.
        let p = Parsed::parse(&base().l4_checksum(0x1234).build()).unwrap();
        assert!(!p.tcp().unwrap().checksum_ok && !p.checksums_ok());
        let p = Parsed::parse(&base().ip_checksum(0x1234).build()).unwrap();
        assert!(!p.ipv4().unwrap().checksum_ok && !p.checksums_ok());
    }

    #[test]
    fn cut_keeps_the_whole_frames_headers() {
        let whole = Frame::tcp4(ip4("10.1.0.7"), ip4("10.0.0.1"))
            .vlan(&[100, 101])
            .ihl(6)
            .flags(SYN);
        let full = whole.build();
        assert_eq!(full.len(), 14 + 8 + 24 + 20);
        for n in 0..=full.len() {
            let cut = whole.clone().cut(n).build();
            assert_eq!(cut, full[..n]);
            assert_eq!(Parsed::parse(&cut).is_ok(), n == full.len(), "cut at {n}");
        }
        assert_eq!(whole.cut(1000).build(), full);
    }

    #[test]
    fn trailer_after_the_ip_datagram() {
        let mut f = Frame::tcp4(ip4("10.1.0.1"), ip4("10.0.0.1")).build();
        f.extend_from_slice(&[0; 6]);
        let p = Parsed::parse(&f).unwrap();
        assert_eq!(p.trailer, 6);
        assert!(p.checksums_ok());
    }
}
