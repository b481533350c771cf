//! Crafted files: each must fail with a typed error that names the key, tensor or offset.

use silica_gguf::{Error, GgmlType, GgufFile, GgufWriter, Value};

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn err(bytes: Vec<u8>) -> Error {
    match GgufFile::from_bytes(bytes, "bad.gguf") {
        Err(Error::InFile { source, .. }) => *source,
        Err(e) => panic!("unexpected error shape {e}"),
        Ok(_) => panic!("crafted file was accepted"),
    }
}

#[test]
fn bad_magic_and_version() {
    assert!(matches!(err(b"GGML\0\0\0\0".to_vec()), Error::BadMagic { .. }));
    assert!(matches!(
        err(header(1, 0, 0)),
        Error::UnsupportedVersion { version: 1 }
    ));
    assert!(matches!(
        err(header(4, 0, 0)),
        Error::UnsupportedVersion { version: 4 }
    ));
    assert!(matches!(err(b"GG".to_vec()), Error::Truncated { .. }));
    // v2 files parse.
    assert!(GgufFile::from_bytes(header(2, 0, 0), "v2.gguf").is_ok());
}

#[test]
fn huge_counts_are_capped_before_allocating() {
    assert!(matches!(err(header(3, u64::MAX, 0)), Error::LimitExceeded { .. }));
    assert!(matches!(err(header(3, 0, 1 << 40)), Error::LimitExceeded { .. }));
    // A string claiming 2^40 bytes.
    let mut b = header(3, 0, 1);
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(b);
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");
    // An array claiming 2^40 elements.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "tokenizer.ggml.tokens");
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(b);
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
}

#[test]
fn deep_nesting_is_refused() {
    let mut b = header(3, 0, 1);
    put_str(&mut b, "deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    b.extend_from_slice(&[0u8; 64]);
    let e = err(b);
    assert!(
        matches!(e, Error::LimitExceeded { .. }) && e.to_string().contains("deep"),
        "{e}"
    );
}

#[test]
fn unknown_value_type_names_the_key() {
    let mut b = header(3, 0, 1);
    put_str(&mut b, "my.key");
    b.extend_from_slice(&99u32.to_le_bytes());
    let e = err(b);
    assert!(
        matches!(&e, Error::UnknownValueType { key, type_id: 99 } if key == "my.key"),
        "{e}"
    );
}

#[test]
fn invalid_utf8_and_duplicates() {
    let mut b = header(3, 0, 1);
    b.extend_from_slice(&2u64.to_le_bytes());
    b.extend_from_slice(&[0xff, 0xfe]);
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    assert!(matches!(err(b), Error::InvalidUtf8 { .. }));

    let mut b = header(3, 0, 2);
    for _ in 0..2 {
        put_str(&mut b, "dup");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    assert!(matches!(err(b), Error::DuplicateKey { key } if key == "dup"));
}

/// A file with one key `tok` holding a string array whose elements are the given raw byte strings.
fn string_array(elements: &[&[u8]]) -> Vec<u8> {
    let mut b = header(3, 0, 1);
    put_str(&mut b, "tok");
    b.extend_from_slice(&9u32.to_le_bytes()); // array
    b.extend_from_slice(&8u32.to_le_bytes()); // of strings
    b.extend_from_slice(&(elements.len() as u64).to_le_bytes());
    for e in elements {
        b.extend_from_slice(&(e.len() as u64).to_le_bytes());
        b.extend_from_slice(e);
    }
    b
}

#[test]
fn a_bad_array_element_is_named_by_index_and_key() {
    let ok = GgufFile::from_bytes(string_array(&[b"a", b"", b"\xe2\x96\x81b"]), "ok.gguf").unwrap();
    assert_eq!(ok.metadata().get_string_array("tok").unwrap(), ["a", "", "▁b"]);

    let e = err(string_array(&[b"a", b"b", &[0xff, 0xfe], b"c"]));
    assert!(
        matches!(&e, Error::InvalidUtf8 { what, .. } if what == "element 2 of `tok`"),
        "{e}"
    );
    // The last element claims more bytes than the file has.
    let mut b = string_array(&[b"a", b"bc"]);
    b.truncate(b.len() - 1);
    let e = err(b);
    assert!(e.to_string().contains("element 1 of `tok`"), "{e}");
}

fn one_tensor(n_dims: u32, ne: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut b = header(3, 1, 0);
    put_str(&mut b, "blk.0.attn_q.weight");
    b.extend_from_slice(&n_dims.to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ty.to_le_bytes());
    b.extend_from_slice(&offset.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

#[test]
fn tensor_errors_name_the_tensor() {
    let name = "blk.0.attn_q.weight";
    let e = err(one_tensor(2, &[32, 4], 2, 0, 18 * 4 - 1));
    assert!(
        matches!(&e, Error::TensorOutOfBounds { name: n, .. } if n == name),
        "{e}"
    );
    assert!(GgufFile::from_bytes(one_tensor(2, &[32, 4], 2, 0, 18 * 4), "ok.gguf").is_ok());

    let e = err(one_tensor(2, &[32, 4], 4, 0, 1000));
    assert!(
        matches!(&e, Error::UnknownType { tensor, type_id: 4 } if tensor == name),
        "{e}"
    );
    let e = err(one_tensor(2, &[33, 4], 2, 0, 1000));
    assert!(
        matches!(&e, Error::RowNotBlockAligned { name: n, .. } if n == name),
        "{e}"
    );
    let e = err(one_tensor(2, &[32, 0], 2, 0, 1000));
    assert!(matches!(&e, Error::InvalidDims { .. }), "{e}");
    let e = err(one_tensor(5, &[1, 1, 1, 1, 1], 0, 0, 1000));
    assert!(matches!(&e, Error::LimitExceeded { .. }), "{e}");
    let e = err(one_tensor(4, &[1 << 32, 1 << 32, 1 << 32, 1 << 32], 0, 0, 1000));
    assert!(matches!(&e, Error::InvalidDims { .. }), "{e}");
    let e = err(one_tensor(1, &[32], 0, 7, 1000));
    assert!(matches!(&e, Error::MisalignedTensor { .. }), "{e}");
    let e = err(one_tensor(1, &[32], 0, u64::MAX - 31, 1000));
    assert!(matches!(&e, Error::TensorOutOfBounds { .. }), "{e}");
}

#[test]
fn bad_alignment_is_refused() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(48));
    let e = err(w.to_bytes(&[]).unwrap());
    assert!(matches!(e, Error::BadAlignment { value: 48 }), "{e}");
}

#[test]
fn writer_refuses_bad_tensors() {
    let mut w = GgufWriter::new();
    assert!(w.add_tensor("x", GgmlType::Q4_K, &[576, 2]).is_err());
    w.add_tensor("x", GgmlType::F32, &[1]).unwrap();
    assert!(w.add_tensor("x", GgmlType::F32, &[1]).is_err());
}

#[test]
fn open_missing_file_names_the_path() {
    let e = GgufFile::open("/nonexistent/model.gguf").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}
