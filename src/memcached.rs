//! memcached's rules that Larder reproduces and that more than one layer needs: the key
//! length limit, the item size arithmetic behind `-I` and `stats`/`me`/metadump sizes, the
//! slab classes a default memcached would put an item in, how a storage command treats an
//! existing item, the order in which meta TTL flags apply, and number parsing (`number`).
//! The bottom floor: it imports nothing of the crate but the clock's time type, and any
//! module may import it.

pub mod number;

use crate::clock::RelTime;

/// Keys longer than this are refused (`KEY_MAX_LENGTH`); memcached checks only the length.
pub const KEY_MAX_LENGTH: usize = 250;

/// Bytes memcached's item header adds to key and value when it checks an item against
/// `-I`: `sizeof(item)` (48) + the key's NUL (1) + the data's `\r\n` (2) + the CAS (8).
pub const ITEM_HEADER: usize = 48 + 1 + 2 + 8;

/// memcached's largest slab chunk (`slab_chunk_max`, 512 KiB by default).
pub const MAX_SLAB_CHUNK: usize = 512 * 1024;

/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`, which bounds class ids in admin commands.
pub const MAX_SLAB_CLASSES: u32 = 64;

/// Largest slab class id a default memcached has (`power_largest`).
pub const LARGEST_SLAB_CLASS: i32 = 39;

/// The bytes memcached's item of this shape takes (`ITEM_ntotal`, with CAS).
pub fn item_size(key_len: usize, flags: u32, value_len: usize) -> usize {
    ITEM_HEADER + key_len + if flags == 0 { 0 } else { 4 } + value_len
}

/// Whether an item of this shape exceeds the item size limit, by memcached's own arithmetic
/// (`item_size_ok`), so the largest storable value is the same byte for byte.
pub fn item_too_large(key_len: usize, flags: u32, value_len: usize, max_item_size: usize) -> bool {
    item_size(key_len, flags, value_len) > max_item_size
}

/// The slab class memcached (`-n 48 -f 1.25`) would put an item of `size` bytes in.
pub fn slab_class(size: usize, max_item_size: usize) -> u32 {
    let chunk_max = (max_item_size / 2).min(MAX_SLAB_CHUNK);
    let mut class_size: usize = 96;
    let mut class = 1;
    while (class_size as f64) < chunk_max as f64 / 1.25 {
        class_size = class_size.div_ceil(8) * 8;
        if size <= class_size {
            return class;
        }
        class += 1;
        class_size = (class_size as f64 * 1.25) as usize;
    }
    class
}

/// How a storage command treats an existing item (memcached's `NREAD_*` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas { unique: u64 },
}

impl StoreMode {
    /// The command word, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Add => "add",
            Self::Replace => "replace",
            Self::Append => "append",
            Self::Prepend => "prepend",
            Self::Cas { .. } => "cas",
        }
    }
}

/// Where the TTL-changing meta flags stood in the request: memcached applies them in order,
/// so the later of `T` and `N` wins, and `R` and `t` see the TTL as it was at their place.
/// Classic `gat` and `touch` are a `T` at position 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlFlags {
    /// `T<ttl>`: the deadline and the flag's position.
    pub touch: Option<(RelTime, usize)>,
    /// `N<ttl>`: the deadline for an item created on a miss, and its position.
    pub vivify: Option<(RelTime, usize)>,
}

impl TtlFlags {
    /// The item's deadline as memcached sees it just before position `pos` (use
    /// `usize::MAX` for the final value), from the deadline it had before the flags.
    pub fn exptime_at(&self, pos: usize, before: RelTime, created: bool) -> RelTime {
        let mut latest: Option<(RelTime, usize)> = None;
        for (deadline, at) in [self.touch, if created { self.vivify } else { None }].into_iter().flatten() {
            if at < pos && latest.is_none_or(|(_, p)| at > p) {
                latest = Some((deadline, at));
            }
        }
        latest.map_or(before, |(d, _)| d)
    }
}

/// memcached's `uriencode` (keys in `lru_crawler metadump`, `watch` lines): ASCII letters,
/// digits and `-._~` as they are, every other byte as `%XX` (upper-case hex).
pub fn uri_encode(key: &[u8], out: &mut impl bytes::BufMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.put_u8(b);
        } else {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_size_is_memcacheds() {
        // 1 MiB -I: the largest value under key "k" with no flags is 1 MiB - 59 - 1.
        assert!(!item_too_large(1, 0, (1 << 20) - 60, 1 << 20));
        assert!(item_too_large(1, 0, (1 << 20) - 59, 1 << 20));
        assert_eq!(item_size(3, 7, 10), 59 + 3 + 4 + 10, "non-zero flags take 4 bytes");
    }

    #[test]
    fn slab_classes_are_a_default_memcacheds() {
        assert_eq!(slab_class(96, 1 << 20), 1);
        assert_eq!(slab_class(97, 1 << 20), 2);
        assert_eq!(slab_class(1 << 20, 1 << 20), 39, "the largest class takes what is left");
    }
}
