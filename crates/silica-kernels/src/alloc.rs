//! Process memory settings: glibc's reuse of the activations' memory, and transparent huge pages for the repacked
//! weights.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// Makes glibc's `malloc` keep the memory the engine frees and hand it out again, instead of returning it to the
/// kernel and taking fresh zeroed pages for the next forward pass.
///
/// Every forward pass of `silica-model` allocates its activations anew (candle tensors: `[n_tokens, n_ff]` f32 is
/// 16 MiB at n_tokens = 512, n_ff = 8192). glibc serves requests above its mmap threshold (128 KiB at start,
/// raised on free up to 32 MiB) with `mmap` and gives freed heap tops back past `M_TRIM_THRESHOLD`, so each pass
/// page-faulted its buffers in again: on the test machine (AMD EPYC Zen 4, 2 vCPUs, a VM) 1B-shape Q4_0 pp512
/// went from 208–213 to 244–248 t/s with these two settings (alternating runs of `silica bench -p 512 -n 0 -r 3`,
/// the settings given as `GLIBC_TUNABLES`). The threshold is glibc's maximum (`HEAP_MAX_SIZE / 2`, see glibc
/// `malloc/malloc.c`, `do_set_mmap_threshold`); the weights (mapped files, and repacked copies above 32 MiB) are
/// not affected. Peak memory is unchanged; memory freed after the peak stays with the process until it exits.
///
/// Process-wide: a binary calls it once at start, before it starts threads (the `silica` binary does). Returns
/// whether the settings were applied (only with glibc; elsewhere it does nothing and returns `false`).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes malloc's tuning parameters, which glibc guards with the arena lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Whether the weight copies the CPU kernels repack at load ([`crate::repack()`]), and the buffers of
/// [`huge_page_vec`] (the CPU KV cache), ask Linux for transparent huge pages (`madvise(MADV_HUGEPAGE)`, see the
/// kernel's `admin-guide/mm/transhuge`); set by `silica --huge-pages`.
///
/// Generation reads every weight once per token, so each 4 KiB page of a 4 GB copy costs a TLB miss and a page
/// walk per token, and the hardware prefetchers stop at 4 KiB boundaries. With 2 MiB pages, on the test machine
/// (AMD EPYC Zen 4, 2 vCPUs, a VM; four alternating rounds of `silica bench -p 0 -n 64 -r 2`), 1B-shape Q4_0 tg64
/// went from 62.6–71.3 to 74.5–80.1 t/s and 7B-shape Q4_0 from 15.8–16.6 to 16.8–17.2 t/s; loading the 7B file,
/// run after run, from 1.7–2.9 s to 0.8 s (512 times fewer page faults). `BENCHMARKS.md` has the tables.
///
/// The exception is a virtual machine whose balloon device takes free memory back (virtio
/// `VIRTIO_BALLOON_F_PAGE_REPORTING`): Linux reports free blocks of 2 MiB and more to the host
/// (`mm/page_reporting.c`, `page_reporting_order`), the host unmaps them, and each huge page is then faulted in
/// again from the host. On the test machine, with a few seconds' idle between runs, loading the 7B
/// file took 4.9–5.1 s with huge pages against 1.6–2.5 s without (llama.cpp 3.7–4.7 s). [`HugePages::Auto`]
/// therefore leaves huge pages off there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HugePages {
    /// On, except under a hypervisor that takes free memory back (a virtio balloon with free page reporting).
    #[default]
    Auto,
    /// Always ask for huge pages.
    On,
    /// Never ask: 4 KiB pages, as before.
    Off,
}

/// The process-wide [`HugePages`] mode: 0 auto, 1 on, 2 off.
static HUGE_PAGES: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide [`HugePages`] mode; models loaded afterwards follow it.
pub fn set_huge_pages(mode: HugePages) {
    let v = match mode {
        HugePages::Auto => 0,
        HugePages::On => 1,
        HugePages::Off => 2,
    };
    HUGE_PAGES.store(v, Ordering::Relaxed);
}

/// Whether repacked weights ask for huge pages now: the [`HugePages`] mode, with `Auto` resolved once per process
/// (`false` on targets other than Linux with glibc, where silica does not call `madvise`).
pub fn huge_pages() -> bool {
    static AUTO: OnceLock<bool> = OnceLock::new();
    cfg!(all(target_os = "linux", target_env = "gnu"))
        && match HUGE_PAGES.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => *AUTO.get_or_init(|| {
                !hypervisor_takes_free_pages(std::path::Path::new("/sys/bus/virtio/drivers/virtio_balloon"))
            }),
        }
}

/// Whether a virtio balloon device bound under `driver_dir` (`/sys/bus/virtio/drivers/virtio_balloon`) negotiated
/// free page reporting: feature bit 5, `VIRTIO_BALLOON_F_PAGE_REPORTING` (virtio 1.2, 5.5.3). Each device's
/// `features` file holds one `0`/`1` character per feature bit, bit 0 first (Linux `drivers/virtio/virtio.c`,
/// `features_show`). A missing directory or unreadable file means no.
fn hypervisor_takes_free_pages(driver_dir: &std::path::Path) -> bool {
    const PAGE_REPORTING: usize = 5;
    let Ok(entries) = std::fs::read_dir(driver_dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with("virtio")
            && std::fs::read(e.path().join("features")).is_ok_and(|f| f.get(PAGE_REPORTING) == Some(&b'1'))
    })
}

/// Transparent huge pages are 2 MiB on x86-64 (and on aarch64 with 4 KiB base pages).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// The whole huge pages inside the byte range `start..start + len`, as `(first address, length)`; `None` when it
/// holds none.
fn huge_page_span(start: usize, len: usize) -> Option<(usize, usize)> {
    let first = start.checked_next_multiple_of(HUGE_PAGE_BYTES)?;
    let end = start.checked_add(len)? / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
    (end > first).then(|| (first, end - first))
}

/// Asks for huge pages on the whole 2 MiB pages inside `buf`. Call it before the first write: the advice applies to
/// pages faulted in afterwards. It is advice only: where Linux has transparent huge pages off (`never`) or cannot
/// find free 2 MiB blocks, the pages stay 4 KiB and nothing fails, so an error is ignored.
fn advise_huge_pages<T>(buf: &mut [MaybeUninit<T>]) {
    let Some((_first, _len)) = huge_page_span(buf.as_mut_ptr() as usize, std::mem::size_of_val(buf)) else {
        return;
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `_first.._first + _len` lies inside `buf`, memory this process owns; the advice changes how its pages
    // are backed, not what they hold.
    unsafe {
        libc::madvise(_first as *mut libc::c_void, _len, libc::MADV_HUGEPAGE);
    }
}

/// `vec![value; n]` whose whole 2 MiB pages are advised huge before they are first written, when [`huge_pages`]
/// says so: for large buffers that every token reads through, such as the KV cache. The ends outside whole 2 MiB
/// pages stay on 4 KiB pages.
pub fn huge_page_vec<T: Clone>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    if huge_pages() {
        advise_huge_pages(v.spare_capacity_mut());
    }
    v.resize(n, value);
    v
}

/// A weight copy the kernels built at load: `len` values `P`, contiguous, read-only once built. When
/// [`huge_pages`] is on and the copy spans at least one 2 MiB page, it starts on a 2 MiB boundary and its whole
/// 2 MiB pages are advised huge before anything is written, so all of it but the last partial page can be
/// backed by huge pages (a `Vec`'s start falls anywhere in a page and loses up to 2 MiB at each end; on the
/// 7B-shape Q4_0 file that left 0.6 of its 3.8 GB on 4 KiB pages). The tail past the last whole 2 MiB page stays
/// on 4 KiB pages, so resident memory does not grow; the alignment costs address space only.
pub(crate) struct WeightBuf<P> {
    ptr: std::ptr::NonNull<P>,
    len: usize,
    /// The allocation's layout; `None` for an empty buffer (nothing allocated).
    layout: Option<std::alloc::Layout>,
}

// SAFETY: `WeightBuf` owns its values as a `Vec` does.
unsafe impl<P: Send> Send for WeightBuf<P> {}
// SAFETY: shared access only reads the values.
unsafe impl<P: Sync> Sync for WeightBuf<P> {}

impl<P: bytemuck::Pod> WeightBuf<P> {
    /// Allocates `len` values and hands them, uninitialised, to `fill`.
    ///
    /// # Safety
    /// `fill` must initialise every element of the slice it is given.
    pub(crate) unsafe fn new_with(len: usize, fill: impl FnOnce(&mut [MaybeUninit<P>])) -> Self {
        // SAFETY: the caller's contract.
        unsafe { Self::new_in(len, huge_pages(), fill) }
    }

    /// [`Self::new_with`], with huge pages asked for when `huge_pages` is true (and the copy spans 2 MiB).
    ///
    /// # Safety
    /// `fill` must initialise every element of the slice it is given.
    unsafe fn new_in(len: usize, huge_pages: bool, fill: impl FnOnce(&mut [MaybeUninit<P>])) -> Self {
        // A copy the size of a matrix already mapped in memory cannot overflow `isize`: the layout error is a bug.
        let layout = std::alloc::Layout::array::<P>(len).expect("a weight copy fits the address space");
        let bytes = layout.size();
        if bytes == 0 {
            return WeightBuf {
                ptr: std::ptr::NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let huge = huge_pages && bytes >= HUGE_PAGE_BYTES;
        let layout = if huge {
            layout.align_to(HUGE_PAGE_BYTES).expect("2 MiB is a power of two")
        } else {
            layout
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) }.cast::<P>();
        let Some(ptr) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: the allocation holds `len` values `P` (`bytes` bytes, aligned at least as `P`).
        let slots = unsafe { std::slice::from_raw_parts_mut(raw.cast::<MaybeUninit<P>>(), len) };
        if huge {
            advise_huge_pages(slots);
        }
        fill(slots);
        WeightBuf {
            ptr,
            len,
            layout: Some(layout),
        }
    }
}

impl<P> std::ops::Deref for WeightBuf<P> {
    type Target = [P];
    fn deref(&self) -> &[P] {
        // SAFETY: `ptr` holds `len` values initialised by `new_with`'s `fill` (or is dangling with `len` 0 bytes).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<P> Drop for WeightBuf<P> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: `ptr` was allocated by `std::alloc::alloc` with `layout`; `P: Pod` has no drop glue.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), layout) }
        }
    }
}

impl<P> std::fmt::Debug for WeightBuf<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightBuf")
            .field("len", &self.len)
            .field("align", &self.layout.map(|l| l.align()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_span_keeps_whole_aligned_pages_inside() {
        const H: usize = HUGE_PAGE_BYTES;
        assert_eq!(huge_page_span(H, 2 * H), Some((H, 2 * H)));
        assert_eq!(huge_page_span(H + 1, 3 * H), Some((2 * H, 2 * H)));
        assert_eq!(huge_page_span(H - 4096, H + 4096), Some((H, H)));
        assert_eq!(huge_page_span(H + 1, 2 * H - 2), None);
        assert_eq!(huge_page_span(0, H - 1), None);
        assert_eq!(huge_page_span(usize::MAX - 10, 5), None);
    }

    #[test]
    fn page_reporting_is_read_from_the_balloon_feature_bits() {
        let dir = std::env::temp_dir().join(format!("silica-balloon-{}", std::process::id()));
        let dev = dir.join("virtio0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dir.join("bind"), "").unwrap();
        // Bits 1, 2 and 32 (no reporting), then with bit 5: this test machine's balloon read `0110010...`.
        std::fs::write(dev.join("features"), format!("0110000{}1\n", "0".repeat(25))).unwrap();
        assert!(!hypervisor_takes_free_pages(&dir));
        std::fs::write(dev.join("features"), format!("0110010{}1\n", "0".repeat(25))).unwrap();
        assert!(hypervisor_takes_free_pages(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!hypervisor_takes_free_pages(&dir));
    }

    #[test]
    fn weight_buffers_hold_what_was_written_and_big_ones_start_on_a_huge_page() {
        let fill = |s: &mut [MaybeUninit<u32>]| {
            for (i, v) in s.iter_mut().enumerate() {
                v.write(i as u32);
            }
        };
        for huge in [false, true] {
            for len in [0, 1, 1000, HUGE_PAGE_BYTES / 4 + 3] {
                // SAFETY: `fill` writes every element.
                let b = unsafe { WeightBuf::<u32>::new_in(len, huge, fill) };
                assert_eq!(b.len(), len);
                assert!(b.iter().enumerate().all(|(i, &v)| v == i as u32));
                if huge && len * 4 >= HUGE_PAGE_BYTES {
                    assert_eq!(
                        b.as_ptr() as usize % HUGE_PAGE_BYTES,
                        0,
                        "{b:?} at {:p}",
                        b.as_ptr()
                    );
                }
            }
        }
    }

    #[test]
    fn the_mode_decides_and_off_is_off() {
        set_huge_pages(HugePages::Off);
        assert!(!huge_pages());
        set_huge_pages(HugePages::On);
        assert_eq!(huge_pages(), cfg!(all(target_os = "linux", target_env = "gnu")));
        set_huge_pages(HugePages::Auto);
    }

    #[test]
    fn glibc_accepts_the_settings() {
        // glibc refuses an mmap threshold above `HEAP_MAX_SIZE / 2` (returns 0): the value must stay in range.
        let applied = super::keep_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
    }
}
