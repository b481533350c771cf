//! Splitting special and user-defined tokens out of raw text before the model tokenizer runs, as llama.cpp
//! `llama_vocab::impl::tokenizer_st_partition` does: special tokens are tried one after another, longest text
//! first, and each one is cut out of every remaining raw-text fragment at all of its occurrences.

use std::ops::Range;

use crate::TokenAttr;

/// A piece of the input after partitioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Raw text still to be tokenized: a byte range of the input (always on char boundaries, never empty).
    Text(Range<usize>),
    /// A special token cut out of the text.
    Token(u32),
}

/// A byte trie over the special tokens' texts, used only to find which of them occur in a text at all, so
/// that the exact one-token-at-a-time partition visits a handful of tokens instead of thousands (Gemma 3
/// has 6 414). Terminal nodes store the token's rank in the longest-first order.
#[derive(Debug, Default)]
pub(crate) struct SpecialTrie {
    /// Children of each node, sorted by byte.
    children: Vec<Vec<(u8, u32)>>,
    /// Rank of the token ending at each node, if any.
    rank: Vec<Option<u32>>,
}

impl SpecialTrie {
    /// A trie over `texts`, where `texts[rank]` is the text of the special token of that rank.
    pub(crate) fn new<'a>(texts: impl Iterator<Item = &'a str>) -> Self {
        let mut trie = SpecialTrie {
            children: vec![Vec::new()],
            rank: vec![None],
        };
        for (rank, text) in texts.enumerate() {
            let mut node = 0usize;
            for &b in text.as_bytes() {
                node = match trie.children[node].binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(i) => trie.children[node][i].1 as usize,
                    Err(i) => {
                        let child = trie.children.len();
                        trie.children.push(Vec::new());
                        trie.rank.push(None);
                        trie.children[node].insert(i, (b, child as u32));
                        child
                    }
                };
            }
            // duplicate texts keep the first (longest-first order is stable by id)
            if trie.rank[node].is_none() {
                trie.rank[node] = Some(rank as u32);
            }
        }
        trie
    }

    /// The ranks of all special tokens occurring anywhere in `text` (overlaps included), sorted.
    pub(crate) fn occurring(&self, text: &str) -> Vec<u32> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        if self.children[0].is_empty() {
            return found;
        }
        for start in 0..bytes.len() {
            let mut node = 0usize;
            for &b in &bytes[start..] {
                match self.children[node].binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(i) => node = self.children[node][i].1 as usize,
                    Err(_) => break,
                }
                if let Some(r) = self.rank[node] {
                    found.push(r);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// C `isspace` in the "C" locale, which llama.cpp uses for LSTRIP/RSTRIP.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Cuts every occurrence of the special token `id` (text `needle`, attributes `attr`) out of the raw-text
/// fragments of `frags`.
pub(crate) fn cut_token(
    text: &str,
    frags: Vec<Fragment>,
    id: u32,
    needle: &str,
    attr: TokenAttr,
) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(frags.len() + 2);
    for frag in frags {
        let Fragment::Text(range) = frag else {
            out.push(frag);
            continue;
        };
        let (mut base, mut len) = (range.start, range.end - range.start);
        loop {
            let Some(rel) = text[base..base + len].find(needle) else {
                if len > 0 {
                    out.push(Fragment::Text(base..base + len));
                }
                break;
            };
            let at = base + rel;
            let mut left = at - base;
            if attr.contains(TokenAttr::LSTRIP) {
                while left > 0 && c_isspace(bytes[base + left - 1]) {
                    left -= 1;
                }
            }
            if left > 0 {
                out.push(Fragment::Text(base..base + left));
            }
            out.push(Fragment::Token(id));
            let after = at + needle.len();
            if after >= base + len {
                break;
            }
            let (mut r_start, mut r_len) = (after, base + len - after);
            if attr.contains(TokenAttr::RSTRIP) {
                while r_len > 0 && c_isspace(bytes[r_start]) {
                    r_start += 1;
                    r_len -= 1;
                }
            }
            base = r_start;
            len = r_len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_finds_overlapping_tokens() {
        let trie = SpecialTrie::new(["<abc>", "bc", "<a"].into_iter());
        assert_eq!(trie.occurring("x<abc>y"), vec![0, 1, 2]);
        assert_eq!(trie.occurring("b c"), Vec::<u32>::new());
        assert_eq!(trie.occurring(""), Vec::<u32>::new());
    }

    #[test]
    fn cuts_all_occurrences() {
        let text = "a<s>b<s><s>";
        let frags = cut_token(
            text,
            vec![Fragment::Text(0..text.len())],
            7,
            "<s>",
            TokenAttr::CONTROL,
        );
        assert_eq!(
            frags,
            vec![
                Fragment::Text(0..1),
                Fragment::Token(7),
                Fragment::Text(4..5),
                Fragment::Token(7),
                Fragment::Token(7)
            ]
        );
    }

    #[test]
    fn strips_spaces_when_asked() {
        let text = "a  <s>  b";
        let attr = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::LSTRIP.0 | TokenAttr::RSTRIP.0);
        let frags = cut_token(text, vec![Fragment::Text(0..text.len())], 1, "<s>", attr);
        assert_eq!(
            frags,
            vec![Fragment::Text(0..1), Fragment::Token(1), Fragment::Text(8..9)]
        );
    }
}
