//! A connection limit that the runtime API can change while connections hold
//! slots (`set maxconn frontend|global`).
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots of an unlimited limit: more than a process can hold (the open-files
/// limit caps it near 10,000 connections).
const UNLIMITED: u32 = 1 << 24;

#[derive(Debug)]
pub struct Limit {
    sem: Arc<Semaphore>,
    /// The limit (0: none).
    max: AtomicU32,
}

fn slots(max: u32) -> u32 {
    if max == 0 {
        UNLIMITED
    } else {
        max.min(UNLIMITED)
    }
}

impl Limit {
    pub fn new(max: Option<u32>) -> Self {
        let max = max.unwrap_or(0);
        Self {
            sem: Arc::new(Semaphore::new(slots(max) as usize)),
            max: AtomicU32::new(max),
        }
    }

    /// The limit now (0: none).
    pub fn get(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// Slots in use (approximate while a lowered limit waits for its slots).
    pub fn used(&self) -> u32 {
        slots(self.get()).saturating_sub(self.sem.available_permits() as u32)
    }

    /// Raises at once; a lower limit takes effect as connections end (the
    /// slots above it are taken back as they free, oldest waiter first).
    pub fn set(&self, max: u32) {
        let old = slots(self.max.swap(max, Ordering::Relaxed));
        let new = slots(max);
        if new > old {
            self.sem.add_permits((new - old) as usize);
        } else if old > new {
            let sem = self.sem.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(old - new).await {
                    p.forget();
                }
            });
        }
    }

    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raise_and_lower_while_held() {
        let l = Limit::new(Some(2));
        let a = l.acquire().await.unwrap();
        let _b = l.acquire().await.unwrap();
        assert_eq!(l.used(), 2);
        l.set(3);
        let c = l.acquire().await.unwrap();
        assert_eq!(l.used(), 3);
        // Lowered to 1 with 3 held: nothing new until two have ended.
        l.set(1);
        drop(a);
        drop(c);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(l.sem.available_permits(), 0);
        assert_eq!(l.get(), 1);
        // Unlimited.
        let u = Limit::new(None);
        assert_eq!(u.get(), 0);
        assert_eq!(u.used(), 0);
    }
}

/// `maxconnrate`/`maxsessrate` (global) and `rate-limit sessions` (frontend):
/// at most `per_sec` new connections over any second, counted as HAProxy's
/// frequency counters count (this second's events plus the last second's,
/// weighted by what is left of it); beyond, accepting waits (the kernel's
/// backlog holds the clients meanwhile).
#[derive(Debug)]
pub struct Rate {
    per_sec: u32,
    /// (start of the current second in ns, events in it, events in the one before).
    window: std::sync::Mutex<(u64, u32, u32)>,
}

const SECOND_NS: u64 = 1_000_000_000;

impl Rate {
    pub fn new(per_sec: Option<u32>) -> Option<Self> {
        per_sec.filter(|&n| n > 0).map(|per_sec| Rate {
            per_sec,
            window: std::sync::Mutex::new((crate::sys::monotonic_ns(), 0, 0)),
        })
    }

    /// Takes one event at `now`, or says how long to wait before trying again.
    pub fn try_take(&self, now: u64) -> Result<(), std::time::Duration> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_sub(w.0);
        if elapsed >= 2 * SECOND_NS {
            *w = (now - elapsed % SECOND_NS, 0, 0);
        } else if elapsed >= SECOND_NS {
            *w = (w.0 + SECOND_NS, 0, w.1);
        }
        let into = now.saturating_sub(w.0);
        let prev = (u64::from(w.2) * (SECOND_NS - into)).div_ceil(SECOND_NS);
        if u64::from(w.1) + prev < u64::from(self.per_sec) {
            w.1 += 1;
            return Ok(());
        }
        // Retry once a share of the last second's events has aged out, or
        // at the next second.
        let step = (SECOND_NS / u64::from(self.per_sec)).max(1_000_000);
        Err(std::time::Duration::from_nanos(
            step.min(SECOND_NS - into).max(1_000_000),
        ))
    }

    pub async fn take(&self) {
        while let Err(wait) = self.try_take(crate::sys::monotonic_ns()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::{Rate, SECOND_NS};

    #[test]
    fn rate_counts_over_a_sliding_second() {
        let r = Rate::new(Some(10)).unwrap();
        let t0 = r.window.lock().unwrap().0;
        // 10 at once, then the 11th waits.
        for _ in 0..10 {
            assert!(r.try_take(t0).is_ok());
        }
        assert!(r.try_take(t0 + SECOND_NS / 2).is_err());
        // Just into the next second the last one's 10 still count almost
        // fully; half-way through, half of them do: 5 more fit.
        assert!(r.try_take(t0 + SECOND_NS + 1).is_err());
        let half = t0 + SECOND_NS + SECOND_NS / 2;
        for _ in 0..5 {
            assert!(r.try_take(half).is_ok());
        }
        assert!(r.try_take(half).is_err());
        // Long idle: a full second's worth again.
        let later = t0 + 10 * SECOND_NS;
        for _ in 0..10 {
            assert!(r.try_take(later).is_ok());
        }
        assert!(r.try_take(later).is_err());
        assert!(Rate::new(None).is_none() && Rate::new(Some(0)).is_none());
    }
}
