//! graven's integration tests, one binary (shared build, shared fixtures in `util`).

mod util;

/// Every RPC in-process (no ports), with every error code the API promises.
mod api;
/// Many clients, expected versions: no lost update, one winner per conflict.
mod concurrency;
