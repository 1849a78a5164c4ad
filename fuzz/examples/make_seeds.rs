//! Writes the seed corpora: `cargo run --release --example make_seeds -- <fuzz dir>` fills
//! `<fuzz dir>/corpus/gguf_parse` and `<fuzz dir>/corpus/gguf_load`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let tiny = std::fs::read(dir.join("../tests/data/tiny-llama.gguf"))?;
    let parse = dir.join("corpus/gguf_parse");
    let load = dir.join("corpus/gguf_load");
    std::fs::create_dir_all(&parse)?;
    std::fs::create_dir_all(&load)?;
    let mut parse_seeds = sparetire_fuzz::seeds::parse_seeds();
    parse_seeds.push(("tiny-llama", tiny.clone()));
    for (name, bytes) in parse_seeds {
        std::fs::write(parse.join(format!("seed-{name}")), bytes)?;
    }
    let mut load_seeds = sparetire_fuzz::seeds::load_seeds();
    load_seeds.push((
        "tiny-llama",
        sparetire_fuzz::join_load_input("Hello <|im_start|>world 123", &tiny),
    ));
    for (name, bytes) in load_seeds {
        std::fs::write(load.join(format!("seed-{name}")), bytes)?;
    }
    eprintln!("wrote seeds under {}", dir.join("corpus").display());
    Ok(())
}
