//! sparetire quant crate.
