//! The PROXY protocol (haproxy.org's proxy-protocol.txt), versions 1 and 2:
//! the header `send-proxy`/`send-proxy-v2` write to a server before any client
//! byte, and the one `accept-proxy` reads from a client.
use std::net::{IpAddr, SocketAddr};

/// The 12-byte version 2 signature.
pub const V2_SIG: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Longest version 1 line, CRLF included.
pub const V1_MAX: usize = 107;

/// `send-proxy` (v1) or `send-proxy-v2`, as configured.
pub use crate::config::ProxyProtocol as Version;

/// Both addresses must be of one family; a mixed pair is sent as IPv6 with the
/// IPv4 side mapped, as HAProxy does.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => (v6(src), v6(dst)),
    }
}

/// The header announcing a connection from `src` to `dst`.
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        Version::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut h = V2_SIG.to_vec();
            // Version 2, command PROXY.
            h.push(0x21);
            let (fam, addrs): (u8, Vec<u8>) = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => (0x11, [s.octets(), d.octets()].concat()),
                (IpAddr::V6(s), IpAddr::V6(d)) => (0x21, [s.octets(), d.octets()].concat()),
                _ => unreachable!("same_family made both sides one family"),
            };
            h.push(fam);
            let len = (addrs.len() + 4) as u16;
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&addrs);
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 line: {0}")]
    BadV1(String),
    #[error("malformed PROXY v2 header: {0}")]
    BadV2(&'static str),
}

/// What a client's header said. `addrs` is None for `UNKNOWN` (v1) or `LOCAL`
/// and non-TCP families (v2): the connection's own addresses apply.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub version: Version,
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// Header length: the client's payload starts after it.
    pub len: usize,
}

/// Parses a header at the start of `buf`. Ok(None): need more bytes.
pub fn decode(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    if buf.len() >= 5 && &buf[..5] == b"PROXY" {
        return decode_v1(buf);
    }
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        return decode_v2(buf);
    }
    if b"PROXY".starts_with(&buf[..buf.len().min(5)]) {
        return Ok(None);
    }
    Err(ProxyError::NotProxy)
}

fn decode_v1(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::BadV1("no CRLF within 107 bytes".into()));
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError::BadV1("not ASCII".into()))?;
    let bad = |what: &str| ProxyError::BadV1(format!("{what} in '{line}'"));
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Some(Parsed {
            version: Version::V1,
            addrs: None,
            len,
        })),
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = s.parse().map_err(|_| bad("bad address"))?;
                if ip.is_ipv4() != (*fam == "TCP4") {
                    return Err(bad("address family mismatch"));
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, ProxyError> {
                if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                    return Err(bad("bad port"));
                }
                s.parse().map_err(|_| bad("bad port"))
            };
            Ok(Some(Parsed {
                version: Version::V1,
                addrs: Some((
                    SocketAddr::new(ip(src)?, port(sport)?),
                    SocketAddr::new(ip(dst)?, port(dport)?),
                )),
                len,
            }))
        }
        _ => Err(bad("unexpected fields")),
    }
}

fn decode_v2(buf: &[u8]) -> Result<Option<Parsed>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::BadV2("version is not 2"));
    }
    let cmd = ver_cmd & 0x0f;
    if cmd > 1 {
        return Err(ProxyError::BadV2("unknown command"));
    }
    let fam = buf[13];
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if buf.len() < len {
        return Ok(None);
    }
    let b = &buf[16..len];
    // LOCAL (health checks of the sender) and non-TCP families: no addresses.
    let addrs = if cmd == 0 {
        None
    } else {
        match fam {
            0x11 => {
                if b.len() < 12 {
                    return Err(ProxyError::BadV2("short IPv4 address block"));
                }
                let ip = |o: usize| IpAddr::from([b[o], b[o + 1], b[o + 2], b[o + 3]]);
                let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                ))
            }
            0x21 => {
                if b.len() < 36 {
                    return Err(ProxyError::BadV2("short IPv6 address block"));
                }
                let ip = |o: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&b[o..o + 16]);
                    IpAddr::from(a)
                };
                let port = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                ))
            }
            _ => None,
        }
    };
    Ok(Some(Parsed {
        version: Version::V2,
        addrs,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_bytes_are_exact() {
        let h = encode(Version::V1, sa("192.0.2.1:56324"), sa("198.51.100.2:443"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
        let h = encode(Version::V1, sa("[2001:db8::1]:1"), sa("[::1]:2"));
        assert_eq!(h, b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
    }

    #[test]
    fn v2_bytes_are_exact() {
        let h = encode(Version::V2, sa("192.0.2.1:56324"), sa("198.51.100.2:443"));
        let mut want = V2_SIG.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        want.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2]);
        want.extend_from_slice(&56324u16.to_be_bytes());
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(h, want);
        assert_eq!(
            encode(Version::V2, sa("[::1]:1"), sa("[::2]:2")).len(),
            16 + 36
        );
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6() {
        let h = encode(Version::V1, sa("192.0.2.1:1"), sa("[2001:db8::2]:2"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n");
    }

    #[test]
    fn decode_round_trips_and_reports_length() {
        for v in [Version::V1, Version::V2] {
            for (s, d) in [
                ("10.0.0.1:1234", "10.0.0.2:80"),
                ("[2001:db8::5]:65535", "[2001:db8::6]:1"),
            ] {
                let mut h = encode(v, sa(s), sa(d));
                let len = h.len();
                h.extend_from_slice(b"payload");
                let p = decode(&h).unwrap().unwrap();
                assert_eq!(p.version, v);
                assert_eq!(p.addrs, Some((sa(s), sa(d))));
                assert_eq!(p.len, len);
                // Every strict prefix asks for more bytes.
                for cut in 0..len {
                    assert_eq!(decode(&h[..cut]).unwrap(), None, "{v:?} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(ProxyError::NotProxy));
        assert!(decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").is_err());
        assert!(decode(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n").is_err());
        assert!(decode(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n").is_err());
        assert!(decode(&[b'P'; 200]).is_err());
        let mut v2 = V2_SIG.to_vec();
        v2.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert!(decode(&v2).is_err());
        assert_eq!(decode(b"PROXY UNKNOWN\r\n").unwrap().unwrap().addrs, None);
    }

    #[test]
    fn decode_never_panics_on_random_input() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 120) as usize;
            let prefix: &[u8] = match x % 3 {
                0 => b"PROXY ",
                1 => &V2_SIG,
                _ => b"",
            };
            buf.extend_from_slice(prefix);
            for i in 0..len {
                buf.push((x >> (i % 56)) as u8);
            }
            let _ = decode(&buf);
        }
    }
}
