//! `pull` against a local fake hub (`testing::FakeHub`): no test reaches the internet.
//! The models served are the repository's tiny random-weight GGUFs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sparetire_formats::gguf::GgufFile;
use sparetire_hub::testing::{FakeFile, FakeHub};
use sparetire_hub::{pull, HubError, ModelRef, PullOptions, Pulled, Recorder, Store};

const QWEN: &str = "tiny-qwen3-Q4_K_M.gguf";
const LLAMA: &str = "tiny-llama-Q4_1.gguf";

fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A hub with `acme/Tiny-GGUF`: a README, two models and a vision projector.
fn hub() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        "acme/Tiny-GGUF",
        vec![
            FakeFile::new("README.md", b"# Tiny models\n".to_vec()),
            FakeFile::new(QWEN, data("tiny-qwen3.gguf")),
            FakeFile::new(LLAMA, data("tiny-llama.gguf")),
            FakeFile::new("mmproj-tiny-F16.gguf", data("tiny-llama.gguf")),
        ],
    );
    hub
}

fn opts(hub: &FakeHub, token: &str) -> PullOptions {
    PullOptions {
        endpoint: Some(hub.endpoint()),
        token: Some(token.to_owned()),
        proxy_from_env: false,
        ..PullOptions::default()
    }
}

fn pull_ref(
    store: &Store,
    hub: &FakeHub,
    r: &str,
    token: &str,
) -> (Result<Pulled, HubError>, Recorder) {
    let rec = Recorder::new();
    let result = pull(store, &ModelRef::parse(r).unwrap(), &opts(hub, token), &rec);
    (result, rec)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Downloads in progress (lock files aside).
fn partials(store: &Store) -> Vec<String> {
    files_in(&store.downloads_dir())
        .into_iter()
        .filter(|f| !f.ends_with(".lock"))
        .collect()
}

#[test]
fn full_download_verified_named_and_recorded() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let p = r.unwrap();
    let want = data("tiny-qwen3.gguf");
    assert!(p.downloaded);
    assert_eq!(p.manifest.name, "tiny-q4_k_m");
    assert_eq!(p.path, store.model_path("tiny-q4_k_m"));
    assert_eq!(std::fs::read(&p.path).unwrap(), want);
    let m = store.manifest("tiny-q4_k_m").unwrap().unwrap();
    assert_eq!(m.source, format!("hf:acme/Tiny-GGUF:{QWEN}"));
    assert_eq!(
        (m.sha256.as_str(), m.size),
        (sha(&want).as_str(), want.len() as u64)
    );
    assert_eq!(m.architecture.as_deref(), Some("qwen3"));
    assert_eq!(m.quant.as_deref(), Some("Q4_K_M"));
    assert_eq!(m.files[0].sha256.as_deref(), Some(sha(&want).as_str()));
    assert_eq!(m.endpoint.as_deref(), Some(hub.endpoint().as_str()));
    // The listing was read page by page, and the file came from the CDN after a 302.
    let reqs = hub.requests();
    assert!(
        reqs.iter().any(|r| r.target.contains("cursor=")),
        "{reqs:?}"
    );
    assert!(reqs
        .iter()
        .any(|r| r.target.contains("/resolve/main/") && r.status == 302));
    assert_eq!(hub.downloads(QWEN), 1);
    assert!(partials(&store).is_empty(), "{:?}", partials(&store));
    // Pulling again finds it in the store, up to date: nothing is downloaded.
    let (again, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let again = again.unwrap();
    assert!(!again.downloaded);
    assert_eq!(again.manifest.name, "tiny-q4_k_m");
    assert_eq!(hub.downloads(QWEN), 1);
    // By file name too; the only other model gets its own name.
    let (llama, _) = pull_ref(&store, &hub, &format!("hf:acme/Tiny-GGUF:{LLAMA}"), "");
    let llama = llama.unwrap();
    assert_eq!(llama.manifest.name, "tiny-q4_1");
    assert_eq!(llama.manifest.architecture.as_deref(), Some("llama"));
    let names: Vec<String> = store
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["tiny-q4_1", "tiny-q4_k_m"]);
}

#[test]
fn a_dropped_connection_is_resumed_with_a_range() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.drop_after(QWEN, 100_000, 1);
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let p = r.unwrap();
    assert_eq!(std::fs::read(&p.path).unwrap(), data("tiny-qwen3.gguf"));
    let ranges: Vec<Option<String>> = hub
        .requests()
        .into_iter()
        .filter(|r| !r.hub)
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_owned())]);
    assert!(
        rec.notes().iter().any(|n| n.contains("resuming")),
        "{:?}",
        rec.notes()
    );
}

#[test]
fn a_passing_server_error_is_retried_once() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.fail(QWEN, 503, 1);
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    assert_eq!(
        std::fs::read(r.unwrap().path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    assert!(
        rec.notes().iter().any(|n| n.contains("HTTP 503")),
        "{:?}",
        rec.notes()
    );
    hub.fail(LLAMA, 503, 2);
    let (r, _) = pull_ref(&store, &hub, &format!("hf:acme/Tiny-GGUF:{LLAMA}"), "");
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("HTTP 503") && e.contains("run the same pull again"),
        "{e}"
    );
}

#[test]
fn a_later_pull_resumes_what_an_interrupted_one_left() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    // The automatic retry is cut too (100 kB later): the pull fails, keeping what arrived.
    hub.drop_after(QWEN, 100_000, 2);
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let e = r.unwrap_err();
    assert!(matches!(e, HubError::Dropped { .. }), "{e}");
    assert!(
        e.to_string().contains("run the same pull again to resume"),
        "{e}"
    );
    let left = partials(&store);
    assert_eq!(left.len(), 1, "{left:?}");
    let partial = store.downloads_dir().join(&left[0]);
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 200_000);
    // A half-written file is never a model.
    assert!(store.entries().unwrap().is_empty());
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let p = r.unwrap();
    assert_eq!(std::fs::read(&p.path).unwrap(), data("tiny-qwen3.gguf"));
    let last = hub.requests().into_iter().rev().find(|r| !r.hub).unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=200000-"));
    assert_eq!(last.status, 206);
    assert!(!partial.exists());
}

#[test]
fn a_server_that_ignores_ranges_means_starting_over() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.drop_after(QWEN, 50_000, 2);
    assert!(pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "")
        .0
        .is_err());
    hub.ignore_range(true);
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    assert_eq!(
        std::fs::read(r.unwrap().path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    assert!(
        rec.notes().iter().any(|n| n.contains("starting over")),
        "{:?}",
        rec.notes()
    );
}

#[test]
fn a_checksum_mismatch_is_downloaded_again_once_then_fails() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.corrupt(QWEN, 1);
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    assert_eq!(
        std::fs::read(r.unwrap().path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    assert!(
        rec.notes().iter().any(|n| n.contains("checksum mismatch")),
        "{:?}",
        rec.notes()
    );
    assert_eq!(hub.downloads(QWEN), 2);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.corrupt(QWEN, 2);
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let e = r.unwrap_err();
    let mut bad = data("tiny-qwen3.gguf");
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    let msg = e.to_string();
    assert!(matches!(e, HubError::ChecksumMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&sha(&data("tiny-qwen3.gguf"))) && msg.contains(&sha(&bad)),
        "{msg}"
    );
    assert!(partials(&store).is_empty(), "{:?}", partials(&store));
    assert!(store.entries().unwrap().is_empty());
}

#[test]
fn gated_files_need_a_token_which_never_reaches_the_cdn() {
    let hub = hub();
    hub.gate("acme/Tiny-GGUF", "tok");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "");
    let e = r.unwrap_err();
    assert!(matches!(e, HubError::NeedToken { status: 401, .. }), "{e}");
    assert!(
        e.to_string().contains("HF_TOKEN") && e.to_string().contains("--token"),
        "{e}"
    );
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "wrong");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("403") && e.contains("token was refused"), "{e}");
    let (r, _) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "tok");
    assert_eq!(
        std::fs::read(r.unwrap().path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    let reqs = hub.requests();
    assert!(reqs.iter().any(|r| r.hub
        && r.target.contains("/resolve/")
        && r.authorization.as_deref() == Some("Bearer tok")));
    assert!(
        reqs.iter()
            .filter(|r| !r.hub)
            .all(|r| r.authorization.is_none()),
        "{reqs:?}"
    );
}

#[test]
fn modelscope_listing_and_downloads() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (r, _) = pull_ref(&store, &hub, "ms:acme/Tiny-GGUF:Q4_K_M", "");
    let p = r.unwrap();
    assert_eq!(std::fs::read(&p.path).unwrap(), data("tiny-qwen3.gguf"));
    assert_eq!(p.manifest.source, format!("ms:acme/Tiny-GGUF:{QWEN}"));
    assert_eq!(p.manifest.revision.as_deref(), Some("master"));
    let reqs = hub.requests();
    assert!(reqs
        .iter()
        .any(|r| r.target
            == "/api/v1/models/acme/Tiny-GGUF/repo/files?Revision=master&Recursive=true"));
    assert!(reqs.iter().any(|r| r.target
        == format!("/api/v1/models/acme/Tiny-GGUF/repo?Revision=master&FilePath={QWEN}")));
    // A dropped ModelScope download resumes too.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    hub.drop_after(QWEN, 70_000, 1);
    let (r, _) = pull_ref(&store, &hub, "ms:acme/Tiny-GGUF:Q4_K_M", "");
    assert_eq!(
        std::fs::read(r.unwrap().path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    assert_eq!(
        hub.requests().last().unwrap().range.as_deref(),
        Some("bytes=70000-")
    );
}

fn split_hub() -> FakeHub {
    let hub = FakeHub::start();
    let parts = (1..=3)
        .map(|i| {
            let name = format!("tiny-qwen3-{i:05}-of-00003.gguf");
            FakeFile::new(&format!("Q4_K_M/{name}"), data(&format!("split/{name}")))
        })
        .collect();
    hub.add_repo("acme/Tiny-Split-GGUF", parts);
    hub
}

#[test]
fn a_split_gguf_is_joined_into_the_original_model() {
    let hub = split_hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-Split-GGUF", "");
    let p = r.unwrap();
    assert_eq!(p.manifest.name, "tiny-split-q4_k_m");
    assert_eq!(p.manifest.files.len(), 3);
    assert!(
        rec.notes().iter().any(|n| n.contains("part 3/3")),
        "{:?}",
        rec.notes()
    );
    let joined = GgufFile::open(&p.path).unwrap();
    let original = GgufFile::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/tiny-qwen3.gguf"),
    )
    .unwrap();
    // The original's metadata exactly (the split.* keys are gone), and every tensor.
    assert_eq!(joined.metadata(), original.metadata());
    assert_eq!(joined.tensors().len(), original.tensors().len());
    for t in original.tensors() {
        let (jt, bytes) = joined.tensor_data_by_name(&t.name).unwrap();
        assert_eq!((jt.ty, &jt.dims), (t.ty, &t.dims), "{}", t.name);
        assert_eq!(bytes, original.tensor_data(t), "{}", t.name);
    }
    let bytes = std::fs::read(&p.path).unwrap();
    assert_eq!(p.manifest.sha256, sha(&bytes));
    assert_eq!(p.manifest.size, bytes.len() as u64);
    assert!(partials(&store).is_empty(), "{:?}", partials(&store));
    // Any part's name selects the whole model.
    let (again, _) = pull_ref(
        &store,
        &hub,
        "hf:acme/Tiny-Split-GGUF:tiny-qwen3-00002-of-00003.gguf",
        "",
    );
    assert!(!again.unwrap().downloaded);
}

#[test]
fn two_concurrent_pulls_of_one_file_download_it_once() {
    let hub = hub();
    // Slow enough (~0.8 s) that the second pull finds the first one running.
    hub.delay_per_64k(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let results: Vec<(Result<Pulled, HubError>, Recorder)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q4_K_M", "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pulled: Vec<&Pulled> = results.iter().map(|(r, _)| r.as_ref().unwrap()).collect();
    assert_eq!(pulled.iter().filter(|p| p.downloaded).count(), 1);
    assert_eq!(pulled[0].path, pulled[1].path);
    assert_eq!(hub.downloads(QWEN), 1);
    let waited = results
        .iter()
        .any(|(_, rec)| rec.notes().iter().any(|n| n.contains("waiting for it")));
    assert!(waited, "the second pull should have waited for the first");
    assert_eq!(
        std::fs::read(&pulled[0].path).unwrap(),
        data("tiny-qwen3.gguf")
    );
    assert_eq!(store.entries().unwrap().len(), 1);
    assert!(partials(&store).is_empty());
}

#[test]
fn unknown_repositories_files_and_quants_say_what_exists() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let e = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF:Q2_K", "")
        .0
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(QWEN) && e.contains(LLAMA) && e.contains("Q2_K"),
        "{e}"
    );
    let e = pull_ref(&store, &hub, "hf:acme/Nope", "")
        .0
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("acme/Nope not found") && e.contains("HF_TOKEN"),
        "{e}"
    );
    let e = pull_ref(&store, &hub, "ms:acme/Nope", "")
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("acme/Nope not found"), "{e}");
    // Two models and no Q4_K_M among them... here there is one: it is taken, and said so.
    let (r, rec) = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF", "");
    assert_eq!(r.unwrap().manifest.quant.as_deref(), Some("Q4_K_M"));
    assert!(rec.notes().iter().any(|n| n.contains("taking its Q4_K_M")));
    let mut o = opts(&hub, "");
    o.revision = Some("v9".into());
    let e = pull(
        &store,
        &ModelRef::parse("hf:acme/Tiny-GGUF").unwrap(),
        &o,
        &Recorder::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("revision \"v9\""), "{e}");
}

#[test]
fn a_mirror_answering_html_is_named_as_such() {
    let hub = hub();
    hub.html(true);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    for r in ["hf:acme/Tiny-GGUF", "ms:acme/Tiny-GGUF"] {
        let e = pull_ref(&store, &hub, r, "").0.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, HubError::Html { .. }), "{msg}");
        assert!(msg.contains("HTML page, not the hub API"), "{msg}");
    }
    let e = pull_ref(&store, &hub, "hf:acme/Tiny-GGUF", "")
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("HF_ENDPOINT"), "{e}");
}

#[test]
fn no_network_names_the_endpoint() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let o = PullOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        token: Some(String::new()),
        proxy_from_env: false,
        ..PullOptions::default()
    };
    let e = pull(
        &store,
        &ModelRef::parse("hf:a/b").unwrap(),
        &o,
        &Recorder::new(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, HubError::Network { .. }), "{msg}");
    assert!(
        msg.contains("could not reach")
            && msg.contains(&format!("127.0.0.1:{port}"))
            && msg.contains("no network?"),
        "{msg}"
    );
}
