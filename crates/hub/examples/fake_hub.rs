//! Serves the repository's tiny test models through the fake hub, for trying
//! `sparetire pull` by hand: `cargo run -p sparetire-hub --features test-server --example fake_hub`.

use std::time::Duration;

use sparetire_hub::testing::{FakeFile, FakeHub};

fn main() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data");
    let read = |n: &str| std::fs::read(data.join(n)).expect("the test models");
    let hub = FakeHub::start();
    hub.add_repo(
        "acme/Tiny-GGUF",
        vec![
            FakeFile::new("tiny-qwen3-Q4_K_M.gguf", read("tiny-qwen3.gguf")),
            FakeFile::new("tiny-llama-Q4_1.gguf", read("tiny-llama.gguf")),
        ],
    );
    hub.delay_per_64k(Duration::from_millis(150));
    println!("{}", hub.endpoint());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
