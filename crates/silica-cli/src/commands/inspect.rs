//! `silica inspect`: what is in a GGUF file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{Value as Json, json};
use silica_gguf::{Array, FileType, GgufFile, Value, keys};
use silica_tokenizer::Tokenizer;

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `silica inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// GGUF file.
    file: PathBuf,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Leave out the tensor table.
    #[arg(long = "no-tensors")]
    no_tensors: bool,
}

fn value_json(v: &Value) -> Json {
    fn arr(a: &Array) -> Json {
        match a {
            Array::U8(v) => json!(v),
            Array::I8(v) => json!(v),
            Array::U16(v) => json!(v),
            Array::I16(v) => json!(v),
            Array::U32(v) => json!(v),
            Array::I32(v) => json!(v),
            Array::F32(v) => json!(v),
            Array::Bool(v) => json!(v),
            Array::String(v) => json!(v),
            Array::Array(v) => Json::Array(v.iter().map(arr).collect()),
            Array::U64(v) => json!(v),
            Array::I64(v) => json!(v),
            Array::F64(v) => json!(v),
        }
    }
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) => arr(a),
    }
}

/// Large arrays (vocabularies) are summarised in JSON too: their length and type, not 262144 strings.
const JSON_ARRAY_MAX: usize = 64;

pub(crate) fn run(a: &InspectArgs) -> anyhow::Result<()> {
    let f = GgufFile::open(&a.file).with_context(|| format!("inspecting {}", a.file.display()))?;
    let m = f.metadata();
    let n_params = f.n_params();
    let bytes = f.tensor_data_bytes();
    let bpw = if n_params > 0 {
        bytes as f64 * 8.0 / n_params as f64
    } else {
        0.0
    };
    let file_type = m
        .opt_u32(keys::GENERAL_FILE_TYPE)?
        .map(|id| FileType::from_id(id).map_or(format!("unknown ({id})"), |t| t.name().to_owned()));
    let tok = Tokenizer::from_metadata(m);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match a.output {
        Format::Json => {
            let metadata: serde_json::Map<String, Json> = m
                .iter()
                .map(|(k, v)| {
                    let j = match v {
                        Value::Array(arr) if arr.len() > JSON_ARRAY_MAX => {
                            json!({ "type": format!("array[{}]", arr.element_type().name()), "len": arr.len() })
                        }
                        v => value_json(v),
                    };
                    (k.to_owned(), j)
                })
                .collect();
            let tensors: Vec<Json> = if a.no_tensors {
                Vec::new()
            } else {
                f.tensors()
                    .iter()
                    .map(|t| json!({ "name": t.name, "type": t.ty.name(), "shape": t.shape(), "ne": t.ne, "n_bytes": t.n_bytes, "offset": t.offset }))
                    .collect()
            };
            let tokenizer = match &tok {
                Ok(t) => {
                    json!({ "model": m.opt_str(keys::TOKENIZER_MODEL)?, "pre": t.pre(), "n_vocab": t.n_vocab(),
                                  "bos_token_id": t.bos(), "eos_token_id": t.eos(), "add_bos_token": t.add_bos(), "eog_ids": t.eog_ids() })
                }
                Err(e) => json!({ "error": e.to_string() }),
            };
            let j = json!({
                "file": a.file.display().to_string(),
                "file_bytes": f.file_bytes(),
                "gguf_version": f.version(),
                "alignment": f.alignment(),
                "architecture": m.opt_str(keys::GENERAL_ARCHITECTURE)?,
                "name": m.opt_str(keys::GENERAL_NAME)?,
                "file_type": file_type,
                "n_params": n_params,
                "tensor_bytes": bytes,
                "bits_per_weight": bpw,
                "n_tensors": f.tensors().len(),
                "metadata": metadata,
                "tensors": tensors,
                "tokenizer": tokenizer,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&j)?)?;
        }
        Format::Text => {
            writeln!(out, "file:            {}", a.file.display())?;
            writeln!(
                out,
                "GGUF version:    {}  (alignment {}, {} metadata keys, {} tensors)",
                f.version(),
                f.alignment(),
                m.len(),
                f.tensors().len()
            )?;
            writeln!(
                out,
                "architecture:    {}",
                m.opt_str(keys::GENERAL_ARCHITECTURE)?.unwrap_or("?")
            )?;
            if let Some(n) = m.opt_str(keys::GENERAL_NAME)? {
                writeln!(out, "name:            {n}")?;
            }
            writeln!(out, "file type:       {}", file_type.as_deref().unwrap_or("?"))?;
            writeln!(
                out,
                "parameters:      {n_params} ({:.2} M)",
                n_params as f64 / 1e6
            )?;
            writeln!(
                out,
                "tensor data:     {bytes} bytes ({:.2} MiB), {bpw:.2} bits per weight",
                bytes as f64 / (1u64 << 20) as f64
            )?;
            match &tok {
                Ok(t) => writeln!(
                    out,
                    "tokenizer:       {} (pre `{}`), {} tokens, BOS {:?}, EOS {:?}, add_bos_token {}, EOG {:?}",
                    m.opt_str(keys::TOKENIZER_MODEL)?.unwrap_or("?"),
                    t.pre(),
                    t.n_vocab(),
                    t.bos(),
                    t.eos(),
                    t.add_bos(),
                    t.eog_ids()
                )?,
                Err(e) => writeln!(out, "tokenizer:       unavailable: {e}")?,
            }
            writeln!(out, "\nmetadata:")?;
            for (k, v) in m.iter() {
                let s = v.to_string();
                let s = if s.chars().count() > 120 {
                    format!("{}…", s.chars().take(120).collect::<String>())
                } else {
                    s
                };
                writeln!(
                    out,
                    "  {k:<48} {:<14} {}",
                    v.type_description(),
                    s.replace('\n', "\\n")
                )?;
            }
            if !a.no_tensors {
                writeln!(out, "\ntensors:")?;
                writeln!(
                    out,
                    "  {:<40} {:<8} {:<20} {:>12}",
                    "name", "type", "shape", "bytes"
                )?;
                for t in f.tensors() {
                    writeln!(
                        out,
                        "  {:<40} {:<8} {:<20} {:>12}",
                        t.name,
                        t.ty.name(),
                        format!("{:?}", t.shape()),
                        t.n_bytes
                    )?;
                }
            }
        }
    }
    Ok(())
}
