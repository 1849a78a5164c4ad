//! `sparetire plan`: how a model would be laid out over a cluster and how
//! fast it would decode, from first principles.
//!
//! Decoding one token reads every active weight once, so its time is bytes
//! read ÷ memory bandwidth on each node, plus the network time of the
//! layout's messages (a latency per message plus bytes ÷ link bandwidth):
//! - pipeline (pp): stages run one after another for one token, so the
//!   node times add up, plus one hidden state per stage boundary and the
//!   logits back to the first node (a hidden state when the output matrix is
//!   the tied embedding matrix the first node holds);
//! - tensor (tp): nodes work on every layer at once, each reading its share,
//!   plus four all-gathers per layer (attention heads, attention output,
//!   feed-forward activation, feed-forward output), each taking log2(N)
//!   latencies (recursive doubling) and moving (N-1)/N of the data per node
//!   (f32, or with `--tp-wire q8` 1.125 bytes per product-input value).
//!
//! A single stream's speed is what this predicts; many concurrent streams
//! fill a pipeline's idle stages and share each weight read.

/// What the planner needs to know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelShape {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Model width.
    pub n_embd: usize,
    /// Query heads × head width (the attention output width).
    pub q_dim: usize,
    /// Feed-forward width (for MoE: the active experts' total width).
    pub n_ff: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Bytes of all weights.
    pub weight_bytes: f64,
    /// Bytes of the weights one token reads (less than all for MoE).
    pub active_bytes: f64,
    /// KV-cache bytes per token of context.
    pub kv_bytes_per_token: f64,
    /// Whether the output projection is the token embedding matrix (then a
    /// pipeline's last stage returns hidden states, not logits).
    pub tied: bool,
}

/// One kind of node and the network between them.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// Number of nodes.
    pub nodes: usize,
    /// Memory per node, bytes.
    pub mem_bytes: f64,
    /// Memory read bandwidth per node, bytes per second.
    pub mem_bw: f64,
    /// Link bandwidth, bytes per second.
    pub link_bw: f64,
    /// One message's latency, seconds.
    pub latency: f64,
    /// How tensor-parallel activations travel.
    pub tp_wire: crate::wire::WireType,
}

/// A predicted layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// `"pp"` or `"tp"`.
    pub split: &'static str,
    /// Weight bytes per node.
    pub weights_per_node: f64,
    /// Whether weights plus `ctx` tokens of KV cache fit in each node's memory.
    pub fits: bool,
    /// Seconds of memory time per token (summed over stages for pp).
    pub compute_s: f64,
    /// Seconds of network time per token.
    pub network_s: f64,
    /// Predicted single-stream decode speed, tokens per second.
    pub tokens_per_s: f64,
    /// Bytes each node sends per token.
    pub sent_per_node: f64,
}

/// Both layouts of `m` on `c` with `ctx` tokens of context.
pub fn predict(m: &ModelShape, c: &Cluster, ctx: usize) -> [Prediction; 2] {
    let n = c.nodes.max(1) as f64;
    let kv = m.kv_bytes_per_token * ctx as f64 / n;
    let per_node = m.weight_bytes / n;
    let fits = per_node + kv <= c.mem_bytes;
    let f = 4.0; // f32 activations
                 // Pipeline: the stages' memory times add up; one hidden state per boundary,
                 // then the logits (or, with tied embeddings, the hidden state) back.
    let pp_compute = m.active_bytes / c.mem_bw;
    let back = if m.tied { m.n_embd } else { m.n_vocab } as f64 * f;
    let pp_net = if c.nodes > 1 {
        (n - 1.0) * (c.latency + m.n_embd as f64 * f / c.link_bw) + c.latency + back / c.link_bw
    } else {
        0.0
    };
    // Tensor: each node reads its share; four ring all-gathers per layer: two
    // products' inputs (attention heads, feed-forward activation) and two
    // results (attention output, feed-forward output).
    let tp_compute = m.active_bytes / n / c.mem_bw;
    use crate::wire::WireType;
    let (input_bytes, result_bytes) = match c.tp_wire {
        WireType::F32 => (f, f),
        // 8-bit blocks of 32 with a 4-byte scale.
        WireType::Q8 => (1.125, f),
        WireType::Q8F16 => (1.125, 2.0),
    };
    let gathered = (m.q_dim + m.n_ff) as f64 * input_bytes + 2.0 * m.n_embd as f64 * result_bytes;
    let tp_net = if c.nodes > 1 {
        m.n_layer as f64
            * (4.0 * n.log2().ceil() * c.latency + gathered * (n - 1.0) / n / c.link_bw)
    } else {
        0.0
    };
    let make = |split, compute_s: f64, network_s: f64, sent| Prediction {
        split,
        weights_per_node: per_node,
        fits,
        compute_s,
        network_s,
        tokens_per_s: 1.0 / (compute_s + network_s),
        sent_per_node: sent,
    };
    [
        make(
            "pp",
            pp_compute,
            pp_net,
            if c.nodes > 1 {
                m.n_embd as f64 * f
            } else {
                0.0
            },
        ),
        make(
            "tp",
            tp_compute,
            tp_net,
            m.n_layer as f64 * gathered / n * (n - 1.0),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smol() -> ModelShape {
        ModelShape {
            n_layer: 30,
            n_embd: 576,
            q_dim: 576,
            n_ff: 1536,
            n_vocab: 49152,
            weight_bytes: 96.6e6,
            active_bytes: 96.6e6,
            kv_bytes_per_token: 30.0 * 2.0 * 192.0 * 2.0,
            tied: true,
        }
    }

    #[test]
    fn one_node_is_memory_bound_and_more_nodes_trade_memory_for_network() {
        let one = Cluster {
            nodes: 1,
            mem_bytes: 8e9,
            mem_bw: 20e9,
            link_bw: 1.25e9,
            latency: 50e-6,
            tp_wire: crate::wire::WireType::F32,
        };
        let [pp, tp] = predict(&smol(), &one, 2048);
        assert!(pp.fits && tp.fits);
        assert_eq!(pp.network_s, 0.0);
        assert!((pp.tokens_per_s - 20e9 / 96.6e6).abs() < 1e-6);
        assert_eq!(pp.tokens_per_s, tp.tokens_per_s);
        let four = Cluster { nodes: 4, ..one };
        let [pp4, tp4] = predict(&smol(), &four, 2048);
        // Pipeline stages do not overlap for one stream: no faster, a little network time.
        assert!(pp4.tokens_per_s < pp.tokens_per_s);
        // Tensor parallelism reads a quarter per node but pays 120 all-gathers per token.
        assert!((tp4.compute_s - tp.compute_s / 4.0).abs() < 1e-12);
        assert!(tp4.network_s > 30.0 * 4.0 * 2.0 * 50e-6 - 1e-12);
        assert!(tp4.weights_per_node < 25e6);
        // 8-bit product inputs: fewer bytes, less network time.
        let q8 = Cluster {
            tp_wire: crate::wire::WireType::Q8,
            ..four.clone()
        };
        let [_, tp4q8] = predict(&smol(), &q8, 2048);
        assert!(tp4q8.sent_per_node < 0.6 * tp4.sent_per_node);
        assert!(tp4q8.network_s < tp4.network_s);
        // Tied embeddings: the last stage returns a hidden state, not logits.
        let untied = ModelShape {
            tied: false,
            ..smol()
        };
        assert!(predict(&untied, &four, 2048)[0].network_s > pp4.network_s);
    }

    #[test]
    fn a_model_too_big_for_one_node_fits_on_enough_of_them() {
        let big = ModelShape {
            weight_bytes: 377e9,
            active_bytes: 21e9,
            ..smol()
        };
        let node = |nodes| Cluster {
            nodes,
            mem_bytes: 64e9,
            mem_bw: 50e9,
            link_bw: 12.5e9,
            latency: 10e-6,
            tp_wire: crate::wire::WireType::F32,
        };
        assert!(!predict(&big, &node(1), 4096)[0].fits);
        assert!(predict(&big, &node(8), 4096)[0].fits);
    }
}
