//! The connection's buffers against the buffer budget ([`crate::budget`]): how the read
//! buffer grows and what it is charged, what unwritten replies are charged, and giving
//! both back.

use bytes::BytesMut;

use super::{Connection, IDLE_READ_ROOM, KEEP_CAPACITY, MAX_READ, MIN_READ_ROOM, READ_CHUNK};
use crate::budget;

/// The process's `M_MMAP_THRESHOLD` (set in `main`): allocations this large are mapped,
/// their pages resident only once written, and given back to the system when freed, where
/// the heap's freed memory stays resident. A read buffer for a data block this large is
/// one such mapping, of the block's size, charged to the buffer budget as it fills.
const MAPPED: usize = 128 << 10;

/// What a read buffer of `cap` bytes holds resident once `len` bytes are written to it:
/// all of it from the heap, the pages written of a mapping.
fn resident(cap: usize, len: usize) -> usize {
    if cap >= MAPPED { cap.min(len.next_multiple_of(4096)) } else { cap }
}

impl Connection {
    /// Makes room in the read buffer for the next read; false if that needs more of the
    /// buffer budget than is left.
    ///
    /// Requests split off the front shrink the room behind them. Between requests it is
    /// made again (by taking the whole buffer back, once they are dropped) only when little
    /// is left, not after every request; a line still arriving gets the rest of the base
    /// buffer or a full chunk to read into, and a data block what it still lacks, up to
    /// [`MAX_READ`]. The buffer is grown here only, by a new allocation: doubling, but
    /// never past the end of the data block it waits for, and for a block of [`MAPPED`] or
    /// more its whole size at once (never copied again). Past [`budget::BASE`] the budget
    /// is asked first for what the buffer may hold after the read: all of a heap buffer,
    /// and of a mapping, whose pages become resident only as they are written, the data
    /// plus one read (brought down to the data after the read: a header alone costs
    /// nothing). While the data is copied to a new buffer, it is asked for both.
    pub(super) fn make_room(&mut self) -> bool {
        let len = self.rbuf.len();
        if len == 0 && self.rbuf.capacity() >= IDLE_READ_ROOM {
            return true;
        }
        let left = self.block_left();
        let room = match left {
            Some(left) => left.clamp(1, MAX_READ),
            // A line begun: the rest of the buffer, or of a base buffer, while that leaves
            // a fair read.
            None if len + MIN_READ_ROOM <= self.in_cap => self.in_cap - len,
            None if len + MIN_READ_ROOM <= budget::BASE => budget::BASE - len,
            None => READ_CHUNK,
        };
        if self.rbuf.capacity() - len < room && !self.rbuf.try_reclaim(room) {
            let want = len + room;
            let cap = if want <= self.in_cap {
                self.in_cap
            } else {
                let doubled = (self.in_cap * 2).max(want);
                match left.map(|left| len + left) {
                    Some(end) if end >= MAPPED => end.max(want),
                    Some(end) => doubled.min(end).max(want),
                    None => doubled,
                }
            };
            let kept = budget::charge(resident(cap, len + MAX_READ));
            let old = self.held_in.size();
            if !self.ctx.budget.resize(&mut self.held_in, kept + old) {
                return false;
            }
            let mut grown = BytesMut::with_capacity(cap);
            grown.extend_from_slice(&self.rbuf);
            (self.rbuf, self.in_cap) = (grown, cap);
            self.ctx.budget.resize(&mut self.held_in, kept);
            return true;
        }
        // A mapping's charge follows its data.
        let kept = budget::charge(resident(self.in_cap, len + MAX_READ));
        kept <= self.held_in.bytes() || self.ctx.budget.resize(&mut self.held_in, kept)
    }

    /// What the decoder still lacks of a block it must hold whole (see the decoders'
    /// `block_left`).
    fn block_left(&self) -> Option<usize> {
        match &self.binary {
            Some(bin) => bin.decoder.block_left(&self.rbuf),
            None => self.decoder.block_left(&self.rbuf),
        }
    }

    /// After a read into a mapping: its charge down to what the data made resident.
    pub(super) fn settle_input(&mut self) {
        if self.in_cap >= MAPPED {
            let kept = budget::charge(resident(self.in_cap, self.rbuf.len()));
            if kept < self.held_in.bytes() {
                self.ctx.budget.resize(&mut self.held_in, kept);
            }
        }
    }

    /// Replies the client is not taking stay in memory until it does: once they are past
    /// [`budget::BASE`] (their buffer, and the values spliced in, which may have left the
    /// cache since), they are charged to the buffer budget until they are written. It is
    /// memory already taken, so the charge may go past the limit; while it is, connections
    /// build no more than [`budget::BASE`] of replies before writing them. Returns false.
    pub(super) fn hold_output(&mut self) -> bool {
        let held = budget::charge(self.out.buf.capacity() + self.out.len() - self.out.buf.len());
        if held != self.held_out.bytes() {
            self.ctx.budget.force(&mut self.held_out, held);
        }
        false
    }

    /// Gives back a read buffer that grew for a large request, keeping what it still holds
    /// (and its share of the buffer budget); not one a data block still arriving needs.
    pub(super) fn shrink_input(&mut self) {
        let keep = if self.ctx.budget.spent() { READ_CHUNK } else { KEEP_CAPACITY };
        let len = self.rbuf.len();
        let needed = self.block_left().is_some_and(|left| len + left > READ_CHUNK);
        if self.in_cap > keep && len <= READ_CHUNK && !needed {
            let mut small = BytesMut::with_capacity(READ_CHUNK);
            small.extend_from_slice(&self.rbuf);
            (self.rbuf, self.in_cap) = (small, READ_CHUNK);
            self.ctx.budget.release(&mut self.held_in);
        }
    }
}
