//! Slots for small item blocks, carved from 32 KiB pages of an address range each store
//! reserves for itself: a block costs its length rounded up to 8 bytes, with no per-block
//! allocator header and no 16-byte rounding (glibc's malloc makes a 134-byte item cost
//! 144 bytes; here it is 136), and a page whose items are all gone goes back to the OS and
//! to any size class.
//!
//! A [`Slab`] is owned by one `Store`, which creates it for its memory limit and drops it
//! after its table (the items free their blocks into it); two stores share no pages,
//! counters or address space. Dropping a slab unmaps its range (one still holding blocks,
//! which a store never leaves, is leaked instead: see `Drop for Slab`).
//!
//! Every page holds slots of one size (its class). A class keeps the pages that have a
//! free slot; a page keeps its own free list, live count and a pointer to its slab in a
//! header at its start. Pages are aligned to their size, so [`free`] finds a block's page
//! by rounding its address down, and the slab from the page: an item (an 8-byte pointer)
//! carries no slab pointer, and no process-wide slab is needed to find one. An emptied page
//! can be taken out whole. Blocks over [`MAX_SLOT`] bytes, or any block once the range is
//! used up, come from malloc instead; the item records which in its header (`item.rs`).
//!
//! Locks: one mutex per class (held for a free-list pop or push) and one for the page
//! pool (taken inside a class lock, never the other way round).

use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard};

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
/// while no class holds the page), except `slot`, `slab` and `doomed`, read by [`free`]
/// and [`is_doomed`] for a live block of the page; relaxed atomics are only there to make
/// the shared access safe, not to order anything.
struct PageHeader {
    /// The slab whose range holds the page; set whenever the page is handed out (always to
    /// the same slab), and valid while the page holds a live block.
    slab: AtomicPtr<Inner>,
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
    /// Set when the page is to be emptied (see [`Slab::doom_sparse`]): no new blocks go in,
    /// and it goes back to the pool when its last block is freed. Read without the lock.
    doomed: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<PageHeader>() <= PAGE_HEADER);
const _: () = assert!(PAGE.is_power_of_two() && PAGE_HEADER.is_multiple_of(std::mem::align_of::<PageHeader>()));

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

/// One store's slots: an owning pointer to the slab's state, which stays at one address
/// for its whole life because page headers point at it.
///
/// Not a `Box`: blocks are freed through the page headers' raw pointers, from any thread,
/// while the owner is moved about (into an `Arc`, say), which a `Box`'s claim to unique
/// access would not allow.
pub struct Slab {
    inner: NonNull<Inner>,
}

// SAFETY: a Slab owns its Inner as a Box would, and Inner (atomics and mutexes, and the
// mapping's address as plain numbers) is Send and Sync, so the Slab may be too.
unsafe impl Send for Slab {}
// SAFETY: as above; `&Slab` only gives `&Inner`.
unsafe impl Sync for Slab {}

struct Inner {
    /// The mapping, as mmap returned it; (0, 0) if none could be had.
    map: (usize, usize),
    base: usize,
    pages: usize,
    /// Bytes in live slots. Freeing a block takes its bytes off last, after its last use
    /// of the slab: the owner frees the slab only when this is 0 (see [`Slab`]'s `Drop`).
    live_bytes: AtomicUsize,
    /// Pages doomed so far (memcached's `slabs_moved`).
    doomed_pages: AtomicU64,
    pool: Mutex<Pool>,
    classes: Box<[Mutex<Class>]>,
}

/// The slot size for a block of `len` bytes, if it goes in a slot. Pure arithmetic: a slab
/// out of pages (or that could not reserve any) puts a slot-sized block in malloc instead.
pub fn slot_size(len: usize) -> Option<usize> {
    (len <= MAX_SLOT).then(|| len.div_ceil(GRAIN) * GRAIN)
}

impl Slab {
    /// A slab with address space for `limit` bytes of items (and room for fragmentation).
    /// Address space only: memory is used as pages fill. If none can be reserved, every
    /// block comes from malloc.
    pub fn new(limit: usize) -> Self {
        Self { inner: NonNull::from(Box::leak(Box::new(Inner::reserve(limit)))) }
    }

    fn inner(&self) -> &Inner {
        // SAFETY: allocated in `new` and freed only by `drop`, which takes `&mut self`.
        unsafe { self.inner.as_ref() }
    }

    /// A block of `len` bytes from a slot, or None if it is not slot-sized or no page is
    /// left. Give it back with [`free`].
    pub fn alloc(&self, len: usize) -> Option<NonNull<u8>> {
        self.inner().alloc(slot_size(len)?)
    }

    /// When slots in use fill pages badly (after the mix of item sizes changed, pages hold
    /// a few items each), marks the pages less than half full as doomed: no block goes in
    /// them any more, and each goes back to the OS when its last block is freed. True if
    /// any page was doomed; the store then moves the items out of them ([`is_doomed`]).
    /// With `only_if_severe`, only when an eighth of the pages' memory is slack (a burst
    /// of a new size mix), not the usual sixteenth.
    pub fn doom_sparse(&self, only_if_severe: bool) -> bool {
        self.inner().doom_sparse(only_if_severe)
    }

    /// Pages doomed so far, for `stats` (`slabs_moved`: pages whose items were moved so
    /// the page could go).
    pub fn pages_moved(&self) -> u64 {
        self.inner().doomed_pages.load(Relaxed)
    }

    /// `stats reset`: counts moved pages from 0 again.
    pub fn reset_pages_moved(&self) {
        self.inner().doomed_pages.store(0, Relaxed);
    }

    /// Gives back to the OS the pages each size class keeps empty for reuse: for the
    /// store's background task, so a class that is no longer used holds no memory.
    pub fn trim(&self) {
        self.inner().trim();
    }

    /// Whether `ptr` lies in this slab's range.
    pub fn contains(&self, ptr: NonNull<u8>) -> bool {
        self.inner().contains(ptr)
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // Acquire pairs with the Release that ends every `Inner::free`: a block freed on
        // another thread is done with the Inner before the Inner goes.
        let live = self.inner().live_bytes.load(Acquire);
        // The store drops its table first, so no block is left. If one were, freeing the
        // slab would leave it pointing at freed memory: the slab is leaked instead.
        debug_assert_eq!(live, 0, "a slab dropped with blocks still in it");
        if live != 0 {
            tracing::error!(live, "a slab dropped with blocks still in it; leaking it");
            return;
        }
        // SAFETY: allocated by Box in `new`; no block refers to it any more (live is 0,
        // and no new one can be allocated, as that takes `&self`), and nothing uses
        // `self.inner` after this.
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

impl std::fmt::Debug for Slab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner();
        f.debug_struct("Slab")
            .field("pages", &s.pages)
            .field("live_bytes", &s.live_bytes.load(Relaxed))
            .field("doomed_pages", &s.doomed_pages.load(Relaxed))
            .finish()
    }
}

/// The header of the page holding `ptr`.
///
/// # Safety
/// `ptr` must be a live block from [`Slab::alloc`]: its page stays committed, and its
/// header valid, until the block is freed.
unsafe fn page_header<'a>(ptr: NonNull<u8>) -> &'a PageHeader {
    let page = ptr.as_ptr().map_addr(|a| a & !(PAGE - 1));
    // SAFETY: pages are aligned to PAGE, so this is the start of the block's page, whose
    // first bytes hold its PageHeader (all atomics) while the block lives (the caller's
    // contract).
    unsafe { &*(page as *const PageHeader) }
}

/// Gives back a block from [`Slab::alloc`], to the slab it came from (found through its
/// page's header).
///
/// # Safety
/// `ptr` must be a live block from [`Slab::alloc`], given up by its only owner: nothing
/// may use it after.
pub unsafe fn free(ptr: NonNull<u8>) {
    // SAFETY: a live slot block (the caller's contract).
    let slab = unsafe { page_header(ptr) }.slab.load(Relaxed);
    // SAFETY: the page's slab was set when the page was handed out, and a slab is not
    // freed while any of its blocks is live (see `Drop for Slab`); this one is live until
    // `free` takes its bytes off, the last thing `free` does with the slab.
    unsafe { &*slab }.free(ptr);
}

/// Whether the block at `ptr` is in a doomed page (and should be moved).
///
/// # Safety
/// `ptr` must be a live block from [`Slab::alloc`].
pub unsafe fn is_doomed(ptr: NonNull<u8>) -> bool {
    // SAFETY: the caller's contract.
    unsafe { page_header(ptr) }.doomed.load(Relaxed) != 0
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under these locks stays consistent at every await-free step, so a panic
    // elsewhere while one was held leaves nothing half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn reserve(limit: usize) -> Self {
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
            return Self::with_range((0, 0), 0, 0);
        }
        Self::with_range((raw as usize, len), (raw as usize).next_multiple_of(PAGE), pages)
    }

    fn with_range(map: (usize, usize), base: usize, pages: usize) -> Self {
        Self {
            map,
            base,
            pages,
            live_bytes: AtomicUsize::new(0),
            doomed_pages: AtomicU64::new(0),
            pool: Mutex::new(Pool::default()),
            classes: (0..CLASSES).map(|_| Mutex::new(Class::default())).collect(),
        }
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
        let emptied = if h.doomed.load(Relaxed) != 0 {
            live == 0
        } else {
            if h.partial_pos.load(Relaxed) == NONE {
                h.partial_pos.store(class.partial.len() as u32, Relaxed);
                class.partial.push(page);
            }
            // An empty page goes back to the pool, unless it is the class's only page with
            // room (then a set and delete of one item do not map and unmap a page each
            // time; [`Slab::trim`] gives that one back later if it stays empty).
            let give_back = live == 0 && class.partial.len() > 1;
            if give_back {
                self.unlist(&mut class, h.partial_pos.load(Relaxed) as usize);
            }
            give_back
        };
        drop(class);
        if emptied {
            self.release(page);
        }
        // Last, and nothing of `self` is touched after: once this reaches 0 the slab's
        // owner may free it (Release: see `Drop for Slab`).
        self.live_bytes.fetch_sub(size, Release);
    }

    /// Takes the page at `pos` off its class's list of pages with room.
    fn unlist(&self, class: &mut Class, pos: usize) {
        let page = class.partial.swap_remove(pos);
        if let Some(&moved) = class.partial.get(pos) {
            self.header(moved).partial_pos.store(pos as u32, Relaxed);
        }
        self.header(page).partial_pos.store(NONE, Relaxed);
    }

    /// See [`Slab::doom_sparse`].
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
        h.slab.store(std::ptr::from_ref(self).cast_mut(), Relaxed);
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

impl Drop for Inner {
    fn drop(&mut self) {
        if self.map.1 == 0 {
            return;
        }
        // SAFETY: our own mapping; an Inner is dropped only by its Slab, once no block
        // from it is live, so nothing refers into the range.
        unsafe { libc::munmap(self.map.0 as *mut libc::c_void, self.map.1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_to_eight_and_large_blocks_go_to_malloc() {
        assert_eq!(slot_size(134), Some(136));
        assert_eq!(slot_size(24), Some(24));
        assert_eq!(slot_size(MAX_SLOT + 1), None);
        assert!(Slab::new(1 << 20).alloc(MAX_SLOT + 1).is_none());
    }

    #[test]
    fn pages_fill_empty_and_come_back() {
        let slab = Slab::new(1 << 20);
        let s = slab.inner();
        assert!(s.pages > 0, "address space");
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
            // SAFETY: a live block of ours, not used again; freed through its page header.
            unsafe { free(*b) };
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
        s.free(again);
        s.free(other);
        assert_eq!(s.live_bytes.load(Relaxed), 0, "the slab can be dropped");
    }

    #[test]
    fn two_stores_in_one_process_are_independent() {
        use super::super::tests::Classic;
        use super::super::{Store, StoreMode, StoreOutcome};
        use crate::clock::Clock;
        let clock = Clock::starting_at(1_800_000_000);
        let a = Store::new(clock.clone(), 64 << 20, 1 << 20);
        let b = Store::new(clock, 512 << 20, 1 << 20);
        let live = |s: &Store| s.slab.inner().live_bytes.load(Relaxed);
        assert!(b.slab.inner().pages > a.slab.inner().pages, "each reserves for its own limit");
        let value = |i: usize| format!("{i:0100}");
        for i in 0..200 {
            assert_eq!(
                b.put(StoreMode::Set, format!("b{i}").as_bytes(), 0, 0, value(i).as_bytes()),
                StoreOutcome::Stored
            );
        }
        let b_live = live(&b);
        assert!(b_live >= 200 * 120);
        // Fill `a` with one size and delete three items in four: its pages are a quarter
        // full, so defragmenting dooms them and moves the items out.
        let n = 40_000;
        for i in 0..n {
            a.put(StoreMode::Set, format!("a{i}").as_bytes(), 0, 0, value(i).as_bytes());
        }
        assert!(live(&a) >= n * 120);
        assert_eq!(live(&b), b_live, "b's slab does not hold a's items");
        for i in (0..n).filter(|i| i % 4 != 0) {
            assert!(a.del(format!("a{i}").as_bytes()));
        }
        a.defragment(false);
        assert!(a.pages_moved() > 0 && a.stats.totals().relocated > 0, "a's sparse pages were emptied");
        assert_eq!(b.pages_moved(), 0, "b's counter is its own");
        assert_eq!(b.stats.totals().relocated, 0);
        for i in (0..n).step_by(4) {
            assert_eq!(a.get(format!("a{i}").as_bytes()).expect("kept").value, value(i).as_bytes());
        }
        // Dropping `a` frees its items into its own slab, and then the slab (which checks,
        // in debug builds, that no block is left in it); `b` is untouched.
        drop(a);
        assert_eq!(live(&b), b_live);
        for i in 0..200 {
            assert_eq!(b.get(format!("b{i}").as_bytes()).expect("intact").value, value(i).as_bytes());
        }
    }
}
