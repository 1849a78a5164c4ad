//! Many processes as one engine.
//!
//! - [`comm::Comm`] is the narrow transport the engine needs (broadcast,
//!   point-to-point f32 messages, all-reduce, barrier), with an MPI
//!   implementation ([`mpi_comm`], feature `mpi`) and an in-process one for
//!   tests ([`local::LocalComm`]).
//! - [`pipeline::split_layers`] places consecutive layers on ranks in
//!   proportion to their weights (memory, or declared).
//! - [`dist::DistModel`] is the model rank 0 runs: every forward call is
//!   broadcast as a [`protocol::Msg`] and computed stage by stage, hidden
//!   states passed from rank to rank and the logits sent back to rank 0;
//!   the other ranks run [`dist::follow`]. Output is bit-identical to one
//!   process (each layer is computed whole, on one rank).
//! - [`world`] finds out whether this process was started by `mpirun`.
#![deny(missing_docs)]

pub mod comm;
pub mod dist;
mod error;
pub mod local;
pub mod memory;
#[cfg(feature = "mpi")]
pub mod mpi_comm;
pub mod pipeline;
pub mod plan;
pub mod protocol;
pub mod wire;
mod world;

pub use comm::Comm;
pub use error::ClusterError;
pub use world::{finish, launched_by_mpi, world};
