//! graven: a self-hosted, cryptographically verifiable ledger database.
//!
//! Services write JSON documents through a gRPC API; every change is an immutable revision
//! in an append-only journal; the journal is the leaf sequence of an RFC 6962 Merkle tree
//! whose head is published as an Ed25519-signed C2SP checkpoint.
//!
//! * [`engine`]: ledgers on disk (redb), the sequencer (group commit) and the read path.
//! * [`model`]: domain types and limits; [`error`]: the engine's errors.
//! * [`json`]: strict JSON parsing and RFC 8785 canonical form.
//! * [`storage`]: the redb table layout.
//! * [`service`]: the tonic adapter, the only module that speaks gRPC types to the engine.
//! * [`server`]: `graven serve`; [`cli`]: the client commands; [`bench`]: the load tool.
//! * [`check`]: `graven check`, the offline tamper check of a stopped server's data folder.
//!
//! Hashing, proofs, checkpoints, keys and the journal entry format come from
//! `graven-verify` (re-exported as [`verify`]), the small crate auditors run.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod check;
pub mod cli;
pub mod engine;
pub mod error;
pub mod import;
pub mod json;
pub mod model;
pub mod server;
pub mod service;
pub mod storage;

pub use graven_verify as verify;

/// The generated gRPC types and services of `proto/graven/v1/graven.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("graven.v1");

    /// The encoded file descriptor set, for the reflection service.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("graven_descriptor");
}
