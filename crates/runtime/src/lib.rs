//! sparetire runtime crate.
