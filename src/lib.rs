//! graven: a self-hosted, cryptographically verifiable ledger database.
//!
//! The server crate. Hashing, proofs, checkpoints and keys come from `graven-verify`, the
//! small crate auditors run; this crate grows the engine, storage and gRPC service on top.

pub use graven_verify as verify;
