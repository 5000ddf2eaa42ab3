//! One cached item in one allocation: a 22-byte header, the key and the value, laid out
//! back to back in a `Box<[u8]>`. No separate key, value or entry allocations, so what the
//! memory limit charges is what the allocator really hands out.

use crate::clock::RelTime;

/// Header layout (little-endian): CAS, exptime, time, client flags, key length, bits.
const CAS: usize = 0;
const EXPTIME: usize = 8;
const TIME: usize = 12;
const FLAGS: usize = 16;
const KEY_LEN: usize = 20;
const BITS: usize = 21;
/// Bytes before the key.
pub const HEADER: usize = 22;

/// memcached bumps an item's access time at most this often (`ITEM_UPDATE_INTERVAL`).
pub const UPDATE_INTERVAL: RelTime = 60;

/// Item state bits, memcached's `it_flags` where they are observable. `FETCHED` and
/// `REFERENCED` are also kept beside the table (see `Shard::side`), where readers set
/// them without a write lock.
pub mod bit {
    /// Read by a client since written (`ITEM_FETCHED`; `mg h`, `me fetch=`).
    pub const FETCHED: u8 = 1;
    /// Read since eviction last looked (CLOCK's reference bit).
    pub const REFERENCED: u8 = 2;
    /// Invalidated by `md I` or a stale `ms I` (`ITEM_STALE`; `mg` reports `X`).
    pub const STALE: u8 = 4;
    /// A client has been handed the recache token (`ITEM_TOKEN_SENT`; `mg` reports `Z`).
    pub const TOKEN_SENT: u8 = 8;
    /// Stored under a base64 (`b`) key, so meta replies give the key back in base64.
    pub const KEY_BINARY: u8 = 16;
    /// The bits readers set.
    pub const READ: u8 = FETCHED | REFERENCED;
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item(Box<[u8]>);

/// What an item is made of, for building one.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub cas: u64,
    pub exptime: RelTime,
    pub time: RelTime,
    pub flags: u32,
    pub bits: u8,
}

impl Item {
    /// Builds an item whose value is the concatenation of `parts` (one part for a plain
    /// store, two for append and prepend), in one exact-size allocation.
    pub fn new(key: &[u8], parts: &[&[u8]], f: Fields) -> Self {
        debug_assert!(key.len() <= 255, "keys are at most 250 bytes");
        let len = HEADER + key.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&f.cas.to_le_bytes());
        b.extend_from_slice(&f.exptime.to_le_bytes());
        b.extend_from_slice(&f.time.to_le_bytes());
        b.extend_from_slice(&f.flags.to_le_bytes());
        b.push(key.len() as u8);
        b.push(f.bits);
        b.extend_from_slice(key);
        for p in parts {
            b.extend_from_slice(p);
        }
        Self(b.into_boxed_slice())
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }

    fn set_u32_at(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + usize::from(self.0[KEY_LEN])]
    }

    pub fn value(&self) -> &[u8] {
        &self.0[HEADER + usize::from(self.0[KEY_LEN])..]
    }

    pub fn cas(&self) -> u64 {
        u64::from_le_bytes(self.0[CAS..CAS + 8].try_into().expect("8 bytes"))
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.0[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
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
        self.u32_at(FLAGS)
    }

    /// Bits kept in the item itself (see [`bit`]).
    pub fn bits(&self) -> u8 {
        self.0[BITS]
    }

    pub fn set_bits(&mut self, b: u8) {
        self.0[BITS] = b;
    }

    pub fn is_expired(&self, now: RelTime) -> bool {
        let e = self.exptime();
        e != 0 && e <= now
    }

    /// The fields, to build a successor item from.
    pub fn fields(&self) -> Fields {
        Fields { cas: self.cas(), exptime: self.exptime(), time: self.time(), flags: self.flags(), bits: self.bits() }
    }

    /// Bytes the allocator hands out for this item.
    pub fn charge(&self) -> usize {
        malloc_chunk(self.0.len())
    }
}

/// What glibc's malloc really uses for a request of `n` bytes: 8 bytes of chunk header,
/// rounded up to 16, at least 32.
pub fn malloc_chunk(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// What an item with this key and value will be charged.
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    malloc_chunk(HEADER + key_len + value_len)
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
        assert_eq!(charge_for(11, 100), 144, "the benchmark's item fits a 144-byte chunk");
        assert_eq!(it.charge(), 48);
    }
}
