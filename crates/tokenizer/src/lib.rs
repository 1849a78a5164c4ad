//! sparetire tokenizer crate.
