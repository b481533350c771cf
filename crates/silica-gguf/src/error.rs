//! The error type of this crate.

use std::path::PathBuf;

use crate::GgmlType;

/// An error from reading or writing a GGUF file. Every variant names what a user needs to find the fault:
/// the metadata key, the tensor, the byte offset or the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, mapped, written or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An error inside a named file (the source says what and where).
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<Error>,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// The GGUF version is not 2 or 3 (version 1 used 32-bit counts and is long obsolete).
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// Tensor data was asked for in place from a file opened without a memory map.
    #[error("{}: opened unmapped; tensor data must be read with read_tensor_data", path.display())]
    NotMapped {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The file ends before a field it declares.
    #[error("file truncated: {what} needs {needed} bytes at offset {offset}, file has {file_len}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Byte offset of the field.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// File length in bytes.
        file_len: u64,
    },
    /// A count or length exceeds what the file could hold or a fixed cap.
    #[error("{what} is {value}, more than the limit {limit}")]
    LimitExceeded {
        /// What was counted (names the key or tensor).
        what: String,
        /// The value read.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string (names the key or tensor).
        what: String,
        /// Byte offset of the string's bytes.
        offset: u64,
    },
    /// A metadata value type id not in the GGUF spec.
    #[error("metadata key `{key}` has unknown value type {type_id}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The type id read.
        type_id: u32,
    },
    /// A tensor type id that ggml does not define (or has removed).
    #[error("tensor `{tensor}` has unknown ggml type id {type_id}")]
    UnknownType {
        /// The tensor.
        tensor: String,
        /// The type id read.
        type_id: u32,
    },
    /// A metadata key appears twice.
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A tensor name appears twice.
    #[error("tensor `{name}` appears twice")]
    DuplicateTensor {
        /// The tensor.
        name: String,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment is {value}: must be a non-zero power of two")]
    BadAlignment {
        /// The value read.
        value: u64,
    },
    /// A tensor's dimensions are invalid (a zero dimension, too many, or an element count that overflows).
    #[error("tensor `{name}` has invalid dimensions {ne:?}: {reason}")]
    InvalidDims {
        /// The tensor.
        name: String,
        /// Dimensions in ggml `ne` order.
        ne: Vec<u64>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor's row length is not a whole number of its type's blocks.
    #[error("tensor `{name}`: row of {ne0} elements is not a multiple of {ty}'s block of {block_len}")]
    RowNotBlockAligned {
        /// The tensor.
        name: String,
        /// Row length (`ne[0]`).
        ne0: u64,
        /// Element type.
        ty: GgmlType,
        /// Elements per block of that type.
        block_len: usize,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("tensor `{name}` data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// The tensor.
        name: String,
        /// Offset from the start of the data section.
        offset: u64,
        /// `general.alignment`.
        alignment: u64,
    },
    /// A tensor's data would extend past the end of the file.
    #[error("tensor `{name}` needs bytes {start}..{end} but the file has {file_len}")]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Absolute start offset.
        start: u64,
        /// Absolute end offset (exclusive).
        end: u64,
        /// File length in bytes.
        file_len: u64,
    },
    /// A required metadata key is absent.
    #[error("missing metadata key `{key}`")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value has another type than the one asked for.
    #[error("metadata key `{key}` is {found}, expected {expected}")]
    WrongValueType {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A tensor was asked for that the file does not hold.
    #[error("tensor `{name}` not found")]
    MissingTensor {
        /// The tensor.
        name: String,
    },
    /// The writer was given tensor data out of order or of the wrong size.
    #[error("writer: tensor `{name}`: {reason}")]
    WriteOrder {
        /// The tensor.
        name: String,
        /// What was wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
