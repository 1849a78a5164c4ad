//! `sparetire bench serve` against a real `sparetire serve` (SmolLM2 from the store, which
//! scripts/test.sh fetches), as a user runs both.

mod common;

use std::process::{Command, Output};

use common::start;
use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args(["bench", "serve"])
        .args(args)
        .output()
        .expect("run sparetire bench serve")
}

fn rows(o: &Output) -> Vec<Value> {
    assert!(
        o.status.success(),
        "bench serve failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    v.as_array().expect("a JSON array of rows").clone()
}

fn is_png(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn sweeps_concurrency_levels_and_plots() {
    let s = start(&["-m", "smollm2", "--parallel", "2", "--api-key", "k"]);
    let tmp = tempfile::tempdir().unwrap();
    let plot = tmp.path().join("p.png");
    let url = format!("http://{}", s.addr);
    let o = bench(&[
        "--url",
        &url,
        "--api-key",
        "k",
        "--concurrency",
        "1,2",
        "--requests-per-client",
        "1",
        "--max-tokens",
        "4",
        "--label",
        "sparetire",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let rows = rows(&o);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, c) in rows.iter().zip([1, 2]) {
        assert_eq!(row["label"], "sparetire");
        assert_eq!(row["concurrency"], c, "{row}");
        assert_eq!(row["requests"], c, "{row}");
        assert_eq!(row["failures"], 0, "{row}");
        // Greedy story openings run to max_tokens; the count comes from the usage chunk.
        assert_eq!(row["generated_tokens"], 4 * c, "{row}");
        assert!(row["tokens_per_second"].as_f64().unwrap() > 0.0, "{row}");
        for key in [
            "ttft_p50_ms",
            "ttft_p99_ms",
            "tpot_p50_ms",
            "latency_p99_ms",
        ] {
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {row}");
        }
        let (ttft, lat) = (row["ttft_p50_ms"].as_f64(), row["latency_p50_ms"].as_f64());
        assert!(ttft <= lat, "{row}");
    }
    assert!(is_png(&plot), "no PNG at {}", plot.display());

    // The rows redrawn from the saved JSON, with no server involved.
    let saved = tmp.path().join("rows.json");
    std::fs::write(&saved, &o.stdout).unwrap();
    let replot = tmp.path().join("again.png");
    let o = bench(&[
        "--from-json",
        saved.to_str().unwrap(),
        "--json",
        "--plot",
        replot.to_str().unwrap(),
    ]);
    assert_eq!(self::rows(&o), rows);
    assert!(is_png(&replot));

    // A wrong key: the warm-up request fails, and the error says why.
    let o = bench(&["--url", &url, "--api-key", "nope", "--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warm-up") && err.contains("401"), "{err}");
}

#[test]
fn unreachable_servers_and_bad_flags_are_clear_errors() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = bench(&["--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("connecting to 127.0.0.1"), "{err}");
    assert!(o.stdout.is_empty());
    for args in [
        &["--url", "https://127.0.0.1:1"][..],
        &["--plot", "out.svg"],
        &["--concurrency", "0"],
        &["--duration", "0"],
    ] {
        let o = bench(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}
