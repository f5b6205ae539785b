//! A worker's activity slots, shared with the store's thread: an operation that leases
//! attempts to its caller (an eager commit, a poll) takes a slot for each as it runs, from
//! the caller's pool, so a slot is spoken for only from the moment an attempt is leased into
//! it, and two operations of one group can never lease into the same free slot.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct SlotPool {
    free: AtomicUsize,
    /// Set when a take got fewer slots than it wanted: work the caller could have run may
    /// be waiting in the store (an attempt queued, a poll cut short).
    short: AtomicBool,
    /// How many takes came up short, ever (a caller compares two readings).
    short_takes: AtomicU64,
}

impl SlotPool {
    pub fn new(free: usize) -> Self {
        SlotPool {
            free: AtomicUsize::new(free),
            short: AtomicBool::new(false),
            short_takes: AtomicU64::new(0),
        }
    }

    pub fn short_takes(&self) -> u64 {
        self.short_takes.load(Ordering::Acquire)
    }

    /// Whether a take came up short since the last call (and clears it).
    pub fn was_short(&self) -> bool {
        self.short.swap(false, Ordering::AcqRel)
    }

    pub fn free(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }

    /// Takes up to `wanted` free slots; returns how many.
    pub fn take(&self, wanted: usize) -> usize {
        let mut free = self.free.load(Ordering::Acquire);
        loop {
            let taken = free.min(wanted);
            if taken < wanted {
                self.short.store(true, Ordering::Release);
                self.short_takes.fetch_add(1, Ordering::AcqRel);
            }
            if taken == 0 {
                return 0;
            }
            match self.free.compare_exchange_weak(
                free,
                free - taken,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return taken,
                Err(now) => free = now,
            }
        }
    }

    pub fn give(&self, slots: usize) {
        if slots > 0 {
            self.free.fetch_add(slots, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SlotPool;

    #[test]
    fn takes_what_is_free_and_gets_it_back() {
        let pool = SlotPool::new(3);
        assert_eq!(pool.take(2), 2);
        assert!(!pool.was_short());
        assert_eq!(pool.take(5), 1);
        assert!(pool.was_short());
        assert!(!pool.was_short());
        assert_eq!(pool.take(1), 0);
        pool.give(2);
        assert_eq!(pool.free(), 2);
    }
}
