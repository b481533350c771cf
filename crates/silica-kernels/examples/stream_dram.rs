//! One-token products streamed from DRAM: row-major against repacked layout, alternating in one run.
//!
//! ```text
//! SILICA_NUM_THREADS=2 cargo run --release -p silica-kernels --example stream_dram -- Q6_K
//! ```
//!
//! Makes 40 random `8192 × 2048` matrices of the given type (Q4_0, Q5_0, Q8_0, Q4_K or Q6_K: 300–550 MB, far
//! above any cache), multiplies one token by each in turn, three rounds, and prints the weight bytes read per
//! second for both layouts. The divan bench (`benches/matmul.rs`) reuses one matrix, so it measures from cache;
//! this is the figure that decides generation speed.

use silica_gguf::GgmlType;
use silica_kernels::{QMatRef, Scratch, global_pool, matmul};
use std::time::Instant;

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "Q6_K".into());
    let Ok(ty) = arg.parse::<GgmlType>() else {
        eprintln!("error: unknown type {arg}");
        std::process::exit(2);
    };
    let (rows, cols, n_mat) = (8192usize, 2048usize, 40usize);
    let bb = ty.block_bytes();
    let rb = cols / ty.block_len() * bb;
    // Offsets of each block's f16 scales (`d`, and `dmin` for Q4_K/Q5_K), set to 0x2000 (2⁻⁷) so that the
    // products stay finite; every other byte is random. Only the bytes read matter here, not the values.
    let scales: &[usize] = match ty {
        GgmlType::Q6_K => &[208],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        _ => &[0],
    };
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mats: Vec<Vec<u8>> = (0..n_mat)
        .map(|_| {
            let mut w: Vec<u8> = (0..rows * rb)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            for block in w.chunks_exact_mut(bb) {
                for &at in scales {
                    block[at..at + 2].copy_from_slice(&[0x00, 0x20]);
                }
            }
            w
        })
        .collect();
    let packed: Vec<_> = mats
        .iter()
        .map(|w| {
            let m = QMatRef::new(ty, rows, cols, w).expect("valid shape");
            silica_kernels::repack(&m).expect("aligned").unwrap_or_else(|| {
                eprintln!("error: this CPU has no repacked kernel for {ty}");
                std::process::exit(2);
            })
        })
        .collect();
    let x: Vec<f32> = (0..cols).map(|i| (i as f32).sin()).collect();
    let mut y = vec![0f32; rows];
    let mut s = Scratch::default();
    let gb = (n_mat * rows * rb) as f64 / 1e9;
    for round in 0..3 {
        let t = Instant::now();
        for w in &mats {
            let m = QMatRef::new(ty, rows, cols, w).expect("valid shape");
            matmul(global_pool(), &m, &x, 1, &mut y, &mut s).expect("sizes match");
        }
        let a = gb / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for p in &packed {
            p.matmul(global_pool(), &x, 1, &mut y, &mut s)
                .expect("sizes match");
        }
        let b = gb / t.elapsed().as_secs_f64();
        println!("{ty} round {round}: row-major {a:.1} GB/s, repacked {b:.1} GB/s");
    }
}
