//! `silica quantize`: converts every tensor of a GGUF file to the types of a llama.cpp file-type mix.

use std::path::Path;
use std::time::{Duration, Instant};

use silica_gguf::{FileType, GgufFile, GgufWriter, Value, keys};

use crate::ConvertError;
use crate::recipe::{self, ModelShape, Planned, RecipeOptions};
use crate::stream::{self, rows_per_slab};

/// `general.quantization_version` written by ggml's quantizers (`GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// Names `llama-quantize` accepts for a target that are tensor types rather than file types, and the mix
/// they stand for (its `QUANT_OPTIONS` table: `Q4_K` means `Q4_K_M`, and so on).
const ALIASES: &[(&str, FileType)] = &[
    ("Q3_K", FileType::MOSTLY_Q3_K_M),
    ("Q4_K", FileType::MOSTLY_Q4_K_M),
    ("Q5_K", FileType::MOSTLY_Q5_K_M),
    ("F32", FileType::ALL_F32),
];

/// Parses a quantization target: a llama.cpp file type (`Q4_K_M`, `Q8_0`, `F16`...) or one of the tensor-type
/// aliases `llama-quantize` accepts (`Q4_K` = `Q4_K_M`, `Q5_K` = `Q5_K_M`, `Q3_K` = `Q3_K_M`, `F32`),
/// case-insensitively.
///
/// # Errors
/// [`ConvertError::UnknownTarget`] listing the valid names; [`ConvertError::UnsupportedFileType`] for the IQ
/// and ternary mixes.
pub fn parse_target(name: &str) -> Result<FileType, ConvertError> {
    let upper = name.to_ascii_uppercase();
    if let Some((_, ft)) = ALIASES.iter().find(|(n, _)| *n == upper) {
        return Ok(*ft);
    }
    match upper.parse::<FileType>() {
        Ok(ft) if recipe::default_type(ft).is_some() => Ok(ft),
        Ok(ft) => Err(ConvertError::UnsupportedFileType(ft)),
        Err(_) => Err(ConvertError::UnknownTarget {
            name: name.to_owned(),
            valid: valid_targets().join(", "),
        }),
    }
}

/// Every target name [`parse_target`] accepts.
pub fn valid_targets() -> Vec<String> {
    FileType::all()
        .filter(|ft| recipe::default_type(*ft).is_some())
        .map(|ft| ft.name().to_owned())
        .chain(ALIASES.iter().map(|(n, _)| (*n).to_owned()))
        .collect()
}

/// Parameters of one quantization.
#[derive(Clone, Copy, Debug)]
pub struct QuantizeParams {
    /// The mix.
    pub recipe: RecipeOptions,
    /// `--allow-requantize`: accept already-quantized tensors as input (dequantized to F32 first).
    pub allow_requantize: bool,
    /// Worker threads (0 = one per core).
    pub n_threads: usize,
}

/// Progress report after each tensor.
#[derive(Clone, Debug)]
pub struct TensorDone<'a> {
    /// 1-based index of the tensor.
    pub index: usize,
    /// Number of tensors.
    pub n_tensors: usize,
    /// The tensor and the type it was written as.
    pub planned: &'a Planned,
    /// Bytes written so far (tensor data).
    pub bytes_done: u64,
    /// Bytes of tensor data the output will hold.
    pub bytes_total: u64,
}

/// What a quantization did.
#[derive(Clone, Debug)]
pub struct QuantizeSummary {
    /// Every tensor with the type it got, in output order.
    pub tensors: Vec<Planned>,
    /// Tensor data bytes of the input.
    pub bytes_in: u64,
    /// Tensor data bytes of the output.
    pub bytes_out: u64,
    /// The output file's size in bytes.
    pub file_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Quantizes `input` into `output` with the mix of `params.recipe.file_type`: llama.cpp's per-tensor types,
/// metadata carried over with `general.file_type` and `general.quantization_version` set and split keys
/// dropped, tensors in llama.cpp's order. Streams in slabs of rows; `output` appears only when complete.
///
/// # Errors
/// Refuses before writing anything: [`ConvertError::RequantizeDisabled`], [`ConvertError::CannotConvert`],
/// [`ConvertError::RowLength`], [`ConvertError::InsufficientDisk`]; I/O and GGUF errors name the file.
pub fn quantize_file(
    input: &Path,
    output: &Path,
    params: &QuantizeParams,
    progress: &mut dyn FnMut(&TensorDone<'_>),
) -> Result<QuantizeSummary, ConvertError> {
    let t0 = Instant::now();
    let src = GgufFile::open_unmapped(input)?;
    let shape = ModelShape::from_metadata(src.metadata())?;
    let planned = recipe::plan(&shape, src.tensors(), &params.recipe)?;
    for p in &planned {
        check_conversion(p, params.allow_requantize)?;
    }

    let mut w = GgufWriter::new();
    *w.metadata_mut() = src.metadata().clone();
    // llama.cpp (gguf_set_val_*) removes a key before setting it, which moves these two to the end: doing the
    // same keeps the header byte-identical to llama-quantize's.
    for (k, v) in [
        (keys::GENERAL_QUANTIZATION_VERSION, QUANTIZATION_VERSION),
        (keys::GENERAL_FILE_TYPE, params.recipe.file_type.id()),
    ] {
        w.metadata_mut().remove(k);
        w.set(k, Value::U32(v));
    }
    for k in ["split.no", "split.count", "split.tensors.count"] {
        w.metadata_mut().remove(k);
    }
    for p in &planned {
        w.add_tensor(p.info.name.clone(), p.ty, &p.info.ne)?;
    }
    let bytes_total: u64 = w.tensors().iter().map(|t| t.n_bytes).sum();
    let file_bytes = w.file_bytes();
    let pool = stream::pool(params.n_threads)?;
    let mut sink = stream::create_checked(w, output)?;

    let (mut raw, mut f32s, mut enc) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes_done = 0;
    for (i, p) in planned.iter().enumerate() {
        let t = &p.info;
        let n_per_row = t.ne.first().copied().unwrap_or(1) as usize;
        let n_rows = (t.n_elements() / n_per_row.max(1) as u64) as usize;
        let src_row = stream::row_bytes(&t.name, t.ty, n_per_row)?;
        let dst_row = stream::row_bytes(&t.name, p.ty, n_per_row)?;
        let convert = p.ty != t.ty;
        let rows = rows_per_slab(src_row + if convert { 4 * n_per_row + dst_row } else { 0 });
        if n_rows == 0 {
            // An empty tensor still has to be marked written.
            sink.write_tensor_part(&t.name, &[])?;
        }
        for r0 in (0..n_rows).step_by(rows) {
            let r1 = (r0 + rows).min(n_rows);
            let (b0, b1) = ((r0 * src_row) as u64, (r1 * src_row) as u64);
            src.read_tensor_range(t, b0..b1, &mut raw)?;
            if !convert {
                sink.write_tensor_part(&t.name, &raw)?;
                continue;
            }
            f32s.resize((r1 - r0) * n_per_row, 0.0);
            stream::decode_rows(&pool, &t.name, t.ty, &raw, n_per_row, &mut f32s)?;
            enc.resize((r1 - r0) * dst_row, 0);
            stream::encode_rows(&pool, &t.name, p.ty, &f32s, n_per_row, &mut enc)?;
            sink.write_tensor_part(&t.name, &enc)?;
        }
        bytes_done += (dst_row * n_rows) as u64;
        progress(&TensorDone {
            index: i + 1,
            n_tensors: planned.len(),
            planned: p,
            bytes_done,
            bytes_total,
        });
    }
    sink.finish()?;
    Ok(QuantizeSummary {
        bytes_in: src.tensor_data_bytes(),
        bytes_out: bytes_total,
        file_bytes,
        tensors: planned,
        elapsed: t0.elapsed(),
    })
}

/// Refuses a tensor conversion silica cannot or should not do.
fn check_conversion(p: &Planned, allow_requantize: bool) -> Result<(), ConvertError> {
    let (from, to) = (p.info.ty, p.ty);
    if from == to {
        return Ok(());
    }
    let err = |which| ConvertError::CannotConvert {
        tensor: p.info.name.clone(),
        from,
        to,
        which,
    };
    if !silica_quant::can_dequantize(from) {
        return Err(err("decoder"));
    }
    if !silica_quant::can_quantize(to) {
        return Err(err("encoder"));
    }
    if from.is_quantized() && !allow_requantize {
        return Err(ConvertError::RequantizeDisabled {
            tensor: p.info.name.clone(),
            from,
        });
    }
    let n = p.info.ne.first().copied().unwrap_or(0);
    if n % to.block_len() as u64 != 0 {
        return Err(ConvertError::RowLength {
            tensor: p.info.name.clone(),
            row_len: n,
            ty: to,
        });
    }
    Ok(())
}

/// Checks a plan's conversions without doing them (used by synth, whose source is F32).
pub(crate) fn check_plan(planned: &[Planned]) -> Result<(), ConvertError> {
    planned.iter().try_for_each(|p| check_conversion(p, false))
}
