//! Reply writers: each appends one memcached reply to the connection's write buffer with
//! `put_slice` and `itoa`, never `format!`, so replies cost no allocation of their own.

use std::io::IoSlice;

use bytes::{BufMut, BytesMut};

use crate::store::SharedValue;

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn put_value(out: &mut BytesMut, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + value.len() + 64);
    put_value_line(out, key, flags, value.len(), cas);
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The `VALUE` line, without the data.
fn put_value_line(out: &mut BytesMut, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    let mut n = itoa::Buffer::new();
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(n.format(flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(n.format(len).as_bytes());
    if let Some(c) = cas {
        out.put_u8(b' ');
        out.put_slice(n.format(c).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// A connection's replies waiting to be written: a buffer, with large values spliced in
/// (`V`: the store's [`SharedValue`], which shares the item's memory), so they go to the
/// socket (one vectored write) without being copied.
#[derive(Debug, Default)]
pub struct Output<V = SharedValue> {
    pub buf: BytesMut,
    /// (offset in `buf`, value): the value goes before `buf[offset..]`.
    splices: Vec<(usize, V)>,
    spliced: usize,
}

impl<V: std::ops::Deref<Target = [u8]>> Output<V> {
    pub fn new(buf: BytesMut) -> Self {
        Self { buf, splices: Vec::new(), spliced: 0 }
    }

    /// Bytes to write, spliced values included.
    pub fn len(&self) -> usize {
        self.buf.len() + self.spliced
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops everything after `buf_len` bytes of the buffer (a reply boundary), spliced
    /// values there included.
    pub fn truncate(&mut self, buf_len: usize) {
        self.buf.truncate(buf_len);
        while self.splices.last().is_some_and(|(at, _)| *at >= buf_len) {
            let (_, v) = self.splices.pop().expect("checked");
            self.spliced -= v.len();
        }
    }

    /// [`put_value`] with the data shared, not copied.
    pub fn put_shared_value(&mut self, key: &[u8], flags: u32, value: V, cas: Option<u64>) {
        self.buf.reserve(key.len() + 64);
        put_value_line(&mut self.buf, key, flags, value.len(), cas);
        self.spliced += value.len();
        self.splices.push((self.buf.len(), value));
        self.buf.put_slice(b"\r\n");
    }

    /// Fills `iov` with what is left to write once the first `skip` bytes are written:
    /// buffer stretches and spliced values in order, as many as fit. Returns how many.
    pub fn slices<'a>(&'a self, skip: usize, iov: &mut [IoSlice<'a>]) -> usize {
        let (mut skip, mut n, mut from) = (skip, 0, 0);
        let mut put = |part: &'a [u8]| {
            if skip >= part.len() {
                skip -= part.len();
            } else if n < iov.len() {
                iov[n] = IoSlice::new(&part[skip..]);
                (skip, n) = (0, n + 1);
            }
        };
        for (at, v) in &self.splices {
            put(&self.buf[from..*at]);
            put(v);
            from = *at;
        }
        put(&self.buf[from..]);
        n
    }

    /// Empties it once written (the buffer keeps its capacity).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.splices.clear();
        self.spliced = 0;
    }

    /// Everything in one buffer, spliced values copied in (for callers without a socket).
    pub fn into_flat(self) -> BytesMut {
        if self.splices.is_empty() {
            return self.buf;
        }
        let mut iov = vec![IoSlice::new(&[]); 2 * self.splices.len() + 1];
        let n = self.slices(0, &mut iov);
        let mut flat = BytesMut::with_capacity(self.len());
        iov[..n].iter().for_each(|s| flat.put_slice(s));
        flat
    }
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
    use bytes::Bytes;

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

    #[test]
    fn spliced_values_come_out_in_order_and_truncate_with_their_reply() {
        let mut o = Output::new(BytesMut::new());
        o.buf.put_slice(b"STORED\r\n");
        let kept = o.buf.len();
        o.put_shared_value(b"k", 5, Bytes::from_static(b"0123456789"), Some(9));
        o.buf.put_slice(b"END\r\n");
        let one = o.buf.len();
        o.put_shared_value(b"j", 0, Bytes::from_static(b"abc"), None);
        assert_eq!(o.len(), o.buf.len() + 13);
        let copy = Output { buf: o.buf.clone(), splices: o.splices.clone(), spliced: o.spliced };
        let flat = b"STORED\r\nVALUE k 5 10 9\r\n0123456789\r\nEND\r\nVALUE j 0 3\r\nabc\r\n";
        assert_eq!(&copy.into_flat()[..], &flat[..]);
        // A write that stops anywhere resumes there, whatever room the caller gives.
        for skip in 0..=flat.len() {
            for room in 1..6 {
                let mut iov = [IoSlice::new(&[]); 6];
                let n = o.slices(skip, &mut iov[..room]);
                let rest: Vec<u8> = iov[..n].iter().flat_map(|s| s.to_vec()).collect();
                assert!(flat[skip..].starts_with(&rest) && (n == room || rest.len() == flat.len() - skip));
                assert!(iov[..n].iter().all(|s| !s.is_empty()));
            }
        }
        o.truncate(one);
        assert_eq!(o.len(), one + 10, "the first reply keeps its value");
        o.truncate(kept);
        assert_eq!((o.len(), o.splices.len()), (kept, 0), "a dropped reply takes its value with it");
        let mut iov = [IoSlice::new(&[]); 4];
        assert_eq!(o.slices(0, &mut iov), 1);
        assert_eq!(&iov[0][..], b"STORED\r\n");
        o.clear();
        assert!(o.is_empty());
    }
}
