//! Fuzzes everything a model file controls on the way to a loaded model: the GGUF reader, the
//! tokenizer built from its metadata (encoding fuzz-provided text), and the model loader.
//! Input layout: `[text length: u8][text][GGUF image]` (see `sparetire_fuzz::split_load_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sparetire_fuzz::load(data);
});
