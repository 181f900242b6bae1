//! `lb_xdp`: the front door on the NIC. Parses Ethernet (up to two VLAN tags),
//! IPv4 (options) or IPv6 (a fixed depth of extension headers) and TCP; counts
//! every packet to a configured frontend; drops what `tcp-request connection`
//! rejects and SYNs over the per-source rate; answers SYNs with SYN cookies
//! (XDP_TX) while the listener's SYN queue is full, when configured; passes
//! everything else untouched.
use aya_ebpf::{
    bindings::{
        tcphdr,
        xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
        TC_ACT_SHOT,
    },
    cty::c_void,
    helpers::{
        bpf_ktime_get_ns, bpf_map_lookup_elem, bpf_sk_release, bpf_tcp_gen_syncookie,
        bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
    },
    macros::{classifier, xdp},
    maps::{lpm_trie::Key, SockMap},
    programs::{TcContext, XdpContext},
};
use lb_common::{
    acl_scope_be, stat, syn_take, synack_v4, synack_v6, AclKey4, AclKey6, BindKey, SynBucket,
    SynSource, XdpConfig, ACL_REJECT, AF_INET, SYNACK4_LEN,
};

use crate::maps::*;

/// tcx's "next program" (TC_ACT_UNSPEC): a pass that leaves the packet to
/// the programs after this one (`lb_nat`).
const TCX_NEXT: i32 = -1;
/// Bytes made linear before parsing: Ethernet, two VLAN tags, IPv6 with
/// extension headers, TCP with options.
const FRONT_PULL: u32 = 192;
use crate::parse::{parse, ptr_at, Frame, Stop, Tcp};
use crate::{bind_lookup, count};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    count(stat::XDP_SEEN);
    match parse(&ctx) {
        Ok(tcp) => try_xdp(&ctx, &tcp),
        Err(Stop::Other) => XDP_PASS,
        Err(Stop::Truncated) => counted(stat::XDP_TRUNCATED, XDP_PASS),
        Err(Stop::Malformed) => counted(stat::XDP_MALFORMED, XDP_DROP),
        Err(Stop::Fragment) => counted(stat::XDP_FRAGMENT, XDP_PASS),
        Err(Stop::ExtDepth) => counted(stat::XDP_EXT_DEPTH, XDP_PASS),
    }
}

/// The same front door at tc ingress, where the driver has no native XDP or
/// where native XDP costs more than it saves (a veth: its peer loses GSO).
/// It runs after GRO, so one packet here can be many on the wire (counted as
/// `gso_segs`). SYN cookies are the kernel's own on this hook. "Pass" is
/// TCX_NEXT, so `lb_nat`, attached after it, still sees the packet.
#[classifier]
pub fn lb_front(ctx: TcContext) -> i32 {
    count(stat::XDP_SEEN);
    if ctx.data_end() - ctx.data() < FRONT_PULL as usize {
        let _ = ctx.pull_data(ctx.len().min(FRONT_PULL));
    }
    let skb = ctx.skb.skb;
    let (ifindex, segs) = unsafe { ((*skb).ingress_ifindex, (*skb).gso_segs.max(1)) };
    // Parsed through its own `Frame` type: sharing `lb_nat`'s instance of
    // `parse` changes how LLVM lays out `lb_nat`, whose stack is at the limit.
    match parse(&FrontFrame(&ctx)) {
        Ok(tcp) => match front(&tcp, ifindex, segs as u64, ctx.len() as u64) {
            Door::Drop => TC_ACT_SHOT,
            Door::Pass | Door::Cookie(_) => TCX_NEXT,
        },
        Err(Stop::Other) => TCX_NEXT,
        Err(Stop::Truncated) => counted(stat::XDP_TRUNCATED, TCX_NEXT),
        Err(Stop::Malformed) => counted(stat::XDP_MALFORMED, TC_ACT_SHOT),
        Err(Stop::Fragment) => counted(stat::XDP_FRAGMENT, TCX_NEXT),
        Err(Stop::ExtDepth) => counted(stat::XDP_EXT_DEPTH, TCX_NEXT),
    }
}

struct FrontFrame<'a>(&'a TcContext);

impl Frame for FrontFrame<'_> {
    #[inline(always)]
    fn data(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        self.0.data_end()
    }
}

#[inline(always)]
fn counted<T>(idx: u32, action: T) -> T {
    count(idx);
    action
}

/// What the front door does with a TCP packet, on either hook.
enum Door {
    Pass,
    Drop,
    /// A SYN that may be answered with a cookie: the listener's index.
    Cookie(u32),
}

#[inline(always)]
fn try_xdp(ctx: &XdpContext, tcp: &Tcp) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    match front(tcp, ctx.ingress_ifindex() as u32, 1, len) {
        Door::Pass => XDP_PASS,
        Door::Drop => XDP_DROP,
        Door::Cookie(listener) => match syn_cookie(ctx, tcp, listener) {
            Some(action) => {
                if let Some(st) = LB_XDP_FE_STATS.get_ptr_mut(listener >> 1) {
                    // Per-CPU slot: no other writer.
                    unsafe { (*st).syn_cookies += 1 };
                }
                counted(stat::XDP_SYN_COOKIE, action)
            }
            None => XDP_PASS,
        },
    }
}

/// Counts a packet to a configured frontend (`packets` of them on the wire,
/// `bytes` long) and applies its `tcp-request connection` rules and the SYN
/// rate limit.
#[inline(always)]
fn front(tcp: &Tcp, ifindex: u32, packets: u64, bytes: u64) -> Door {
    // The frontend as `lb_dispatch` will steer the packet.
    let mut key = BindKey {
        family: tcp.family,
        port_host: tcp.dport as u32,
        addr_be: tcp.dst,
    };
    let Some(listener) = bind_lookup(&mut key, ifindex) else {
        return Door::Pass;
    };
    let fe = listener >> 1;
    let Some(st) = LB_XDP_FE_STATS.get_ptr_mut(fe) else {
        return Door::Pass;
    };
    // Per-CPU slot: no other writer.
    let st = unsafe { &mut *st };
    count(stat::XDP_FRONTEND);
    st.packets += packets;
    st.bytes += bytes;
    if tcp.syn {
        st.syns += 1;
    }
    let Some(cfg) = LB_XDP_CFG.get(0) else {
        return Door::Pass;
    };
    if acl_rejects(cfg.acl_gen, fe, tcp) {
        st.acl_drops += 1;
        return counted(stat::XDP_ACL_DROP, Door::Drop);
    }
    if tcp.syn && cfg.syn_interval_ns != 0 && !syn_allowed(cfg, tcp) {
        st.syn_drops += 1;
        return counted(stat::XDP_SYN_DROP, Door::Drop);
    }
    if tcp.syn && cfg.syn_cookies != 0 {
        return Door::Cookie(listener);
    }
    Door::Pass
}

/// Turns the SYN into the listener's SYN cookie SYN-ACK, in place, when the
/// kernel would answer it with a cookie (its SYN queue is full, or
/// `tcp_syncookies` is 2), and returns XDP_TX; None leaves the packet
/// untouched for the kernel.
/// The kernel's own helper makes the cookie, with the kernel's secret, and
/// marks the listener as having sent one, so the client's ACK is accepted by
/// the listener like any cookie ACK. IPv4 options and IPv6 extension headers
/// go to the kernel.
#[inline(always)]
fn syn_cookie(ctx: &XdpContext, tcp: &Tcp, listener: u32) -> Option<u32> {
    let ip_len: usize = if tcp.family == AF_INET { 20 } else { 40 };
    if tcp.l4 != tcp.l3 + ip_len {
        return None;
    }
    let th_len = tcp.th_len & 0x3c;
    if th_len < 20 {
        return None;
    }
    // The helper reads options up to doff * 4 bytes and wants exactly that
    // length: copies in a per-CPU buffer give it a fixed-size region.
    let sc = unsafe { &mut *LB_XDP_SCRATCH.get_ptr_mut(0)? };
    let md = ctx.ctx;
    let loaded = unsafe {
        bpf_xdp_load_bytes(
            md,
            tcp.l3 as u32,
            sc.ip.as_mut_ptr() as *mut c_void,
            ip_len as u32,
        ) == 0
            && bpf_xdp_load_bytes(md, tcp.l4 as u32, sc.th.as_mut_ptr() as *mut c_void, th_len) == 0
    };
    if !loaded {
        return None;
    }
    let key = listener;
    let sk = unsafe {
        bpf_map_lookup_elem(
            &LB_LISTENERS as *const SockMap as *mut c_void,
            &key as *const u32 as *const c_void,
        )
    };
    if sk.is_null() {
        return None;
    }
    let r = unsafe {
        bpf_tcp_gen_syncookie(
            sk,
            sc.ip.as_mut_ptr() as *mut c_void,
            ip_len as u32,
            sc.th.as_mut_ptr() as *mut tcphdr,
            th_len,
        )
    };
    unsafe { bpf_sk_release(sk) };
    // -ENOENT: no flood, the kernel takes the SYN as usual.
    if r < 0 {
        return None;
    }
    let (cookie, mss) = (r as u32, (r >> 32) as u16);
    if tcp.family == AF_INET {
        let out = unsafe { &mut *(sc.out.as_mut_ptr() as *mut [u8; SYNACK4_LEN]) };
        synack_v4(&tcp.syn4(), cookie, mss, out);
        reply(ctx, tcp.l3, out)
    } else {
        let syn = tcp.syn6();
        synack_v6(&syn, cookie, mss, &mut sc.out);
        reply(ctx, tcp.l3, &sc.out)
    }
}

/// Resizes the frame to the link header plus `hdr`, writes `hdr` after the
/// link header and swaps the MAC addresses (VLAN tags stay as they were).
/// None when the frame cannot be resized (untouched); XDP_DROP should the
/// resized frame not hold the headers (it always does).
#[inline(always)]
fn reply<const N: usize>(ctx: &XdpContext, l3: usize, hdr: &[u8; N]) -> Option<u32> {
    let len = ctx.data_end() - ctx.data();
    let delta = (l3 + N) as i32 - len as i32;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    let (Ok(macs), Ok(out)) = (ptr_at::<[u8; 12], _>(ctx, 0), ptr_at::<[u8; N], _>(ctx, l3)) else {
        return Some(XDP_DROP);
    };
    let m = unsafe { *macs };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&m[6..]);
    swapped[6..].copy_from_slice(&m[..6]);
    unsafe {
        *(macs as *mut [u8; 12]) = swapped;
        *(out as *mut [u8; N]) = *hdr;
    }
    Some(XDP_TX)
}

/// The longest prefix in force for this frontend decides; no entry (a frontend
/// without rules) accepts.
#[inline(always)]
fn acl_rejects(gen: u32, fe: u32, tcp: &Tcp) -> bool {
    let scope_be = acl_scope_be(fe, gen);
    let action = if tcp.family == AF_INET {
        let mut addr_be = [0u8; 4];
        addr_be.copy_from_slice(&tcp.src[..4]);
        let key = Key::new(64, AclKey4 { scope_be, addr_be });
        LB_XDP_ACL4.get(&key).copied()
    } else {
        let key = Key::new(
            160,
            AclKey6 {
                scope_be,
                addr_be: tcp.src,
            },
        );
        LB_XDP_ACL6.get(&key).copied()
    };
    action == Some(ACL_REJECT)
}

/// Takes one SYN from the source's bucket. CPUs update a bucket without a lock:
/// under a race a source may get a SYN or two more than its rate, never fewer.
#[inline(always)]
fn syn_allowed(cfg: &XdpConfig, tcp: &Tcp) -> bool {
    let key = SynSource {
        family: tcp.family,
        addr_be: tcp.src,
    };
    let now = unsafe { bpf_ktime_get_ns() };
    match LB_XDP_SYN.get_ptr_mut(&key) {
        Some(b) => {
            let (ok, next) = syn_take(unsafe { *b }, now, cfg.syn_interval_ns, cfg.syn_cap_ns);
            unsafe { *b = next };
            ok
        }
        None => {
            // A new source starts with a full bucket, minus this SYN.
            let full = SynBucket {
                credit_ns: cfg.syn_cap_ns,
                last_ns: now,
            };
            let (ok, next) = syn_take(full, now, cfg.syn_interval_ns, cfg.syn_cap_ns);
            let _ = LB_XDP_SYN.insert(&key, &next, 0);
            ok
        }
    }
}
