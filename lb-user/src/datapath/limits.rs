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
