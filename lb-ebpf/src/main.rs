//! lb's kernel side: connection steering (sk_lookup), in-kernel splicing with a
//! per-direction in-flight budget (sk_skb stream verdict) and the XDP front door
//! (counters, L4 deny/allow lists, SYN rate limit), and per-server connection
//! counts kept right when a connection closes (sock_ops). See
//! docs/ARCHITECTURE.md.
#![no_std]
#![no_main]
// The bpfel core has no 64-bit atomic RMW methods; the intrinsic lowers to BPF's
// atomic_fetch_add (cpu v3).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod connect;
mod maps;
mod nat;
mod parse;
mod pick;
mod xdp;

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{
        sk_action::{SK_DROP, SK_PASS},
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_TCP_CLOSE, BPF_TCP_CLOSING, BPF_TCP_FIN_WAIT2, BPF_TCP_LAST_ACK, BPF_TCP_TIME_WAIT,
    },
    cty::c_void,
    helpers::{
        bpf_get_socket_cookie, bpf_ktime_get_coarse_ns, bpf_map_lookup_elem, bpf_probe_read_kernel,
        bpf_sk_release, bpf_skc_to_tcp_sock,
    },
    macros::{sk_lookup, sock_ops, stream_verdict},
    maps::SockHash,
    programs::{SkBuffContext, SkLookupContext, SockOpsContext},
};
use lb_common::{
    fits_budget, old_head, psock_backlog, seq_after, stat, BindKey, Event, FlowDir, AF_INET,
    EVENT_BROKEN, EVENT_PASS, PASS_BIT, USER_BIT,
};
use maps::*;

const IPPROTO_TCP: u32 = 6;

/// Byte offset of `write_seq` in the running kernel's `struct tcp_sock`, set by the
/// loader from /sys/kernel/btf/vmlinux. A read-only global: the verifier sees its
/// value as a constant, so the field access below is checked against BTF.
#[unsafe(no_mangle)]
static TCP_SOCK_WRITE_SEQ: u32 = 0;
/// Offset of `copied_seq` in `struct tcp_sock` (the verdict's starting point).
#[unsafe(no_mangle)]
static TCP_SOCK_COPIED_SEQ: u32 = 0;
/// Offset of `TCP_SKB_CB(skb)->seq`: `cb` in `struct sk_buff` plus `seq` in
/// `struct tcp_skb_cb`. The verdict's context is the `sk_buff` itself.
#[unsafe(no_mangle)]
static SKB_TCP_SEQ: u32 = 0;

/// `bpf_skb_adjust_room` on an sk_skb pulls at most 4095 bytes a call. A
/// retransmission overlaps by less than a segment (64 KiB), but the head
/// userspace already read of a pair moved from the copy to the kernel path
/// can be larger: receive-queue skbs grow by coalescing up to MAX_SKB_FRAGS
/// frags of up to 32 KiB. 160 calls cover 640 KiB.
const TRIM_STEP: u32 = 4095;
const TRIM_STEPS: u32 = 160;

/// Atomic fetch-and-add on map memory shared with userspace; returns the old value.
#[inline(always)]
fn fetch_add(p: *mut u64, v: u64) -> u64 {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) }
}

#[inline(always)]
pub(crate) fn count(idx: u32) {
    count_n(idx, 1);
}

#[inline(always)]
pub(crate) fn count_n(idx: u32, n: u64) {
    if let Some(p) = LB_STATS.get_ptr_mut(idx) {
        // Per-CPU slot: no other writer.
        unsafe { *p += n };
    }
}

// ---------------------------------------------------------------- sock_ops

#[sock_ops]
pub fn lb_conns(ctx: SockOpsContext) -> u32 {
    try_conns(&ctx);
    1
}

fn try_conns(ctx: &SockOpsContext) {
    match ctx.op() {
        // Every connect from the daemon's cgroup asks for state callbacks;
        // only sockets userspace registered in LB_CONN_SRV are counted.
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
        }
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => {
            let cookie = unsafe { bpf_get_socket_cookie(ctx.ops as *mut c_void) };
            let Some(&idx) = (unsafe { LB_CONN_SRV.get(&cookie) }) else {
                connect_closed(ctx, cookie);
                return;
            };
            // Whoever removes the entry counts the connection out: exactly
            // once, whether userspace or this callback gets there first.
            if LB_CONN_SRV.remove(&cookie).is_ok() {
                if let Some(p) = LB_SRV_CONNS.get_ptr_mut(idx) {
                    let p = unsafe { core::ptr::addr_of_mut!((*p).count) };
                    unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(p, u32::MAX) };
                }
                count(stat::KERNEL_CONN_END);
            }
        }
        _ => {}
    }
}

/// A socket `lb_connect4/6` sent to a server closed: counted out of it
/// (once: whoever removes the entry), its bytes added to the server's.
fn connect_closed(ctx: &SockOpsContext, cookie: u64) {
    let Some(p) = (unsafe { LB_CONN_PEERS.get(&cookie) }) else {
        return;
    };
    let idx = p.server;
    if LB_CONN_PEERS.remove(&cookie).is_err() {
        return;
    }
    pick::release(idx);
    if let Some(ks) = LB_SRV_KSTATS.get_ptr_mut(idx) {
        let ops = ctx.ops;
        // The counters move with the sequence numbers, which the SYN and
        // the FINs take one of each: payload only is counted. A socket that
        // closes from these states sent and received its FIN.
        let fins = matches!(
            ctx.arg(0),
            BPF_TCP_LAST_ACK | BPF_TCP_FIN_WAIT2 | BPF_TCP_CLOSING | BPF_TCP_TIME_WAIT
        ) as u64;
        let (acked, received) = unsafe { ((*ops).bytes_acked, (*ops).bytes_received) };
        // Per-CPU slot: no other writer. Sent = what the server acknowledged.
        unsafe {
            (*ks).bytes_in += acked.saturating_sub(1 + fins);
            (*ks).bytes_out += received.saturating_sub(fins);
        }
    }
    count(stat::CONNECT_CLOSED);
}

// ---------------------------------------------------------------- sk_lookup

#[sk_lookup]
pub fn lb_dispatch(ctx: SkLookupContext) -> u32 {
    try_dispatch(&ctx)
}

fn try_dispatch(ctx: &SkLookupContext) -> u32 {
    // Every ctx field is read unconditionally: LLVM otherwise merges the per-family
    // reads into one access at a computed offset, which the verifier refuses.
    let l = ctx.lookup;
    let (protocol, family, port, ip4, ip6, ifindex) = unsafe {
        (
            core::ptr::read_volatile(&(*l).protocol),
            core::ptr::read_volatile(&(*l).family),
            core::ptr::read_volatile(&(*l).local_port),
            core::ptr::read_volatile(&(*l).local_ip4),
            [
                core::ptr::read_volatile(&(*l).local_ip6[0]),
                core::ptr::read_volatile(&(*l).local_ip6[1]),
                core::ptr::read_volatile(&(*l).local_ip6[2]),
                core::ptr::read_volatile(&(*l).local_ip6[3]),
            ],
            core::ptr::read_volatile(&(*l).ingress_ifindex),
        )
    };
    if protocol != IPPROTO_TCP {
        return SK_PASS;
    }
    let mut key = BindKey {
        family,
        port_host: port,
        addr_be: [0; 16],
    };
    if family == AF_INET {
        key.addr_be[..4].copy_from_slice(&ip4.to_ne_bytes());
    } else {
        for (i, w) in ip6.iter().enumerate() {
            key.addr_be[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    let Some(idx) = bind_lookup(&mut key, ifindex) else {
        count(stat::LOOKUP_MISS);
        return SK_PASS;
    };
    match LB_LISTENERS.redirect_sk_lookup(ctx, idx, 0) {
        Ok(()) => count(stat::LOOKUP_HIT),
        Err(_) => count(stat::LOOKUP_NO_LISTENER),
    }
    SK_PASS
}

/// The listener index for a destination: the specific address first, then the
/// wildcard of the same family and port; a bind restricted to an interface only
/// takes packets that arrived there. Clobbers `key.addr_be`.
#[inline(always)]
pub(crate) fn bind_lookup(key: &mut BindKey, ifindex: u32) -> Option<u32> {
    if let Some(t) = unsafe { LB_BINDS.get(&*key) } {
        if t.admits(ifindex) {
            return Some(t.listener);
        }
    }
    key.addr_be = [0; 16];
    match unsafe { LB_BINDS.get(&*key) } {
        Some(t) if t.admits(ifindex) => Some(t.listener),
        _ => None,
    }
}

// ---------------------------------------------------------------- stream verdict

#[stream_verdict]
pub fn lb_verdict(ctx: SkBuffContext) -> u32 {
    try_verdict(&ctx)
}

fn try_verdict(ctx: &SkBuffContext) -> u32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb as *mut _) };
    let Some(end) = (unsafe { LB_ENDS.get(&cookie) }) else {
        count(stat::VERDICT_UNKNOWN);
        return SK_PASS;
    };
    let (peer_cookie, slot, server) = (end.peer_cookie, end.slot, end.server);
    let Some(flow) = LB_FLOWS.get_ptr_mut(slot) else {
        count(stat::VERDICT_UNKNOWN);
        return SK_PASS;
    };
    let flow = unsafe { &mut *flow };
    if flow.owner_cookie != cookie {
        count(stat::VERDICT_STALE);
        return SK_DROP;
    }
    // For idle timeouts, swept every 100 ms: the jiffy clock is enough and
    // cheaper than a clock read per skb (same CLOCK_MONOTONIC base).
    flow.last_active_ns = unsafe { bpf_ktime_get_coarse_ns() };
    if ctx.len() == 0 {
        // A FIN: redirecting it would break the target. Userspace sees EPOLLRDHUP
        // and shuts the peer down once every byte went through.
        count(stat::VERDICT_FIN);
        return SK_DROP;
    }
    if flow.broken != 0 {
        return SK_DROP;
    }
    let len = match cut_old_head(ctx, flow, cookie) {
        Ok(0) => {
            count(stat::OVERLAP_OLD);
            return SK_DROP;
        }
        Ok(len) => len as u64,
        Err(()) => {
            count(stat::OVERLAP_FAILED);
            return broken(flow, slot, cookie);
        }
    };
    let word: *mut u64 = &mut flow.pass_word;
    if unsafe { core::ptr::read_volatile(word) } & (PASS_BIT | USER_BIT) != 0 {
        let prev = fetch_add(word, len);
        if prev & (PASS_BIT | USER_BIT) != 0 {
            count(stat::VERDICT_PASS);
            return SK_PASS;
        }
        // Userspace went back to redirect between the load and the add: every
        // passed byte was forwarded, so this one may go in the kernel. Undo the count.
        fetch_add(word, len.wrapping_neg());
    }
    if flow.seq_set == 0 || !fits_budget(flow.bound, len, flow.budget) {
        // First run, or the cheap bound is exhausted: measure the real backlog.
        flow.bound = match peer_write_seq(peer_cookie) {
            Some(seq) => {
                if flow.seq_set == 0 {
                    // First run: nothing redirected or forwarded yet since
                    // set-up, so this is the zero point.
                    flow.seq_base = seq;
                    flow.seq_set = 1;
                }
                psock_backlog(
                    flow.redirected,
                    flow.forwarded,
                    seq.wrapping_sub(flow.seq_base),
                )
            }
            None => {
                // The peer left the map (closing): the redirect fails below anyway.
                count(stat::PEER_UNKNOWN);
                0
            }
        };
        if !fits_budget(flow.bound, len, flow.budget) {
            // Sticky PASS: the bytes stay in the source socket, charged to it, so
            // its window closes; userspace forwards them in order once the peer
            // drains.
            fetch_add(word, PASS_BIT + len);
            let ev = Event {
                kind: EVENT_PASS,
                slot,
                cookie,
            };
            if LB_EVENTS.output::<Event>(&ev, 0).is_err() {
                count(stat::EVENT_LOST);
            }
            count(stat::BUDGET_HIT);
            count(stat::VERDICT_PASS);
            return SK_PASS;
        }
    }
    let mut key = peer_cookie;
    if LB_TARGETS.redirect_skb(ctx, &mut key, 0) as u32 != SK_PASS {
        // The peer left the map: these bytes cannot go anywhere, the pair
        // must end with a reset.
        count(stat::REDIRECT_FAILED);
        return broken(flow, slot, cookie);
    }
    flow.bound += len;
    fetch_add(&mut flow.redirected, len);
    if let Some(ks) = LB_SRV_KSTATS.get_ptr_mut(server) {
        // Even slots carry client->server bytes.
        let ks = unsafe { &mut *ks };
        if slot & 1 == 0 {
            ks.bytes_in += len;
        } else {
            ks.bytes_out += len;
        }
    }
    count(stat::VERDICT_REDIRECT);
    SK_PASS
}

/// This direction lost bytes: drop everything that follows and tell userspace,
/// which resets the pair once what went before is delivered.
#[inline(always)]
fn broken(flow: &mut FlowDir, slot: u32, cookie: u64) -> u32 {
    flow.broken = 1;
    let ev = Event {
        kind: EVENT_BROKEN,
        slot,
        cookie,
    };
    if LB_EVENTS.output::<Event>(&ev, 0).is_err() {
        count(stat::EVENT_LOST);
    }
    SK_DROP
}

/// Cuts the bytes at the head of the skb that this direction already handled
/// and returns how many are left. TCP queues a retransmission that overlaps
/// received bytes whole (`tcp_data_queue`, `tcp_ofo_queue`), and
/// `tcp_read_skb` gives the verdict whole skbs, where `recvmsg` would skip by
/// `copied_seq`. Cutting before the verdict acts keeps `copied_seq`, which
/// `tcp_eat_skb` moves by the skb's length, right too.
#[inline(always)]
fn cut_old_head(ctx: &SkBuffContext, flow: &mut FlowDir, cookie: u64) -> Result<u32, ()> {
    let len = ctx.len();
    let off = unsafe { core::ptr::read_volatile(&SKB_TCP_SEQ) } as usize;
    // The context pointer is the kernel's `struct sk_buff`.
    let seq: u32 =
        unsafe { bpf_probe_read_kernel((ctx.skb.skb as *const u8).add(off) as *const u32) }
            .map_err(|_| ())?;
    if flow.next_set == 0 {
        // First run: bytes before copied_seq were read by userspace (or
        // went through before a restart of the verdict): they are handled.
        let copied = sock_u32(cookie, unsafe {
            core::ptr::read_volatile(&TCP_SOCK_COPIED_SEQ)
        })
        .ok_or(())?;
        flow.next_seq = copied;
        flow.next_set = 1;
    }
    let cut = old_head(flow.next_seq, seq, len);
    flow.next_seq = seq_after(flow.next_seq, seq, len);
    if cut == 0 {
        return Ok(len);
    }
    let mut left = cut;
    for _ in 0..TRIM_STEPS {
        if left == 0 {
            break;
        }
        let n = if left > TRIM_STEP { TRIM_STEP } else { left };
        ctx.adjust_room(-(n as i32), 0, 0).map_err(|_| ())?;
        left -= n;
    }
    if left != 0 {
        return Err(());
    }
    count(stat::OVERLAP_TRIMMED);
    count_n(stat::OVERLAP_BYTES, cut as u64);
    Ok(len - cut)
}

/// A `u32` at byte `off` of the `tcp_sock` of the socket `cookie` in LB_TARGETS.
#[inline(always)]
fn sock_u32(cookie: u64, off: u32) -> Option<u32> {
    let key = cookie;
    let sk = unsafe {
        bpf_map_lookup_elem(
            &LB_TARGETS as *const SockHash<u64> as *mut c_void,
            &key as *const u64 as *const c_void,
        )
    };
    if sk.is_null() {
        return None;
    }
    let tp = unsafe { bpf_skc_to_tcp_sock(sk) };
    let v = if tp.is_null() {
        None
    } else {
        Some(unsafe { core::ptr::read_volatile((tp as *const u8).add(off as usize) as *const u32) })
    };
    unsafe { bpf_sk_release(sk) };
    v
}

/// The peer socket's `write_seq`: how far its send queue was filled, by the psock
/// worker moving redirected bytes and by userspace forwarding.
#[inline(always)]
fn peer_write_seq(cookie: u64) -> Option<u32> {
    sock_u32(cookie, unsafe {
        core::ptr::read_volatile(&TCP_SOCK_WRITE_SEQ)
    })
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
