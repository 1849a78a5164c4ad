//! sparetire formats crate.
