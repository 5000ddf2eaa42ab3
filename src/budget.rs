//! The ceiling on connection buffers (`-o read_buf_mem_limit=<MiB>`): one budget, shared by
//! every connection, for the bytes their buffers hold beyond a small base each.
//!
//! Each connection keeps a read buffer and a reply buffer of [`BASE`] bytes, which the
//! budget does not count (that is the fixed overhead per connection). A buffer that must
//! grow past its base (a value arriving whose data block is larger, a long `get` line, a
//! pipeline of replies) asks the budget first, for all of its new size; the bytes go back
//! when the buffer is given back. Only growth touches the shared counter: small requests
//! and their replies never do.
//!
//! Read buffers are refused growth past the limit: the connection gets memcached's
//! `SERVER_ERROR out of memory reading request` and is closed, its buffer freed. Nothing
//! waits for memory another connection holds, so there is no deadlock. Reply buffers cannot
//! be refused halfway through a reply; they are charged as they grew, and while the budget
//! is spent a connection writes its replies out before it builds more (it waits on its own
//! client only). So the buffers hold at most the limit, plus one reply step per connection
//! that is over it at that moment.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

/// Bytes of each of a connection's two buffers (reads, replies) not counted in the budget.
pub const BASE: usize = 16 * 1024;

/// The default budget, when `-o read_buf_mem_limit` is not given: 64 MiB, or room for two
/// of the largest items (`-I`) if that is more. See [`Budget::default_limit`].
pub const DEFAULT_LIMIT: usize = 64 << 20;

/// The shared budget, and memcached's counters for it.
#[derive(Debug)]
pub struct Budget {
    /// Bytes; `usize::MAX` when there is none (`read_buf_mem_limit=0`, memcached's default).
    limit: usize,
    used: AtomicUsize,
    /// Buffers grown past their base now (`read_buf_count`).
    grown: AtomicUsize,
    /// Growths refused (`read_buf_oom`).
    refused: AtomicUsize,
}

/// What one buffer holds of the budget: its size once it is past [`BASE`], 0 while it is
/// not. Give it back with [`Budget::release`] when the buffer goes.
#[derive(Debug, Default)]
pub struct Held(usize);

impl Held {
    pub fn bytes(&self) -> usize {
        self.0
    }

    /// The buffer's size: what it holds, or [`BASE`].
    pub fn size(&self) -> usize {
        self.0.max(BASE)
    }
}

/// What a buffer of `size` bytes holds of the budget: all of it past [`BASE`], else none.
pub fn charge(size: usize) -> usize {
    if size > BASE { size } else { 0 }
}

impl Budget {
    /// A budget of `limit` bytes (0: none).
    pub fn new(limit: usize) -> Self {
        let limit = if limit == 0 { usize::MAX } else { limit };
        Self { limit, used: AtomicUsize::new(0), grown: AtomicUsize::new(0), refused: AtomicUsize::new(0) }
    }

    /// The budget when none is given: [`DEFAULT_LIMIT`] (as much as the default `-m`, so
    /// that with the defaults the process stays under about twice `-m` plus its fixed
    /// overhead whatever clients do), but never less than two of the largest items, so
    /// that `-I` values can still be sent while another is arriving.
    pub fn default_limit(max_item_size: usize) -> usize {
        DEFAULT_LIMIT.max(max_item_size.saturating_mul(2))
    }

    /// The limit in bytes (0: none), as `stats settings` shows it.
    pub fn limit(&self) -> usize {
        if self.limit == usize::MAX { 0 } else { self.limit }
    }

    /// Bytes held by buffers past their base, now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Buffers past their base, now.
    pub fn grown(&self) -> usize {
        self.grown.load(Relaxed)
    }

    /// Growths refused since the start.
    pub fn refused(&self) -> usize {
        self.refused.load(Relaxed)
    }

    /// Whether the budget is spent: buffers that may wait should.
    pub fn spent(&self) -> bool {
        self.used.load(Relaxed) >= self.limit
    }

    /// Makes `held` `bytes`: shrinking always works; growing works only if the budget has
    /// room for the difference, and otherwise changes nothing, is counted in
    /// `read_buf_oom`, and returns false.
    pub fn resize(&self, held: &mut Held, bytes: usize) -> bool {
        if bytes <= held.0 {
            self.shrink(held, bytes);
            return true;
        }
        let more = bytes - held.0;
        let grew = self
            .used
            .fetch_update(Relaxed, Relaxed, |used| used.checked_add(more).filter(|&after| after <= self.limit));
        if grew.is_err() {
            self.refused.fetch_add(1, Relaxed);
            return false;
        }
        self.note_growth(held, bytes);
        true
    }

    /// Makes `held` `bytes` even past the limit: for memory already taken (a reply
    /// buffer that grew while a reply was built).
    pub fn force(&self, held: &mut Held, bytes: usize) {
        if bytes <= held.0 {
            self.shrink(held, bytes);
        } else {
            self.used.fetch_add(bytes - held.0, Relaxed);
            self.note_growth(held, bytes);
        }
    }

    /// Gives back all of `held`.
    pub fn release(&self, held: &mut Held) {
        self.shrink(held, 0);
    }

    fn shrink(&self, held: &mut Held, bytes: usize) {
        if bytes == held.0 {
            return;
        }
        self.used.fetch_sub(held.0 - bytes, Relaxed);
        if bytes == 0 {
            self.grown.fetch_sub(1, Relaxed);
        }
        held.0 = bytes;
    }

    fn note_growth(&self, held: &mut Held, bytes: usize) {
        if held.0 == 0 {
            self.grown.fetch_add(1, Relaxed);
        }
        held.0 = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_refused_and_counted() {
        let b = Budget::new(100);
        let (mut x, mut y) = (Held::default(), Held::default());
        assert!(b.resize(&mut x, 60));
        assert!(!b.resize(&mut y, 41));
        assert_eq!((b.used(), b.refused(), b.grown()), (60, 1, 1));
        assert!(b.resize(&mut y, 40));
        assert!(b.spent());
        assert!(b.resize(&mut x, 10));
        assert!(b.resize(&mut y, 90));
        b.release(&mut x);
        b.release(&mut y);
        assert_eq!((b.used(), b.grown()), (0, 0));
    }

    #[test]
    fn forced_growth_goes_past_the_limit() {
        let b = Budget::new(100);
        let mut x = Held::default();
        b.force(&mut x, 150);
        assert!(b.spent());
        assert!(!b.resize(&mut Held::default(), 1));
        b.release(&mut x);
        assert!(!b.spent());
    }

    #[test]
    fn no_limit() {
        let b = Budget::new(0);
        assert_eq!(b.limit(), 0);
        assert!(b.resize(&mut Held::default(), usize::MAX / 2));
    }
}
