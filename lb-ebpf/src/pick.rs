//! Picking a server in the kernel, for the paths that balance without a
//! proxy (`lb_nat` for remote clients, `lb_connect4/6` for local ones): the
//! daemon writes each backend's pick table (weighted slots, or the
//! candidates of leastconn and first) and its servers' state; the programs
//! pick, and count the connection in against `maxconn` in `LB_SRV_CONNS`.
//! Each path has its own tables (`Tables`), the code is one.
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::helpers::bpf_get_prandom_u32;
use aya_ebpf::maps::{Array, PerCpuArray};
use lb_common::{
    stat, NatBackend, NatScratch, NatServer, NAT_ALGO_FIRST, NAT_ALGO_LEAST, NAT_ALGO_RANDOM,
    NAT_ALGO_SOURCE, NAT_PICK_PROBES, NAT_PICK_SLOTS, NAT_SCAN_SERVERS,
};

use crate::maps::LB_SRV_CONNS;

/// Why no server: a `stat::*` index.
pub(crate) type Refusal = u32;

/// One path's pick tables.
pub(crate) trait Tables {
    fn backends() -> &'static Array<NatBackend>;
    fn pick() -> &'static Array<u32>;
    fn servers() -> &'static Array<NatServer>;
    /// Per-CPU scratch of the leastconn/first scan.
    fn scratch() -> &'static PerCpuArray<NatScratch>;
}

#[inline(always)]
fn fetch_add64(p: *mut u64, v: u64) -> u64 {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, v) }
}

/// The backend's server for a new flow, counted in (LB_SRV_CONNS).
#[inline(always)]
pub(crate) fn pick<T: Tables>(backend: u32, src_hash: u32) -> Result<u32, Refusal> {
    let be = T::backends()
        .get_ptr_mut(backend)
        .ok_or(stat::NAT_NO_SERVER)?;
    let algo = unsafe { (*be).algo };
    if algo == NAT_ALGO_LEAST || algo == NAT_ALGO_FIRST {
        return scan::<T>(unsafe { &*be }, algo);
    }
    let slots = unsafe { (*be).slots };
    if slots == 0 || slots > NAT_PICK_SLOTS {
        return Err(stat::NAT_NO_SERVER);
    }
    let start = match algo {
        NAT_ALGO_RANDOM => unsafe { bpf_get_prandom_u32() },
        NAT_ALGO_SOURCE => src_hash,
        _ => fetch_add64(unsafe { core::ptr::addr_of_mut!((*be).rr) }, 1) as u32,
    } % slots;
    let mut full = false;
    for i in 0..NAT_PICK_PROBES {
        let slot = (start + i) % slots;
        let Some(&idx) = T::pick().get(backend * NAT_PICK_SLOTS + slot) else {
            continue;
        };
        match admit::<T>(idx) {
            Ok(()) => return Ok(idx),
            Err(f) => full |= f,
        }
    }
    Err(if full {
        stat::NAT_FULL
    } else {
        stat::NAT_NO_SERVER
    })
}

/// leastconn (fewest flows per unit of weight) and first (the first below its
/// maxconn) over the backend's eligible servers. The running best lives in
/// per-CPU scratch memory: kept in registers, the verifier would follow
/// every combination of comparisons over the 64 iterations.
#[inline(always)]
fn scan<T: Tables>(be: &NatBackend, algo: u32) -> Result<u32, Refusal> {
    let sc = T::scratch().get_ptr_mut(0).ok_or(stat::NAT_FAILED)?;
    unsafe {
        core::ptr::write_volatile(&mut (*sc).best, u32::MAX);
        core::ptr::write_volatile(&mut (*sc).best_key, u64::MAX);
        core::ptr::write_volatile(&mut (*sc).full, 0);
    }
    let n = be.scan_len.min(NAT_SCAN_SERVERS) as usize;
    for i in 0..NAT_SCAN_SERVERS as usize {
        if i >= n {
            break;
        }
        let (Some(&idx), Some(&w)) = (be.scan.get(i), be.weights.get(i)) else {
            break;
        };
        let (Some(srv), Some(c)) = (T::servers().get(idx), LB_SRV_CONNS.get(idx)) else {
            continue;
        };
        if srv.usable == 0 {
            continue;
        }
        if srv.maxconn != 0 && c.count >= srv.maxconn {
            unsafe { core::ptr::write_volatile(&mut (*sc).full, 1) };
            continue;
        }
        let k = ((c.count as u64 + 1) << 24) / (w.max(1) as u64);
        unsafe {
            if k < core::ptr::read_volatile(&(*sc).best_key) {
                core::ptr::write_volatile(&mut (*sc).best_key, k);
                core::ptr::write_volatile(&mut (*sc).best, idx);
            }
        }
        if algo == NAT_ALGO_FIRST {
            break;
        }
    }
    let (best, full) = unsafe {
        (
            core::ptr::read_volatile(&(*sc).best),
            core::ptr::read_volatile(&(*sc).full),
        )
    };
    if best == u32::MAX {
        return Err(if full != 0 {
            stat::NAT_FULL
        } else {
            stat::NAT_NO_SERVER
        });
    }
    admit::<T>(best).map(|_| best).map_err(|_| stat::NAT_FULL)
}

/// Counts a flow in on server `idx` if it may take one; Err(true): at its
/// maxconn, Err(false): not usable.
#[inline(always)]
fn admit<T: Tables>(idx: u32) -> Result<(), bool> {
    let Some(srv) = T::servers().get(idx) else {
        return Err(false);
    };
    if srv.usable == 0 {
        return Err(false);
    }
    let Some(c) = LB_SRV_CONNS.get_ptr_mut(idx) else {
        return Err(false);
    };
    let p = unsafe { core::ptr::addr_of_mut!((*c).count) };
    let old = unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(p, 1) };
    if srv.maxconn != 0 && old >= srv.maxconn {
        unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(p, u32::MAX) };
        return Err(true);
    }
    Ok(())
}

/// Counts a flow of server `idx` out.
#[inline(always)]
pub(crate) fn release(idx: u32) {
    if let Some(c) = LB_SRV_CONNS.get_ptr_mut(idx) {
        let p = unsafe { core::ptr::addr_of_mut!((*c).count) };
        unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(p, u32::MAX) };
    }
}
