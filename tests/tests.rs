//! graven's integration tests, one binary (shared build, shared fixtures in `util`).

mod util;

/// Every RPC in-process (no ports), with every error code the API promises.
mod api;
/// export then audit, tail piped to stream, the consistency --state loop, with the binaries.
mod audit_flow;
/// Authentication and roles: tokens, each role's rights, the principal in the journal.
mod auth;
/// `graven-bench`, every workload briefly against a real server: the JSON contract.
mod bench_smoke;
/// `graven check`: a clean data folder passes; each kind of tampering is found and named.
mod check;
/// The `graven` and `graven-verify` command lines, end to end against a real server.
mod cli_contract;
/// Several servers on one PostgreSQL: forwarding, streams everywhere, failover harness.
mod cluster;
/// Many clients, expected versions: no lost update, one winner per conflict.
mod concurrency;
/// Current-state proofs with the binaries: the truth verifies, a lying server's answers do
/// not.
mod current;
/// The crash harness: `graven serve` SIGKILLed at random moments under write load, rounds
/// from GRAVEN_CRASH_ROUNDS: acknowledged writes survive, nothing is half visible.
mod durability;
/// Bad and hostile input on every RPC (docs/BAD_INPUT.md): the right code, nothing changed.
mod hostile;
/// `graven import`: a whole export and its key restore a ledger; bad exports are refused.
mod import;
/// Random operation sequences against the engine and an in-memory model, across reopens.
mod model;
/// The outbox relay example: each event handed on once, across a restart.
mod outbox;
/// graven on PostgreSQL: the API, restarts, deletion, check and import with --storage.
mod postgres;
/// Statements: the QLDB tutorial, the language, indexes, pages, limits, proofs.
mod query;
/// The README walk-through, run as written.
mod readme;
/// The storage interface's contract, on the redb and PostgreSQL backends alike.
mod storage;
/// The change stream: order, gaps, checkpoints, resume, filters, slow subscribers, ends.
mod stream;
/// TLS and mutual TLS between the CLI and `graven serve`.
mod tls;
