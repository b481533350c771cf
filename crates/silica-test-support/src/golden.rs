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
    /// Detokenized continuation (absent in token-only reference files).
    #[serde(default)]
    pub generated_text: String,
    /// Whether generation stopped on an end-of-generation token.
    #[serde(default)]
    pub stopped_eos: bool,
}

/// One model's references.
#[derive(Clone, Debug, Deserialize)]
pub struct ModelRef {
    /// Reference name (`SmolLM2-135M-Instruct.Q4_1`).
    pub name: String,
    /// GGUF file name.
    pub file: String,
    /// File size in bytes (absent in token-only reference files).
    #[serde(default)]
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
    read_model(
        &shared_dir().join("reference/reference-greedy.json"),
        name,
        " (set SILICA_SHARED_DIR)",
    )
}

/// llama.cpp's greedy continuations built for aarch64, for the models and prompts of the shared (x86-64) file,
/// committed in this crate (its `llama_cpp`, `commands` and `notes` fields say how they were made).
pub fn aarch64_greedy_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden-llama-cpp-greedy-aarch64.json")
}

/// llama.cpp's references named `name` on the architecture the tests run on: on aarch64 from
/// [`aarch64_greedy_file`], elsewhere [`llama_cpp_greedy`]'s (x86-64). llama.cpp's NEON kernels sum in other
/// orders than its x86 ones, and its own greedy tokens move at near-ties: for 4 of the 6 prompts its aarch64
/// continuation differs from its x86 one.
///
/// # Panics
/// As [`llama_cpp_greedy`] and [`greedy_from`].
pub fn llama_cpp_greedy_here(name: &str) -> ModelRef {
    if cfg!(target_arch = "aarch64") {
        greedy_from(&aarch64_greedy_file(), name)
    } else {
        llama_cpp_greedy(name)
    }
}

/// The references named `name` in a reference file of the same schema at `path` (e.g. the token-only files
/// committed beside tests).
///
/// # Panics
/// If the file or the entry is missing.
pub fn greedy_from(path: &std::path::Path, name: &str) -> ModelRef {
    read_model(path, name, "")
}

/// The entry `name` of the reference file at `path`; `hint` follows the message when the file cannot be read.
fn read_model(path: &std::path::Path, name: &str, hint: &str) -> ModelRef {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}{hint}", path.display()));
    let refs: RefFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    refs.models
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{} has no model `{name}`", path.display()))
}

/// One greedy step as a test saw it: the token taken and the four highest `(id, logit)` pairs, highest first.
///
/// The 4 is `silica_model::GREEDY_TOP` (this crate cannot depend on silica-model, whose tests use it): the two
/// types must stay equal for `Model::greedy_top`'s steps to be passed here.
pub type GreedyStep = (u32, [(u32, f32); 4]);

/// Checks greedy continuations against a reference: for every prompt, `decode(prompt_ids, n)` must give the
/// reference tokens, except that a divergence is accepted where the reference's token is among the runners-up
/// with a logit within 1% of the top one (a near-tie that summation order can flip; three-way ties happen on
/// small models). Prints every divergence.
///
/// # Panics
/// Listing every prompt that diverged without a near-tie.
pub fn assert_greedy_matches(reference: &ModelRef, mut decode: impl FnMut(&[u32], usize) -> Vec<GreedyStep>) {
    let name = &reference.name;
    let mut failures = Vec::new();
    for p in &reference.prompts {
        let want = &p.generated_ids;
        let steps = decode(&p.prompt_ids, want.len());
        let got: Vec<u32> = steps.iter().map(|s| s.0).collect();
        match got.iter().zip(want).position(|(a, b)| a != b) {
            None if got.len() == want.len() => {
                eprintln!("{name} {:?}: all {} tokens equal llama.cpp", p.prompt, want.len())
            }
            None => failures.push(format!(
                "{name} {:?}: {} tokens, want {}",
                p.prompt,
                got.len(),
                want.len()
            )),
            Some(step) => {
                let top = steps[step].1;
                let (t1, l1) = top[0];
                let theirs = top[1..].iter().find(|&&(t, _)| t == want[step]);
                let gap = theirs.map(|&(_, l)| (l1 - l).abs() / l1.abs().max(l.abs()));
                let msg = format!(
                    "{name} {:?}: first difference at step {step}: silica {} vs llama.cpp {}; silica top {t1}={l1:.4}, llama.cpp's token {}",
                    p.prompt,
                    got[step],
                    want[step],
                    match (theirs, gap) {
                        (Some((_, l)), Some(g)) => format!("{l:.4} ({:.3}% below)", g * 100.0),
                        _ => format!("not in silica's top {}", top.len()),
                    }
                );
                eprintln!("{msg}");
                if gap.is_none_or(|g| g >= 0.01) {
                    failures.push(msg);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "diverged from llama.cpp without a near-tie:\n{}",
        failures.join("\n")
    );
}

/// Teacher-forced check, for engine paths whose free-running greedy text drifts from llama.cpp's after a few
/// tokens: each prompt's ids followed by its reference continuation but the last token are given to `logits`,
/// which returns one row of logits per token; at every step of the continuation llama.cpp's token must be within
/// `max_gap` (relative) of silica's top logit, and ranked first at nine steps in ten or more. Prints the count.
///
/// # Panics
/// At the first step beyond `max_gap`, or when llama.cpp's token is first at fewer than nine steps in ten.
pub fn assert_teacher_forced(
    reference: &ModelRef,
    max_gap: f32,
    mut logits: impl FnMut(&[u32]) -> Vec<Vec<f32>>,
) {
    let name = &reference.name;
    let (mut steps, mut first) = (0, 0);
    for p in &reference.prompts {
        let cont = &p.generated_ids;
        let mut tokens = p.prompt_ids.clone();
        tokens.extend_from_slice(&cont[..cont.len() - 1]);
        let logits = logits(&tokens);
        for (i, &want) in cont.iter().enumerate() {
            let row = &logits[p.prompt_ids.len() - 1 + i];
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let gap = (top - row[want as usize]) / top.abs();
            assert!(
                gap <= max_gap,
                "{name} {:?} step {i}: llama.cpp's token {want} is {:.2}% below silica's top logit",
                p.prompt,
                gap * 100.0
            );
            steps += 1;
            first += usize::from(row[want as usize] == top);
        }
    }
    eprintln!("{name}: llama.cpp's token ranked first at {first} of {steps} teacher-forced steps");
    assert!(
        10 * first >= 9 * steps,
        "{name}: first at only {first} of {steps} steps"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`aarch64_greedy_file`] holds the same models and prompts (and prompt ids) as the shared x86 reference, and
    /// continuations of the same lengths: checked on every architecture, so CI (x86) reads the file too.
    #[test]
    fn aarch64_reference_has_the_shared_prompts() {
        for name in ["SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"] {
            let (x86, arm) = (llama_cpp_greedy(name), greedy_from(&aarch64_greedy_file(), name));
            assert_eq!(x86.file, arm.file, "{name}");
            assert_eq!(x86.prompts.len(), arm.prompts.len(), "{name}");
            for (a, b) in x86.prompts.iter().zip(&arm.prompts) {
                assert_eq!((&a.prompt, &a.prompt_ids), (&b.prompt, &b.prompt_ids), "{name}");
                assert_eq!(
                    a.generated_ids.len(),
                    b.generated_ids.len(),
                    "{name} {:?}",
                    a.prompt
                );
            }
        }
    }
}
