//! The one place this crate uses `unsafe`: mapping a file read-only.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

/// A read-only memory map of a whole file (an empty file maps to an empty slice).
pub(crate) struct Mmap(Option<memmap2::Mmap>);

impl Mmap {
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        #[allow(clippy::disallowed_methods)]
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mmap(None));
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating or rewriting the
        // file while it is mapped is outside what any mmap reader (llama.cpp included) can guard against; we never
        // write through the map.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Mmap(Some(map)))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl Mmap {
    /// Tells the kernel this process no longer needs the pages wholly inside `range` (`madvise(MADV_DONTNEED)`):
    /// they leave this process's resident set, and are read from the file again if touched. For a model that
    /// repacked a tensor into its own memory, so its RSS does not hold the tensor twice.
    ///
    /// # Errors
    /// The OS error of `madvise`; nothing on targets without it.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) -> std::io::Result<()> {
        #[cfg(unix)]
        if let Some(m) = &self.0 {
            const PAGE: usize = 4096;
            let start = range.start.div_ceil(PAGE) * PAGE;
            let end = (range.end / PAGE) * PAGE;
            if end > start {
                // SAFETY: the map is read-only and file-backed: dropping its pages cannot change what a later read
                // sees (the kernel reads the file again), so no live reference observes a change.
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)? };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
        Ok(())
    }
}
