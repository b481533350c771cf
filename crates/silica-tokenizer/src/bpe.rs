//! Byte-level BPE tokenization of one raw-text fragment, as llama.cpp `llm_tokenizer_bpe_session`: split the
//! text into words with the pre-tokenizer stages, map each word's UTF-8 bytes to GPT-2's printable
//! characters, then repeatedly merge the adjacent pair with the lowest merge rank (ties: the leftmost pair).

use std::cmp::Reverse;

use crate::merge::{NONE, merge};
use crate::unicode::{self, Split};
use crate::vocab::Vocab;

/// A BPE pre-tokenizer: the llama.cpp `tokenizer.ggml.pre` family and its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreTokenizer {
    /// Split stages, applied in order (llama.cpp `llm_tokenizer_bpe::regex_exprs`).
    pub(crate) stages: Vec<Split>,
    /// Whether a whole word found in the vocabulary is emitted without merging (llama.cpp `ignore_merges`).
    pub(crate) ignore_merges: bool,
    /// Whether `detokenize` removes spaces before punctuation (llama.cpp `clean_spaces`).
    pub(crate) clean_spaces: bool,
    /// Default of `add_bos_token` when the key is absent.
    pub(crate) add_bos: bool,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp `llama_vocab::impl::load` selects for `tokenizer.ggml.pre = name` (an absent
    /// key is `default`). `gpt2` is accepted as an alias of llama.cpp's `gpt-2`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        const GPT2: &[Split] = &[Split::Gpt2];
        const DEFAULT: &[Split] = &[
            Split::PunctRuns,
            Split::Gpt2,
            Split::DigitRuns,
            Split::ThreeDigits,
        ];
        const STARCODER: &[Split] = &[Split::EachDigit, Split::Gpt2];
        const LLAMA3: &[Split] = &[Split::Llama3 { max_digits: 3 }];
        const QWEN2: &[Split] = &[Split::Llama3 { max_digits: 1 }];
        let (stages, ignore_merges, clean_spaces, add_bos) = match name {
            "" | "default" => (DEFAULT, false, true, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2" => (LLAMA3, true, true, true),
            "dbrx" | "smaug-bpe" => (LLAMA3, false, true, false),
            "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
            | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => {
                (GPT2, false, true, false)
            }
            "trillion" | "granite-docling" => (GPT2, false, false, false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (STARCODER, false, true, false)
            }
            "smollm" | "command-r" => (STARCODER, false, false, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
                (QWEN2, false, false, false)
            }
            "megrez" | "stablelm2" => (QWEN2, false, true, false),
            _ => return None,
        };
        Some(PreTokenizer {
            stages: stages.to_vec(),
            ignore_merges,
            clean_spaces,
            add_bos,
        })
    }
}

/// Tokenizes one raw-text fragment and appends the ids to `out`.
pub(crate) fn tokenize(vocab: &Vocab, pre: &PreTokenizer, text: &str, out: &mut Vec<u32>) {
    let cpts: Vec<char> = text.chars().collect();
    let mut word = String::new();
    let mut key = String::new();
    let mut utf8 = [0u8; 4];
    let mut start = 0;
    for len in unicode::split(&cpts, &pre.stages) {
        word.clear();
        for &c in &cpts[start..start + len] {
            for &b in c.encode_utf8(&mut utf8).as_bytes() {
                word.push(unicode::byte_to_char(b));
            }
        }
        start += len;
        tokenize_word(vocab, pre, &word, &mut key, out);
    }
}

fn tokenize_word(vocab: &Vocab, pre: &PreTokenizer, word: &str, key: &mut String, out: &mut Vec<u32>) {
    if pre.ignore_merges
        && let Some(id) = vocab.token_id(word)
    {
        out.push(id);
        return;
    }
    // Lower merge rank merges first (llama.cpp `llm_bigram_bpe::comparator`).
    let symbols = merge(word, |l, r| {
        key.clear();
        key.push_str(&word[l.start..l.start + l.n]);
        key.push(' ');
        key.push_str(&word[r.start..r.start + r.n]);
        vocab.merge_rank(key).map(Reverse)
    });

    let mut i = if symbols.is_empty() { NONE } else { 0 };
    while i != NONE {
        let s = symbols[i];
        let piece = &word[s.start..s.start + s.n];
        match vocab.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                // llama.cpp looks each byte of the symbol up as a one-byte token; only ASCII bytes can be
                // vocabulary strings, the rest are dropped
                for &b in piece.as_bytes() {
                    if b.is_ascii()
                        && let Some(id) = vocab.token_id(char::from(b).encode_utf8(&mut [0u8; 4]))
                    {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
