//! A generated token allocates nothing on the CPU: once a model has run a prompt and a first step, each
//! further one-token `forward_logits` makes no heap allocation, in the model, its kernels or the thread pool
//! (the brief's "no allocation per token"; llama.cpp plans its compute buffers once in the same way).
//!
//! A counting global allocator sees every allocation of the process, so this binary has no test harness
//! (`harness = false`): `main` runs the checks and panics on the first failure.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use silica_gguf::{GgmlType, GgufFile};
use silica_model::{Batch, Device, Model};
use silica_test_support::fixtures::TinyModel;
use silica_test_support::models;

/// The system allocator, counting calls that obtain memory.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs a 40-token prompt and two warm-up steps, then counts the allocations of eight more one-token steps.
fn allocations_per_step(name: &str, model: &Model) {
    let mut kv = model.new_kv_cache(64, 1, &Device::Cpu).expect("KV cache");
    let prompt: Vec<u32> = (0..40).map(|i| (i * 37 + 5) % 250).collect();
    model
        .forward_logits(&Batch::single(&prompt, 0, false), &mut kv)
        .expect("prompt pass");
    let mut batch = Batch::default();
    let mut step = |tok: u32| {
        batch.clear();
        batch.push(tok, 0, true);
        model
            .forward_logits(&batch, &mut kv)
            .expect("one-token pass")
            .len()
    };
    for tok in [3, 4] {
        step(tok);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut n_logits = 0;
    for tok in 10..18 {
        n_logits += step(tok);
    }
    let made = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(n_logits, 8 * model.hparams().n_vocab, "{name}: logits per step");
    assert_eq!(made, 0, "{name}: {made} heap allocations in 8 generated tokens");
    println!("{name}: 0 allocations in 8 generated tokens");
}

fn main() {
    for (name, t) in [
        ("tiny llama Q8_0", TinyModel::llama().weight_type(GgmlType::Q8_0)),
        (
            "tiny gemma3 Q8_0",
            TinyModel::gemma3().weight_type(GgmlType::Q8_0),
        ),
    ] {
        let f = GgufFile::from_bytes(t.to_bytes(), "tiny.gguf").expect("fixture parses");
        allocations_per_step(name, &Model::load(&f, &Device::Cpu).expect("fixture loads"));
    }
    for file in [models::SMOLLM2_Q4_1, models::GEMMA3_Q4_K_M] {
        let model = Model::open(models::require(file), &Device::Cpu).expect("model loads");
        allocations_per_step(file, &model);
    }
}
