//! graven: a self-hosted, cryptographically verifiable ledger database.
//!
//! Services write JSON documents through a gRPC API; every change is an immutable revision
//! in an append-only journal; the journal is the leaf sequence of an RFC 6962 Merkle tree
//! whose head is published as an Ed25519-signed C2SP checkpoint.
//!
//! The modules are layers, each importing only from the ones above it in this list:
//!
//! * `graven-verify` (re-exported as [`verify`]): hashing, proofs, checkpoints, keys and
//!   the journal entry format, the small crate auditors run.
//! * The domain: [`model`] (types and limits), [`json`] (strict JSON, RFC 8785),
//!   [`error`] (the engine's errors, by kind).
//! * [`storage`]: one ledger's storage: its key spaces and encodings, over a backend
//!   interface (`storage::Backend`) that redb implements (`storage/redb.rs`, the only
//!   module that names redb).
//! * [`query`]: statements (PartiQL as QLDB had it): parsing, evaluation, plans, over an
//!   interface (`query::exec::Data`) the engine implements.
//! * [`engine`]: ledgers and their sequencers, the read path, the change stream's
//!   follower, transaction preparation, the tamper check and the restore.
//! * [`service`]: the gRPC adapter (with [`auth`], who may do what); [`server`]: `graven
//!   serve`.
//!
//! Beside them, for programs that talk to a server: [`client`] (connection, token, TLS,
//! message limits) and [`progress`] (a progress line on a terminal). The `graven` command
//! line (`src/cli/`, in the binary) and the load tool (`graven-bench`, its own crate) are
//! built on the library; nothing in it imports them.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod engine;
pub mod error;
pub mod json;
pub mod model;
pub mod progress;
pub mod query;
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
