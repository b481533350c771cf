//! Energy and CPU use of one bench case, from a `silica-telemetry` sampler trace that ran on its own thread
//! while the case ran: the energy of each timed pp and tg window (counters interpolated between samples), net
//! of an idle baseline when one was measured.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use silica_telemetry::Trace;

/// A timed span of one repetition.
pub type Window = (Instant, Instant);

/// The energy of one phase (prompt processing or generation) over a case's repetitions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseEnergy {
    /// Joules over the phase's timed windows (net of the idle baseline when measured).
    pub energy_j: f64,
    /// `energy_j` / the windows' total time, W.
    pub avg_power_w: f64,
    /// `energy_j` / the phase's tokens (all sequences, all repetitions), J.
    pub j_per_token: f64,
}

/// What the sampler says of one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseTelemetry {
    /// Cores kept busy by this process over the timed repetitions (CPU time ÷ wall time).
    pub cpu_util: Option<f64>,
    /// The energy counters summed (`rapl:package-0 + rapl:dram`), or `unavailable (<reason>)`.
    pub energy_source: String,
    /// The idle power subtracted, W.
    pub idle_power_w: Option<f64>,
    /// Prompt processing.
    pub pp: Option<PhaseEnergy>,
    /// Generation.
    pub tg: Option<PhaseEnergy>,
}

/// Energy of `windows` in `trace`: `None` without counters or windows.
fn phase(
    trace: &Trace,
    windows: &[Window],
    tokens_per_window: f64,
    idle_w: Option<f64>,
) -> Option<PhaseEnergy> {
    if windows.is_empty() || tokens_per_window <= 0.0 {
        return None;
    }
    let mut energy_j = 0.0;
    let mut secs = 0.0;
    for &(t0, t1) in windows {
        energy_j += trace.energy_between(t0, t1)?;
        secs += t1.duration_since(t0).as_secs_f64();
    }
    if let Some(w) = idle_w {
        energy_j = (energy_j - w * secs).max(0.0);
    }
    Some(PhaseEnergy {
        energy_j,
        avg_power_w: if secs > 0.0 { energy_j / secs } else { 0.0 },
        j_per_token: energy_j / (tokens_per_window * windows.len() as f64),
    })
}

/// The telemetry of a case whose repetitions spent `pp` and `tg` windows on `pp_tokens` and `tg_tokens` tokens
/// each (all sequences). The windows are in time order, each repetition's tg window after its pp window, as
/// [`run_case`](crate::runner::run_case) times them: the first pp (else tg) window starts the timed span and the
/// last tg (else pp) window ends it.
pub fn case_telemetry(
    trace: &Trace,
    pp: &[Window],
    tg: &[Window],
    pp_tokens: f64,
    tg_tokens: f64,
    idle_power_w: Option<f64>,
) -> CaseTelemetry {
    let start = pp.first().or(tg.first()).map(|w| w.0);
    let end = tg.last().or(pp.last()).map(|w| w.1);
    let cpu_util = match (start, end) {
        (Some(t0), Some(t1)) if t1 > t0 => trace.summary_between(t0, t1).cpu_util,
        _ => None,
    };
    let energy_source = trace.energy_source();
    CaseTelemetry {
        cpu_util,
        energy_source,
        idle_power_w,
        pp: phase(trace, pp, pp_tokens, idle_power_w),
        tg: phase(trace, tg, tg_tokens, idle_power_w),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use silica_telemetry::{CounterKind, ProcessStat, Sample, Trace, Unavailable};

    use super::*;

    /// A package counter at 0, 10 and 30 J and one busy core, sampled at 0, 1 and 2 s.
    fn trace(t0: Instant) -> Trace {
        let s = |sec: u64, uj: u64| Sample {
            at: t0 + Duration::from_secs(sec),
            process: Some(ProcessStat {
                cpu_time_ns: sec * 1_000_000_000,
                rss_bytes: 1 << 20,
                peak_rss_bytes: 1 << 20,
                n_threads: 1,
            }),
            energy_uj: vec![Some(uj)],
            gpu: None,
        };
        Trace {
            counters: vec![("rapl:package-0".into(), CounterKind::Total)],
            unavailable: Vec::new(),
            samples: vec![s(0, 0), s(1, 10_000_000), s(2, 30_000_000)],
            process_exited: false,
            note: None,
        }
    }

    #[test]
    fn phase_energy_is_the_interpolated_counter_over_the_timed_windows() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let tr = trace(t0);
        // pp 0.5–1.5 s: 5 J → 20 J = 15 J for 30 tokens; tg 1.5–2.0 s: 20 J → 30 J = 10 J for 5 tokens.
        let t = case_telemetry(
            &tr,
            &[(ms(500), ms(1500))],
            &[(ms(1500), ms(2000))],
            30.0,
            5.0,
            None,
        );
        let pp = t.pp.unwrap();
        assert!(
            (pp.energy_j - 15.0).abs() < 1e-9 && (pp.avg_power_w - 15.0).abs() < 1e-9,
            "{pp:?}"
        );
        assert!((pp.j_per_token - 0.5).abs() < 1e-9);
        let tg = t.tg.unwrap();
        assert!(
            (tg.energy_j - 10.0).abs() < 1e-9 && (tg.j_per_token - 2.0).abs() < 1e-9,
            "{tg:?}"
        );
        assert!((t.cpu_util.unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(t.energy_source, "rapl:package-0");
        // An idle baseline of 5 W comes off each window's energy.
        let idle = case_telemetry(&tr, &[(ms(500), ms(1500))], &[], 30.0, 0.0, Some(5.0));
        assert!((idle.pp.unwrap().energy_j - 10.0).abs() < 1e-9);
        assert!(idle.tg.is_none());
    }

    #[test]
    fn without_counters_energy_is_absent_with_the_reason_never_zero() {
        let t0 = Instant::now();
        let mut tr = trace(t0);
        tr.counters.clear();
        for s in &mut tr.samples {
            s.energy_uj.clear();
        }
        tr.unavailable.push(Unavailable {
            source: "rapl".into(),
            reason: "/sys/class/powercap does not exist".into(),
        });
        let w = [(t0, t0 + Duration::from_secs(1))];
        let t = case_telemetry(&tr, &w, &[], 10.0, 0.0, None);
        assert!(t.pp.is_none());
        assert_eq!(
            t.energy_source,
            "unavailable (rapl: /sys/class/powercap does not exist)"
        );
        assert!(t.cpu_util.is_some());
    }
}
