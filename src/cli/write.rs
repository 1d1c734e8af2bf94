//! `graven insert`, `update` and `delete`: one-operation transactions.

use std::io::{Read as _, Write};

use anyhow::{Context as _, bail};
use clap::Args;
use graven::client::Client;
use graven::pb;
use graven::pb::operation::Kind;

use super::output::{receipt_json, rpc};

/// Retry safety for single-operation commands.
#[derive(Debug, Args)]
pub struct IdempotencyArg {
    /// Idempotency key: a retry with the same key returns the first receipt.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// `graven insert` options.
#[derive(Debug, Args)]
pub struct InsertArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
    /// The document, a JSON object; `-` reads it from standard input.
    json: String,
    /// Document id (generated when absent).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    key: IdempotencyArg,
}

/// `graven update` options.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
    /// Document id.
    id: String,
    /// The new document, a JSON object; `-` reads it from standard input.
    json: String,
    /// Only update if the document is at this version.
    #[arg(long)]
    expect_version: Option<u64>,
    #[command(flatten)]
    key: IdempotencyArg,
}

/// `graven delete` options.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
    /// Document id.
    id: String,
    /// Only delete if the document is at this version.
    #[arg(long)]
    expect_version: Option<u64>,
    #[command(flatten)]
    key: IdempotencyArg,
}

/// A document argument: the JSON itself, or `-` for standard input.
pub fn document_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the document from standard input")?;
        Ok(buf)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Commits one operation and prints the receipt.
async fn commit(
    c: &mut Client,
    ledger: String,
    kind: Kind,
    key: IdempotencyArg,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if key.idempotency_key.as_deref() == Some("") {
        bail!("--idempotency-key must not be empty");
    }
    let request = pb::TransactRequest {
        ledger,
        operations: vec![pb::Operation { kind: Some(kind) }],
        idempotency_key: key.idempotency_key.unwrap_or_default(),
    };
    let receipt = c.docs.transact(request).await.map_err(rpc)?;
    writeln!(out, "{}", receipt_json(receipt.get_ref()))?;
    Ok(())
}

pub async fn insert(c: &mut Client, a: InsertArgs, out: &mut impl Write) -> anyhow::Result<()> {
    // On the wire an empty id means "make one": an empty --id is refused here instead.
    if a.id.as_deref() == Some("") {
        bail!("--id must not be empty (leave it out to have an id generated)");
    }
    let kind = Kind::Insert(pb::Insert {
        table: a.table,
        id: a.id.unwrap_or_default(),
        json: document_arg(&a.json)?,
    });
    commit(c, a.ledger, kind, a.key, out).await
}

pub async fn update(c: &mut Client, a: UpdateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let kind = Kind::Update(pb::Update {
        table: a.table,
        id: a.id,
        json: document_arg(&a.json)?,
        expected_version: a.expect_version,
    });
    commit(c, a.ledger, kind, a.key, out).await
}

pub async fn delete(c: &mut Client, a: DeleteArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let kind = Kind::Delete(pb::Delete {
        table: a.table,
        id: a.id,
        expected_version: a.expect_version,
    });
    commit(c, a.ledger, kind, a.key, out).await
}
