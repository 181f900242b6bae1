//! Header parsing shared by `lb_xdp` and `lb_nat`: Ethernet (up to two VLAN
//! tags), IPv4 (options) or IPv6 (a fixed depth of extension headers) and TCP,
//! over any context with direct packet access ([`Frame`]).
use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use lb_common::{SynFields, AF_INET, AF_INET6, XDP_MAX_EXT_HDRS};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, ip::Ipv6Hdr, tcp::TcpHdr, vlan::VlanHdr};

/// A packet the program may read directly between `data` and `data_end`.
pub(crate) trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

// EtherTypes and next-header numbers as they sit in the packet.
pub(crate) const ETH_P_IP: u16 = 0x0800u16.to_be();
pub(crate) const ETH_P_IPV6: u16 = 0x86DDu16.to_be();
pub(crate) const ETH_P_8021Q: u16 = 0x8100u16.to_be();
pub(crate) const ETH_P_8021AD: u16 = 0x88A8u16.to_be();
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const NEXTHDR_HOP: u8 = 0;
pub(crate) const NEXTHDR_ROUTING: u8 = 43;
pub(crate) const NEXTHDR_FRAGMENT: u8 = 44;
pub(crate) const NEXTHDR_AUTH: u8 = 51;
pub(crate) const NEXTHDR_DEST: u8 = 60;
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;
/// IPv4 `frags` field: MF flag and fragment offset bits (network order on the wire).
pub(crate) const IP_MF_OFFSET: u16 = 0x3FFF;

/// Why a packet was not parsed to its TCP header.
pub(crate) enum Stop {
    /// Not TCP over IP: nothing to do.
    Other,
    Truncated,
    Malformed,
    Fragment,
    ExtDepth,
}

/// A TCP packet's addresses, ports, flags and where its headers are.
pub(crate) struct Tcp {
    pub family: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: [u8; 2],
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// A SYN without ACK: a connection's first packet.
    pub syn: bool,
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u8,
    /// Offsets of the IP and TCP headers, and the TCP header's length in bytes.
    pub l3: usize,
    pub l4: usize,
    pub th_len: u32,
}

impl Tcp {
    /// The SYN's fields as an IPv4 reply builder wants them.
    #[inline(always)]
    pub fn syn4(&self) -> SynFields<4> {
        let mut syn = SynFields {
            src_be: [0u8; 4],
            dst_be: [0u8; 4],
            sport_be: self.sport_be,
            dport_be: self.dport.to_be_bytes(),
            seq: self.seq,
        };
        syn.src_be.copy_from_slice(&self.src[..4]);
        syn.dst_be.copy_from_slice(&self.dst[..4]);
        syn
    }

    /// The same for IPv6.
    #[inline(always)]
    pub fn syn6(&self) -> SynFields<16> {
        SynFields {
            src_be: self.src,
            dst_be: self.dst,
            sport_be: self.sport_be,
            dport_be: self.dport.to_be_bytes(),
            seq: self.seq,
        }
    }
}

/// The one bounds check: a pointer to a `T` at `off`, if the packet holds it.
#[inline(always)]
pub(crate) fn ptr_at<T, C: Frame>(ctx: &C, off: usize) -> Result<*const T, Stop> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(Stop::Truncated);
    }
    Ok((start + off) as *const T)
}

pub(crate) fn parse<C: Frame>(ctx: &C) -> Result<Tcp, Stop> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let mut proto = unsafe { (*eth).ether_type };
    let mut off = EthHdr::LEN;
    // Up to two tags (802.1Q, or 802.1ad outer + 802.1Q inner).
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(ctx, off)?;
        proto = unsafe { (*vlan).ether_type };
        off += VlanHdr::LEN;
    }
    match proto {
        ETH_P_IP => parse_ipv4(ctx, off),
        ETH_P_IPV6 => parse_ipv6(ctx, off),
        _ => Err(Stop::Other),
    }
}

fn parse_ipv4<C: Frame>(ctx: &C, off: usize) -> Result<Tcp, Stop> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    let (vihl, tot_len, frags, proto) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len),
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
        )
    };
    let ihl = ((vihl & 0x0F) as usize) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN || ihl > tot_len as usize {
        return Err(Stop::Malformed);
    }
    if frags & IP_MF_OFFSET != 0 {
        return Err(Stop::Fragment);
    }
    if proto != IPPROTO_TCP {
        return Err(Stop::Other);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    unsafe {
        src[..4].copy_from_slice(&(*ip).src_addr);
        dst[..4].copy_from_slice(&(*ip).dst_addr);
    }
    parse_tcp(ctx, (off, off + ihl), AF_INET, src, dst)
}

fn parse_ipv6<C: Frame>(ctx: &C, off: usize) -> Result<Tcp, Stop> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    let (version, mut next, src, dst) = unsafe {
        (
            (*ip).vcf[0] >> 4,
            (*ip).next_hdr,
            (*ip).src_addr,
            (*ip).dst_addr,
        )
    };
    if version != 6 {
        return Err(Stop::Malformed);
    }
    let l3 = off;
    let mut off = off + Ipv6Hdr::LEN;
    for _ in 0..XDP_MAX_EXT_HDRS {
        match next {
            IPPROTO_TCP => return parse_tcp(ctx, (l3, off), AF_INET6, src, dst),
            NEXTHDR_FRAGMENT => return Err(Stop::Fragment),
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH => {
                // Next header, then the length: in 8-octet units beyond the
                // first 8 for most, in 4-octet units beyond the first 8 for AH.
                let ext: *const [u8; 2] = ptr_at(ctx, off)?;
                let (n, len) = unsafe { ((*ext)[0], (*ext)[1] as usize) };
                let bytes = if next == NEXTHDR_AUTH {
                    (len + 2) * 4
                } else {
                    (len + 1) * 8
                };
                next = n;
                off += bytes;
            }
            _ => return Err(Stop::Other),
        }
    }
    if next == IPPROTO_TCP {
        return parse_tcp(ctx, (l3, off), AF_INET6, src, dst);
    }
    Err(Stop::ExtDepth)
}

fn parse_tcp<C: Frame>(
    ctx: &C,
    (l3, l4): (usize, usize),
    family: u32,
    src: [u8; 16],
    dst: [u8; 16],
) -> Result<Tcp, Stop> {
    let tcp: *const TcpHdr = ptr_at(ctx, l4)?;
    // Byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN.
    let flags_at: *const u8 = ptr_at(ctx, l4 + 13)?;
    let (sport_be, dport, seq, ack, doff, flags) = unsafe {
        (
            (*tcp).source,
            u16::from_be_bytes((*tcp).dest),
            u32::from_be_bytes((*tcp).seq),
            u32::from_be_bytes((*tcp).ack_seq),
            (*tcp).doff(),
            *flags_at,
        )
    };
    let ack_no = ack;
    let (syn, ack) = (flags & TCP_SYN != 0, flags & TCP_ACK != 0);
    if doff < 5 {
        return Err(Stop::Malformed);
    }
    Ok(Tcp {
        family,
        src,
        dst,
        sport_be,
        dport,
        seq,
        ack: ack_no,
        syn: syn && !ack,
        flags,
        l3,
        l4,
        th_len: doff as u32 * 4,
    })
}
