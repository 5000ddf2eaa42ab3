//! One cached item in one block: a header, the key and the value back to back, reached
//! through an 8-byte pointer. No separate key, value or entry allocations, and client
//! flags take room only when they are not 0 (as in memcached), so what the memory limit
//! charges is what the item really occupies. Blocks up to 1 KiB come from the store's
//! slab ([`slab`]: the length rounded up to 8), larger ones from malloc.
//!
//! With the slab, this is the store's only `unsafe` code: a thin owning pointer, because
//! a table slot of 8 bytes instead of a 16-byte `Box<[u8]>` is worth 8 to 16 bytes per item.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

use super::slab;
use crate::clock::RelTime;

/// Header layout (little-endian): CAS, exptime, time, value length, key length, bits,
/// access; then the client flags if not 0.
const CAS: usize = 0;
const EXPTIME: usize = 8;
const TIME: usize = 12;
const VALUE_LEN: usize = 16;
const KEY_LEN: usize = 20;
const BITS: usize = 21;
const ACCESS: usize = 22;
/// Bytes of the fixed header.
pub const HEADER: usize = 23;
/// Bytes the client flags add when not 0.
const FLAGS_LEN: usize = 4;
/// Layout bit in the bits byte: the header carries client flags.
const HAS_FLAGS: u8 = 0x80;

/// memcached bumps an item's access time at most this often (`ITEM_UPDATE_INTERVAL`).
pub const UPDATE_INTERVAL: RelTime = 60;

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
}

/// The access byte: whether a client has read the item (`ITEM_FETCHED`; `mg h`, `me
/// fetch=`) and the store's epoch when it was last used (for eviction order).
pub mod access {
    /// Read by a client since written.
    pub const FETCHED: u8 = 0x80;
    /// The epoch bits; epochs wrap at 128.
    pub const EPOCH: u8 = 0x7f;
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

fn layout(len: usize) -> Layout {
    Layout::from_size_align(len, 1).expect("item sizes are bounded by -I")
}

impl Item {
    /// Builds an item whose value is the concatenation of `parts` (one part for a plain
    /// store, two for append and prepend), in one exact-size allocation.
    pub fn new(key: &[u8], parts: &[&[u8]], f: Fields) -> Self {
        assert!(key.len() <= 255, "keys are at most 250 bytes");
        let value_len: usize = parts.iter().map(|p| p.len()).sum();
        let flags_len = if f.flags == 0 { 0 } else { FLAGS_LEN };
        let len = HEADER + flags_len + key.len() + value_len;
        let ptr = slab::alloc(len).unwrap_or_else(|| {
            let layout = layout(len);
            // SAFETY: `len` >= HEADER > 0, so the layout is not zero-sized.
            let raw = unsafe { alloc(layout) };
            NonNull::new(raw).unwrap_or_else(|| handle_alloc_error(layout))
        });
        // SAFETY: the block is `len` bytes, freshly allocated, and exclusively ours; every
        // byte is written below before the item is used.
        let b = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        b[CAS..CAS + 8].copy_from_slice(&f.cas.to_le_bytes());
        b[EXPTIME..EXPTIME + 4].copy_from_slice(&f.exptime.to_le_bytes());
        b[TIME..TIME + 4].copy_from_slice(&f.time.to_le_bytes());
        b[VALUE_LEN..VALUE_LEN + 4].copy_from_slice(&(value_len as u32).to_le_bytes());
        b[KEY_LEN] = key.len() as u8;
        b[BITS] = (f.bits & !HAS_FLAGS) | if flags_len > 0 { HAS_FLAGS } else { 0 };
        b[ACCESS] = 0;
        let mut at = HEADER;
        if flags_len > 0 {
            b[at..at + FLAGS_LEN].copy_from_slice(&f.flags.to_le_bytes());
            at += FLAGS_LEN;
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

    fn len(&self) -> usize {
        let h = self.header();
        let value_len = u32::from_le_bytes(h[VALUE_LEN..VALUE_LEN + 4].try_into().expect("4 bytes")) as usize;
        let flags_len = if h[BITS] & HAS_FLAGS != 0 { FLAGS_LEN } else { 0 };
        HEADER + flags_len + usize::from(h[KEY_LEN]) + value_len
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the block is `len()` bytes long (its header says so) and initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }

    fn key_at(&self) -> usize {
        HEADER + if self.header()[BITS] & HAS_FLAGS != 0 { FLAGS_LEN } else { 0 }
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.header()[at..at + 4].try_into().expect("4 bytes"))
    }

    fn set_u32_at(&mut self, at: usize, v: u32) {
        self.bytes_mut()[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn key(&self) -> &[u8] {
        let at = self.key_at();
        &self.bytes()[at..at + usize::from(self.header()[KEY_LEN])]
    }

    pub fn value(&self) -> &[u8] {
        let at = self.key_at() + usize::from(self.header()[KEY_LEN]);
        &self.bytes()[at..]
    }

    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.header()[CAS..CAS + 8].try_into().expect("8 bytes"))
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.bytes_mut()[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
    }

    /// Relative deadline; 0 never expires.
    pub fn exptime(&self) -> RelTime {
        self.u32_at(EXPTIME)
    }

    pub fn set_exptime(&mut self, t: RelTime) {
        self.set_u32_at(EXPTIME, t);
    }

    /// memcached's `it->time`: set when written, moved forward on a read at most once a
    /// minute. `flush_all`, `mg l` and `me la=` read it.
    pub fn time(&self) -> RelTime {
        self.u32_at(TIME)
    }

    pub fn set_time(&mut self, t: RelTime) {
        self.set_u32_at(TIME, t);
    }

    pub fn flags(&self) -> u32 {
        if self.header()[BITS] & HAS_FLAGS == 0 {
            return 0;
        }
        u32::from_le_bytes(self.bytes()[HEADER..HEADER + FLAGS_LEN].try_into().expect("4 bytes"))
    }

    /// Bits kept in the item itself (see [`bit`]).
    pub fn bits(&self) -> u8 {
        self.header()[BITS] & !HAS_FLAGS
    }

    pub fn set_bits(&mut self, b: u8) {
        let layout_bit = self.header()[BITS] & HAS_FLAGS;
        self.bytes_mut()[BITS] = (b & !HAS_FLAGS) | layout_bit;
    }

    /// The access byte as last saved with the item (the table's copy is current while
    /// the item is in a table).
    pub fn access(&self) -> u8 {
        self.header()[ACCESS]
    }

    pub fn set_access(&mut self, a: u8) {
        self.bytes_mut()[ACCESS] = a;
    }

    pub fn is_expired(&self, now: RelTime) -> bool {
        let e = self.exptime();
        e != 0 && e <= now
    }

    /// The fields, to build a successor item from.
    pub fn fields(&self) -> Fields {
        Fields { cas: self.cas(), exptime: self.exptime(), time: self.time(), flags: self.flags(), bits: self.bits() }
    }

    /// A copy in a fresh block, if this one sits in a page being emptied (see
    /// [`slab::doom_sparse`]) and a slot elsewhere is free.
    pub fn relocated(&self) -> Option<Self> {
        if !slab::is_doomed(self.ptr) {
            return None;
        }
        let len = self.len();
        let ptr = slab::alloc(len)?;
        // SAFETY: a fresh block of `len` bytes, exclusively ours, filled from this item's
        // `len` bytes; the two blocks are distinct.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), len) };
        Some(Self { ptr })
    }

    /// Bytes the allocator hands out for this item.
    pub fn charge(&self) -> usize {
        slab::charge(self.ptr, self.len())
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if slab::free(self.ptr) {
            return;
        }
        let layout = layout(self.len());
        // SAFETY: not a slot, so allocated in `new` with this very layout (the length is
        // read back from the header, which never changes it), and dropped once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
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

/// What an item with this key and value (and client flags 0) will be charged.
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    slab::charge_for(HEADER + key_len + value_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let f = Fields { cas: 7, exptime: 9, time: 11, flags: u32::MAX, bits: bit::STALE };
        let mut it = Item::new(b"key", &[b"val", b"ue"], f);
        assert_eq!((it.key(), it.value()), (&b"key"[..], &b"value"[..]));
        assert_eq!((it.cas(), it.exptime(), it.time(), it.flags(), it.bits()), (7, 9, 11, u32::MAX, bit::STALE));
        it.set_cas(u64::MAX);
        it.set_exptime(1);
        it.set_time(2);
        it.set_bits(0);
        assert_eq!((it.cas(), it.exptime(), it.time(), it.bits(), it.value()), (u64::MAX, 1, 2, 0, &b"value"[..]));
        assert_eq!(charge_for(11, 100), 136, "the benchmark's item fits a 136-byte slot");
        assert_eq!(it.charge(), 40);
        it.set_access(access::FETCHED | 5);
        assert_eq!((it.access(), it.bits(), it.value()), (access::FETCHED | 5, 0, &b"value"[..]));
        assert_eq!(it.flags(), u32::MAX);
        let plain = Item::new(b"k", &[b"v"], Fields { flags: 0, ..f });
        assert_eq!((plain.flags(), plain.key(), plain.value(), plain.bits()), (0, &b"k"[..], &b"v"[..], bit::STALE));
        assert_eq!(std::mem::size_of::<Item>(), 8);
    }
}
