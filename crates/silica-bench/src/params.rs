//! Benchmark parameters as llama-bench takes them: every test parameter is a list, written with commas
//! (`1,2,4`), ranges (`1-8`) and stepped ranges (`1-32*2`, `0-4096+1024`); [`BenchParams::grid`] turns them
//! into [`BenchCase`]s.
//!
//! Source: llama.cpp `tools/llama-bench/llama-bench.cpp`, `parse_int_range` and `get_cmd_params_instances`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Parses a llama-bench integer list: comma-separated items, each `N`, `FIRST-LAST` (step 1), `FIRST-LAST+STEP`
/// or `FIRST-LAST*MULT`. Items are concatenated in order; duplicates are kept, as in llama-bench.
///
/// # Errors
/// [`Error::Param`] naming `flag` for an empty item, a number that does not parse, `LAST < FIRST`, a zero
/// step or a multiplier below 2.
///
/// ```
/// use silica_bench::params::parse_int_list;
/// assert_eq!(parse_int_list("-p", "1,2-4").unwrap(), vec![1, 2, 3, 4]);
/// assert_eq!(parse_int_list("-t", "1-16*2").unwrap(), vec![1, 2, 4, 8, 16]);
/// assert_eq!(parse_int_list("-d", "0-4096+2048").unwrap(), vec![0, 2048, 4096]);
/// ```
pub fn parse_int_list(flag: &str, text: &str) -> Result<Vec<u32>, Error> {
    let bad = |why: String| Error::Param {
        flag: flag.to_owned(),
        message: format!("'{text}': {why}"),
    };
    let num = |s: &str| -> Result<u32, Error> {
        s.trim()
            .parse::<u32>()
            .map_err(|_| bad(format!("'{s}' is not a non-negative integer")))
    };
    let mut out = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(bad("empty list item".into()));
        }
        let Some((first, rest)) = item.split_once('-') else {
            out.push(num(item)?);
            continue;
        };
        let (last, op) = match rest.find(['+', '*']) {
            Some(i) => (&rest[..i], Some((&rest[i..=i], num(&rest[i + 1..])?))),
            None => (rest, None),
        };
        let (first, last) = (num(first)?, num(last)?);
        if last < first {
            return Err(bad(format!("range {first}-{last} ends before it starts")));
        }
        let mut v = u64::from(first);
        match op {
            None | Some(("+", _)) => {
                let step = op.map_or(1, |(_, s)| s);
                if step == 0 {
                    return Err(bad("a range step must be at least 1".into()));
                }
                while v <= u64::from(last) {
                    out.push(v as u32);
                    v += u64::from(step);
                }
            }
            Some((_, mult)) => {
                if mult < 2 || first == 0 {
                    return Err(bad(
                        "a multiplied range needs a multiplier of at least 2 and a first value above 0"
                            .into(),
                    ));
                }
                while v <= u64::from(last) {
                    out.push(v as u32);
                    v *= u64::from(mult);
                }
            }
        }
    }
    Ok(out)
}

/// A KV cache element type, named as llama.cpp's `-ctk`/`-ctv` values (`f16`).
///
/// silica's cache supports the float types only; llama.cpp's quantized cache types (`q8_0`, `q4_0`) are
/// rejected by [`KvType::from_str`] with the list of supported ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    /// 32-bit float.
    F32,
    /// IEEE half (llama.cpp's default).
    F16,
    /// bfloat16.
    Bf16,
}

impl KvType {
    /// llama.cpp's name.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Bf16 => "bf16",
        }
    }

    /// The candle element type of the cache.
    pub fn dtype(self) -> silica_model::DType {
        match self {
            KvType::F32 => silica_model::DType::F32,
            KvType::F16 => silica_model::DType::F16,
            KvType::Bf16 => silica_model::DType::BF16,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "bf16" => Ok(KvType::Bf16),
            other => Err(format!(
                "KV cache type '{other}' is not supported by silica (supported: f32, f16, bf16)"
            )),
        }
    }
}

/// Every list-valued parameter of a run; [`BenchParams::grid`] is their cartesian product. Defaults are
/// llama-bench's (`-p 512 -n 128 -d 0 -b 2048 -ub 512 -ctk f16 -ctv f16 -r 5`).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchParams {
    /// Model files (`-m`).
    pub models: Vec<PathBuf>,
    /// Prompt lengths of the pp tests (`-p`); 0 entries are skipped.
    pub n_prompt: Vec<u32>,
    /// Generation lengths of the tg tests (`-n`); 0 entries are skipped.
    pub n_gen: Vec<u32>,
    /// Combined prompt + generation tests (`-pg PP,TG`).
    pub n_pg: Vec<(u32, u32)>,
    /// Context depths: tokens already in the KV cache when a test starts (`-d`).
    pub n_depth: Vec<u32>,
    /// Logical batch sizes: prompt tokens per decode call (`-b`).
    pub n_batch: Vec<u32>,
    /// Physical batch sizes: tokens per forward pass (`-ub`).
    pub n_ubatch: Vec<u32>,
    /// Key cache types (`-ctk`).
    pub type_k: Vec<KvType>,
    /// Value cache types (`-ctv`).
    pub type_v: Vec<KvType>,
    /// CPU threads (`-t`).
    pub n_threads: Vec<u32>,
    /// Parallel sequences (silica's `--batch`, llama-batched-bench's `-npl`).
    pub n_parallel: Vec<u32>,
    /// Context size per sequence (silica's `-c`); 0 = `n_depth + n_prompt + n_gen`, as llama-bench.
    pub n_ctx: Vec<u32>,
}

impl BenchParams {
    /// llama-bench's defaults with `n_threads` threads and no model.
    pub fn with_threads(n_threads: u32) -> Self {
        BenchParams {
            models: Vec::new(),
            n_prompt: vec![512],
            n_gen: vec![128],
            n_pg: Vec::new(),
            n_depth: vec![0],
            n_batch: vec![2048],
            n_ubatch: vec![512],
            type_k: vec![KvType::F16],
            type_v: vec![KvType::F16],
            n_threads: vec![n_threads],
            n_parallel: vec![1],
            n_ctx: vec![0],
        }
    }

    /// The cartesian product of the lists, in llama-bench's order (`get_cmd_params_instances`): model
    /// outermost, so each model loads once; then `n_batch`, `n_ubatch`, `type_k`, `type_v`, `n_threads`,
    /// `n_depth`, `n_parallel`, `n_ctx`; innermost the tests: every pp (`n_prompt`), every tg (`n_gen`), every
    /// pp+tg (`n_pg`). Zero-length tests are skipped.
    ///
    /// # Errors
    /// [`Error::Param`] when a list is empty or holds a zero where a zero means nothing (`-b`, `-ub`, `-t`,
    /// `--batch`), when `-c` is below `n_depth + n_prompt + n_gen` for a case, and [`Error::EmptyGrid`] when no
    /// test remains.
    pub fn grid(&self) -> Result<Vec<BenchCase>, Error> {
        let nonzero = |flag: &str, v: &[u32]| -> Result<(), Error> {
            if v.is_empty() {
                return Err(Error::Param {
                    flag: flag.into(),
                    message: "no values given".into(),
                });
            }
            if v.contains(&0) {
                return Err(Error::Param {
                    flag: flag.into(),
                    message: "0 is not allowed".into(),
                });
            }
            Ok(())
        };
        nonzero("-b/--batch-size", &self.n_batch)?;
        nonzero("-ub/--ubatch-size", &self.n_ubatch)?;
        nonzero("-t/--threads", &self.n_threads)?;
        nonzero("--batch", &self.n_parallel)?;
        for (flag, empty) in [
            ("-m/--model", self.models.is_empty()),
            ("-d/--n-depth", self.n_depth.is_empty()),
            ("-ctk/--cache-type-k", self.type_k.is_empty()),
            ("-ctv/--cache-type-v", self.type_v.is_empty()),
            ("-c/--ctx-size", self.n_ctx.is_empty()),
        ] {
            if empty {
                return Err(Error::Param {
                    flag: flag.into(),
                    message: "no values given".into(),
                });
            }
        }
        let tests: Vec<(u32, u32)> = self
            .n_prompt
            .iter()
            .filter(|&&p| p > 0)
            .map(|&p| (p, 0))
            .chain(self.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)))
            .chain(self.n_pg.iter().copied().filter(|&(p, n)| p > 0 || n > 0))
            .collect();
        if tests.is_empty() {
            return Err(Error::EmptyGrid);
        }
        let mut out = Vec::new();
        for model in &self.models {
            for &n_batch in &self.n_batch {
                for &n_ubatch in &self.n_ubatch {
                    for &type_k in &self.type_k {
                        for &type_v in &self.type_v {
                            for &n_threads in &self.n_threads {
                                for &n_depth in &self.n_depth {
                                    for &n_parallel in &self.n_parallel {
                                        for &n_ctx in &self.n_ctx {
                                            for &(n_prompt, n_gen) in &tests {
                                                let case = BenchCase {
                                                    model: model.clone(),
                                                    n_prompt,
                                                    n_gen,
                                                    n_depth,
                                                    n_batch,
                                                    n_ubatch,
                                                    type_k,
                                                    type_v,
                                                    n_threads,
                                                    n_parallel,
                                                    n_ctx,
                                                };
                                                case.check_ctx()?;
                                                out.push(case);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One measured configuration: a point of the cartesian product of [`BenchParams`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchCase {
    /// Model file.
    pub model: PathBuf,
    /// Prompt tokens per sequence (0 for a tg test).
    pub n_prompt: u32,
    /// Generated tokens per sequence (0 for a pp test).
    pub n_gen: u32,
    /// Tokens already cached per sequence when the timed part starts.
    pub n_depth: u32,
    /// Prompt tokens per decode call (llama.cpp `n_batch`).
    pub n_batch: u32,
    /// Tokens per forward pass (llama.cpp `n_ubatch`).
    pub n_ubatch: u32,
    /// Key cache type.
    pub type_k: KvType,
    /// Value cache type.
    pub type_v: KvType,
    /// CPU threads.
    pub n_threads: u32,
    /// Parallel sequences.
    pub n_parallel: u32,
    /// Requested context size per sequence; 0 = [`BenchCase::n_ctx_needed`].
    pub n_ctx: u32,
}

impl BenchCase {
    /// Positions each sequence needs: `n_depth + n_prompt + n_gen` (llama-bench's `n_ctx`).
    pub fn n_ctx_needed(&self) -> u64 {
        u64::from(self.n_depth) + u64::from(self.n_prompt) + u64::from(self.n_gen)
    }

    /// The context size allocated per sequence.
    pub fn n_ctx_effective(&self) -> u64 {
        if self.n_ctx == 0 {
            self.n_ctx_needed()
        } else {
            u64::from(self.n_ctx)
        }
    }

    /// The candle element types of the key and value caches.
    pub fn kv_types(&self) -> (silica_model::DType, silica_model::DType) {
        (self.type_k.dtype(), self.type_v.dtype())
    }

    fn check_ctx(&self) -> Result<(), Error> {
        if self.n_ctx_effective() < self.n_ctx_needed() {
            return Err(Error::Param {
                flag: "-c/--ctx-size".into(),
                message: format!(
                    "n_ctx = {} is too small for {}: it needs n_depth + n_prompt + n_gen = {} positions",
                    self.n_ctx,
                    self.test_name(),
                    self.n_ctx_needed()
                ),
            });
        }
        Ok(())
    }

    /// llama-bench's test name: `pp512`, `tg128`, `pp512+tg128`, with ` @ d4096` when `n_depth > 0`.
    pub fn test_name(&self) -> String {
        let base = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, n) => format!("tg{n}"),
            (p, n) => format!("pp{p}+tg{n}"),
        };
        if self.n_depth > 0 {
            format!("{base} @ d{}", self.n_depth)
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_int_list("-p", "512").unwrap(), vec![512]);
        assert_eq!(parse_int_list("-p", "1,2,4").unwrap(), vec![1, 2, 4]);
        assert_eq!(parse_int_list("-p", "1-4").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(parse_int_list("-p", "1-32*2").unwrap(), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(parse_int_list("-p", "1-33*2").unwrap(), vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(parse_int_list("-p", "0-10+5,7").unwrap(), vec![0, 5, 10, 7]);
        for bad in ["", "1,", "a", "4-1", "1-8+0", "1-8*1", "0-8*2", "-1", "1-"] {
            let e = parse_int_list("-p", bad).unwrap_err().to_string();
            assert!(e.contains("-p"), "{bad}: {e}");
        }
    }

    fn params() -> BenchParams {
        BenchParams {
            models: vec!["m.gguf".into()],
            ..BenchParams::with_threads(2)
        }
    }

    #[test]
    fn grid_order_and_names() {
        let p = BenchParams {
            n_prompt: vec![512, 0],
            n_gen: vec![128],
            n_pg: vec![(512, 128)],
            n_depth: vec![0, 4096],
            ..params()
        };
        let names: Vec<String> = p.grid().unwrap().iter().map(BenchCase::test_name).collect();
        assert_eq!(
            names,
            [
                "pp512",
                "tg128",
                "pp512+tg128",
                "pp512 @ d4096",
                "tg128 @ d4096",
                "pp512+tg128 @ d4096"
            ]
        );
    }

    #[test]
    fn empty_grid_and_bad_values_are_errors() {
        let p = BenchParams {
            n_prompt: vec![0],
            n_gen: vec![0],
            ..params()
        };
        assert!(matches!(p.grid(), Err(Error::EmptyGrid)));
        let p = BenchParams {
            n_threads: vec![2, 0],
            ..params()
        };
        assert!(p.grid().unwrap_err().to_string().contains("-t/--threads"));
        let p = BenchParams {
            n_ctx: vec![300],
            ..params()
        };
        let e = p.grid().unwrap_err().to_string();
        assert!(e.contains("n_ctx = 300 is too small for pp512"), "{e}");
        let p = BenchParams {
            n_ctx: vec![512],
            n_gen: vec![0],
            ..params()
        };
        assert_eq!(p.grid().unwrap().len(), 1);
        assert!("q8_0".parse::<KvType>().unwrap_err().contains("f16"));
    }
}
