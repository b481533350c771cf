//! silica-quant against ggml's own output: `tests/vectors/` holds inputs, the bytes ggml's reference
//! quantizers made from them, and a hash of ggml's dequantization of those bytes (see
//! `tests/vectors/README.md` for how they were generated).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use silica_gguf::GgmlType;
use silica_quant::{dequantize_row, quantize_row};

/// The types the vectors must cover: the 12 file types plus Q8_K.
const EXPECTED_TYPES: [&str; 13] = [
    "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
];
const EXPECTED_CASES: [&str; 9] = [
    "gauss",
    "uniform",
    "outlier",
    "zeros",
    "tiny",
    "huge",
    "positive",
    "ties",
    "nonfinite",
];

struct Vectors {
    dir: PathBuf,
    manifest: Value,
    rows: usize,
    row_len: usize,
    cases: Vec<String>,
    inputs: Vec<f32>,
}

impl Vectors {
    fn load() -> Vectors {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        let rows = manifest["rows"].as_u64().unwrap() as usize;
        let row_len = manifest["row_len"].as_u64().unwrap() as usize;
        let cases: Vec<String> = manifest["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let raw = std::fs::read(dir.join("inputs.f32")).unwrap();
        assert_eq!(raw.len(), cases.len() * rows * row_len * 4, "inputs.f32 size");
        let inputs = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Vectors {
            dir,
            manifest,
            rows,
            row_len,
            cases,
            inputs,
        }
    }

    fn n(&self) -> usize {
        self.rows * self.row_len
    }

    fn input(&self, case: usize) -> &[f32] {
        &self.inputs[case * self.n()..(case + 1) * self.n()]
    }

    fn types(&self) -> Vec<(String, GgmlType)> {
        self.manifest["types"]
            .as_object()
            .unwrap()
            .keys()
            .map(|name| (name.clone(), name.parse::<GgmlType>().unwrap()))
            .collect()
    }

    /// ggml's bytes for every case of `name`, split per case.
    fn ggml_bytes(&self, name: &str, ty: GgmlType) -> Vec<Vec<u8>> {
        let row_bytes = ty.row_bytes(self.row_len as u64).unwrap() as usize;
        assert_eq!(
            self.manifest["types"][name]["row_bytes"].as_u64(),
            Some(row_bytes as u64),
            "{name}"
        );
        let raw = std::fs::read(self.dir.join(format!("{name}.bin"))).unwrap();
        let case_bytes = self.rows * row_bytes;
        assert_eq!(raw.len(), self.cases.len() * case_bytes, "{name}.bin size");
        raw.chunks_exact(case_bytes).map(<[u8]>::to_vec).collect()
    }

    fn entry(&self, name: &str, case: &str) -> &Value {
        &self.manifest["types"][name]["cases"][case]
    }
}

/// Whether `case` can be compared bit for bit on this machine. The `huge` and `nonfinite` cases create
/// NaNs inside the quantizers (`inf − inf`, `inf · 0`), and the sign of such a default NaN is up to the
/// hardware (negative on x86-64, positive on ARM); ggml made the vectors on x86-64, so those two cases
/// are compared there only. Finite cases and the bulk rows are compared everywhere.
fn comparable_here(case: &str) -> bool {
    cfg!(target_arch = "x86_64") || !matches!(case, "huge" | "nonfinite")
}

fn quantize_rows(ty: GgmlType, x: &[f32], row_len: usize) -> Vec<u8> {
    let row_bytes = ty.row_bytes(row_len as u64).unwrap() as usize;
    let mut out = vec![0u8; x.len() / row_len * row_bytes];
    for (src, dst) in x.chunks_exact(row_len).zip(out.chunks_exact_mut(row_bytes)) {
        quantize_row(ty, src, dst).unwrap();
    }
    out
}

fn dequantize_rows(ty: GgmlType, bytes: &[u8], row_len: usize) -> Vec<f32> {
    let row_bytes = ty.row_bytes(row_len as u64).unwrap() as usize;
    let mut out = vec![0f32; bytes.len() / row_bytes * row_len];
    for (src, dst) in bytes.chunks_exact(row_bytes).zip(out.chunks_exact_mut(row_len)) {
        dequantize_row(ty, src, dst).unwrap();
    }
    out
}

/// FNV-1a 64 over the little-endian bytes of `values`, as gen.c computes it.
fn fnv1a64(values: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in values.iter().flat_map(|v| v.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// RMSE over all values, in f64, as gen.c computes it; `None` when not finite.
fn rmse(x: &[f32], y: &[f32]) -> Option<f64> {
    let se: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (f64::from(b) - f64::from(a)).powi(2))
        .sum();
    let r = (se / x.len() as f64).sqrt();
    r.is_finite().then_some(r)
}

#[test]
fn vectors_cover_every_type_and_case() {
    let v = Vectors::load();
    assert_eq!(v.cases, EXPECTED_CASES);
    let mut names: Vec<String> = v.types().into_iter().map(|(n, _)| n).collect();
    names.sort();
    let mut expected: Vec<String> = EXPECTED_TYPES.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(
        v.row_len.is_multiple_of(256) && v.row_len > 256,
        "rows span several super-blocks"
    );
}

/// Our quantizer's bytes equal ggml's for every type, case and row.
#[test]
fn quantize_is_byte_identical_to_ggml() {
    let v = Vectors::load();
    let mut failures = String::new();
    for (name, ty) in v.types() {
        let row_bytes = ty.row_bytes(v.row_len as u64).unwrap() as usize;
        let block_bytes = ty.block_bytes();
        for (c, expected) in v.ggml_bytes(&name, ty).iter().enumerate() {
            if !comparable_here(&v.cases[c]) {
                continue;
            }
            let ours = quantize_rows(ty, v.input(c), v.row_len);
            if ours != *expected {
                let blocks: Vec<String> = ours
                    .chunks(block_bytes)
                    .zip(expected.chunks(block_bytes))
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .map(|(i, _)| {
                        format!(
                            "row {} block {}",
                            i * block_bytes / row_bytes,
                            i % (row_bytes / block_bytes)
                        )
                    })
                    .collect();
                writeln!(
                    failures,
                    "{name}/{}: {} blocks differ: {:?}",
                    v.cases[c],
                    blocks.len(),
                    blocks
                )
                .unwrap();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "quantized bytes differ from ggml:\n{failures}"
    );
}

/// Our dequantizer gives ggml's f32 values bit for bit (hash of the whole case), and the same RMSE.
#[test]
fn dequantize_matches_ggml_exactly() {
    let v = Vectors::load();
    let mut failures = String::new();
    for (name, ty) in v.types() {
        for (c, bytes) in v.ggml_bytes(&name, ty).iter().enumerate() {
            let case = &v.cases[c];
            if !comparable_here(case) {
                continue;
            }
            let entry = v.entry(&name, case);
            let y = dequantize_rows(ty, bytes, v.row_len);
            let want = u64::from_str_radix(entry["dequant_fnv1a64"].as_str().unwrap(), 16).unwrap();
            if fnv1a64(&y) != want {
                writeln!(failures, "{name}/{case}: dequantized values differ from ggml's").unwrap();
            }
            let ours = rmse(v.input(c), &y);
            match (ours, entry["rmse"].as_f64()) {
                (None, None) => {}
                (Some(a), Some(b)) if (a - b).abs() <= b * 1e-8 => {}
                (a, b) => writeln!(failures, "{name}/{case}: RMSE {a:?}, ggml {b:?}").unwrap(),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "dequantization differs from ggml:\n{failures}"
    );
}

/// The quantize → dequantize RMSE per type and case, ours next to ggml's (run with `--nocapture` to
/// see the table). Equal bytes make them equal; this guards the relation independently.
#[test]
fn rmse_table_matches_ggml() {
    let v = Vectors::load();
    let mut table = String::from("type   case        ours RMSE       ggml RMSE\n");
    for (name, ty) in v.types() {
        for c in (0..v.cases.len()).filter(|&c| comparable_here(&v.cases[c])) {
            let x = v.input(c);
            let bytes = quantize_rows(ty, x, v.row_len);
            let ours = rmse(x, &dequantize_rows(ty, &bytes, v.row_len));
            let ggml = v.entry(&name, &v.cases[c])["rmse"].as_f64();
            let fmt = |r: Option<f64>| r.map_or("non-finite".to_owned(), |r| format!("{r:.6e}"));
            writeln!(
                table,
                "{name:<6} {:<10} {:>14} {:>15}",
                v.cases[c],
                fmt(ours),
                fmt(ggml)
            )
            .unwrap();
            match (ours, ggml) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    assert!(a <= b * (1.0 + 1e-8) + 1e-30, "{name}/{}: {a} > {b}", v.cases[c])
                }
                (a, b) => panic!("{name}/{}: RMSE {a:?}, ggml {b:?}", v.cases[c]),
            }
        }
    }
    println!("{table}");
}

/// The vectors are not trivial: each quantized case differs from the all-zero block, and cases with
/// real data have a non-zero, finite error (a quantizer that wrote zeros could not pass).
#[test]
fn vectors_are_not_degenerate() {
    let v = Vectors::load();
    for (name, ty) in v.types() {
        for (c, bytes) in v.ggml_bytes(&name, ty).iter().enumerate() {
            assert!(bytes.iter().any(|&b| b != 0), "{name}/{}", v.cases[c]);
        }
        if ty.is_quantized() {
            let r = v.entry(&name, "gauss")["rmse"].as_f64().unwrap();
            assert!(r > 0.0 && r < 0.02, "{name}: gauss RMSE {r}");
        }
    }
}

/// splitmix64 and the bulk-row shapes of gen.c (`bulk_row`), which use only +, −, × on f64, so they
/// are regenerated here bit for bit.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unif(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    fn u11(&mut self) -> f64 {
        self.unif() * 2.0 - 1.0
    }

    fn unif_int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i32
    }
}

fn bulk_inputs(rows: usize, row_len: usize) -> Vec<f32> {
    const SCALE: [f64; 6] = [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0];
    let mut rng = SplitMix64(0xB01C_0000);
    let mut x = Vec::with_capacity(rows * row_len);
    for r in 0..rows {
        let scale = SCALE[(r / 6) % 6];
        let offset = rng.u11();
        for i in 0..row_len {
            let v = match r % 6 {
                0 => {
                    let (a, b, c, d) = (rng.unif(), rng.unif(), rng.unif(), rng.unif());
                    (a + b + c + d - 2.0) * 0.05
                }
                1 => rng.u11(),
                2 => {
                    let a = rng.u11();
                    if i % 37 == 0 { a } else { a * 0.05 }
                }
                3 => {
                    let (a, b) = (rng.u11(), rng.unif());
                    if b < 0.7 { 0.0 } else { a }
                }
                4 => 0.5 * rng.u11() + offset,
                _ => f64::from(rng.unif_int(-16, 16)) * 0.125,
            };
            x.push((v * scale) as f32);
        }
    }
    x
}

/// Thousands more super-blocks than the per-case files, checked by hash: op-order slips that change
/// a rounding once in a few hundred blocks show up here.
#[test]
fn bulk_rows_match_ggml_hashes() {
    let v = Vectors::load();
    let bulk = &v.manifest["bulk"];
    let rows = bulk["rows"].as_u64().unwrap() as usize;
    let row_len = bulk["row_len"].as_u64().unwrap() as usize;
    let hash = |key: &Value| u64::from_str_radix(key.as_str().unwrap(), 16).unwrap();
    let x = bulk_inputs(rows, row_len);
    assert_eq!(
        fnv1a64(&x),
        hash(&bulk["inputs_fnv1a64"]),
        "bulk inputs regenerated differently"
    );
    let mut failures = String::new();
    for (name, ty) in v.types() {
        let bytes = quantize_rows(ty, &x, row_len);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in &bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        if h != hash(&bulk["types"][&name]["quant_fnv1a64"]) {
            writeln!(failures, "{name}: quantized bytes differ").unwrap();
        }
        if fnv1a64(&dequantize_rows(ty, &bytes, row_len)) != hash(&bulk["types"][&name]["dequant_fnv1a64"]) {
            writeln!(failures, "{name}: dequantized values differ").unwrap();
        }
    }
    assert!(failures.is_empty(), "bulk rows differ from ggml:\n{failures}");
}
