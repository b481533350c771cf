//! Plans and fits as text for people, and as Markdown or CSV tables (one row per plan) for comparisons.

use std::fmt::Write;

use crate::GIB;
use crate::calibrate::Fit;
use crate::estimate::{Plan, Verdict};

/// `b` bytes in GiB for a table cell (`1.23`).
fn gib_cell(b: u64) -> String {
    format!("{:.2}", crate::gib(b))
}

/// A plan for people: model, device, memory per device, verdict, speeds; with `explain`, every formula.
pub fn plan_text(plan: &Plan, explain: bool) -> String {
    let mut s = String::new();
    let p = &plan.params;
    let _ = writeln!(
        s,
        "model:   {} ({})",
        plan.model,
        plan.file_type.as_deref().unwrap_or("mixed types")
    );
    let _ = writeln!(
        s,
        "device:  {}{}",
        if p.n_devices > 1 {
            format!("{} × ", p.n_devices)
        } else {
            String::new()
        },
        plan.device.summary()
    );
    let _ = writeln!(
        s,
        "context: n_ctx {}, n_ubatch {}, KV {}/{}, flash attention {}{}",
        p.n_ctx,
        p.n_ubatch,
        p.type_k.name(),
        p.type_v.name(),
        if p.flash_attn { "on" } else { "off" },
        if p.n_devices > 1 {
            format!(", split {:?} over {}", p.split, p.link.title).to_lowercase()
        } else {
            String::new()
        }
    );
    let m = &plan.memory;
    let _ = writeln!(
        s,
        "memory:  weights {} GiB + KV cache {} GiB + compute {} GiB per device",
        gib_cell(m.weights_bytes),
        gib_cell(m.kv_bytes),
        gib_cell(m.compute_bytes)
    );
    let _ = writeln!(
        s,
        "\n| device | layers | weights GiB | KV GiB | compute GiB | total GiB | usable GiB |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for d in &m.devices {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d.device,
            d.n_layers,
            gib_cell(d.weights_bytes),
            gib_cell(d.kv_bytes),
            gib_cell(d.compute_bytes),
            gib_cell(d.total_bytes),
            if d.usable_bytes > 0 {
                gib_cell(d.usable_bytes)
            } else {
                "?".into()
            }
        );
    }
    let _ = writeln!(s, "\nverdict: {}", plan.verdict.describe());
    if matches!(plan.verdict, Verdict::DoesNotFit { .. })
        && p.host.is_none()
        && plan.device.backend != crate::Backend::Cpu
        && !plan.device.unified_memory
    {
        let _ = writeln!(
            s,
            "         (--host-memory GB plans CPU offload; --devices N splits over several GPUs)"
        );
    }
    if let Some(sp) = &plan.speed {
        let _ = writeln!(
            s,
            "speed:   {} {} t/s, {} {:.2} t/s (predicted; {})",
            sp.pp_test,
            sp.pp_tps.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}")),
            sp.tg_test,
            sp.tg_tps,
            plan.efficiency.source
        );
    }
    if explain {
        let _ = writeln!(s, "\nhow:");
        for line in &plan.explain {
            let _ = writeln!(s, "- {line}");
        }
    }
    s
}

/// The columns of [`plans_markdown`] and [`plans_csv`].
const COLUMNS: [&str; 10] = [
    "device",
    "memory_gb",
    "usable_gib",
    "need_gib",
    "verdict",
    "margin_gib",
    "n_layers_cpu",
    "pp_test",
    "pp_tps",
    "tg_tps",
];

fn row(plan: &Plan) -> [String; 10] {
    // The devices' rows come first, then the host's (MemoryPlan::devices).
    let need: u64 = plan
        .memory
        .devices
        .iter()
        .take(plan.params.n_devices as usize)
        .map(|d| d.total_bytes)
        .max()
        .unwrap_or(0);
    let (verdict, margin, cpu) = match plan.verdict {
        Verdict::Fits { margin_bytes } => ("fits", margin_bytes as f64, 0),
        Verdict::FitsWithOffload {
            shortfall_bytes,
            n_layers_cpu,
            ..
        } => ("offload", -(shortfall_bytes as f64), n_layers_cpu),
        Verdict::DoesNotFit { shortfall_bytes } => ("no", -(shortfall_bytes as f64), 0),
    };
    let n = plan.params.n_devices;
    let sp = plan.speed.as_ref();
    [
        if n > 1 {
            format!("{n} × {}", plan.device.name)
        } else {
            plan.device.name.clone()
        },
        format!("{:.0}", plan.device.memory_bytes as f64 / 1e9),
        gib_cell(plan.device.usable_bytes()),
        gib_cell(need),
        verdict.to_owned(),
        format!("{:.2}", margin / GIB),
        cpu.to_string(),
        sp.map_or_else(String::new, |s| s.pp_test.clone()),
        sp.and_then(|s| s.pp_tps)
            .map_or_else(String::new, |v| format!("{v:.1}")),
        sp.map_or_else(String::new, |s| format!("{:.2}", s.tg_tps)),
    ]
}

/// A Markdown table, one row per plan (a device comparison: `--hw all`).
pub fn plans_markdown(plans: &[Plan]) -> String {
    let mut s = format!("| {} |\n|{}\n", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len()));
    for p in plans {
        let _ = writeln!(s, "| {} |", row(p).join(" | "));
    }
    s
}

/// CSV with a header, one row per plan.
pub fn plans_csv(plans: &[Plan]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(COLUMNS);
    for p in plans {
        let _ = w.write_record(row(p));
    }
    w.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Each fit's factors and its residual table (Markdown), then the median |error| over all rows.
pub fn fits_markdown(fits: &[Fit]) -> String {
    let mut s = String::new();
    let mut all = Vec::new();
    for f in fits {
        let e = &f.efficiency;
        let _ = writeln!(
            s,
            "{}: {} — median |error| {:.1}% ({})\n",
            e.backend,
            e.describe(),
            f.median_abs_error() * 100.0,
            e.source
        );
        let _ = writeln!(
            s,
            "| device | model | test | measured t/s | predicted t/s | error |\n|---|---|---|---:|---:|---:|"
        );
        for r in &f.residuals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} | {:+.1}% |",
                r.device,
                r.model,
                r.test,
                r.measured_tps,
                r.predicted_tps,
                r.error * 100.0
            );
        }
        s.push('\n');
        all.extend(f.residuals.iter().cloned());
    }
    let _ = writeln!(
        s,
        "median |error| over {} rows: {:.1}%",
        all.len(),
        crate::calibrate::median_abs(&all) * 100.0
    );
    s
}
