//! sparetire models crate.
