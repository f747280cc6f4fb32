//! The working memory of one argon2 hash (19 MiB at the production cost), in memory the kernel is asked to
//! back with 2 MiB pages.
//!
//! argon2 reads its blocks in a data-dependent order all over those 19 MiB. With 4 KiB pages that is about
//! 4,900 pages, more than the processor's TLB holds, so most block reads also walk the page tables; with
//! 2 MiB pages it is ten. Two hashes at once, one a core, did 9 % more hashes a second this way on the 2-core
//! machine of the load harness, and one hash alone 3 % more (`docs/performance-history.md`, the run of
//! 2026-12-03 16:35). Where the kernel gives no huge pages (another system, or transparent huge pages turned
//! off) the memory is ordinary memory and the hash is the same.

use std::alloc::Layout;
use std::ptr::NonNull;

use argon2::Block;
use zeroize::Zeroize;

/// The size of a huge page on x86-64 and most aarch64 kernels; the memory is aligned to it so that the
/// kernel can map whole huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// Blocks of argon2 working memory, zeroed when dropped (they are derived from a password).
pub struct WorkingMemory {
    blocks: NonNull<Block>,
    len: usize,
}

// SAFETY: the memory is owned by this value alone, like a `Vec<Block>`'s.
unsafe impl Send for WorkingMemory {}

impl Default for WorkingMemory {
    fn default() -> Self {
        Self {
            blocks: NonNull::dangling(),
            len: 0,
        }
    }
}

impl WorkingMemory {
    fn layout(len: usize) -> Layout {
        Layout::array::<Block>(len)
            .and_then(|l| l.align_to(HUGE_PAGE))
            .expect("the argon2 memory cost is bounded by the configuration")
    }

    fn with_len(len: usize) -> Self {
        if len == 0 {
            return Self::default();
        }
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(start) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        // Advised before the first write: the pages are mapped when first touched, at the size advised.
        #[cfg(target_os = "linux")]
        // SAFETY: the range is this allocation, and the advice changes how it is backed, not its contents.
        unsafe {
            libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE);
        }
        // SAFETY: `raw` is valid for `layout.size()` bytes; all zeroes is a valid `Block` (an array of u64).
        unsafe { std::ptr::write_bytes(raw, 0, layout.size()) };
        Self {
            blocks: start.cast(),
            len,
        }
    }

    /// `count` blocks, reusing this memory when it has that many.
    pub fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.len != count {
            *self = Self::with_len(count);
        }
        self.as_mut_slice()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_mut_slice(&mut self) -> &mut [Block] {
        // SAFETY: `blocks` points at `len` initialised blocks owned by `self` (or dangles with `len` 0).
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.len) }
    }
}

impl Drop for WorkingMemory {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        for block in self.as_mut_slice() {
            block.zeroize();
        }
        // SAFETY: allocated in `with_len` with this same layout.
        unsafe { std::alloc::dealloc(self.blocks.as_ptr().cast(), Self::layout(self.len)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_zeroed_aligned_and_reused_at_the_same_size() {
        let mut memory = WorkingMemory::default();
        assert!(memory.is_empty());
        let blocks = memory.blocks(2048);
        assert_eq!(blocks.len(), 2048);
        assert_eq!(blocks.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|&w| w == 0)));
        blocks[7].as_mut()[3] = 42;
        let first = blocks.as_ptr();
        let again = memory.blocks(2048);
        assert_eq!(again.as_ptr(), first);
        assert_eq!(again[7].as_ref()[3], 42);
        assert_eq!(memory.blocks(64).len(), 64);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_is_asked_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            return; // a kernel without transparent huge pages refuses the advice
        }
        let mut memory = WorkingMemory::default();
        let start = memory.blocks(19 * 1024).as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            if let Some((from, to)) = range
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                inside = (from..to).contains(&start);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
                return;
            }
        }
        panic!("no mapping holds the memory");
    }
}
