//! Preparing a transaction: everything about it that needs no ledger state, done on the
//! caller's task (in parallel with other callers) before the one sequencer thread sees it.
//!
//! Names are checked, JSON is parsed strictly and put in canonical form, limits are
//! enforced, ids are generated for inserts without one, body hashes are computed, and a
//! transaction with an idempotency key gets its request hash (docs/FORMAT.md §9.3), which
//! is stored with the key. The shape rules (one write per document, at least one revision)
//! and every condition are the sequencer's ([`super::apply`]).

use graven_verify::Hash;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::json::canonicalize_document;
use crate::model::{
    Condition, Limits, Op, RequestOp, TransactRequest, Transaction, check_document_id,
    check_table_name,
};

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// A transaction with the work done that needs no ledger state.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The validated transaction.
    pub tx: Transaction,
    /// SHA-256 of each operation's body (`None` for deletes and checks), in order.
    pub body_hashes: Vec<Option<Hash>>,
    /// For statements: what they read, which must not have changed when the transaction
    /// commits.
    pub reads: Option<Box<super::reads::ReadSet>>,
}

/// Validates `request` and prepares it for the sequencer; `principal` is recorded in its
/// entries. Errors name the operation and field (`operations[3].json: ...`).
pub fn prepare(request: TransactRequest, limits: &Limits, principal: &str) -> Result<Prepared> {
    if request.ops.is_empty() {
        return Err(Error::invalid(
            "operations: a transaction needs at least one operation",
        ));
    }
    if request.ops.len() > limits.max_transaction_operations {
        return Err(Error::exhausted(format!(
            "operations: {} operations is over the limit of {}",
            request.ops.len(),
            limits.max_transaction_operations
        )));
    }
    if let Some(key) = &request.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES)
    {
        return Err(Error::invalid(format!(
            "idempotency_key: use 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    // Only a request with an idempotency key needs its hash.
    let mut request_hash = request.idempotency_key.as_ref().map(|_| Sha256::new());
    let mut total = 0usize;
    let mut ops = Vec::with_capacity(request.ops.len());
    for (i, op) in request.ops.into_iter().enumerate() {
        let op = validate(i, op, limits)?;
        let (table, id) = op.target();
        total += table.len() + id.len() + op.body().map_or(0, <[u8]>::len);
        if total > limits.max_transaction_bytes {
            return Err(Error::exhausted(format!(
                "operations: the transaction is over the limit of {} bytes (at operations[{i}])",
                limits.max_transaction_bytes
            )));
        }
        if let Some(h) = request_hash.as_mut() {
            hash_op(h, &op);
        }
        ops.push(op);
    }
    generate_missing_ids(&mut ops)?;
    let body_hashes = ops
        .iter()
        .map(|op| op.body().map(|b| Hash(Sha256::digest(b).into())))
        .collect();
    let idempotency = request
        .idempotency_key
        .zip(request_hash)
        .map(|(key, h)| (key, Hash(h.finalize().into())));
    Ok(Prepared {
        tx: Transaction {
            ops,
            idempotency,
            principal: principal.to_owned(),
        },
        body_hashes,
        reads: None,
    })
}

/// Checks one operation's names and JSON and turns it into an [`Op`]; an insert without
/// an id keeps an empty one until [`generate_missing_ids`].
fn validate(i: usize, op: RequestOp, limits: &Limits) -> Result<Op> {
    let table =
        |t: &str| check_table_name(t).map_err(|e| e.context(format!("operations[{i}].table")));
    let id = |d: &str| check_document_id(d).map_err(|e| e.context(format!("operations[{i}].id")));
    Ok(match op {
        RequestOp::Insert {
            table: t,
            id: d,
            json,
        } => {
            table(&t)?;
            if let Some(d) = &d {
                id(d)?;
            }
            Op::Insert {
                table: t,
                id: d.unwrap_or_default(),
                body: canonical(i, &json, limits)?,
            }
        }
        RequestOp::Update {
            table: t,
            id: d,
            json,
            expected_version,
        } => {
            table(&t)?;
            id(&d)?;
            Op::Update {
                table: t,
                id: d,
                body: canonical(i, &json, limits)?,
                expected_version,
            }
        }
        RequestOp::Delete {
            table: t,
            id: d,
            expected_version,
        } => {
            table(&t)?;
            id(&d)?;
            Op::Delete {
                table: t,
                id: d,
                expected_version,
            }
        }
        RequestOp::Check {
            table: t,
            id: d,
            condition,
        } => {
            table(&t)?;
            id(&d)?;
            Op::Check {
                table: t,
                id: d,
                condition,
            }
        }
    })
}

/// The canonical form of operation `i`'s document, within the document limit.
fn canonical(i: usize, json: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    // Refuse absurd input before parsing it.
    if json.len() > limits.max_document_bytes.saturating_mul(4) {
        return Err(Error::exhausted(format!(
            "operations[{i}].json: {} bytes is far over the document limit of {} bytes",
            json.len(),
            limits.max_document_bytes
        )));
    }
    let body = canonicalize_document(json)
        .map_err(|e| Error::invalid(format!("operations[{i}].json: {e}")))?;
    if body.len() > limits.max_document_bytes {
        return Err(Error::exhausted(format!(
            "operations[{i}].json: the document is {} bytes of canonical JSON, over the \
             limit of {} bytes",
            body.len(),
            limits.max_document_bytes
        )));
    }
    Ok(body)
}

/// Feeds one operation into the request hash (docs/FORMAT.md §9.3): its kind, then its
/// table, id (empty when the client sent none) and canonical body (empty for deletes and
/// checks), each with a u64 big-endian length before it, then its condition.
fn hash_op(h: &mut Sha256, op: &Op) {
    let (table, id) = op.target();
    let (code, condition) = match op {
        Op::Insert { .. } => (1, None),
        Op::Update {
            expected_version, ..
        } => (2, expected_version.map(Condition::Version)),
        Op::Delete {
            expected_version, ..
        } => (3, expected_version.map(Condition::Version)),
        Op::Check { condition, .. } => (4, Some(*condition)),
    };
    h.update([code]);
    for field in [
        table.as_bytes(),
        id.as_bytes(),
        op.body().unwrap_or_default(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    let (tag, version) = match condition {
        None => (0u8, 0u64),
        Some(Condition::Version(v)) => (1, v),
        Some(Condition::Exists) => (2, 0),
        Some(Condition::NotExists) => (3, 0),
    };
    h.update([tag]);
    h.update(version.to_be_bytes());
}

/// Gives every insert without an id a new one ([`generate_ids`]).
fn generate_missing_ids(ops: &mut [Op]) -> Result<()> {
    let unnamed = ops
        .iter()
        .filter(|op| matches!(op, Op::Insert { id, .. } if id.is_empty()))
        .count();
    if unnamed == 0 {
        return Ok(());
    }
    let ids = generate_ids(unnamed)?;
    let targets = ops.iter_mut().filter_map(|op| match op {
        Op::Insert { id, .. } if id.is_empty() => Some(id),
        _ => None,
    });
    for (slot, id) in targets.zip(ids) {
        *slot = id;
    }
    Ok(())
}

/// `count` new document ids, with one read of the system's randomness: 128 bits each, 48
/// of milliseconds (so ids sort roughly by creation time) and 80 random, as 32 hexadecimal
/// digits.
pub fn generate_ids(count: usize) -> Result<Vec<String>> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = vec![0u8; 10 * count];
    getrandom::fill(&mut random).map_err(|e| Error::internal(format!("randomness: {e}")))?;
    Ok(random
        .chunks_exact(10)
        .map(|r| {
            let mut id = [0u8; 16];
            id[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
            id[6..].copy_from_slice(r);
            hex::encode(id)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn insert(id: Option<&str>, json: &str) -> RequestOp {
        RequestOp::Insert {
            table: "t".into(),
            id: id.map(Into::into),
            json: json.as_bytes().to_vec(),
        }
    }

    fn request(ops: Vec<RequestOp>, key: Option<&str>) -> TransactRequest {
        TransactRequest {
            ops,
            idempotency_key: key.map(Into::into),
        }
    }

    /// One operation's part of the request hash: kind, table, id, body, condition tag
    /// and version.
    type Part<'a> = (u8, &'a str, &'a str, &'a [u8], u8, u64);

    /// The request hash, written out byte by byte as docs/FORMAT.md §9.3 gives it.
    fn expected_hash(parts: &[Part<'_>]) -> Hash {
        let mut bytes = Vec::new();
        for &(code, table, id, body, tag, version) in parts {
            bytes.push(code);
            for f in [table.as_bytes(), id.as_bytes(), body] {
                bytes.extend_from_slice(&(f.len() as u64).to_be_bytes());
                bytes.extend_from_slice(f);
            }
            bytes.push(tag);
            bytes.extend_from_slice(&version.to_be_bytes());
        }
        Hash(Sha256::digest(&bytes).into())
    }

    #[test]
    fn the_request_hash_is_the_documented_bytes() {
        let ops = vec![
            insert(None, r#"{"b": 1, "a": 2}"#),
            RequestOp::Update {
                table: "t".into(),
                id: "x".into(),
                json: b"{}".to_vec(),
                expected_version: Some(3),
            },
            RequestOp::Delete {
                table: "u".into(),
                id: "y".into(),
                expected_version: None,
            },
            RequestOp::Check {
                table: "t".into(),
                id: "z".into(),
                condition: Condition::NotExists,
            },
        ];
        let p = prepare(request(ops, Some("k")), &Limits::default(), "p").expect("prepared");
        let (key, hash) = p.tx.idempotency.expect("keyed");
        assert_eq!(key, "k");
        assert_eq!(
            hash,
            expected_hash(&[
                (1, "t", "", br#"{"a":2,"b":1}"#, 0, 0),
                (2, "t", "x", b"{}", 1, 3),
                (3, "u", "y", b"", 0, 0),
                (4, "t", "z", b"", 3, 0),
            ])
        );
        // The id generated for the insert is not in the hash: a retry matches.
        assert_eq!(p.tx.ops[0].target().1.len(), 32);
        let again = prepare(
            request(vec![insert(None, r#"{"a":2,"b":1}"#)], Some("k")),
            &Limits::default(),
            "p",
        )
        .expect("prepared");
        let first = prepare(
            request(vec![insert(None, r#"{"b": 1, "a": 2}"#)], Some("k")),
            &Limits::default(),
            "p",
        )
        .expect("prepared");
        assert_eq!(again.tx.idempotency, first.tx.idempotency);
        assert_ne!(again.tx.ops[0].target().1, first.tx.ops[0].target().1);
    }

    #[test]
    fn bodies_are_canonical_and_hashed() {
        let p = prepare(
            request(vec![insert(Some("a"), r#"{"z":1, "a":[1.0]}"#)], None),
            &Limits::default(),
            "p",
        )
        .expect("prepared");
        assert_eq!(p.tx.ops[0].body(), Some(&br#"{"a":[1],"z":1}"#[..]));
        assert_eq!(
            p.body_hashes,
            [Some(Hash(Sha256::digest(br#"{"a":[1],"z":1}"#).into()))]
        );
        assert_eq!(p.tx.idempotency, None);
        assert_eq!(p.tx.principal, "p");
    }

    #[test]
    fn refusals_name_the_field() {
        let limits = Limits {
            max_document_bytes: 10,
            max_transaction_operations: 2,
            max_transaction_bytes: 30,
            ..Limits::default()
        };
        let cases: Vec<(TransactRequest, ErrorKind, &str)> = vec![
            (
                request(vec![], None),
                ErrorKind::InvalidArgument,
                "at least one operation",
            ),
            (
                request(vec![insert(None, "{}"); 3], None),
                ErrorKind::ResourceExhausted,
                "3 operations is over the limit of 2",
            ),
            (
                request(vec![insert(Some(""), "{}")], None),
                ErrorKind::InvalidArgument,
                "operations[0].id: document id \"\" is invalid",
            ),
            (
                request(vec![insert(None, "[]")], None),
                ErrorKind::InvalidArgument,
                "operations[0].json: a document must be a JSON object",
            ),
            (
                request(vec![insert(None, r#"{"a":"0123456789"}"#)], None),
                ErrorKind::ResourceExhausted,
                "operations[0].json: the document is 18 bytes",
            ),
            (
                request(
                    vec![
                        insert(Some("id-of-twenty-six-chars-xyz"), "{}"),
                        insert(Some("y"), "{}"),
                    ],
                    None,
                ),
                ErrorKind::ResourceExhausted,
                "(at operations[1])",
            ),
            (
                request(vec![insert(None, "{}")], Some("")),
                ErrorKind::InvalidArgument,
                "idempotency_key",
            ),
            (
                request(vec![insert(None, "{}")], Some(&"k".repeat(257))),
                ErrorKind::InvalidArgument,
                "idempotency_key: use 1 to 256 bytes",
            ),
        ];
        for (req, kind, needle) in cases {
            let e = prepare(req, &limits, "p").expect_err(needle);
            assert_eq!(e.kind, kind, "{needle}: {e}");
            assert!(
                e.message.contains(needle),
                "{needle:?} not in {:?}",
                e.message
            );
        }
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let ids = generate_ids(100).expect("ids");
        assert_eq!(ids.len(), 100);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && hex::decode(id).is_ok())
        );
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 100);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = generate_ids(1).expect("id");
        assert!(later[0][..12] > ids[0][..12]);
    }
}
