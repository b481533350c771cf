//! The vocabulary read from GGUF `tokenizer.ggml.*` metadata, with the token attributes, special ids and
//! end-of-generation set that llama.cpp `llama_vocab::impl::load` derives from it.

use silica_gguf::{Array, Metadata, Value, keys};

use crate::bpe::PreTokenizer;
use crate::partition::SpecialTrie;
use crate::strtab::{Overflow, StrTable};
use crate::unicode;
use crate::{Error, Result, TokenAttr, TokenizerKind};

/// Metadata keys llama.cpp reads that `silica_gguf::keys` does not name (llama.cpp `llama-arch.cpp`
/// `LLM_KV_NAMES`; "seperator" is llama.cpp's spelling).
mod extra_keys {
    pub(super) const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    pub(super) const SEP_ID: &str = "tokenizer.ggml.seperator_token_id";
    pub(super) const MASK_ID: &str = "tokenizer.ggml.mask_token_id";
    pub(super) const FIM_PRE_ID: &str = "tokenizer.ggml.fim_pre_token_id";
    pub(super) const FIM_SUF_ID: &str = "tokenizer.ggml.fim_suf_token_id";
    pub(super) const FIM_MID_ID: &str = "tokenizer.ggml.fim_mid_token_id";
    pub(super) const FIM_PAD_ID: &str = "tokenizer.ggml.fim_pad_token_id";
    pub(super) const FIM_REP_ID: &str = "tokenizer.ggml.fim_rep_token_id";
    pub(super) const FIM_SEP_ID: &str = "tokenizer.ggml.fim_sep_token_id";
    pub(super) const PREFIX_ID: &str = "tokenizer.ggml.prefix_token_id";
    pub(super) const SUFFIX_ID: &str = "tokenizer.ggml.suffix_token_id";
    pub(super) const MIDDLE_ID: &str = "tokenizer.ggml.middle_token_id";
    pub(super) const ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
}

/// One vocabulary entry.
#[derive(Clone, Debug)]
pub(crate) struct TokenData {
    pub(crate) score: f32,
    pub(crate) attr: TokenAttr,
}

/// Special token ids (llama.cpp `special_*_id`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) eot: Option<u32>,
    pub(crate) eom: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) sep: Option<u32>,
    pub(crate) pad: Option<u32>,
    pub(crate) mask: Option<u32>,
    pub(crate) fim_pre: Option<u32>,
    pub(crate) fim_suf: Option<u32>,
    pub(crate) fim_mid: Option<u32>,
    pub(crate) fim_pad: Option<u32>,
    pub(crate) fim_rep: Option<u32>,
    pub(crate) fim_sep: Option<u32>,
}

/// Everything the tokenizer needs, built once.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub(crate) kind: TokenizerKind,
    pub(crate) pre_name: String,
    /// BPE pre-tokenizer (`None` for SentencePiece).
    pub(crate) pre: Option<PreTokenizer>,
    pub(crate) tokens: Vec<TokenData>,
    /// Every token's vocabulary text, entry = id; a repeated text finds its last id.
    texts: StrTable,
    /// BPE merge lines `"left right"`, first occurrence of each; `merge_ranks[entry]` is the line's index in
    /// `tokenizer.ggml.merges`.
    merges: StrTable,
    merge_ranks: Vec<u32>,
    /// SentencePiece byte-fallback tokens (`<0xXX>`, else the byte itself as a token).
    byte_tokens: [Option<u32>; 256],
    pub(crate) ids: SpecialIds,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) clean_spaces: bool,
    /// End-of-generation ids, sorted (llama.cpp `special_eog_ids`).
    pub(crate) eog: Vec<u32>,
    /// Ids of CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first (llama.cpp `cache_special_tokens`).
    pub(crate) special_cache: Vec<u32>,
    pub(crate) special_trie: SpecialTrie,
    /// Every token's piece as rendered with `special = true`, concatenated; `piece_offsets[id]..[id + 1]`.
    pieces: Vec<u8>,
    piece_offsets: Vec<u32>,
}

/// Token texts llama.cpp recognizes as end-of-turn when `eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Token texts llama.cpp puts in the end-of-generation set (`special_eog_ids`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// llama.cpp `llama_token_type` → `llama_token_attr`.
fn attr_of_type(t: i64) -> TokenAttr {
    match t {
        1 => TokenAttr::NORMAL,
        2 => TokenAttr::UNKNOWN,
        3 => TokenAttr::CONTROL,
        4 => TokenAttr::USER_DEFINED,
        5 => TokenAttr::UNUSED,
        6 => TokenAttr::BYTE,
        _ => TokenAttr::UNDEFINED,
    }
}

/// A special-token id key: absent or negative means "not set"; out of range is an error.
fn read_id(meta: &Metadata, key: &'static str, n_vocab: usize) -> Result<Option<u32>> {
    let Some(v) = meta.get(key) else { return Ok(None) };
    let Some(id) = v.as_i64() else {
        return Err(silica_gguf::Error::WrongValueType {
            key: key.to_owned(),
            expected: "uint32",
            found: v.type_description(),
        }
        .into());
    };
    if id < 0 {
        return Ok(None);
    }
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n_vocab => Ok(Some(id)),
        _ => Err(Error::SpecialIdOutOfRange {
            key,
            id: u32::try_from(id).unwrap_or(u32::MAX),
            n_vocab,
        }),
    }
}

impl Vocab {
    /// Builds the vocabulary as llama.cpp `llama_vocab::impl::load` does.
    pub(crate) fn load(meta: &Metadata) -> Result<Self> {
        let model = meta.get_str(keys::TOKENIZER_MODEL)?;
        let pre_key = meta.opt_str(keys::TOKENIZER_PRE)?;
        let kind = match model {
            "llama" => TokenizerKind::Spm,
            "gpt2" => TokenizerKind::Bpe,
            _ => {
                return Err(Error::UnknownModel {
                    model: model.to_owned(),
                });
            }
        };

        let texts = meta.get_string_array(keys::TOKENIZER_TOKENS)?;
        let n_vocab = texts.len();
        if n_vocab == 0 {
            return Err(Error::EmptyVocab);
        }
        if u32::try_from(n_vocab).is_err() {
            return Err(Error::ArrayLength {
                key: keys::TOKENIZER_TOKENS,
                len: n_vocab,
                n_vocab: u32::MAX as usize,
            });
        }

        // model defaults, then keys (llama.cpp: SPM bos 1 / eos 2 / unk 0; BPE bos = eos = 11)
        let mut ids = SpecialIds::default();
        let (pre, mut add_bos, mut add_space_prefix, clean_spaces) = match kind {
            TokenizerKind::Spm => {
                ids.bos = Some(1);
                ids.eos = Some(2);
                ids.unk = Some(0);
                (None, true, true, false)
            }
            TokenizerKind::Bpe => {
                // llama.cpp requires the merges key for gpt2 vocabularies
                meta.get_string_array(keys::TOKENIZER_MERGES)?;
                let name = pre_key.unwrap_or("");
                let pre = PreTokenizer::from_name(name)
                    .ok_or_else(|| Error::UnknownPre { pre: name.to_owned() })?;
                ids.bos = Some(11);
                ids.eos = Some(11);
                let (add_bos, clean) = (pre.add_bos, pre.clean_spaces);
                (Some(pre), add_bos, false, clean)
            }
        };
        let mut add_eos = false;
        if let Some(v) = meta.opt_bool(keys::TOKENIZER_ADD_SPACE_PREFIX)? {
            add_space_prefix = v;
        }
        for id in [&mut ids.bos, &mut ids.eos, &mut ids.unk] {
            if id.is_some_and(|i| i as usize >= n_vocab) {
                *id = None;
            }
        }

        let scores = read_scores(meta, n_vocab)?;
        let types = read_types(meta, n_vocab)?;

        let mut tokens = Vec::with_capacity(n_vocab);
        let text_bytes = texts.iter().map(String::len).sum();
        let mut token_texts = StrTable::with_capacity(n_vocab, text_bytes);
        let too_long = |_: Overflow| Error::ArrayLength {
            key: keys::TOKENIZER_TOKENS,
            len: text_bytes,
            n_vocab: u32::MAX as usize,
        };
        for (i, text) in texts.iter().enumerate() {
            // a repeated text maps to its last id (`token_to_id[word] = i`); recent llama.cpp rejects such
            // vocabularies, but the tiny test fixtures have them
            if text.is_empty() {
                token_texts.push(&format!("[EMPTY_{i}]")).map_err(too_long)?;
            } else {
                token_texts.push(text).map_err(too_long)?;
            }
            tokens.push(TokenData {
                score: scores.as_ref().map_or(0.0, |s| s[i]),
                attr: types.as_ref().map_or(TokenAttr::NORMAL, |t| attr_of_type(t[i])),
            });
        }

        let mut merges = StrTable::default();
        let mut merge_ranks = Vec::new();
        if kind == TokenizerKind::Bpe {
            let lines = meta.get_string_array(keys::TOKENIZER_MERGES)?;
            let bytes = lines.iter().map(String::len).sum();
            merges = StrTable::with_capacity(lines.len(), bytes);
            for (rank, line) in lines.iter().enumerate() {
                // llama.cpp splits at the first space after the first byte; a line without one can never
                // match a pair of symbols. A repeated line keeps its first rank.
                if line.as_bytes().get(1..).is_some_and(|rest| rest.contains(&b' '))
                    && merges.find(line).is_none()
                {
                    merges.push(line).map_err(|_| Error::ArrayLength {
                        key: keys::TOKENIZER_MERGES,
                        len: bytes,
                        n_vocab: u32::MAX as usize,
                    })?;
                    merge_ranks.push(rank as u32);
                }
            }
        }

        let mut vocab = Vocab {
            kind,
            pre_name: pre_key.unwrap_or("default").to_owned(),
            pre,
            tokens,
            texts: token_texts,
            merges,
            merge_ranks,
            byte_tokens: [None; 256],
            ids,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            eog: Vec::new(),
            special_cache: Vec::new(),
            special_trie: SpecialTrie::default(),
            pieces: Vec::new(),
            piece_offsets: Vec::new(),
        };
        let mut byte_tokens = [None; 256];
        for (b, slot) in (0..=255u8).zip(byte_tokens.iter_mut()) {
            *slot = vocab.token_id(&format!("<0x{b:02X}>")).or_else(|| {
                if b.is_ascii() {
                    vocab.token_id(char::from(b).encode_utf8(&mut [0u8; 4]))
                } else {
                    None
                }
            });
        }
        vocab.byte_tokens = byte_tokens;

        vocab.read_special_ids(meta, n_vocab)?;
        if let Some(v) = meta.opt_bool(keys::TOKENIZER_ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = meta.opt_bool(keys::TOKENIZER_ADD_EOS)? {
            add_eos = v;
        }
        let add_sep = meta.opt_bool(extra_keys::ADD_SEP)?.unwrap_or(false);
        if add_bos && vocab.ids.bos.is_none() {
            return Err(Error::MissingSpecialToken {
                add_key: keys::TOKENIZER_ADD_BOS,
                id_key: keys::TOKENIZER_BOS_ID,
            });
        }
        if add_eos && vocab.ids.eos.is_none() {
            return Err(Error::MissingSpecialToken {
                add_key: keys::TOKENIZER_ADD_EOS,
                id_key: keys::TOKENIZER_EOS_ID,
            });
        }
        if add_sep && vocab.ids.sep.is_none() {
            return Err(Error::MissingSpecialToken {
                add_key: extra_keys::ADD_SEP,
                id_key: extra_keys::SEP_ID,
            });
        }
        vocab.add_bos = add_bos;
        vocab.add_eos = add_eos;

        vocab.detect_special_tokens();
        vocab.build_special_cache();
        vocab.build_pieces()?;
        vocab.apply_model_attrs(meta)?;
        Ok(vocab)
    }

    fn read_special_ids(&mut self, meta: &Metadata, n_vocab: usize) -> Result<()> {
        type Slot = fn(&mut SpecialIds) -> &mut Option<u32>;
        let slots: [(&'static str, Slot); 17] = [
            (keys::TOKENIZER_BOS_ID, |i| &mut i.bos),
            (keys::TOKENIZER_EOS_ID, |i| &mut i.eos),
            (keys::TOKENIZER_EOT_ID, |i| &mut i.eot),
            (extra_keys::EOM_ID, |i| &mut i.eom),
            (keys::TOKENIZER_UNK_ID, |i| &mut i.unk),
            (extra_keys::SEP_ID, |i| &mut i.sep),
            (keys::TOKENIZER_PAD_ID, |i| &mut i.pad),
            (extra_keys::MASK_ID, |i| &mut i.mask),
            (extra_keys::FIM_PRE_ID, |i| &mut i.fim_pre),
            (extra_keys::FIM_SUF_ID, |i| &mut i.fim_suf),
            (extra_keys::FIM_MID_ID, |i| &mut i.fim_mid),
            (extra_keys::FIM_PAD_ID, |i| &mut i.fim_pad),
            (extra_keys::FIM_REP_ID, |i| &mut i.fim_rep),
            (extra_keys::FIM_SEP_ID, |i| &mut i.fim_sep),
            // deprecated spellings of the FIM keys
            (extra_keys::PREFIX_ID, |i| &mut i.fim_pre),
            (extra_keys::SUFFIX_ID, |i| &mut i.fim_suf),
            (extra_keys::MIDDLE_ID, |i| &mut i.fim_mid),
        ];
        for (key, slot) in slots {
            if let Some(id) = read_id(meta, key, n_vocab)? {
                *slot(&mut self.ids) = Some(id);
            }
        }
        Ok(())
    }

    /// The ids whose text is the canonical one (`token_to_id[text] == id`), in id order: the entries llama.cpp
    /// visits when it walks `token_to_id`.
    fn canonical_ids(&self) -> Vec<u32> {
        (0..self.tokens.len() as u32)
            .filter(|&id| self.token_id(self.texts.at(id)) == Some(id))
            .collect()
    }

    /// llama.cpp's text-based detection of EOT/EOM/FIM tokens, "unused" control tokens and the
    /// end-of-generation set, including the attribute overrides it applies on the way. llama.cpp walks an
    /// unordered map; where two texts compete for one slot this takes the lowest id.
    fn detect_special_tokens(&mut self) {
        let canonical = self.canonical_ids();
        let tokens = &mut self.tokens;
        let text = |id: u32| self.texts.at(id);
        let ids = &mut self.ids;
        let mark = |slot: &mut Option<u32>, texts: &[&str], tokens: &mut [TokenData]| {
            if slot.is_some() {
                return;
            }
            if let Some(&id) = canonical.iter().find(|&&id| texts.contains(&text(id))) {
                *slot = Some(id);
                tokens[id as usize].attr.insert(TokenAttr::CONTROL);
            }
        };
        mark(&mut ids.eot, EOT_TEXTS, tokens);
        mark(&mut ids.eom, EOM_TEXTS, tokens);
        mark(&mut ids.fim_pre, FIM_PRE_TEXTS, tokens);
        mark(&mut ids.fim_suf, FIM_SUF_TEXTS, tokens);
        mark(&mut ids.fim_mid, FIM_MID_TEXTS, tokens);
        mark(&mut ids.fim_pad, FIM_PAD_TEXTS, tokens);
        mark(&mut ids.fim_rep, FIM_REP_TEXTS, tokens);
        mark(&mut ids.fim_sep, FIM_SEP_TEXTS, tokens);

        for &id in &canonical {
            let t = &mut tokens[id as usize];
            if t.attr.contains(TokenAttr::CONTROL) && text(id).contains("unused") {
                t.attr.insert(TokenAttr::UNUSED);
            }
        }

        let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
            .into_iter()
            .flatten()
            .collect();
        for &id in &canonical {
            let t = &mut tokens[id as usize];
            if EOG_TEXTS.contains(&text(id)) {
                eog.push(id);
                t.attr.insert(TokenAttr::CONTROL);
            }
        }
        // gpt-oss: these are always rendered
        for &id in &canonical {
            if matches!(
                text(id),
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) {
                tokens[id as usize].attr = TokenAttr::USER_DEFINED;
            }
        }
        eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        // o200k_harmony / solar-open: `<|end|>` ends a message, not the generation
        if let Some(end) = find_text(&self.texts, &eog, "<|end|>") {
            let call = find_text(&self.texts, &eog, "<|call|>").is_some()
                || find_text(&self.texts, &eog, "<|calls|>").is_some();
            let ret = find_text(&self.texts, &eog, "<|return|>").is_some();
            let flush = find_text(&self.texts, &eog, "<|flush|>").is_some();
            if call && (ret || flush) {
                eog.retain(|&id| id != end);
                tokens[end as usize].attr = TokenAttr::USER_DEFINED;
            }
        }
        // gemma4 / plamo: `</s>` is an ordinary token there
        if let Some(s) = find_text(&self.texts, &eog, "</s>")
            && (find_text(&self.texts, &eog, "<|tool_response>").is_some()
                || find_text(&self.texts, &eog, "<|plamo:eos|>").is_some())
        {
            eog.retain(|&id| id != s);
            tokens[s as usize].attr = TokenAttr::NORMAL;
        }
        self.eog = eog;
    }

    fn build_special_cache(&mut self) {
        let special = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0);
        let mut cache: Vec<u32> = (0..self.tokens.len() as u32)
            .filter(|&id| self.tokens[id as usize].attr.intersects(special))
            .collect();
        // longest first; llama.cpp's std::sort leaves equal lengths in unspecified order, this keeps id order
        cache.sort_by_key(|&id| std::cmp::Reverse(self.texts.at(id).len()));
        self.special_trie = SpecialTrie::new(cache.iter().map(|&id| self.texts.at(id)));
        self.special_cache = cache;
    }

    /// Renders every token as llama.cpp `token_to_piece(id, special = true)` does and caches the bytes.
    fn build_pieces(&mut self) -> Result<()> {
        let mut pieces = Vec::with_capacity(self.texts.text_bytes());
        let mut offsets = Vec::with_capacity(self.tokens.len() + 1);
        offsets.push(0u32);
        for (id, t) in (0u32..).zip(&self.tokens) {
            let (a, text) = (t.attr, self.texts.at(id));
            if a.intersects(TokenAttr(
                TokenAttr::UNKNOWN.0 | TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0,
            )) {
                pieces.extend_from_slice(text.as_bytes());
            } else if a.contains(TokenAttr::NORMAL) {
                match self.kind {
                    TokenizerKind::Spm => {
                        for (k, part) in text.split('▁').enumerate() {
                            if k > 0 {
                                pieces.push(b' ');
                            }
                            pieces.extend_from_slice(part.as_bytes());
                        }
                    }
                    TokenizerKind::Bpe => decode_byte_level(text, &mut pieces),
                }
            } else if a.contains(TokenAttr::BYTE) {
                pieces.push(byte_of_token(id, text)?);
            }
            let end = u32::try_from(pieces.len()).map_err(|_| Error::ArrayLength {
                key: keys::TOKENIZER_TOKENS,
                len: pieces.len(),
                n_vocab: self.tokens.len(),
            })?;
            offsets.push(end);
        }
        self.pieces = pieces;
        self.piece_offsets = offsets;
        Ok(())
    }

    /// llama.cpp's per-model attribute fixes (LSTRIP/RSTRIP), keyed on `general.name`, `tokenizer.ggml.pre`
    /// and `general.architecture`.
    fn apply_model_attrs(&mut self, meta: &Metadata) -> Result<()> {
        let name = meta.opt_str(keys::GENERAL_NAME)?.unwrap_or("").to_lowercase();
        let arch = meta.opt_str(keys::GENERAL_ARCHITECTURE)?.unwrap_or("");
        let pre = meta.opt_str(keys::TOKENIZER_PRE)?.unwrap_or("");
        let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|sub| s.contains(sub));
        if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
            || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
        {
            self.set_attr("<mask>", TokenAttr::LSTRIP, true);
        } else if contains_any(&name, &["phi-3", "phi3"]) {
            for &id in &self.special_cache {
                self.tokens[id as usize].attr.insert(TokenAttr::RSTRIP);
            }
            self.set_attr("</s>", TokenAttr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                self.set_attr(t, TokenAttr::RSTRIP, false);
            }
        } else if contains_any(&name, &["modern-bert"]) {
            self.set_attr("[MASK]", TokenAttr::LSTRIP, true);
        }
        Ok(())
    }

    fn set_attr(&mut self, text: &str, attr: TokenAttr, on: bool) {
        if let Some(id) = self.token_id(text) {
            let a = &mut self.tokens[id as usize].attr;
            if on {
                a.insert(attr);
            } else {
                a.remove(attr);
            }
        }
    }

    pub(crate) fn token_id(&self, text: &str) -> Option<u32> {
        self.texts.find(text)
    }

    /// The vocabulary text of `id`, or `None` out of range.
    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id)
    }

    pub(crate) fn score(&self, id: u32) -> f32 {
        self.tokens[id as usize].score
    }

    pub(crate) fn merge_rank(&self, key: &str) -> Option<u32> {
        self.merges.find(key).map(|i| self.merge_ranks[i as usize])
    }

    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        self.byte_tokens[b as usize]
    }

    /// The cached piece of `id` (rendered with `special = true`); `id` must be in range.
    pub(crate) fn piece(&self, id: u32) -> &[u8] {
        let i = id as usize;
        &self.pieces[self.piece_offsets[i] as usize..self.piece_offsets[i + 1] as usize]
    }
}

/// The first id in `eog` whose text is `text`.
fn find_text(texts: &StrTable, eog: &[u32], text: &str) -> Option<u32> {
    eog.iter().copied().find(|&id| texts.at(id) == text)
}

/// `tokenizer.ggml.scores`: float32 or int32 (llama.cpp accepts both), at least one per token.
fn read_scores(meta: &Metadata, n_vocab: usize) -> Result<Option<Vec<f32>>> {
    let key = keys::TOKENIZER_SCORES;
    let Some(v) = meta.get(key) else { return Ok(None) };
    let scores: Vec<f32> = match v {
        Value::Array(Array::F32(a)) => a.clone(),
        Value::Array(Array::I32(a)) => a.iter().map(|&x| x as f32).collect(),
        other => {
            return Err(Error::ArrayType {
                key,
                expected: "array[float32] or array[int32]",
                found: other.type_description(),
            });
        }
    };
    if scores.len() < n_vocab {
        return Err(Error::ArrayLength {
            key,
            len: scores.len(),
            n_vocab,
        });
    }
    Ok(Some(scores))
}

/// `tokenizer.ggml.token_type`: integers, at least one per token.
fn read_types(meta: &Metadata, n_vocab: usize) -> Result<Option<Vec<i64>>> {
    let key = keys::TOKENIZER_TOKEN_TYPE;
    if !meta.contains(key) {
        return Ok(None);
    }
    let types = meta.get_int_array(key)?;
    if types.len() < n_vocab {
        return Err(Error::ArrayLength {
            key,
            len: types.len(),
            n_vocab,
        });
    }
    Ok(Some(types))
}

/// The byte of a BYTE-type token `<0xXX>` (llama.cpp `token_to_byte`: the two characters after `<0x`, as hex).
fn byte_of_token(id: u32, text: &str) -> Result<u8> {
    let bad = || Error::BadByteToken {
        id,
        text: text.to_owned(),
    };
    let digits = text.as_bytes().get(3..).ok_or_else(bad)?;
    let digits = &digits[..digits.len().min(2)];
    let mut value = 0u32;
    for &d in digits {
        match char::from(d).to_digit(16) {
            Some(x) => value = value * 16 + x,
            None => break,
        }
    }
    Ok(value as u8)
}

/// A byte-level BPE token's bytes (llama.cpp `llama_decode_text`): each character through GPT-2's table; a
/// character outside it becomes `[UNK_BYTE_0x..<token text>]` as in llama.cpp.
fn decode_byte_level(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut [0u8; 4]).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
}
