//! Current-state proof files: that a revision is a document's current one at a signed
//! checkpoint, or that the document has none (docs/FORMAT.md §13).
//!
//! A checkpoint of size `N` commits to the ledger's state through its last entry, at
//! index `N - 1`: the last revision of the last transaction, which carries the state
//! map's root after it ([`crate::entry::State::Root`]). The file holds that entry and its
//! inclusion proof, the map proof for the document's key, and, when the document is
//! current at another index, that revision's entry and inclusion proof:
//!
//! ```text
//! graven.dev/current-proof@v1
//! table <base64 of the table name>
//! id <base64 of the document id>
//! state <N - 1>
//! <base64 of the entry at N - 1>
//! <base64 hash>...                (its inclusion proof in the tree of size N)
//!
//! revision <index>                (only when current at an index other than N - 1)
//! <base64 of the entry>
//! <base64 hash>...
//!
//! map <base64 of the map proof>   (crate::map::MapProof::encode)
//!
//! <signed checkpoint note>
//! ```
//!
//! [`verify_current`] does the whole check of such a file. [`StateReplay`] recomputes the
//! state map from the journal itself, as an audit of an export or a change stream does, and
//! checks every state root an entry carries against it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{
    FormatError, VerifiedCheckpoint, format_error, open_checkpoint, parse_decimal,
};
use crate::entry::{Entry, EntryError, Operation, State};
use crate::hash::{Hash, leaf_hash};
use crate::map::{Lookup, MapError, MapProof, check_map_proof, map_key};
use crate::map_nodes::MemoryMap;
use crate::note::Verifier;
use crate::proof::{MAX_PROOF_HASHES, VerifyError};
use crate::tree::{ProofError, check_inclusion};

/// The first line of a current-state proof.
pub const CURRENT_PROOF_HEADER: &str = "graven.dev/current-proof@v1";

/// An entry with its inclusion proof, as a current-state proof carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    /// Its journal index.
    pub index: u64,
    /// Its bytes.
    pub entry: Vec<u8>,
    /// Its inclusion proof in the checkpoint's tree, from the leaf's sibling up.
    pub hashes: Vec<Hash>,
}

/// A current-state proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProof {
    /// The document's table.
    pub table: String,
    /// The document's id.
    pub id: String,
    /// The checkpoint's last entry, which carries the state root.
    pub state: ProvenEntry,
    /// The document's current revision, when it is not the state entry itself.
    pub revision: Option<ProvenEntry>,
    /// The path to the document's key in the state map.
    pub map: MapProof,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// Splits off the first line of `text` (without its newline).
fn line<'a>(text: &mut &'a str, what: &str) -> Result<&'a str, FormatError> {
    let (head, rest) = text
        .split_once('\n')
        .ok_or_else(|| format_error(format!("missing {what} line")))?;
    *text = rest;
    Ok(head)
}

/// The value of a `<name> <value>` line.
fn field<'a>(text: &mut &'a str, name: &str) -> Result<&'a str, FormatError> {
    line(text, name)?
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| format_error(format!("expected a `{name} ...` line")))
}

fn base64(value: &str, what: &str) -> Result<Vec<u8>, FormatError> {
    BASE64
        .decode(value)
        .map_err(|_| format_error(format!("{what} is not base64")))
}

fn text(value: &str, what: &str) -> Result<String, FormatError> {
    String::from_utf8(base64(value, what)?)
        .map_err(|_| format_error(format!("{what} is not UTF-8")))
}

/// An entry section: `<name> <index>`, the entry, its hashes, a blank line.
fn proven(text: &mut &str, name: &str) -> Result<ProvenEntry, FormatError> {
    let index = parse_decimal(field(text, name)?)
        .ok_or_else(|| format_error(format!("the {name} index is not a decimal number")))?;
    let entry = base64(line(text, "entry")?, "the entry")?;
    let mut hashes = Vec::new();
    loop {
        let l = line(text, "hash")?;
        if l.is_empty() {
            break;
        }
        if hashes.len() == MAX_PROOF_HASHES {
            return Err(format_error("too many proof hashes"));
        }
        hashes.push(
            Hash::from_base64(l)
                .ok_or_else(|| format_error("proof line is not the base64 of a 32-byte hash"))?,
        );
    }
    Ok(ProvenEntry {
        index,
        entry,
        hashes,
    })
}

impl ProvenEntry {
    fn push_text(&self, name: &str, out: &mut String) {
        out.push_str(&format!("{name} {}\n", self.index));
        out.push_str(&BASE64.encode(&self.entry));
        out.push('\n');
        for h in &self.hashes {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
    }
}

impl CurrentProof {
    /// Parses the text form (exactly what [`CurrentProof::to_text`] writes).
    pub fn parse(mut input: &str) -> Result<CurrentProof, FormatError> {
        let text_in = &mut input;
        if line(text_in, "header")? != CURRENT_PROOF_HEADER {
            return Err(format_error(format!(
                "the first line is not {CURRENT_PROOF_HEADER}"
            )));
        }
        let table = text(field(text_in, "table")?, "the table")?;
        let id = text(field(text_in, "id")?, "the id")?;
        let state = proven(text_in, "state")?;
        let revision = if text_in.starts_with("revision ") {
            Some(proven(text_in, "revision")?)
        } else {
            None
        };
        let map = MapProof::decode(&base64(field(text_in, "map")?, "the map proof")?)
            .map_err(|e| format_error(e.to_string()))?;
        if !line(text_in, "blank")?.is_empty() {
            return Err(format_error("expected a blank line after the map proof"));
        }
        if text_in.is_empty() {
            return Err(format_error("missing checkpoint"));
        }
        Ok(CurrentProof {
            table,
            id,
            state,
            revision,
            map,
            checkpoint: (*text_in).to_owned(),
        })
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{CURRENT_PROOF_HEADER}\ntable {}\nid {}\n",
            BASE64.encode(&self.table),
            BASE64.encode(&self.id)
        );
        self.state.push_text("state", &mut out);
        if let Some(revision) = &self.revision {
            revision.push_text("revision", &mut out);
        }
        out.push_str(&format!("map {}\n\n", BASE64.encode(self.map.encode())));
        out.push_str(&self.checkpoint);
        out
    }
}

/// Why a current-state proof does not prove its answer (its checkpoint opened).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CurrentError {
    /// The checkpoint is of an empty ledger, which has no last entry to carry a state.
    EmptyLedger,
    /// The state entry is not the checkpoint's last entry.
    StateIndex {
        /// The index the proof gives.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// An entry of the proof is not in the checkpoint's tree at its index.
    NotIncluded {
        /// `"state"` or `"revision"`.
        what: &'static str,
        /// The index the proof gives.
        index: u64,
        /// How the inclusion proof failed.
        error: ProofError,
    },
    /// An entry of the proof, included in the tree, does not decode.
    Entry {
        /// Its index.
        index: u64,
        /// Why.
        error: EntryError,
    },
    /// The checkpoint's last entry carries no state root: a format 1 entry (written before
    /// the ledger committed to its state), or a revision before its transaction's last.
    NoStateRoot {
        /// The last entry's index.
        index: u64,
        /// Whether it is a format 1 entry.
        format1: bool,
    },
    /// The map proof does not hold for the document's key under the state root.
    Map(MapError),
    /// The map names a current revision other than the state entry, and the proof does
    /// not carry it.
    MissingRevision {
        /// The index the map names.
        index: u64,
    },
    /// The proof carries a revision though the document is absent, or current at the
    /// state entry itself.
    UnexpectedRevision {
        /// The revision's index.
        index: u64,
    },
    /// The proof's revision is not at the index the map names.
    RevisionIndex {
        /// The index the proof gives.
        proof: u64,
        /// The index the map names.
        map: u64,
    },
    /// The entry at the index the map names is of another document.
    OtherDocument {
        /// Its index.
        index: u64,
        /// Its table.
        table: String,
        /// Its id.
        id: String,
    },
    /// The entry at the index the map names is a delete.
    Deleted {
        /// Its index.
        index: u64,
    },
}

impl fmt::Display for CurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentError::EmptyLedger => f.write_str(
                "the checkpoint is of an empty ledger (size 0), which commits to no state",
            ),
            CurrentError::StateIndex { index, size } => write!(
                f,
                "the state entry is at index {index}, not at the checkpoint's last index ({})",
                size.wrapping_sub(1)
            ),
            CurrentError::NotIncluded { what, index, error } => write!(
                f,
                "the {what} entry is not at index {index} of the checkpoint's tree: {error}"
            ),
            CurrentError::Entry { index, error } => {
                write!(f, "the entry at index {index}: {error}")
            }
            CurrentError::NoStateRoot {
                index,
                format1: true,
            } => write!(
                f,
                "the checkpoint's last entry (index {index}) is of format 1, written before the ledger committed to its state: the checkpoint does not commit to a state"
            ),
            CurrentError::NoStateRoot {
                index,
                format1: false,
            } => write!(
                f,
                "the checkpoint's last entry (index {index}) is not the last revision of its transaction and carries no state root"
            ),
            CurrentError::Map(e) => e.fmt(f),
            CurrentError::MissingRevision { index } => write!(
                f,
                "the state map names the revision at index {index}, which the proof does not carry"
            ),
            CurrentError::UnexpectedRevision { index } => write!(
                f,
                "the proof carries a revision (index {index}) that the state map does not name"
            ),
            CurrentError::RevisionIndex { proof, map } => write!(
                f,
                "the proof's revision is at index {proof}, but the state map names index {map}"
            ),
            CurrentError::OtherDocument { index, table, id } => write!(
                f,
                "the revision the state map names (index {index}) is of table {table:?} id {id:?}, another document"
            ),
            CurrentError::Deleted { index } => write!(
                f,
                "the revision the state map names (index {index}) is a delete"
            ),
        }
    }
}

impl std::error::Error for CurrentError {}

/// A document's live revision, as a current-state proof shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Its journal index.
    pub index: u64,
    /// The entry, decoded.
    pub entry: Entry,
    /// The entry's bytes (the leaf data).
    pub bytes: Vec<u8>,
}

/// A verified current-state proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentAnswer {
    /// The checkpoint at which the answer holds.
    pub head: VerifiedCheckpoint,
    /// The document's table.
    pub table: String,
    /// The document's id.
    pub id: String,
    /// Its live revision at the checkpoint; `None` when it has none (it was never
    /// written, or was deleted).
    pub current: Option<Revision>,
}

/// Checks that `proven` is included at its index in the tree of `size` leaves with `root`,
/// and decodes it.
fn included(
    proven: &ProvenEntry,
    what: &'static str,
    size: u64,
    root: &Hash,
) -> Result<Entry, CurrentError> {
    check_inclusion(
        &proven.hashes,
        proven.index,
        size,
        &leaf_hash(&proven.entry),
        root,
    )
    .map_err(|error| CurrentError::NotIncluded {
        what,
        index: proven.index,
        error,
    })?;
    Entry::decode(&proven.entry).map_err(|error| CurrentError::Entry {
        index: proven.index,
        error,
    })
}

/// The answer for the revision at `index`, which the map names: it must be a live
/// revision of the proof's document.
fn current(
    proof: &CurrentProof,
    index: u64,
    entry: Entry,
    bytes: &[u8],
) -> Result<Option<Revision>, CurrentError> {
    if entry.table != proof.table || entry.id != proof.id {
        return Err(CurrentError::OtherDocument {
            index,
            table: entry.table,
            id: entry.id,
        });
    }
    if entry.operation == Operation::Delete {
        return Err(CurrentError::Deleted { index });
    }
    Ok(Some(Revision {
        index,
        entry,
        bytes: bytes.to_vec(),
    }))
}

/// Checks a current-state proof (docs/FORMAT.md §13) with the trusted keys: the checkpoint
/// of size `N`; its last entry, at `N - 1`, in its tree, carrying the state root; the map
/// proof of the document's key under that root; and, when the map names a revision, that
/// revision in the same tree, of the same document, not a delete. Returns what it proves.
pub fn verify_current(
    proof: &CurrentProof,
    keys: &[Verifier],
) -> Result<CurrentAnswer, VerifyError> {
    let head =
        open_checkpoint(proof.checkpoint.as_bytes(), keys).map_err(VerifyError::Checkpoint)?;
    let current = check_current(proof, head.checkpoint.size, &head.checkpoint.root)
        .map_err(VerifyError::Current)?;
    Ok(CurrentAnswer {
        head,
        table: proof.table.clone(),
        id: proof.id.clone(),
        current,
    })
}

/// [`verify_current`] once the checkpoint is open: its size and root.
fn check_current(
    proof: &CurrentProof,
    size: u64,
    root: &Hash,
) -> Result<Option<Revision>, CurrentError> {
    let last = size.checked_sub(1).ok_or(CurrentError::EmptyLedger)?;
    if proof.state.index != last {
        return Err(CurrentError::StateIndex {
            index: proof.state.index,
            size,
        });
    }
    let state = included(&proof.state, "state", size, root)?;
    let state_root = match state.state {
        State::Root(r) => r,
        other => {
            return Err(CurrentError::NoStateRoot {
                index: last,
                format1: other == State::Untracked,
            });
        }
    };
    let key = map_key(&proof.table, &proof.id);
    let lookup = check_map_proof(&state_root, &key, &proof.map).map_err(CurrentError::Map)?;
    match (lookup, &proof.revision) {
        (Lookup::Absent, None) => Ok(None),
        (Lookup::Current(i), None) if i == last => current(proof, i, state, &proof.state.entry),
        (Lookup::Current(i), None) => Err(CurrentError::MissingRevision { index: i }),
        (Lookup::Absent, Some(r)) => Err(CurrentError::UnexpectedRevision { index: r.index }),
        (Lookup::Current(i), Some(r)) if i == last => {
            Err(CurrentError::UnexpectedRevision { index: r.index })
        }
        (Lookup::Current(i), Some(r)) if r.index != i => Err(CurrentError::RevisionIndex {
            proof: r.index,
            map: i,
        }),
        (Lookup::Current(i), Some(r)) => {
            let entry = included(r, "revision", size, root)?;
            current(proof, i, entry, &r.entry)
        }
    }
}

/// Why a journal does not hold together with the state roots its entries carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// A format 1 entry after a format 2 one: a ledger never goes back.
    FormatBack {
        /// The index of the first format 2 entry.
        first: u64,
    },
    /// A transaction with entries of both formats.
    MixedFormats {
        /// The transaction.
        tx_id: u64,
    },
    /// A state root that is not the root of the state after its transaction.
    RootMismatch {
        /// The root the entry carries.
        carried: Hash,
        /// The root of the state recomputed from the journal.
        computed: Hash,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::FormatBack { first } => write!(
                f,
                "a format 1 entry after the format 2 entry at index {first} (a ledger never goes back to format 1)"
            ),
            ReplayError::MixedFormats { tx_id } => write!(
                f,
                "transaction {tx_id} has entries of both format 1 and format 2"
            ),
            ReplayError::RootMismatch { carried, computed } => write!(
                f,
                "state root {} does not match the state after the transaction ({})",
                carried.to_hex(),
                computed.to_hex()
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

/// The state map recomputed from the journal, entry by entry (docs/FORMAT.md §12): an
/// insert or update at index `i` maps its document to `i`, a delete removes it, and every
/// state root an entry carries must be the map's root after that entry (the last revision
/// of its transaction). It also checks the order of entry formats: no format 1 entry after
/// a format 2 one, and no transaction with both.
///
/// The state is known only when the replay starts at index 0 ([`StateReplay::from_start`]);
/// from a later index ([`StateReplay::without_state`]), or once an entry goes by unseen
/// ([`StateReplay::lose_state`]), roots are counted but not checked. The map is held in
/// memory ([`MemoryMap`]): about 140 bytes per live document (measured).
#[derive(Debug)]
pub struct StateReplay {
    map: Option<MemoryMap>,
    first_format2: Option<u64>,
    last: Option<(u64, bool)>,
    checked: u64,
    unchecked: u64,
}

impl StateReplay {
    /// A replay of the journal from index 0, from the empty map.
    pub fn from_start() -> StateReplay {
        StateReplay {
            map: Some(MemoryMap::default()),
            first_format2: None,
            last: None,
            checked: 0,
            unchecked: 0,
        }
    }

    /// A replay from a later index, where the state before it is not known.
    pub fn without_state() -> StateReplay {
        StateReplay {
            map: None,
            ..StateReplay::from_start()
        }
    }

    /// Forgets the state: an entry went by whose document is not known.
    pub fn lose_state(&mut self) {
        self.map = None;
    }

    /// Whether the state is known, so that roots are checked.
    pub fn knows_state(&self) -> bool {
        self.map.is_some()
    }

    /// State roots checked against the recomputed state.
    pub fn roots_checked(&self) -> u64 {
        self.checked
    }

    /// State roots seen while the state was not known.
    pub fn roots_unchecked(&self) -> u64 {
        self.unchecked
    }

    /// The replayed map, if the state is known.
    pub fn into_map(self) -> Option<MemoryMap> {
        self.map
    }

    /// The map as replayed so far, if the state is known.
    pub fn map_mut(&mut self) -> Option<&mut MemoryMap> {
        self.map.as_mut()
    }

    /// Applies the entry at `index`, the next one of the journal.
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Result<(), ReplayError> {
        let format2 = entry.state != State::Untracked;
        if let Some((tx_id, last_format2)) = self.last
            && tx_id == entry.tx_id
            && last_format2 != format2
        {
            return Err(ReplayError::MixedFormats { tx_id });
        }
        match self.first_format2 {
            Some(first) if !format2 => return Err(ReplayError::FormatBack { first }),
            None if format2 => self.first_format2 = Some(index),
            _ => {}
        }
        self.last = Some((entry.tx_id, format2));
        let Some(map) = &mut self.map else {
            if let State::Root(_) = entry.state {
                self.unchecked += 1;
            }
            return Ok(());
        };
        let key = map_key(&entry.table, &entry.id);
        let live = (entry.operation != Operation::Delete).then_some(index);
        let Ok(()) = map.set(&key, live);
        if let State::Root(carried) = entry.state {
            let Ok(computed) = map.root();
            if computed != carried {
                return Err(ReplayError::RootMismatch { carried, computed });
            }
            self.checked += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::map::Terminal;

    fn sample(revision: bool) -> CurrentProof {
        CurrentProof {
            table: "orders".into(),
            id: "o 1\n".into(),
            state: ProvenEntry {
                index: 4,
                entry: b"state entry".to_vec(),
                hashes: vec![leaf_hash(b"a"), leaf_hash(b"b")],
            },
            revision: revision.then(|| ProvenEntry {
                index: 1,
                entry: b"revision".to_vec(),
                hashes: vec![],
            }),
            map: MapProof {
                siblings: vec![leaf_hash(b"s")],
                terminal: Terminal::Leaf {
                    key: leaf_hash(b"k"),
                    index: 1,
                },
            },
            checkpoint: "origin\n5\nroot\n\n— sig\n".into(),
        }
    }

    #[test]
    fn round_trips_with_and_without_a_revision() {
        for revision in [false, true] {
            let p = sample(revision);
            assert_eq!(CurrentProof::parse(&p.to_text()), Ok(p));
        }
    }

    #[test]
    fn other_text_is_refused() {
        let text = sample(true).to_text();
        // Everything before the checkpoint is needed (the note is checked when opened).
        let note = text.find("origin").expect("note");
        for cut in 0..=note {
            if text.is_char_boundary(cut) {
                assert!(CurrentProof::parse(&text[..cut]).is_err(), "cut at {cut}");
            }
        }
        assert!(CurrentProof::parse(&text.replacen("@v1", "@v2", 1)).is_err());
        assert!(CurrentProof::parse(&text.replacen("state 4", "state x", 1)).is_err());
        assert!(CurrentProof::parse(&text.replacen("map ", "map !", 1)).is_err());
    }
}
