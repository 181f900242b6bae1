//! Memory probes for the slow-reader test.

use anyhow::{anyhow, Context, Result};

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// VmRSS of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} gone"))?;
    field_kib(&s, "VmRSS:").ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

/// Global TCP memory (`/proc/net/sockstat` "TCP: ... mem N"), KiB.
pub fn tcp_mem_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat")?;
    let line = s
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .ok_or_else(|| anyhow!("no TCP line in sockstat"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            let pages: u64 = it
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("bad sockstat: {line}"))?;
            return Ok(pages * page_size() / 1024);
        }
    }
    Err(anyhow!("no mem field in sockstat: {line}"))
}

/// MemTotal - MemAvailable from /proc/meminfo, KiB (catches kernel memory
/// not charged to sockets, e.g. data parked by sockmap redirects).
pub fn used_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/meminfo")?;
    let total = field_kib(&s, "MemTotal:").ok_or_else(|| anyhow!("no MemTotal"))?;
    let avail = field_kib(&s, "MemAvailable:").ok_or_else(|| anyhow!("no MemAvailable"))?;
    Ok(total.saturating_sub(avail))
}

/// Memory neither free, nor page cache, nor userspace anonymous memory:
/// MemTotal - MemFree - Buffers - Cached - SwapCached - AnonPages, KiB.
/// Kernel allocations (slab, skb page frags, page tables...) show up here
/// but, unlike MemTotal - MemAvailable, concurrent compilers' heaps do not.
pub fn kernel_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/meminfo")?;
    let f = |k: &str| field_kib(&s, k).ok_or_else(|| anyhow!("no {k} in meminfo"));
    let total = f("MemTotal:")?;
    let rest =
        f("MemFree:")? + f("Buffers:")? + f("Cached:")? + f("SwapCached:")? + f("AnonPages:")?;
    Ok(total.saturating_sub(rest))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// One sample of the three figures, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemSample {
    pub lb_rss: u64,
    pub tcp_mem: u64,
    pub used: u64,
    pub kernel: u64,
}

impl MemSample {
    pub fn take(lb_pid: u32) -> Result<MemSample> {
        Ok(MemSample {
            lb_rss: rss_kib(lb_pid)?,
            tcp_mem: tcp_mem_kib()?,
            used: used_kib()?,
            kernel: kernel_kib()?,
        })
    }

    /// Per-field growth over `base` (saturating), KiB.
    pub fn growth(&self, base: &MemSample) -> MemSample {
        MemSample {
            lb_rss: self.lb_rss.saturating_sub(base.lb_rss),
            tcp_mem: self.tcp_mem.saturating_sub(base.tcp_mem),
            used: self.used.saturating_sub(base.used),
            kernel: self.kernel.saturating_sub(base.kernel),
        }
    }

    /// Per-field maximum.
    pub fn max(&self, o: &MemSample) -> MemSample {
        MemSample {
            lb_rss: self.lb_rss.max(o.lb_rss),
            tcp_mem: self.tcp_mem.max(o.tcp_mem),
            used: self.used.max(o.used),
            kernel: self.kernel.max(o.kernel),
        }
    }
}

impl std::fmt::Display for MemSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = |k: u64| k as f64 / 1024.0;
        write!(
            f,
            "lb RSS {:.1} MiB, TCP mem {:.1} MiB, MemTotal-MemAvailable {:.1} MiB, \
             kernel (non-anon non-cache) {:.1} MiB",
            m(self.lb_rss),
            m(self.tcp_mem),
            m(self.used),
            m(self.kernel)
        )
    }
}
