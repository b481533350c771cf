//! SentencePiece-style tokenization of one raw-text fragment, as llama.cpp `llm_tokenizer_spm_session`:
//! start from single characters, repeatedly merge the adjacent pair whose concatenation is the vocabulary
//! token with the highest score (ties: the leftmost pair), then emit each final symbol as its token or, when
//! it is not in the vocabulary, as byte-fallback tokens `<0xXX>`.

use std::cmp::Ordering;

use crate::merge::{NONE, merge};
use crate::vocab::Vocab;
use crate::{Error, Result};

/// A score ordered totally for the merge queue (NaN compares equal, as llama.cpp's `<` comparator treats it).
#[derive(PartialEq)]
struct Score(f32);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// Tokenizes `text` (spaces already escaped to `▁`) and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
    // Higher score merges first (llama.cpp `llm_bigram_spm::comparator`).
    let symbols = merge(text, |l, r| {
        vocab
            .token_id(&text[l.start..l.start + l.n + r.n])
            .map(|id| Score(vocab.score(id)))
    });
    if symbols.is_empty() {
        return Ok(());
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
