//! One cached item in one block: a header, the key and the value back to back, reached
//! through an 8-byte pointer. No separate key, value or entry allocations, and client
//! flags take room only when they are not 0 (as in memcached), so what the memory limit
//! charges is what the item really occupies. Blocks up to 1 KiB come from the slab of the
//! store that builds the item ([`Slab`]: the length rounded up to 8), larger ones (and
//! small ones once the slab has no page left) from malloc; a bit in the header
//! ([`IN_SLOT`]) says which. An item does not point to its slab: a slot block is freed
//! into the slab its page belongs to ([`slab::free`]). The store keeps its items in its
//! table, which it drops before its slab.
//!
//! A malloc'd block (over 1 KiB) has a reference count in the 8 bytes before it, so a
//! large value can be written to a client straight from the block ([`Item::shared_value`])
//! while the store is free to replace or evict the item: the block goes when the last
//! holder lets go. Only malloc'd blocks are shared this way, never a slot, so a reply
//! still writing a value after its store is gone reads no slab memory.
//!
//! With the slab, this is the store's only `unsafe` code: a thin owning pointer, because
//! a table slot of 8 bytes instead of a 16-byte `Box<[u8]>` is worth 8 to 16 bytes per item.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use super::slab::{self, Slab};
use crate::clock::RelTime;

/// Header layout (little-endian): CAS, time, key length, bits, access, then the value
/// length (2 bytes, or 4 when [`LONG_VALUE`]), the exptime (only when not 0:
/// [`HAS_EXPTIME`]) and the client flags (only when not 0: [`HAS_FLAGS`]). An item with no
/// deadline and no flags and a value under 64 KiB has a 17-byte header.
const CAS: usize = 0;
const TIME: usize = 8;
const KEY_LEN: usize = 12;
const BITS: usize = 13;
const ACCESS: usize = 14;
const VALUE_LEN: usize = 15;
/// Bytes of the fixed part of the header.
pub const HEADER: usize = 15;
/// Bytes the exptime and the client flags each add when not 0.
const FIELD_LEN: usize = 4;
/// Layout bit in the bits byte: the header carries client flags.
const HAS_FLAGS: u8 = 0x80;
/// Layout bit in the bits byte: the block is a slab slot (not malloc'd, no reference
/// count before it).
const IN_SLOT: u8 = 0x40;
/// Layout bit in the bits byte: the header carries an exptime.
const HAS_EXPTIME: u8 = 0x02;
/// Layout bit in the bits byte: the value length takes 4 bytes (the value is 64 KiB or
/// more), not 2.
const LONG_VALUE: u8 = 0x01;
/// The bits byte's layout bits, fixed when the item is built; the rest are [`bit`]s.
const LAYOUT: u8 = HAS_FLAGS | IN_SLOT | HAS_EXPTIME | LONG_VALUE;
// `key_at` counts the value length's extra 2 bytes as 2 * (bits & LONG_VALUE).
const _: () = assert!(LONG_VALUE == 1);

/// Bytes of the header of an item with these fields and this value length.
fn header_len(exptime: RelTime, flags: u32, value_len: usize) -> usize {
    HEADER
        + if value_len > usize::from(u16::MAX) { 4 } else { 2 }
        + if exptime == 0 { 0 } else { FIELD_LEN }
        + if flags == 0 { 0 } else { FIELD_LEN }
}

/// memcached bumps an item's access time at most this often (`ITEM_UPDATE_INTERVAL`).
pub const UPDATE_INTERVAL: RelTime = 60;

/// An item's access time after a use at `now`: memcached moves it only when it is older
/// than [`UPDATE_INTERVAL`], so a hot item's header is not rewritten on every read.
pub fn bumped(time: RelTime, now: RelTime) -> RelTime {
    if time < now.saturating_sub(UPDATE_INTERVAL) { now } else { time }
}

/// Item state bits, memcached's `it_flags` where they are observable. Whether the item
/// was fetched, and when it was last used, live in the access byte beside the table (see
/// `Shard::side` and [`access`]), where readers set them without a write lock.
pub mod bit {
    /// Invalidated by `md I` or a stale `ms I` (`ITEM_STALE`; `mg` reports `X`).
    pub const STALE: u8 = 4;
    /// A client has been handed the recache token (`ITEM_TOKEN_SENT`; `mg` reports `Z`).
    pub const TOKEN_SENT: u8 = 8;
    /// Stored under a base64 (`b`) key, so meta replies give the key back in base64.
    pub const KEY_BINARY: u8 = 16;
    /// Admitted past probation when written, its key having been evicted lately (the
    /// shard's ghost list; see `evict.rs`). Not observable.
    pub const ADMITTED: u8 = 32;
}

/// The access byte: whether a client has read the item (`ITEM_FETCHED`; `mg h`, `me
/// fetch=`), whether it was read again since eviction last passed it over, and the
/// store's epoch when it was last used (for eviction order).
pub mod access {
    /// Read by a client since written.
    pub const FETCHED: u8 = 0x80;
    /// Read again after its first read, since eviction last gave it a second chance
    /// (CLOCK's reference bit, for the main part).
    pub const AGAIN: u8 = 0x40;
    /// The epoch bits; epochs wrap at 64.
    pub const EPOCH: u8 = 0x3f;
}

/// A stored item: an owning pointer to its block.
pub struct Item {
    ptr: NonNull<u8>,
}

// SAFETY: an Item owns its block exclusively, as a Box<[u8]> would: `&Item` only reads
// it and `&mut Item` is needed to write, so sharing and sending follow Rust's rules.
unsafe impl Send for Item {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for Item {}

/// What an item is made of, for building one.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub cas: u64,
    pub exptime: RelTime,
    pub time: RelTime,
    pub flags: u32,
    pub bits: u8,
}

/// Bytes before a malloc'd block: its reference count (1 for the store's item, plus one
/// for each reply being written from it).
const PREFIX: usize = std::mem::size_of::<AtomicUsize>();

/// Values at least this long are written to clients from the item's own block instead of
/// being copied into the reply (a copy of a few KiB costs more than sharing the block).
pub const SHARE_MIN: usize = 4096;

// A shareable value's block is never a slot: a SharedValue may outlive its store's lock,
// and the store (see `Item::shared_value`).
const _: () = assert!(SHARE_MIN > slab::MAX_SLOT);

/// The allocation behind a malloc'd block of `len` bytes: the count, then the block.
fn malloc_layout(len: usize) -> Layout {
    Layout::from_size_align(PREFIX + len, PREFIX).expect("item sizes are bounded by -I")
}

/// Blocks up to this size (count included) are kept for reuse, one per thread, when freed.
const SPARE_MAX: usize = 64 << 10;

/// The last malloc'd block a thread freed (allocation and its size), kept for the next
/// allocation of the same size: a set that replaces a value with one as long (a record
/// rewritten, a fixed-size blob) then costs no malloc and no free. glibc's per-thread
/// cache stops at 1,032 bytes; above that a free merges the chunk with its neighbours,
/// a cache miss or two each time. At most [`SPARE_MAX`] per thread is held this way.
struct Spare(std::cell::Cell<Option<(NonNull<u8>, Layout)>>);

impl Drop for Spare {
    fn drop(&mut self) {
        if let Some((raw, layout)) = self.0.take() {
            // SAFETY: a block allocated with this layout, owned here.
            unsafe { dealloc(raw.as_ptr(), layout) }
        }
    }
}

thread_local! {
    static SPARE: Spare = const { Spare(std::cell::Cell::new(None)) };
}

/// Allocates for a malloc'd block, reusing the thread's spare when it is the same size.
fn alloc_block(layout: Layout) -> *mut u8 {
    if layout.size() <= SPARE_MAX {
        let spare = SPARE.try_with(|s| match s.0.take() {
            Some((raw, l)) if l == layout => Some(raw),
            other => {
                s.0.set(other);
                None
            }
        });
        if let Ok(Some(raw)) = spare {
            return raw.as_ptr();
        }
    }
    // SAFETY: the layout is not zero-sized.
    unsafe { alloc(layout) }
}

/// Frees a malloc'd block's allocation, keeping it as the thread's spare (the spare it
/// replaces is freed instead).
///
/// # Safety
/// `raw` must come from [`alloc_block`] with `layout`, and nothing may use it after.
unsafe fn free_block(raw: NonNull<u8>, layout: Layout) {
    let kept = (layout.size() <= SPARE_MAX).then(|| SPARE.try_with(|s| s.0.replace(Some((raw, layout)))).ok());
    let (raw, layout) = match kept.flatten() {
        Some(None) => return,
        Some(Some(old)) => old,
        None => (raw, layout),
    };
    // SAFETY: the caller's block, or the spare it displaced, allocated with this layout.
    unsafe { dealloc(raw.as_ptr(), layout) }
}

/// Drops one reference to the malloc'd block at `block` of `len` bytes, freeing it with
/// the last.
///
/// # Safety
/// `block` must be a malloc'd item block (not a slot) of `len` bytes, and the caller must
/// own one of its references, which it gives up.
unsafe fn release(block: NonNull<u8>, len: usize) {
    // SAFETY: a malloc'd block is preceded by its count, which lives as long as the block.
    let count = unsafe { &*(block.as_ptr().sub(PREFIX) as *const AtomicUsize) };
    if count.fetch_sub(1, Ordering::Release) == 1 {
        // Every other holder's use of the block happens before this free.
        fence(Ordering::Acquire);
        // SAFETY: allocated in `Item::new` with this layout; this was the last reference.
        unsafe { free_block(block.sub(PREFIX), malloc_layout(len)) }
    }
}

/// A large item's value, sharing the item's malloc'd block (one reference to it): what a
/// reply writes from, so the value is neither copied nor allocated for.
pub struct SharedValue {
    block: NonNull<u8>,
    len: usize,
    /// Where the value starts in the block (it runs to the end).
    value_at: usize,
}

// SAFETY: the block's value bytes are never written after the item is built, and the count
// is atomic, so a SharedValue may be sent and shared like an `Arc<[u8]>`.
unsafe impl Send for SharedValue {}
// SAFETY: as above.
unsafe impl Sync for SharedValue {}

impl std::ops::Deref for SharedValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the block lives while this reference does, and its value bytes (from
        // `value_at` to `len`) are initialised and never written again.
        unsafe { std::slice::from_raw_parts(self.block.as_ptr().add(self.value_at), self.len - self.value_at) }
    }
}

impl Drop for SharedValue {
    fn drop(&mut self) {
        // SAFETY: this SharedValue owns one reference to a malloc'd block of `len` bytes.
        unsafe { release(self.block, self.len) }
    }
}

impl Item {
    /// Builds an item whose value is the concatenation of `parts` (one part for a plain
    /// store, two for append and prepend), in one exact-size allocation: a slot of `slab`
    /// if it fits one, else malloc. The item must be dropped before `slab` is (the store's
    /// table, which holds its items, is dropped first); were one left, the slab would be
    /// leaked rather than freed under it.
    pub fn new(slab: &Slab, key: &[u8], parts: &[&[u8]], f: Fields) -> Self {
        assert!(key.len() <= 255, "keys are at most 250 bytes");
        let value_len: usize = parts.iter().map(|p| p.len()).sum();
        let len = header_len(f.exptime, f.flags, value_len) + key.len() + value_len;
        let slot = slab.alloc(len);
        let ptr = slot.unwrap_or_else(|| {
            let layout = malloc_layout(len);
            let raw = alloc_block(layout);
            if raw.is_null() {
                handle_alloc_error(layout);
            }
            // SAFETY: the allocation is PREFIX + len bytes, aligned for the count, which
            // goes first; the block follows it.
            unsafe {
                (raw as *mut AtomicUsize).write(AtomicUsize::new(1));
                NonNull::new_unchecked(raw.add(PREFIX))
            }
        });
        // SAFETY: the block is `len` bytes, freshly allocated, and exclusively ours; every
        // byte is written below before the item is used.
        let b = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        b[CAS..CAS + 8].copy_from_slice(&f.cas.to_le_bytes());
        b[TIME..TIME + 4].copy_from_slice(&f.time.to_le_bytes());
        b[KEY_LEN] = key.len() as u8;
        let long = value_len > usize::from(u16::MAX);
        b[BITS] = (f.bits & !LAYOUT)
            | if f.flags != 0 { HAS_FLAGS } else { 0 }
            | if slot.is_some() { IN_SLOT } else { 0 }
            | if f.exptime != 0 { HAS_EXPTIME } else { 0 }
            | if long { LONG_VALUE } else { 0 };
        b[ACCESS] = 0;
        let mut at = VALUE_LEN;
        if long {
            b[at..at + 4].copy_from_slice(&(value_len as u32).to_le_bytes());
            at += 4;
        } else {
            b[at..at + 2].copy_from_slice(&(value_len as u16).to_le_bytes());
            at += 2;
        }
        for (field, present) in [(f.exptime, f.exptime != 0), (f.flags, f.flags != 0)] {
            if present {
                b[at..at + FIELD_LEN].copy_from_slice(&field.to_le_bytes());
                at += FIELD_LEN;
            }
        }
        b[at..at + key.len()].copy_from_slice(key);
        at += key.len();
        for p in parts {
            b[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Self { ptr }
    }

    fn header(&self) -> &[u8; HEADER] {
        // SAFETY: every block starts with a HEADER-byte header, written in `new`.
        unsafe { &*(self.ptr.as_ptr() as *const [u8; HEADER]) }
    }

    /// The value's length, read from the header.
    fn value_len(&self) -> usize {
        if self.header()[BITS] & LONG_VALUE != 0 {
            self.u32_at(VALUE_LEN) as usize
        } else {
            usize::from(u16::from_le_bytes(self.head(VALUE_LEN + 2)[VALUE_LEN..].try_into().expect("2 bytes")))
        }
    }

    /// The block's first `n` bytes, `n` no more than where the key starts.
    fn head(&self, n: usize) -> &[u8] {
        // SAFETY: the header's fields (fixed part, value length, exptime and flags as the
        // layout bits say) are initialised in `new` and come before the key, inside the
        // block; callers ask only for bytes of fields the layout bits say are there.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), n) }
    }

    /// Where the exptime (if any) is: past the value length (2 or 4 bytes).
    fn exptime_at(&self) -> usize {
        VALUE_LEN + 2 + 2 * usize::from(self.header()[BITS] & LONG_VALUE)
    }

    /// Where the client flags (if any) are: past the exptime, if any.
    fn flags_at(&self) -> usize {
        self.exptime_at() + FIELD_LEN * usize::from(self.header()[BITS] & HAS_EXPTIME != 0)
    }

    fn len(&self) -> usize {
        self.key_at() + usize::from(self.header()[KEY_LEN]) + self.value_len()
    }

    /// The header, to write. Only the header: a reply may be reading the value (see
    /// [`Item::shared_value`]).
    fn header_mut(&mut self) -> &mut [u8; HEADER] {
        // SAFETY: as in `header`; `&mut self` makes the access exclusive among Item users,
        // and SharedValue holders only read the value, past the header.
        unsafe { &mut *(self.ptr.as_ptr() as *mut [u8; HEADER]) }
    }

    /// Whether the block is a slab slot (else malloc'd).
    fn in_slot(&self) -> bool {
        self.header()[BITS] & IN_SLOT != 0
    }

    /// Where the key starts: past the optional fields the layout bits say are there
    /// (arithmetic on the bits, no branch: every key and value access comes here).
    fn key_at(&self) -> usize {
        self.flags_at() + FIELD_LEN * usize::from(self.header()[BITS] & HAS_FLAGS != 0)
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.head(at + 4)[at..].try_into().expect("4 bytes"))
    }

    pub fn key(&self) -> &[u8] {
        // SAFETY: the key's bytes follow the header inside the block (written in `new`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(self.key_at()), usize::from(self.header()[KEY_LEN])) }
    }

    pub fn value(&self) -> &[u8] {
        let at = self.key_at() + usize::from(self.header()[KEY_LEN]);
        // SAFETY: the value's bytes follow the key and end the block (written in `new`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), self.value_len()) }
    }

    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.header()[CAS..CAS + 8].try_into().expect("8 bytes"))
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.header_mut()[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
    }

    /// Relative deadline; 0 never expires.
    pub fn exptime(&self) -> RelTime {
        if self.header()[BITS] & HAS_EXPTIME == 0 {
            return 0;
        }
        self.u32_at(self.exptime_at())
    }

    /// Whether the exptime can be set to `t` in place: the header has room for one, or
    /// `t` is 0 (an item built without one stays without; else see [`Item::with_exptime`]).
    pub fn exptime_fits(&self, t: RelTime) -> bool {
        t == 0 && self.exptime() == 0 || self.header()[BITS] & HAS_EXPTIME != 0
    }

    /// Sets the exptime in place; the header must have room ([`Item::exptime_fits`]).
    pub fn set_exptime(&mut self, t: RelTime) {
        debug_assert!(self.exptime_fits(t));
        if self.header()[BITS] & HAS_EXPTIME != 0 {
            let at = self.exptime_at();
            // SAFETY: the exptime lies in the header, before the key and the value, which a
            // SharedValue may be reading; `&mut self` makes the write exclusive otherwise.
            let b = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), at + FIELD_LEN) };
            b[at..at + FIELD_LEN].copy_from_slice(&t.to_le_bytes());
        }
    }

    /// A copy with exptime `t`, for an item whose header has no room for it: the same
    /// key, value and fields in a block built for them.
    pub fn with_exptime(&self, slab: &Slab, t: RelTime) -> Self {
        let mut f = self.fields();
        f.exptime = t;
        let mut it = Self::new(slab, self.key(), &[self.value()], f);
        it.set_access(self.access());
        it
    }

    /// memcached's `it->time`: set when written, moved forward on a read at most once a
    /// minute. `flush_all`, `mg l` and `me la=` read it.
    pub fn time(&self) -> RelTime {
        self.u32_at(TIME)
    }

    pub fn set_time(&mut self, t: RelTime) {
        self.header_mut()[TIME..TIME + 4].copy_from_slice(&t.to_le_bytes());
    }

    /// A use at `now`: moves the access time by memcached's rule ([`bumped`]).
    pub fn bump_time(&mut self, now: RelTime) {
        let t = bumped(self.time(), now);
        if t != self.time() {
            self.set_time(t);
        }
    }

    pub fn flags(&self) -> u32 {
        if self.header()[BITS] & HAS_FLAGS == 0 {
            return 0;
        }
        self.u32_at(self.flags_at())
    }

    /// Bits kept in the item itself (see [`bit`]).
    pub fn bits(&self) -> u8 {
        self.header()[BITS] & !LAYOUT
    }

    pub fn set_bits(&mut self, b: u8) {
        let layout = self.header()[BITS] & LAYOUT;
        self.header_mut()[BITS] = (b & !LAYOUT) | layout;
    }

    /// The access byte as last saved with the item (the table's copy is current while
    /// the item is in a table).
    pub fn access(&self) -> u8 {
        self.header()[ACCESS]
    }

    pub fn set_access(&mut self, a: u8) {
        self.header_mut()[ACCESS] = a;
    }

    pub fn is_expired(&self, now: RelTime) -> bool {
        let e = self.exptime();
        e != 0 && e <= now
    }

    /// The fields, to build a successor item from.
    pub fn fields(&self) -> Fields {
        Fields { cas: self.cas(), exptime: self.exptime(), time: self.time(), flags: self.flags(), bits: self.bits() }
    }

    /// A copy in a fresh slot of `slab` (the one this item's block came from), if this
    /// block sits in a page being emptied (see [`Slab::doom_sparse`]) and a slot elsewhere
    /// is free.
    pub fn relocated(&self, slab: &Slab) -> Option<Self> {
        // SAFETY: a slot block (IN_SLOT is set only for those), live while `self` is.
        if !self.in_slot() || !unsafe { slab::is_doomed(self.ptr) } {
            return None;
        }
        debug_assert!(slab.contains(self.ptr), "an item moves within its own store's slab");
        let len = self.len();
        let ptr = slab.alloc(len)?;
        // SAFETY: a fresh block of `len` bytes, exclusively ours, filled from this item's
        // `len` bytes (IN_SLOT included: the copy is a slot too); the two are distinct.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), len) };
        Some(Self { ptr })
    }

    /// Asks the CPU to load the block's first cache lines (header, key, the start of the
    /// value); reads nothing, so it is free to call on any item.
    #[inline]
    pub fn prefetch(&self) {
        // Three lines cover a 136-byte item wherever it starts.
        let p = self.ptr.as_ptr().addr();
        prefetch(p);
        prefetch(p + 64);
        prefetch(p + 128);
    }

    /// The value, sharing this item's block, if it is large enough to be
    /// worth it ([`SHARE_MIN`]) and the block is malloc'd. A value that long is never in a
    /// slot (slots are at most [`slab::MAX_SLOT`] bytes), and that matters: a SharedValue
    /// is written to a socket after the store's lock is let go, and may outlive the store
    /// and its slab, but not its own malloc'd block.
    pub fn shared_value(&self) -> Option<SharedValue> {
        let value = self.value();
        if value.len() < SHARE_MIN || self.in_slot() {
            return None;
        }
        // SAFETY: a malloc'd block is preceded by its count; the new reference is owned by
        // the SharedValue built next. Relaxed is enough to add a reference to a block one
        // already holds (as Arc::clone does).
        unsafe { &*(self.ptr.as_ptr().sub(PREFIX) as *const AtomicUsize) }.fetch_add(1, Ordering::Relaxed);
        let len = self.len();
        Some(SharedValue { block: self.ptr, len, value_at: len - value.len() })
    }

    /// Bytes the allocator hands out for this item.
    pub fn charge(&self) -> usize {
        let len = self.len();
        if self.in_slot() { slab::slot_size(len).expect("a slot-sized block") } else { malloc_chunk(PREFIX + len) }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if self.in_slot() {
            // SAFETY: a live slot block, owned by this item alone and not used after; its
            // slab is still there (the store drops its table first).
            unsafe { slab::free(self.ptr) }
        } else {
            // SAFETY: not a slot, so a malloc'd block of this length (read back from the
            // header, which never changes it), and the item owns one reference.
            unsafe { release(self.ptr, self.len()) }
        }
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .field("cas", &self.cas())
            .finish()
    }
}

/// What an item with this key and value (and client flags 0) will be charged, if it gets a
/// slot when it fits one (it is charged malloc's size if its store's slab has no page left).
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    let len = header_len(0, 0, value_len) + key_len + value_len;
    slab::slot_size(len).unwrap_or_else(|| malloc_chunk(PREFIX + len))
}

/// What glibc's malloc really uses for a request of `n` bytes: 8 bytes of chunk header,
/// rounded up to 16, at least 32.
fn malloc_chunk(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// Asks the CPU to load the cache line holding `addr`. Reads nothing, so any address will
/// do, mapped or not: a stale or wrong one costs a wasted line, never a fault.
#[inline]
pub fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; a prefetch reads nothing and cannot fault, whatever
    // the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance::<i8>(addr));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The optional fields: an exptime and flags only when not 0, a 4-byte value length
    /// only from 64 KiB; an exptime given later to an item without one needs a copy.
    #[test]
    fn optional_header_fields() {
        let slab = Slab::new(1 << 20);
        let plain = Fields { cas: 1, exptime: 0, time: 3, flags: 0, bits: 0 };
        let it = Item::new(&slab, b"k", &[b"v"], plain);
        assert_eq!(it.len(), HEADER + 2 + 1 + 1, "no exptime, no flags, a 2-byte value length");
        assert_eq!((it.exptime(), it.flags(), it.time(), it.value()), (0, 0, 3, &b"v"[..]));
        assert!(it.exptime_fits(0) && !it.exptime_fits(5));
        let later = it.with_exptime(&slab, 5);
        assert_eq!(
            (later.key(), later.value(), later.exptime(), later.cas(), later.time()),
            (&b"k"[..], &b"v"[..], 5, 1, 3)
        );
        assert!(later.exptime_fits(0), "an item with a deadline can lose it in place");
        let only_flags = Item::new(&slab, b"k", &[b"v"], Fields { flags: 9, ..plain });
        assert_eq!((only_flags.len(), only_flags.flags(), only_flags.exptime()), (HEADER + 2 + 4 + 2, 9, 0));
        for n in [65_535, 65_536, 200_000] {
            let value = vec![b'x'; n];
            let it = Item::new(&slab, b"big", &[&value], Fields { exptime: 7, flags: 8, ..plain });
            let length_bytes = if n > 65_535 { 4 } else { 2 };
            assert_eq!(it.len(), HEADER + length_bytes + 8 + 3 + n, "{n}");
            assert_eq!((it.value().len(), it.exptime(), it.flags(), it.key()), (n, 7, 8, &b"big"[..]), "{n}");
        }
    }

    #[test]
    fn layout_round_trips() {
        let slab = Slab::new(1 << 20);
        let f = Fields { cas: 7, exptime: 9, time: 11, flags: u32::MAX, bits: bit::STALE };
        let mut it = Item::new(&slab, b"key", &[b"val", b"ue"], f);
        assert_eq!((it.key(), it.value()), (&b"key"[..], &b"value"[..]));
        assert_eq!((it.cas(), it.exptime(), it.time(), it.flags(), it.bits()), (7, 9, 11, u32::MAX, bit::STALE));
        it.set_cas(u64::MAX);
        it.set_exptime(1);
        it.set_time(2);
        it.set_bits(0);
        assert_eq!((it.cas(), it.exptime(), it.time(), it.bits(), it.value()), (u64::MAX, 1, 2, 0, &b"value"[..]));
        assert_eq!(charge_for(11, 100), 128, "the benchmark's item (17-byte header) fits a 128-byte slot");
        assert_eq!(it.charge(), 40);
        assert!(it.in_slot() && slab.contains(it.ptr), "a small item is in a slot of its slab");
        it.set_bits(0xff);
        assert_eq!((it.bits(), it.flags(), it.charge()), (!LAYOUT, u32::MAX, 40), "bits leave the layout be");
        it.set_bits(0);
        it.set_access(access::FETCHED | 5);
        assert_eq!((it.access(), it.bits(), it.value()), (access::FETCHED | 5, 0, &b"value"[..]));
        assert_eq!(it.flags(), u32::MAX);
        let plain = Item::new(&slab, b"k", &[b"v"], Fields { flags: 0, ..f });
        assert_eq!((plain.flags(), plain.key(), plain.value(), plain.bits()), (0, &b"k"[..], &b"v"[..], bit::STALE));
        assert_eq!(std::mem::size_of::<Item>(), 8);
    }

    #[test]
    fn a_freed_block_is_reused_for_the_same_size() {
        let slab = Slab::new(1 << 20);
        let f = Fields { cas: 1, exptime: 0, time: 0, flags: 0, bits: 0 };
        let value = vec![1u8; 2000];
        let addr = |it: &Item| it.ptr.as_ptr().addr();
        let first = Item::new(&slab, b"a", &[&value], f);
        let at = addr(&first);
        assert!(!first.in_slot() && !slab.contains(first.ptr), "a large item is malloc'd");
        drop(first);
        let same = Item::new(&slab, b"b", &[&value], f);
        assert_eq!(addr(&same), at, "the spare came back");
        assert_eq!((same.key(), same.value(), same.cas()), (&b"b"[..], &value[..], 1));
        let other = Item::new(&slab, b"c", &[&value[..1500]], f);
        assert_ne!(addr(&other), at);
        drop(same);
        drop(other);
        // The spare is now `other`'s block; `same`'s went back to malloc.
        let again = Item::new(&slab, b"d", &[&value[..1500]], f);
        assert_eq!(again.value(), &value[..1500]);
        // A shared block is kept alive by its reader, not recycled under it.
        let big = vec![9u8; SHARE_MIN];
        let it = Item::new(&slab, b"big", &[&big], f);
        let v = it.shared_value().expect("shared");
        drop(it);
        let next = Item::new(&slab, b"big", &[&vec![3u8; SHARE_MIN]], f);
        assert_eq!(&v[..], &big[..]);
        drop(next);
    }

    #[test]
    fn a_shared_value_outlives_its_item() {
        let slab = Slab::new(1 << 20);
        let f = Fields { cas: 1, exptime: 0, time: 0, flags: 0, bits: 0 };
        let big = vec![7u8; SHARE_MIN];
        let it = Item::new(&slab, b"big", &[&big[..10], &big[10..]], f);
        let v = it.shared_value().expect("a large malloc'd value is shared");
        let w = it.shared_value().expect("twice");
        assert_eq!(it.charge(), malloc_chunk(PREFIX + HEADER + 3 + SHARE_MIN));
        drop(it);
        assert_eq!((&v[..], v.len()), (&big[..], SHARE_MIN), "the block is alive while a SharedValue holds it");
        drop(v);
        assert_eq!(&w[..], &big[..]);
        let small = Item::new(&slab, b"small", &[&big[..SHARE_MIN - 1]], f);
        assert!(small.shared_value().is_none(), "below SHARE_MIN values are copied");
    }
}
