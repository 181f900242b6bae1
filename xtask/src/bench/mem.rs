//! Memory figures: the balancer's RSS and the kernel's memory, from /proc.

use anyhow::{anyhow, Context, Result};
use lb_tests::mem::{kernel_kib, rss_kib, tcp_mem_kib};
use serde::Serialize;

/// One reading, KiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MemSample {
    /// VmRSS of the balancer (None: no balancer).
    pub balancer_rss: Option<u64>,
    /// Slab (/proc/meminfo): socket structures, psocks, epoll items...
    pub slab: u64,
    /// TCP memory charged to sockets (/proc/net/sockstat, all namespaces).
    pub tcp_mem: u64,
    /// MemTotal - MemFree - Buffers - Cached - SwapCached - AnonPages:
    /// kernel allocations of any kind (slab, skb pages, page tables...).
    pub kernel: u64,
}

impl MemSample {
    pub fn take(balancer: Option<u32>) -> Result<MemSample> {
        Ok(MemSample {
            balancer_rss: balancer.map(rss_kib).transpose()?,
            slab: slab_kib()?,
            tcp_mem: tcp_mem_kib()?,
            kernel: kernel_kib()?,
        })
    }

    /// Per-field maximum.
    pub fn max(&self, o: &MemSample) -> MemSample {
        MemSample {
            balancer_rss: match (self.balancer_rss, o.balancer_rss) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            slab: self.slab.max(o.slab),
            tcp_mem: self.tcp_mem.max(o.tcp_mem),
            kernel: self.kernel.max(o.kernel),
        }
    }
}

/// Growth of `after` over `before`, KiB (negative when memory was freed).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemGrowth {
    pub balancer_rss: Option<i64>,
    pub slab: i64,
    pub tcp_mem: i64,
    pub kernel: i64,
}

pub fn growth(before: &MemSample, after: &MemSample) -> MemGrowth {
    let d = |a: u64, b: u64| a as i64 - b as i64;
    MemGrowth {
        balancer_rss: match (after.balancer_rss, before.balancer_rss) {
            (Some(a), Some(b)) => Some(d(a, b)),
            _ => None,
        },
        slab: d(after.slab, before.slab),
        tcp_mem: d(after.tcp_mem, before.tcp_mem),
        kernel: d(after.kernel, before.kernel),
    }
}

fn slab_kib() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    parse_slab(&text)
}

fn parse_slab(meminfo: &str) -> Result<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no Slab: line in /proc/meminfo"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slab_line() {
        let m = "MemTotal: 100 kB\nSlab:             123456 kB\nSReclaimable: 1 kB\n";
        assert_eq!(super::parse_slab(m).unwrap(), 123456);
        assert!(super::parse_slab("MemTotal: 1 kB\n").is_err());
    }
}
