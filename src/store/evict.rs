//! Keeping the store under its memory limit: a CLOCK (second-chance FIFO) over the keys in
//! insertion order, spread over a few queues so inserting threads do not contend. A read
//! only sets the entry's `referenced` flag (a relaxed store under the map's read lock);
//! eviction gives referenced items one more lap and removes the others, oldest first.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;

/// Queues of keys; more than worker threads is pointless, fewer contends.
const QUEUES: usize = 16;

/// One insertion: the key and the entry's birth number, so a record outliving its entry
/// (deleted, then the key stored anew with a record of its own) is recognised as stale.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) key: Bytes,
    pub(crate) birth: u32,
}

/// The eviction order. A key appears once per insertion; stale records are dropped when
/// they reach the hand.
#[derive(Debug)]
pub(crate) struct ClockQueue {
    queues: Box<[Mutex<VecDeque<Record>>]>,
    hand: AtomicUsize,
    len: AtomicUsize,
}

thread_local! {
    /// Which queue this thread appends to: threads spread over the queues.
    static HOME: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Relaxed) % QUEUES
    };
}

impl ClockQueue {
    pub(crate) fn new() -> Self {
        Self {
            queues: (0..QUEUES).map(|_| Mutex::new(VecDeque::new())).collect(),
            hand: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// Records a newly inserted key.
    pub(crate) fn push(&self, record: Record) {
        let q = HOME.with(|h| *h);
        lock(&self.queues[q]).push_back(record);
        self.len.fetch_add(1, Relaxed);
    }

    /// Takes the oldest record of the next queue round the clock face.
    pub(crate) fn pop(&self) -> Option<Record> {
        for _ in 0..QUEUES {
            let q = self.hand.fetch_add(1, Relaxed) % QUEUES;
            if let Some(k) = lock(&self.queues[q]).pop_front() {
                self.len.fetch_sub(1, Relaxed);
                return Some(k);
            }
        }
        None
    }

    /// Puts a record back at the tail (a second chance).
    pub(crate) fn requeue(&self, record: Record) {
        self.push(record);
    }

    /// Records held, live or stale.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave a VecDeque half-updated in a way that
    // matters here (records are hints), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
