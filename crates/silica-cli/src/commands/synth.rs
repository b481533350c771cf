//! `silica synth`: random-weight models at the real shapes of published models.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use silica_convert::synth::{self, Preset, SynthConfig, SynthParams, TokenizerSource};
use silica_gguf::FileType;

use super::progress::ByteBar;

/// Arguments of `silica synth`.
#[derive(Debug, Args)]
#[command(
    after_help = "Weights ~ N(0, 0.02), norm weights 1; tensor names, shapes and hyperparameters are the \
real model's, so silica and llama.cpp both load and run the file. Without --tokenizer-from the vocabulary is a \
built-in byte-level BPE padded to the preset's size; with it, the real tokenizer (and its vocabulary size)."
)]
pub(crate) struct SynthArgs {
    /// A built-in shape (see --list).
    #[arg(long, conflicts_with = "config", required_unless_present_any = ["config", "list"])]
    shape: Option<String>,
    /// A Hugging Face config.json (llama, mistral, qwen2, gemma3).
    #[arg(long, value_name = "CONFIG_JSON")]
    config: Option<PathBuf>,
    /// File type to write (as `silica quantize`: Q4_0, Q8_0, Q4_K_M, F16...).
    #[arg(long = "type", value_name = "TYPE", default_value = "Q4_0")]
    ty: String,
    /// No per-tensor mix: every quantizable tensor gets TYPE's base type.
    #[arg(long)]
    pure: bool,
    /// Output file (default: `SHAPE-TYPE.gguf` in the current directory).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Copy the tokenizer (every tokenizer.* key) from this GGUF.
    #[arg(long, value_name = "REAL_GGUF")]
    tokenizer_from: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// List the presets with their parameter counts and file sizes, then exit.
    #[arg(long)]
    list: bool,
}

const LIST_TYPES: [FileType; 5] = [
    FileType::MOSTLY_F16,
    FileType::MOSTLY_Q8_0,
    FileType::MOSTLY_Q4_K_M,
    FileType::MOSTLY_Q4_0,
    FileType::MOSTLY_Q2_K,
];

fn list() -> anyhow::Result<()> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut out = String::new();
    write!(
        out,
        "{:<14} {:<7} {:>15} {:>15}",
        "preset", "arch", "params", "published"
    )?;
    for t in LIST_TYPES {
        write!(out, " {:>9}", format!("{t} GiB"))?;
    }
    out.push('\n');
    for Preset {
        name,
        published_params,
        config,
    } in synth::presets()
    {
        write!(
            out,
            "{name:<14} {:<7} {:>15} {:>15}",
            config.arch.name(),
            config.n_params(),
            published_params
        )?;
        for t in LIST_TYPES {
            write!(out, " {:>9.2}", gib(synth::tensor_data_bytes(&config, t)?))?;
        }
        out.push('\n');
    }
    // A closed pipe (`--list | head`) comes back as an error, which main treats as a normal end.
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

pub(crate) fn run(a: &SynthArgs) -> anyhow::Result<()> {
    if a.list {
        return list();
    }
    if a.threads == Some(0) {
        anyhow::bail!("--threads must be at least 1");
    }
    let file_type = silica_convert::parse_target(&a.ty)?;
    let (config, label): (SynthConfig, String) = match (&a.shape, &a.config) {
        (Some(s), _) => (synth::preset(s)?.config, s.to_ascii_lowercase()),
        (None, Some(c)) => {
            let cfg = SynthConfig::from_hf_config(c)?;
            let label = cfg.name.clone();
            (cfg, label)
        }
        (None, None) => anyhow::bail!("give --shape PRESET or --config config.json (see --list)"),
    };
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{label}-{file_type}.gguf")));
    let params = SynthParams {
        config,
        file_type,
        pure: a.pure,
        seed: a.seed,
        tokenizer: a
            .tokenizer_from
            .clone()
            .map_or(TokenizerSource::Builtin, TokenizerSource::From),
        n_threads: a.threads.unwrap_or(0),
    };
    let mut bar = ByteBar::new("synth");
    let summary = synth::synth_file(&params, &output, &mut |_, _, done, total| {
        bar.update(done, total, "")
    })
    .with_context(|| format!("writing {}", output.display()))?;
    bar.finish();
    eprintln!(
        "{}: {} parameters, {:.2} MiB as {file_type} in {:.1} s",
        output.display(),
        summary.n_params,
        summary.file_bytes as f64 / (1u64 << 20) as f64,
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}
