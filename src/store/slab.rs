//! Slots for small item blocks, carved from 64 KiB pages of one reserved address range:
//! a block costs its length rounded up to 8 bytes, with no per-block allocator header and
//! no 16-byte rounding (glibc's malloc makes a 134-byte item cost 144 bytes; here it is
//! 136), and a page whose items are all gone goes back to the OS and to any size class.
//!
//! Every page holds slots of one size (its class). A class keeps the pages that have a
//! free slot; a page keeps its own free list and live count in a header at its start, so
//! freeing a block finds its page by address and an emptied page can be taken out whole.
//! Blocks over [`MAX_SLOT`] bytes, or any block once the range is used up, come from
//! malloc instead; [`free`] and [`contains`] tell the two apart by address.
//!
//! Locks: one mutex per class (held for a free-list pop or push) and one for the page
//! pool (taken inside a class lock, never the other way round).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Bytes per page. Pages are aligned to their size, so a block's page is its address
/// rounded down. Small enough that a page per size class is little memory (4 MiB for all
/// 128), large enough that the slack at a page's end is under 3% for the largest slots.
const PAGE: usize = 32 << 10;
/// Slot sizes step by this much.
const GRAIN: usize = 8;
/// The largest block kept in a slot; larger ones are rare enough (and large enough) that
/// malloc's 8 to 23 bytes of overhead do not matter.
pub const MAX_SLOT: usize = 1024;
const CLASSES: usize = MAX_SLOT / GRAIN;
/// Bytes at the start of a page for its header; slots follow.
const PAGE_HEADER: usize = 32;
/// The range is made readable and writable this much at a time, as pages are first used.
const COMMIT_STEP: usize = 4 << 20;
/// A page position meaning "none".
const NONE: u32 = u32::MAX;

/// A page's bookkeeping, at its first bytes. Only touched under its class's lock (or
/// while no class holds the page), so relaxed atomics are only there to make the shared
/// access safe, not to order anything.
struct PageHeader {
    /// Slot size in bytes.
    slot: AtomicU32,
    /// Offset of the first free slot, 0 when none (offset 0 is this header).
    free_head: AtomicU32,
    /// Offset of the first slot never handed out.
    bump: AtomicU32,
    /// Slots handed out and not freed.
    live: AtomicU32,
    /// Index in its class's `partial` list, or NONE when the page is full or doomed.
    partial_pos: AtomicU32,
    /// Set when the page is to be emptied (see [`doom_sparse`]): no new blocks go in, and
    /// it goes back to the pool when its last block is freed. Read without the lock.
    doomed: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<PageHeader>() <= PAGE_HEADER);

#[derive(Default)]
struct Class {
    /// Pages of this class with at least one free slot.
    partial: Vec<u32>,
}

#[derive(Default)]
struct Pool {
    /// Pages taken from the range so far (the range is handed out in order).
    used: usize,
    /// Pages made usable (readable and writable).
    committed: usize,
    /// Pages given back, empty and without memory behind them.
    free: Vec<u32>,
}

struct Slab {
    /// The mapping, as mmap returned it.
    map: (usize, usize),
    base: usize,
    pages: usize,
    /// Bytes in live slots.
    live_bytes: AtomicUsize,
    /// Pages doomed so far (memcached's `slabs_moved`).
    doomed_pages: AtomicU64,
    pool: Mutex<Pool>,
    classes: Box<[Mutex<Class>]>,
}

static SLAB: OnceLock<Option<Slab>> = OnceLock::new();

/// Reserves address space for `limit` bytes of items (and room for fragmentation) the
/// first time it is called; later calls do nothing. Address space only: memory is used
/// as pages fill.
pub fn reserve(limit: usize) {
    SLAB.get_or_init(|| Slab::reserve(limit));
}

fn slab() -> Option<&'static Slab> {
    SLAB.get_or_init(|| Slab::reserve(1 << 30)).as_ref()
}

/// The slot size for a block of `len` bytes, if it goes in a slot.
fn slot_size(len: usize) -> Option<usize> {
    (len <= MAX_SLOT).then(|| len.div_ceil(GRAIN) * GRAIN)
}

/// A block of `len` bytes from a slot, or None if it is not slot-sized or no page is left.
pub fn alloc(len: usize) -> Option<NonNull<u8>> {
    let size = slot_size(len)?;
    slab()?.alloc(size)
}

/// Gives back a block from [`alloc`]; false (and nothing done) if `ptr` is not from a slot.
pub fn free(ptr: NonNull<u8>) -> bool {
    match slab() {
        Some(s) if s.contains(ptr) => {
            s.free(ptr);
            true
        }
        _ => false,
    }
}

/// When slots in use fill pages badly (after the mix of item sizes changed, pages hold a
/// few items each), marks the pages less than half full as doomed: no block goes in
/// them any more, and each goes back to the OS when its last block is freed. True if any
/// page was doomed; the store then moves the items out of them ([`is_doomed`]).
/// With `only_if_severe`, only when an eighth of the pages' memory is slack (a burst
/// of a new size mix), not the usual sixteenth.
pub fn doom_sparse(only_if_severe: bool) -> bool {
    slab().is_some_and(|s| s.doom_sparse(only_if_severe))
}

/// Pages doomed so far, for `stats` (`slabs_moved`: pages whose items were moved so
/// the page could go).
pub fn pages_moved() -> u64 {
    slab().map_or(0, |s| s.doomed_pages.load(Relaxed))
}

/// Whether the block at `ptr` is in a doomed page (and should be moved).
pub fn is_doomed(ptr: NonNull<u8>) -> bool {
    match slab() {
        // A live block keeps its page from being released, so the header is valid.
        Some(s) if s.contains(ptr) => s.header(s.page_of(ptr)).doomed.load(Relaxed) != 0,
        _ => false,
    }
}

/// Gives back to the OS the pages each size class keeps empty for reuse: for the store's
/// background task, so a class that is no longer used holds no memory.
pub fn trim() {
    if let Some(s) = slab() {
        s.trim();
    }
}

/// Whether `ptr` is a block from a slot.
pub fn contains(ptr: NonNull<u8>) -> bool {
    slab().is_some_and(|s| s.contains(ptr))
}

/// The slot size a block of `len` bytes will take, if it will go in a slot.
pub fn slot_for(len: usize) -> Option<usize> {
    slab().and(slot_size(len))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent at every await-free step, so a panic
    // elsewhere while one was held leaves nothing half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slab {
    fn reserve(limit: usize) -> Option<Self> {
        // Twice the limit plus a gigabyte of address space: fragmentation cannot use it up
        // in practice, and if it ever does, blocks come from malloc.
        let pages = (limit.saturating_mul(2).saturating_add(1 << 30) / PAGE).min(1 << 24);
        let len = pages * PAGE + PAGE;
        // SAFETY: a fresh private anonymous mapping with no access; nothing else refers to
        // it. PROT_NONE keeps it out of the commit charge until pages are committed.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            tracing::warn!(len, "no address space for item slots; using malloc for every item");
            return None;
        }
        let base = (raw as usize).next_multiple_of(PAGE);
        Some(Self {
            map: (raw as usize, len),
            base,
            pages,
            live_bytes: AtomicUsize::new(0),
            doomed_pages: AtomicU64::new(0),
            pool: Mutex::new(Pool::default()),
            classes: (0..CLASSES).map(|_| Mutex::new(Class::default())).collect(),
        })
    }

    fn contains(&self, ptr: NonNull<u8>) -> bool {
        let a = ptr.as_ptr() as usize;
        a >= self.base && a < self.base + self.pages * PAGE
    }

    /// The page a block of ours is in.
    fn page_of(&self, ptr: NonNull<u8>) -> u32 {
        ((ptr.as_ptr() as usize - self.base) / PAGE) as u32
    }

    fn page_addr(&self, page: u32) -> usize {
        self.base + page as usize * PAGE
    }

    fn header(&self, page: u32) -> &PageHeader {
        // SAFETY: `page` was handed out by the pool, so its memory is committed, and its
        // first bytes hold a PageHeader (all atomics, valid for any bytes, zeroes included;
        // pages are aligned to PAGE, more than the header's alignment).
        unsafe { &*(self.page_addr(page) as *const PageHeader) }
    }

    fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        let mut class = lock(&self.classes[size / GRAIN - 1]);
        let page = match class.partial.last() {
            Some(&p) => p,
            None => {
                let p = self.new_page(size)?;
                self.header(p).partial_pos.store(class.partial.len() as u32, Relaxed);
                class.partial.push(p);
                p
            }
        };
        let h = self.header(page);
        let head = h.free_head.load(Relaxed);
        let offset = if head != 0 {
            let addr = self.page_addr(page) + head as usize;
            // SAFETY: a free slot in a page of ours holds the next free offset in its first
            // four bytes (written by `free`); we hold the class lock.
            let next = unsafe { std::ptr::read_unaligned(addr as *const u32) };
            h.free_head.store(next, Relaxed);
            head
        } else {
            let b = h.bump.load(Relaxed);
            h.bump.store(b + size as u32, Relaxed);
            b
        };
        h.live.fetch_add(1, Relaxed);
        self.live_bytes.fetch_add(size, Relaxed);
        if h.free_head.load(Relaxed) == 0 && h.bump.load(Relaxed) as usize + size > PAGE {
            h.partial_pos.store(NONE, Relaxed);
            class.partial.pop();
        }
        NonNull::new((self.page_addr(page) + offset as usize) as *mut u8)
    }

    fn free(&self, ptr: NonNull<u8>) {
        let addr = ptr.as_ptr() as usize;
        let page = self.page_of(ptr);
        let h = self.header(page);
        // The slot size never changes while the page holds a live block.
        let size = h.slot.load(Relaxed) as usize;
        let mut class = lock(&self.classes[size / GRAIN - 1]);
        let offset = (addr - self.page_addr(page)) as u32;
        // SAFETY: the block is being given back by its only owner, so its first four bytes
        // are ours to reuse as the free-list link; we hold the class lock.
        unsafe { std::ptr::write_unaligned(addr as *mut u32, h.free_head.load(Relaxed)) };
        h.free_head.store(offset, Relaxed);
        let live = h.live.fetch_sub(1, Relaxed) - 1;
        self.live_bytes.fetch_sub(size, Relaxed);
        if h.doomed.load(Relaxed) != 0 {
            if live == 0 {
                drop(class);
                self.release(page);
            }
            return;
        }
        if h.partial_pos.load(Relaxed) == NONE {
            h.partial_pos.store(class.partial.len() as u32, Relaxed);
            class.partial.push(page);
        }
        // An empty page goes back to the pool, unless it is the class's only page with
        // room (then a set and delete of one item do not map and unmap a page each time;
        // [`trim`] gives that one back later if it stays empty).
        if live == 0 && class.partial.len() > 1 {
            self.unlist(&mut class, h.partial_pos.load(Relaxed) as usize);
            drop(class);
            self.release(page);
        }
    }

    /// Takes the page at `pos` off its class's list of pages with room.
    fn unlist(&self, class: &mut Class, pos: usize) {
        let page = class.partial.swap_remove(pos);
        if let Some(&moved) = class.partial.get(pos) {
            self.header(moved).partial_pos.store(pos as u32, Relaxed);
        }
        self.header(page).partial_pos.store(NONE, Relaxed);
    }

    /// See [`doom_sparse`].
    fn doom_sparse(&self, only_if_severe: bool) -> bool {
        let in_use = {
            let pool = lock(&self.pool);
            (pool.used - pool.free.len()) * PAGE
        };
        let slack = in_use.saturating_sub(self.live_bytes.load(Relaxed));
        let tolerated = if only_if_severe { in_use / 8 + (1 << 20) } else { in_use / 16 + (512 << 10) };
        if slack <= tolerated {
            return false;
        }
        let mut doomed = false;
        for c in self.classes.iter() {
            let mut class = lock(c);
            let mut pos = 0;
            while pos < class.partial.len() {
                let page = class.partial[pos];
                let h = self.header(page);
                let live = h.live.load(Relaxed) as usize * h.slot.load(Relaxed) as usize;
                // Keep the class's last page with room, and pages at least half full.
                if class.partial.len() == 1 || live >= PAGE / 2 {
                    pos += 1;
                    continue;
                }
                self.unlist(&mut class, pos);
                if h.live.load(Relaxed) == 0 {
                    self.release(page);
                } else {
                    h.doomed.store(1, Relaxed);
                    self.doomed_pages.fetch_add(1, Relaxed);
                    doomed = true;
                }
            }
        }
        doomed
    }

    /// Gives back pages kept empty by their class (see `free`).
    fn trim(&self) {
        for c in self.classes.iter() {
            let mut class = lock(c);
            if let [page] = class.partial[..]
                && self.header(page).live.load(Relaxed) == 0
            {
                self.unlist(&mut class, 0);
                drop(class);
                self.release(page);
            }
        }
    }

    /// A fresh page for slots of `size` bytes, from the pool or the untouched range.
    fn new_page(&self, size: usize) -> Option<u32> {
        let mut pool = lock(&self.pool);
        let page = match pool.free.pop() {
            Some(p) => p,
            None => {
                if pool.used == self.pages {
                    return None;
                }
                if pool.used == pool.committed {
                    let step = (COMMIT_STEP / PAGE).min(self.pages - pool.committed);
                    let at = self.page_addr(pool.committed as u32) as *mut libc::c_void;
                    // SAFETY: the pages are inside our reservation and not yet in use.
                    let rc = unsafe { libc::mprotect(at, step * PAGE, libc::PROT_READ | libc::PROT_WRITE) };
                    if rc != 0 {
                        return None;
                    }
                    pool.committed += step;
                }
                pool.used += 1;
                (pool.used - 1) as u32
            }
        };
        drop(pool);
        let h = self.header(page);
        h.slot.store(size as u32, Relaxed);
        h.free_head.store(0, Relaxed);
        h.bump.store(PAGE_HEADER as u32, Relaxed);
        h.live.store(0, Relaxed);
        h.doomed.store(0, Relaxed);
        Some(page)
    }

    /// Gives an empty page's memory back to the OS and the page to the pool.
    fn release(&self, page: u32) {
        let at = self.page_addr(page) as *mut libc::c_void;
        // SAFETY: the page is empty and in no class's list, so nothing refers into it; after
        // MADV_DONTNEED it reads as zeroes, which `new_page` overwrites anyway.
        unsafe { libc::madvise(at, PAGE, libc::MADV_DONTNEED) };
        lock(&self.pool).free.push(page);
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: our own mapping; dropping the Slab means no block from it is alive (the
        // process-wide one is never dropped).
        unsafe { libc::munmap(self.map.0 as *mut libc::c_void, self.map.1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_to_eight_and_large_blocks_go_to_malloc() {
        assert_eq!(slot_for(134), Some(136));
        assert_eq!(slot_for(24), Some(24));
        assert_eq!(slot_for(MAX_SLOT + 1), None);
        assert!(alloc(MAX_SLOT + 1).is_none());
    }

    #[test]
    fn pages_fill_empty_and_come_back() {
        // A slab of its own, so other tests' items do not share its pages.
        let s = Slab::reserve(1 << 20).expect("address space");
        let size = 1000;
        let per_page = (PAGE - PAGE_HEADER) / size;
        let blocks: Vec<NonNull<u8>> = (0..per_page * 3).map(|_| s.alloc(size).expect("slot")).collect();
        for (i, b) in blocks.iter().enumerate() {
            assert!(s.contains(*b));
            // SAFETY: each block is `size` bytes and ours.
            unsafe { std::ptr::write_bytes(b.as_ptr(), i as u8, size) };
        }
        let pages: std::collections::BTreeSet<usize> = blocks.iter().map(|b| b.as_ptr() as usize / PAGE).collect();
        assert_eq!(pages.len(), 3, "slots are packed into pages");
        assert!(lock(&s.classes[size / GRAIN - 1]).partial.is_empty(), "all three pages are full");
        for (i, b) in blocks.iter().enumerate() {
            // SAFETY: as above; nothing else wrote the block.
            assert!(unsafe { std::slice::from_raw_parts(b.as_ptr(), size) }.iter().all(|&x| x == i as u8));
        }
        for b in &blocks {
            s.free(*b);
        }
        assert_eq!(lock(&s.pool).free.len(), 2, "emptied pages go back to the pool");
        assert_eq!(lock(&s.classes[size / GRAIN - 1]).partial.len(), 1, "one page kept for the class");
        // Freed slots are reused before new pages, and pooled pages serve any class.
        let again = s.alloc(size).expect("slot");
        assert!(pages.contains(&(again.as_ptr() as usize / PAGE)), "the kept page is used first");
        let other = s.alloc(24).expect("slot");
        assert!(pages.contains(&(other.as_ptr() as usize / PAGE)), "a pooled page is reused");
        let pool = lock(&s.pool);
        assert_eq!((pool.free.len(), pool.used), (1, 3));
        drop(pool);
        let heap = Box::new(0u8);
        assert!(!s.contains(NonNull::from(&*heap)), "a malloc block is not ours");
    }
}
