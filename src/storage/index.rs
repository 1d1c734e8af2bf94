//! Secondary indexes: their definitions, the ordered encoding of the values they hold, and
//! their entries (docs/FORMAT.md §9.8).
//!
//! An index maps the value at one path of a table's documents to the ids of the live
//! documents holding it. Its entries are keys only: `u32 BE index id || value || id`,
//! where the value's encoding sorts as the values do within each type (numbers as
//! numbers, strings by code point) and delimits itself, so that one value's entries are
//! exactly the keys that start with its encoding. A document without the path (or with
//! `null` there) has no entry. The sequencer writes entries in the same batch as the
//! revisions that change them.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DOCS, DocRow, Error, INDEX_DEFS, INDEX_ENTRIES, META, Result, Snapshot, Writer};
use super::{doc_key, split_doc_key, table_end};
use crate::model::PathStep;

/// The next index id to give (u32 BE); absent before the first index.
const META_NEXT_INDEX: &[u8] = b"next_index_id";

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

/// The value and document id of an entry key.
fn split_entry(key: &[u8]) -> Result<(&[u8], String)> {
    let bad = || Error::damaged(format!("index entry {} is malformed", hex::encode(key)));
    let rest = key.get(4..).ok_or_else(bad)?;
    let len = encoded_len(rest).ok_or_else(bad)?;
    let id = String::from_utf8(rest[len..].to_vec()).map_err(|_| bad())?;
    Ok((&rest[..len], id))
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

    /// The ids of the documents whose value in index `id` is in `range`, in value order
    /// (then id order).
    pub fn index_ids(
        &self,
        id: u32,
        range: &ValueRange,
    ) -> Result<impl Iterator<Item = Result<String>> + '_> {
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
        Ok(rows.map(|row| Ok(split_entry(&row?.0)?.1)))
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

    /// Every index entry as (index id, value, document id), for the tamper check.
    pub fn all_index_entries(
        &self,
    ) -> Result<impl Iterator<Item = Result<(u32, Vec<u8>, String)>> + '_> {
        Ok(self
            .view
            .range(INDEX_ENTRIES, Bound::Unbounded, Bound::Unbounded)?
            .map(|row| {
                let (key, _) = row?;
                let id = key
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| Error::damaged("an index entry key is too short"))?;
                let (value, doc) = split_entry(&key)?;
                Ok((id, value.to_vec(), doc))
            }))
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
        Ok(())
    }

    /// Removes an index definition.
    pub fn remove_index_def(&mut self, id: u32) {
        self.remove(INDEX_DEFS, id.to_be_bytes());
    }

    /// Adds document `doc` under `value` to index `id`.
    pub fn put_index_entry(&mut self, id: u32, value: &[u8], doc: &str) {
        self.put(INDEX_ENTRIES, entry_key(id, value, doc), Vec::new());
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
            (five.as_slice(), "x".into())
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
}
