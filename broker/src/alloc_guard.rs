//! A global allocator that keeps a forged element count from aborting the broker.
//!
//! The `kafka-protocol` decoders pre-allocate `Vec::with_capacity(n)` from the element count a
//! client claims (up to 2^32). Frames are bounded by `socket.request.max.bytes`, so such a decode
//! always fails a few bytes later, but the up-front reservation of n × size_of::<T>() can exceed
//! RAM; with Linux's heuristic overcommit, malloc then fails and Rust aborts the process. Requests
//! of 1 GiB and more are therefore served by `mmap(MAP_NORESERVE)`: address space only, no commit
//! charge, and nothing is touched because the decode fails before writing to it. Smaller requests
//! go to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

const LARGE: usize = 1 << 30;

pub struct GuardedAlloc;

fn page_aligned(layout: &Layout) -> bool {
    layout.align() <= 4096
}

unsafe fn map_large(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping; no file descriptor and no fixed address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

// SAFETY: large blocks are page-aligned mappings released with munmap of the same size; all other
// blocks are forwarded to the system allocator with the same layout.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && page_aligned(&layout) {
            unsafe { map_large(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE && page_aligned(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map_large(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE && page_aligned(&layout) {
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_large = layout.size() >= LARGE && page_aligned(&layout);
        let new_large = new_size >= LARGE && page_aligned(&layout);
        if !old_large && !new_large {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the new layout keeps the alignment; copying min(old,new) bytes stays in bounds.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forged_huge_capacity_does_not_abort() {
        // 2^31 elements of 100 bytes: 200 GiB of address space, never touched.
        let v: Vec<[u8; 100]> = Vec::with_capacity(1 << 31);
        assert!(v.capacity() >= 1 << 31);
        drop(v);
        let mut small: Vec<u8> = Vec::with_capacity(16);
        small.extend_from_slice(b"still works");
        assert_eq!(&small[..], b"still works");
    }

    #[test]
    fn growing_across_the_threshold_keeps_contents() {
        let mut v: Vec<u8> = vec![7u8; 1 << 20];
        v.reserve((1 << 30) + 1);
        assert!(v.iter().all(|&b| b == 7));
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v, vec![7u8; 10]);
    }
}
