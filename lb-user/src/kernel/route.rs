//! What the host's routing says, asked over rtnetlink: the interface and
//! source address toward a server (where `lb_nat` sends a flow and which
//! address the server sees), and the addresses of an interface (what a
//! wildcard `bind` means for the NAT path).
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("rtnetlink: {0}")]
    Io(#[from] std::io::Error),
    #[error("no route to {addr}: {msg}")]
    NoRoute { addr: IpAddr, msg: String },
    #[error("rtnetlink: unreadable answer: {0}")]
    Decode(String),
}

/// The route the host would use toward an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
    /// The preferred source address (what a connection from this host uses).
    pub src: IpAddr,
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Sends one request and collects the answers until the end of a dump (or
/// the single answer of a plain request).
fn ask(msg: RouteNetlinkMessage, dump: bool) -> Result<Vec<RouteNetlinkMessage>, RouteError> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf[..]);
    socket.send(&buf[..], 0)?;
    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    // Bounded: a dump of a host's addresses fits in far fewer reads.
    for _ in 0..10_000 {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut off = 0;
        while off < n {
            let m = <NetlinkMessage<RouteNetlinkMessage>>::deserialize(&rx[off..n])
                .map_err(|e| RouteError::Decode(e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(RouteError::Io(std::io::Error::from_raw_os_error(
                            -code.get(),
                        )));
                    }
                    return Ok(out);
                }
                NetlinkPayload::InnerMessage(i) => {
                    out.push(i);
                    if !dump {
                        return Ok(out);
                    }
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += len;
        }
    }
    Ok(out)
}

/// `ip route get ADDR`: the interface and source address toward `addr`.
pub fn route_to(addr: IpAddr) -> Result<Route, RouteError> {
    let mut m = RouteMessage::default();
    m.header.address_family = family(addr);
    m.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    let answers = ask(RouteNetlinkMessage::GetRoute(m), false).map_err(|e| match e {
        RouteError::Io(io) => RouteError::NoRoute {
            addr,
            msg: io.to_string(),
        },
        other => other,
    })?;
    let Some(RouteNetlinkMessage::NewRoute(r)) = answers.into_iter().next() else {
        return Err(RouteError::NoRoute {
            addr,
            msg: "no answer".into(),
        });
    };
    let mut ifindex = None;
    let mut src = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => ifindex = Some(*i),
            RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => src = Some(IpAddr::V4(*ip)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(ip)) => src = Some(IpAddr::V6(*ip)),
            _ => {}
        }
    }
    match (ifindex, src) {
        (Some(ifindex), Some(src)) => Ok(Route { ifindex, src }),
        _ => Err(RouteError::NoRoute {
            addr,
            msg: "the route names no interface or no source address".into(),
        }),
    }
}

/// The addresses configured on interface `ifindex` (both families).
pub fn addresses(ifindex: u32) -> Result<Vec<IpAddr>, RouteError> {
    let answers = ask(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        true,
    )?;
    let mut out = Vec::new();
    for a in answers {
        let RouteNetlinkMessage::NewAddress(m) = a else {
            continue;
        };
        if m.header.index != ifindex {
            continue;
        }
        for at in &m.attributes {
            // IFA_LOCAL is the interface's own address on point-to-point
            // links; IFA_ADDRESS otherwise (and the peer there).
            if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = at {
                if !out.contains(ip) {
                    out.push(*ip);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback is there on every machine (and in a fresh namespace once up).
    #[test]
    fn loopback_routes_through_lo() {
        let r = route_to("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(r.ifindex, 1);
        assert!(r.src.is_loopback());
        assert!(addresses(1)
            .unwrap()
            .contains(&"127.0.0.1".parse().unwrap()));
    }
}
