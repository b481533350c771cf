//! Writing GGUF v3 files: header first, then tensor data streamed in declaration order, so that `quantize` and
//! `synth` hold only a tensor or two at a time. Files are written to a temporary name and renamed when
//! complete: a failed write never leaves a half-written output behind.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::metadata::{Array, Metadata, Value};
use crate::reader::{DEFAULT_ALIGNMENT, KEY_ALIGNMENT, TensorInfo};
use crate::{Error, GgmlType, Result};

/// The GGUF version this writer produces.
pub const WRITE_VERSION: u32 = 3;

/// The header of a GGUF file being built: metadata and tensor infos, with offsets computed as tensors are
/// added.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    next_offset: u64,
}

impl GgufWriter {
    /// An empty header (alignment 32 unless `general.alignment` is set before tensors are added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata key (replacing any previous value).
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        self.metadata.set(key, value);
    }

    /// The metadata table, for bulk copies.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The declared tensors, with their offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .get(KEY_ALIGNMENT)
            .and_then(Value::as_u64)
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Declares a tensor; its data must later be written in declaration order.
    ///
    /// * `ne`: dimensions in ggml order (`ne[0]` contiguous).
    ///
    /// # Errors
    /// [`Error::DuplicateTensor`], [`Error::InvalidDims`], [`Error::RowNotBlockAligned`].
    pub fn add_tensor(&mut self, name: impl Into<String>, ty: GgmlType, ne: &[u64]) -> Result<&TensorInfo> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(Error::DuplicateTensor { name });
        }
        let n_bytes = TensorInfo::data_bytes(&name, ty, ne)?;
        let offset = self.next_offset;
        self.next_offset = (offset + n_bytes).div_ceil(self.alignment()) * self.alignment();
        self.tensors.push(TensorInfo {
            name,
            ne: ne.to_vec(),
            ty,
            offset,
            n_bytes,
        });
        Ok(self.tensors.last().expect("just pushed"))
    }

    /// Total file size the header and data will take, in bytes.
    pub fn file_bytes(&self) -> u64 {
        let header = self.header_bytes().len() as u64;
        let last = self.tensors.last().map_or(0, |t| t.offset + t.n_bytes);
        header + last
    }

    /// The encoded header, padded to the alignment (the data section starts right after it).
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in self.metadata.iter() {
            put_string(&mut out, k);
            out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        let a = self.alignment() as usize;
        out.resize(out.len().div_ceil(a) * a, 0);
        out
    }

    /// Starts writing to any sink: writes the header and returns a [`TensorSink`] for the data.
    ///
    /// # Errors
    /// [`Error::Io`] (named `name`) if the sink fails.
    pub fn start<W: Write>(self, w: W, name: impl Into<PathBuf>) -> Result<TensorSink<W>> {
        let name = name.into();
        let mut w = w;
        w.write_all(&self.header_bytes()).map_err(|source| Error::Io {
            path: name.clone(),
            source,
        })?;
        Ok(TensorSink {
            w,
            name,
            tensors: self.tensors,
            next: 0,
            in_tensor: 0,
            written: 0,
        })
    }

    /// Builds a whole file in memory; `data[i]` is the data of the i-th declared tensor.
    ///
    /// # Errors
    /// [`Error::WriteOrder`] if a slice has the wrong length or count.
    pub fn to_bytes(self, data: &[&[u8]]) -> Result<Vec<u8>> {
        let n = self.tensors.len();
        if data.len() != n {
            return Err(Error::WriteOrder {
                name: String::new(),
                reason: format!("{} data slices for {n} tensors", data.len()),
            });
        }
        let names: Vec<String> = self.tensors.iter().map(|t| t.name.clone()).collect();
        let mut sink = self.start(Vec::new(), "<memory>")?;
        for (name, d) in names.iter().zip(data) {
            sink.write_tensor(name, d)?;
        }
        sink.finish()
    }

    /// Creates `path` atomically: data goes to a temporary file beside it, renamed over `path` by
    /// [`FileSink::finish`]; dropping the sink unfinished removes the temporary file.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn create(self, path: impl AsRef<Path>) -> Result<FileSink> {
        let path = path.as_ref().to_owned();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        #[allow(clippy::disallowed_methods)]
        let file = std::fs::File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let guard = TempGuard(Some(tmp.clone()));
        let sink = self.start(BufWriter::with_capacity(1 << 20, file), tmp)?;
        Ok(FileSink { sink, path, guard })
    }
}

/// Removes a temporary file unless disarmed.
#[derive(Debug)]
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            #[allow(clippy::disallowed_methods)]
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Receives tensor data in declaration order, with padding between tensors.
#[derive(Debug)]
pub struct TensorSink<W: Write> {
    w: W,
    name: PathBuf,
    tensors: Vec<TensorInfo>,
    next: usize,
    written: u64,
    /// Bytes of the current tensor written so far by [`TensorSink::write_tensor_part`].
    in_tensor: u64,
}

impl<W: Write> TensorSink<W> {
    /// The tensor whose data is expected next, if any.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.next)
    }

    /// Writes the data of the next tensor, which must be `name` and exactly its declared size.
    ///
    /// # Errors
    /// [`Error::WriteOrder`] for the wrong tensor or size, [`Error::Io`] if the sink fails.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        if self.in_tensor != 0 {
            return Err(Error::WriteOrder {
                name: name.to_owned(),
                reason: "the previous tensor was only partly written".into(),
            });
        }
        if let Some(t) = self.tensors.get(self.next)
            && data.len() as u64 != t.n_bytes
            && t.name == name
        {
            return Err(Error::WriteOrder {
                name: name.to_owned(),
                reason: format!("{} bytes given, {} declared", data.len(), t.n_bytes),
            });
        }
        self.write_tensor_part(name, data)
    }

    /// Appends `data` to the next tensor, which must be `name`: a tensor can be written in several parts (slabs
    /// of rows), so that no caller needs the whole tensor in memory. The tensor is complete once its declared
    /// size has been written.
    ///
    /// # Errors
    /// [`Error::WriteOrder`] for the wrong tensor or more bytes than declared, [`Error::Io`] if the sink fails.
    pub fn write_tensor_part(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.next) else {
            return Err(Error::WriteOrder {
                name: name.to_owned(),
                reason: "all declared tensors already written".into(),
            });
        };
        if t.name != name {
            return Err(Error::WriteOrder {
                name: name.to_owned(),
                reason: format!("expected `{}` next", t.name),
            });
        }
        let done = self.in_tensor + data.len() as u64;
        if done > t.n_bytes {
            return Err(Error::WriteOrder {
                name: name.to_owned(),
                reason: format!("{done} bytes given, {} declared", t.n_bytes),
            });
        }
        let (offset, n_bytes) = (t.offset, t.n_bytes);
        let io = |source| Error::Io {
            path: self.name.clone(),
            source,
        };
        if self.in_tensor == 0 {
            let pad = offset - self.written;
            self.w.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            self.written = offset;
        }
        self.w.write_all(data).map_err(|source| Error::Io {
            path: self.name.clone(),
            source,
        })?;
        self.written += data.len() as u64;
        self.in_tensor = done;
        if done == n_bytes {
            self.in_tensor = 0;
            self.next += 1;
        }
        Ok(())
    }

    /// Checks every tensor was written, flushes, and returns the sink.
    ///
    /// # Errors
    /// [`Error::WriteOrder`] if tensors are missing, [`Error::Io`] if flushing fails.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.tensors.get(self.next) {
            return Err(Error::WriteOrder {
                name: t.name.clone(),
                reason: "data never written".into(),
            });
        }
        self.w.flush().map_err(|source| Error::Io {
            path: self.name.clone(),
            source,
        })?;
        Ok(self.w)
    }
}

/// A file being written by [`GgufWriter::create`].
#[derive(Debug)]
pub struct FileSink {
    sink: TensorSink<BufWriter<std::fs::File>>,
    path: PathBuf,
    guard: TempGuard,
}

impl FileSink {
    /// The tensor whose data is expected next.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.sink.next_tensor()
    }

    /// See [`TensorSink::write_tensor`].
    ///
    /// # Errors
    /// As [`TensorSink::write_tensor`].
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.sink.write_tensor(name, data)
    }

    /// See [`TensorSink::write_tensor_part`].
    ///
    /// # Errors
    /// As [`TensorSink::write_tensor_part`].
    pub fn write_tensor_part(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.sink.write_tensor_part(name, data)
    }

    /// Flushes, syncs and renames the temporary file to the final path.
    ///
    /// # Errors
    /// [`Error::WriteOrder`] if tensors are missing, [`Error::Io`].
    pub fn finish(mut self) -> Result<()> {
        let tmp = self.guard.0.clone().unwrap_or_default();
        let w = self.sink.finish()?;
        let file = w.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        #[allow(clippy::disallowed_methods)]
        std::fs::rename(&tmp, &self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.guard.0 = None;
        Ok(())
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
        Array::Array(v) => v.iter().for_each(|x| put_array(out, x)),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
}
