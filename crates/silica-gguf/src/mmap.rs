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
