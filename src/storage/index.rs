//! Secondary indexes: their definitions, the ordered encoding of the values they hold, and
//! their entries (docs/FORMAT.md §9.8).
//!
//! An index maps the value at one path of a table's documents to the ids of the live
//! documents holding it. An entry's key is `u32 BE index id || value || id`, where the
//! value's encoding sorts as the values do within each type (numbers as numbers, strings
//! by code point) and delimits itself, so that one value's entries are exactly the keys
//! that start with its encoding; its value is the document's current version and journal
//! index, so that a lookup reads the revision without the document's current-state row.
//! A document without the path (or with `null` there) has no entry. The sequencer writes
//! entries in the same batch as the revisions that change them, and every change of a
//! definition moves the `index_generation` meta key on, so that a reader may keep the
//! definitions it read until it moves ([`DefsCache`]).

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DOCS, DocRow, Error, INDEX_DEFS, INDEX_ENTRIES, META, Result, Snapshot, Store};
use super::{Writer, be, doc_key, read_be, split_doc_key, table_end};
use crate::model::PathStep;

/// The next index id to give (u32 BE); absent before the first index.
const META_NEXT_INDEX: &[u8] = b"next_index_id";
/// How many times the index definitions changed (u64 BE); absent (0) before the first.
const META_INDEX_GENERATION: &[u8] = b"index_generation";
/// Entries rewritten per batch by the layout-4 upgrade ([`Store::upgrade_index_entries`]).
const UPGRADE_CHUNK: usize = 4096;

/// Type tags of [`encode_value`], in the order values of different types sort.
const FALSE: u8 = 0x01;
const TRUE: u8 = 0x02;
const NUMBER: u8 = 0x03;
const STRING: u8 = 0x04;
const LIST: u8 = 0x05;
const STRUCT: u8 = 0x06;

/// An index definition as stored (JSON, by `u32 BE id` in the `index_defs` key space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    /// Unique in the ledger, never reused (entries of a dropped index may outlive it).
    pub id: u32,
    /// The table.
    pub table: String,
    /// The path indexed.
    pub path: Vec<PathStep>,
    /// Where it is in its life.
    pub state: DefState,
    /// While building: the id of the last document indexed (documents are indexed in id
    /// order); while dropping: the last entry key removed, hex.
    pub cursor: Option<String>,
    /// Documents indexed so far while building.
    pub indexed: u64,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: u64,
}

/// An index definition's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefState {
    /// Writes maintain it; the sequencer adds the table's documents to it, a chunk at a
    /// time, from `cursor` on.
    Building,
    /// Complete.
    Online,
    /// Dropped: nothing maintains it; the sequencer removes its entries, a chunk at a
    /// time, then the definition.
    Dropping,
}

/// A range of encoded values ([`encode_value`]): bounds compare bytewise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueRange {
    /// Low bound.
    pub start: Bound<Vec<u8>>,
    /// High bound.
    pub end: Bound<Vec<u8>>,
}

impl ValueRange {
    /// Exactly `value`.
    pub fn exactly(value: Vec<u8>) -> ValueRange {
        ValueRange {
            start: Bound::Included(value.clone()),
            end: Bound::Included(value),
        }
    }

    /// Every value of the type of `encoded` (its first byte).
    pub fn whole_type(encoded: &[u8]) -> ValueRange {
        let tag = encoded.first().copied().unwrap_or(0);
        ValueRange {
            start: Bound::Included(vec![tag]),
            end: Bound::Excluded(vec![tag.saturating_add(1)]),
        }
    }

    /// Whether the encoded value `v` is in the range.
    pub fn contains(&self, v: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => v >= s.as_slice(),
            Bound::Excluded(s) => v > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => v <= e.as_slice(),
            Bound::Excluded(e) => v < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// The entry keys of index `id` whose values are in the range.
    fn keys(&self, id: u32) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let key = |v: &[u8]| {
            let mut k = id.to_be_bytes().to_vec();
            k.extend_from_slice(v);
            k
        };
        let start = match &self.start {
            Bound::Included(v) => Bound::Included(key(v)),
            Bound::Excluded(v) => Bound::Included(prefix_end(&key(v))),
            Bound::Unbounded => Bound::Included(key(&[])),
        };
        let end = match &self.end {
            Bound::Included(v) => Bound::Excluded(prefix_end(&key(v))),
            Bound::Excluded(v) => Bound::Excluded(key(v)),
            Bound::Unbounded => Bound::Excluded(prefix_end(&key(&[]))),
        };
        (start, end)
    }
}

/// The first key after every key that starts with `prefix` (which is not all 0xFF: keys
/// here start with an index id below `u32::MAX`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            break;
        }
    }
    end
}

/// The value at `path` in `doc`, if there is one.
pub fn value_at<'v>(doc: &'v Value, path: &[PathStep]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, step| match step {
        PathStep::Field(name) => v.as_object()?.get(name),
        PathStep::Index(i) => v.as_array()?.get(usize::try_from(*i).ok()?),
    })
}

/// The ordered, self-delimiting encoding of an indexed value; `None` for `null`, which
/// is not indexed. Numbers are IEEE doubles (as JSON documents hold them, -0 as 0) in
/// 8 bytes that sort numerically; strings are their UTF-8 bytes with 0x00 written
/// 0x00 0x01, ended by 0x00 0x00; lists and structs the same of their canonical JSON
/// (so that equal values encode equally).
pub fn encode_value(value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match value {
        Value::Null => return None,
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&ordered_f64(n.as_f64().unwrap_or(0.0)));
        }
        Value::String(s) => {
            out.push(STRING);
            escape_into(s.as_bytes(), &mut out);
        }
        Value::Array(_) | Value::Object(_) => {
            out.push(if value.is_array() { LIST } else { STRUCT });
            // A value read from a stored document is canonical JSON already.
            let json = crate::json::canonical(value).unwrap_or_default();
            escape_into(&json, &mut out);
        }
    }
    Some(out)
}

/// The 8 bytes of `x` that sort as doubles do (-0 as 0).
fn ordered_f64(x: f64) -> [u8; 8] {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    let bits = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    bits.to_be_bytes()
}

fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(1);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The length of the encoded value at the start of `bytes`.
fn encoded_len(bytes: &[u8]) -> Option<usize> {
    match *bytes.first()? {
        FALSE | TRUE => Some(1),
        NUMBER => (bytes.len() >= 9).then_some(9),
        STRING | LIST | STRUCT => {
            let mut i = 1;
            loop {
                match (bytes.get(i)?, bytes.get(i + 1)) {
                    (0, Some(0)) => return Some(i + 2),
                    (0, Some(1)) => i += 2,
                    (0, _) => return None,
                    _ => i += 1,
                }
            }
        }
        _ => None,
    }
}

/// An entry key.
fn entry_key(id: u32, value: &[u8], doc: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + value.len() + doc.len());
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(value);
    key.extend_from_slice(doc.as_bytes());
    key
}

/// The index id, value and document id of an entry key.
fn split_entry(key: &[u8]) -> Result<(u32, &[u8], String)> {
    let bad = || Error::damaged(format!("index entry {} is malformed", hex::encode(key)));
    let (index, rest) = key.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = encoded_len(rest).ok_or_else(bad)?;
    let id = String::from_utf8(rest[len..].to_vec()).map_err(|_| bad())?;
    Ok((u32::from_be_bytes(*index), &rest[..len], id))
}

/// An entry's value: the document's current version and journal index.
fn entry_value(row: DocRow) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&be(row.version));
    v.extend_from_slice(&be(row.index));
    v
}

/// The current row an entry's value names (the document is live: it has an entry).
fn entry_row(key: &[u8], value: &[u8]) -> Result<DocRow> {
    match (
        value.get(..8).and_then(read_be),
        value.get(8..).and_then(read_be),
    ) {
        (Some(version), Some(index)) if value.len() == 16 => Ok(DocRow {
            version,
            index,
            live: true,
        }),
        _ => Err(Error::damaged(format!(
            "index entry {}: the value {} is not a version and a journal index",
            hex::encode(key),
            hex::encode(value)
        ))),
    }
}

fn decode_def(value: &[u8]) -> Result<IndexDef> {
    serde_json::from_slice(value)
        .map_err(|e| Error::damaged(format!("an index definition is malformed: {e}")))
}

/// The documents of one table, in id order, as current-state rows from a docs range.
fn current_rows<'a>(
    view: &'a dyn super::View,
    table: &str,
    after: Option<&str>,
) -> Result<impl Iterator<Item = Result<(String, DocRow)>> + 'a> {
    let start = match after {
        None => doc_key(table, "", 0)[..table.len() + 1].to_vec(),
        Some(id) => {
            let mut k = doc_key(table, id, u64::MAX);
            k.push(0);
            k
        }
    };
    let end = table_end(table);
    Ok(view
        .range(
            DOCS,
            Bound::Included(start.as_slice()),
            Bound::Excluded(end.as_slice()),
        )?
        .filter_map(|row| {
            let (key, value) = match row {
                Ok(row) => row,
                Err(e) => return Some(Err(e)),
            };
            // Only current-state rows (version u64::MAX): 8 bytes of 0xFF at the end.
            if !key.ends_with(&[0xFF; 8]) {
                return None;
            }
            Some(split_doc_key(&key).and_then(|(_, id, _)| Ok((id, DocRow::decode(&value)?))))
        }))
}

impl Snapshot {
    /// Every index definition of the ledger, by id.
    pub fn index_defs(&self) -> Result<Vec<IndexDef>> {
        self.view
            .range(INDEX_DEFS, Bound::Unbounded, Bound::Unbounded)?
            .map(|row| decode_def(&row?.1))
            .collect()
    }

    /// The documents whose value in index `id` is in `range`, with their current rows, in
    /// value order (then id order).
    pub fn index_docs(
        &self,
        id: u32,
        range: &ValueRange,
    ) -> Result<impl Iterator<Item = Result<(String, DocRow)>> + '_> {
        let (start, end) = range.keys(id);
        let bound = |b: &Bound<Vec<u8>>| match b {
            Bound::Included(k) => Bound::Included(k.clone()),
            Bound::Excluded(k) => Bound::Excluded(k.clone()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let (start, end) = (bound(&start), bound(&end));
        let rows = self.view.range(
            INDEX_ENTRIES,
            start.as_ref().map(Vec::as_slice),
            end.as_ref().map(Vec::as_slice),
        )?;
        Ok(rows.map(|row| {
            let (key, value) = row?;
            Ok((split_entry(&key)?.2, entry_row(&key, &value)?))
        }))
    }

    /// How many times the index definitions have changed ([`DefsCache`]).
    pub fn index_generation(&self) -> Result<u64> {
        match self.get(META, META_INDEX_GENERATION)? {
            None => Ok(0),
            Some(v) => read_be(&v)
                .filter(|_| v.len() == 8)
                .ok_or_else(|| Error::damaged("meta: index_generation is not 8 bytes")),
        }
    }

    /// The live and deleted documents of `table` after id `after` (from the first when
    /// `None`), in id order, with their current-state rows.
    pub fn current_rows(
        &self,
        table: &str,
        after: Option<&str>,
    ) -> Result<impl Iterator<Item = Result<(String, DocRow)>> + '_> {
        current_rows(self.view.as_ref(), table, after)
    }

    /// The entries of index `id`, in key order, after `after` (an entry key).
    pub fn index_entries(
        &self,
        id: u32,
        after: Option<&[u8]>,
    ) -> Result<impl Iterator<Item = Result<Vec<u8>>> + '_> {
        let first = id.to_be_bytes().to_vec();
        let end = (id + 1).to_be_bytes().to_vec();
        let start = match after {
            Some(k) => Bound::Excluded(k.to_vec()),
            None => Bound::Included(first),
        };
        Ok(self
            .view
            .range(
                INDEX_ENTRIES,
                start.as_ref().map(Vec::as_slice),
                Bound::Excluded(end.as_slice()),
            )?
            .map(|row| Ok(row?.0)))
    }

    /// The number of index entries, of every index.
    pub fn index_entry_count(&self) -> Result<u64> {
        self.view.len(INDEX_ENTRIES)
    }

    /// Every index entry, for the tamper check.
    pub fn all_index_entries(&self) -> Result<impl Iterator<Item = Result<IndexEntry>> + '_> {
        Ok(self
            .view
            .range(INDEX_ENTRIES, Bound::Unbounded, Bound::Unbounded)?
            .map(|row| {
                let (key, value) = row?;
                let (index, encoded, doc) = split_entry(&key)?;
                Ok(IndexEntry {
                    index,
                    value: encoded.to_vec(),
                    row: entry_row(&key, &value)?,
                    doc,
                })
            }))
    }
}

/// An index entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The index's id.
    pub index: u32,
    /// The encoded value ([`encode_value`]).
    pub value: Vec<u8>,
    /// The document's id.
    pub doc: String,
    /// The document's current row, as the entry names it.
    pub row: DocRow,
}

/// The index definitions a reader last read, kept until they change: the definitions
/// are read and decoded again only when a snapshot's `index_generation` differs from the
/// one they were read at. Definitions change rarely (an index created, a build chunk, a
/// drop), queries read them every time.
#[derive(Debug, Default)]
pub struct DefsCache(Mutex<Option<(u64, Arc<Vec<IndexDef>>)>>);

impl DefsCache {
    /// The definitions as `snap` has them.
    pub fn get(&self, snap: &Snapshot) -> Result<Arc<Vec<IndexDef>>> {
        let generation = snap.index_generation()?;
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, defs)) = held.as_ref()
            && *g == generation
        {
            return Ok(defs.clone());
        }
        let defs = Arc::new(snap.index_defs()?);
        *held = Some((generation, defs.clone()));
        Ok(defs)
    }
}

impl Store {
    /// Gives every index entry of a layout-4 ledger (keys with empty values) the current
    /// row of its document, a chunk per batch. It can stop anywhere and run again: an
    /// entry rewritten twice gets the same value.
    pub(super) fn upgrade_index_entries(&self) -> Result<()> {
        let total = self.read()?.index_entry_count()?;
        if total > 0 {
            // A million entries take some seconds; the server listens after.
            tracing::info!("storage layout upgrade: rewriting {total} index entries");
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut w = self.write()?;
            let defs = w.index_defs()?;
            let start = match &after {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let keys: Vec<Vec<u8>> = w
                .snap
                .view
                .range(INDEX_ENTRIES, start, Bound::Unbounded)?
                .take(UPGRADE_CHUNK)
                .map(|row| Ok(row?.0))
                .collect::<Result<_>>()?;
            let Some(last) = keys.last().cloned() else {
                return Ok(());
            };
            let mut targets: Vec<(String, String)> = Vec::with_capacity(keys.len());
            for key in &keys {
                let (id, _, doc) = split_entry(key)?;
                let def = defs.iter().find(|d| d.id == id).ok_or_else(|| {
                    Error::damaged(format!("index entry {}: no index {id}", hex::encode(key)))
                })?;
                targets.push((def.table.clone(), doc));
            }
            let refs: Vec<(&str, &str)> = targets
                .iter()
                .map(|(t, d)| (t.as_str(), d.as_str()))
                .collect();
            let rows = w.currents(&refs)?;
            for ((key, row), (table, doc)) in keys.into_iter().zip(rows).zip(&targets) {
                let row = row.filter(|r| r.live).ok_or_else(|| {
                    Error::damaged(format!(
                        "an entry of an index of table {table} names document {doc}, which \
                         is not live"
                    ))
                })?;
                w.put(INDEX_ENTRIES, key, entry_value(row));
            }
            w.commit()?;
            after = Some(last);
        }
    }
}

impl Writer<'_> {
    /// Every index definition, as the batch's snapshot has them (a batch that changes a
    /// definition reads none after).
    pub fn index_defs(&self) -> Result<Vec<IndexDef>> {
        self.snap.index_defs()
    }

    /// The snapshot the batch reads.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// A new index id, never given before.
    pub fn next_index_id(&mut self) -> Result<u32> {
        let next = match self.get(META, META_NEXT_INDEX)? {
            None => 0,
            Some(v) => <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| Error::damaged("meta: next_index_id is not 4 bytes"))?,
        };
        let after = next
            .checked_add(1)
            .filter(|n| *n < u32::MAX)
            .ok_or_else(|| Error::damaged("meta: next_index_id is exhausted"))?;
        self.put(META, META_NEXT_INDEX, after.to_be_bytes().to_vec());
        Ok(next)
    }

    /// Writes an index definition.
    pub fn put_index_def(&mut self, def: &IndexDef) -> Result<()> {
        let json =
            serde_json::to_vec(def).map_err(|e| Error::caused(super::ErrorKind::Failed, e))?;
        self.put(INDEX_DEFS, def.id.to_be_bytes(), json);
        self.next_index_generation()
    }

    /// Removes an index definition.
    pub fn remove_index_def(&mut self, id: u32) -> Result<()> {
        self.remove(INDEX_DEFS, id.to_be_bytes());
        self.next_index_generation()
    }

    /// Moves `index_generation` on: the definitions changed in this batch.
    fn next_index_generation(&mut self) -> Result<()> {
        let now = self.snap.index_generation()?;
        self.put(
            META,
            META_INDEX_GENERATION,
            be(now.wrapping_add(1)).to_vec(),
        );
        Ok(())
    }

    /// Adds document `doc`, whose current row is `row`, under `value` to index `id`; an
    /// entry already there gets the new row.
    pub fn put_index_entry(&mut self, id: u32, value: &[u8], doc: &str, row: DocRow) {
        self.put(INDEX_ENTRIES, entry_key(id, value, doc), entry_value(row));
    }

    /// Removes document `doc` under `value` from index `id`.
    pub fn remove_index_entry(&mut self, id: u32, value: &[u8], doc: &str) {
        self.remove(INDEX_ENTRIES, entry_key(id, value, doc));
    }

    /// Removes an entry by its key ([`Snapshot::index_entries`]).
    pub fn remove_index_key(&mut self, key: Vec<u8>) {
        self.remove(INDEX_ENTRIES, key);
    }

    /// The body of the revision at journal index `index`, as the batch has it (empty for
    /// a delete).
    pub fn body_at(&self, index: u64) -> Result<Vec<u8>> {
        Ok(self.entry_and_body(index)?.1)
    }

    /// The bodies of the revisions at journal indexes `indexes`, as the batch has them,
    /// read in one go (one round trip to a database).
    pub fn bodies_at(&self, indexes: &[u64]) -> Result<Vec<Vec<u8>>> {
        let keys: Vec<Vec<u8>> = indexes.iter().map(|&i| super::be(i).to_vec()).collect();
        let rows = self.get_many(super::LEAVES, &keys)?;
        indexes
            .iter()
            .zip(rows)
            .map(|(&index, row)| Ok(leaf_of(index, row.as_deref())?.body.to_vec()))
            .collect()
    }

    /// The entry and body of the revision at journal index `index`, as the batch has it.
    pub fn entry_and_body(&self, index: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let row = self.get(super::LEAVES, &super::be(index))?;
        let leaf = leaf_of(index, row.as_deref())?;
        Ok((leaf.entry.to_vec(), leaf.body.to_vec()))
    }
}

/// The leaves row of journal index `index` taken apart; a missing or short one is damage.
fn leaf_of(index: u64, row: Option<&[u8]>) -> Result<super::Leaf<'_>> {
    let row = row.ok_or_else(|| Error::damaged(format!("journal row {index} is missing")))?;
    super::decode_leaf(index, row)
        .ok_or_else(|| Error::damaged(format!("journal row {index} is malformed")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodings_sort_as_values_and_delimit_themselves() {
        let ordered = [
            json!(false),
            json!(true),
            json!(-1e300),
            json!(-2.5),
            json!(-1),
            json!(0),
            json!(1e-300),
            json!(1),
            json!(2.5),
            json!(9007199254740992u64),
            json!(""),
            json!("\u{0}"),
            json!("a"),
            json!("a\u{0}"),
            json!("ab"),
            json!("b"),
            json!("é"),
            json!([1]),
            json!({"a": 1}),
        ];
        let encoded: Vec<Vec<u8>> = ordered
            .iter()
            .map(|v| encode_value(v).expect("not null"))
            .collect();
        for pair in encoded.windows(2) {
            assert!(pair[0] < pair[1], "{:?} !< {:?}", pair[0], pair[1]);
        }
        for (v, e) in ordered.iter().zip(&encoded) {
            let mut key = e.clone();
            key.extend_from_slice(b"doc\x00id");
            assert_eq!(encoded_len(&key), Some(e.len()), "{v}");
        }
        assert_eq!(encode_value(&json!(-0.0)), encode_value(&json!(0)));
        assert_eq!(encode_value(&json!(null)), None);
    }

    #[test]
    fn ranges_select_the_keys_of_their_values() {
        let five = encode_value(&json!(5)).expect("number");
        let (start, end) = ValueRange::exactly(five.clone()).keys(7);
        let key = entry_key(7, &five, "x");
        let inside = |k: &[u8]| {
            (match &start {
                Bound::Included(s) => k >= s.as_slice(),
                _ => false,
            }) && (match &end {
                Bound::Excluded(e) => k < e.as_slice(),
                _ => false,
            })
        };
        assert!(inside(&key));
        assert!(!inside(&entry_key(
            7,
            &encode_value(&json!(6)).expect("n"),
            "x"
        )));
        assert!(!inside(&entry_key(8, &five, "x")));
        assert_eq!(
            split_entry(&key).expect("splits"),
            (7, five.as_slice(), "x".into())
        );
        let numbers = ValueRange::whole_type(&five);
        assert!(numbers.contains(&encode_value(&json!(-1e9)).expect("n")));
        assert!(!numbers.contains(&encode_value(&json!("5")).expect("s")));
    }

    #[test]
    fn paths_reach_into_nested_values() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}});
        let path = |s: &[PathStep]| value_at(&doc, s).cloned();
        use PathStep::{Field, Index};
        assert_eq!(
            path(&[
                Field("a".into()),
                Field("b".into()),
                Index(1),
                Field("c".into())
            ]),
            Some(json!("x"))
        );
        assert_eq!(path(&[Field("a".into()), Index(0)]), None);
        assert_eq!(path(&[Field("z".into())]), None);
    }

    /// A store holding documents `a` and `b` of table `t` (b updated once) and an online
    /// index on `n` whose entries are written as layout 4 wrote them (empty values).
    fn layout_4_store() -> (tempfile::TempDir, Store) {
        use super::super::{DEFAULT_CACHE_BYTES, META_FORMAT, NewLedger, NewRevision};
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = NewLedger {
            origin: "test",
            created_micros: 0,
            deletion_protection: false,
            checkpoint: "",
        };
        let store = Store::create(&dir.path().join("t.redb"), DEFAULT_CACHE_BYTES, &ledger)
            .expect("create");
        let mut w = store.write().expect("write");
        let mut range = graven_verify::CompactRange::new();
        let mut previous = None;
        for (i, (id, version, body)) in [
            ("a", 1, r#"{"n":1}"#),
            ("b", 1, r#"{"n":2}"#),
            ("b", 2, r#"{"n":3}"#),
        ]
        .into_iter()
        .enumerate()
        {
            let entry = (i as u64).to_be_bytes();
            let prev = if id == "b" { previous } else { None };
            let index = w
                .append_revision(
                    &mut range,
                    &NewRevision {
                        entry: &entry,
                        body: body.as_bytes(),
                        table: "t",
                        id,
                        version,
                        live: true,
                        previous: prev,
                    },
                )
                .expect("append");
            if id == "b" {
                previous = Some(DocRow {
                    version,
                    index,
                    live: true,
                });
            }
        }
        let def = IndexDef {
            id: 0,
            table: "t".into(),
            path: vec![PathStep::Field("n".into())],
            state: DefState::Online,
            cursor: None,
            indexed: 2,
            created_micros: 0,
        };
        w.put_index_def(&def).expect("def");
        for (n, id) in [(1, "a"), (3, "b")] {
            let v = encode_value(&serde_json::json!(n)).expect("number");
            w.put(INDEX_ENTRIES, entry_key(0, &v, id), Vec::new());
        }
        w.put(META, META_FORMAT, 4u32.to_be_bytes().to_vec());
        w.commit().expect("commit");
        (dir, store)
    }

    #[test]
    fn the_layout_4_upgrade_gives_entries_their_current_rows() {
        let (_dir, store) = layout_4_store();
        let all = |store: &Store| {
            store
                .read()
                .expect("read")
                .all_index_entries()
                .expect("entries")
                .collect::<Result<Vec<_>>>()
        };
        // Layout 4's empty values are not entries of this layout.
        assert!(all(&store).is_err());
        assert!(store.upgrade().expect("upgrade"));
        let snap = store.read().expect("read");
        assert_eq!(
            snap.format().expect("format"),
            super::super::Format::Version(super::super::FORMAT_VERSION)
        );
        let entries = all(&store).expect("entries");
        let rows: Vec<(String, DocRow)> = entries.into_iter().map(|e| (e.doc, e.row)).collect();
        assert_eq!(
            rows,
            vec![
                (
                    "a".into(),
                    DocRow {
                        version: 1,
                        index: 0,
                        live: true
                    }
                ),
                (
                    "b".into(),
                    DocRow {
                        version: 2,
                        index: 2,
                        live: true
                    }
                ),
            ]
        );
        // The same rows through a lookup; and a second upgrade has nothing to do.
        let three = ValueRange::exactly(encode_value(&serde_json::json!(3)).expect("n"));
        let found: Vec<_> = snap
            .index_docs(0, &three)
            .expect("docs")
            .collect::<Result<_>>()
            .expect("rows");
        assert_eq!(found, vec![rows[1].clone()]);
        assert!(!store.upgrade().expect("upgrade again"));
    }

    #[test]
    fn changing_a_definition_moves_the_generation_and_the_cache_follows() {
        let (_dir, store) = layout_4_store();
        let cache = DefsCache::default();
        let before = store.read().expect("read");
        let first = cache.get(&before).expect("defs");
        assert_eq!(first.len(), 1);
        let mut w = store.write().expect("write");
        let mut def = first[0].clone();
        def.state = DefState::Dropping;
        w.put_index_def(&def).expect("def");
        w.commit().expect("commit");
        let after = store.read().expect("read");
        assert_eq!(
            after.index_generation().expect("g"),
            before.index_generation().expect("g") + 1
        );
        assert_eq!(
            cache.get(&after).expect("defs")[0].state,
            DefState::Dropping
        );
        // An older snapshot is answered from its own definitions, not the newer ones.
        assert_eq!(cache.get(&before).expect("defs")[0].state, DefState::Online);
        let mut w = store.write().expect("write");
        w.remove_index_def(0).expect("remove");
        w.commit().expect("commit");
        assert!(
            cache
                .get(&store.read().expect("read"))
                .expect("defs")
                .is_empty()
        );
    }
}
