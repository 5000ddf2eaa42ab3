//! Number parsing exactly as memcached's `safe_strto*` helpers over C's `strtol`/`strtoull`:
//! leading whitespace and a sign are accepted, the number must be followed by the end of the
//! token or a whitespace byte, and results are truncated to the width memcached stores.
//! These quirks are observable (`4294967295` as exptime means "expired"), so they are kept.

/// C's `isspace` in the "C" locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull` saw: sign, magnitude (`None` on overflow), and whether digits were found
/// followed by an acceptable terminator.
struct Scan {
    negative: bool,
    magnitude: Option<u64>,
}

/// Scans `tok` as `strtoull` would and applies memcached's end-of-number rule.
/// Returns `None` where memcached's helper returns false for reasons other than range.
fn scan(tok: &[u8]) -> Option<Scan> {
    let mut i = 0;
    while i < tok.len() && is_c_space(tok[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < tok.len() && (tok[i] == b'+' || tok[i] == b'-') {
        negative = tok[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut magnitude: Option<u64> = Some(0);
    while i < tok.len() && tok[i].is_ascii_digit() {
        let d = u64::from(tok[i] - b'0');
        magnitude = magnitude.and_then(|m| m.checked_mul(10)).and_then(|m| m.checked_add(d));
        i += 1;
    }
    if i == digits_start {
        return None; // no digits: endptr == str
    }
    // The C string may end here too: item data holding "12\0" is the number 12.
    if i < tok.len() && !is_c_space(tok[i]) && tok[i] != 0 {
        return None; // trailing garbage
    }
    Some(Scan { negative, magnitude })
}

/// `safe_strtoull`: a u64, refusing range errors and negative input that wrapped.
pub fn parse_u64(tok: &[u8]) -> Option<u64> {
    let s = scan(tok)?;
    let m = s.magnitude?; // ERANGE
    let v = if s.negative { m.wrapping_neg() } else { m };
    if (v as i64) < 0 && s.negative {
        return None;
    }
    Some(v)
}

/// `safe_strtoul` into a `uint32_t`: parsed as 64-bit, then truncated to 32 bits.
pub fn parse_u32_truncating(tok: &[u8]) -> Option<u32> {
    parse_u64(tok).map(|v| v as u32)
}

/// `safe_strtol` into an `int32_t`: parsed as a 64-bit `long`, then truncated to 32 bits.
pub fn parse_i32_truncating(tok: &[u8]) -> Option<i32> {
    let s = scan(tok)?;
    let m = s.magnitude?;
    let v: i64 = if s.negative {
        if m > (i64::MAX as u64) + 1 {
            return None; // ERANGE
        }
        (m as i64).wrapping_neg()
    } else {
        i64::try_from(m).ok()? // ERANGE
    };
    Some(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_truncates_like_memcached() {
        assert_eq!(parse_u32_truncating(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32_truncating(b"4294967296"), Some(0));
        assert_eq!(parse_u32_truncating(b"4294967301"), Some(5));
        assert_eq!(parse_u32_truncating(b"-1"), None);
        assert_eq!(parse_u32_truncating(b"-0"), Some(0));
        assert_eq!(parse_u32_truncating(b"18446744073709551616"), None);
        assert_eq!(parse_u32_truncating(b"abc"), None);
        assert_eq!(parse_u32_truncating(b"1a"), None);
        assert_eq!(parse_u32_truncating(b""), None);
        assert_eq!(parse_u32_truncating(b"\t7"), Some(7));
        assert_eq!(parse_u32_truncating(b"7\r"), Some(7));
        assert_eq!(parse_u32_truncating(b"+7"), Some(7));
    }

    #[test]
    fn i32_truncates_like_memcached() {
        assert_eq!(parse_i32_truncating(b"4294967295"), Some(-1));
        assert_eq!(parse_i32_truncating(b"4294967296"), Some(0));
        assert_eq!(parse_i32_truncating(b"2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32_truncating(b"-1"), Some(-1));
        assert_eq!(parse_i32_truncating(b"9223372036854775808"), None);
        assert_eq!(parse_i32_truncating(b"-9223372036854775808"), Some(0));
        assert_eq!(parse_i32_truncating(b"x"), None);
        assert_eq!(parse_i32_truncating(b"-"), None);
    }

    #[test]
    fn u64_rules() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
        // glibc negates in unsigned arithmetic: -(2^64-1) wraps to 1, which is not negative.
        assert_eq!(parse_u64(b"-18446744073709551615"), Some(1));
        assert_eq!(parse_u64(b" 12"), Some(12));
        assert_eq!(parse_u64(b"12\0x"), Some(12));
    }
}
