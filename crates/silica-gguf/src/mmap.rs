//! The one place this crate uses `unsafe`: mapping a file read-only.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

/// A read-only memory map of a whole file (an empty file maps to an empty slice), with the file kept open for
/// reads that should not map pages ([`Mmap::read_at`]).
pub(crate) struct Mmap(Option<(memmap2::Mmap, File)>);

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
        Ok(Mmap(Some((map, file))))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |(m, _)| &m[..])
    }

    /// Fills `out` with the file's bytes at `offset` through the file descriptor (`pread`), so that no page of
    /// the map becomes resident in this process; the bytes come from the page cache as the map's would. On
    /// targets without `pread`, copies from the map.
    ///
    /// # Errors
    /// The OS error of the read; `UnexpectedEof` past the end of the file.
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> std::io::Result<()> {
        #[cfg(unix)]
        if let Some((_, file)) = &self.0 {
            use std::os::unix::fs::FileExt;
            return file.read_exact_at(out, offset as u64);
        }
        let src = self
            .as_slice()
            .get(offset..offset + out.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        out.copy_from_slice(src);
        Ok(())
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
        if let Some((m, _)) = &self.0 {
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
