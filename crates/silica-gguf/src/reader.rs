//! Parsing a GGUF file: header, metadata, tensor infos, and zero-copy tensor data views.
//!
//! Layout (GGUF spec, little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata key/value pairs, the tensor infos (name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding
//! to `general.alignment` (default 32), then the tensor data, each tensor at its offset from the data start.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::metadata::{Array, Metadata, Value, ValueType};
use crate::{Error, GgmlType, Result};

/// Most dimensions a ggml tensor has (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Most tensors accepted in one file.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries accepted in one file.
pub const MAX_KV: u64 = 1 << 20;
/// Longest string accepted (keys, names and values), in bytes.
pub const MAX_STRING_BYTES: u64 = 1 << 28;
/// Deepest nesting of arrays accepted.
pub const MAX_ARRAY_DEPTH: usize = 4;
/// Default data alignment when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const KEY_ALIGNMENT: &str = "general.alignment";

/// Description of one tensor in a GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// GGUF tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml `ne` order: `ne[0]` is the contiguous (innermost) one. A matrix stored as
    /// `{n_embd, n_ff}` is `[n_ff, n_embd]` (`[out, in]`) in row-major order; see [`TensorInfo::shape`].
    pub ne: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section, in bytes.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Dimensions in row-major (candle) order, outermost first: the reverse of [`TensorInfo::ne`].
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Storage bytes of a tensor of type `ty` and dims `ne`, with every overflow and block check.
    ///
    /// # Errors
    /// [`Error::InvalidDims`] or [`Error::RowNotBlockAligned`] naming `name`.
    pub fn data_bytes(name: &str, ty: GgmlType, ne: &[u64]) -> Result<u64> {
        let invalid = |reason| Error::InvalidDims {
            name: name.to_owned(),
            ne: ne.to_vec(),
            reason,
        };
        if ne.is_empty() || ne.len() > MAX_DIMS {
            return Err(invalid("must have 1 to 4 dimensions"));
        }
        if ne.contains(&0) {
            return Err(invalid("a dimension is zero"));
        }
        let n_rows = ne[1..]
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| invalid("element count overflows"))?;
        let row = ty.row_bytes(ne[0]).ok_or(Error::RowNotBlockAligned {
            name: name.to_owned(),
            ne0: ne[0],
            ty,
            block_len: ty.block_len(),
        })?;
        ne.iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| invalid("element count overflows"))?;
        row.checked_mul(n_rows)
            .ok_or_else(|| invalid("byte size overflows"))
    }
}

/// Backing bytes of an open file: a read-only memory map, owned bytes (tests, in-memory files), or only the
/// header read into memory with tensor data read on demand ([`GgufFile::open_unmapped`]).
enum Bytes {
    Mmap(crate::mmap::Mmap),
    Owned(Vec<u8>),
    Unmapped {
        file: std::fs::File,
        header: Vec<u8>,
        file_len: u64,
    },
}

impl Bytes {
    /// The bytes held in memory: the whole file, or the header prefix when unmapped.
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mmap(m) => m.as_slice(),
            Bytes::Owned(v) => v,
            Bytes::Unmapped { header, .. } => header,
        }
    }
}

/// First read size when parsing an unmapped header; doubled until the header fits.
const HEADER_READ_BYTES: u64 = 1 << 20;

/// An open GGUF file: parsed metadata and tensor table, with tensor data read in place from the mapping.
pub struct GgufFile {
    path: PathBuf,
    bytes: std::sync::Arc<Bytes>,
    h: Header,
}

/// The parsed header of a GGUF file.
struct Header {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.h.version)
            .field("n_kv", &self.h.metadata.len())
            .field("n_tensors", &self.h.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, and parses its header. Tensor data is not read until used.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or mapped; [`Error::InFile`] wrapping the parse error
    /// otherwise (bad magic, truncation, caps exceeded, tensors out of bounds...).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = crate::mmap::Mmap::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let bytes = Bytes::Mmap(map);
        let h =
            Header::parse(bytes.as_slice(), bytes.as_slice().len() as u64).map_err(|e| Error::InFile {
                path: path.to_owned(),
                source: Box::new(e),
            })?;
        Ok(GgufFile {
            path: path.to_owned(),
            bytes: std::sync::Arc::new(bytes),
            h,
        })
    }

    /// Opens `path` reading only its header into memory (no memory map). Tensor data is read on demand with
    /// [`GgufFile::read_tensor_data`], so streaming through a file larger than RAM keeps the resident set to the
    /// caller's buffers: a mapped file's pages count towards the process's RSS once touched.
    ///
    /// # Errors
    /// As [`GgufFile::open`].
    pub fn open_unmapped(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_header(path.as_ref(), true)
    }

    /// Opens `path` reading only its header, like [`GgufFile::open_unmapped`], without checking that the tensor
    /// data is present: a file still being downloaded can be described once its header is complete. Compare
    /// [`GgufFile::file_bytes`] with [`GgufFile::expected_file_bytes`] to see how much data is missing; reading
    /// tensor data that is not there yet fails with [`Error::Io`].
    ///
    /// # Errors
    /// As [`GgufFile::open`], except [`Error::TensorOutOfBounds`] for data past the end of the file; a header cut
    /// short is [`Error::Io`] (`UnexpectedEof`) or [`Error::InFile`] with the truncation.
    pub fn open_partial(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_header(path.as_ref(), false)
    }

    fn open_header(path: &Path, check_data: bool) -> Result<Self> {
        use std::io::Read;
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        #[allow(clippy::disallowed_methods)]
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = Vec::new();
        let mut want = HEADER_READ_BYTES.min(len);
        loop {
            let have = header.len() as u64;
            (&file).take(want - have).read_to_end(&mut header).map_err(io)?;
            if (header.len() as u64) < want {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let data_len = if check_data { len } else { u64::MAX };
            match Header::parse_with(&header, len, data_len) {
                Ok(h) => {
                    return Ok(GgufFile {
                        path: path.to_owned(),
                        bytes: std::sync::Arc::new(Bytes::Unmapped {
                            file,
                            header,
                            file_len: len,
                        }),
                        h,
                    });
                }
                // A truncation inside the file means the header is longer than the prefix read so far.
                Err(Error::Truncated { offset, needed, .. })
                    if want < len && offset.saturating_add(needed) <= len =>
                {
                    want = (want * 2).max(offset.saturating_add(needed)).min(len);
                }
                Err(e) => {
                    return Err(Error::InFile {
                        path: path.to_owned(),
                        source: Box::new(e),
                    });
                }
            }
        }
    }

    /// Parses a GGUF image held in memory; `name` stands for the path in messages.
    ///
    /// # Errors
    /// As [`GgufFile::open`], without the I/O errors.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self> {
        let name = name.into();
        let h = Header::parse(&bytes, bytes.len() as u64).map_err(|e| Error::InFile {
            path: name.clone(),
            source: Box::new(e),
        })?;
        Ok(GgufFile {
            path: name,
            bytes: std::sync::Arc::new(Bytes::Owned(bytes)),
            h,
        })
    }
}

impl Header {
    fn parse(buf: &[u8], file_len: u64) -> Result<Self> {
        Self::parse_with(buf, file_len, file_len)
    }

    /// Parses a header read from a file of `file_len` bytes, requiring every tensor to end by `data_len`.
    fn parse_with(buf: &[u8], file_len: u64, data_len: u64) -> Result<Self> {
        let mut r = Reader {
            buf,
            len: file_len.max(buf.len() as u64),
            pos: 0,
        };
        let magic: [u8; 4] = r.take(4, "magic")?.try_into().unwrap_or([0; 4]);
        if &magic != b"GGUF" {
            return Err(Error::BadMagic { found: magic });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion { version });
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each tensor info is at least 8 (name len) + 4 + 8 + 4 + 8 bytes, each kv at least 8 + 4 + 1.
        cap("tensor count", n_tensors, MAX_TENSORS.min(r.remaining() / 32))?;
        cap("metadata count", n_kv, MAX_KV.min(r.remaining() / 13))?;

        let mut metadata = Metadata::new();
        for i in 0..n_kv {
            let key = r.string(format_args!("metadata key #{i}"))?;
            let type_id = r.u32(format_args!("type of `{key}`"))?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| Error::UnknownValueType {
                key: key.clone(),
                type_id,
            })?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert_new(key, value)?;
        }

        let alignment = match metadata.get(KEY_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_u64().ok_or_else(|| Error::WrongValueType {
                    key: KEY_ALIGNMENT.to_owned(),
                    expected: "uint32",
                    found: v.type_description(),
                })?;
                if a == 0 || !a.is_power_of_two() || a > (1 << 20) {
                    return Err(Error::BadAlignment { value: a });
                }
                a
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(format_args!("tensor name #{i}"))?;
            let n_dims = r.u32(format_args!("n_dims of `{name}`"))?;
            if n_dims as usize > MAX_DIMS || n_dims == 0 {
                return Err(Error::LimitExceeded {
                    what: format!("n_dims of tensor `{name}`"),
                    value: n_dims.into(),
                    limit: MAX_DIMS as u64,
                });
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                ne.push(r.u64(format_args!("dims of `{name}`"))?);
            }
            let type_id = r.u32(format_args!("type of `{name}`"))?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownType {
                tensor: name.clone(),
                type_id,
            })?;
            let offset = r.u64(format_args!("offset of `{name}`"))?;
            let n_bytes = TensorInfo::data_bytes(&name, ty, &ne)?;
            if offset % alignment != 0 {
                return Err(Error::MisalignedTensor {
                    name,
                    offset,
                    alignment,
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::DuplicateTensor { name });
            }
            tensors.push(TensorInfo {
                name,
                ne,
                ty,
                offset,
                n_bytes,
            });
        }

        let data_offset = r.pos.div_ceil(alignment) * alignment;
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= data_len => {}
                _ => {
                    return Err(Error::TensorOutOfBounds {
                        name: t.name.clone(),
                        start: data_offset.saturating_add(t.offset),
                        end: data_offset.saturating_add(t.offset).saturating_add(t.n_bytes),
                        file_len,
                    });
                }
            }
        }

        Ok(Header {
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            tensor_index,
        })
    }
}

impl GgufFile {
    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.h.version
    }

    /// Data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.h.alignment
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.h.data_offset
    }

    /// File size in bytes (on disk now, for a file opened with [`GgufFile::open_partial`]).
    pub fn file_bytes(&self) -> u64 {
        match &*self.bytes {
            Bytes::Unmapped { file_len, .. } => *file_len,
            b => b.as_slice().len() as u64,
        }
    }

    /// The size the file has once complete: the end of its last tensor's data (the header and tensor table's
    /// own bytes when it has no tensors).
    pub fn expected_file_bytes(&self) -> u64 {
        self.h
            .tensors
            .iter()
            .map(|t| {
                self.h
                    .data_offset
                    .saturating_add(t.offset)
                    .saturating_add(t.n_bytes)
            })
            .max()
            .unwrap_or(self.h.data_offset)
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        &self.h.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.h.tensors
    }

    /// The tensor named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.h.tensor_index.get(name).map(|&i| &self.h.tensors[i])
    }

    /// The raw bytes of a tensor of this file, in place (no copy). Bounds were checked at open.
    ///
    /// # Errors
    /// [`Error::NotMapped`] for a file opened with [`GgufFile::open_unmapped`] (use
    /// [`GgufFile::read_tensor_data`]); [`Error::TensorOutOfBounds`] for an info that is not this file's.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8]> {
        if let Bytes::Unmapped { .. } = *self.bytes {
            return Err(Error::NotMapped {
                path: self.path.clone(),
            });
        }
        let buf = self.bytes.as_slice();
        let start = self.h.data_offset.saturating_add(info.offset);
        let end = start.saturating_add(info.n_bytes);
        buf.get(start as usize..end as usize)
            .ok_or_else(|| Error::TensorOutOfBounds {
                name: info.name.clone(),
                start,
                end,
                file_len: buf.len() as u64,
            })
    }

    /// A shared handle on a tensor's bytes in place, which keeps the mapping alive after this `GgufFile` is
    /// dropped (a model holds its weights this way: no copy, the pages stay the file's page cache).
    ///
    /// # Errors
    /// As [`GgufFile::tensor_data`].
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<TensorBytes> {
        let len = self.tensor_data(info)?.len(); // checks the mapping and the bounds
        let start = (self.h.data_offset + info.offset) as usize;
        Ok(TensorBytes {
            bytes: std::sync::Arc::clone(&self.bytes),
            range: start..start + len,
        })
    }

    /// Copies the raw bytes of a tensor into `out` (resized to the tensor's size), reading from disk for a file
    /// opened with [`GgufFile::open_unmapped`].
    ///
    /// # Errors
    /// [`Error::Io`] if the read fails; [`Error::TensorOutOfBounds`] for an info that is not this file's.
    pub fn read_tensor_data(&self, info: &TensorInfo, out: &mut Vec<u8>) -> Result<()> {
        self.read_tensor_range(info, 0..info.n_bytes, out)
    }

    /// Copies bytes `range` (relative to the tensor's start) of a tensor into `out` (resized to the range's
    /// length): how a large tensor is streamed in slabs of rows.
    ///
    /// # Errors
    /// [`Error::Io`] if the read fails; [`Error::TensorOutOfBounds`] for a range past the tensor's end or an
    /// info that is not this file's.
    pub fn read_tensor_range(&self, info: &TensorInfo, range: Range<u64>, out: &mut Vec<u8>) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let start = self.h.data_offset.saturating_add(info.offset);
        if range.start > range.end || range.end > info.n_bytes {
            return Err(Error::TensorOutOfBounds {
                name: info.name.clone(),
                start: start.saturating_add(range.start),
                end: start.saturating_add(range.end),
                file_len: start.saturating_add(info.n_bytes),
            });
        }
        match &*self.bytes {
            Bytes::Unmapped { file, .. } => {
                let io = |source| Error::Io {
                    path: self.path.clone(),
                    source,
                };
                out.resize((range.end - range.start) as usize, 0);
                let mut f = file;
                f.seek(SeekFrom::Start(start + range.start)).map_err(io)?;
                f.read_exact(out).map_err(io)
            }
            _ => {
                let data = self.tensor_data(info)?;
                out.clear();
                out.extend_from_slice(&data[range.start as usize..range.end as usize]);
                Ok(())
            }
        }
    }

    /// The raw bytes of the tensor named `name`.
    ///
    /// # Errors
    /// [`Error::MissingTensor`].
    pub fn tensor_data_by_name(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
        })?;
        self.tensor_data(info)
    }

    /// Total bytes of tensor data (what llama.cpp reports as model size).
    pub fn tensor_data_bytes(&self) -> u64 {
        self.h.tensors.iter().map(|t| t.n_bytes).sum()
    }

    /// Total number of parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.h.tensors.iter().map(TensorInfo::n_elements).sum()
    }
}

fn cap(what: impl Display, value: u64, limit: u64) -> Result<()> {
    if value > limit {
        return Err(Error::LimitExceeded {
            what: what.to_string(),
            value,
            limit,
        });
    }
    Ok(())
}

/// A bounds-checked little-endian cursor.
///
/// `buf` may be a prefix of the file (`len` bytes long): caps use the whole file's length, and reading past the
/// prefix reports [`Error::Truncated`] with an end inside the file, which tells the caller to read more.
struct Reader<'a> {
    buf: &'a [u8],
    len: u64,
    pos: u64,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    // `what` names the value read, for errors only: a `Display` (`format_args!` where it has parts), so that
    // nothing is formatted unless a read fails — once per string of a 262 144-token vocabulary, eager
    // descriptions took about half of a Gemma 3 load.
    fn take(&mut self, n: u64, what: impl Display) -> Result<&'a [u8]> {
        if n > self.remaining() || self.pos + n > self.buf.len() as u64 {
            return Err(Error::Truncated {
                what: what.to_string(),
                offset: self.pos,
                needed: n,
                file_len: self.len,
            });
        }
        let s = &self.buf[self.pos as usize..(self.pos + n) as usize];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl Display) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: impl Display) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl Display) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: impl Display + Copy) -> Result<String> {
        let len = self.u64(what)?;
        cap(
            format_args!("length of {what}"),
            len,
            MAX_STRING_BYTES.min(self.remaining()),
        )?;
        let offset = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidUtf8 {
            what: what.to_string(),
            offset,
        })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(key)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(key)?[0] != 0),
            ValueType::String => Value::String(self.string(format_args!("value of `{key}`"))?),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Array => Value::Array(self.array_value(key, depth)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(Error::LimitExceeded {
                what: format!("array nesting of `{key}`"),
                value: depth as u64 + 1,
                limit: MAX_ARRAY_DEPTH as u64,
            });
        }
        let type_id = self.u32(key)?;
        let ety = ValueType::from_id(type_id).ok_or_else(|| Error::UnknownValueType {
            key: key.to_owned(),
            type_id,
        })?;
        let n = self.u64(key)?;
        // A count is bounded by the bytes left: no allocation larger than the file itself.
        cap(
            format_args!("array length of `{key}`"),
            n,
            self.remaining() / ety.min_encoded_bytes(),
        )?;
        let n = n as usize;
        macro_rules! prim {
            ($variant:ident, $t:ty) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.array(key)?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match ety {
            ValueType::U8 => Array::U8(self.take(n as u64, key)?.to_vec()),
            ValueType::I8 => prim!(I8, i8),
            ValueType::U16 => prim!(U16, u16),
            ValueType::I16 => prim!(I16, i16),
            ValueType::U32 => prim!(U32, u32),
            ValueType::I32 => prim!(I32, i32),
            ValueType::F32 => prim!(F32, f32),
            ValueType::U64 => prim!(U64, u64),
            ValueType::I64 => prim!(I64, i64),
            ValueType::F64 => prim!(F64, f64),
            ValueType::Bool => Array::Bool(self.take(n as u64, key)?.iter().map(|&b| b != 0).collect()),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(format_args!("element {i} of `{key}`"))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

/// The bytes of one tensor, shared with the [`GgufFile`] they came from ([`GgufFile::tensor_bytes`]).
#[derive(Clone)]
pub struct TensorBytes {
    bytes: std::sync::Arc<Bytes>,
    range: std::ops::Range<usize>,
}

impl TensorBytes {
    /// The tensor's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes.as_slice()[self.range.clone()]
    }

    /// Fills `out` with the tensor's bytes at `offset` without making mapped pages resident: `pread` from the
    /// file for a mapped file (the bytes come from the page cache), a copy otherwise. For reading a few rows of a
    /// tensor whose pages were released ([`TensorBytes::release_pages`]): touching them through the map would make
    /// the kernel map whole runs of pages around each one again.
    ///
    /// # Errors
    /// `InvalidInput` if `offset + out.len()` passes the tensor's end; the OS error of the read.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> std::io::Result<()> {
        let end = offset
            .checked_add(out.len())
            .filter(|&e| e <= self.range.len())
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        match &*self.bytes {
            Bytes::Mmap(m) => m.read_at(self.range.start + offset, out),
            _ => {
                out.copy_from_slice(&self.as_slice()[offset..end]);
                Ok(())
            }
        }
    }

    /// Drops the mapped pages that lie wholly inside this tensor from the process's resident set (after its data
    /// was copied elsewhere). The bytes stay readable: touching them reads the file again. No-op for owned or
    /// unmapped files.
    ///
    /// # Errors
    /// The OS error of `madvise`.
    pub fn release_pages(&self) -> std::io::Result<()> {
        match &*self.bytes {
            Bytes::Mmap(m) => m.release(self.range.clone()),
            _ => Ok(()),
        }
    }
}

impl std::ops::Deref for TensorBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for TensorBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBytes")
            .field("len", &self.range.len())
            .finish()
    }
}
