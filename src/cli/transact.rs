//! `graven transact LEDGER FILE`: several operations in one transaction, from a JSON file.
//!
//! The file is parsed with strict types: an unknown key, a missing field or a value of
//! the wrong type (`"expect_version": "3"`) is refused naming its path, never ignored, so
//! that a conditional update cannot silently become an unconditional one. Documents are
//! passed on exactly as written, for the server to check and canonicalize.

use std::io::Write;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use graven::client::Client;
use graven::pb;
use graven::pb::operation::Kind;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::output::{receipt_json, rpc};
use super::write::document_arg;

/// `graven transact` options.
#[derive(Debug, Args)]
pub struct TransactArgs {
    /// Ledger name.
    ledger: String,
    /// The transaction file; `-` reads standard input.
    file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    operations: Vec<FileOp>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum FileOp {
    Insert {
        table: String,
        #[serde(default)]
        id: Option<String>,
        document: Box<RawValue>,
    },
    Update {
        table: String,
        id: String,
        document: Box<RawValue>,
        #[serde(default)]
        expect_version: Option<u64>,
    },
    Delete {
        table: String,
        id: String,
        #[serde(default)]
        expect_version: Option<u64>,
    },
    Check {
        table: String,
        id: String,
        #[serde(default)]
        version: Option<u64>,
        #[serde(default)]
        exists: Option<bool>,
        #[serde(default)]
        not_exists: Option<bool>,
    },
}

/// Parses the `graven transact` file format into a request.
pub fn transaction_file(ledger: String, text: &[u8]) -> anyhow::Result<pb::TransactRequest> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let file: File = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| anyhow!("transaction file: {}: {}", e.path(), e.inner()))?;
    de.end().context("transaction file: trailing characters")?;
    if file.idempotency_key.as_deref() == Some("") {
        bail!("transaction file: idempotency_key must not be empty (leave it out instead)");
    }
    let mut operations = Vec::with_capacity(file.operations.len());
    for (i, op) in file.operations.into_iter().enumerate() {
        let kind = match op {
            FileOp::Insert {
                table,
                id,
                document,
            } => {
                if id.as_deref() == Some("") {
                    bail!(
                        "transaction file: operations[{i}].insert.id must not be empty (leave \
                         it out to have an id generated)"
                    );
                }
                Kind::Insert(pb::Insert {
                    table,
                    id: id.unwrap_or_default(),
                    json: document.get().as_bytes().to_vec(),
                })
            }
            FileOp::Update {
                table,
                id,
                document,
                expect_version,
            } => Kind::Update(pb::Update {
                table,
                id,
                json: document.get().as_bytes().to_vec(),
                expected_version: expect_version,
            }),
            FileOp::Delete {
                table,
                id,
                expect_version,
            } => Kind::Delete(pb::Delete {
                table,
                id,
                expected_version: expect_version,
            }),
            FileOp::Check {
                table,
                id,
                version,
                exists,
                not_exists,
            } => {
                let condition = match (version, exists, not_exists) {
                    (Some(v), None, None) => pb::check::Condition::Version(v),
                    (None, Some(true), None) => pb::check::Condition::Exists(true),
                    (None, None, Some(true)) => pb::check::Condition::NotExists(true),
                    _ => bail!(
                        "transaction file: operations[{i}].check needs exactly one of \
                         \"version\": N, \"exists\": true or \"not_exists\": true"
                    ),
                };
                Kind::Check(pb::Check {
                    table,
                    id,
                    condition: Some(condition),
                })
            }
        };
        operations.push(pb::Operation { kind: Some(kind) });
    }
    Ok(pb::TransactRequest {
        ledger,
        operations,
        idempotency_key: file.idempotency_key.unwrap_or_default(),
    })
}

pub async fn run(c: &mut Client, a: TransactArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let text = if a.file == "-" {
        document_arg("-")?
    } else {
        std::fs::read(&a.file).with_context(|| format!("reading {}", a.file))?
    };
    let request = transaction_file(a.ledger, &text)?;
    let receipt = c.docs.transact(request).await.map_err(rpc)?;
    writeln!(out, "{}", receipt_json(receipt.get_ref()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<pb::TransactRequest, String> {
        transaction_file("l".into(), text.as_bytes()).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn a_whole_file() {
        let r = parse(
            r#"{"operations": [
                {"insert": {"table": "t", "document": {"a": 1, "a2": [1.0]}}},
                {"update": {"table": "t", "id": "x", "document": {}, "expect_version": 3}},
                {"delete": {"table": "t", "id": "y"}},
                {"check": {"table": "t", "id": "z", "not_exists": true}}
            ], "idempotency_key": "k"}"#,
        )
        .expect("parses");
        assert_eq!(r.idempotency_key, "k");
        let kinds: Vec<Kind> = r.operations.into_iter().filter_map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Insert(pb::Insert {
                    table: "t".into(),
                    id: String::new(),
                    // As written: the server canonicalizes.
                    json: br#"{"a": 1, "a2": [1.0]}"#.to_vec(),
                }),
                Kind::Update(pb::Update {
                    table: "t".into(),
                    id: "x".into(),
                    json: b"{}".to_vec(),
                    expected_version: Some(3),
                }),
                Kind::Delete(pb::Delete {
                    table: "t".into(),
                    id: "y".into(),
                    expected_version: None,
                }),
                Kind::Check(pb::Check {
                    table: "t".into(),
                    id: "z".into(),
                    condition: Some(pb::check::Condition::NotExists(true)),
                }),
            ]
        );
    }

    /// Regression: `"expect_version": "3"` was ignored, making a conditional update an
    /// unconditional one; missing fields became ""; unknown keys were ignored.
    #[test]
    fn wrong_types_missing_fields_and_unknown_keys_are_refused() {
        for (text, needle) in [
            (
                r#"{"operations": [{"update": {"table": "t", "id": "x", "document": {}, "expect_version": "3"}}]}"#,
                "operations[0].update.expect_version: invalid type: string \"3\"",
            ),
            (
                r#"{"operations": [{"update": {"table": "t", "document": {}}}]}"#,
                "missing field `id`",
            ),
            (
                r#"{"operations": [{"insert": {"table": "t", "document": {}, "expected_version": 0}}]}"#,
                "unknown field `expected_version`",
            ),
            (
                r#"{"operations": [{"delete": {"table": "t", "id": "x"}}], "idempotency": "k"}"#,
                "unknown field `idempotency`",
            ),
            (
                r#"{"operations": [{"upsert": {}}]}"#,
                "unknown variant `upsert`",
            ),
            (
                r#"{"operations": [{"insert": {"table": 7, "document": {}}}]}"#,
                "operations[0].insert.table",
            ),
            (r#"{"ops": []}"#, "unknown field `ops`"),
            (r#"{"operations": []} x"#, "trailing characters"),
            (
                r#"{"operations": [{"insert": {"table": "t", "id": "", "document": {}}}]}"#,
                "operations[0].insert.id must not be empty",
            ),
            (
                r#"{"operations": [{"check": {"table": "t", "id": "x", "exists": false}}]}"#,
                "operations[0].check needs exactly one of",
            ),
            (
                r#"{"operations": [{"check": {"table": "t", "id": "x", "version": 1, "exists": true}}]}"#,
                "operations[0].check needs exactly one of",
            ),
            (
                r#"{"operations": [], "idempotency_key": ""}"#,
                "idempotency_key must not be empty",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }
}
