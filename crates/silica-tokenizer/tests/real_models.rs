//! The real test models' tokenizers against llama.cpp. Expected ids come from llama.cpp itself: the shared
//! greedy references (`llama_cpp_greedy`, llama.cpp b10573), and, for the hand-picked cases, `llama_tokenize` /
//! `llama_detokenize` of llama.cpp build 11434 run on the same GGUF files (with the metadata edits named in
//! each test).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::OnceLock;

use proptest::prelude::*;
use silica_gguf::{GgufFile, Metadata, Value};
use silica_test_support::{golden, models};
use silica_tokenizer::{StreamDecoder, TokenAttr, Tokenizer, TokenizerKind};

fn metadata(file: &str) -> Metadata {
    let f = GgufFile::open(models::require(file)).expect("open model");
    f.metadata().clone()
}

fn smollm_meta() -> &'static Metadata {
    static M: OnceLock<Metadata> = OnceLock::new();
    M.get_or_init(|| metadata(models::SMOLLM2_Q4_1))
}

fn gemma_meta() -> &'static Metadata {
    static M: OnceLock<Metadata> = OnceLock::new();
    M.get_or_init(|| metadata(models::GEMMA3_Q4_K_M))
}

fn smollm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_metadata(smollm_meta()).expect("SmolLM2 tokenizer"))
}

fn gemma() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_metadata(gemma_meta()).expect("Gemma 3 tokenizer"))
}

/// A tokenizer from `meta` with keys replaced (`None` removes the key).
fn variant(meta: &Metadata, edits: &[(&str, Option<Value>)]) -> Tokenizer {
    let mut meta = meta.clone();
    for (key, value) in edits {
        match value {
            Some(v) => meta.set(*key, v.clone()),
            None => {
                meta.remove(key);
            }
        }
    }
    Tokenizer::from_metadata(&meta).expect("variant tokenizer")
}

fn string(s: &str) -> Option<Value> {
    Some(Value::String(s.into()))
}

fn check_references(tok: &Tokenizer, name: &str) {
    let refs = golden::llama_cpp_greedy(name);
    assert!(!refs.prompts.is_empty());
    for p in &refs.prompts {
        assert_eq!(
            tok.encode(&p.prompt, true, true).unwrap(),
            p.prompt_ids,
            "{name}: prompt {:?}",
            p.prompt
        );
        let mut gen_ids = p.generated_ids.as_slice();
        if p.stopped_eos {
            let (&last, rest) = gen_ids.split_last().unwrap();
            assert!(
                tok.is_eog(last),
                "{name}: generation stopped on {last}, which must be EOG"
            );
            gen_ids = rest;
        }
        assert!(gen_ids.iter().all(|&id| !tok.is_eog(id)));
        assert_eq!(
            tok.decode(gen_ids, false).unwrap(),
            p.generated_text,
            "{name}: continuation of {:?}",
            p.prompt
        );
        // the same text streamed token by token
        let mut stream = StreamDecoder::new(tok, false);
        let mut text = String::new();
        for &id in gen_ids {
            text += &stream.push(id).unwrap();
        }
        text += &stream.finish();
        assert_eq!(text, p.generated_text);
    }
}

#[test]
fn smollm2_matches_llama_cpp_references() {
    let tok = smollm();
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.pre(), "smollm");
    assert_eq!(tok.n_vocab(), 49152);
    check_references(tok, "SmolLM2-135M-Instruct.Q4_1");
    // the F16 file shares the vocabulary; its reference stops on EOG
    check_references(tok, "SmolLM2-135M-Instruct.F16");
}

#[test]
fn gemma3_matches_llama_cpp_references() {
    let tok = gemma();
    assert_eq!(tok.kind(), TokenizerKind::Spm);
    assert_eq!(tok.n_vocab(), 262_144);
    assert!(!tok.add_space_prefix());
    check_references(tok, "gemma-3-270m-q4_k_m");
}

#[test]
fn smollm2_special_ids_and_eog() {
    let tok = smollm();
    assert_eq!((tok.bos(), tok.eos(), tok.add_bos()), (Some(1), Some(2), false));
    // llama.cpp's EOG set: <|endoftext|>, <|im_end|> (also EOS) and <reponame> (a FIM repo-name text)
    assert_eq!(tok.eog_ids(), &[0, 2, 4]);
    assert!(tok.is_eog(0) && tok.is_eog(2) && !tok.is_eog(1) && !tok.is_eog(504));
    assert_eq!(tok.token_text(1), Some("<|im_start|>"));
    assert_eq!(tok.token_attr(1), Some(TokenAttr::CONTROL));
    assert_eq!(tok.token_text(49152), None);
}

#[test]
fn gemma3_special_ids_and_eog() {
    let tok = gemma();
    assert_eq!((tok.bos(), tok.eos(), tok.add_bos()), (Some(2), Some(1), true));
    // <eos>, <end_of_turn>, and </s> (id 212, user-defined in the file, made EOG and control by llama.cpp)
    assert_eq!(tok.eog_ids(), &[1, 106, 212]);
    assert_eq!(tok.eot(), Some(106));
    assert!(tok.token_attr(212).unwrap().contains(TokenAttr::CONTROL));
    assert!(tok.token_attr(6).unwrap().contains(TokenAttr::UNUSED)); // <unused0>
}

#[test]
fn smollm2_hand_checked_cases() {
    let tok = smollm();
    let enc = |s: &str, add: bool, parse: bool| tok.encode(s, add, parse).unwrap();
    // smollm isolates every digit
    assert_eq!(
        enc("1234567890", false, true),
        [33, 34, 35, 36, 37, 38, 39, 40, 41, 32]
    );
    assert_eq!(
        enc("I'm don't you'll we've they're", false, true),
        [57, 5248, 1326, 982, 346, 3060, 392, 3543, 502, 2316]
    );
    assert_eq!(enc("a  \n\n b", false, true), [81, 256, 1116, 278]);
    assert_eq!(
        enc("café 中文 😀", false, true),
        [83, 1939, 2756, 216, 28589, 29184, 40303, 218]
    );
    // control tokens are parsed only with parse_special
    assert_eq!(
        enc("<|im_start|>user\nhi<|im_end|>\n", false, true),
        [1, 4093, 198, 6004, 2, 198]
    );
    assert_eq!(
        enc("<|im_start|>user\nhi<|im_end|>\n", false, false),
        [
            44, 108, 306, 79, 3738, 108, 46, 4093, 198, 6004, 44, 108, 306, 79, 486, 108, 46, 198
        ]
    );
    // add_bos_token is false in this file
    assert_eq!(enc("", true, true), Vec::<u32>::new());
    assert_eq!(enc("Hello world", true, true), [19556, 905]);
}

#[test]
fn gemma3_hand_checked_cases() {
    let tok = gemma();
    let enc = |s: &str, add: bool, parse: bool| tok.encode(s, add, parse).unwrap();
    // runs of spaces and newlines are user-defined tokens, cut out before SentencePiece runs
    assert_eq!(enc("a  \n\n b", false, true), [236746, 138, 108, 518]);
    assert_eq!(
        enc("café 中文 😀", false, true),
        [123125, 236859, 17346, 237364, 163543]
    );
    // 𝔘 is not in the vocabulary: byte fallback <0xF0><0x9D><0x94><0x98>
    assert_eq!(enc("𝔘 x", false, true), [478, 395, 386, 390, 1123]);
    assert_eq!(
        enc("<start_of_turn>user\nhi<end_of_turn>\n", false, true),
        [105, 2364, 107, 2202, 106, 107]
    );
    assert_eq!(
        enc("<start_of_turn>user\nhi<end_of_turn>\n", false, false),
        [
            236820, 3041, 236779, 1340, 236779, 887, 236813, 2364, 107, 2202, 236820, 643, 236779, 1340,
            236779, 887, 236813, 107
        ]
    );
    // <s> is user-defined (always matched); </s> became control (matched only with parse_special)
    assert_eq!(enc("<s>x</s>", false, true), [203, 236781, 212]);
    assert_eq!(enc("<s>x</s>", false, false), [203, 236781, 954, 236751, 236813]);
    assert_eq!(enc("", true, true), [2]);
    assert_eq!(enc("", false, true), Vec::<u32>::new());
    assert_eq!(
        enc("1234567890", false, true),
        [
            236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828, 236819, 236771
        ]
    );
    assert_eq!(
        enc("I'm don't", false, true),
        [236777, 236789, 236757, 1537, 236789, 236745]
    );
}

#[test]
fn gemma3_pieces() {
    let tok = gemma();
    assert_eq!(tok.token_to_piece(478, false).unwrap(), [0xF0]); // <0xF0>
    assert_eq!(tok.token_to_piece(2, false).unwrap(), b""); // <bos> is control
    assert_eq!(tok.token_to_piece(2, true).unwrap(), b"<bos>");
    assert_eq!(tok.token_to_piece(203, false).unwrap(), b"<s>"); // user-defined: always rendered
    assert_eq!(tok.token_to_piece(2430, false).unwrap(), b" user"); // ▁user
    assert!(tok.token_to_piece(262_144, false).is_err());
    assert_eq!(
        tok.decode(&[2, 105, 2364], true).unwrap(),
        "<bos><start_of_turn>user"
    );
    assert_eq!(tok.decode(&[2, 105, 2364], false).unwrap(), "user");
}

#[test]
fn bpe_pre_tokenizer_variants_match_llama_cpp() {
    let meta = smollm_meta();
    // llama-bpe without add_bos_token: llama.cpp defaults add_bos to true for llama3
    let llama3 = variant(
        meta,
        &[
            ("tokenizer.ggml.pre", string("llama-bpe")),
            ("tokenizer.ggml.add_bos_token", None),
        ],
    );
    assert!(llama3.add_bos());
    assert_eq!(
        llama3.encode("12345 I'M fine", false, true).unwrap(),
        [33, 34, 35, 36, 37, 339, 23, 61, 4979]
    );
    assert_eq!(llama3.encode("Hello", true, true).unwrap(), [1, 19556]);
    let ids = llama3.encode("Hello , world .", false, true).unwrap();
    assert_eq!(ids, [19556, 3297, 905, 1673]);
    // llama3 sets llama.cpp's clean_spaces: detokenize drops the space before punctuation, decode does not
    assert_eq!(llama3.detokenize(&ids, false, false).unwrap(), "Hello, world.");
    assert_eq!(llama3.decode(&ids, false).unwrap(), "Hello , world .");

    // U+1C89 is unassigned before Unicode 16, as in llama.cpp's tables
    assert_eq!(
        llama3.encode("ab\u{1C89}cd \u{1C88}x", false, true).unwrap(),
        [369, 172, 127, 227, 13133, 15822, 127, 226, 104]
    );

    let qwen2 = variant(meta, &[("tokenizer.ggml.pre", string("qwen2"))]);
    assert_eq!(
        qwen2.encode("12345 I'M fine\n\n  x", false, true).unwrap(),
        [33, 34, 35, 36, 37, 339, 23, 61, 4979, 1116, 216, 1792]
    );

    let default = variant(meta, &[("tokenizer.ggml.pre", string("default"))]);
    assert_eq!(
        default.encode("Hello, world! 12345", false, true).unwrap(),
        [19556, 28, 905, 17, 216, 33, 34, 35, 36, 37]
    );

    let gpt2 = variant(meta, &[("tokenizer.ggml.pre", string("gpt-2"))]);
    assert_eq!(
        gpt2.encode("Hello, world! 12345  x", false, true).unwrap(),
        [19556, 28, 905, 17, 216, 33, 34, 35, 36, 37, 216, 1792]
    );
}

#[test]
fn spm_with_space_prefix_matches_llama_cpp() {
    // Gemma's vocabulary with add_space_prefix = true behaves as Llama 2's SentencePiece
    let tok = variant(
        gemma_meta(),
        &[("tokenizer.ggml.add_space_prefix", Some(Value::Bool(true)))],
    );
    assert_eq!(tok.encode("Hello world", true, true).unwrap(), [2, 26352, 1902]);
    assert_eq!(tok.encode("Hello", true, false).unwrap(), [2, 26352]);
    // the prefix space also follows every special token (here <start_of_turn> and the user-defined "\n")
    assert_eq!(
        tok.encode("<start_of_turn>user\nhi", true, true).unwrap(),
        [2, 105, 2430, 107, 5631]
    );
    // llama_detokenize strips the prefix space only from a first token that is not BOS
    assert_eq!(
        tok.detokenize(&[2, 26352, 1902], false, false).unwrap(),
        " Hello world"
    );
    assert_eq!(
        tok.detokenize(&[2, 26352, 1902], true, false).unwrap(),
        " Hello world"
    );
    assert_eq!(
        tok.detokenize(&[26352, 1902], false, false).unwrap(),
        "Hello world"
    );
    assert_eq!(tok.decode(&[26352, 1902], false).unwrap(), " Hello world");
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    for tok in [gemma(), smollm()] {
        let text = "𝔘 é 😀🎉 中文 ok";
        let ids = tok.encode(text, false, false).unwrap();
        let mut stream = StreamDecoder::new(tok, false);
        let mut out = String::new();
        let mut n_held = 0;
        for &id in &ids {
            let piece = stream.push(id).unwrap();
            assert!(
                !piece.contains('\u{FFFD}'),
                "broken character streamed: {piece:?}"
            );
            n_held += usize::from(piece.is_empty() && stream.has_pending());
            out += &piece;
        }
        assert!(!stream.has_pending());
        assert_eq!(stream.finish(), "");
        assert_eq!(out, text);
        if tok.kind() == TokenizerKind::Spm {
            // the byte-fallback 𝔘 spans four tokens, three of which complete no character
            assert!(n_held >= 3, "held {n_held}");
        }
    }
    // a truncated character is flushed lossily at the end
    let tok = gemma();
    let mut stream = StreamDecoder::new(tok, false);
    assert_eq!(stream.push(478).unwrap(), ""); // <0xF0>
    assert_eq!(stream.finish(), "\u{FFFD}");
}

#[test]
fn gemma3_loads_fast() {
    let meta = gemma_meta();
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_metadata(meta).unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(tok.n_vocab(), 262_144);
    // well under a second in release; the generous bound keeps unoptimized test builds green
    assert!(
        elapsed.as_secs_f64() < 5.0,
        "Gemma 3 tokenizer took {elapsed:?} to load"
    );
}

/// Printable text with spaces, tabs and newlines, none of SentencePiece's `▁` (which decodes as a space).
fn text_strategy() -> impl Strategy<Value = String> {
    "(\\PC|[ \\t\\n]|  ){0,48}".prop_filter("no ▁", |s| !s.contains('\u{2581}'))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn smollm2_round_trips(s in text_strategy()) {
        let tok = smollm();
        for (add, parse) in [(false, false), (true, false)] {
            let ids = tok.encode(&s, add, parse).unwrap();
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
            prop_assert_eq!(tok.decode(&ids, false).unwrap(), s.clone());
        }
    }

    #[test]
    fn gemma3_round_trips(s in text_strategy()) {
        let tok = gemma();
        for (add, parse) in [(false, false), (true, false)] {
            let ids = tok.encode(&s, add, parse).unwrap();
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
            prop_assert_eq!(tok.decode(&ids, false).unwrap(), s.clone());
        }
    }

    #[test]
    fn special_text_round_trips_with_special_rendering(s in text_strategy(), pick in 0usize..4) {
        // control tokens parsed out of the text render back as their text with special = true
        let specials = ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>"];
        let text = format!("{}{s}{}", specials[pick], specials[(pick + 1) % 4]);
        for tok in [smollm(), gemma()] {
            let ids = tok.encode(&text, false, true).unwrap();
            prop_assert!(ids.iter().all(|&id| (id as usize) < tok.n_vocab()));
            prop_assert_eq!(tok.decode(&ids, true).unwrap(), text.clone());
        }
    }
}
