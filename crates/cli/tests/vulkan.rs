//! `--device`, `--gpu-layers` and `sparetire devices` through the real binary,
//! on the tiny random-weight model (fast even on Mesa's software device, which
//! CI installs). Without a Vulkan device these tests fail unless
//! `SPARETIRE_SKIP_VULKAN=1` says explicitly to skip them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args(args)
        .output()
        .expect("run sparetire")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether to run: a device must exist unless skipping was asked for.
fn have_device() -> bool {
    if std::env::var("SPARETIRE_SKIP_VULKAN").as_deref() == Ok("1") {
        eprintln!("SKIPPED (SPARETIRE_SKIP_VULKAN=1)");
        return false;
    }
    true
}

fn no_panic(o: &Output) {
    let e = text(&o.stderr);
    assert!(!e.contains("panicked"), "panicked: {e}");
}

#[test]
fn devices_lists_name_driver_memory_and_subgroup_size() {
    if !have_device() {
        return;
    }
    let o = run(&["devices", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = v.as_array().unwrap();
    assert!(
        !list.is_empty(),
        "no Vulkan device listed (is mesa-vulkan-drivers installed?)"
    );
    for d in list {
        assert!(d["name"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
        assert!(d["driver"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
        assert!(d["memory_bytes"].as_u64().unwrap() > 0, "{d}");
        assert!(d["subgroup_size"].as_u64().unwrap() > 0, "{d}");
    }
    assert_eq!(list.iter().filter(|d| d["default"] == true).count(), 1);
    let o = run(&["devices"]);
    assert!(o.status.success());
    assert!(
        text(&o.stdout).contains("subgroup size"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn run_on_vulkan_whole_and_split_reports_device_memory() {
    if !have_device() {
        return;
    }
    let tiny = data("tiny-llama.gguf");
    for extra in [&[][..], &["--gpu-layers", "1"][..]] {
        let mut args = vec![
            "run", "-m", &tiny, "--raw", "--temp", "0", "-n", "6", "--json",
        ];
        args.extend(["--device", "vulkan"]);
        args.extend(extra);
        args.push("Hello");
        let o = run(&args);
        no_panic(&o);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(!v["prompt_tokens"].as_array().unwrap().is_empty());
        let err = text(&o.stderr);
        assert!(err.contains("layers on the device"), "{err}");
        assert!(err.contains("device memory"), "{err}");
    }
}

#[test]
fn bench_json_names_the_device_and_its_memory() {
    if !have_device() {
        return;
    }
    let tiny = data("tiny-llama.gguf");
    let o = run(&[
        "bench", "-m", &tiny, "--device", "vulkan", "-p", "8", "-n", "2", "-r", "1", "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    for r in rows.as_array().unwrap() {
        assert!(r["device"].as_str().unwrap().starts_with("vulkan:"), "{r}");
        assert!(r["device_memory_bytes"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn device_errors_are_clear() {
    if !have_device() {
        return;
    }
    let tiny = data("tiny-llama.gguf");
    // No such device: a runtime error naming what exists.
    let o = run(&["run", "-m", &tiny, "--device", "vulkan:99", "-n", "1", "hi"]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no Vulkan device 99"),
        "{}",
        text(&o.stderr)
    );
    // Usage errors: exit 2.
    let o = run(&["run", "-m", &tiny, "--device", "gpu", "-n", "1", "hi"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["run", "-m", &tiny, "--gpu-layers", "1", "-n", "1", "hi"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // An architecture the device does not run: an error with vulkan, the CPU with auto.
    let moe = data("tiny-qwen3moe.gguf");
    let o = run(&[
        "run", "-m", &moe, "--device", "vulkan", "--raw", "-n", "1", "hi",
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("llama and gemma3"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&[
        "run", "-m", &moe, "--device", "auto", "--raw", "-n", "1", "hi",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("running on the CPU"),
        "{}",
        text(&o.stderr)
    );
}

/// No loader: a clear error for vulkan, the CPU for auto (never a panic).
/// `SPARETIRE_VULKAN_LOADER` points the backend at a loader file that does not exist.
#[test]
fn no_vulkan_loader_is_a_clear_error() {
    let tiny = data("tiny-llama.gguf");
    let missing = [("SPARETIRE_VULKAN_LOADER", "/nonexistent/libvulkan.so.1")];
    let with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sparetire"))
            .args(args)
            .envs(missing)
            .output()
            .unwrap()
    };
    for args in [
        &["devices"][..],
        &["run", "-m", &tiny, "--device", "vulkan", "-n", "1", "hi"][..],
    ] {
        let o = with(args);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            text(&o.stderr).contains("no Vulkan loader (libvulkan.so.1) found; install your GPU driver or mesa-vulkan-drivers"),
            "{}",
            text(&o.stderr)
        );
    }
    let o = with(&[
        "run", "-m", &tiny, "--device", "auto", "--raw", "-n", "1", "hi",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("running on the CPU"),
        "{}",
        text(&o.stderr)
    );
}

/// `serve --device vulkan`: slots share the server's KV pool, whose blocks the
/// device mirrors; two requests with a common prefix (the second reuses the
/// first's blocks) answer as one request alone does.
#[test]
fn serve_on_vulkan_answers_and_reuses_prefixes() {
    if !have_device() {
        return;
    }
    let tiny = data("tiny-llama.gguf");
    let s = common::start(&["-m", &tiny, "--device", "vulkan", "--parallel", "2"]);
    let ask = |prompt: &str| {
        let body =
            serde_json::json!({"prompt": prompt, "max_tokens": 8, "temperature": 0}).to_string();
        let (st, body) = common::request(&s, "POST", "/v1/completions", Some(&body), &[]);
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["choices"][0]["text"].as_str().unwrap().to_owned()
    };
    let long = "The quick brown fox jumps over the lazy dog and keeps on running far away";
    let first = ask(long);
    assert!(!first.is_empty());
    assert_eq!(ask(long), first, "the same request after a prefix hit");
}
