//! llama.cpp's reference outputs in `shared/reference/reference-greedy.json` (beside the repository root).

use std::path::PathBuf;

use serde::Deserialize;

/// One prompt's reference: prompt ids (with BOS when the model adds it) and the greedy continuation.
#[derive(Clone, Debug, Deserialize)]
pub struct PromptRef {
    /// Prompt text.
    pub prompt: String,
    /// llama.cpp's token ids of the prompt (`add_special=true`).
    pub prompt_ids: Vec<u32>,
    /// Greedy continuation; ends with the EOG token when generation stopped early.
    pub generated_ids: Vec<u32>,
    /// Detokenized continuation.
    pub generated_text: String,
    /// Whether generation stopped on an end-of-generation token.
    pub stopped_eos: bool,
}

/// One model's references.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelRef {
    /// Reference name (`SmolLM2-135M-Instruct.Q4_1`).
    pub name: String,
    /// GGUF file name.
    pub file: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Per-prompt references.
    pub prompts: Vec<PromptRef>,
}

#[derive(Deserialize)]
struct RefFile {
    models: Vec<ModelRef>,
}

/// The `shared/` directory: `$SILICA_SHARED_DIR`, else `../shared` beside the repository root.
pub fn shared_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SILICA_SHARED_DIR") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// The references for the model whose reference name is `name`.
///
/// # Panics
/// If the reference file or the model entry is missing.
pub fn llama_cpp_greedy(name: &str) -> ModelRef {
    let path = shared_dir().join("reference/reference-greedy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (set SILICA_SHARED_DIR)", path.display()));
    let refs: RefFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    refs.models
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{} has no model `{name}`", path.display()))
}
