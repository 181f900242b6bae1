//! `data-path connect`: a process of lb's cgroup (and network namespace)
//! that connects to a frontend's address is connected straight to a server
//! the backend picks in the kernel (`lb_connect4/6`, cgroup `connect4/6`),
//! and `getpeername` still shows the address it asked for (`lb_peer4/6`).
//! `lb_conns` counts the socket out of its server when it closes. No server
//! free: the connect goes to the frontend's listener as before, where the
//! proxy's queue and refusals apply.
use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    maps::{Array, PerCpuArray},
    programs::SockAddrContext,
    EbpfContext,
};
use lb_common::{stat, BindKey, ConnPeer, NatBackend, NatScratch, NatServer, AF_INET, AF_INET6};

use crate::count;
use crate::maps::*;
use crate::pick::{pick, release, Tables};

const SOCK_STREAM: u32 = 1;

/// `data-path connect`'s pick tables.
struct ConnTables;

impl Tables for ConnTables {
    fn backends() -> &'static Array<NatBackend> {
        &LB_CONN_BACKENDS
    }
    fn pick() -> &'static Array<u32> {
        &LB_CONN_PICK
    }
    fn servers() -> &'static Array<NatServer> {
        &LB_CONN_SERVERS
    }
    fn scratch() -> &'static PerCpuArray<NatScratch> {
        &LB_CONN_SCRATCH
    }
}

#[cgroup_sock_addr(connect4)]
pub fn lb_connect4(ctx: SockAddrContext) -> i32 {
    try_connect(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(connect6)]
pub fn lb_connect6(ctx: SockAddrContext) -> i32 {
    try_connect(&ctx, AF_INET6);
    1
}

#[cgroup_sock_addr(getpeername4)]
pub fn lb_peer4(ctx: SockAddrContext) -> i32 {
    try_peer(&ctx, AF_INET);
    1
}

#[cgroup_sock_addr(getpeername6)]
pub fn lb_peer6(ctx: SockAddrContext) -> i32 {
    try_peer(&ctx, AF_INET6);
    1
}

/// The destination as the socket gave it: address bytes and port (network
/// order), for an IPv6 socket the whole v6 address.
#[inline(always)]
fn dest(ctx: &SockAddrContext, family: u32) -> ([u8; 16], [u8; 2]) {
    let sa = ctx.sock_addr;
    let mut addr = [0u8; 16];
    // Every field read on its own: the verifier wants the context's fixed
    // offsets, not a computed one.
    let port = unsafe { core::ptr::read_volatile(&(*sa).user_port) };
    if family == AF_INET {
        let a = unsafe { core::ptr::read_volatile(&(*sa).user_ip4) };
        addr[..4].copy_from_slice(&a.to_ne_bytes());
    } else {
        let w = unsafe {
            [
                core::ptr::read_volatile(&(*sa).user_ip6[0]),
                core::ptr::read_volatile(&(*sa).user_ip6[1]),
                core::ptr::read_volatile(&(*sa).user_ip6[2]),
                core::ptr::read_volatile(&(*sa).user_ip6[3]),
            ]
        };
        for (i, x) in w.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
        }
    }
    (addr, (port as u16).to_ne_bytes())
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
#[inline(always)]
fn mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff
}

#[inline(always)]
fn try_connect(ctx: &SockAddrContext, family: u32) {
    let sa = ctx.sock_addr;
    if unsafe { core::ptr::read_volatile(&(*sa).type_) } != SOCK_STREAM {
        return;
    }
    // Only lb's own network namespace: the cgroup spans every namespace.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    if LB_CONN_NETNS.get(0).copied() != Some(netns) {
        return;
    }
    let (addr, port_be) = dest(ctx, family);
    let v4 = family == AF_INET || mapped(&addr);
    let mut key = BindKey {
        family: if v4 { AF_INET } else { AF_INET6 },
        port_host: u16::from_be_bytes(port_be) as u32,
        addr_be: [0; 16],
    };
    if family == AF_INET {
        key.addr_be[..4].copy_from_slice(&addr[..4]);
    } else if v4 {
        key.addr_be[..4].copy_from_slice(&addr[12..]);
    } else {
        key.addr_be = addr;
    }
    let Some(vip) = (unsafe { LB_CONN_VIPS.get(&key) }).copied() else {
        return;
    };
    // Every local client has the same source address: `balance source`
    // sends them all to one server, as HAProxy would.
    let idx = match pick::<ConnTables>(vip.backend, 0) {
        Ok(i) => i,
        Err(_) => {
            count(stat::CONNECT_NO_SERVER);
            return;
        }
    };
    let Some(srv) = LB_CONN_SERVERS.get(idx) else {
        release(idx);
        return;
    };
    // An IPv4 server for an IPv6 socket only through a mapped address; an
    // IPv6 server never for an IPv4 socket.
    if (srv.family == AF_INET) != v4 {
        release(idx);
        count(stat::CONNECT_NO_SERVER);
        return;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let peer = ConnPeer {
        vip_be: addr,
        srv_be: srv.addr_be,
        vip_port_be: port_be,
        srv_port_be: srv.port_be,
        family,
        server: idx,
        frontend: vip.frontend,
    };
    if LB_CONN_PEERS.insert(&cookie, &peer, 0).is_err() {
        release(idx);
        count(stat::CONNECT_TABLE_FULL);
        return;
    }
    let port = u16::from_ne_bytes(srv.port_be) as u32;
    unsafe {
        if family == AF_INET {
            let a = &srv.addr_be;
            (*sa).user_ip4 = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        } else if v4 {
            let a = &srv.addr_be;
            (*sa).user_ip6[0] = 0;
            (*sa).user_ip6[1] = 0;
            (*sa).user_ip6[2] = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
            (*sa).user_ip6[3] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        } else {
            let a = &srv.addr_be;
            (*sa).user_ip6[0] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
            (*sa).user_ip6[1] = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
            (*sa).user_ip6[2] = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
            (*sa).user_ip6[3] = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
        }
        (*sa).user_port = port;
    }
    if let Some(ks) = LB_SRV_KSTATS.get_ptr_mut(idx) {
        // Per-CPU slot: no other writer.
        unsafe { (*ks).kernel_conns += 1 };
    }
    count(stat::CONNECT_BALANCED);
}

/// `getpeername` of a balanced socket: the frontend address it asked for.
#[inline(always)]
fn try_peer(ctx: &SockAddrContext, family: u32) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(p) = (unsafe { LB_CONN_PEERS.get(&cookie) }) else {
        return;
    };
    if p.family != family {
        return;
    }
    let sa = ctx.sock_addr;
    let a = &p.vip_be;
    unsafe {
        if family == AF_INET {
            (*sa).user_ip4 = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        } else {
            (*sa).user_ip6[0] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
            (*sa).user_ip6[1] = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
            (*sa).user_ip6[2] = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
            (*sa).user_ip6[3] = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
        }
        (*sa).user_port = u16::from_ne_bytes(p.vip_port_be) as u32;
    }
}
