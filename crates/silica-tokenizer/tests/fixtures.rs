//! The tiny generated fixtures (byte-level BPE and SentencePiece with byte fallback) and the load errors.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use silica_gguf::{Array, GgufFile, Metadata, Value};
use silica_test_support::fixtures::TinyModel;
use silica_tokenizer::{Error, StreamDecoder, TokenAttr, Tokenizer, TokenizerKind};

fn meta(model: TinyModel) -> Metadata {
    GgufFile::from_bytes(model.to_bytes(), "t.gguf")
        .expect("fixture parses")
        .metadata()
        .clone()
}

fn tiny_bpe() -> Tokenizer {
    Tokenizer::from_metadata(&meta(TinyModel::llama())).unwrap()
}

fn tiny_spm() -> Tokenizer {
    Tokenizer::from_metadata(&meta(TinyModel::gemma3())).unwrap()
}

fn load_err(meta: &Metadata) -> Error {
    Tokenizer::from_metadata(meta).expect_err("load must fail")
}

#[test]
fn tiny_bpe_tokenizes_with_merges_and_specials() {
    let tok = tiny_bpe();
    assert_eq!(tok.kind(), TokenizerKind::Bpe);
    assert_eq!(tok.pre(), "default");
    assert_eq!(tok.n_vocab(), 288);
    assert!(!tok.add_bos());
    // ids 3..259 are the bytes in GPT-2 order, 259.. the letter pairs "aa", "ab", ... with merges "a a", ...
    let aa = tok.token_id("aa").unwrap();
    assert_eq!(tok.encode("aa", true, true).unwrap(), [aa]);
    let ab = tok.token_id("ab").unwrap();
    assert_eq!(
        tok.encode("aab", false, false).unwrap(),
        [aa, tok.token_id("b").unwrap()]
    );
    assert_eq!(tok.encode("abab", false, false).unwrap(), [ab, ab]);
    // a space becomes Ġ, a byte token of its own here
    assert_eq!(
        tok.encode(" ", false, false).unwrap(),
        [tok.token_id("Ġ").unwrap()]
    );
    // control tokens: parsed with parse_special, plain text otherwise
    assert_eq!(tok.encode("<|im_start|>", false, true).unwrap(), [1]);
    assert!(tok.encode("<|im_start|>", false, false).unwrap().len() > 1);
    assert_eq!(tok.eog_ids(), &[0, 2]);
    assert_eq!(tok.token_attr(0), Some(TokenAttr::CONTROL));
}

#[test]
fn tiny_spm_tokenizes_with_byte_fallback() {
    let tok = tiny_spm();
    assert_eq!(tok.kind(), TokenizerKind::Spm);
    assert!(tok.add_bos() && !tok.add_space_prefix());
    assert_eq!(tok.bos(), Some(2));
    // é is not a piece: its two UTF-8 bytes come out as <0xC3> <0xA9> (ids 3 + byte)
    assert_eq!(tok.encode("é", true, false).unwrap(), [2, 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(tok.token_to_piece(3 + 0xC3, false).unwrap(), [0xC3]);
    assert_eq!(tok.decode(&[2, 3 + 0xC3, 3 + 0xA9], false).unwrap(), "é");
    // a space is escaped to ▁ and "▁a" is a piece (the fixture's even pairs)
    let ids = tok.encode(" a", false, false).unwrap();
    assert_eq!(ids, [tok.token_id("▁a").unwrap()]);
    assert_eq!(tok.decode(&ids, false).unwrap(), " a");
    assert_eq!(tok.encode("", true, false).unwrap(), [2]);
    assert!(tok.is_eog(1));
}

#[test]
fn stream_decoder_over_byte_fallback() {
    let tok = tiny_spm();
    let text = "x😀y";
    let ids = tok.encode(text, false, false).unwrap();
    assert_eq!(ids.len(), 6); // x, four emoji bytes, y
    let mut stream = StreamDecoder::new(&tok, false);
    let outs: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(outs, ["x", "", "", "", "😀", "y"]);
    assert!(stream.push(10_000).is_err());
    assert_eq!(stream.finish(), "");
}

proptest! {
    #[test]
    fn tiny_bpe_round_trips(s in "(\\PC|[ \\t\\n]){0,40}") {
        let bpe = tiny_bpe();
        let ids = bpe.encode(&s, true, false).unwrap();
        prop_assert!(ids.iter().all(|&id| (id as usize) < bpe.n_vocab()));
        prop_assert_eq!(bpe.decode(&ids, false).unwrap(), s);
    }

    /// The SentencePiece fixture has no `▁` piece and few `▁x` pieces, so a space usually falls back to the
    /// bytes of `▁` (as llama.cpp does) and decodes as `▁`: the round trip is checked on text without spaces.
    #[test]
    fn tiny_spm_round_trips(s in "([^ \\p{C}\u{2581}]|[\\t\\n]){0,40}") {
        let spm = tiny_spm();
        let ids = spm.encode(&s, true, false).unwrap();
        prop_assert!(ids.iter().all(|&id| (id as usize) < spm.n_vocab()));
        prop_assert_eq!(spm.decode(&ids, false).unwrap(), s);
    }
}

#[test]
fn tiny_spm_space_without_piece_falls_back_to_bytes() {
    let tok = tiny_spm();
    // "▁" is U+2581 = E2 96 81, encoded through <0xE2> <0x96> <0x81>
    assert_eq!(
        tok.encode(" ", false, false).unwrap(),
        [3 + 0xE2, 3 + 0x96, 3 + 0x81]
    );
    assert_eq!(
        tok.decode(&[3 + 0xE2, 3 + 0x96, 3 + 0x81], false).unwrap(),
        "\u{2581}"
    );
}

#[test]
fn unknown_model_is_an_error_naming_the_value() {
    let mut m = meta(TinyModel::llama());
    m.set("tokenizer.ggml.model", Value::String("t5".into()));
    let e = load_err(&m);
    assert!(
        matches!(&e, Error::UnknownModel { model } if model == "t5"),
        "{e}"
    );
    assert!(e.to_string().contains("tokenizer.ggml.model"));
}

#[test]
fn unknown_pre_is_an_error() {
    let mut m = meta(TinyModel::llama());
    m.set("tokenizer.ggml.pre", Value::String("klingon".into()));
    let e = load_err(&m);
    assert!(matches!(&e, Error::UnknownPre { pre } if pre == "klingon"), "{e}");
    assert!(e.to_string().contains("tokenizer.ggml.pre"));
}

#[test]
fn missing_merges_names_the_key() {
    let mut m = meta(TinyModel::llama());
    m.remove("tokenizer.ggml.merges");
    let e = load_err(&m);
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
}

#[test]
fn short_arrays_are_errors() {
    let mut m = meta(TinyModel::gemma3());
    m.set("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; 10])));
    let e = load_err(&m);
    assert!(
        matches!(
            e,
            Error::ArrayLength {
                key: "tokenizer.ggml.scores",
                len: 10,
                n_vocab: 288
            }
        ),
        "{e}"
    );

    let mut m = meta(TinyModel::gemma3());
    m.set("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 5])));
    assert!(matches!(
        load_err(&m),
        Error::ArrayLength {
            key: "tokenizer.ggml.token_type",
            ..
        }
    ));

    let mut m = meta(TinyModel::gemma3());
    m.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::String(vec!["x".into(); 288])),
    );
    assert!(matches!(
        load_err(&m),
        Error::ArrayType {
            key: "tokenizer.ggml.scores",
            ..
        }
    ));
}

#[test]
fn special_ids_out_of_range_are_errors() {
    let mut m = meta(TinyModel::gemma3());
    m.set("tokenizer.ggml.bos_token_id", Value::U32(288));
    let e = load_err(&m);
    assert!(
        matches!(
            e,
            Error::SpecialIdOutOfRange {
                key: "tokenizer.ggml.bos_token_id",
                id: 288,
                n_vocab: 288
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("tokenizer.ggml.bos_token_id"));

    let mut m = meta(TinyModel::llama());
    m.set("tokenizer.ggml.eos_token_id", Value::U32(9999));
    assert!(matches!(
        load_err(&m),
        Error::SpecialIdOutOfRange {
            key: "tokenizer.ggml.eos_token_id",
            ..
        }
    ));
}

#[test]
fn add_bos_without_bos_is_an_error() {
    // the BPE default BOS (11) would exist here, so point the default out of range with a tiny vocabulary
    let mut m = Metadata::new();
    m.set("tokenizer.ggml.model", Value::String("gpt2".into()));
    m.set("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    m.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["a".into(), "b".into()])),
    );
    m.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::String(vec!["a b".into()])),
    );
    m.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    let e = load_err(&m);
    assert!(
        matches!(
            e,
            Error::MissingSpecialToken {
                add_key: "tokenizer.ggml.add_bos_token",
                id_key: "tokenizer.ggml.bos_token_id"
            }
        ),
        "{e}"
    );
    // without add_bos the same vocabulary loads, and has no BOS (the default 11 is out of range)
    m.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    let tok = Tokenizer::from_metadata(&m).unwrap();
    assert_eq!(tok.bos(), None);
    // the merge "a b" applies but "ab" is no token: llama.cpp falls back to the one-byte tokens
    assert_eq!(tok.encode("ab", true, true).unwrap(), [0, 1]);
}

#[test]
fn empty_vocab_and_missing_tokens() {
    let mut m = meta(TinyModel::gemma3());
    m.set("tokenizer.ggml.tokens", Value::Array(Array::String(Vec::new())));
    assert!(matches!(load_err(&m), Error::EmptyVocab));

    let mut m = meta(TinyModel::gemma3());
    m.remove("tokenizer.ggml.tokens");
    assert!(load_err(&m).to_string().contains("tokenizer.ggml.tokens"));
}

#[test]
fn spm_without_byte_tokens_reports_the_byte() {
    let mut m = Metadata::new();
    m.set("tokenizer.ggml.model", Value::String("llama".into()));
    m.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["<unk>".into(), "▁a".into(), "a".into()])),
    );
    m.set("tokenizer.ggml.add_bos_token", Value::Bool(false));
    let tok = Tokenizer::from_metadata(&m).unwrap();
    assert_eq!(tok.encode("a", false, false).unwrap(), [1]); // add_space_prefix defaults to true
    // "▁é" has no piece and no byte tokens: the first byte of ▁ (0xE2) cannot be encoded
    let e = tok.encode("é", false, false).unwrap_err();
    assert!(matches!(e, Error::NoByteToken { byte: 0xE2 }), "{e}");
}
