//! Resets for NAT flows the runtime API ends (`shutdown sessions server`,
//! `on-marked-down shutdown-sessions`): lb holds no socket for them, so it
//! sends each end a RST of its own through a raw socket, at the sequence
//! number the kernel last saw that end expect. Whatever the reset misses
//! (bytes still in flight) meets no flow any more and is reset by the host.
use std::net::{IpAddr, SocketAddr};

use lb_common::{csum_add, csum_fold};
use socket2::{Domain, Protocol, Socket, Type};

/// A bare TCP RST segment (20 bytes) from `src` to `dst` at `seq`, with its
/// checksum over the IPv4 or IPv6 pseudo-header.
pub fn rst_segment(src: SocketAddr, dst: SocketAddr, seq: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&src.port().to_be_bytes());
    h[2..4].copy_from_slice(&dst.port().to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = 0x04;
    let mut sum = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => csum_add(csum_add(0, &s.octets()), &d.octets()) + 6 + 20,
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            csum_add(csum_add(0, &s), &d) + 6 + 20
        }
    };
    sum = csum_add(sum, &h);
    h[16..18].copy_from_slice(&csum_fold(sum).to_be_bytes());
    h
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Sends a RST from `src` to `dst` at `seq` (the kernel adds the IP header).
pub fn send_rst(src: SocketAddr, dst: SocketAddr, seq: u32) -> std::io::Result<()> {
    let domain = if dst.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::RAW, Some(Protocol::TCP))?;
    // The source address only: a raw socket has no port.
    sock.bind(&SocketAddr::new(src.ip(), 0).into())?;
    // Raw TCP sockets also receive a copy of every TCP packet: closed right
    // after the send, this one never reads.
    sock.send_to(
        &rst_segment(src, dst, seq),
        &SocketAddr::new(dst.ip(), 0).into(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one's complement sum over pseudo-header and segment is 0xffff
    /// when the checksum is right (checked independently of csum_fold).
    fn verify(pseudo: &[u8], seg: &[u8]) -> bool {
        let mut sum = 0u32;
        for c in pseudo.chunks(2).chain(seg.chunks(2)) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn rst_v4_checksums_and_fields() {
        let (s, d): (SocketAddr, SocketAddr) = (
            "10.1.2.3:5432".parse().unwrap(),
            "10.9.8.7:61001".parse().unwrap(),
        );
        let h = rst_segment(s, d, 0xdead_beef);
        assert_eq!(&h[0..4], &[0x15, 0x38, 0xee, 0x49]);
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), 0xdead_beef);
        assert_eq!(h[13], 0x04);
        let pseudo = [10, 1, 2, 3, 10, 9, 8, 7, 0, 6, 0, 20];
        assert!(verify(&pseudo, &h));
    }

    #[test]
    fn rst_v6_checksums() {
        let (s, d): (SocketAddr, SocketAddr) = (
            "[fd10::1]:5432".parse().unwrap(),
            "[fd10:2::11]:61001".parse().unwrap(),
        );
        let h = rst_segment(s, d, 7);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&v6(s.ip()));
        pseudo.extend_from_slice(&v6(d.ip()));
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        assert!(verify(&pseudo, &h));
    }
}
