//! Printers: views of [`BenchRecord`]s in llama-bench's output formats (`-o md|csv|json|jsonl|sql`), written as
//! each record arrives so a long run shows results as it goes.
//!
//! Layouts follow llama-bench build 10573 (`tools/llama-bench/llama-bench.cpp`, `markdown_printer`,
//! `csv_printer`, `json_printer`, `jsonl_printer`, `sql_printer`): CSV and SQL quote every value and write
//! booleans as 0/1; JSON is an array of objects; the Markdown table shows model, size, params, backend,
//! threads, test and t/s, plus any parameter whose value differs from its default somewhere in the grid.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde_json::Value;

use crate::params::{BenchCase, KvType};
use crate::record::{BUILD_COMMIT, BenchRecord, build_number};

/// An output format (`-o`, `-oe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// A Markdown table (the default).
    Md,
    /// CSV with a header row.
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// `CREATE TABLE` and one `INSERT` per record (pipes into `sqlite3`).
    Sql,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "md" => OutputFormat::Md,
            "csv" => OutputFormat::Csv,
            "json" => OutputFormat::Json,
            "jsonl" => OutputFormat::Jsonl,
            "sql" => OutputFormat::Sql,
            other => {
                return Err(format!(
                    "unknown output format '{other}' (md, csv, json, jsonl, sql)"
                ));
            }
        })
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Md => "md",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Sql => "sql",
        })
    }
}

/// A view of records.
pub trait Printer {
    /// Called once before the first record, with every case of the run; nothing by default.
    ///
    /// # Errors
    /// Write errors.
    fn header(&mut self, _cases: &[BenchCase]) -> io::Result<()> {
        Ok(())
    }
    /// Called once per finished case.
    ///
    /// # Errors
    /// Write errors.
    fn record(&mut self, r: &BenchRecord) -> io::Result<()>;
    /// Called once at the end.
    ///
    /// # Errors
    /// Write errors.
    fn footer(&mut self) -> io::Result<()>;
    /// Whether energy is measured: the Markdown table then shows a `J/t` column (J per token of the test's phase;
    /// `pp/tg` for a combined test). Other formats always carry the energy fields.
    fn show_energy(&mut self, _on: bool) {}
}

/// The printer of `format` writing to `out`.
pub fn printer<'w>(format: OutputFormat, out: Box<dyn Write + 'w>) -> Box<dyn Printer + 'w> {
    match format {
        OutputFormat::Md => Box::new(Markdown {
            out,
            cols: Vec::new(),
            energy: false,
        }),
        OutputFormat::Csv => Box::new(Csv {
            out,
            header_done: false,
        }),
        OutputFormat::Json => Box::new(Json { out, first: true }),
        OutputFormat::Jsonl => Box::new(Jsonl { out }),
        OutputFormat::Sql => Box::new(Sql {
            out,
            table_done: false,
        }),
    }
}

/// A value as llama-bench's CSV and SQL printers write it: strings raw, booleans `0`/`1`, numbers as JSON
/// writes them; `None` for null.
fn plain(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

struct Csv<'w> {
    out: Box<dyn Write + 'w>,
    header_done: bool,
}

impl Printer for Csv<'_> {
    fn record(&mut self, r: &BenchRecord) -> io::Result<()> {
        let fields = r.scalar_fields();
        if !self.header_done {
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            writeln!(self.out, "{}", names.join(","))?;
            self.header_done = true;
        }
        let vals: Vec<String> = fields
            .iter()
            .map(|(_, v)| format!("\"{}\"", plain(v).unwrap_or_default().replace('"', "\"\"")))
            .collect();
        writeln!(self.out, "{}", vals.join(","))?;
        self.out.flush()
    }
    fn footer(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Json<'w> {
    out: Box<dyn Write + 'w>,
    first: bool,
}

impl Printer for Json<'_> {
    fn header(&mut self, _: &[BenchCase]) -> io::Result<()> {
        write!(self.out, "[")
    }
    fn record(&mut self, r: &BenchRecord) -> io::Result<()> {
        let text = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
        let sep = if self.first { "\n" } else { ",\n" };
        self.first = false;
        write!(self.out, "{sep}  {}", text.replace('\n', "\n  "))?;
        self.out.flush()
    }
    fn footer(&mut self) -> io::Result<()> {
        writeln!(self.out, "\n]")?;
        self.out.flush()
    }
}

struct Jsonl<'w> {
    out: Box<dyn Write + 'w>,
}

impl Printer for Jsonl<'_> {
    fn record(&mut self, r: &BenchRecord) -> io::Result<()> {
        let text = serde_json::to_string(r).map_err(io::Error::other)?;
        writeln!(self.out, "{text}")?;
        self.out.flush()
    }
    fn footer(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The SQL table name: silica's records carry more columns than llama-bench's `llama_bench` table, so they go
/// to their own table with the same column names (join or `UNION` on them).
pub const SQL_TABLE: &str = "silica_bench";

struct Sql<'w> {
    out: Box<dyn Write + 'w>,
    table_done: bool,
}

impl Printer for Sql<'_> {
    fn record(&mut self, r: &BenchRecord) -> io::Result<()> {
        let fields = r.scalar_fields();
        if !self.table_done {
            writeln!(self.out, "CREATE TABLE IF NOT EXISTS {SQL_TABLE} (")?;
            let cols: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    let ty = match v {
                        Value::String(_) => "TEXT",
                        Value::Number(n) if n.is_f64() => "REAL",
                        _ => "INTEGER",
                    };
                    format!("  {k} {ty}")
                })
                .collect();
            writeln!(self.out, "{}\n);\n", cols.join(",\n"))?;
            self.table_done = true;
        }
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let vals: Vec<String> = fields
            .iter()
            .map(|(_, v)| plain(v).map_or_else(|| "NULL".into(), |s| format!("'{}'", s.replace('\'', "''"))))
            .collect();
        writeln!(
            self.out,
            "INSERT INTO {SQL_TABLE} ({}) VALUES ({});",
            names.join(", "),
            vals.join(", ")
        )?;
        self.out.flush()
    }
    fn footer(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A Markdown column: header, width (negative = left-aligned, as llama-bench's `get_field_width`) and the
/// cell of a record.
type Column = (&'static str, i32, fn(&BenchRecord) -> String);

struct Markdown<'w> {
    out: Box<dyn Write + 'w>,
    cols: Vec<Column>,
    energy: bool,
}

/// J per token of a record's phases: `0.012`, or `pp/tg` for a combined test; `-` when not measured.
fn j_per_token(r: &BenchRecord) -> String {
    match (r.pp_j_per_token, r.tg_j_per_token) {
        (Some(p), Some(t)) => format!("{p:.3}/{t:.3}"),
        (Some(x), None) | (None, Some(x)) => format!("{x:.3}"),
        (None, None) => "-".into(),
    }
}

/// `92.10 MiB` / `3.56 GiB`, as llama-bench prints `model_size`.
pub fn format_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

/// `134.52 M` / `6.74 B`, as llama-bench prints `model_n_params`.
pub fn format_params(n: u64) -> String {
    let n = n as f64;
    if n < 1e9 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} B", n / 1e9)
    }
}

impl Markdown<'_> {
    fn columns(cases: &[BenchCase], energy: bool) -> Vec<Column> {
        let mut cols: Vec<Column> = vec![
            ("model", -30, |r| r.model_type.clone()),
            ("size", 10, |r| format_size(r.model_size)),
            ("params", 10, |r| format_params(r.model_n_params)),
            ("backend", -10, |r| r.backends.clone()),
            ("threads", 7, |r| r.n_threads.to_string()),
        ];
        let any = |f: fn(&BenchCase) -> bool| cases.iter().any(f);
        if any(|c| c.n_batch != 2048) {
            cols.push(("n_batch", 7, |r| r.n_batch.to_string()));
        }
        if any(|c| c.n_ubatch != 512) {
            cols.push(("n_ubatch", 8, |r| r.n_ubatch.to_string()));
        }
        if any(|c| c.type_k != KvType::F16) {
            cols.push(("type_k", 6, |r| r.type_k.clone()));
        }
        if any(|c| c.type_v != KvType::F16) {
            cols.push(("type_v", 6, |r| r.type_v.clone()));
        }
        if any(|c| c.n_ctx != 0) {
            cols.push(("n_ctx", 7, |r| r.n_ctx.to_string()));
        }
        let parallel = any(|c| c.n_parallel != 1);
        if parallel {
            cols.push(("n_parallel", 10, |r| r.n_parallel.to_string()));
        }
        cols.push(("test", 15, |r| r.test.clone()));
        cols.push(("t/s", 20, |r| format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts)));
        if parallel {
            cols.push(("t/s per seq", 12, |r| format!("{:.2}", r.avg_ts_per_seq)));
        }
        if energy {
            cols.push(("J/t", 11, j_per_token));
        }
        cols
    }
}

impl Printer for Markdown<'_> {
    fn show_energy(&mut self, on: bool) {
        self.energy = on;
    }
    fn header(&mut self, cases: &[BenchCase]) -> io::Result<()> {
        self.cols = Self::columns(cases, self.energy);
        let mut head = String::from("|");
        let mut rule = String::from("|");
        for (name, w, _) in &self.cols {
            let n = w.unsigned_abs() as usize;
            if *w < 0 {
                head.push_str(&format!(" {name:<n$} |"));
                rule.push_str(&format!(" {} |", "-".repeat(n)));
            } else {
                head.push_str(&format!(" {name:>n$} |"));
                rule.push_str(&format!(" {}: |", "-".repeat(n - 1)));
            }
        }
        writeln!(self.out, "{head}\n{rule}")?;
        self.out.flush()
    }
    fn record(&mut self, r: &BenchRecord) -> io::Result<()> {
        let mut line = String::from("|");
        for (_, w, cell) in &self.cols {
            let n = w.unsigned_abs() as usize;
            let v = cell(r);
            if *w < 0 {
                line.push_str(&format!(" {v:<n$} |"));
            } else {
                line.push_str(&format!(" {v:>n$} |"));
            }
        }
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }
    fn footer(&mut self) -> io::Result<()> {
        writeln!(
            self.out,
            "\nbuild: {BUILD_COMMIT} ({}), silica {}, CPU kernels {}",
            build_number(),
            env!("CARGO_PKG_VERSION"),
            silica_kernels::simd()
        )?;
        self.out.flush()
    }
}
