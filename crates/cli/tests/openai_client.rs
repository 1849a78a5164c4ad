//! The official `openai` Python package against the real server
//! (scripts/test.sh installs it; a missing package fails the test).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn official_openai_client_works() {
    let tiny = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/tiny-llama.gguf"
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_sparetire"))
        .args([
            "serve",
            "--port",
            "0",
            "-c",
            "256",
            "-m",
            tiny,
            "--api-key",
            "k3y",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(a) = line.strip_prefix("sparetire: listening on ") {
            break a.to_owned();
        }
        if line.contains("model ready") {
            continue;
        }
    };
    // Wait for the model before the client starts.
    for line in lines.by_ref() {
        if line.unwrap().contains("model ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = Command::new("python3")
        .args([script, &addr, "k3y"])
        .output()
        .expect("run python3");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "the openai client failed (is the `openai` package installed? scripts/test.sh installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
