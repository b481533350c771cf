//! The tokenizer of a GGUF model, built from its `tokenizer.ggml.*` metadata, whose ids equal llama.cpp's
//! (`llama_tokenize`, `llama_token_to_piece` and `llama_detokenize` in llama.cpp `src/llama-vocab.cpp`).
//!
//! This crate owns text ↔ token-id conversion:
//! - `tokenizer.ggml.model = "llama"`: SentencePiece with scores and byte fallback ([`TokenizerKind::Spm`],
//!   Llama 2, Gemma 3).
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merge ranks and the pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` ([`TokenizerKind::Bpe`]: `default`, `gpt-2`, `smollm`/`starcoder`,
//!   `llama-bpe`/`llama3`, `qwen2` and the llama.cpp names that share their rules).
//! - Control and user-defined tokens are cut out of the text before the model runs, as llama.cpp's
//!   `tokenizer_st_partition` does; end-of-generation tokens follow llama.cpp's `special_eog_ids`.
//!
//! Codepoint classes equal llama.cpp's `unicode-data.cpp` (Unicode 15.1) for every codepoint. Deliberate
//! differences from llama.cpp, all on malformed or unusual files:
//! - a special-token id key past the vocabulary is an error ([`Error::SpecialIdOutOfRange`]); llama.cpp
//!   warns and keeps the default;
//! - a token text that repeats maps to its last id; recent llama.cpp refuses such vocabularies;
//! - where llama.cpp picks among several candidate texts by `std::unordered_map` order (EOT/FIM
//!   detection) or `std::sort` order (special tokens of equal length), this takes the lowest id;
//! - the `phi-3` attribute fix skips tokens the vocabulary lacks instead of failing to load;
//! - [`Tokenizer::decode`] and [`Tokenizer::detokenize`] return `String`s, so byte sequences that are not
//!   UTF-8 (possible for arbitrary id sequences) come back as U+FFFD rather than raw bytes; use
//!   [`Tokenizer::token_to_piece`] for bytes.
//!
//! ```
//! use silica_gguf::GgufFile;
//! use silica_test_support::fixtures::TinyModel;
//! use silica_tokenizer::{Tokenizer, TokenizerKind};
//!
//! let file = GgufFile::from_bytes(TinyModel::llama().to_bytes(), "tiny.gguf")?;
//! let tok = Tokenizer::from_metadata(file.metadata())?;
//! assert_eq!(tok.kind(), TokenizerKind::Bpe);
//!
//! let ids = tok.encode("<|im_start|>hello, world", true, true)?;
//! assert_eq!(ids[0], 1); // `<|im_start|>` is a control token, parsed because parse_special = true
//! assert_eq!(tok.decode(&ids, true)?, "<|im_start|>hello, world");
//! assert_eq!(tok.decode(&ids, false)?, "hello, world"); // control tokens render empty
//! assert!(tok.is_eog(tok.eos().unwrap()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bpe;
mod error;
mod merge;
mod partition;
mod spm;
mod stream;
mod strtab;
mod unicode;
mod vocab;

use std::ops::BitOr;

pub use error::{Error, Result};
pub use stream::StreamDecoder;
pub use unicode::byte_to_char as gpt2_byte_to_char;

use partition::Fragment;
use vocab::Vocab;

/// Which tokenization algorithm a vocabulary uses (llama.cpp `llama_vocab_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerKind {
    /// SentencePiece (`tokenizer.ggml.model = "llama"`, llama.cpp `LLAMA_VOCAB_TYPE_SPM`).
    Spm,
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`, llama.cpp `LLAMA_VOCAB_TYPE_BPE`).
    Bpe,
}

/// A token's attribute bits, with llama.cpp's `llama_token_attr` values. They come from
/// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; anything
/// else undefined) and llama.cpp's text-based fixes (for example `<|im_end|>` is always control).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(u32);

impl TokenAttr {
    /// No attribute (token type 0 or an unknown type): renders empty.
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    /// The unknown token (type 2).
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    /// An unused token (type 5, or a control token whose text contains `unused`).
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    /// An ordinary token (type 1).
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    /// A control token (type 3): matched in text only with `parse_special`, rendered only with `special`.
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    /// A user-defined token (type 4): always matched in text and always rendered.
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    /// A byte-fallback token `<0xXX>` (type 6).
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    /// Normalized (unused by llama.cpp's tokenizers).
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    /// Whitespace before this token is dropped when it is cut out of text.
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    /// Whitespace after this token is dropped when it is cut out of text.
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    /// Single word (unused by llama.cpp's tokenizers).
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// The raw bits (llama.cpp `llama_token_attr`).
    pub const fn bits(self) -> u32 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TokenAttr) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }
    pub(crate) fn insert(&mut self, other: TokenAttr) {
        self.0 |= other.0;
    }
    pub(crate) fn remove(&mut self, other: TokenAttr) {
        self.0 &= !other.0;
    }
}

impl BitOr for TokenAttr {
    type Output = TokenAttr;
    fn bitor(self, rhs: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | rhs.0)
    }
}

/// A GGUF model's tokenizer. Built once with [`Tokenizer::from_metadata`]; immutable and `Send + Sync`
/// afterwards, so one instance serves all threads.
pub struct Tokenizer {
    vocab: Vocab,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.vocab.kind)
            .field("pre", &self.vocab.pre_name)
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.vocab.ids.bos)
            .field("eos", &self.vocab.ids.eos)
            .field("add_bos", &self.vocab.add_bos)
            .field("add_eos", &self.vocab.add_eos)
            .field("add_space_prefix", &self.vocab.add_space_prefix)
            .field("n_special", &self.vocab.special_cache.len())
            .field("eog", &self.vocab.eog)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from GGUF metadata, as llama.cpp `llama_vocab::impl::load` does: defaults per
    /// model (SentencePiece: BOS 1, EOS 2, UNK 0, `add_bos` and `add_space_prefix` true; BPE: BOS = EOS = 11
    /// and the pre-tokenizer's defaults), then `tokenizer.ggml.*` keys, then llama.cpp's text-based detection of
    /// EOT/EOM/FIM and end-of-generation tokens. Loads Gemma 3's 262 144-token vocabulary in well under a
    /// second (release build).
    ///
    /// # Errors
    /// [`Error::Gguf`] for a missing `tokenizer.ggml.model`, `tokenizer.ggml.tokens` or (BPE)
    /// `tokenizer.ggml.merges`, or a key of the wrong type; [`Error::UnknownModel`], [`Error::UnknownPre`],
    /// [`Error::EmptyVocab`], [`Error::ArrayLength`] and [`Error::ArrayType`] for the scores and token types,
    /// [`Error::SpecialIdOutOfRange`] for a special-token id key ≥ `n_vocab`, [`Error::MissingSpecialToken`]
    /// when `add_bos_token`/`add_eos_token` is set without the id, [`Error::BadByteToken`].
    pub fn from_metadata(meta: &silica_gguf::Metadata) -> Result<Self> {
        Ok(Tokenizer {
            vocab: Vocab::load(meta)?,
        })
    }

    /// [`Tokenizer::from_metadata`] of an open GGUF file.
    ///
    /// # Errors
    /// As [`Tokenizer::from_metadata`].
    pub fn from_gguf(file: &silica_gguf::GgufFile) -> Result<Self> {
        Self::from_metadata(file.metadata())
    }

    /// Tokenizes `text` as llama.cpp `llama_tokenize(text, add_special, parse_special)`:
    /// - `add_special`: prepend BOS when [`Tokenizer::add_bos`] (and append EOS when `add_eos_token`).
    /// - `parse_special`: control tokens written in the text (`<|im_start|>`, `<start_of_turn>`) become their
    ///   ids; otherwise they are tokenized as plain text. User-defined tokens are always matched.
    ///
    /// SentencePiece vocabularies with `add_space_prefix` prepend a space to the first fragment and to every
    /// fragment that follows a special token.
    ///
    /// # Errors
    /// [`Error::NoByteToken`] when a SentencePiece vocabulary has no byte-fallback token for a byte of the text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let v = &self.vocab;
        let frags = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special
            && v.add_bos
            && let Some(bos) = v.ids.bos
        {
            out.push(bos);
        }
        match (v.kind, &v.pre) {
            (TokenizerKind::Bpe, Some(pre)) => {
                for frag in frags {
                    match frag {
                        Fragment::Text(r) => bpe::tokenize(v, pre, &text[r], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            _ => {
                let mut prev_special = true;
                let mut buf = String::new();
                for frag in frags {
                    match frag {
                        Fragment::Text(r) => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push('▁');
                            }
                            for c in text[r].chars() {
                                buf.push(if c == ' ' { '▁' } else { c });
                            }
                            spm::tokenize(v, &buf, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special
            && v.add_eos
            && let Some(eos) = v.ids.eos
        {
            out.push(eos);
        }
        Ok(out)
    }

    /// The raw-text fragments and special tokens of `text` (llama.cpp `tokenizer_st_partition`).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let v = &self.vocab;
        let mut frags = vec![Fragment::Text(0..text.len())];
        for rank in v.special_trie.occurring(text) {
            let id = v.special_cache[rank as usize];
            let t = &v.tokens[id as usize];
            if !parse_special && t.attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
                continue;
            }
            let piece = v.text(id).unwrap_or_default();
            frags = partition::cut_token(text, frags, id, piece, t.attr);
        }
        frags
    }

    /// The bytes of token `id`, as llama.cpp `llama_token_to_piece(id, lstrip = 0, special)`: SentencePiece
    /// `▁` becomes a space, byte-level BPE characters become their bytes, `<0xXX>` becomes one byte. A piece can
    /// be part of a UTF-8 character. Control and unknown tokens render empty unless `special`; user-defined
    /// tokens always render as their text; unused and undefined tokens render empty.
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`].
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Vec<u8>> {
        self.piece(id, special).map(<[u8]>::to_vec)
    }

    pub(crate) fn piece(&self, id: u32, special: bool) -> Result<&[u8]> {
        let t = self.vocab.tokens.get(id as usize).ok_or(Error::TokenOutOfRange {
            id,
            n_vocab: self.n_vocab(),
        })?;
        if !special && t.attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
            return Ok(&[]);
        }
        Ok(self.vocab.piece(id))
    }

    /// The text of `ids`: their pieces ([`Tokenizer::token_to_piece`]) concatenated, exactly what llama-server
    /// returns as generated text, then read as UTF-8 (an incomplete or invalid sequence becomes U+FFFD, so
    /// any complete UTF-8 text comes back byte for byte). No leading space is removed and no spaces are
    /// cleaned; for llama.cpp's `llama_detokenize` use [`Tokenizer::detokenize`].
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`].
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            bytes.extend_from_slice(self.piece(id, special)?);
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// llama.cpp `llama_detokenize(ids, remove_special, unparse_special)`: like [`Tokenizer::decode`], but
    /// with `add_space_prefix` the first token loses one leading space; `remove_special` drops a leading BOS
    /// (when `add_bos`) and a trailing EOS (when `add_eos`); and vocabularies whose pre-tokenizer sets
    /// llama.cpp's `clean_spaces` (BPE `default`, `gpt-2`, `llama3`, ...) remove the space before `?!.,`,
    /// around a lone `'` and before `'s 'm 're 've`.
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`].
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> Result<String> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos && ids.first().is_some_and(|&id| Some(id) == v.ids.bos) {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos && ids.last().is_some_and(|&id| Some(id) == v.ids.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let mut piece = self.piece(id, unparse_special)?;
            if remove_space && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            remove_space = false;
            text.extend_from_slice(piece);
        }
        if v.clean_spaces {
            clean_spaces(&mut text);
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Number of tokens in the vocabulary (`len(tokenizer.ggml.tokens)`).
    pub fn n_vocab(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// The BOS token (`tokenizer.ggml.bos_token_id`, else the model default when in range).
    pub fn bos(&self) -> Option<u32> {
        self.vocab.ids.bos
    }

    /// The EOS token (`tokenizer.ggml.eos_token_id`, else the model default when in range).
    pub fn eos(&self) -> Option<u32> {
        self.vocab.ids.eos
    }

    /// The end-of-turn token (`tokenizer.ggml.eot_token_id`, else the first of llama.cpp's EOT texts such as
    /// `<|im_end|>`, `<end_of_turn>`, `<|eot_id|>` in id order).
    pub fn eot(&self) -> Option<u32> {
        self.vocab.ids.eot
    }

    /// The unknown token, if any.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.ids.unk
    }

    /// The padding token, if any (`tokenizer.ggml.padding_token_id`).
    pub fn pad(&self) -> Option<u32> {
        self.vocab.ids.pad
    }

    /// Whether generation stops at `id`: llama.cpp `llama_vocab_is_eog`, i.e. EOS, EOT, EOM, the FIM
    /// pad/repo/separator tokens and every token whose text llama.cpp lists as end-of-generation
    /// (`<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `<|end|>`, `<eos>`, `</s>`, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation set, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS (`tokenizer.ggml.add_bos_token`, default
    /// true for SentencePiece and the `llama3` pre-tokenizer, else false).
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS (`tokenizer.ggml.add_eos_token`, default false).
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// Whether SentencePiece text fragments get a leading space (`tokenizer.ggml.add_space_prefix`, default
    /// true for SentencePiece; Gemma 3 sets false).
    pub fn add_space_prefix(&self) -> bool {
        self.vocab.add_space_prefix
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        self.vocab.kind
    }

    /// `tokenizer.ggml.pre` as written in the file (`default` when absent).
    pub fn pre(&self) -> &str {
        &self.vocab.pre_name
    }

    /// The vocabulary text of `id` (`▁` and GPT-2 byte characters as stored), or `None` out of range.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.text(id)
    }

    /// The id whose vocabulary text is exactly `text` (the last one, if the text repeats).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.token_id(text)
    }

    /// The attributes of `id`, or `None` out of range.
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.vocab.tokens.get(id as usize).map(|t| t.attr)
    }

    /// The SentencePiece score of `id` (`tokenizer.ggml.scores`, 0 when absent), or `None` out of range.
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.vocab.tokens.get(id as usize).map(|t| t.score)
    }
}

/// llama.cpp `llama_detokenize`'s `clean_spaces` passes, in place on the bytes: drop the space before `?!.,`;
/// drop both spaces around a lone `'`; drop the space before `'s`, `'m`, `'re`, `'ve`.
fn clean_spaces(text: &mut Vec<u8>) {
    // pass 1: " ?", " !", " .", " ,"
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // pass 2: " ' " → "'"
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // pass 3: " 's", " 'm", " 're", " 've" (but not " 't", " 'd", " 'll")
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if matches!(x1, b's' | b'm')
                || (i + 2 < n && matches!((x1, text[i + 2]), (b'r', b'e') | (b'v', b'e')))
            {
                total -= 1;
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_matches_llama_cpp_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("it ' s"), "it's");
        assert_eq!(clean("I 'm you 're we 've it 's"), "I'm you're we've it's");
        assert_eq!(clean("don 't you 'd we 'll"), "don 't you 'd we 'll");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }

    #[test]
    fn tokenizer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
    }
}
