use proptest::prelude::*;
use silica_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};

fn every_value_type() -> Vec<(String, Value)> {
    vec![
        ("t.u8".into(), Value::U8(200)),
        ("t.i8".into(), Value::I8(-5)),
        ("t.u16".into(), Value::U16(60000)),
        ("t.i16".into(), Value::I16(-30000)),
        ("t.u32".into(), Value::U32(4_000_000_000)),
        ("t.i32".into(), Value::I32(-2_000_000_000)),
        ("t.f32".into(), Value::F32(1.5)),
        ("t.bool".into(), Value::Bool(true)),
        ("t.string".into(), Value::String("héllo ▁ wörld".into())),
        ("t.u64".into(), Value::U64(u64::MAX)),
        ("t.i64".into(), Value::I64(i64::MIN)),
        ("t.f64".into(), Value::F64(-2.25)),
        (
            "t.arr_str".into(),
            Value::Array(Array::String(vec!["a".into(), "".into(), "<0x0A>".into()])),
        ),
        ("t.arr_f32".into(), Value::Array(Array::F32(vec![0.5, -1.0]))),
        ("t.arr_i32".into(), Value::Array(Array::I32(vec![1, -2, 3]))),
        ("t.arr_bool".into(), Value::Array(Array::Bool(vec![true, false]))),
        ("t.arr_empty".into(), Value::Array(Array::U64(vec![]))),
        (
            "t.nested".into(),
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![]),
            ])),
        ),
    ]
}

#[test]
fn every_value_type_and_tensor_round_trips() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value_type() {
        w.set(k, v);
    }
    w.add_tensor("a", GgmlType::F32, &[3]).unwrap();
    w.add_tensor("b", GgmlType::Q4_0, &[64, 2]).unwrap();
    w.add_tensor("c", GgmlType::Q4_K, &[256, 1, 1, 2]).unwrap();
    let a: Vec<u8> = (0..12).collect();
    let b: Vec<u8> = (0..72).map(|i| i as u8 ^ 0x5a).collect();
    let c: Vec<u8> = (0..288).map(|i| (i * 7) as u8).collect();
    let bytes = w.to_bytes(&[&a, &b, &c]).unwrap();
    let f = GgufFile::from_bytes(bytes, "rt.gguf").unwrap();
    assert_eq!(f.version(), 3);
    for (k, v) in every_value_type() {
        assert_eq!(f.metadata().get(&k), Some(&v), "{k}");
    }
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k).collect();
    assert_eq!(keys[0], "t.u8", "file order kept");
    assert_eq!(f.tensors().len(), 3);
    let tb = f.tensor("b").unwrap();
    assert_eq!(tb.shape(), vec![2, 64]);
    assert_eq!(tb.n_bytes, 72);
    assert_eq!(f.tensor_data(tb).unwrap(), &b[..]);
    assert_eq!(f.tensor_data_by_name("c").unwrap(), &c[..]);
    assert_eq!(f.tensor_data(f.tensor("a").unwrap()).unwrap(), &a[..]);
    for t in f.tensors() {
        assert_eq!(t.offset % 32, 0, "{} aligned", t.name);
    }
    assert_eq!(f.n_params(), 3 + 128 + 512);
}

#[test]
fn typed_accessors_name_the_key() {
    let mut w = GgufWriter::new();
    w.set("a.count", Value::U32(7));
    w.set("a.name", Value::String("x".into()));
    let f = GgufFile::from_bytes(w.to_bytes(&[]).unwrap(), "k.gguf").unwrap();
    let m = f.metadata();
    assert_eq!(m.get_u32("a.count").unwrap(), 7);
    let e = m.get_u32("a.name").unwrap_err().to_string();
    assert!(
        e.contains("a.name") && e.contains("string") && e.contains("uint32"),
        "{e}"
    );
    let e = m.get_str("a.missing").unwrap_err().to_string();
    assert!(e.contains("a.missing"), "{e}");
    assert_eq!(m.opt_u32("a.missing").unwrap(), None);
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(64));
    w.add_tensor("x", GgmlType::F32, &[3]).unwrap();
    w.add_tensor("y", GgmlType::F32, &[3]).unwrap();
    let f = GgufFile::from_bytes(w.to_bytes(&[&[1; 12], &[2; 12]]).unwrap(), "a.gguf").unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.tensor("y").unwrap().offset, 64);
    assert_eq!(f.tensor_data_by_name("y").unwrap(), &[2; 12]);
}

#[test]
fn file_writer_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor("x", GgmlType::F32, &[2]).unwrap();
    w.add_tensor("y", GgmlType::F32, &[2]).unwrap();
    // Abandoned half-way: no output, no temporary file left.
    let mut sink = w.clone().create(&out).unwrap();
    sink.write_tensor("x", &[0; 8]).unwrap();
    assert!(sink.write_tensor("x", &[0; 8]).is_err(), "out of order");
    drop(sink);
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Wrong size is refused.
    let mut sink = w.clone().create(&out).unwrap();
    assert!(sink.write_tensor("x", &[0; 7]).is_err());
    drop(sink);
    // Unfinished is refused.
    let mut sink = w.clone().create(&out).unwrap();
    sink.write_tensor("x", &[0; 8]).unwrap();
    assert!(sink.finish().is_err());
    assert!(!out.exists());
    // Complete.
    let mut sink = w.create(&out).unwrap();
    sink.write_tensor("x", &[1; 8]).unwrap();
    sink.write_tensor("y", &[2; 8]).unwrap();
    sink.finish().unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.tensor_data_by_name("y").unwrap(), &[2; 8]);
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<bool>().prop_map(Value::Bool),
        (-1e30f32..1e30).prop_map(Value::F32),
        ".{0,20}".prop_map(Value::String),
        proptest::collection::vec(".{0,8}", 0..6).prop_map(|v| Value::Array(Array::String(v))),
        proptest::collection::vec(any::<i16>(), 0..20).prop_map(|v| Value::Array(Array::I16(v))),
    ]
}

proptest! {
    #[test]
    fn any_metadata_and_tensor_table_round_trips(
        kvs in proptest::collection::btree_map("[a-z.]{1,12}", arb_value(), 0..12),
        dims in proptest::collection::vec((1u64..4, 1u64..3), 0..5),
    ) {
        let mut w = GgufWriter::new();
        for (k, v) in &kvs {
            w.set(k.clone(), v.clone());
        }
        let mut datas = Vec::new();
        for (i, (blocks, rows)) in dims.iter().enumerate() {
            let t = w.add_tensor(format!("t{i}"), GgmlType::Q8_0, &[blocks * 32, *rows]).unwrap();
            datas.push(vec![i as u8; t.n_bytes as usize]);
        }
        let slices: Vec<&[u8]> = datas.iter().map(Vec::as_slice).collect();
        let f = GgufFile::from_bytes(w.to_bytes(&slices).unwrap(), "p.gguf").unwrap();
        for (k, v) in &kvs {
            prop_assert_eq!(f.metadata().get(k), Some(v));
        }
        for (i, d) in datas.iter().enumerate() {
            prop_assert_eq!(f.tensor_data_by_name(&format!("t{i}")).unwrap(), &d[..]);
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = GgufFile::from_bytes(bytes, "junk.gguf");
    }

    #[test]
    fn parser_never_panics_on_corrupted_valid_file(pos in 0usize..400, byte in any::<u8>()) {
        let mut w = GgufWriter::new();
        w.set("general.architecture", Value::String("llama".into()));
        w.set("x.arr", Value::Array(Array::U32(vec![1, 2, 3])));
        w.add_tensor("t", GgmlType::Q4_0, &[32, 2]).unwrap();
        let mut bytes = w.to_bytes(&[&[0u8; 36]]).unwrap();
        let p = pos % bytes.len();
        bytes[p] = byte;
        let _ = GgufFile::from_bytes(bytes, "corrupt.gguf");
    }
}

#[test]
fn unmapped_open_reads_a_header_longer_than_the_first_read_and_tensor_data_on_demand() {
    // A 3 MiB string array makes the header span several reads (the first read is 1 MiB).
    let big: Vec<String> = (0..200_000).map(|i| format!("token-{i:08}")).collect();
    let mut w = GgufWriter::new();
    w.set("t.big", Value::Array(Array::String(big.clone())));
    w.add_tensor("a", GgmlType::F32, &[5]).unwrap();
    w.add_tensor("b", GgmlType::Q8_0, &[32, 3]).unwrap();
    let a: Vec<u8> = (0..20).collect();
    let b: Vec<u8> = (0..102).map(|i| (i * 3) as u8).collect();
    let bytes = w.to_bytes(&[&a, &b]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    std::fs::write(&path, &bytes).unwrap();

    let f = GgufFile::open_unmapped(&path).unwrap();
    assert_eq!(f.metadata().get_string_array("t.big").unwrap(), &big[..]);
    let mut buf = Vec::new();
    f.read_tensor_data(f.tensor("b").unwrap(), &mut buf).unwrap();
    assert_eq!(buf, b);
    f.read_tensor_data(f.tensor("a").unwrap(), &mut buf).unwrap();
    assert_eq!(buf, a);
    let err = f.tensor_data(f.tensor("a").unwrap()).unwrap_err();
    assert!(err.to_string().contains("read_tensor_data"), "{err}");

    // A mapped open of the same file agrees, and a truncated file is still refused.
    let m = GgufFile::open(&path).unwrap();
    m.read_tensor_data(m.tensor("b").unwrap(), &mut buf).unwrap();
    assert_eq!(buf, b);
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = GgufFile::open_unmapped(&path).unwrap_err().to_string();
    assert!(err.contains("big.gguf") && err.contains("`b`"), "{err}");
}

#[test]
fn a_partly_downloaded_file_opens_for_its_header_and_says_how_much_data_is_missing() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    w.add_tensor("a", GgmlType::F32, &[8]).unwrap();
    w.add_tensor("b", GgmlType::Q8_0, &[32, 4]).unwrap();
    let bytes = w.to_bytes(&[&[1u8; 32], &[2u8; 136]]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.gguf");

    let whole = {
        std::fs::write(&path, &bytes).unwrap();
        GgufFile::open_partial(&path).unwrap()
    };
    assert_eq!(whole.file_bytes(), bytes.len() as u64);
    assert_eq!(whole.expected_file_bytes(), bytes.len() as u64);

    // Cut inside the data: the header still parses, the checked opens refuse it.
    let cut = bytes.len() - 100;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let f = GgufFile::open_partial(&path).unwrap();
    assert_eq!(f.file_bytes(), cut as u64);
    assert_eq!(f.expected_file_bytes(), bytes.len() as u64);
    assert_eq!(f.tensors().len(), 2);
    let mut buf = Vec::new();
    assert!(f.read_tensor_data(f.tensor("b").unwrap(), &mut buf).is_err());
    assert!(GgufFile::open_unmapped(&path).is_err());
    assert!(GgufFile::open(&path).is_err());

    // Cut inside the header: an error, not a guess.
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert!(GgufFile::open_partial(&path).is_err());
}

#[test]
fn a_tensor_written_in_parts_equals_one_written_whole_and_overruns_are_refused() {
    let make = || {
        let mut w = GgufWriter::new();
        w.add_tensor("a", GgmlType::F32, &[3]).unwrap();
        w.add_tensor("b", GgmlType::F32, &[4, 2]).unwrap();
        w
    };
    let a: Vec<u8> = (0..12).collect();
    let b: Vec<u8> = (100..132).collect();
    let whole = make().to_bytes(&[&a, &b]).unwrap();
    let mut sink = make().start(Vec::new(), "parts.gguf").unwrap();
    sink.write_tensor_part("a", &a[..5]).unwrap();
    let err = sink.write_tensor("b", &b).unwrap_err().to_string();
    assert!(err.contains("partly written"), "{err}");
    sink.write_tensor_part("a", &a[5..]).unwrap();
    for chunk in b.chunks(7) {
        sink.write_tensor_part("b", chunk).unwrap();
    }
    assert_eq!(sink.finish().unwrap(), whole);

    let mut sink = make().start(Vec::new(), "over.gguf").unwrap();
    let err = sink.write_tensor_part("a", &b).unwrap_err().to_string();
    assert!(err.contains("32 bytes given, 12 declared"), "{err}");
}

#[test]
fn read_at_gives_a_tensors_bytes_from_a_mapped_file_and_refuses_reads_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor("x", GgmlType::F32, &[4]).unwrap();
    w.add_tensor("y", GgmlType::F32, &[1024]).unwrap();
    let y: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sink = w.create(&out).unwrap();
    sink.write_tensor("x", &[9; 16]).unwrap();
    sink.write_tensor("y", &y).unwrap();
    sink.finish().unwrap();

    let mapped = GgufFile::open(&out).unwrap();
    let owned = GgufFile::from_bytes(std::fs::read(&out).unwrap(), "m.gguf").unwrap();
    for f in [&mapped, &owned] {
        let t = f.tensor_bytes(f.tensor("y").unwrap()).unwrap();
        // Released pages read the same through pread.
        t.release_pages().unwrap();
        let mut buf = [0u8; 100];
        t.read_at(3000, &mut buf).unwrap();
        assert_eq!(buf[..], y[3000..3100]);
        let mut all = vec![0u8; 4096];
        t.read_at(0, &mut all).unwrap();
        assert_eq!(all, y);
        let e = t.read_at(4000, &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let e = t.read_at(usize::MAX, &mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}
