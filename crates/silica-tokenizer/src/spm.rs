//! SentencePiece-style tokenization of one raw-text fragment, as llama.cpp `llm_tokenizer_spm_session`:
//! start from single characters, repeatedly merge the adjacent pair whose concatenation is the vocabulary
//! token with the highest score (ties: the leftmost pair), then emit each final symbol as its token or, when
//! it is not in the vocabulary, as byte-fallback tokens `<0xXX>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;
use crate::{Error, Result};

/// A symbol: a byte range of the text, linked to its neighbours (`usize::MAX` = none).
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    n: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// A candidate merge of `left` and its right neighbour `right`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order of llama.cpp's `llm_bigram_spm::comparator`: higher score first, then lower `left`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Tokenizes `text` (spaces already escaped to `▁`) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        let i = symbols.len();
        symbols.push(Symbol {
            start,
            n: c.len_utf8(),
            prev: if i == 0 { NONE } else { i - 1 },
            next: if iter.peek().is_some() { i + 1 } else { NONE },
        });
    }
    if symbols.is_empty() {
        return Ok(());
    }

    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (symbols[left], symbols[right]);
        let piece = &text[l.start..l.start + l.n + r.n];
        if let Some(id) = vocab.token_id(piece) {
            queue.push(Bigram {
                score: vocab.score(id),
                left,
                right,
                size: piece.len(),
            });
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, i - 1, i);
    }

    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // one side was merged away or grew since this pair was queued
        if l.n == 0 || r.n == 0 || l.n + r.n != bigram.size {
            continue;
        }
        symbols[bigram.left].n += r.n;
        symbols[bigram.right].n = 0;
        symbols[bigram.left].next = r.next;
        if r.next != NONE {
            symbols[r.next].prev = bigram.left;
        }
        let left = symbols[bigram.left];
        try_add(&symbols, &mut queue, left.prev, bigram.left);
        try_add(&symbols, &mut queue, bigram.left, left.next);
    }

    // Every merged symbol is a vocabulary token (merges require one), so llama.cpp's `resegment` reduces to:
    // the symbol's token, else its bytes.
    let mut i = 0;
    while i != NONE {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.n];
        match vocab.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(vocab.byte_token(b).ok_or(Error::NoByteToken { byte: b })?);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}
