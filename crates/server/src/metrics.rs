//! Counters, gauges and histograms served at `GET /metrics` in Prometheus's text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Everything the server counts.
#[derive(Default)]
pub struct Metrics {
    /// Responses by HTTP status.
    requests: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Prompt tokens of finished requests.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens that were found in a slot's cache and not evaluated again.
    pub prompt_tokens_cached: AtomicU64,
    /// Generated tokens.
    pub generated_tokens: AtomicU64,
    /// Sequences being generated.
    pub running: AtomicU64,
    /// KV-cache positions in use, over all slots.
    pub kv_used: AtomicU64,
    /// KV-cache positions in all slots.
    pub kv_capacity: AtomicU64,
    /// KV blocks in the pool.
    pub kv_blocks_total: AtomicU64,
    /// Bytes the pool's blocks take (keys and values of every layer, in their cache types).
    pub kv_bytes: AtomicU64,
    /// KV blocks held by running sequences.
    pub kv_blocks_held: AtomicU64,
    /// KV blocks nobody holds that keep a reusable prefix.
    pub kv_blocks_cached: AtomicU64,
    /// Empty KV blocks.
    pub kv_blocks_free: AtomicU64,
    /// Sequences taken out of the KV cache to make room (recomputed later).
    pub preemptions: AtomicU64,
    /// Time from a request's arrival to its first generated text.
    pub ttft: Histogram,
    /// Time per generated token after the first.
    pub tpot: Histogram,
}

impl Metrics {
    /// Counts one response with `status`.
    pub fn count_response(&self, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_default() += 1;
    }

    /// The Prometheus text exposition; `queued` is the current queue depth.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP sparetire_requests_total HTTP responses by status.\n# TYPE sparetire_requests_total counter");
        for (status, n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "sparetire_requests_total{{status=\"{status}\"}} {n}");
        }
        let counters = [
            (
                "sparetire_prompt_tokens_total",
                "Prompt tokens of finished requests.",
                get(&self.prompt_tokens),
            ),
            (
                "sparetire_prompt_tokens_cached_total",
                "Prompt tokens whose KV blocks were reused from earlier requests (prefix hits).",
                get(&self.prompt_tokens_cached),
            ),
            (
                "sparetire_generated_tokens_total",
                "Generated tokens.",
                get(&self.generated_tokens),
            ),
            (
                "sparetire_preemptions_total",
                "Sequences taken out of the KV cache to make room (recomputed later).",
                get(&self.preemptions),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let used = get(&self.kv_used);
        let (held, total) = (get(&self.kv_blocks_held), get(&self.kv_blocks_total));
        let prompt = get(&self.prompt_tokens);
        let gauges = [
            (
                "sparetire_queue_depth",
                "Requests waiting for a slot.",
                queued as f64,
            ),
            (
                "sparetire_running_sequences",
                "Sequences being generated.",
                get(&self.running) as f64,
            ),
            (
                "sparetire_kv_cache_used_tokens",
                "KV-cache positions in use.",
                used as f64,
            ),
            (
                "sparetire_kv_cache_usage_ratio",
                "Fraction of the KV cache's blocks held by running sequences.",
                if total > 0 {
                    held as f64 / total as f64
                } else {
                    0.0
                },
            ),
            (
                "sparetire_kv_cache_capacity_tokens",
                "KV-cache positions in the shared pool.",
                get(&self.kv_capacity) as f64,
            ),
            (
                "sparetire_kv_cache_bytes",
                "Bytes of the shared KV cache (every block, in the --cache-type-k/-v types).",
                get(&self.kv_bytes) as f64,
            ),
            (
                "sparetire_prefix_cache_hit_ratio",
                "Fraction of prompt tokens served from cache.",
                if prompt > 0 {
                    get(&self.prompt_tokens_cached) as f64 / prompt as f64
                } else {
                    0.0
                },
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP sparetire_kv_cache_blocks KV-cache blocks of 16 positions by state: held by running sequences, cached (a reusable prefix nobody holds; evicted first-released-first when needed), free.\n# TYPE sparetire_kv_cache_blocks gauge"
        );
        for (state, v) in [
            ("held", held),
            ("cached", get(&self.kv_blocks_cached)),
            ("free", get(&self.kv_blocks_free)),
        ] {
            let _ = writeln!(out, "sparetire_kv_cache_blocks{{state=\"{state}\"}} {v}");
        }
        self.ttft.render(
            &mut out,
            "sparetire_time_to_first_token_seconds",
            "Time from arrival to the first generated text.",
        );
        self.tpot.render(
            &mut out,
            "sparetire_time_per_output_token_seconds",
            "Time per generated token after the first.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.count_response(200);
        m.count_response(200);
        m.count_response(429);
        m.ttft.observe(0.2);
        m.prompt_tokens.store(10, Ordering::Relaxed);
        m.prompt_tokens_cached.store(4, Ordering::Relaxed);
        let t = m.render(3);
        assert!(
            t.contains("sparetire_requests_total{status=\"200\"} 2"),
            "{t}"
        );
        assert!(t.contains("sparetire_requests_total{status=\"429\"} 1"));
        assert!(t.contains("sparetire_queue_depth 3"));
        assert!(t.contains("sparetire_prefix_cache_hit_ratio 0.4"));
        assert!(t.contains("sparetire_time_to_first_token_seconds_bucket{le=\"0.1\"} 0"));
        assert!(t.contains("sparetire_time_to_first_token_seconds_bucket{le=\"0.25\"} 1"));
        assert!(t.contains("sparetire_time_to_first_token_seconds_count 1"));
    }
}
