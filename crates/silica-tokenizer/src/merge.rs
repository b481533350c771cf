//! The bigram-merge loop shared by SentencePiece and BPE (llama.cpp `llm_tokenizer_spm_session` and
//! `llm_tokenizer_bpe_session`): start from one symbol per character, repeatedly merge the adjacent pair of
//! highest priority (ties: the leftmost pair), re-queueing the merged symbol's new pairs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A symbol: a byte range of the text, linked to its neighbours ([`NONE`] = none).
#[derive(Clone, Copy)]
pub(crate) struct Symbol {
    pub start: usize,
    pub n: usize,
    pub prev: usize,
    pub next: usize,
}

/// No neighbour.
pub(crate) const NONE: usize = usize::MAX;

/// A candidate merge of `left` and its right neighbour `right` whose merged size was `size` when queued.
struct Bigram<P> {
    prio: P,
    left: usize,
    right: usize,
    size: usize,
}

impl<P: Ord> PartialEq for Bigram<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<P: Ord> Eq for Bigram<P> {}
impl<P: Ord> PartialOrd for Bigram<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P: Ord> Ord for Bigram<P> {
    /// Max-heap order: higher priority first, then the lower `left`.
    fn cmp(&self, other: &Self) -> Ordering {
        self.prio
            .cmp(&other.prio)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Merges the characters of `text` into symbols. `priority(text, left, right)` gives the priority of merging
/// two adjacent symbols, or `None` when the pair may not merge. Returns the symbols; merged-away ones have
/// `n == 0`, and the live ones are linked from index 0 through `next`.
pub(crate) fn merge<P: Ord>(
    text: &str,
    mut priority: impl FnMut(&Symbol, &Symbol) -> Option<P>,
) -> Vec<Symbol> {
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
    let mut queue = BinaryHeap::new();
    let mut try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram<P>>, left: usize, right: usize| {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (&symbols[left], &symbols[right]);
        if let Some(prio) = priority(l, r) {
            queue.push(Bigram {
                prio,
                left,
                right,
                size: l.n + r.n,
            });
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, i - 1, i);
    }
    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // outdated: one side was merged away or grew since this pair was queued (llama.cpp compares the
        // texts, which is equivalent)
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
    symbols
}
