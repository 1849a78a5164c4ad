//! `sparetire` under a real `mpirun` (Open MPI): pipeline parallelism gives
//! the single process's output, serving works, and a dead rank ends the job.
//!
//! Needs the binary built with `--features mpi` (scripts/test.sh installs Open
//! MPI and does that); without it these tests fail and say so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "The old lighthouse keeper climbed the stairs every evening, and on the night of the storm he saw";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mpirun(n: usize) -> Command {
    let mut c = Command::new("mpirun");
    // As root in containers, on 2 cores, without UCX's complaints (see README).
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_pml", "ob1")
        .env("OMPI_MCA_btl", "self,vader,tcp")
        .stdin(std::process::Stdio::null())
        .args([
            "--oversubscribe",
            "-n",
            &n.to_string(),
            env!("CARGO_BIN_EXE_sparetire"),
        ]);
    c
}

fn text(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Sends `signal` to process `pid`, then waits up to `secs` for `mpirun` to end.
fn signal_and_wait(
    mpirun: &mut std::process::Child,
    signal: &str,
    pid: &str,
    secs: u64,
    why: &str,
) -> std::process::ExitStatus {
    assert!(Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    loop {
        if let Some(s) = mpirun.try_wait().unwrap() {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn greedy_args(model: &str) -> Vec<String> {
    [
        "run", "-m", model, "--raw", "--temp", "0", "-n", "16", "-t", "1", "-c", "256", "-p",
        PROMPT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn pipeline_and_tensor_parallel_greedy_output_equals_one_process() {
    let qwen3 = root()
        .join("tests/data/tiny-qwen3.gguf")
        .display()
        .to_string();
    for model in ["smollm2", "gemma3-270m", qwen3.as_str()] {
        let args = greedy_args(model);
        let want = text(
            &Command::new(env!("CARGO_BIN_EXE_sparetire"))
                .args(&args)
                .output()
                .unwrap(),
        );
        let mut tp = args.clone();
        tp.extend(["--split".into(), "tp".into()]);
        for (n, args) in [2, 3, 4].into_iter().flat_map(|n| [(n, &args), (n, &tp)]) {
            let o = mpirun(n).args(args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !err.contains("built without MPI support"),
                "this sparetire has no MPI: build with --features mpi (scripts/test.sh does)"
            );
            assert_eq!(text(&o), want, "{model} on {n} ranks: {args:?}");
            for r in 0..n {
                assert!(err.contains(&format!("rank {r}/{n} (pid")), "{err}");
            }
        }
    }
}

/// Expert parallelism (`--split ep`, and `--split tp`: attention — grouped-query or latent —
/// cut by heads, the experts spread) on the tiny mixture-of-experts and latent-attention models
/// over 2 and 3 ranks.
#[test]
fn expert_parallel_greedy_output_equals_one_process() {
    for (name, splits) in [
        ("tiny-qwen3moe", &["ep", "tp"][..]),
        ("tiny-qwen2moe", &["ep", "tp"][..]),
        ("tiny-deepseek2", &["ep", "tp"][..]),
        ("tiny-deepseek3", &["ep", "tp"][..]),
    ] {
        let model = root()
            .join(format!("tests/data/{name}.gguf"))
            .display()
            .to_string();
        let args = greedy_args(&model);
        let want = text(
            &Command::new(env!("CARGO_BIN_EXE_sparetire"))
                .args(&args)
                .output()
                .unwrap(),
        );
        for n in [2, 3] {
            for split in splits {
                let mut a = args.clone();
                a.extend(["--split".into(), split.to_string()]);
                let o = mpirun(n).args(&a).output().unwrap();
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(
                    !err.contains("built without MPI support"),
                    "this sparetire has no MPI: build with --features mpi (scripts/test.sh does)"
                );
                assert_eq!(text(&o), want, "{name} on {n} ranks, --split {split}");
                for r in 0..n {
                    assert!(err.contains(&format!("rank {r}/{n} (pid")), "{err}");
                }
            }
        }
    }
}

/// A quantized KV cache under mpirun: every rank stores its layers' or heads' rows rotated and
/// quantized as one process does, so the output is still one process's.
#[test]
fn quantized_kv_cache_under_mpirun_equals_one_process() {
    for model in ["smollm2", "gemma3-270m"] {
        let mut args = greedy_args(model);
        args.extend(["-ctk", "q8_0", "-ctv", "q4_0"].map(String::from));
        let want = text(
            &Command::new(env!("CARGO_BIN_EXE_sparetire"))
                .args(&args)
                .output()
                .unwrap(),
        );
        for split in ["pp", "tp"] {
            let mut a = args.clone();
            a.extend(["--split".into(), split.into()]);
            let o = mpirun(2).args(&a).output().unwrap();
            assert_eq!(text(&o), want, "{model}, --split {split}");
        }
    }
}

#[test]
fn pipeline_perplexity_equals_one_process() {
    let file = root().join("tests/data/ppl/text.txt").display().to_string();
    let args = [
        "perplexity",
        "-m",
        "smollm2",
        "-f",
        &file,
        "-c",
        "128",
        "--chunks",
        "3",
        "-t",
        "1",
        "--json",
    ];
    let one: serde_json::Value = serde_json::from_str(&text(
        &Command::new(env!("CARGO_BIN_EXE_sparetire"))
            .args(args)
            .output()
            .unwrap(),
    ))
    .unwrap();
    let two: serde_json::Value =
        serde_json::from_str(&text(&mpirun(2).args(args).output().unwrap())).unwrap();
    assert_eq!(one["ppl"], two["ppl"], "pipeline stages are bit-exact");
    assert_eq!(one["n_scored"], two["n_scored"]);
    // Tensor parallelism: within 0.1%.
    let mut tp_args = args.to_vec();
    tp_args.extend(["--split", "tp"]);
    for n in [2, 3] {
        let tp: serde_json::Value =
            serde_json::from_str(&text(&mpirun(n).args(&tp_args).output().unwrap())).unwrap();
        let (a, b) = (one["ppl"].as_f64().unwrap(), tp["ppl"].as_f64().unwrap());
        assert!(
            (a / b - 1.0).abs() < 1e-3,
            "PPL {a} vs {b} on {n} tensor-parallel ranks"
        );
    }
}

/// `--tp-wire q8`: 8-bit product inputs change nothing (the same perplexity to
/// the last digit); `q8-f16` costs a measured, small KL divergence.
#[test]
fn eight_bit_tensor_parallel_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.logits").display().to_string();
    let file = root().join("tests/data/ppl/text.txt").display().to_string();
    let args = [
        "perplexity",
        "-m",
        "smollm2",
        "-f",
        &file,
        "-c",
        "128",
        "--chunks",
        "2",
        "-t",
        "1",
        "--json",
    ];
    let one = Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args(args)
        .args(["--save-logits", &base])
        .output()
        .unwrap();
    let one: serde_json::Value = serde_json::from_str(&text(&one)).unwrap();
    let run = |wire: &str| -> (serde_json::Value, String) {
        let o = mpirun(2)
            .args(args)
            .args(["--split", "tp", "--tp-wire", wire, "--kl-base", &base])
            .output()
            .unwrap();
        (
            serde_json::from_str(&text(&o)).unwrap(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    };
    let sent = |stderr: &str| -> f64 {
        let line = stderr
            .lines()
            .find(|l| l.contains("rank 1/2: sent"))
            .unwrap();
        line.split("sent ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (f32_run, f32_err) = run("f32");
    let (q8, q8_err) = run("q8");
    assert_eq!(q8["ppl"], one["ppl"], "8-bit product inputs are exact");
    assert_eq!(f32_run["ppl"], one["ppl"]);
    assert!(sent(&q8_err) * 1.7 < sent(&f32_err), "{q8_err}\n{f32_err}");
    let (lossy, _) = run("q8-f16");
    let kl = lossy["kl"]["mean"].as_f64().unwrap();
    assert!(kl > 0.0 && kl < 0.02, "q8-f16 mean KL {kl}");
    // A pipeline does not take the option.
    let o = mpirun(2)
        .args(args)
        .args(["--tp-wire", "q8"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tp-wire applies to --split tp"));
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds() {
    let mut child = mpirun(2)
        .args([
            "run",
            "-m",
            "smollm2",
            "--raw",
            "--temp",
            "0",
            "-n",
            "4000",
            "-c",
            "4096",
            "-t",
            "1",
            "-p",
            "Once upon a time",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let pid = loop {
        let line = lines.next().expect("mpirun ended early").unwrap();
        if let Some(rest) = line.split("rank 1/2 (pid ").nth(1) {
            break rest.split(')').next().unwrap().to_owned();
        }
    };
    let collected =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    std::thread::sleep(Duration::from_millis(1500));
    let status = signal_and_wait(&mut child, "-9", &pid, 10, "the job outlived its dead rank");
    assert!(!status.success());
    let err = collected.join().unwrap();
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
}

#[test]
fn serve_under_mpirun_answers_like_one_process_and_stops_cleanly() {
    let want = text(
        &Command::new(env!("CARGO_BIN_EXE_sparetire"))
            .args([
                "run",
                "-m",
                "smollm2",
                "--raw",
                "--temp",
                "0",
                "-n",
                "12",
                "-p",
                PROMPT,
                "--batch-invariant",
            ])
            .output()
            .unwrap(),
    );
    let mut child = mpirun(2)
        .args([
            "serve", "--port", "0", "-m", "smollm2", "-c", "256", "-t", "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut addr, mut rank0) = (None, None);
    while addr.is_none() || rank0.is_none() {
        let line = lines
            .next()
            .expect("mpirun ended before listening")
            .unwrap();
        if let Some(a) = line.split("listening on http://").nth(1) {
            addr = Some(a.trim().to_owned());
        }
        if let Some(rest) = line.split("rank 0/2 (pid ").nth(1) {
            rank0 = Some(rest.split(')').next().unwrap().to_owned());
        }
    }
    let (addr, rank0) = (addr.unwrap(), rank0.unwrap());
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let body =
        serde_json::json!({"prompt": PROMPT, "max_tokens": 12, "temperature": 0}).to_string();
    let t0 = Instant::now();
    let resp = loop {
        let mut conn = TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).unwrap();
        if !raw.starts_with("HTTP/1.1 503") {
            break raw;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let json = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        v["choices"][0]["text"].as_str().unwrap(),
        want.trim_end_matches('\n')
    );
    // SIGTERM to rank 0 (mpirun itself would abort the job): it drains its requests and
    // tells the other ranks to stop; everyone exits 0, and so does mpirun.
    let status = signal_and_wait(&mut child, "-TERM", &rank0, 30, "the job did not stop");
    assert!(status.success(), "{status:?}\n{}", rest.join().unwrap());
}
