//! Journal export files (`docs/FORMAT.md` §11): a streaming reader, a writer, and the
//! audit that checks a whole export in one pass with bounded memory.
//!
//! # The API at a glance
//!
//! ```text
//! // Writing (graven export, tests):
//! ExportWriter::new(w: W, origin: &str, from: u64, to: u64, frontier: &CompactRange)
//!     -> io::Result<ExportWriter<W>>
//! fn record(&mut self, entry: &[u8], body: Option<&[u8]>) -> io::Result<()>
//! fn finish(self, checkpoint_note: &str) -> io::Result<W>
//!
//! // Reading (any std::io::Read; buffered internally; constant memory):
//! ExportReader::new(r: R) -> Result<ExportReader<R>, ExportError>
//! fn header(&self) -> &ExportHeader
//! fn next_record(&mut self, record: &mut Record) -> Result<bool, ExportError>  // reuses buffers
//! impl Iterator<Item = Result<Record, ExportError>>                          // or allocates
//! fn finish(self) -> Result<String, ExportError>   // the trailer note; checks end of file
//!
//! // Auditing:
//! audit(reader: ExportReader<R>, keys: &[Verifier], progress: &mut dyn FnMut(u64, u64))
//!     -> Result<AuditSummary, AuditError>
//! ```
//!
//! # File layout (version 1, integers big-endian)
//!
//! ```text
//! header   "GRVNEXP\n", u32 version = 1, u16 origin length + UTF-8 origin,
//!          u64 A (first index), u64 B (one past the last), u8 k = popcount(A),
//!          k × 32-byte hashes: the compact range of [0, A), largest subtree first
//! records  one per index A..B: u32 entry length + entry,
//!          0x00 (no body) or 0x01 + u32 body length + body
//! trailer  u32 length + the signed checkpoint note of size B (UTF-8); then end of file
//! ```
//!
//! # What the audit checks
//!
//! Every leaf hash and the root (the header's compact range with every entry folded in)
//! against the trailer's checkpoint, signed by a trusted key, of size `B` and of the
//! header's origin; that every entry decodes; that every body hashes to its entry's body
//! hash (deletes have none); that transactions are contiguous (positions `0..n-1` on
//! consecutive indexes, ids increasing by one; a partial export may begin inside a
//! transaction, and any export may end inside one, since `B` is chosen by whoever
//! exports); that commit times never decrease and are shared by a transaction's revisions;
//! that version 0 is exactly the insert; and per document, that versions are dense and a
//! delete is the last revision (in a full export every document starts at version 0).
//! In a full export, the state map is recomputed from the entries and every state root an
//! entry carries is checked against it ([`StateReplay`]); in any export, no format 1 entry
//! follows a format 2 one and no transaction has both.
//!
//! The per-document checks need to see each document's revisions together, and a ledger
//! may hold millions of documents. The audit therefore writes one fixed-size tuple per
//! revision, `(table key, document key, index, version, operation)`, sorts them in runs of
//! at most [`SORT_RUN`] tuples, spills each run to a temporary file, and merges at most
//! [`MERGE_FAN_IN`] runs at a time (merging in several passes if there are more): the
//! memory of that check is bounded by those two constants, whatever the size of the
//! export. The state map is not: it is kept in memory, about 140 bytes per document live
//! at the end of the export (3 to 4 GB at ten million). The keys
//! are truncated SHA-256 hashes: 8 bytes of the table name (used only to count tables) and
//! 16 bytes of (table, id), so two documents are confused only by a 128-bit collision.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, open_checkpoint};
use crate::current::StateReplay;
use crate::entry::{Entry, Operation};
use crate::hash::{Hash, leaf_hash};
use crate::note::Verifier;
use crate::tree::{CompactRange, MAX_STORED_SIZE};

/// The first 8 bytes of every export file.
pub const MAGIC: &[u8; 8] = b"GRVNEXP\n";

/// The format version this module writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// The longest entry accepted (entries are well under 64 KiB in practice).
pub const MAX_ENTRY_LEN: u32 = 16 << 20;

/// The longest body accepted.
pub const MAX_BODY_LEN: u32 = 64 << 20;

/// The longest trailer (signed checkpoint note) accepted.
pub const MAX_CHECKPOINT_LEN: u32 = 1 << 20;

/// Tuples sorted in memory at a time by the audit's per-document check (41 bytes each).
pub const SORT_RUN: usize = 1 << 18;

/// Sorted runs merged at a time by the audit's per-document check.
pub const MERGE_FAN_IN: usize = 64;

/// The header of an export: whose log, which range, and the compact range before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportHeader {
    /// The log's origin; the trailer's checkpoint must name the same.
    pub origin: String,
    /// `A`, the index of the first record.
    pub from: u64,
    /// `B`, one past the index of the last record; the trailer's checkpoint has this size.
    pub to: u64,
    /// The compact range of `[0, A)`.
    pub frontier: CompactRange,
}

/// One record: an entry (leaf data) and its body, if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The leaf index of the entry.
    pub index: u64,
    /// The entry bytes.
    pub entry: Vec<u8>,
    /// The body bytes; meaningful only when `has_body`.
    pub body: Vec<u8>,
    /// Whether the record carries a body (flag byte `0x01`).
    pub has_body: bool,
}

impl Record {
    /// The body, if the record has one.
    pub fn body(&self) -> Option<&[u8]> {
        self.has_body.then_some(self.body.as_slice())
    }
}

/// Why an export file could not be read: where, and what was wrong.
#[derive(Debug)]
pub struct ExportError {
    /// The byte offset at which reading failed.
    pub offset: u64,
    /// The index of the record being read, if inside a record.
    pub index: Option<u64>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(
                f,
                "byte offset {} (record of index {i}): {}",
                self.offset, self.message
            ),
            None => write!(f, "byte offset {}: {}", self.offset, self.message),
        }
    }
}

impl std::error::Error for ExportError {}

/// A streaming reader of an export file.
pub struct ExportReader<R> {
    input: BufReader<R>,
    offset: u64,
    header: ExportHeader,
    next: u64,
}

impl<R: Read> ExportReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<ExportReader<R>, ExportError> {
        let mut reader = ExportReader {
            input: BufReader::with_capacity(256 << 10, input),
            offset: 0,
            header: ExportHeader {
                origin: String::new(),
                from: 0,
                to: 0,
                frontier: CompactRange::new(),
            },
            next: 0,
        };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic, format_args!("the magic number"))?;
        if &magic != MAGIC {
            return Err(reader.error_at(0, "not an export file (bad magic number)"));
        }
        let version = u32::from_be_bytes(reader.array(format_args!("the format version"))?);
        if version != EXPORT_VERSION {
            return Err(reader.error_at(8, format!("unsupported export format version {version}")));
        }
        let len = u16::from_be_bytes(reader.array(format_args!("the origin length"))?);
        let mut origin = vec![0u8; usize::from(len)];
        reader.read_exact(&mut origin, format_args!("the origin"))?;
        let origin = String::from_utf8(origin)
            .map_err(|_| reader.error_at(14, "the origin is not UTF-8"))?;
        if origin.is_empty() {
            return Err(reader.error_at(12, "the origin is empty"));
        }
        let from_at = reader.offset;
        let from = u64::from_be_bytes(reader.array(format_args!("the first index"))?);
        let to = u64::from_be_bytes(reader.array(format_args!("the end index"))?);
        if to > MAX_STORED_SIZE {
            return Err(reader.error_at(
                from_at + 8,
                format!("the end index {to} is above the largest log size, 2^62"),
            ));
        }
        if to < from {
            return Err(reader.error_at(
                from_at,
                format!("the end index {to} is below the first index {from}"),
            ));
        }
        let k_at = reader.offset;
        let k = reader.array::<1>(format_args!("the frontier length"))?[0];
        if u32::from(k) != from.count_ones() {
            return Err(reader.error_at(
                k_at,
                format!(
                    "the frontier has {k} hashes, but a first index of {from} needs {}",
                    from.count_ones()
                ),
            ));
        }
        let mut subtrees = Vec::with_capacity(usize::from(k));
        for _ in 0..k {
            subtrees.push(Hash(reader.array(format_args!("the frontier"))?));
        }
        let frontier = CompactRange::from_parts(from, subtrees)
            .ok_or_else(|| reader.error_at(k_at, "the frontier does not match the first index"))?;
        reader.header = ExportHeader {
            origin,
            from,
            to,
            frontier,
        };
        reader.next = from;
        Ok(reader)
    }

    /// The header.
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record into `record`, reusing its buffers. `Ok(false)` once every
    /// record of `[A, B)` has been read; then call [`ExportReader::finish`].
    pub fn next_record(&mut self, record: &mut Record) -> Result<bool, ExportError> {
        if self.next >= self.header.to {
            return Ok(false);
        }
        let index = self.next;
        let in_record = |mut e: ExportError| {
            e.index = Some(index);
            e
        };
        self.read_blob(&mut record.entry, MAX_ENTRY_LEN, "entry")
            .map_err(in_record)?;
        let flag_at = self.offset;
        let flag = self
            .array::<1>(format_args!("the body flag"))
            .map_err(in_record)?[0];
        match flag {
            0 => {
                record.has_body = false;
                record.body.clear();
            }
            1 => {
                record.has_body = true;
                self.read_blob(&mut record.body, MAX_BODY_LEN, "body")
                    .map_err(in_record)?;
            }
            other => {
                return Err(in_record(
                    self.error_at(flag_at, format!("body flag is {other}, not 0 or 1")),
                ));
            }
        }
        record.index = index;
        self.next += 1;
        Ok(true)
    }

    /// Reads the trailer once every record has been read, checks that nothing follows
    /// it, and returns the signed checkpoint note (not yet opened).
    pub fn finish(mut self) -> Result<String, ExportError> {
        if self.next < self.header.to {
            return Err(self.error_at(
                self.offset,
                format!("records remain unread from index {}", self.next),
            ));
        }
        let mut note = Vec::new();
        self.read_blob(&mut note, MAX_CHECKPOINT_LEN, "trailer checkpoint")?;
        let note_at = self.offset - note.len() as u64;
        let note = String::from_utf8(note)
            .map_err(|_| self.error_at(note_at, "the trailer checkpoint is not UTF-8"))?;
        let mut extra = [0u8; 1];
        loop {
            match self.input.read(&mut extra) {
                Ok(0) => return Ok(note),
                Ok(_) => {
                    return Err(self.error_at(self.offset, "bytes after the trailer"));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error_at(self.offset, format!("read failed: {e}"))),
            }
        }
    }

    fn error_at(&self, offset: u64, message: impl Into<String>) -> ExportError {
        ExportError {
            offset,
            index: None,
            message: message.into(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: fmt::Arguments<'_>) -> Result<(), ExportError> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.error_at(
                self.offset,
                format!("the file ends while reading {what} (truncated)"),
            )),
            Err(e) => Err(self.error_at(self.offset, format!("read failed: {e}"))),
        }
    }

    fn array<const N: usize>(&mut self, what: fmt::Arguments<'_>) -> Result<[u8; N], ExportError> {
        let mut out = [0u8; N];
        self.read_exact(&mut out, what)?;
        Ok(out)
    }

    /// Reads a u32 length, checks it against `max`, then that many bytes into `buf`.
    fn read_blob(&mut self, buf: &mut Vec<u8>, max: u32, what: &str) -> Result<(), ExportError> {
        let len_at = self.offset;
        let len = u32::from_be_bytes(self.array(format_args!("the {what} length"))?);
        if len > max {
            return Err(self.error_at(
                len_at,
                format!("{what} length {len} is above the limit of {max} bytes"),
            ));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        self.read_exact(buf, format_args!("the {what}"))
    }
}

impl<R: Read> Iterator for ExportReader<R> {
    type Item = Result<Record, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = Record::default();
        match self.next_record(&mut record) {
            Ok(true) => Some(Ok(record)),
            Ok(false) => None,
            Err(e) => {
                // Stop after an error: the position in the file is lost.
                self.next = self.header.to;
                Some(Err(e))
            }
        }
    }
}

/// Writes an export file: the header at creation, then exactly `to - from` records, then
/// the trailer.
pub struct ExportWriter<W: Write> {
    out: BufWriter<W>,
    remaining: u64,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

fn u32_len(len: usize, max: u32, what: &str) -> io::Result<[u8; 4]> {
    match u32::try_from(len) {
        Ok(n) if n <= max => Ok(n.to_be_bytes()),
        _ => Err(invalid(format!(
            "{what} of {len} bytes is above the limit of {max} bytes"
        ))),
    }
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header of an export of the entries `[from, to)` of the log `origin`;
    /// `frontier` is the compact range of `[0, from)`.
    pub fn new(
        w: W,
        origin: &str,
        from: u64,
        to: u64,
        frontier: &CompactRange,
    ) -> io::Result<ExportWriter<W>> {
        if to < from {
            return Err(invalid(format!(
                "export end {to} is below its start {from}"
            )));
        }
        if frontier.size() != from {
            return Err(invalid(format!(
                "the frontier has size {}, the export starts at {from}",
                frontier.size()
            )));
        }
        let len = u16::try_from(origin.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid("the origin must be 1 to 65535 bytes"))?;
        let mut out = BufWriter::with_capacity(256 << 10, w);
        out.write_all(MAGIC)?;
        out.write_all(&EXPORT_VERSION.to_be_bytes())?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(origin.as_bytes())?;
        out.write_all(&from.to_be_bytes())?;
        out.write_all(&to.to_be_bytes())?;
        out.write_all(&[frontier.subtrees().len() as u8])?;
        for h in frontier.subtrees() {
            out.write_all(&h.0)?;
        }
        Ok(ExportWriter {
            out,
            remaining: to - from,
        })
    }

    /// Writes the next record: an entry and its body (`None` for a delete).
    pub fn record(&mut self, entry: &[u8], body: Option<&[u8]>) -> io::Result<()> {
        if self.remaining == 0 {
            return Err(invalid("more records than the export's range holds"));
        }
        self.out
            .write_all(&u32_len(entry.len(), MAX_ENTRY_LEN, "an entry")?)?;
        self.out.write_all(entry)?;
        match body {
            None => self.out.write_all(&[0])?,
            Some(body) => {
                let len = u32_len(body.len(), MAX_BODY_LEN, "a body")?;
                self.out.write_all(&[1])?;
                self.out.write_all(&len)?;
                self.out.write_all(body)?;
            }
        }
        self.remaining -= 1;
        Ok(())
    }

    /// Writes the trailer (the signed checkpoint note of size `to`), flushes, and returns
    /// the underlying writer. Fails if fewer than `to - from` records were written.
    pub fn finish(mut self, checkpoint_note: &str) -> io::Result<W> {
        if self.remaining != 0 {
            return Err(invalid(format!(
                "{} records are missing from the export",
                self.remaining
            )));
        }
        self.out.write_all(&u32_len(
            checkpoint_note.len(),
            MAX_CHECKPOINT_LEN,
            "the checkpoint note",
        )?)?;
        self.out.write_all(checkpoint_note.as_bytes())?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

/// What a successful audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// The log's origin.
    pub origin: String,
    /// `A`.
    pub from: u64,
    /// `B`, the size of the verified checkpoint.
    pub to: u64,
    /// Distinct documents revised in the export.
    pub documents: u64,
    /// Distinct tables revised in the export.
    pub tables: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// State roots checked against the state recomputed from the entries.
    pub state_roots: u64,
    /// State roots not checked: the export starts past index 0, so the state before its
    /// first entry is not known.
    pub state_roots_unchecked: u64,
    /// The verified root hash.
    pub root: Hash,
    /// Names of the trusted keys that signed the checkpoint.
    pub signed_by: Vec<String>,
}

/// Why an audit did not pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuditError {
    /// The file is not a well-formed export (cut short, bad lengths, trailing bytes...).
    Malformed(ExportError),
    /// The trailer's checkpoint does not open with the trusted keys or is not a checkpoint.
    Checkpoint(CheckpointError),
    /// The export is well formed but does not verify; the message names the index (or the
    /// checkpoint) and what is wrong.
    Failed(String),
    /// The temporary files of the per-document check could not be used.
    Temp(io::Error),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::Malformed(e) => write!(f, "malformed export: {e}"),
            AuditError::Checkpoint(e) => write!(f, "trailer checkpoint: {e}"),
            AuditError::Failed(m) => f.write_str(m),
            AuditError::Temp(e) => write!(f, "temporary file for the document check: {e}"),
        }
    }
}

impl std::error::Error for AuditError {}

fn failed(index: u64, what: impl fmt::Display) -> AuditError {
    AuditError::Failed(format!("index {index}: {what}"))
}

/// The transaction being walked through: where the previous revision left it.
struct TxState {
    tx_id: u64,
    position: u32,
    revisions: u32,
    commit: u64,
}

/// Checks a whole export; see the module documentation for what is checked.
///
/// `progress(done, total)` is called every few thousand records with the records read so
/// far and the number in the export.
pub fn audit<R: Read>(
    mut reader: ExportReader<R>,
    keys: &[Verifier],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<AuditSummary, AuditError> {
    let header = reader.header().clone();
    let total = header.to - header.from;
    let mut range = header.frontier.clone();
    let mut sorter = DocSorter::new();
    let mut record = Record::default();
    let mut tx: Option<TxState> = None;
    let mut state = if header.from == 0 {
        StateReplay::from_start()
    } else {
        StateReplay::without_state()
    };
    let mut last_table: (String, u64) = (String::new(), table_key(""));
    while reader
        .next_record(&mut record)
        .map_err(AuditError::Malformed)?
    {
        let index = record.index;
        range.append(leaf_hash(&record.entry));
        let entry = Entry::decode(&record.entry).map_err(|e| failed(index, e))?;
        check_body(index, &entry, record.body())?;
        if (entry.operation == Operation::Insert) != (entry.version == 0) {
            return Err(failed(
                index,
                format!(
                    "{} at version {} (version 0 is exactly the insert)",
                    op_name(entry.operation),
                    entry.version
                ),
            ));
        }
        check_transaction(index, header.from, &entry, tx.as_ref())?;
        state.apply(index, &entry).map_err(|e| failed(index, e))?;
        tx = Some(TxState {
            tx_id: entry.tx_id,
            position: entry.tx_position,
            revisions: entry.tx_revisions,
            commit: entry.commit_time_micros,
        });
        if last_table.0 != entry.table {
            last_table = (entry.table.clone(), table_key(&entry.table));
        }
        sorter
            .push(tuple(last_table.1, &entry, index))
            .map_err(AuditError::Temp)?;
        let done = index - header.from + 1;
        if done.is_multiple_of(4096) {
            progress(done, total);
        }
    }
    progress(total, total);
    let bytes_before_trailer = reader.offset();
    let note = reader.finish().map_err(AuditError::Malformed)?;
    let bytes = bytes_before_trailer + 4 + note.len() as u64;
    let head = open_checkpoint(note.as_bytes(), keys).map_err(AuditError::Checkpoint)?;
    let c = &head.checkpoint;
    if c.origin != header.origin {
        return Err(AuditError::Failed(format!(
            "checkpoint: origin {:?} is not the export header's {:?}",
            c.origin, header.origin
        )));
    }
    if c.size != header.to {
        return Err(AuditError::Failed(format!(
            "checkpoint: size {} but the export ends at index {}",
            c.size, header.to
        )));
    }
    if c.root != range.root() {
        return Err(AuditError::Failed(format!(
            "checkpoint of size {}: its root {} is not the root of the exported entries ({})",
            c.size,
            c.root.to_hex(),
            range.root().to_hex()
        )));
    }
    let (documents, tables) = check_documents(sorter, header.from == 0)?;
    Ok(AuditSummary {
        origin: header.origin,
        from: header.from,
        to: header.to,
        documents,
        tables,
        bytes,
        state_roots: state.roots_checked(),
        state_roots_unchecked: state.roots_unchecked(),
        root: c.root,
        signed_by: head.verified_by,
    })
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Insert => "insert",
        Operation::Update => "update",
        Operation::Delete => "delete",
    }
}

fn check_body(index: u64, entry: &Entry, body: Option<&[u8]>) -> Result<(), AuditError> {
    match (&entry.body_hash, body) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(failed(index, "a delete carries a body")),
        (Some(_), None) => Err(failed(
            index,
            format!("the {} has no body", op_name(entry.operation)),
        )),
        (Some(want), Some(body)) => {
            if Hash(Sha256::digest(body).into()) == *want {
                Ok(())
            } else {
                Err(failed(index, "body does not match its entry's hash"))
            }
        }
    }
}

fn check_transaction(
    index: u64,
    from: u64,
    entry: &Entry,
    prev: Option<&TxState>,
) -> Result<(), AuditError> {
    let Some(prev) = prev else {
        // The first record: a full export starts with transaction 0; a partial one may
        // start anywhere inside a transaction.
        if from == 0 && (entry.tx_id != 0 || entry.tx_position != 0) {
            return Err(failed(
                index,
                format!(
                    "the journal starts with transaction {} at position {}, not transaction 0 at position 0",
                    entry.tx_id, entry.tx_position
                ),
            ));
        }
        return Ok(());
    };
    if prev.position + 1 < prev.revisions {
        // Inside a transaction: the next revision of the same one.
        if entry.tx_id != prev.tx_id || entry.tx_position != prev.position + 1 {
            return Err(failed(
                index,
                format!(
                    "transaction {} position {} follows transaction {} position {} of {} revisions (a transaction's revisions must be consecutive)",
                    entry.tx_id, entry.tx_position, prev.tx_id, prev.position, prev.revisions
                ),
            ));
        }
        if entry.tx_revisions != prev.revisions {
            return Err(failed(
                index,
                format!(
                    "transaction {} has {} revisions here but {} at the previous index",
                    entry.tx_id, entry.tx_revisions, prev.revisions
                ),
            ));
        }
        if entry.commit_time_micros != prev.commit {
            return Err(failed(
                index,
                format!(
                    "commit time {} differs from the {} of the rest of transaction {}",
                    entry.commit_time_micros, prev.commit, entry.tx_id
                ),
            ));
        }
    } else if entry.tx_id != prev.tx_id.wrapping_add(1) || entry.tx_position != 0 {
        return Err(failed(
            index,
            format!(
                "transaction {} position {} follows the end of transaction {} (expected transaction {} position 0)",
                entry.tx_id,
                entry.tx_position,
                prev.tx_id,
                prev.tx_id.wrapping_add(1)
            ),
        ));
    } else if entry.commit_time_micros < prev.commit {
        return Err(failed(
            index,
            format!(
                "commit time {} is before the previous transaction's {}",
                entry.commit_time_micros, prev.commit
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Per-document check: external sort of fixed-size tuples
// ---------------------------------------------------------------------------------------

/// One revision, for the per-document check. Ordered by table, document, then index;
/// stored in run files as 41 bytes, `table (8) || document (16) || index (8) ||
/// version (8) || operation (1)`, big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tuple {
    table: u64,
    document: u128,
    index: u64,
    version: u64,
    op: u8,
}

const TUPLE_LEN: usize = 41;

impl Tuple {
    fn to_bytes(self) -> [u8; TUPLE_LEN] {
        let mut b = [0u8; TUPLE_LEN];
        b[..8].copy_from_slice(&self.table.to_be_bytes());
        b[8..24].copy_from_slice(&self.document.to_be_bytes());
        b[24..32].copy_from_slice(&self.index.to_be_bytes());
        b[32..40].copy_from_slice(&self.version.to_be_bytes());
        b[40] = self.op;
        b
    }

    fn from_bytes(b: &[u8; TUPLE_LEN]) -> Tuple {
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(x)
        };
        let mut d = [0u8; 16];
        d.copy_from_slice(&b[8..24]);
        Tuple {
            table: u64_at(0),
            document: u128::from_be_bytes(d),
            index: u64_at(24),
            version: u64_at(32),
            op: b[40],
        }
    }
}

fn table_key(table: &str) -> u64 {
    let d = Sha256::new()
        .chain_update(b"graven audit table\n")
        .chain_update(table.as_bytes())
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    u64::from_be_bytes(out)
}

fn tuple(table: u64, entry: &Entry, index: u64) -> Tuple {
    // Length-prefixed, so that no two (table, id) pairs feed the same bytes.
    let d = Sha256::new()
        .chain_update((entry.table.len() as u64).to_be_bytes())
        .chain_update(entry.table.as_bytes())
        .chain_update(entry.id.as_bytes())
        .finalize();
    let mut doc = [0u8; 16];
    doc.copy_from_slice(&d[..16]);
    Tuple {
        table,
        document: u128::from_be_bytes(doc),
        index,
        version: entry.version,
        op: entry.operation.code(),
    }
}

/// A private temporary directory, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> io::Result<TempDir> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let name = format!(
            "graven-audit-{}-{:016x}",
            std::process::id(),
            u64::from_be_bytes(random)
        );
        let path = std::env::temp_dir().join(name);
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Collects tuples and hands them back sorted, spilling sorted runs to temporary files.
struct DocSorter {
    run: Vec<Tuple>,
    runs: Vec<PathBuf>,
    dir: Option<TempDir>,
    files: u64,
    run_len: usize,
    fan_in: usize,
}

impl DocSorter {
    fn new() -> DocSorter {
        DocSorter::with_limits(SORT_RUN, MERGE_FAN_IN)
    }

    fn with_limits(run_len: usize, fan_in: usize) -> DocSorter {
        DocSorter {
            run: Vec::new(),
            runs: Vec::new(),
            dir: None,
            files: 0,
            run_len: run_len.max(1),
            fan_in: fan_in.max(2),
        }
    }

    fn push(&mut self, t: Tuple) -> io::Result<()> {
        if self.run.len() == self.run_len {
            self.spill()?;
        }
        self.run.push(t);
        Ok(())
    }

    fn new_file(&mut self) -> io::Result<(PathBuf, BufWriter<fs::File>)> {
        if self.dir.is_none() {
            self.dir = Some(TempDir::create()?);
        }
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.0.as_path())
            .unwrap_or(Path::new("."));
        let path = dir.join(format!("run-{}", self.files));
        self.files += 1;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, BufWriter::with_capacity(256 << 10, file)))
    }

    fn spill(&mut self) -> io::Result<()> {
        self.run.sort_unstable();
        let (path, mut out) = self.new_file()?;
        for t in &self.run {
            out.write_all(&t.to_bytes())?;
        }
        out.flush()?;
        self.run.clear();
        self.runs.push(path);
        Ok(())
    }

    /// All tuples, sorted.
    fn finish(mut self) -> io::Result<Sorted> {
        if self.runs.is_empty() {
            self.run.sort_unstable();
            return Ok(Sorted::Memory(std::mem::take(&mut self.run).into_iter()));
        }
        if !self.run.is_empty() {
            self.spill()?;
        }
        self.run = Vec::new(); // release the run buffer before merging
        while self.runs.len() > self.fan_in {
            let group: Vec<PathBuf> = self.runs.drain(..self.fan_in).collect();
            let mut merge = Merge::open(&group)?;
            let (path, mut out) = self.new_file()?;
            while let Some(t) = merge.next()? {
                out.write_all(&t.to_bytes())?;
            }
            out.flush()?;
            drop(merge);
            for p in &group {
                fs::remove_file(p)?;
            }
            self.runs.push(path);
        }
        let mut merge = Merge::open(&self.runs)?;
        merge._dir = self.dir.take();
        Ok(Sorted::Merge(merge))
    }
}

/// A k-way merge of sorted run files.
struct Merge {
    inputs: Vec<BufReader<fs::File>>,
    heap: BinaryHeap<Reverse<(Tuple, usize)>>,
    /// The temporary directory of the final merge, removed when the merge is dropped.
    _dir: Option<TempDir>,
}

impl Merge {
    fn open(paths: &[PathBuf]) -> io::Result<Merge> {
        let mut merge = Merge {
            inputs: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::with_capacity(paths.len()),
            _dir: None,
        };
        for (i, p) in paths.iter().enumerate() {
            merge
                .inputs
                .push(BufReader::with_capacity(64 << 10, fs::File::open(p)?));
            merge.refill(i)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, i: usize) -> io::Result<()> {
        let mut t = [0u8; TUPLE_LEN];
        match self.inputs[i].read_exact(&mut t) {
            Ok(()) => {
                self.heap.push(Reverse((Tuple::from_bytes(&t), i)));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn next(&mut self) -> io::Result<Option<Tuple>> {
        let Some(Reverse((t, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(i)?;
        Ok(Some(t))
    }
}

/// The sorted tuples: in memory if they fit one run, else merged from files (the
/// temporary directory lives as long as the merge).
enum Sorted {
    Memory(std::vec::IntoIter<Tuple>),
    Merge(Merge),
}

impl Sorted {
    fn next(&mut self) -> io::Result<Option<Tuple>> {
        match self {
            Sorted::Memory(it) => Ok(it.next()),
            Sorted::Merge(m) => m.next(),
        }
    }
}

/// Walks every document's revisions in index order: dense versions, nothing after a
/// delete, and (in a full export) a start at version 0. Reports the discrepancy with the
/// lowest index. Returns the numbers of documents and tables.
fn check_documents(sorter: DocSorter, full: bool) -> Result<(u64, u64), AuditError> {
    let mut sorted = sorter.finish().map_err(AuditError::Temp)?;
    let mut documents = 0u64;
    let mut tables = 0u64;
    let mut prev: Option<Tuple> = None;
    let mut first_problem: Option<(u64, String)> = None;
    while let Some(t) = sorted.next().map_err(AuditError::Temp)? {
        let (index, version) = (t.index, t.version);
        let same_doc = prev.is_some_and(|p| (p.table, p.document) == (t.table, t.document));
        if prev.is_none_or(|p| p.table != t.table) {
            tables += 1;
        }
        let problem = match prev {
            Some(p) if same_doc => {
                let (p_index, p_version) = (p.index, p.version);
                if p.op == Operation::Delete.code() {
                    Some(format!(
                        "document revised (version {version}) after its delete at index {p_index}"
                    ))
                } else if Some(version) != p_version.checked_add(1) {
                    Some(format!(
                        "document version {version} follows version {p_version} at index {p_index} (versions must be dense)"
                    ))
                } else {
                    None
                }
            }
            _ => {
                documents += 1;
                (full && version != 0).then(|| {
                    format!(
                        "document first appears at version {version} in a full export (it must start at version 0)"
                    )
                })
            }
        };
        if let Some(why) = problem
            && first_problem.as_ref().is_none_or(|(i, _)| index < *i)
        {
            first_problem = Some((index, why));
        }
        prev = Some(t);
    }
    match first_problem {
        Some((index, why)) => Err(failed(index, why)),
        None => Ok((documents, tables)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_all(mut s: Sorted) -> Vec<Tuple> {
        let mut out = Vec::new();
        while let Some(t) = s.next().expect("next") {
            out.push(t);
        }
        out
    }

    #[test]
    fn external_sort_equals_in_memory_sort() {
        // More runs than the fan-in forces intermediate merge passes.
        let n = 100 * 30 + 17;
        let mut want = Vec::with_capacity(n);
        let mut sorter = DocSorter::with_limits(100, 4);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..n as u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = Tuple {
                table: x % 1000,
                document: u128::from(x) << 64,
                index: i,
                version: x >> 32,
                op: (x % 3) as u8,
            };
            assert_eq!(Tuple::from_bytes(&t.to_bytes()), t);
            want.push(t);
            sorter.push(t).expect("push");
        }
        want.sort_unstable();
        let sorted = sorter.finish().expect("finish");
        assert!(matches!(sorted, Sorted::Merge(_)));
        assert_eq!(sorted_all(sorted), want);
        let mut small = DocSorter::with_limits(100, 4);
        for t in want.iter().rev().take(50) {
            small.push(*t).expect("push");
        }
        let sorted = small.finish().expect("finish");
        assert!(matches!(sorted, Sorted::Memory(..)));
        assert_eq!(sorted_all(sorted), want[want.len() - 50..].to_vec());
    }
}
