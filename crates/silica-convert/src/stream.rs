//! Shared by quantize and synth: a worker pool, row-parallel encoding of F32 rows into a tensor type, slab
//! sizing, and the free-space check made before an output file is created.

use std::path::Path;

use rayon::prelude::*;
use silica_gguf::{FileSink, GgmlType, GgufWriter};

use crate::ConvertError;

/// Bytes of work buffers (source slab + F32 rows + encoded rows) one slab may take: a few of these are the
/// whole memory cost of a conversion.
pub(crate) const SLAB_BYTES: usize = 64 << 20;

/// Rows per slab for rows that need `bytes_per_row` bytes of buffers; at least one.
pub(crate) fn rows_per_slab(bytes_per_row: usize) -> usize {
    (SLAB_BYTES / bytes_per_row.max(1)).max(1)
}

/// A rayon pool of `n_threads` workers (0 = one per core).
pub(crate) fn pool(n_threads: usize) -> Result<rayon::ThreadPool, ConvertError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .thread_name(|i| format!("silica-convert-{i}"))
        .build()
        .map_err(|e| ConvertError::Threads {
            n_threads,
            reason: e.to_string(),
        })
}

/// Runs `f` on each pair of rows (`src_row` items of `src`, `dst_row` items of `dst`), rows in parallel on
/// `pool`; the first error names `tensor`.
fn par_rows<A: Sync, B: Send>(
    pool: &rayon::ThreadPool,
    tensor: &str,
    (src, src_row): (&[A], usize),
    (dst, dst_row): (&mut [B], usize),
    f: impl Fn(&[A], &mut [B]) -> Result<(), silica_quant::QuantError> + Sync,
) -> Result<(), ConvertError> {
    pool.install(|| {
        dst.par_chunks_mut(dst_row.max(1))
            .zip(src.par_chunks(src_row.max(1)))
            .try_for_each(|(d, s)| f(s, d))
    })
    .map_err(|source| ConvertError::Quant {
        tensor: tensor.to_owned(),
        source,
    })
}

/// Encodes whole rows of `n_per_row` F32 values into `ty`, rows in parallel. `dst` holds exactly the encoded
/// rows (`ty.row_bytes(n_per_row)` each).
pub(crate) fn encode_rows(
    pool: &rayon::ThreadPool,
    tensor: &str,
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    let row_bytes = row_bytes(tensor, ty, n_per_row)?;
    par_rows(pool, tensor, (src, n_per_row), (dst, row_bytes), |s, d| {
        silica_quant::quantize_row(ty, s, d)
    })
}

/// Decodes whole rows of `ty` into F32, rows in parallel.
pub(crate) fn decode_rows(
    pool: &rayon::ThreadPool,
    tensor: &str,
    ty: GgmlType,
    src: &[u8],
    n_per_row: usize,
    dst: &mut [f32],
) -> Result<(), ConvertError> {
    let row_bytes = row_bytes(tensor, ty, n_per_row)?;
    par_rows(pool, tensor, (src, row_bytes), (dst, n_per_row), |s, d| {
        silica_quant::dequantize_row(ty, s, d)
    })
}

/// Free bytes on the file system that holds `path`'s directory.
fn available_bytes(path: &Path) -> Result<u64, ConvertError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs4::available_space(dir).map_err(|source| ConvertError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Checks there is room for the whole file, then creates it (as a temporary file renamed by
/// [`FileSink::finish`]).
///
/// # Errors
/// [`ConvertError::InsufficientDisk`] before anything is written; I/O errors naming the path.
pub(crate) fn create_checked(writer: GgufWriter, path: &Path) -> Result<FileSink, ConvertError> {
    let needed_bytes = writer.file_bytes();
    let available = available_bytes(path)?;
    // An existing output is replaced only at the end, so its space is not free in the meantime.
    if needed_bytes > available {
        return Err(ConvertError::InsufficientDisk {
            path: path.to_owned(),
            needed_bytes,
            available_bytes: available,
        });
    }
    Ok(writer.create(path)?)
}

/// Bytes of one row of `n` values of `ty`.
///
/// # Errors
/// [`ConvertError::RowLength`] when `ty`'s block does not divide `n`.
pub(crate) fn row_bytes(tensor: &str, ty: GgmlType, n: usize) -> Result<usize, ConvertError> {
    ty.row_bytes(n as u64)
        .map(|b| b as usize)
        .ok_or_else(|| ConvertError::RowLength {
            tensor: tensor.to_owned(),
            row_len: n as u64,
            ty,
        })
}
