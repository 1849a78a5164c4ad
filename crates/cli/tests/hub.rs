//! `sparetire pull hf:…/ms:…`, `list`, `run -m NAME` and `rm`, run as a user runs them,
//! against the local fake hub (no test reaches the internet) with a temporary store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sparetire_hub::testing::{FakeFile, FakeHub};

const QWEN: &str = "tiny-qwen3-Q4_K_M.gguf";
const LLAMA: &str = "tiny-llama-Q4_1.gguf";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

/// `sparetire ARGS` with `home` as the store and no hub settings or proxies from outside.
fn cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sparetire"));
    c.args(args).env("SPARETIRE_HOME", home);
    for var in [
        "HF_TOKEN",
        "HF_ENDPOINT",
        "MODELSCOPE_API_TOKEN",
        "MODELSCOPE_DOMAIN",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(var);
    }
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home, args).output().expect("running sparetire")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}", err(&o));
    o
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn hub() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        "acme/Tiny-GGUF",
        vec![
            FakeFile::new("README.md", b"# Tiny\n".to_vec()),
            FakeFile::new(QWEN, bytes("tiny-qwen3.gguf")),
            FakeFile::new(LLAMA, bytes("tiny-llama.gguf")),
        ],
    );
    hub
}

/// The greedy tokens of `-m model` for a fixed prompt.
fn greedy(home: &Path, model: &str) -> Vec<u64> {
    let o = ok(run(
        home,
        &[
            "run",
            "-m",
            model,
            "--raw",
            "--temp",
            "0",
            "-n",
            "8",
            "--json",
            "-p",
            "Hello there",
        ],
    ));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

fn list_json(home: &Path) -> Vec<Value> {
    let o = ok(run(home, &["list", "--json"]));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn pull_list_run_and_rm_a_hugging_face_model() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let ep = hub.endpoint();
    let o = ok(run(
        home,
        &["pull", "hf:acme/Tiny-GGUF:Q4_K_M", "--endpoint", &ep],
    ));
    // stdout: the path; stderr: the name to use.
    let path = PathBuf::from(out(&o));
    assert_eq!(path, home.join("models/tiny-q4_k_m.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes("tiny-qwen3.gguf"));
    assert!(err(&o).contains("-m tiny-q4_k_m"), "{}", err(&o));
    // Again: already there, nothing downloaded.
    let o = ok(run(
        home,
        &[
            "pull",
            "hf:acme/Tiny-GGUF:Q4_K_M",
            "--endpoint",
            &ep,
            "--json",
        ],
    ));
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["name"], "tiny-q4_k_m");
    assert_eq!(v["downloaded"], false);
    assert_eq!(hub.downloads(QWEN), 1);

    // By its store name: pulled again from the source and endpoint its manifest records.
    let o = ok(run(home, &["pull", "tiny-q4_k_m"]));
    assert!(err(&o).contains("already in the store"), "{}", err(&o));
    assert_eq!(PathBuf::from(out(&o)), path);

    let rows = list_json(home);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["smollm2", "gemma3-270m", "tiny-q4_k_m"]);
    let r = &rows[2];
    assert_eq!(r["architecture"], "qwen3");
    assert_eq!(r["quant"], "Q4_K_M");
    assert_eq!(r["source"], format!("hf:acme/Tiny-GGUF:{QWEN}"));
    assert_eq!(r["size"], bytes("tiny-qwen3.gguf").len() as u64);
    assert_eq!(r["cached"], true);
    assert_eq!(rows[0]["cached"], false);
    let text = out(&ok(run(home, &["list"])));
    let line = text.lines().find(|l| l.starts_with("tiny-q4_k_m")).unwrap();
    assert!(
        line.contains("qwen3") && line.contains("Q4_K_M") && line.contains("hf:acme/Tiny-GGUF"),
        "{text}"
    );

    // -m takes the name, or a unique prefix of it: the same model as the file served.
    let want = greedy(home, data("tiny-qwen3.gguf").to_str().unwrap());
    assert_eq!(greedy(home, "tiny-q4_k_m"), want);
    assert_eq!(greedy(home, "tiny-q4_k"), want);
    ok(run(home, &["inspect", "-m", "tiny-q4_k_m"]));

    let o = ok(run(home, &["rm", "tiny-q4_k_m"]));
    assert!(err(&o).contains("removed tiny-q4_k_m"));
    assert!(!path.exists() && !home.join("models/tiny-q4_k_m.json").exists());
    let o = run(home, &["rm", "tiny-q4_k_m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("no model named \"tiny-q4_k_m\""),
        "{}",
        err(&o)
    );
    let o = run(home, &["run", "-m", "tiny-q4_k_m", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("sparetire pull hf:"), "{}", err(&o));
}

#[test]
fn a_split_model_runs_like_the_original_and_modelscope_works_too() {
    let hub = hub();
    let parts = (1..=3)
        .map(|i| {
            let name = format!("tiny-qwen3-{i:05}-of-00003.gguf");
            FakeFile::new(&name, bytes(&format!("split/{name}")))
        })
        .collect();
    hub.add_repo("acme/Split-GGUF", parts);
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let ep = hub.endpoint();
    let o = ok(run(
        home,
        &["pull", "hf:acme/Split-GGUF", "--endpoint", &ep, "--json"],
    ));
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["name"], "split-q4_k_m");
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    let want = greedy(home, data("tiny-qwen3.gguf").to_str().unwrap());
    assert_eq!(greedy(home, "split-q4_k_m"), want);

    // ModelScope: its listing API, a dropped transfer resumed, its own name.
    hub.drop_after(LLAMA, 60_000, 1);
    let o = ok(run(
        home,
        &["pull", "ms:acme/Tiny-GGUF:Q4_1", "--endpoint", &ep],
    ));
    assert!(err(&o).contains("resuming"), "{}", err(&o));
    assert_eq!(PathBuf::from(out(&o)), home.join("models/tiny-q4_1.gguf"));
    let row = list_json(home)
        .into_iter()
        .find(|r| r["name"] == "tiny-q4_1")
        .unwrap();
    assert_eq!(row["source"], format!("ms:acme/Tiny-GGUF:{LLAMA}"));
    assert_eq!(row["architecture"], "llama");
    assert_eq!(
        greedy(home, "tiny-q4_1"),
        greedy(home, data("tiny-llama.gguf").to_str().unwrap())
    );
}

#[test]
fn tokens_mirrors_and_hub_references_in_dash_m() {
    let hub = hub();
    hub.gate("acme/Tiny-GGUF", "tok");
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let ep = hub.endpoint();
    // Gated: without a token the user is told which variable or flag to set.
    let o = run(home, &["pull", "hf:acme/Tiny-GGUF:Q4_1", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("HF_TOKEN") && err(&o).contains("--token"),
        "{}",
        err(&o)
    );
    ok(run(
        home,
        &[
            "pull",
            "hf:acme/Tiny-GGUF:Q4_1",
            "--endpoint",
            &ep,
            "--token",
            "tok",
        ],
    ));
    // HF_ENDPOINT and HF_TOKEN from the environment; -m pulls a hub reference first.
    let o = ok(cmd(
        home,
        &[
            "run",
            "-m",
            "hf:acme/Tiny-GGUF:Q4_K_M",
            "--raw",
            "--temp",
            "0",
            "-n",
            "4",
            "-p",
            "Hi",
        ],
    )
    .env("HF_ENDPOINT", &ep)
    .env("HF_TOKEN", "tok")
    .output()
    .unwrap());
    assert!(err(&o).contains("as tiny-q4_k_m"), "{}", err(&o));
    assert!(home.join("models/tiny-q4_k_m.gguf").is_file());
    // Once pulled, a hub reference in -m needs no network (the endpoint here is dead).
    let o = ok(cmd(
        home,
        &["inspect", "-m", "hf:acme/Tiny-GGUF:q4_k_m", "--json"],
    )
    .env("HF_ENDPOINT", "http://127.0.0.1:9")
    .output()
    .unwrap());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["architecture"], "qwen3");
    let o = cmd(home, &["inspect", "-m", "hf:acme/Tiny-GGUF:Q8_0"])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "not pulled: the hub is asked, and is unreachable"
    );
    assert!(err(&o).contains("could not reach"), "{}", err(&o));
    // The token went to the hub, never to the CDN it redirects to.
    let reqs = hub.requests();
    assert!(reqs
        .iter()
        .filter(|r| !r.hub)
        .all(|r| r.authorization.is_none()));
    assert!(reqs
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer tok")));
}

#[test]
fn proxies_come_from_the_environment() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // The endpoint's host does not resolve: only the proxy can reach it.
    let o = ok(cmd(
        home,
        &[
            "pull",
            "hf:acme/Tiny-GGUF:Q4_1",
            "--endpoint",
            "http://hub.invalid",
        ],
    )
    .env("HTTP_PROXY", hub.endpoint())
    .output()
    .unwrap());
    assert_eq!(
        std::fs::read(PathBuf::from(out(&o))).unwrap(),
        bytes("tiny-llama.gguf")
    );
    let reqs = hub.requests();
    assert!(
        !reqs.is_empty() && reqs.iter().all(|r| r.proxied),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| !r.hub),
        "the CDN is reached through the proxy too"
    );
    // NO_PROXY exempts a host: then it must be reached directly (and cannot be).
    let o = cmd(
        home,
        &[
            "pull",
            "hf:acme/Tiny-GGUF:Q4_K_M",
            "--endpoint",
            "http://hub.invalid",
        ],
    )
    .env("HTTP_PROXY", hub.endpoint())
    .env("NO_PROXY", "hub.invalid")
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("could not reach"), "{}", err(&o));
}

#[test]
fn two_pull_processes_of_one_file_download_it_once() {
    let hub = hub();
    // Slow (~1.6 s): the second process finds the first one downloading.
    hub.delay_per_64k(Duration::from_millis(200));
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let ep = hub.endpoint();
    let children: Vec<_> = (0..2)
        .map(|_| {
            cmd(
                home,
                &["pull", "hf:acme/Tiny-GGUF:Q4_K_M", "--endpoint", &ep],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| ok(c.wait_with_output().unwrap()))
        .collect();
    assert_eq!(out(&outputs[0]), out(&outputs[1]));
    assert_eq!(hub.downloads(QWEN), 1);
    assert_eq!(
        std::fs::read(home.join("models/tiny-q4_k_m.gguf")).unwrap(),
        bytes("tiny-qwen3.gguf")
    );
    assert!(
        outputs
            .iter()
            .any(|o| err(o).contains("waiting for it to finish")),
        "{}\n{}",
        err(&outputs[0]),
        err(&outputs[1])
    );
}

#[test]
fn hub_errors_say_what_to_do() {
    let hub = hub();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let ep = hub.endpoint();
    let o = run(home, &["pull", "hf:acme/Tiny-GGUF:Q2_K", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains(QWEN) && err(&o).contains(LLAMA),
        "{}",
        err(&o)
    );
    let o = run(home, &["pull", "hf:acme", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("ORG/REPO"));
    hub.html(true);
    let o = run(home, &["pull", "hf:acme/Tiny-GGUF", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("HTML page, not the hub API"),
        "{}",
        err(&o)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let o = run(home, &["pull", "hf:acme/Tiny-GGUF", "--endpoint", &dead]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("could not reach") && err(&o).contains(&dead),
        "{}",
        err(&o)
    );
    assert!(!err(&o).contains("panicked"));
    // Nothing was installed by any of these.
    assert!(std::fs::read_dir(home.join("models"))
        .map(|d| d
            .flatten()
            .all(|e| e.file_name().to_string_lossy().starts_with('.')))
        .unwrap_or(true));
}
