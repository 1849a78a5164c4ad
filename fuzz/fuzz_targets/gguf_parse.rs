//! Fuzzes the GGUF reader: any byte string either parses into a file whose every accessor
//! keeps the reader's promises, or is rejected with an error. Never a panic, a hang, or an
//! allocation sized by what the file claims.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sparetire_fuzz::parse(data);
});
