//! Journal entries: the bytes of one leaf, describing one document revision.
//!
//! An entry holds the revision's metadata and the SHA-256 of the document body (its
//! canonical JSON, RFC 8785), never the body itself: bodies are stored beside the journal,
//! so entries stay small and a holder of a document can recompute its hash and ask whether
//! it is in the ledger. The encoding is deterministic and versioned; [`Entry::decode`]
//! accepts exactly what [`Entry::encode`] produces and nothing else.
//!
//! Format version 2, all integers big-endian (version 1, which ledgers wrote before they
//! committed to their state, is the same without the last field):
//!
//! ```text
//! offset  size   field
//! 0       1      format version, 0x01
//! 1       1      operation: 0x01 insert, 0x02 update, 0x03 delete
//! 2       8      transaction id
//! 10      4      position of this revision in its transaction (0-based)
//! 14      4      number of revisions in the transaction
//! 18      8      commit time, microseconds since 1970-01-01T00:00:00Z
//! 26      8      document version (0 for the insert, then +1 per revision)
//! 34      2 + n  table name: length, then UTF-8 bytes
//! ..      2 + n  document id: length, then UTF-8 bytes
//! ..      2 + n  principal (who wrote it): length, then UTF-8 bytes
//! ..      1      0x01 then 32 bytes of SHA-256(body), or 0x00 alone for a delete
//! ..      32     on the transaction's last revision only: the root of the state map
//!                after the transaction (docs/FORMAT.md §12)
//! ```

use std::fmt;

use crate::hash::Hash;

/// The format version this module writes; it reads this one and version 1.
pub const ENTRY_FORMAT_VERSION: u8 = 2;

/// The longest table name, document id or principal an entry can carry.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// What a revision did to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The document's first revision (version 0).
    Insert,
    /// A full replacement of the document.
    Update,
    /// The document's last revision; it has no body.
    Delete,
}

impl Operation {
    /// The byte that encodes the operation.
    pub fn code(self) -> u8 {
        match self {
            Operation::Insert => 1,
            Operation::Update => 2,
            Operation::Delete => 3,
        }
    }

    /// The operation a byte encodes.
    pub fn from_code(code: u8) -> Option<Operation> {
        match code {
            1 => Some(Operation::Insert),
            2 => Some(Operation::Update),
            3 => Some(Operation::Delete),
            _ => None,
        }
    }

    /// Lower-case name: `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an entry says about the ledger's state map, the map from every document to its
/// live revision (docs/FORMAT.md §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Format 1, written before ledgers committed to their state: nothing.
    Untracked,
    /// Format 2, a revision before its transaction's last: the last one carries the root.
    Pending,
    /// Format 2, a transaction's last revision: the map's root after the transaction.
    Root(Hash),
}

/// One document revision, as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the revision did.
    pub operation: Operation,
    /// The transaction that wrote it (dense per ledger, from 0).
    pub tx_id: u64,
    /// This revision's position among the transaction's revisions.
    pub tx_position: u32,
    /// How many revisions the transaction wrote.
    pub tx_revisions: u32,
    /// Commit time, microseconds since the Unix epoch.
    pub commit_time_micros: u64,
    /// The document's version after this revision.
    pub version: u64,
    /// The table.
    pub table: String,
    /// The document id.
    pub id: String,
    /// The authenticated principal that wrote the revision.
    pub principal: String,
    /// SHA-256 of the body's canonical JSON; `None` exactly for deletes.
    pub body_hash: Option<Hash>,
    /// The state map's root after the transaction, on its last revision.
    pub state: State,
}

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError(pub &'static str);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid entry: {}", self.0)
    }
}

impl std::error::Error for EntryError {}

/// A cursor over the bytes being decoded.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        if self.0.len() < n {
            return Err(EntryError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, EntryError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, EntryError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| EntryError(what))
    }
}

impl Entry {
    /// Encodes the entry. Fails only if a text field is longer than [`MAX_FIELD_LEN`]
    /// bytes, the body hash does not match the operation, or the state is not where a
    /// format 2 entry has it (a root on the last revision, none before).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        if (self.operation == Operation::Delete) != self.body_hash.is_none() {
            return Err(EntryError(
                "a body hash is present exactly when not a delete",
            ));
        }
        if self.tx_position >= self.tx_revisions {
            return Err(EntryError(
                "position must be below the transaction's revision count",
            ));
        }
        let last = self.tx_position + 1 == self.tx_revisions;
        let version = match self.state {
            State::Untracked => 1,
            State::Pending if !last => ENTRY_FORMAT_VERSION,
            State::Root(_) if last => ENTRY_FORMAT_VERSION,
            _ => {
                return Err(EntryError(
                    "a state root is on a transaction's last revision and only there",
                ));
            }
        };
        let mut out = Vec::with_capacity(
            34 + 6 + self.table.len() + self.id.len() + self.principal.len() + 65,
        );
        out.push(version);
        out.push(self.operation.code());
        out.extend_from_slice(&self.tx_id.to_be_bytes());
        out.extend_from_slice(&self.tx_position.to_be_bytes());
        out.extend_from_slice(&self.tx_revisions.to_be_bytes());
        out.extend_from_slice(&self.commit_time_micros.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        for field in [&self.table, &self.id, &self.principal] {
            let len = u16::try_from(field.len()).map_err(|_| EntryError("field too long"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        match &self.body_hash {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(&h.0);
            }
            None => out.push(0),
        }
        if let State::Root(root) = &self.state {
            out.extend_from_slice(&root.0);
        }
        Ok(out)
    }

    /// Decodes an entry, rejecting unknown versions, unknown operations, invalid UTF-8,
    /// inconsistent fields and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let mut r = Reader(bytes);
        let format = r.u8()?;
        if format != 1 && format != ENTRY_FORMAT_VERSION {
            return Err(EntryError("unknown format version"));
        }
        let operation = Operation::from_code(r.u8()?).ok_or(EntryError("unknown operation"))?;
        let tx_id = r.u64()?;
        let tx_position = r.u32()?;
        let tx_revisions = r.u32()?;
        if tx_position >= tx_revisions {
            return Err(EntryError(
                "position not below the transaction's revision count",
            ));
        }
        let commit_time_micros = r.u64()?;
        let version = r.u64()?;
        let table = r.string("table name is not UTF-8")?;
        let id = r.string("document id is not UTF-8")?;
        let principal = r.string("principal is not UTF-8")?;
        let body_hash = match r.u8()? {
            0 => None,
            1 => Some(Hash(r.array()?)),
            _ => return Err(EntryError("invalid body hash marker")),
        };
        if (operation == Operation::Delete) != body_hash.is_none() {
            return Err(EntryError(
                "body hash present for a delete or missing otherwise",
            ));
        }
        let state = match format {
            1 => State::Untracked,
            _ if tx_position + 1 == tx_revisions => State::Root(Hash(r.array()?)),
            _ => State::Pending,
        };
        if !r.0.is_empty() {
            return Err(EntryError("trailing bytes"));
        }
        Ok(Entry {
            operation,
            tx_id,
            tx_position,
            tx_revisions,
            commit_time_micros,
            version,
            table,
            id,
            principal,
            body_hash,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn sample(operation: Operation) -> Entry {
        Entry {
            operation,
            tx_id: 7,
            tx_position: 1,
            tx_revisions: 2,
            commit_time_micros: 1_763_780_000_000_000,
            version: 3,
            table: "orders".into(),
            id: "o-1".into(),
            principal: "alice".into(),
            body_hash: (operation != Operation::Delete).then(|| leaf_hash(b"{}")),
            state: State::Root(leaf_hash(b"state")),
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for op in [Operation::Insert, Operation::Update, Operation::Delete] {
            let mut e = sample(op);
            for (position, state) in [
                (1, State::Root(leaf_hash(b"root"))),
                (0, State::Pending),
                (0, State::Untracked),
                (1, State::Untracked),
            ] {
                e.tx_position = position;
                e.state = state;
                let bytes = e.encode().expect("encode");
                assert_eq!(Entry::decode(&bytes), Ok(e.clone()));
            }
        }
    }

    #[test]
    fn layout_is_fixed() {
        let mut e = sample(Operation::Delete);
        e.state = State::Untracked;
        let bytes = e.encode().expect("encode");
        assert_eq!(bytes[0], 1, "format version");
        assert_eq!(bytes[1], 3, "delete");
        assert_eq!(&bytes[2..10], &7u64.to_be_bytes());
        assert_eq!(&bytes[34..36], &6u16.to_be_bytes());
        assert_eq!(&bytes[36..42], b"orders");
        assert_eq!(bytes.last(), Some(&0), "no body hash");
        assert_eq!(bytes.len(), 34 + 2 + 6 + 2 + 3 + 2 + 5 + 1);
        let v2 = sample(Operation::Delete).encode().expect("encode");
        assert_eq!(v2[0], 2, "format version");
        assert_eq!(
            v2[..bytes.len()][1..],
            bytes[1..],
            "format 1's fields, then the root"
        );
        assert_eq!(&v2[bytes.len()..], &leaf_hash(b"state").0);
        e.tx_position = 0;
        e.state = State::Pending;
        assert_eq!(
            e.encode().expect("encode").len(),
            bytes.len(),
            "no root before the last"
        );
    }

    #[test]
    fn a_state_root_is_on_the_last_revision_only() {
        let mut e = sample(Operation::Update);
        e.tx_position = 0;
        assert!(e.encode().is_err(), "a root before the last revision");
        e.tx_position = 1;
        e.state = State::Pending;
        assert!(e.encode().is_err(), "no root on the last revision");
        // Format 2 bytes of a non-last revision carry no root: 32 more bytes are trailing.
        e.tx_position = 0;
        let mut bytes = e.encode().expect("encode");
        bytes.extend_from_slice(&[0; 32]);
        assert_eq!(Entry::decode(&bytes), Err(EntryError("trailing bytes")));
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = sample(Operation::Update).encode().expect("encode");
        for len in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer), Err(EntryError("trailing bytes")));
    }

    #[test]
    fn inconsistent_fields_are_rejected() {
        let mut bytes = sample(Operation::Update).encode().expect("encode");
        bytes[1] = 3; // claims delete but carries a body hash
        assert!(Entry::decode(&bytes).is_err());
        bytes[1] = 9;
        assert!(Entry::decode(&bytes).is_err());
        let mut e = sample(Operation::Insert);
        e.body_hash = None;
        assert!(e.encode().is_err());
        let mut e = sample(Operation::Insert);
        e.tx_position = 2;
        assert!(e.encode().is_err());
    }
}
