//! The plain transport: the system calls a connection reads and writes its socket with,
//! straight through `libc` so a read or a batch's write is exactly one call.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use crate::exec::Output;

pub fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length during the call; no address is asked for.
    syscall_result(unsafe {
        libc::syscall(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), 0, std::ptr::null::<u8>(), 0)
    })
}

/// A system call's return: a byte count, or -1 and `errno`.
fn syscall_result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn sendto(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for its length during the call; no address is passed.
    syscall_result(unsafe {
        libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), libc::MSG_NOSIGNAL, std::ptr::null::<u8>(), 0)
    })
}

fn sendmsg(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data (all zero is a valid empty message); IoSlice is
    // guaranteed ABI-compatible with iovec on Unix, and `iov` outlives the call.
    syscall_result(unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr().cast_mut().cast();
        msg.msg_iovlen = iov.len();
        libc::syscall(libc::SYS_sendmsg, fd, &raw const msg, libc::MSG_NOSIGNAL)
    })
}

/// Most slices one vectored write takes (Linux allows 1,024). A batch rarely has more
/// than a few large values (each is two slices); a longer one takes another call, and
/// the slice array, set up on every write, stays small.
const MAX_IOV: usize = 16;

/// Makes one write of `out` from byte `done` on: a `send` when the rest is one stretch of
/// the buffer, else one `sendmsg` of up to [`MAX_IOV`] stretches, straight from the
/// buffer and the values' own blocks.
pub fn send(fd: RawFd, out: &Output, done: usize) -> io::Result<usize> {
    if out.len() == out.buf.len() {
        return sendto(fd, &out.buf[done..]);
    }
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let n = out.slices(done, &mut iov);
    sendmsg(fd, &iov[..n])
}
