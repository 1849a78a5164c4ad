//! Choosing the next token from logits: greedy, or a llama.cpp-style chain
//! (repetition penalty → top-k → top-p → min-p → temperature → random draw).

use crate::rng::Rng;

/// Sampling settings, with llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; `<= 0` means greedy (always the most likely token).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0` = all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (`1.0` = off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (`0.0` = off).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this (`1.0` = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition, presence and frequency penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted from the logit of every token seen recently (OpenAI's `presence_penalty`; `0` = off).
    pub presence_penalty: f32,
    /// Subtracted once per recent occurrence (OpenAI's `frequency_penalty`; `0` = off).
    pub frequency_penalty: f32,
    /// Seed of the random draw: the same seed and inputs give the same tokens.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks the ranges a user may get wrong; the message names the flag's value.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() {
            return Err(format!(
                "temperature must be a finite number, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min-p must be in [0, 1], got {}", self.min_p));
        }
        for (name, v) in [
            ("presence penalty", self.presence_penalty),
            ("frequency penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "repeat penalty must be a positive number, got {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// A sampler with its own random state.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// (token, logit) candidates, reused between calls.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler seeded from `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Rng::new(cfg.seed);
        Sampler {
            cfg,
            rng,
            cand: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks a token from `logits`; `history` holds the tokens so far (prompt and generated).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let cfg = &self.cfg;
        let penalize = (cfg.repeat_penalty != 1.0
            || cfg.presence_penalty != 0.0
            || cfg.frequency_penalty != 0.0)
            && cfg.repeat_last_n > 0;
        if cfg.temperature <= 0.0 && !penalize {
            return argmax(logits);
        }
        self.cand.clear();
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if penalize {
            let recent = &history[history.len().saturating_sub(cfg.repeat_last_n)..];
            let mut seen: Vec<u32> = recent.to_vec();
            seen.sort_unstable();
            // As llama.cpp's penalties sampler: repetition scaling, then
            // `count * frequency + presence` subtracted, for each distinct recent token.
            for run in seen.chunk_by(|a, b| a == b) {
                if let Some(c) = self.cand.get_mut(run[0] as usize) {
                    c.1 = if c.1 > 0.0 {
                        c.1 / cfg.repeat_penalty
                    } else {
                        c.1 * cfg.repeat_penalty
                    };
                    c.1 -= run.len() as f32 * cfg.frequency_penalty + cfg.presence_penalty;
                }
            }
        }
        if cfg.temperature <= 0.0 {
            return self
                .cand
                .iter()
                .fold((0u32, f32::NEG_INFINITY), |best, &c| {
                    if c.1 > best.1 {
                        c
                    } else {
                        best
                    }
                })
                .0;
        }
        // Sorted by logit, most likely first (ties by id, for determinism).
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = if cfg.top_k == 0 {
            self.cand.len()
        } else {
            cfg.top_k.min(self.cand.len())
        };
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_logit);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(by_logit);

        // top-p and min-p on the softmax of the remaining candidates (before temperature, as llama.cpp).
        let probs = softmax(&self.cand, 1.0);
        let mut keep = self.cand.len();
        if cfg.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if cfg.min_p > 0.0 {
            let threshold = probs[0] * cfg.min_p as f64;
            let n_min = probs.iter().take_while(|&&p| p >= threshold).count().max(1);
            keep = keep.min(n_min);
        }
        self.cand.truncate(keep.max(1));

        let probs = softmax(&self.cand, cfg.temperature);
        let r = self.rng.next_f64();
        let mut cum = 0.0;
        for (c, p) in self.cand.iter().zip(&probs) {
            cum += p;
            if r < cum {
                return c.0;
            }
        }
        self.cand[self.cand.len() - 1].0
    }
}

/// Index of the largest logit (the lowest index among equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(cand: &[(u32, f32)], temperature: f32) -> Vec<f64> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f64> = cand
        .iter()
        .map(|c| (((c.1 - max) / temperature) as f64).exp())
        .collect();
    let sum: f64 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= sum;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn greedy_picks_the_max() {
        let mut s = Sampler::new(cfg(0.0));
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, 3.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg(1.0) });
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            ..cfg(5.0)
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 2.0, 1.9], &[]), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplerConfig {
            top_p: 0.5,
            ..cfg(1.0)
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&logits, &[]), 0);
        }
        let mut s = Sampler::new(SamplerConfig {
            min_p: 0.3,
            ..cfg(1.0)
        });
        for _ in 0..200 {
            assert!(s.sample(&logits, &[]) <= 1);
        }
    }

    #[test]
    fn distribution_follows_probabilities() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let mut s = Sampler::new(cfg(1.0));
        let n = 4000;
        let ones = (0..n).filter(|_| s.sample(&logits, &[]) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    #[test]
    fn repetition_penalty_discourages_repeats() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..cfg(0.0)
        });
        assert_eq!(s.sample(&[3.0, 2.0], &[0]), 1);
        assert_eq!(s.sample(&[3.0, 2.0], &[1]), 0);
    }

    #[test]
    fn presence_and_frequency_penalties() {
        let mut s = Sampler::new(SamplerConfig {
            presence_penalty: 1.5,
            ..cfg(0.0)
        });
        assert_eq!(s.sample(&[3.0, 2.0], &[0]), 1);
        let mut s = Sampler::new(SamplerConfig {
            frequency_penalty: 0.4,
            ..cfg(0.0)
        });
        assert_eq!(s.sample(&[3.0, 2.0], &[0, 0]), 0);
        assert_eq!(s.sample(&[3.0, 2.0], &[0, 0, 0]), 1);
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(SamplerConfig {
            top_p: 0.0,
            ..cfg(1.0)
        }
        .validate()
        .unwrap_err()
        .contains("top-p"));
        assert!(SamplerConfig {
            min_p: 2.0,
            ..cfg(1.0)
        }
        .validate()
        .unwrap_err()
        .contains("min-p"));
        assert!(cfg(f32::NAN).validate().is_err());
        assert!(cfg(0.7).validate().is_ok());
    }
}
