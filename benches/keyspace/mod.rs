//! The load generator's keys and values, shared with the floor server so that the floor's
//! replies pass the load generator's checks: key `n` is `<prefix><n>`, and its value is
//! `value_of(&pattern(size), n, size)`, a run of the alphabet starting at letter `n % 26`.

/// The bytes every value is cut from.
pub fn pattern(value_size: usize) -> Vec<u8> {
    (0..value_size + 26).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Key `k`'s value, cut from `pattern`.
pub fn value_of(pattern: &[u8], k: u64, value_size: usize) -> &[u8] {
    let start = (k % 26) as usize;
    &pattern[start..start + value_size]
}

/// The `n` of a key `<prefix><n>`.
pub fn parse_key(key: &[u8], prefix: &str) -> Option<u64> {
    let digits = key.strip_prefix(prefix.as_bytes())?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
