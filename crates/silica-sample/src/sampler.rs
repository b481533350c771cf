//! [`Sampler`]: llama.cpp's default sampler chain over one position's logits.

use std::cmp::Ordering;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::params::SamplerParams;

/// One candidate token, as llama.cpp's `llama_token_data`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenData {
    /// Token id, `< n_vocab`.
    pub id: u32,
    /// Logit after the penalties (and, in [`Sampler::distribution`]'s output, after the temperature).
    pub logit: f32,
    /// Probability (in `[0, 1]`), normalised over the tokens that survived the filters.
    pub p: f32,
}

/// The sampler used by `silica run`: llama.cpp's common sampler chain with its default order.
///
/// For each position: repetition, frequency and presence penalties over the last `repeat_last_n`
/// [accepted](Sampler::accept) tokens, then top-k, top-p, min-p, temperature, and a draw from the
/// softmax with a seeded RNG (`rand`'s `StdRng`). With `temp <= 0` it returns the argmax after the
/// penalties. Semantics follow llama.cpp `common/sampling.cpp` (chain order) and
/// `src/llama-sampling.cpp` (each stage); deviations are noted on [`Sampler::sample`].
///
/// The candidate buffer (`n_vocab` entries) is allocated on the first call and reused, so sampling
/// does not allocate per token afterwards.
#[derive(Clone)]
pub struct Sampler {
    params: SamplerParams,
    rng: StdRng,
    /// Ring of the last `repeat_last_n` accepted tokens; `history_head` is the oldest once full.
    history: Vec<u32>,
    history_head: usize,
    /// Scratch for the sorted history (distinct tokens and their counts).
    history_sorted: Vec<u32>,
    /// Working candidates, `[<= n_vocab]`.
    candidates: Vec<TokenData>,
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buffers hold up to n_vocab entries: show their sizes, not their contents.
        f.debug_struct("Sampler")
            .field("params", &self.params)
            .field("n_history", &self.history.len())
            .field("n_candidates_capacity", &self.candidates.capacity())
            .finish_non_exhaustive()
    }
}

/// Descending logit, ties to the lowest id: a total order once NaN is gone (`-0.0 == 0.0`, as in
/// [`argmax`]).
fn by_logit_desc(a: &TokenData, b: &TokenData) -> Ordering {
    b.logit
        .partial_cmp(&a.logit)
        .unwrap_or(Ordering::Equal)
        .then(a.id.cmp(&b.id))
}

/// Softmax of the candidates' logits into their `p`, as llama.cpp `llama_sampler_softmax_impl`
/// (subtract the max logit). Tokens equal to the max get weight 1, which keeps `±inf` logits from
/// producing NaN.
fn softmax(candidates: &mut [TokenData]) {
    let max_logit = candidates
        .iter()
        .map(|t| t.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for t in candidates.iter_mut() {
        t.p = if t.logit == max_logit {
            1.0
        } else {
            (t.logit - max_logit).exp()
        };
        sum += f64::from(t.p);
    }
    // sum >= 1: the max itself has weight 1.
    for t in candidates.iter_mut() {
        t.p = (f64::from(t.p) / sum) as f32;
    }
}

impl Sampler {
    /// Builds a sampler; the RNG is seeded with `params.seed`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] if a field is out of range (see [`SamplerParams::validate`]).
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
            history: Vec::new(),
            history_head: 0,
            history_sorted: Vec::new(),
            candidates: Vec::new(),
        })
    }

    /// The settings this sampler was built with.
    #[must_use]
    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Number of tokens (at most `repeat_last_n`) currently in the penalty history.
    #[must_use]
    pub fn n_history(&self) -> usize {
        self.history.len()
    }

    /// Picks the next token from one position's logits.
    ///
    /// * `logits`: `[n_vocab]`, f32, raw (before any softmax). The slice is not modified.
    ///
    /// NaN logits are skipped (never picked). The draw is deterministic given the seed and the
    /// sequence of calls. This does not record the token: call [`Sampler::accept`] with the token
    /// you keep, as llama.cpp's `common_sampler_accept`.
    ///
    /// Deviations from llama.cpp, all on ties or edge cases: ties in logit go to the lowest id
    /// (llama.cpp's `std::sort` leaves their order unspecified), a token of probability 0 is never
    /// drawn, and NaN logits are excluded rather than compared.
    ///
    /// # Errors
    /// [`Error::EmptyLogits`] if `logits` is empty, [`Error::AllNan`] if every logit is NaN,
    /// [`Error::VocabTooLarge`] if `logits.len() > u32::MAX`.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if self.params.is_greedy() && !self.penalties_active() {
            check_len(logits)?;
            return argmax(logits).ok_or(Error::AllNan {
                n_vocab: logits.len(),
            });
        }
        self.run_chain(logits)?;
        Ok(self.draw())
    }

    /// Runs the chain up to the draw and returns the resulting distribution: the surviving tokens
    /// with their logits after penalties and temperature and their probabilities (summing to 1),
    /// in descending probability, ties to the lowest id. With `temp <= 0` it is the argmax alone,
    /// with `p = 1`. Does not advance the RNG.
    ///
    /// * `logits`: `[n_vocab]`, f32, raw. The slice is not modified.
    ///
    /// # Errors
    /// As [`Sampler::sample`].
    pub fn distribution(&mut self, logits: &[f32]) -> Result<&[TokenData]> {
        self.run_chain(logits)?;
        self.candidates.sort_unstable_by(by_logit_desc);
        Ok(&self.candidates)
    }

    /// Records `token` in the penalty history, a ring of the last `repeat_last_n` tokens (a no-op
    /// when `repeat_last_n` is 0). Ids `>= n_vocab` are kept but never match a logit.
    pub fn accept(&mut self, token: u32) {
        let n_last = self.params.repeat_last_n;
        if n_last == 0 {
            return;
        }
        if self.history.len() < n_last {
            self.history.push(token);
            // Grow the scratch here so that `sample` never allocates for it.
            self.history_sorted.clear();
            self.history_sorted.reserve(self.history.len());
        } else if let Some(slot) = self.history.get_mut(self.history_head) {
            *slot = token;
            self.history_head = (self.history_head + 1) % n_last;
        }
    }

    /// Clears the penalty history and re-seeds the RNG with `params.seed`, so the sampler behaves
    /// as freshly built (llama.cpp's `llama_sampler_reset` also re-seeds its dist sampler).
    pub fn reset(&mut self) {
        self.history.clear();
        self.history_head = 0;
        self.rng = StdRng::seed_from_u64(self.params.seed);
    }

    /// Whether the penalties stage changes anything (llama.cpp skips it on the same condition).
    fn penalties_active(&self) -> bool {
        let p = &self.params;
        let all_neutral = p.repeat_penalty == 1.0 && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0;
        !self.history.is_empty() && !all_neutral
    }

    /// Fills `self.candidates` with the tokens that survive the chain, `p` normalised.
    fn run_chain(&mut self, logits: &[f32]) -> Result<()> {
        check_len(logits)?;
        self.candidates.clear();
        self.candidates.extend(
            (0u32..)
                .zip(logits)
                .map(|(id, &logit)| TokenData { id, logit, p: 0.0 }),
        );

        if self.penalties_active() {
            self.apply_penalties();
        }
        self.candidates.retain(|t| !t.logit.is_nan());
        if self.candidates.is_empty() {
            return Err(Error::AllNan {
                n_vocab: logits.len(),
            });
        }

        if self.params.is_greedy() {
            self.keep_argmax();
            return Ok(());
        }

        let mut sorted = false;
        self.top_k(&mut sorted);
        self.top_p(&mut sorted);
        self.min_p();
        let temp = self.params.temp;
        for t in &mut self.candidates {
            t.logit /= temp;
        }
        softmax(&mut self.candidates);
        Ok(())
    }

    /// Repetition, frequency and presence penalties, as llama.cpp `llama_sampler_penalties_apply`:
    /// each distinct token in the window is penalised once, with its count scaling the frequency
    /// penalty.
    fn apply_penalties(&mut self) {
        let p = self.params;
        self.history_sorted.clear();
        self.history_sorted.extend_from_slice(&self.history);
        self.history_sorted.sort_unstable();
        for run in self.history_sorted.chunk_by(|a, b| a == b) {
            let (Some(&token), n_count) = (run.first(), run.len()) else {
                continue;
            };
            // Candidates are still in id order, one per logit.
            let Some(t) = self.candidates.get_mut(token as usize) else {
                continue;
            };
            // Dividing a negative logit would raise it: llama.cpp multiplies those instead.
            if t.logit <= 0.0 {
                t.logit *= p.repeat_penalty;
            } else {
                t.logit /= p.repeat_penalty;
            }
            t.logit -= n_count as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Leaves only the first maximum (candidates in id order), `p = 1`.
    fn keep_argmax(&mut self) {
        let mut i_best = 0;
        for (i, t) in self.candidates.iter().enumerate() {
            if self
                .candidates
                .get(i_best)
                .is_some_and(|best| t.logit > best.logit)
            {
                i_best = i;
            }
        }
        self.candidates.swap(0, i_best);
        self.candidates.truncate(1);
        for t in &mut self.candidates {
            t.p = 1.0;
        }
    }

    /// Keeps the `top_k` highest logits (llama.cpp `llama_sampler_top_k_impl`); 0 = off, clamped
    /// to the candidate count.
    fn top_k(&mut self, sorted: &mut bool) {
        let k = self.params.top_k;
        if k == 0 || k >= self.candidates.len() {
            return;
        }
        // O(n_vocab) selection, then sort only the k survivors.
        self.candidates.select_nth_unstable_by(k - 1, by_logit_desc);
        self.candidates.truncate(k);
        self.candidates.sort_unstable_by(by_logit_desc);
        *sorted = true;
    }

    /// Keeps the smallest prefix (by descending probability) whose mass is `>= top_p`, at least one
    /// token (llama.cpp `llama_sampler_top_p_apply` with `min_keep` 0). Off at `top_p >= 1`.
    fn top_p(&mut self, sorted: &mut bool) {
        let top_p = f64::from(self.params.top_p);
        if top_p >= 1.0 {
            return;
        }
        if !*sorted {
            self.candidates.sort_unstable_by(by_logit_desc);
            *sorted = true;
        }
        softmax(&mut self.candidates);
        let mut cum_p = 0.0f64;
        let mut n_keep = self.candidates.len();
        for (i, t) in self.candidates.iter().enumerate() {
            cum_p += f64::from(t.p);
            if cum_p >= top_p {
                n_keep = i + 1;
                break;
            }
        }
        self.candidates.truncate(n_keep);
    }

    /// Keeps tokens with `p >= min_p * p_max`, i.e. `logit >= max_logit + ln(min_p)` (llama.cpp
    /// `llama_sampler_min_p_apply`). Always keeps the maximum; off at `min_p <= 0`.
    fn min_p(&mut self) {
        let min_p = self.params.min_p;
        if min_p <= 0.0 {
            return;
        }
        let max_logit = self
            .candidates
            .iter()
            .map(|t| t.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let min_logit = max_logit + min_p.ln();
        self.candidates.retain(|t| t.logit >= min_logit);
    }

    /// Draws one candidate with probability `p`, as llama.cpp's dist sampler: a uniform `u` in
    /// `[0, 1)` scaled by the total mass, then the first token whose cumulative mass exceeds it.
    fn draw(&mut self) -> u32 {
        let total: f64 = self.candidates.iter().map(|t| f64::from(t.p)).sum();
        let target = self.rng.random::<f64>() * total;
        let mut cum_p = 0.0f64;
        let mut last_id = self.candidates.first().map_or(0, |t| t.id);
        for t in &self.candidates {
            if t.p > 0.0 {
                cum_p += f64::from(t.p);
                last_id = t.id;
                if cum_p > target {
                    return t.id;
                }
            }
        }
        // Only reachable through rounding at the very end of the mass.
        last_id
    }
}

/// Rejects logits that no token id can index.
fn check_len(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(Error::EmptyLogits);
    }
    if u32::try_from(logits.len()).is_err() {
        return Err(Error::VocabTooLarge {
            n_vocab: logits.len(),
        });
    }
    Ok(())
}

/// Index of the first maximum of `logits` (`[n_vocab]`, f32), or `None` if it is empty or all NaN.
///
/// Ties go to the lowest id, as llama.cpp's greedy sampler (`llama_sampler_greedy_apply`), which
/// replaces its pick only on a strictly greater logit. NaN logits are skipped.
#[must_use]
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    for (id, &logit) in (0u32..).zip(logits) {
        if !logit.is_nan() && best.is_none_or(|(_, b)| logit > b) {
            best = Some((id, logit));
        }
    }
    best.map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(params: SamplerParams) -> Sampler {
        Sampler::new(params).expect("valid params")
    }

    #[test]
    fn softmax_handles_infinities() {
        let mut c = [
            TokenData {
                id: 0,
                logit: f32::INFINITY,
                p: 0.0,
            },
            TokenData {
                id: 1,
                logit: 3.0,
                p: 0.0,
            },
            TokenData {
                id: 2,
                logit: f32::INFINITY,
                p: 0.0,
            },
        ];
        softmax(&mut c);
        assert_eq!([c[0].p, c[1].p, c[2].p], [0.5, 0.0, 0.5]);
    }

    #[test]
    fn history_is_a_ring_of_repeat_last_n() {
        let mut s = sampler(SamplerParams {
            repeat_last_n: 3,
            ..SamplerParams::greedy()
        });
        for t in 0..5 {
            s.accept(t);
        }
        assert_eq!(s.n_history(), 3);
        let mut h = s.history.clone();
        h.sort_unstable();
        assert_eq!(h, [2, 3, 4]);
        s.reset();
        assert_eq!(s.n_history(), 0);
    }

    #[test]
    fn accept_is_noop_without_window() {
        let mut s = sampler(SamplerParams {
            repeat_last_n: 0,
            ..SamplerParams::greedy()
        });
        s.accept(1);
        assert_eq!(s.n_history(), 0);
    }

    #[test]
    fn penalties_count_each_distinct_token_once() {
        let params = SamplerParams {
            repeat_penalty: 2.0,
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..SamplerParams::greedy()
        };
        let mut s = sampler(params);
        for t in [1, 1, 1, 2] {
            s.accept(t);
        }
        s.candidates = (0u32..)
            .zip([4.0f32, 4.0, -4.0, 4.0])
            .map(|(id, logit)| TokenData { id, logit, p: 0.0 })
            .collect();
        s.apply_penalties();
        let logits: Vec<f32> = s.candidates.iter().map(|t| t.logit).collect();
        // token 1: 4/2 - 3*0.5 - 0.25; token 2: -4*2 - 0.5 - 0.25; tokens 0 and 3 untouched.
        assert_eq!(logits, [4.0, 0.25, -8.75, 4.0]);
    }
}
