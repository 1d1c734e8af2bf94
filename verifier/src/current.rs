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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{FormatError, format_error, parse_decimal};
use crate::hash::Hash;
use crate::map::MapProof;
use crate::proof::MAX_PROOF_HASHES;

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
