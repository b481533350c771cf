//! `silica quantize`: llama.cpp's `llama-quantize` (same type names, mixes and flags).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use silica_convert::{QuantizeParams, RecipeOptions};
use silica_gguf::GgmlType;

use super::progress::ByteBar;

/// Arguments of `silica quantize`.
#[derive(Debug, Args)]
#[command(
    after_help = "TYPE is a llama.cpp file type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q2_K_S Q3_K_S \
Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K, or Q3_K/Q4_K/Q5_K for the _M mixes (as llama-quantize). Each mix \
gives some tensors more bits (output and attn_v/ffn_down in some layers), as llama.cpp does; --pure gives every \
tensor TYPE's base type. Norms and other 1-D tensors stay F32."
)]
pub(crate) struct QuantizeArgs {
    /// Input GGUF (F32, F16 or BF16; any type silica can decode with --allow-requantize).
    input: PathBuf,
    /// Output GGUF; written to a temporary file renamed at the end.
    output: PathBuf,
    /// Target type (see below).
    #[arg(value_name = "TYPE")]
    ty: String,
    /// Accept quantized input tensors (dequantized to F32 first; quality suffers twice).
    #[arg(long)]
    allow_requantize: bool,
    /// No per-tensor mix: every quantizable tensor gets TYPE's base type.
    #[arg(long)]
    pure: bool,
    /// Keep output.weight as it is in the input.
    #[arg(long)]
    leave_output_tensor: bool,
    /// Type of output.weight (e.g. Q8_0, Q6_K, F16).
    #[arg(long, value_name = "GGML_TYPE")]
    output_tensor_type: Option<String>,
    /// Type of token_embd.weight.
    #[arg(long, value_name = "GGML_TYPE")]
    token_embedding_type: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
}

/// Parses a ggml tensor type name (`Q6_K`, `f16`...).
pub(crate) fn parse_ggml_type(s: &str) -> anyhow::Result<GgmlType> {
    let ty: GgmlType = s
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown tensor type `{s}` (e.g. F16, Q8_0, Q4_K, Q6_K)"))?;
    anyhow::ensure!(
        silica_quant::can_quantize(ty),
        "silica cannot write tensors of type {ty}"
    );
    Ok(ty)
}

pub(crate) fn run(a: &QuantizeArgs) -> anyhow::Result<()> {
    let file_type = silica_convert::parse_target(&a.ty)?;
    if a.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let mut recipe = RecipeOptions::new(file_type);
    recipe.pure = a.pure;
    recipe.leave_output_tensor = a.leave_output_tensor;
    recipe.output_tensor_type = a.output_tensor_type.as_deref().map(parse_ggml_type).transpose()?;
    recipe.token_embedding_type = a
        .token_embedding_type
        .as_deref()
        .map(parse_ggml_type)
        .transpose()?;
    let params = QuantizeParams {
        recipe,
        allow_requantize: a.allow_requantize,
        n_threads: a.threads.unwrap_or(0),
    };
    let mut bar = ByteBar::new("quantize");
    let summary = silica_convert::quantize_file(&a.input, &a.output, &params, &mut |d| {
        bar.update(d.bytes_done, d.bytes_total, &d.planned.info.name);
    })
    .with_context(|| format!("quantizing {} to {}", a.input.display(), a.output.display()))?;
    bar.finish();
    let fell_back: Vec<_> = summary
        .tensors
        .iter()
        .filter(|p| p.fell_back_from.is_some())
        .collect();
    if let Some(first) = fell_back.first() {
        eprintln!(
            "note: {} tensors have rows their mix type's blocks do not divide and got a fallback type as in \
             llama.cpp (e.g. {}: {} values per row, {} -> {})",
            fell_back.len(),
            first.info.name,
            first.info.ne.first().copied().unwrap_or(0),
            first.fell_back_from.map_or_else(String::new, |t| t.to_string()),
            first.ty
        );
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    eprintln!(
        "{}: {} tensors, {:.2} MiB -> {:.2} MiB as {} in {:.1} s",
        a.output.display(),
        summary.tensors.len(),
        mib(summary.bytes_in),
        mib(summary.bytes_out),
        file_type,
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}
