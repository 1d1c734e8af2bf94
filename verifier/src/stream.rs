//! Checking a `graven tail` change stream (`docs/FORMAT.md` §10) as it arrives.
//!
//! A [`StreamVerifier`] takes the stream's JSON lines one at a time. It folds every
//! revision's entry and every skipped leaf hash into a [`CompactRange`] (starting from the
//! `frontier` event when the stream starts at `N > 0`), checks that indexes run on with no
//! gap or repeat, that each revision's decoded fields are those of its entry and that its
//! `document` (the exact bytes in the line) hashes to the entry's body hash. Revisions are
//! held back until a `checkpoint` event, signed by a trusted key, of the same origin as the
//! stream's earlier checkpoints, whose size is the number of leaves folded so far and whose
//! root is their root: then they are released, as the very lines that were read. What a
//! consumer reads from the verifier's output has therefore been verified against a signed
//! checkpoint, field by field.
//!
//! A stream that starts at index 0 also recomputes the state map as revisions arrive and
//! checks every state root an entry carries ([`StateReplay`]); one that starts later, or
//! skips an entry (whose document it does not see), cannot know the state from there on,
//! and says so ([`StreamVerifier::state_unchecked`]). The order of entry formats is
//! checked throughout.
//!
//! Every member of every event is checked, so unknown members and duplicate member names
//! are rejected: a consumer must not be able to read an unverified value out of a line the
//! verifier passed on.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_core::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, open_checkpoint};
use crate::current::StateReplay;
use crate::entry::{Entry, Operation};
use crate::hash::{Hash, leaf_hash};
use crate::note::{NoteError, Verifier};
use crate::tree::{CompactRange, MAX_STORED_SIZE};

/// The most revisions held back waiting for a checkpoint.
pub const MAX_PENDING_REVISIONS: usize = 100_000;

/// The most bytes of revision lines held back waiting for a checkpoint.
pub const MAX_PENDING_BYTES: usize = 256 << 20;

/// The longest line accepted (a 64 MiB body plus its entry and fields).
pub const MAX_LINE: usize = 80 << 20;

/// Why a stream was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// A line is not a well-formed event (exit 2): the message names the line.
    Malformed(String),
    /// The stream is well formed but does not verify (exit 1): the message names the index
    /// or the checkpoint.
    Failed(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Malformed(m) | StreamError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StreamError {}

/// The members of one JSON object, values unparsed; duplicate names are rejected.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(A::Error::custom(format!("duplicate member {key:?}")));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// One parsed line: its members, and the line number for messages.
struct Event<'a> {
    line: u64,
    members: Members<'a>,
}

impl<'a> Event<'a> {
    fn malformed(&self, why: impl fmt::Display) -> StreamError {
        StreamError::Malformed(format!("line {}: {why}", self.line))
    }

    fn raw(&self, name: &str) -> Result<&'a RawValue, StreamError> {
        self.members
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.malformed(format!("missing member {name:?}")))
    }

    fn string(&self, name: &str) -> Result<String, StreamError> {
        serde_json::from_str(self.raw(name)?.get())
            .map_err(|_| self.malformed(format!("member {name:?} is not a string")))
    }

    fn number(&self, name: &str) -> Result<u64, StreamError> {
        serde_json::from_str(self.raw(name)?.get()).map_err(|_| {
            self.malformed(format!("member {name:?} is not an unsigned 64-bit integer"))
        })
    }

    fn hash(&self, name: &str) -> Result<Hash, StreamError> {
        Hash::from_base64(&self.string(name)?)
            .ok_or_else(|| self.malformed(format!("member {name:?} is not the base64 of 32 bytes")))
    }

    /// Rejects members other than `allowed`.
    fn only(&self, allowed: &[&str]) -> Result<(), StreamError> {
        match self
            .members
            .0
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            Some((k, _)) => Err(self.malformed(format!("unexpected member {k:?}"))),
            None => Ok(()),
        }
    }
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Insert => "insert",
        Operation::Update => "update",
        Operation::Delete => "delete",
    }
}

/// Checks a change stream line by line; see the module documentation.
#[derive(Debug)]
pub struct StreamVerifier {
    keys: Vec<Verifier>,
    range: CompactRange,
    line: u64,
    started: bool,
    frontier: bool,
    origin: Option<String>,
    verified_size: Option<u64>,
    pending: Vec<String>,
    pending_bytes: usize,
    state: StateReplay,
    /// Why the state stopped being known, and from which index: a start past 0 or a
    /// skipped entry.
    state_lost: Option<(u64, bool)>,
}

impl StreamVerifier {
    /// A verifier trusting checkpoints signed by any of `keys`.
    pub fn new(keys: Vec<Verifier>) -> StreamVerifier {
        StreamVerifier {
            keys,
            range: CompactRange::new(),
            line: 0,
            started: false,
            frontier: false,
            origin: None,
            verified_size: None,
            pending: Vec::new(),
            pending_bytes: 0,
            state: StateReplay::from_start(),
            state_lost: None,
        }
    }

    /// State roots checked against the state recomputed from the stream.
    pub fn state_roots_checked(&self) -> u64 {
        self.state.roots_checked()
    }

    /// Why state roots were not all checked, if entries went by whose state was not known
    /// (the stream starts past index 0, or skipped an entry); `None` when every entry so
    /// far had its state recomputed.
    pub fn state_unchecked(&self) -> Option<String> {
        let (from, skipped) = self.state_lost?;
        if self.range.size() <= from {
            return None;
        }
        let checked = self.state.roots_checked();
        Some(if skipped {
            format!(
                "state roots were checked up to index {from} only ({checked} checked): the entry at index {from} was skipped, so the state after it is not known"
            )
        } else {
            format!(
                "state roots were not checked: the stream starts at index {from}, and the state before it is not known"
            )
        })
    }

    /// Revisions read but not yet covered by a checkpoint.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The size of the last verified checkpoint, if any.
    pub fn verified_size(&self) -> Option<u64> {
        self.verified_size
    }

    /// The number of leaves folded in so far (the index the next event must have).
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// Takes one line (without its newline). Returns the revision lines that a checkpoint
    /// in this line has just verified, in order (empty for every other event).
    pub fn push_line(&mut self, line: &str) -> Result<Vec<String>, StreamError> {
        self.line += 1;
        let members: Members<'_> = serde_json::from_str(line).map_err(|e| {
            StreamError::Malformed(format!("line {}: not a JSON object: {e}", self.line))
        })?;
        let event = Event {
            line: self.line,
            members,
        };
        let kind = event.string("type")?;
        let first = !self.started;
        self.started = true;
        match kind.as_str() {
            "frontier" => {
                event.only(&["type", "size", "subtrees"])?;
                if !first {
                    return Err(event.malformed("a frontier event must come first"));
                }
                let size = event.number("size")?;
                if size > MAX_STORED_SIZE {
                    return Err(event.malformed(format!(
                        "frontier size {size} is above the largest log size, 2^62"
                    )));
                }
                let subtrees: Vec<String> = serde_json::from_str(event.raw("subtrees")?.get())
                    .map_err(|_| event.malformed("\"subtrees\" is not an array of strings"))?;
                let hashes = subtrees
                    .iter()
                    .map(|s| Hash::from_base64(s))
                    .collect::<Option<Vec<Hash>>>()
                    .ok_or_else(|| {
                        event.malformed("a frontier hash is not the base64 of 32 bytes")
                    })?;
                self.range = CompactRange::from_parts(size, hashes).ok_or_else(|| {
                    event.malformed(format!(
                        "a frontier of size {size} needs {} subtree hashes, not {}",
                        size.count_ones(),
                        subtrees.len()
                    ))
                })?;
                self.frontier = true;
                if size > 0 {
                    self.state = StateReplay::without_state();
                    self.state_lost = Some((size, false));
                }
                Ok(Vec::new())
            }
            "revision" => {
                event.only(&[
                    "type",
                    "index",
                    "entry",
                    "table",
                    "id",
                    "version",
                    "operation",
                    "tx",
                    "commit_micros",
                    "principal",
                    "document",
                ])?;
                let index = event.number("index")?;
                self.check_index(&event, index)?;
                let bytes = BASE64
                    .decode(event.string("entry")?)
                    .map_err(|_| event.malformed("\"entry\" is not base64"))?;
                let failed = |why: String| StreamError::Failed(format!("index {index}: {why}"));
                let entry = Entry::decode(&bytes).map_err(|e| failed(e.to_string()))?;
                let mismatch = |name: &str| failed(format!("{name:?} does not match the entry"));
                if event.string("table")? != entry.table {
                    return Err(mismatch("table"));
                }
                if event.string("id")? != entry.id {
                    return Err(mismatch("id"));
                }
                if event.number("version")? != entry.version {
                    return Err(mismatch("version"));
                }
                if event.string("operation")? != operation_name(entry.operation) {
                    return Err(mismatch("operation"));
                }
                if event.number("tx")? != entry.tx_id {
                    return Err(mismatch("tx"));
                }
                if event.number("commit_micros")? != entry.commit_time_micros {
                    return Err(mismatch("commit_micros"));
                }
                if event.string("principal")? != entry.principal {
                    return Err(mismatch("principal"));
                }
                let document = event.raw("document")?.get();
                match (&entry.body_hash, document == "null") {
                    (None, true) => {}
                    (None, false) => return Err(failed("a delete carries a document".into())),
                    (Some(_), true) => {
                        return Err(failed(format!(
                            "the {} has a null document",
                            operation_name(entry.operation)
                        )));
                    }
                    (Some(want), false) => {
                        if Hash(Sha256::digest(document.as_bytes()).into()) != *want {
                            return Err(failed(
                                "document does not match its entry's body hash".into(),
                            ));
                        }
                    }
                }
                self.state
                    .apply(index, &entry)
                    .map_err(|e| failed(e.to_string()))?;
                if self.pending.len() >= MAX_PENDING_REVISIONS
                    || self.pending_bytes + line.len() > MAX_PENDING_BYTES
                {
                    return Err(failed(format!(
                        "more than {MAX_PENDING_REVISIONS} revisions or {} MiB wait for a checkpoint",
                        MAX_PENDING_BYTES >> 20
                    )));
                }
                self.range.append(leaf_hash(&bytes));
                self.pending.push(line.to_owned());
                self.pending_bytes += line.len();
                Ok(Vec::new())
            }
            "skipped" => {
                event.only(&["type", "index", "leaf_hash"])?;
                let index = event.number("index")?;
                self.check_index(&event, index)?;
                let leaf = event.hash("leaf_hash")?;
                if self.state.knows_state() {
                    self.state.lose_state();
                    self.state_lost = Some((index, true));
                }
                self.range.append(leaf);
                Ok(Vec::new())
            }
            "checkpoint" => {
                event.only(&["type", "checkpoint"])?;
                let note = event.string("checkpoint")?;
                let size = self.range.size();
                let head = open_checkpoint(note.as_bytes(), &self.keys).map_err(|e| match e {
                    CheckpointError::Note(NoteError::Unverified | NoteError::BadSignature(_)) => {
                        StreamError::Failed(format!("checkpoint after index {size}: {e}"))
                    }
                    other => event.malformed(other),
                })?;
                let c = head.checkpoint;
                match &self.origin {
                    Some(o) if *o != c.origin => {
                        return Err(StreamError::Failed(format!(
                            "checkpoint of size {}: origin {:?} differs from the stream's {o:?}",
                            c.size, c.origin
                        )));
                    }
                    Some(_) => {}
                    None => self.origin = Some(c.origin.clone()),
                }
                if c.size != size && size == 0 && !self.frontier {
                    return Err(event.malformed(format!(
                        "the stream starts at index {} without a frontier event",
                        c.size
                    )));
                }
                if c.size != size {
                    return Err(StreamError::Failed(format!(
                        "checkpoint of size {} arrives after {size} entries (it must cover exactly the entries so far)",
                        c.size
                    )));
                }
                if c.root != self.range.root() {
                    return Err(StreamError::Failed(format!(
                        "checkpoint of size {}: its root does not match the stream's entries",
                        c.size
                    )));
                }
                self.verified_size = Some(c.size);
                self.pending_bytes = 0;
                Ok(std::mem::take(&mut self.pending))
            }
            other => Err(event.malformed(format!("unknown event type {other:?}"))),
        }
    }

    fn check_index(&self, event: &Event<'_>, index: u64) -> Result<(), StreamError> {
        let want = self.range.size();
        if index == want {
            return Ok(());
        }
        if want == 0 && !self.frontier {
            return Err(event.malformed(format!(
                "the stream starts at index {index} without a frontier event"
            )));
        }
        let what = if index < want { "repeated" } else { "gap" };
        Err(StreamError::Failed(format!(
            "index {index}: expected index {want} ({what})"
        )))
    }
}
