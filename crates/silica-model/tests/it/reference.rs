//! Greedy continuations of real models equal llama.cpp's (`shared/reference/reference-greedy.json`).

use silica_model::{Batch, Device, Model};
use silica_test_support::{golden, models};

/// Greedy-decodes `n` tokens after `prompt`; returns the tokens and, per step, the top-2 logits.
fn greedy(model: &Model, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<[(u32, f32); 2]>) {
    let dev = Device::Cpu;
    let mut kv = model.new_kv_cache(prompt.len() + n + 1, 1, &dev).unwrap();
    let mut logits = model.forward(&Batch::single(prompt, 0, false), &mut kv).unwrap();
    let mut out = Vec::new();
    let mut tops = Vec::new();
    for _ in 0..n {
        let row: Vec<f32> = logits.squeeze(0).unwrap().to_vec1().unwrap();
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        let t = idx[0];
        tops.push([(idx[0], row[idx[0] as usize]), (idx[1], row[idx[1] as usize])]);
        out.push(t);
        logits = model.forward(&Batch::single(&[t], 0, false), &mut kv).unwrap();
    }
    (out, tops)
}

/// Compares with the reference; a divergence is accepted only where silica's top-2 logits are within 1%
/// (a near-tie that summation order can flip), and the report shows it.
fn check(name: &str, file: &str) {
    let reference = golden::llama_cpp_greedy(name);
    let model = Model::open(models::require(file), &Device::Cpu).unwrap();
    let mut failures = Vec::new();
    for p in &reference.prompts {
        let want = &p.generated_ids;
        let (got, tops) = greedy(&model, &p.prompt_ids, want.len());
        match got.iter().zip(want).position(|(a, b)| a != b) {
            None => eprintln!("{name} {:?}: all {} tokens equal llama.cpp", p.prompt, want.len()),
            Some(step) => {
                let [(t1, l1), (t2, l2)] = tops[step];
                let gap = (l1 - l2).abs() / l1.abs().max(l2.abs());
                let msg = format!(
                    "{name} {:?}: first difference at step {step}: silica {} vs llama.cpp {}; silica top-2 {t1}={l1:.4}, {t2}={l2:.4} ({:.3}% apart)",
                    p.prompt,
                    got[step],
                    want[step],
                    gap * 100.0
                );
                eprintln!("{msg}");
                if gap >= 0.01 || (t2 != want[step]) {
                    failures.push(msg);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "diverged from llama.cpp without a near-tie:\n{}",
        failures.join("\n")
    );
}

#[test]
fn smollm2_q4_1_greedy_matches_llama_cpp() {
    check("SmolLM2-135M-Instruct.Q4_1", models::SMOLLM2_Q4_1);
}

#[test]
fn gemma3_q4_k_m_greedy_matches_llama_cpp() {
    check("gemma-3-270m-q4_k_m", models::GEMMA3_Q4_K_M);
}
