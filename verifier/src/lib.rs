//! # graven-verify
//!
//! The offline verifier for graven ledgers, and the single definition of their hashing and
//! proof rules. It trusts nothing but the public keys it is given.
//!
//! * [`hash`]: RFC 6962 leaf and node hashing.
//! * [`tree`]: stored-hash layout, tree hashes, and inclusion and consistency proofs
//!   (RFC 9162 §2.1.3, §2.1.4), proved from any [`tree::HashReader`] and checked offline;
//!   the [`tree::CompactRange`] that folds leaves in one at a time.
//! * [`note`]: C2SP signed notes with Ed25519 keys, vkeys and private key texts.
//! * [`checkpoint`]: C2SP tlog-checkpoint text.
//! * [`entry`]: the journal entry, the bytes of each leaf of a graven ledger.
//! * [`export`]: journal export files (reader, writer) and the audit of a whole export.
//! * [`stream`]: checking a `graven tail` change stream as it arrives.
//! * [`map`]: the state map from each document to its live revision, and its proofs
//!   that a revision is current or a document absent.
//! * [`map_nodes`]: the state map as it is stored, one record per interior node, updated a
//!   key at a time.
//! * [`current`]: current-state proof files and their end-to-end check, and the replay of
//!   the journal that recomputes the state and checks the state roots entries carry.
//! * [`state`]: the newest verified checkpoint per origin, kept in a directory.
//! * [`proof`]: the offline proof files, `c2sp.org/tlog-proof@v1` for inclusion and the
//!   tlog-witness `add-checkpoint` body for consistency, and their end-to-end checks.
//!
//! The crate depends only on small, widely audited crates (sha2, ed25519-dalek, base64,
//! getrandom, lexopt for the binary's arguments, serde_json for its `--json` output). It has
//! no network, storage or async code; an auditor can read all of it in an afternoon.
//! `docs/FORMAT.md` in the repository documents every format byte by byte.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod current;
pub mod entry;
pub mod export;
pub mod hash;
pub mod map;
pub mod map_nodes;
pub mod note;
pub mod proof;
pub mod state;
pub mod stream;
pub mod tree;

pub use checkpoint::{Checkpoint, FormatError, VerifiedCheckpoint, open_checkpoint};
pub use entry::{Entry, EntryError, Operation, State};
pub use hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
pub use note::{NoteError, Signer, Verifier};
pub use proof::{ConsistencyProof, InclusionProof, VerifyError};
pub use tree::{
    CompactRange, HashReader, ProofError, ProveError, check_consistency, check_inclusion,
    prove_consistency, prove_inclusion, split_stored_hash_index, stored_hash_count,
    stored_hash_index, tree_hash,
};
