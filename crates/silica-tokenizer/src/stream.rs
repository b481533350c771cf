//! Incremental detokenization for streaming output.

use crate::{Result, Tokenizer};

/// Turns a stream of token ids into text without ever emitting a broken UTF-8 character: bytes of a
/// character split across tokens (SentencePiece byte fallback, byte-level BPE) are held back until the
/// character is complete. The text is the concatenation of [`Tokenizer::token_to_piece`], the same as
/// [`Tokenizer::decode`] of all pushed ids.
///
/// ```
/// use silica_tokenizer::{StreamDecoder, Tokenizer};
/// # fn demo(tok: &Tokenizer, ids: &[u32]) -> silica_tokenizer::Result<String> {
/// let mut stream = StreamDecoder::new(tok, false);
/// let mut text = String::new();
/// for &id in ids {
///     text += &stream.push(id)?; // only whole characters
/// }
/// text += &stream.finish();
/// # Ok(text)
/// # }
/// ```
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    special: bool,
    /// Bytes of an incomplete trailing character (at most 3).
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder over `tokenizer`; `special` renders control tokens as their text (as in
    /// [`Tokenizer::token_to_piece`]).
    pub fn new(tokenizer: &'a Tokenizer, special: bool) -> Self {
        StreamDecoder {
            tokenizer,
            special,
            pending: Vec::new(),
        }
    }

    /// Adds one token and returns the text that is now complete: every whole character so far, minus what
    /// earlier calls returned. Invalid byte sequences come out as U+FFFD; an incomplete trailing sequence is
    /// kept for the next call.
    ///
    /// # Errors
    /// [`crate::Error::TokenOutOfRange`] for an id at or past `n_vocab` (the pending bytes are kept).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let piece = self.tokenizer.piece(id, self.special)?;
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // valid_up_to() marks a UTF-8 boundary, so this cannot fail
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        // an incomplete sequence at the end: wait for more bytes
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        Ok(out)
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: returns the held-back bytes, lossily decoded (U+FFFD for an incomplete character).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
