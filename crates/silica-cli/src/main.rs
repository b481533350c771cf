//! `silica`: benchmark, run, inspect, quantize and synthesize GGUF models; plan what fits and how fast; describe
//! this machine (more commands land with their issues).

mod commands;

use clap::{Parser, Subcommand, ValueEnum};

/// silica — what fits, how fast, at what energy; and then run it.
#[derive(Debug, Parser)]
#[command(name = "silica", version, about, long_about = None)]
struct Cli {
    /// Transparent huge pages (2 MiB) for the weights the CPU kernels repack at load (Linux): faster generation
    /// and load. auto: on, except in a virtual machine whose balloon device takes free memory back, where each
    /// huge page is faulted in again from the host and a load after idle time is slower.
    #[arg(long, global = true, value_enum, default_value_t = HugePagesArg::Auto)]
    huge_pages: HugePagesArg,
    /// SIMD level of the CPU kernels: auto (the best this CPU has) or a lower one, to measure what a machine
    /// without the newer instructions gets (avx2 on an AVX-512 server) or to check results on the scalar
    /// references. Bench records say which ran (kernel_simd).
    #[arg(long, global = true, default_value = "auto", value_parser = simd_names())]
    simd: String,
    #[command(subcommand)]
    command: Command,
}

/// `--simd` values: `auto` and every level's name (`silica_kernels::Simd::name`).
fn simd_names() -> clap::builder::PossibleValuesParser {
    let levels = silica_kernels::Simd::ALL.map(|l| clap::builder::PossibleValue::new(l.name()));
    std::iter::once(clap::builder::PossibleValue::new("auto"))
        .chain(levels)
        .collect::<Vec<_>>()
        .into()
}

/// `--huge-pages` values (`silica_kernels::HugePages`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum HugePagesArg {
    Auto,
    On,
    Off,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark prompt processing and generation speed, as llama-bench (pp512, tg128, depth, batch).
    Bench(commands::bench::BenchArgs),
    /// Generate text from a prompt, streamed to stdout; timings to stderr.
    Run(commands::run::RunArgs),
    /// Show a GGUF file's metadata, tensors, parameter count, bits per weight and tokenizer.
    Inspect(commands::inspect::InspectArgs),
    /// Quantize a GGUF file to a llama.cpp type or file-type mix (as llama-quantize).
    Quantize(commands::quantize::QuantizeArgs),
    /// Write a random-weight model with a published model's shapes and a working tokenizer.
    Synth(commands::synth::SynthArgs),
    /// Will a model fit a device's memory, and how fast will it run there (any device of the table, or this one).
    Plan(commands::plan::PlanArgs),
    /// This machine: CPU, SIMD, RAM, GPUs, power sensors, and its measured memory bandwidth and peak FLOP/s.
    Hw(commands::hw::HwArgs),
    /// Watch one process (--pid, or -- CMD ARGS): CPU, memory, threads and energy, live and summed up.
    Monitor(commands::monitor::MonitorArgs),
}

/// The global options (`--name`, and whether it takes a value), which may come before the subcommand.
fn global_options() -> Vec<(String, bool)> {
    use clap::CommandFactory;
    Cli::command()
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(|a| Some((format!("--{}", a.get_long()?), a.get_action().takes_values())))
        .collect()
}

fn main() {
    // Activations are allocated anew by every forward pass; keep freed memory for reuse (see the function).
    silica_kernels::keep_freed_memory();
    let args = match commands::bench::rewrite_llama_bench_flags(std::env::args().collect(), &global_options())
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(args);
    silica_kernels::set_huge_pages(match cli.huge_pages {
        HugePagesArg::Auto => silica_kernels::HugePages::Auto,
        HugePagesArg::On => silica_kernels::HugePages::On,
        HugePagesArg::Off => silica_kernels::HugePages::Off,
    });
    if let Err(e) = silica_kernels::set_simd(silica_kernels::Simd::from_name(&cli.simd)) {
        eprintln!("error: --simd {}: {e}", cli.simd);
        std::process::exit(2);
    }
    let result = match cli.command {
        Command::Bench(a) => commands::bench::run(&a),
        Command::Run(a) => commands::run::run(&a),
        Command::Inspect(a) => commands::inspect::run(&a),
        Command::Quantize(a) => commands::quantize::run(&a),
        Command::Synth(a) => commands::synth::run(&a),
        Command::Hw(a) => commands::hw::run(&a),
        Command::Monitor(a) => commands::monitor::run(&a).map(exit_nonzero),
        Command::Plan(a) => commands::plan::run(&a).map(exit_nonzero),
    };
    if let Err(e) = result {
        // A closed pipe (`silica run ... | head`) is not an error.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("error: {}", render_chain(&e));
        std::process::exit(2);
    }
}

/// Exits with `status` unless it is 0 (commands that return an exit status: `plan`, `monitor`).
fn exit_nonzero(status: i32) {
    if status != 0 {
        std::process::exit(status);
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message already shows (library
/// errors print their cause inline).
fn render_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_global_options_are_read_from_the_parser() {
        // What `rewrite_llama_bench_flags` skips to find the subcommand.
        assert!(super::global_options().contains(&("--huge-pages".to_owned(), true)));
        assert!(super::global_options().contains(&("--simd".to_owned(), true)));
    }
}
