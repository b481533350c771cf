//! Metadata values (`GGUF spec, gguf_metadata_value_type`) and the key/value table of a file.

use std::collections::HashMap;
use std::fmt;

use crate::{Error, Result};

/// GGUF metadata value type ids (GGUF spec, `gguf_metadata_value_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `uint8`.
    U8 = 0,
    /// `int8`.
    I8 = 1,
    /// `uint16`.
    U16 = 2,
    /// `int16`.
    I16 = 3,
    /// `uint32`.
    U32 = 4,
    /// `int32`.
    I32 = 5,
    /// `float32`.
    F32 = 6,
    /// `bool` (one byte, 0 or 1).
    Bool = 7,
    /// `string` (u64 length + UTF-8 bytes).
    String = 8,
    /// `array` (element type u32, u64 count, elements).
    Array = 9,
    /// `uint64`.
    U64 = 10,
    /// `int64`.
    I64 = 11,
    /// `float64`.
    F64 = 12,
}

impl ValueType {
    /// The type with spec id `id`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Smallest encoded size of one value in bytes (a string is at least its 8-byte length, an array at least
    /// its 12-byte header). Used to bound counts by the bytes left in the file.
    pub fn min_encoded_bytes(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// Lower-case spec name (`uint32`, `string`).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // one variant per spec type, named as in ValueType
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array; nested arrays hold [`Array`]s.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // one variant per element type
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Value {
    /// The spec type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A description for error messages: the type, and for arrays the element type (`array[string]`).
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array[{}]", a.element_type().name()),
            v => v.value_type().name().to_owned(),
        }
    }

    /// The value as an unsigned integer if it is an integer of any width that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer if it is an integer that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float if it is `float32` or `float64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl Array {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Value {
    /// Short human form: arrays longer than 8 elements are abbreviated (`[a, b, c, ... 49152 items]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Debug>(f: &mut fmt::Formatter<'_>, v: &[T]) -> fmt::Result {
            const SHOWN: usize = 8;
            let parts: Vec<String> = v.iter().take(SHOWN).map(|x| format!("{x:?}")).collect();
            if v.len() > SHOWN {
                write!(f, "[{}, ... {} items]", parts.join(", "), v.len())
            } else {
                write!(f, "[{}]", parts.join(", "))
            }
        }
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Array(a) => match a {
                Array::U8(v) => list(f, v),
                Array::I8(v) => list(f, v),
                Array::U16(v) => list(f, v),
                Array::I16(v) => list(f, v),
                Array::U32(v) => list(f, v),
                Array::I32(v) => list(f, v),
                Array::F32(v) => list(f, v),
                Array::Bool(v) => list(f, v),
                Array::String(v) => list(f, v),
                Array::Array(v) => write!(f, "[{} arrays]", v.len()),
                Array::U64(v) => list(f, v),
                Array::I64(v) => list(f, v),
                Array::F64(v) => list(f, v),
            },
        }
    }
}

/// The metadata key/value table of a GGUF file, in file order, with typed accessors that fail with the key's
/// name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces `key`; a new key goes at the end, a replaced key keeps its place.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(&i) = self.index.get(&key) {
            self.entries[i].1 = value;
        } else {
            self.index.insert(key.clone(), self.entries.len());
            self.entries.push((key, value));
        }
    }

    /// Inserts `key`, failing if it is already present.
    ///
    /// # Errors
    /// [`Error::DuplicateKey`].
    pub fn insert_new(&mut self, key: String, value: Value) -> Result<()> {
        if self.index.contains_key(&key) {
            return Err(Error::DuplicateKey { key });
        }
        self.set(key, value);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(v)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::MissingKey { key: key.to_owned() })
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
        Error::WrongValueType {
            key: key.to_owned(),
            expected,
            found: v.type_description(),
        }
    }

    /// A string value.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`] if it is not a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    /// An integer value of any width that fits `u32`.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`] if it is not a non-negative integer below 2³².
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| Self::wrong(key, "uint32", v))
    }

    /// An integer value of any width that fits `u64`.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| Self::wrong(key, "uint64", v))
    }

    /// A `float32` or `float64` value, as f32.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Self::wrong(key, "float32", v))
    }

    /// A bool value.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    /// An array value.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "array", v))
    }

    /// An array of strings.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_string_array(&self, key: &str) -> Result<&[String]> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::String(s)) => Ok(s),
            _ => Err(Self::wrong(key, "array[string]", v)),
        }
    }

    /// An array of `float32`.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`].
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        let v = self.require(key)?;
        match v {
            Value::Array(Array::F32(s)) => Ok(s),
            _ => Err(Self::wrong(key, "array[float32]", v)),
        }
    }

    /// An array of integers of any width, as `i64`.
    ///
    /// # Errors
    /// [`Error::MissingKey`], or [`Error::WrongValueType`] if it is not an integer array or a `uint64` does
    /// not fit.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let bad = || Self::wrong(key, "array[integer]", v);
        Ok(match v {
            Value::Array(Array::U8(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::I8(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::U16(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::I16(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::U32(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::I32(a)) => a.iter().map(|&x| x.into()).collect(),
            Value::Array(Array::I64(a)) => a.clone(),
            Value::Array(Array::U64(a)) => a
                .iter()
                .map(|&x| i64::try_from(x).map_err(|_| bad()))
                .collect::<Result<_>>()?,
            _ => return Err(bad()),
        })
    }

    /// Like [`Metadata::get_str`] but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::WrongValueType`].
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.contains(key).then(|| self.get_str(key)).transpose()
    }

    /// Like [`Metadata::get_u32`] but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::WrongValueType`].
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.contains(key).then(|| self.get_u32(key)).transpose()
    }

    /// Like [`Metadata::get_f32`] but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::WrongValueType`].
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.contains(key).then(|| self.get_f32(key)).transpose()
    }

    /// Like [`Metadata::get_bool`] but `Ok(None)` when the key is absent.
    ///
    /// # Errors
    /// [`Error::WrongValueType`].
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.contains(key).then(|| self.get_bool(key)).transpose()
    }
}
