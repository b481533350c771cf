//! A string table: many short strings stored end to end in one buffer, with a hash index from text to
//! entry number.
//!
//! A vocabulary holds hundreds of thousands of short texts (Gemma 3: 262 144 tokens; Llama 3: 280 147 BPE
//! merges). As one `String` each plus a `HashMap<String, u32>` keyed by a second copy, Gemma 3's tokens took
//! about 40 MB of heap (two allocations of at least 32 bytes per token, a 32-byte `String` in each vector or
//! map slot); here they take the text bytes, 4 bytes of end offset and about 5 bytes of index per entry.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// The table grew past `u32::MAX` bytes of text or `u32::MAX` entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Overflow;

/// Strings stored end to end; entry `i` is `text[ends[i - 1]..ends[i]]` (`ends[-1]` = 0).
#[derive(Clone, Debug, Default)]
pub(crate) struct StrTable {
    text: String,
    ends: Vec<u32>,
    /// Entry numbers, hashed by their text; each text appears at most once.
    index: HashTable<u32>,
    state: RandomState,
}

impl StrTable {
    /// An empty table with room for `entries` entries of `bytes` text bytes in all.
    pub(crate) fn with_capacity(entries: usize, bytes: usize) -> Self {
        StrTable {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(entries),
            index: HashTable::with_capacity(entries),
            state: RandomState::new(),
        }
    }

    /// Bytes of text in all entries.
    pub(crate) fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Entry `i`, or `None` out of range.
    pub(crate) fn get(&self, i: u32) -> Option<&str> {
        let i = i as usize;
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start..end])
    }

    /// The entry whose text is `s`: the last one pushed with [`StrTable::push`].
    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let hash = self.state.hash_one(s);
        self.index.find(hash, |&i| self.at(i) == s).copied()
    }

    /// Appends `s` as a new entry and returns its number; the index maps `s` to it from now on, in place of
    /// an earlier entry with the same text (which stays readable by number).
    pub(crate) fn push(&mut self, s: &str) -> Result<u32, Overflow> {
        let i = u32::try_from(self.ends.len()).map_err(|_| Overflow)?;
        let end = u32::try_from(self.text.len() + s.len()).map_err(|_| Overflow)?;
        self.text.push_str(s);
        self.ends.push(end);
        let hash = self.state.hash_one(s);
        let (text, ends) = (&self.text, &self.ends);
        let text_of = |j: u32| entry(text, ends, j);
        match self.index.find_mut(hash, |&j| text_of(j) == s) {
            Some(slot) => *slot = i,
            None => {
                let state = &self.state;
                self.index.insert_unique(hash, i, |&j| state.hash_one(text_of(j)));
            }
        }
        Ok(i)
    }

    /// Entry `i`; panics when out of range, as slice indexing does.
    pub(crate) fn at(&self, i: u32) -> &str {
        entry(&self.text, &self.ends, i)
    }
}

fn entry<'a>(text: &'a str, ends: &[u32], i: u32) -> &'a str {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &text[start..ends[i] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_and_a_repeated_text_finds_its_last_entry() {
        let mut t = StrTable::with_capacity(0, 0);
        let words = ["a", "", "▁the", "a", "<0x0A>", "bb"];
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.push(w).unwrap(), i as u32);
        }
        for (i, w) in words.iter().enumerate() {
            assert_eq!(t.get(i as u32), Some(*w));
        }
        assert_eq!(t.get(words.len() as u32), None);
        assert_eq!(t.find("a"), Some(3));
        assert_eq!(t.find(""), Some(1));
        assert_eq!(t.find("▁the"), Some(2));
        assert_eq!(t.find("b"), None);
        assert_eq!(t.find("▁"), None);
    }

    #[test]
    fn the_index_survives_growth() {
        let mut t = StrTable::default();
        for i in 0..5000u32 {
            t.push(&format!("w{i}")).unwrap();
        }
        for i in (0..5000u32).step_by(7) {
            assert_eq!(t.find(&format!("w{i}")), Some(i));
        }
        assert_eq!(t.find("w5000"), None);
    }
}
