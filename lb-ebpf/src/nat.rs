//! `lb_nat`: the kernel NAT path, at tc ingress of every interface the
//! daemon attaches it to (client side and server side). A client's SYN to a
//! `data-path nat` frontend picks a server and a balancer port and stores the
//! flow's two directions in `LB_NAT_FLOWS`; every packet of a known flow is
//! rewritten (addresses, ports, TTL, checksums through the kernel's helpers,
//! which handle CHECKSUM_PARTIAL skbs) and sent out of the flow's interface
//! with `bpf_redirect_neigh`, which resolves the next hop itself: no
//! forwarding sysctl, no conntrack. Everything else is left to the host.
use core::intrinsics::{atomic_or, atomic_xadd, AtomicOrdering};

use aya_ebpf::maps::{Array, PerCpuArray};
use aya_ebpf::{
    bindings::{BPF_CSUM_LEVEL_RESET, BPF_F_PSEUDO_HDR, BPF_NOEXIST, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{
        bpf_csum_level, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_redirect, bpf_redirect_neigh,
        bpf_skb_change_tail,
    },
    macros::classifier,
    programs::TcContext,
};
use lb_common::{
    avalanche, nat_addr_hash, nat_flow_over, nat_port, stat, NatBackend, NatFlow, NatKey, NatLog,
    NatScratch, NatServer, NatVip, AF_INET, NAT_DIR_CLIENT, NAT_DIR_SERVER, NAT_F_CLOSED,
    NAT_F_ENDED, NAT_F_FIN, NAT_F_LOG, NAT_F_RST, NAT_PORT_TRIES, NAT_VIP_LOG,
};
use lb_common::{nat_last_ack, NAT_PORT_REUSE_NS};
use lb_common::{rst_v4, rst_v6, AF_INET6, SYNACK4_LEN, SYNACK_TCP_LEN};

use crate::count;
use crate::maps::*;
use crate::parse::{parse, Tcp, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Bytes pulled into the linear area before parsing: Ethernet, two VLAN
/// tags, an IPv4 header with options or an IPv6 header with some extension
/// headers, and the TCP header.
const PULL: u32 = 192;

/// Why a SYN got no flow (a `stat::NAT_*` index).
use crate::pick::{pick, release, Refusal, Tables};

/// The NAT path's pick tables.
struct NatTables;

impl Tables for NatTables {
    fn backends() -> &'static Array<NatBackend> {
        &LB_NAT_BACKENDS
    }
    fn pick() -> &'static Array<u32> {
        &LB_NAT_PICK
    }
    fn servers() -> &'static Array<NatServer> {
        &LB_NAT_SERVERS
    }
    fn scratch() -> &'static PerCpuArray<NatScratch> {
        &LB_NAT_SCRATCH
    }
}

#[classifier]
pub fn lb_nat(ctx: TcContext) -> i32 {
    try_nat(&ctx)
}

fn try_nat(ctx: &TcContext) -> i32 {
    if ctx.data_end() - ctx.data() < PULL as usize {
        let len = ctx.len().min(PULL);
        let _ = ctx.pull_data(len);
    }
    let Ok(tcp) = parse(ctx) else {
        return TC_ACT_OK;
    };
    // The packet's key and its frontend's, in per-CPU scratch: the stack
    // holds the parsed headers already.
    let Some(sc) = LB_NAT_SCRATCH.get_ptr_mut(0) else {
        return TC_ACT_OK;
    };
    let key = unsafe { &mut (*sc).key };
    set16(&mut key.src_be, &tcp.src);
    set16(&mut key.dst_be, &tcp.dst);
    key.sport_be = tcp.sport_be;
    key.dport_be = tcp.dport.to_be_bytes();
    key.family = tcp.family;
    let key: &NatKey = key;
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(f) = LB_NAT_FLOWS.get_ptr_mut(key) {
        let f = unsafe { &mut *f };
        // A SYN on an ended flow is the client reusing its port: a new flow.
        if !(tcp.syn && f.dir == NAT_DIR_CLIENT && f.flags & NAT_F_ENDED != 0) {
            return forward(ctx, &tcp, f, now);
        }
        if let Some(peer) = peer_key(f, tcp.family) {
            let _ = LB_NAT_FLOWS.remove(&*peer);
        }
        let _ = LB_NAT_FLOWS.remove(key);
    }
    let vkey = unsafe { &mut (*sc).vkey };
    vkey.family = tcp.family;
    vkey.port_host = tcp.dport as u32;
    set16(&mut vkey.addr_be, &tcp.dst);
    let Some(vip) = (unsafe { LB_NAT_VIPS.get(&*vkey) }).copied() else {
        return TC_ACT_OK;
    };
    if !tcp.syn {
        count(stat::NAT_UNKNOWN);
        return TC_ACT_OK;
    }
    match new_flow(ctx, &tcp, key, vip, now) {
        Ok(f) => forward(ctx, &tcp, unsafe { &mut *f }, now),
        Err(why) => {
            count(why);
            if why == stat::NAT_FAILED {
                return TC_ACT_SHOT;
            }
            refuse(ctx, &tcp)
        }
    }
}

/// Answers a SYN no server can take with RST | ACK out of the interface it
/// came in by, as a closed port would: the client fails at once instead of
/// retrying its SYN (HAProxy closes such a connection too). The packet is
/// cut to the reply's length and rewritten whole; its checksum state is
/// reset, the reply's checksums being complete.
#[inline(always)]
fn refuse(ctx: &TcContext, tcp: &Tcp) -> i32 {
    let Some(sc) = LB_XDP_SCRATCH.get_ptr_mut(0) else {
        return TC_ACT_SHOT;
    };
    let sc = unsafe { &mut *sc };
    let (ip_len, family) = if tcp.family == AF_INET {
        (20, AF_INET)
    } else {
        (40, AF_INET6)
    };
    if family == AF_INET {
        let out = unsafe { &mut *(sc.out.as_mut_ptr() as *mut [u8; SYNACK4_LEN]) };
        rst_v4(&tcp.syn4(), out);
    } else {
        let syn = tcp.syn6();
        rst_v6(&syn, &mut sc.out);
    }
    let skb = ctx.skb.skb;
    let len = (tcp.l3 + ip_len + SYNACK_TCP_LEN) as u32;
    if unsafe { bpf_skb_change_tail(skb, len, 0) } != 0 {
        return TC_ACT_SHOT;
    }
    let Ok(macs) = ctx.load::<[u8; 12]>(0) else {
        return TC_ACT_SHOT;
    };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    let stored = if family == AF_INET {
        let out = unsafe { &*(sc.out.as_ptr() as *const [u8; SYNACK4_LEN]) };
        ctx.store(tcp.l3, out, 0)
    } else {
        ctx.store(tcp.l3, &sc.out, 0)
    };
    if stored.is_err() || ctx.store(0, &swapped, 0).is_err() {
        return TC_ACT_SHOT;
    }
    unsafe {
        bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET as u64);
        bpf_redirect((*skb).ingress_ifindex, 0) as i32
    }
}

/// `-EEXIST`: a `BPF_NOEXIST` insert met the key.
const EEXIST: i32 = 17;

/// Picks a server and a balancer port, stores both directions; returns the
/// client direction's entry.
#[inline(always)]
fn new_flow(
    ctx: &TcContext,
    tcp: &Tcp,
    key: &NatKey,
    vip: NatVip,
    now: u64,
) -> Result<*mut NatFlow, Refusal> {
    let h = avalanche(
        nat_addr_hash(&tcp.src)
            ^ ((u16::from_be_bytes(tcp.sport_be) as u32) << 16 | tcp.dport as u32),
    );
    let srv_idx = pick::<NatTables>(vip.backend, nat_addr_hash(&tcp.src))?;
    let Some(srv) = LB_NAT_SERVERS.get(srv_idx) else {
        release(srv_idx);
        return Err(stat::NAT_NO_SERVER);
    };
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // The two entries are built in per-CPU scratch space: the stack cannot
    // hold them beside the parsed headers.
    let Some(sc) = LB_NAT_SCRATCH.get_ptr_mut(0) else {
        release(srv_idx);
        return Err(stat::NAT_FAILED);
    };
    let sc = unsafe { &mut *sc };
    let back = &mut sc.back;
    fill(
        back,
        &tcp.dst,
        &tcp.src,
        (tcp.dport.to_be_bytes(), tcp.sport_be),
        ingress,
    );
    back.server = srv_idx;
    back.frontend = vip.frontend;
    back.dir = NAT_DIR_SERVER;
    back.created_ns = now;
    back.last_ns = now;
    let rkey = &mut sc.rkey;
    set16(&mut rkey.src_be, &srv.addr_be);
    set16(&mut rkey.dst_be, &srv.src_be);
    rkey.sport_be = srv.port_be;
    rkey.family = tcp.family;
    let start = unsafe { bpf_get_prandom_u32() } ^ h;
    let mut port = 0u16;
    // A range smaller than the tries is tried once through.
    for attempt in 0..NAT_PORT_TRIES {
        if attempt >= srv.port_tries {
            break;
        }
        let p = nat_port(srv.port_lo, srv.port_hi, start, attempt);
        rkey.dport_be = p.to_be_bytes();
        match LB_NAT_FLOWS.insert(&*rkey, &*back, BPF_NOEXIST as u64) {
            Ok(()) => {
                port = p;
                break;
            }
            Err(e) if e != -EEXIST => {
                count(stat::NAT_PORT_NOMEM);
                continue;
            }
            Err(_) => {}
        }
        // Taken: by an ended flow past its own grace, it can be had.
        if !reclaim(rkey, tcp.family, now) {
            count(stat::NAT_PORT_HELD);
            continue;
        }
        match LB_NAT_FLOWS.insert(&*rkey, &*back, BPF_NOEXIST as u64) {
            Ok(()) => {
                count(stat::NAT_PORT_REUSED);
                port = p;
                break;
            }
            // Another CPU's new flow was quicker.
            Err(e) if e == -EEXIST => count(stat::NAT_PORT_HELD),
            Err(_) => count(stat::NAT_PORT_NOMEM),
        }
    }
    if port == 0 {
        release(srv_idx);
        return Err(stat::NAT_NO_PORT);
    }
    let fwd = &mut sc.fwd;
    fill(
        fwd,
        &srv.src_be,
        &srv.addr_be,
        (port.to_be_bytes(), srv.port_be),
        srv.ifindex,
    );
    fwd.server = srv_idx;
    fwd.frontend = vip.frontend;
    fwd.dir = NAT_DIR_CLIENT;
    fwd.flags = if vip.flags & NAT_VIP_LOG != 0 {
        NAT_F_LOG
    } else {
        0
    };
    fwd.created_ns = now;
    fwd.last_ns = now;
    let stored = LB_NAT_FLOWS.insert(key, &*fwd, 0).is_ok();
    match LB_NAT_FLOWS.get_ptr_mut(key) {
        Some(f) if stored => {
            count(stat::NAT_NEW);
            if let Some(ks) = LB_SRV_KSTATS.get_ptr_mut(srv_idx) {
                // Per-CPU slot: no other writer.
                unsafe { (*ks).kernel_conns += 1 };
            }
            Ok(f)
        }
        _ => {
            let _ = LB_NAT_FLOWS.remove(&*rkey);
            release(srv_idx);
            Err(stat::NAT_TABLE_FULL)
        }
    }
}

/// Removes the flow whose server-side entry holds `rkey` if it is closed
/// (both FINs acknowledged), ended over `NAT_PORT_REUSE_NS` ago, or lost its
/// client half to the LRU; true if the port is free now. A flow still
/// running keeps its port.
#[inline(always)]
fn reclaim(rkey: &NatKey, family: u32, now: u64) -> bool {
    let Some(old) = (unsafe { LB_NAT_FLOWS.get(rkey) }) else {
        return true;
    };
    let closed = old.flags & NAT_F_CLOSED != 0;
    let ended_long_ago =
        old.flags & NAT_F_ENDED != 0 && now.wrapping_sub(old.ended_ns) >= NAT_PORT_REUSE_NS;
    let Some(client_key) = peer_key(old, family) else {
        return false;
    };
    // The client entry is this flow's only if it rewrites to this port of
    // this server: after an LRU eviction the client may have opened a new
    // flow from the same address and port, which must not be touched.
    let owned = match unsafe { LB_NAT_FLOWS.get(&*client_key) } {
        Some(c) => c.sport_be == rkey.dport_be && c.server == old.server,
        None => false,
    };
    // A half whose client half the LRU evicted is a broken flow: its port
    // is free once it is older than a flow takes to be stored whole.
    let alone = !owned && now.wrapping_sub(old.created_ns) >= NAT_PORT_REUSE_NS;
    if !closed && !ended_long_ago && !alone {
        return false;
    }
    if owned {
        let _ = LB_NAT_FLOWS.remove(&*client_key);
    }
    // Gone already (another CPU or the daemon's sweep took it): free too.
    let _ = LB_NAT_FLOWS.remove(rkey);
    true
}

/// Starts a new entry in scratch memory: what its packets become (source,
/// destination, ports, egress) and a state of nothing seen yet.
#[inline(always)]
fn fill(e: &mut NatFlow, src: &[u8; 16], dst: &[u8; 16], ports: ([u8; 2], [u8; 2]), ifindex: u32) {
    set16(&mut e.src_be, src);
    set16(&mut e.dst_be, dst);
    e.sport_be = ports.0;
    e.dport_be = ports.1;
    e.ifindex = ifindex;
    e.flags = 0;
    zero(&mut e.ended_ns);
    zero(&mut e.packets);
    zero(&mut e.bytes);
    e.seq_next = 0;
    e.ack = 0;
}

/// The per-CPU scratch key slot, filled with the key of `f`'s other
/// direction.
#[inline(always)]
fn peer_key(f: &NatFlow, family: u32) -> Option<&'static mut NatKey> {
    let sc = LB_NAT_SCRATCH.get_ptr_mut(0)?;
    let k = unsafe { &mut (*sc).pkey };
    set16(&mut k.src_be, &f.dst_be);
    set16(&mut k.dst_be, &f.src_be);
    k.sport_be = f.dport_be;
    k.dport_be = f.sport_be;
    k.family = family;
    Some(k)
}

/// Copies an address into map memory. A plain assignment between two map
/// values may alias as far as LLVM knows: it becomes a `memmove` call, which
/// BPF does not have; `memcpy` is expanded inline.
#[inline(always)]
fn set16(dst: &mut [u8; 16], src: &[u8; 16]) {
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), 16) }
}

/// Zeroes a field of map memory one store at a time (adjacent zero stores
/// would be merged into a `memset` call, which BPF does not have).
#[inline(always)]
fn zero(p: &mut u64) {
    unsafe { core::ptr::write_volatile(p, 0) }
}

/// `a` comes after `b` in sequence space (RFC 1982 arithmetic).
#[inline(always)]
fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline(always)]
fn fetch_add64(p: *mut u64, v: u64) -> u64 {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) }
}

/// Accounts the packet to its flow, ends the flow on its last FIN or a RST,
/// rewrites it and sends it on.
#[inline(always)]
fn forward(ctx: &TcContext, tcp: &Tcp, f: &mut NatFlow, now: u64) -> i32 {
    f.last_ns = now;
    let payload = (ctx.len() as u64).saturating_sub((tcp.l4 as u64) + tcp.th_len as u64);
    fetch_add64(core::ptr::addr_of_mut!(f.packets), 1);
    fetch_add64(core::ptr::addr_of_mut!(f.bytes), payload);
    // The highest sequence and acknowledgment seen, not the last: a
    // retransmission of older bytes after the FIN must not make the flow
    // look closed (see `closing`).
    let control = (tcp.flags & (TCP_SYN | TCP_FIN) != 0) as u32;
    let next = tcp.seq.wrapping_add(payload as u32).wrapping_add(control);
    if f.packets == 1 || later(next, f.seq_next) {
        f.seq_next = next;
    }
    if tcp.flags & TCP_ACK != 0 && (f.ack == 0 || later(tcp.ack, f.ack)) {
        f.ack = tcp.ack;
    }
    if let Some(ks) = LB_SRV_KSTATS.get_ptr_mut(f.server) {
        // Per-CPU slot: no other writer.
        let ks = unsafe { &mut *ks };
        if f.dir == NAT_DIR_CLIENT {
            ks.bytes_in += payload;
        } else {
            ks.bytes_out += payload;
        }
    }
    let ends = (if tcp.flags & TCP_FIN != 0 {
        NAT_F_FIN
    } else {
        0
    }) | (if tcp.flags & TCP_RST != 0 {
        NAT_F_RST
    } else {
        0
    });
    if ends != 0 {
        end_check(tcp.family, f, ends, now);
    }
    let done = closing(tcp, f);
    let (ifindex, rewritten) = (f.ifindex, rewrite(ctx, tcp, f));
    match rewritten {
        Ok(()) => {
            count(stat::NAT_PACKETS);
            if let Some(peer) = done {
                unsafe {
                    atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(&mut f.flags, NAT_F_CLOSED);
                    atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(
                        &mut (*peer).flags,
                        NAT_F_CLOSED,
                    );
                }
                count(stat::NAT_CLOSED);
            }
            unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
        Err(why) => {
            count(why);
            TC_ACT_SHOT
        }
    }
}

/// Records `ends` on this direction; when the flow is over (see
/// `nat_flow_over`), whoever gets there first marks the client entry ended
/// and counts the server's flow out.
#[inline(always)]
fn end_check(family: u32, f: &mut NatFlow, ends: u32, now: u64) {
    let mine =
        unsafe { atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(&mut f.flags, ends) } | ends;
    let Some(peer_key) = peer_key(f, family) else {
        return;
    };
    let Some(peer) = LB_NAT_FLOWS.get_ptr_mut(&*peer_key) else {
        return;
    };
    let peer = unsafe { &mut *peer };
    if !nat_flow_over(mine, peer.flags) {
        return;
    }
    let (client, other) = if f.dir == NAT_DIR_CLIENT {
        (f, peer)
    } else {
        (peer, f)
    };
    let old = unsafe {
        atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(&mut client.flags, NAT_F_ENDED)
    };
    if old & NAT_F_ENDED == 0 {
        client.ended_ns = now;
        other.ended_ns = now;
        unsafe { atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(&mut other.flags, NAT_F_ENDED) };
        release(client.server);
        count(stat::NAT_ENDED);
        if client.flags & NAT_F_LOG != 0 {
            log_end(client, other, family, now);
        }
    }
}

/// Sends the ended flow to the daemon for its tcplog line. `other` is the
/// server-side entry, whose rewrite holds the client's address.
#[inline(always)]
fn log_end(client: &NatFlow, other: &NatFlow, family: u32, now: u64) {
    let Some(mut e) = LB_NAT_LOG.reserve::<NatLog>(0) else {
        count(stat::NAT_LOG_LOST);
        return;
    };
    let p = e.as_mut_ptr();
    let term = if client.flags & NAT_F_RST != 0 {
        *b"CD"
    } else if other.flags & NAT_F_RST != 0 {
        *b"SD"
    } else {
        *b"--"
    };
    unsafe {
        set16(&mut (*p).client_be, &other.dst_be);
        (*p).family = family;
        (*p).client_port = u16::from_be_bytes(other.dport_be) as u32;
        (*p).frontend = client.frontend;
        (*p).server = client.server;
        (*p).created_ns = client.created_ns;
        (*p).ended_ns = now;
        (*p).bytes_in = client.bytes;
        (*p).bytes_out = other.bytes;
        (*p).term = term;
        (*p)._pad = [0; 6];
    }
    e.submit(0);
}

/// An ended flow's pure ACK that closes it for good (see `nat_last_ack`):
/// both ends have everything. The entries stay a little (a socket with
/// unread data still sends window updates, which a missing flow would have
/// the host answer with a reset), but the balancer port may be taken over at
/// once. Returns the other entry.
#[inline(always)]
fn closing(tcp: &Tcp, f: &NatFlow) -> Option<*mut NatFlow> {
    if f.flags & NAT_F_CLOSED != 0 {
        return None;
    }
    if f.flags & NAT_F_ENDED == 0 || tcp.flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        return None;
    }
    let peer_key = peer_key(f, tcp.family)?;
    let peer = LB_NAT_FLOWS.get_ptr_mut(&*peer_key)?;
    let (seq_next, ack) = unsafe { ((*peer).seq_next, (*peer).ack) };
    nat_last_ack(tcp.seq, tcp.ack, seq_next, ack).then_some(peer)
}

/// Rewrites addresses and ports to the entry's and takes one off the TTL,
/// fixing the checksums as it goes.
#[inline(always)]
fn rewrite(ctx: &TcContext, tcp: &Tcp, f: &NatFlow) -> Result<(), u32> {
    let csum = tcp.l4 + 16;
    let fail = |_| stat::NAT_FAILED;
    if tcp.family == AF_INET {
        let l3 = tcp.l3;
        let ttl_proto: [u8; 2] = ctx.load(l3 + 8).map_err(fail)?;
        if ttl_proto[0] <= 1 {
            return Err(stat::NAT_TTL);
        }
        let new = [ttl_proto[0] - 1, ttl_proto[1]];
        ctx.l3_csum_replace(
            l3 + 10,
            u16::from_ne_bytes(ttl_proto) as u64,
            u16::from_ne_bytes(new) as u64,
            2,
        )
        .map_err(fail)?;
        ctx.store(l3 + 8, &new, 0).map_err(fail)?;
        for (off, old, new) in [(12, &tcp.src, &f.src_be), (16, &tcp.dst, &f.dst_be)] {
            let o = u32::from_ne_bytes([old[0], old[1], old[2], old[3]]) as u64;
            let n = u32::from_ne_bytes([new[0], new[1], new[2], new[3]]) as u64;
            if o == n {
                continue;
            }
            ctx.l3_csum_replace(l3 + 10, o, n, 4).map_err(fail)?;
            ctx.l4_csum_replace(csum, o, n, BPF_F_PSEUDO_HDR as u64 | 4)
                .map_err(fail)?;
            ctx.store(l3 + off, &[new[0], new[1], new[2], new[3]], 0)
                .map_err(fail)?;
        }
    } else {
        let l3 = tcp.l3;
        let hop: u8 = ctx.load(l3 + 7).map_err(fail)?;
        if hop <= 1 {
            return Err(stat::NAT_TTL);
        }
        ctx.store(l3 + 7, &(hop - 1), 0).map_err(fail)?;
        for (off, old, new) in [(8, &tcp.src, &f.src_be), (24, &tcp.dst, &f.dst_be)] {
            for w in 0..4 {
                let i = w * 4;
                let o = u32::from_ne_bytes([old[i], old[i + 1], old[i + 2], old[i + 3]]) as u64;
                let n = u32::from_ne_bytes([new[i], new[i + 1], new[i + 2], new[i + 3]]) as u64;
                if o != n {
                    ctx.l4_csum_replace(csum, o, n, BPF_F_PSEUDO_HDR as u64 | 4)
                        .map_err(fail)?;
                }
            }
            ctx.store(l3 + off, new, 0).map_err(fail)?;
        }
    }
    let dport_be = tcp.dport.to_be_bytes();
    for (off, old, new) in [(0, tcp.sport_be, f.sport_be), (2, dport_be, f.dport_be)] {
        let o = u16::from_ne_bytes(old) as u64;
        let n = u16::from_ne_bytes(new) as u64;
        if o == n {
            continue;
        }
        ctx.l4_csum_replace(csum, o, n, 2).map_err(fail)?;
        ctx.store(tcp.l4 + off, &new, 0).map_err(fail)?;
    }
    Ok(())
}
