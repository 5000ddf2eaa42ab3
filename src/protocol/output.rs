//! A reply being built: a buffer, with large values spliced in by reference, so they go
//! to the socket (one vectored write) without being copied. Knows no socket: the
//! connection asks it for the stretches to write ([`Output::slices`]).

use std::io::IoSlice;

use bytes::{BufMut, BytesMut};

/// A connection's replies waiting to be written: a buffer, with large values spliced in
/// (`V`: a shared handle on a value's memory, such as the store's `SharedValue`), so they go to the
/// socket (one vectored write) without being copied.
#[derive(Debug, Default)]
pub struct Output<V> {
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

    /// Puts `value` at the end of what the buffer holds now, without copying it.
    pub fn splice(&mut self, value: V) {
        self.spliced += value.len();
        self.splices.push((self.buf.len(), value));
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::encode::put_shared_value;

    #[test]
    fn spliced_values_come_out_in_order_and_truncate_with_their_reply() {
        let mut o = Output::new(BytesMut::new());
        o.buf.put_slice(b"STORED\r\n");
        let kept = o.buf.len();
        put_shared_value(&mut o, b"k", 5, Bytes::from_static(b"0123456789"), Some(9));
        o.buf.put_slice(b"END\r\n");
        let one = o.buf.len();
        put_shared_value(&mut o, b"j", 0, Bytes::from_static(b"abc"), None);
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
