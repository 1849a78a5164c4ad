//! Op-by-op replay against a llama.cpp dump of Gemma 3: every op of the forward
//! pass is run on llama.cpp's own inputs (read from its `cb_eval` dump) and its
//! output compared with llama.cpp's, bit for bit. Unlike a layer-by-layer
//! comparison of two forward passes, a difference here belongs to that op
//! alone, not to anything upstream.
//!
//! The dump is written by the `cb_eval` dumper described in `diag_dump`
//! (`parity.rs`): `index.txt` lines `step node name|op ne0 ne1 ne2 ne3`, and
//! `{step}_{node:04}.bin` raw f32; step 0 is a batch of tokens from position 0,
//! each later step one token. Run with
//! `SPARETIRE_REF_DUMP=dir cargo test --release --test replay -- --ignored --nocapture`
//! (`REPLAY_DETAIL=Q4_K` also lists, per matmul of that kind, how many
//! outputs differ for each token).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use half::f16;
use sparetire_formats::gguf::GgufFile;
use sparetire_models::hparams::HParams;
use sparetire_models::layers::attention::{attention, AttnShape, KvLayer};
use sparetire_models::layers::mlp::geglu;
use sparetire_models::layers::norm::rms_norm;
use sparetire_models::layers::rope::{rope_apply, rope_table, RopeStyle};
use sparetire_models::weights::WeightLoader;
use sparetire_quant::ThreadPool;

/// One tensor of the dump.
struct Node {
    step: usize,
    node: usize,
    name: String,
    op: String,
}

struct Dump {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl Dump {
    fn open(dir: PathBuf) -> Dump {
        let index = std::fs::read_to_string(dir.join("index.txt")).unwrap();
        let nodes = index
            .lines()
            .map(|l| {
                let mut it = l.splitn(3, ' ');
                let step = it.next().unwrap().parse().unwrap();
                let node = it.next().unwrap().parse().unwrap();
                let rest = it.next().unwrap();
                let (name, op) = rest
                    .rsplit_once(' ')
                    .unwrap()
                    .0
                    .split_once('|')
                    .map_or((rest.to_string(), String::new()), |(n, o)| {
                        (n.to_string(), o.split(' ').next().unwrap().to_string())
                    });
                Node {
                    step,
                    node,
                    name,
                    op,
                }
            })
            .collect();
        Dump { dir, nodes }
    }

    fn n_steps(&self) -> usize {
        self.nodes.iter().map(|n| n.step + 1).max().unwrap_or(0)
    }

    /// Index (into `nodes`) of the last node of `step` named `name` with op `op`.
    fn find(&self, step: usize, name: &str, op: &str) -> usize {
        self.nodes
            .iter()
            .rposition(|n| n.step == step && n.name == name && (op.is_empty() || n.op == op))
            .unwrap_or_else(|| panic!("no {name}|{op} in step {step}"))
    }

    fn load(&self, i: usize) -> Vec<f32> {
        let n = &self.nodes[i];
        let bytes = std::fs::read(self.dir.join(format!("{}_{:04}.bin", n.step, n.node))).unwrap();
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn get(&self, step: usize, name: &str, op: &str) -> Vec<f32> {
        self.load(self.find(step, name, op))
    }
}

/// Per op kind: tensors compared, tensors bit-identical, elements that differ, max relative error.
#[derive(Default)]
struct Tally(BTreeMap<String, (usize, usize, usize, f64)>);

impl Tally {
    fn check(&mut self, kind: &str, ours: &[f32], theirs: &[f32]) {
        assert_eq!(ours.len(), theirs.len(), "{kind}: length");
        let scale = theirs
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(f32::MIN_POSITIVE);
        let (mut n, mut max) = (0, 0f64);
        for (a, b) in ours.iter().zip(theirs) {
            if a.to_bits() != b.to_bits() {
                n += 1;
                max = max.max(((a - b).abs() / scale) as f64);
            }
        }
        let e = self.0.entry(kind.to_string()).or_default();
        e.0 += 1;
        e.1 += usize::from(n == 0);
        e.2 += n;
        e.3 = e.3.max(max);
    }
}

#[test]
#[ignore] // why: a diagnostic, run by hand on a llama.cpp dump
fn replay_gemma3() {
    let dir = std::env::var_os("SPARETIRE_REF_DUMP").expect("set SPARETIRE_REF_DUMP");
    let dump = Dump::open(PathBuf::from(dir));
    let file = Arc::new(GgufFile::open(common::store_model("gemma3-270m")).unwrap());
    let hp = HParams::from_gguf(&file, "gemma3").unwrap();
    let ld = WeightLoader::new(file.clone());
    let pool = ThreadPool::new(2);
    let (d, hd, eps) = (hp.n_embd, hp.head_dim, hp.rms_eps);
    let mut tally = Tally::default();
    let mut keys: Vec<Vec<f16>> = vec![Vec::new(); hp.n_layer];
    let mut values: Vec<Vec<f16>> = vec![Vec::new(); hp.n_layer];
    let mut pos0 = 0;
    let matmul = |tally: &mut Tally, name: &str, n: usize, x: &[f32], want: &[f32]| {
        let w = ld.get(name, &[x.len() / n, want.len() / n]).unwrap();
        let mut y = vec![0f32; n * w.rows];
        sparetire_quant::matmul(&pool, &w.view(&file), x, n, &mut y).unwrap();
        let kind = format!(
            "matmul {} n{}",
            w.ty.name(),
            if n == 1 { "=1" } else { ">1" }
        );
        if std::env::var("REPLAY_DETAIL").is_ok_and(|k| kind.contains(&k)) {
            // which tokens differ tells a batched kernel from a per-row one
            let per_token: Vec<usize> = (y.chunks(w.rows).zip(want.chunks(w.rows)))
                .map(|(a, b)| a.iter().zip(b).filter(|(a, b)| a != b).count())
                .collect();
            eprintln!("{name}: elements differing per token {per_token:?}");
        }
        tally.check(&kind, &y, want);
    };
    let norm = |tally: &mut Tally, kind: &str, w: &[f32], x: &[f32], want: &[f32]| {
        let mut y = vec![0f32; x.len()];
        rms_norm(x, w, eps, &mut y);
        tally.check(kind, &y, want);
    };
    for step in 0..dump.n_steps() {
        let inp = dump.get(step, "inp_scaled", "");
        let n = inp.len() / d;
        let embd = dump.get(step, "embd", "");
        let s = (d as f32).sqrt();
        tally.check(
            "scale embd",
            &embd.iter().map(|v| v * s).collect::<Vec<_>>(),
            &inp,
        );
        let mut x_in = inp;
        for il in 0..hp.n_layer {
            let l = |s: &str| format!("{s}-{il}");
            let b = |s: &str| format!("blk.{il}.{s}.weight");
            let local = il % 6 != 5;
            let attn_norm = dump.get(step, &l("attn_norm"), "");
            norm(
                &mut tally,
                "rms_norm",
                &ld.vector(&b("attn_norm"), d).unwrap(),
                &x_in,
                &attn_norm,
            );
            let q = dump.get(step, &l("Qcur"), "MUL_MAT");
            let k = dump.get(step, &l("Kcur"), "MUL_MAT");
            let v = dump.get(step, &l("Vcur"), "MUL_MAT");
            matmul(&mut tally, &b("attn_q"), n, &attn_norm, &q);
            matmul(&mut tally, &b("attn_k"), n, &attn_norm, &k);
            matmul(&mut tally, &b("attn_v"), n, &attn_norm, &v);
            let qn = dump.get(step, &l("Qcur_normed"), "");
            let kn = dump.get(step, &l("Kcur_normed"), "");
            norm(
                &mut tally,
                "rms_norm q/k",
                &ld.vector(&b("attn_q_norm"), hd).unwrap(),
                &q,
                &qn,
            );
            norm(
                &mut tally,
                "rms_norm q/k",
                &ld.vector(&b("attn_k_norm"), hd).unwrap(),
                &k,
                &kn,
            );
            let qr = dump.get(step, &l("Qcur"), "ROPE");
            let kr = dump.get(step, &l("Kcur"), "ROPE");
            let base = if local { 10000.0 } else { hp.rope_base };
            let (mut cos, mut sin) = (vec![0f32; hd / 2], vec![0f32; hd / 2]);
            let (mut q2, mut k2) = (qn.clone(), kn.clone());
            for t in 0..n {
                rope_table(pos0 + t, hp.n_rot, base, &mut cos, &mut sin);
                let qd = hp.n_head * hd;
                let kd = hp.n_head_kv * hd;
                rope_apply(
                    &mut q2[t * qd..(t + 1) * qd],
                    hd,
                    RopeStyle::Neox,
                    &cos,
                    &sin,
                );
                rope_apply(
                    &mut k2[t * kd..(t + 1) * kd],
                    hd,
                    RopeStyle::Neox,
                    &cos,
                    &sin,
                );
            }
            tally.check("rope neox", &q2, &qr);
            tally.check("rope neox", &k2, &kr);
            let qs_i = dump.find(step, &l("Qcur"), "ROPE") + 1;
            let qs = dump.load(qs_i);
            let scale = 1.0 / (hd as f32).sqrt();
            tally.check(
                "scale q",
                &qr.iter().map(|v| v * scale).collect::<Vec<_>>(),
                &qs,
            );
            keys[il].extend(kr.iter().map(|&v| f16::from_f32(v)));
            values[il].extend(v.iter().map(|&v| f16::from_f32(v)));
            let kqv = dump.get(step, &l("kqv_out"), "");
            let shape = AttnShape {
                n_head: hp.n_head,
                n_head_kv: hp.n_head_kv,
                head_dim: hd,
                head_dim_v: hd,
                values_in_keys: false,
                scale: 1.0,
                window: local.then_some(512),
                offsets: Default::default(),
            };
            let mut o = vec![0f32; kqv.len()];
            let kv = KvLayer::contiguous(&keys[il], &values[il], hp.n_head_kv * hd);
            attention(&pool, &shape, &qs, kv, pos0, n, false, &mut o);
            let kind = if n >= 64 {
                "attention f32 tiled"
            } else {
                "attention f16"
            };
            tally.check(kind, &o, &kqv);
            let attn_out = dump.load(dump.find(step, &l("kqv_out"), "") + 1);
            matmul(&mut tally, &b("attn_output"), n, &kqv, &attn_out);
            let post = dump.get(step, &l("attn_post_norm"), "");
            norm(
                &mut tally,
                "rms_norm",
                &ld.vector(&b("post_attention_norm"), d).unwrap(),
                &attn_out,
                &post,
            );
            let sa = dump.get(step, &l("sa_out"), "");
            let add: Vec<f32> = post.iter().zip(&x_in).map(|(a, b)| a + b).collect();
            tally.check("add", &add, &sa);
            let ffn_norm = dump.get(step, &l("ffn_norm"), "");
            norm(
                &mut tally,
                "rms_norm",
                &ld.vector(&b("ffn_norm"), d).unwrap(),
                &sa,
                &ffn_norm,
            );
            let gate = dump.get(step, &l("ffn_gate"), "");
            let up = dump.get(step, &l("ffn_up"), "");
            matmul(&mut tally, &b("ffn_gate"), n, &ffn_norm, &gate);
            matmul(&mut tally, &b("ffn_up"), n, &ffn_norm, &up);
            let act = dump.get(step, &l("ffn_geglu"), "");
            let mut g = gate.clone();
            geglu(&mut g, &up);
            tally.check("geglu", &g, &act);
            let ffn_out = dump.get(step, &l("ffn_out"), "");
            matmul(&mut tally, &b("ffn_down"), n, &act, &ffn_out);
            let fpost = dump.get(step, &l("ffn_post_norm"), "");
            norm(
                &mut tally,
                "rms_norm",
                &ld.vector(&b("post_ffw_norm"), d).unwrap(),
                &ffn_out,
                &fpost,
            );
            let out = dump.get(step, &l("l_out"), "");
            let add: Vec<f32> = fpost.iter().zip(&sa).map(|(a, b)| a + b).collect();
            tally.check("add", &add, &out);
            x_in = out;
        }
        let rn = dump.get(step, "result_norm", "");
        norm(
            &mut tally,
            "rms_norm",
            &ld.vector("output_norm.weight", d).unwrap(),
            &x_in,
            &rn,
        );
        let logits = dump.get(step, "result_output", "");
        matmul(&mut tally, "token_embd.weight", n, &rn, &logits);
        pos0 += n;
    }
    eprintln!(
        "{:<22} {:>7} {:>7} {:>10} {:>9}",
        "op", "tensors", "exact", "elem diff", "max rel"
    );
    for (k, (t, e, n, m)) in &tally.0 {
        eprintln!("{k:<22} {t:>7} {e:>7} {n:>10} {m:>9.1e}");
    }
}
