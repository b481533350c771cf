//! Lengths and types that cannot be processed are typed errors, never panics.

use silica_gguf::GgmlType;
use silica_quant::{QuantError, can_dequantize, can_quantize, dequantize_row, quantize_row};

use crate::SUPPORTED;

#[test]
fn supported_set_is_exact() {
    for ty in GgmlType::all() {
        let supported = SUPPORTED.contains(&ty);
        assert_eq!(can_quantize(ty), supported, "{ty}");
        assert_eq!(can_dequantize(ty), supported, "{ty}");
    }
}

#[test]
fn unsupported_types_are_rejected() {
    for ty in GgmlType::all().filter(|t| !SUPPORTED.contains(t)) {
        let n = ty.block_len();
        let mut bytes = vec![0u8; ty.block_bytes()];
        let mut values = vec![0f32; n];
        assert_eq!(
            quantize_row(ty, &values, &mut bytes),
            Err(QuantError::Unsupported { ty, op: "quantize" })
        );
        assert_eq!(
            dequantize_row(ty, &bytes, &mut values),
            Err(QuantError::Unsupported { ty, op: "dequantize" })
        );
    }
    let err = quantize_row(GgmlType::IQ2_XXS, &[], &mut []).unwrap_err();
    assert_eq!(err.to_string(), "quantize is not supported for IQ2_XXS");
}

#[test]
fn partial_blocks_are_rejected() {
    for ty in SUPPORTED.into_iter().filter(|t| t.block_len() > 1) {
        let n = ty.block_len() + 1;
        let mut bytes = vec![0xAAu8; 2 * ty.block_bytes()];
        let mut values = vec![1.0f32; n];
        let want = QuantError::PartialBlock {
            ty,
            values: n,
            block_len: ty.block_len(),
        };
        assert_eq!(quantize_row(ty, &values, &mut bytes), Err(want.clone()));
        assert_eq!(dequantize_row(ty, &bytes, &mut values), Err(want));
        // Nothing was written.
        assert!(bytes.iter().all(|&b| b == 0xAA));
        assert!(values.iter().all(|&v| v == 1.0));
    }
    let err = quantize_row(GgmlType::Q4_K, &[0.0; 300], &mut [0; 144]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Q4_K: a row of 300 values is not a whole number of 256-value blocks"
    );
}

#[test]
fn wrong_byte_lengths_are_rejected() {
    for ty in SUPPORTED {
        let n = 2 * ty.block_len();
        let expected = 2 * ty.block_bytes();
        for bytes in [0, expected - 1, expected + 1, 3 * ty.block_bytes()] {
            let mut buf = vec![0x55u8; bytes];
            let mut values = vec![2.0f32; n];
            let want = QuantError::ByteLength {
                ty,
                values: n,
                expected,
                bytes,
            };
            assert_eq!(
                quantize_row(ty, &values, &mut buf),
                Err(want.clone()),
                "{ty} {bytes}"
            );
            assert_eq!(dequantize_row(ty, &buf, &mut values), Err(want), "{ty} {bytes}");
            assert!(buf.iter().all(|&b| b == 0x55));
            assert!(values.iter().all(|&v| v == 2.0));
        }
    }
    let err = dequantize_row(GgmlType::Q8_0, &[0; 35], &mut [0.0; 32]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Q8_0: 32 values take 34 bytes, but the byte buffer has 35"
    );
}

#[test]
fn empty_rows_are_fine() {
    for ty in SUPPORTED {
        assert_eq!(quantize_row(ty, &[], &mut []), Ok(()));
        assert_eq!(dequantize_row(ty, &[], &mut []), Ok(()));
    }
}
