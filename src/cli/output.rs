//! What client commands print: the JSON lines of receipts, revisions, ledgers and stream
//! events (docs/FORMAT.md §10 for `graven tail`), and the readable form of a gRPC error.

use anyhow::{Context as _, anyhow, bail};
use graven::pb;
use graven_verify::Hash;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Turns a gRPC status into one readable line.
pub fn rpc(status: tonic::Status) -> anyhow::Error {
    anyhow!(graven::client::status_line(&status))
}

/// A revision's stored canonical JSON, to splice into a line unchanged.
fn document(json: &[u8]) -> anyhow::Result<Option<Box<RawValue>>> {
    if json.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(json.to_vec()).context("server sent a non-UTF-8 document")?;
    Ok(Some(
        RawValue::from_string(text).context("server sent invalid JSON")?,
    ))
}

/// A receipt: single-operation commands get the operation's fields at the top level.
pub fn receipt_json(r: &pb::Receipt) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("tx".into(), r.tx_id.into());
    if let [only] = r.results.as_slice() {
        v.insert("index".into(), json!(only.index));
        v.insert("version".into(), only.version.into());
        v.insert("id".into(), only.id.clone().into());
        v.insert("table".into(), only.table.clone().into());
    }
    v.insert("first_index".into(), r.first_index.into());
    v.insert("revisions".into(), r.revisions.into());
    v.insert("commit_micros".into(), r.commit_micros.into());
    v.insert("replayed".into(), r.replayed.into());
    let results: Vec<Value> = r
        .results
        .iter()
        .map(|o| json!({"table": o.table, "id": o.id, "version": o.version, "index": o.index}))
        .collect();
    v.insert("results".into(), results.into());
    v.insert("checkpoint".into(), r.checkpoint.clone().into());
    Value::Object(v)
}

/// A revision, as `graven get`, `history` and `scan` print it.
pub fn revision_json(r: &pb::Revision) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        id: &'a str,
        version: u64,
        index: u64,
        document: Option<Box<RawValue>>,
        table: &'a str,
        operation: &'a str,
        tx: u64,
        commit_micros: u64,
        principal: &'a str,
    }
    Ok(serde_json::to_string(&Out {
        id: &r.id,
        version: r.version,
        index: r.index,
        document: document(&r.json)?,
        table: &r.table,
        operation: &r.operation,
        tx: r.tx_id,
        commit_micros: r.commit_micros,
        principal: &r.principal,
    })?)
}

/// One `graven tail` line (docs/FORMAT.md section 10).
pub fn event_json(e: &pb::Event) -> anyhow::Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    Ok(match &e.kind {
        Some(pb::event::Kind::Frontier(f)) => json!({
            "type": "frontier",
            "size": f.size,
            "subtrees": f.subtrees.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })
        .to_string(),
        Some(pb::event::Kind::Revision(r)) => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                r#type: &'static str,
                index: u64,
                entry: String,
                table: &'a str,
                id: &'a str,
                version: u64,
                operation: &'a str,
                tx: u64,
                commit_micros: u64,
                principal: &'a str,
                document: Option<Box<RawValue>>,
            }
            serde_json::to_string(&Line {
                r#type: "revision",
                index: r.index,
                entry: B64.encode(&r.entry),
                table: &r.table,
                id: &r.id,
                version: r.version,
                operation: &r.operation,
                tx: r.tx_id,
                commit_micros: r.commit_micros,
                principal: &r.principal,
                document: document(&r.json)?,
            })?
        }
        Some(pb::event::Kind::Skipped(k)) => json!({
            "type": "skipped",
            "index": k.index,
            "leaf_hash": B64.encode(&k.leaf_hash),
        })
        .to_string(),
        Some(pb::event::Kind::Checkpoint(c)) => {
            json!({"type": "checkpoint", "checkpoint": c.checkpoint}).to_string()
        }
        None => bail!("server sent an empty event"),
    })
}

/// A ledger's description.
pub fn ledger_json(i: &pb::LedgerInfo) -> Value {
    json!({
        "name": i.name,
        "origin": i.origin,
        "size": i.size,
        "vkey": i.vkey,
        "deletion_protection": i.deletion_protection,
        "created_micros": i.created_micros,
        "writer": i.writer,
        "checkpoint": i.checkpoint,
    })
}

/// Proof hashes as the server sent them, each 32 bytes.
pub fn hashes(raw: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    raw.iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map(Hash)
                .map_err(|_| anyhow!("server sent a proof hash of {} bytes", h.len()))
        })
        .collect()
}
