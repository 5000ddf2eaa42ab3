//! Reply writers: each appends one memcached reply to the connection's write buffer with
//! `put_slice` and `itoa`, never `format!`, so replies cost no allocation of their own.

use bytes::{BufMut, BytesMut};

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn put_value(out: &mut BytesMut, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    let mut n = itoa::Buffer::new();
    out.reserve(key.len() + value.len() + 64);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(n.format(flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(n.format(value.len()).as_bytes());
    if let Some(c) = cas {
        out.put_u8(b' ');
        out.put_slice(n.format(c).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// A decimal number on its own line (the `incr`/`decr` reply).
pub fn put_number(out: &mut BytesMut, v: u64) {
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
    out.put_slice(b"\r\n");
}

/// `STAT <name> <value>\r\n` for any displayable value.
pub fn put_stat(out: &mut BytesMut, name: &str, value: impl StatValue) {
    out.put_slice(b"STAT ");
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    value.put(out);
    out.put_slice(b"\r\n");
}

/// A value a `STAT` line can carry.
pub trait StatValue {
    fn put(&self, out: &mut BytesMut);
}

macro_rules! int_stat {
    ($($t:ty),*) => {$(
        impl StatValue for $t {
            fn put(&self, out: &mut BytesMut) {
                out.put_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
int_stat!(u8, u16, u32, u64, usize, i32, i64);

impl StatValue for &str {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self.as_bytes());
    }
}

impl StatValue for String {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self.as_bytes());
    }
}

impl StatValue for bool {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(if *self { b"yes" } else { b"no" });
    }
}

/// Seconds and microseconds as memcached prints `rusage_*`: `S.UUUUUU`.
pub struct Seconds {
    pub secs: u64,
    pub micros: u32,
}

impl StatValue for Seconds {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(itoa::Buffer::new().format(self.secs).as_bytes());
        out.put_u8(b'.');
        let mut digits = [b'0'; 6];
        let mut m = self.micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.put_slice(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_lines() {
        let mut out = BytesMut::new();
        put_value(&mut out, b"k", 7, b"hi", None);
        put_value(&mut out, b"k", 0, b"", Some(42));
        put_number(&mut out, u64::MAX);
        assert_eq!(&out[..], b"VALUE k 7 2\r\nhi\r\nVALUE k 0 0 42\r\n\r\n18446744073709551615\r\n");
    }

    #[test]
    fn stat_lines() {
        let mut out = BytesMut::new();
        put_stat(&mut out, "rusage_user", Seconds { secs: 3, micros: 4207 });
        put_stat(&mut out, "cas_enabled", true);
        assert_eq!(&out[..], b"STAT rusage_user 3.004207\r\nSTAT cas_enabled yes\r\n");
    }
}
