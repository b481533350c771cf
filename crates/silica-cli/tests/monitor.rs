//! `silica monitor` and the bench's telemetry end to end: a busy child's CPU time and memory as the kernel counts
//! them, a process watched by pid, and energy reported as measured or as unavailable with its reason — never 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};

use common::silica;
use silica_test_support::models;

/// A Python child that touches 200 MiB, burns CPU for about 1.5 s, and prints its own CPU seconds to stderr.
const BUSY: &str = "import time, sys\n\
b = bytearray(200 * 2**20)\n\
for i in range(0, len(b), 4096): b[i] = 1\n\
x = 0\n\
while time.process_time() < 1.5:\n    x += 1\n\
sys.stderr.write('cpu_s=%f\\n' % time.process_time())\n";

#[test]
fn monitor_reports_a_busy_commands_cpu_and_memory() {
    let o = silica(&[
        "monitor",
        "--interval",
        "100",
        "-o",
        "jsonl",
        "--",
        "python3",
        "-c",
        BUSY,
    ]);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{stderr}");
    let child_cpu_s: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("cpu_s="))
        .expect("the child's own CPU time (is python3 installed?)")
        .parse()
        .unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (summary, intervals) = lines.split_last().unwrap();
    assert!(intervals.len() >= 8, "one line per 100 ms over ~1.5 s: {stdout}");
    let s = &summary["summary"];
    let cpu = s["cpu_time_s"].as_f64().unwrap();
    println!("child says {child_cpu_s:.3} s of CPU, monitor {cpu:.3} s; summary {s}");
    assert!(
        (cpu - child_cpu_s).abs() < 0.1 + 0.1 * child_cpu_s,
        "{cpu} vs {child_cpu_s}"
    );
    // The child burns 1.5 s of its own CPU time (not wall time, which a loaded host stretches), so the window
    // holds at least that much; the utilisation is that time over the window.
    assert!(cpu > 1.4, "{s}");
    let util = s["cpu_util"].as_f64().unwrap();
    let window = s["duration_s"].as_f64().unwrap();
    assert!((util - cpu / window).abs() < 1e-6, "{s}");
    // RSS ≈ what it allocated: 200 MiB plus the interpreter.
    let peak = s["peak_rss_bytes"].as_u64().unwrap();
    assert!((200 << 20..300 << 20).contains(&peak), "peak RSS {peak}");
    let live_peak = intervals
        .iter()
        .filter_map(|v| v["rss_bytes"].as_u64())
        .max()
        .unwrap();
    assert!(live_peak >= 200 << 20, "live RSS lines saw {live_peak}");
    // Energy is measured, or unavailable with a reason; never a silent 0.
    match s["energy"]["status"].as_str() {
        Some("measured") => assert!(s["energy"]["energy_j"].as_f64().unwrap() > 0.0, "{s}"),
        _ => assert!(!s["energy"]["reason"].as_str().unwrap().is_empty(), "{s}"),
    }
}

#[test]
fn monitor_watches_a_pid_until_the_duration_and_says_what_energy_it_had() {
    let mut child = Command::new("sleep")
        .arg("5")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let o = silica(&["monitor", "--pid", &pid, "--interval", "100", "--duration", "0.5"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains(&format!("summary of pid {pid}")), "{out}");
    assert!(out.contains("energy: "), "{out}");
    assert!(out.lines().filter(|l| l.contains(" cpu ")).count() >= 3, "{out}");

    let gone = silica(&["monitor", "--pid", "999999999"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot watch pid 999999999"));
}

#[test]
fn bench_records_carry_cpu_use_and_energy_or_the_reason_it_is_missing() {
    let model = models::require(models::SMOLLM2_Q4_1);
    let o = silica(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "32",
        "-n",
        "8",
        "-r",
        "2",
        "-t",
        "2",
        "--no-save",
        "-o",
        "jsonl",
        "--telemetry-interval",
        "20",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let records: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(r["cpu_util"].as_f64().unwrap() > 0.3, "{r}");
        let source = r["energy_source"].as_str().unwrap();
        let phase = if r["n_gen"].as_u64().unwrap() > 0 {
            "tg"
        } else {
            "pp"
        };
        if source.starts_with("unavailable (") {
            assert!(stderr.contains("energy: unavailable ("), "{stderr}");
            assert!(r[format!("{phase}_energy_j")].is_null(), "{r}");
        } else {
            assert!(r[format!("{phase}_j_per_token")].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    // Off: no sampler, no fields.
    let o = silica(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "0",
        "-n",
        "4",
        "-r",
        "1",
        "--no-save",
        "-o",
        "jsonl",
        "--telemetry-interval",
        "0",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(r["cpu_util"].is_null() && r["energy_source"] == "", "{r}");
}
