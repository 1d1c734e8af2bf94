//! Protobuf messages to domain types and back. What proto3 cannot say is decided here,
//! once: an empty string or a zero means "absent" where the proto says so, and a oneof
//! left unset is refused naming the field.

use crate::error::{Error, Result};
use crate::model::{self, Condition, RequestOp, TransactRequest, TreeSize};
use crate::pb;

/// An empty string as absent.
fn present(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The ledger and the transaction of a Transact request.
pub fn transact_request(req: pb::TransactRequest) -> Result<(String, TransactRequest)> {
    use pb::operation::Kind;
    let ops =
        req.operations
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                Ok(
                    match op.kind.ok_or_else(|| {
                        Error::invalid(format!("operations[{i}]: no operation set"))
                    })? {
                        Kind::Insert(x) => RequestOp::Insert {
                            table: x.table,
                            id: present(x.id),
                            json: x.json,
                        },
                        Kind::Update(x) => RequestOp::Update {
                            table: x.table,
                            id: x.id,
                            json: x.json,
                            expected_version: x.expected_version,
                        },
                        Kind::Delete(x) => RequestOp::Delete {
                            table: x.table,
                            id: x.id,
                            expected_version: x.expected_version,
                        },
                        Kind::Check(x) => RequestOp::Check {
                            table: x.table,
                            id: x.id,
                            condition: match x.condition {
                                Some(pb::check::Condition::Version(v)) => Condition::Version(v),
                                Some(pb::check::Condition::Exists(true)) => Condition::Exists,
                                Some(pb::check::Condition::NotExists(true)) => Condition::NotExists,
                                _ => {
                                    return Err(Error::invalid(format!(
                                        "operations[{i}].condition: set version, exists: true or \
                                     not_exists: true"
                                    )));
                                }
                            },
                        },
                    },
                )
            })
            .collect::<Result<Vec<_>>>()?;
    Ok((
        req.ledger,
        TransactRequest {
            ops,
            idempotency_key: present(req.idempotency_key),
        },
    ))
}

/// A proof's tree size: 0 is the latest.
pub fn tree_size(size: u64) -> TreeSize {
    match size {
        0 => TreeSize::Latest,
        n => TreeSize::At(n),
    }
}

/// A read's proof request.
pub fn proof(p: Option<pb::ProofRequest>) -> Option<TreeSize> {
    p.map(|p| tree_size(p.tree_size))
}

/// A page size: 0 is the default.
pub fn page_size(n: u32) -> Option<u32> {
    (n != 0).then_some(n)
}

/// A page token: empty is the first page.
pub fn page_token(token: &str) -> Option<&str> {
    (!token.is_empty()).then_some(token)
}

pub fn ledger_info(i: model::LedgerInfo) -> pb::LedgerInfo {
    pb::LedgerInfo {
        name: i.name,
        origin: i.origin,
        size: i.size,
        checkpoint: i.checkpoint,
        vkey: i.vkey,
        deletion_protection: i.deletion_protection,
        created_micros: i.created_micros,
        writer: i.writer.unwrap_or_default(),
    }
}

pub fn table_info(t: model::TableInfo) -> pb::TableInfo {
    pb::TableInfo {
        name: t.name,
        created_micros: t.created_micros,
        indexes: t
            .indexes
            .into_iter()
            .map(|i| pb::IndexInfo {
                path: model::path_text(&i.path),
                state: match i.state {
                    model::IndexState::Building => "building",
                    model::IndexState::Online => "online",
                }
                .into(),
                indexed: i.indexed,
                created_micros: i.created_micros,
            })
            .collect(),
    }
}

/// A request to run statements, as the engine takes it.
pub fn execute_request(r: pb::ExecuteStatementRequest) -> (String, model::ExecuteRequest) {
    (
        r.ledger,
        model::ExecuteRequest {
            statements: r
                .statements
                .into_iter()
                .map(|s| model::StatementText {
                    text: s.text,
                    parameters: s.parameters,
                })
                .collect(),
            page_size: (r.page_size != 0).then_some(r.page_size),
            page_token: (!r.page_token.is_empty()).then_some(r.page_token),
            proof: r.proof,
        },
    )
}

/// What running statements gave, as the client gets it.
pub fn executed(e: model::Executed) -> pb::ExecuteStatementResponse {
    pb::ExecuteStatementResponse {
        rows: e
            .rows
            .into_iter()
            .map(|r| pb::ResultRow {
                statement: r.statement,
                json: String::from_utf8(r.json).unwrap_or_default(),
                index: r.index,
                proof: r.proof.map(inclusion_proof),
                entry: r.entry.unwrap_or_default(),
                state: r.state.map(state_proof),
            })
            .collect(),
        next_page_token: e.next_page.unwrap_or_default(),
        receipt: e.receipt.map(receipt),
        tree_size: e.tree_size,
    }
}

fn hashes(hashes: &[graven_verify::Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

pub fn inclusion_proof(p: model::InclusionProof) -> pb::InclusionProof {
    pb::InclusionProof {
        index: p.index,
        tree_size: p.tree_size,
        hashes: hashes(&p.hashes),
        checkpoint: p.checkpoint,
    }
}

pub fn consistency_proof(p: model::ConsistencyProof) -> pb::ConsistencyProof {
    pb::ConsistencyProof {
        old_size: p.old_size,
        new_size: p.new_size,
        hashes: hashes(&p.hashes),
        checkpoint: p.checkpoint,
    }
}

pub fn revision(r: model::Revision) -> pb::Revision {
    pb::Revision {
        table: r.table,
        id: r.id,
        version: r.version,
        operation: r.operation.as_str().to_owned(),
        index: r.index,
        tx_id: r.tx_id,
        commit_micros: r.commit_micros,
        principal: r.principal,
        json: r.body,
        entry: r.entry,
        proof: r.proof.map(inclusion_proof),
        state: r.state.map(|s| state_proof(*s)),
    }
}

pub fn state_proof(p: model::StateProof) -> pb::StateProof {
    pb::StateProof {
        tree_size: p.tree_size,
        state_entry: p.state_entry,
        state_hashes: hashes(&p.state_hashes),
        map_proof: p.map.encode(),
        checkpoint: p.checkpoint,
    }
}

/// A document read: its revision, or the proof it has none.
pub fn document(read: model::Read) -> pb::GetDocumentResponse {
    match read {
        model::Read::Revision(r) => pb::GetDocumentResponse {
            revision: Some(revision(r)),
            absent: None,
        },
        model::Read::Absent(p) => pb::GetDocumentResponse {
            revision: None,
            absent: Some(state_proof(p)),
        },
    }
}

pub fn receipt(r: model::Receipt) -> pb::Receipt {
    pb::Receipt {
        tx_id: r.tx_id,
        results: r
            .results
            .into_iter()
            .map(|o| pb::OperationResult {
                table: o.table,
                id: o.id,
                version: o.version,
                index: o.index,
            })
            .collect(),
        first_index: r.first_index,
        revisions: r.revisions,
        commit_micros: r.commit_micros,
        checkpoint: r.checkpoint,
        replayed: r.replayed,
        tree_size: r.tree_size,
    }
}

pub fn page(p: model::Page) -> (Vec<pb::Revision>, String) {
    (
        p.revisions.into_iter().map(revision).collect(),
        p.next.unwrap_or_default(),
    )
}

pub fn stream_event(e: model::StreamEvent) -> pb::Event {
    use pb::event::Kind;
    let kind = match e {
        model::StreamEvent::Frontier(range) => Kind::Frontier(pb::Frontier {
            size: range.size(),
            subtrees: hashes(range.subtrees()),
        }),
        model::StreamEvent::Item(model::JournalItem::Revision(r)) => Kind::Revision(revision(r)),
        model::StreamEvent::Item(model::JournalItem::Skipped { index, leaf_hash }) => {
            Kind::Skipped(pb::Skipped {
                index,
                leaf_hash: leaf_hash.0.to_vec(),
            })
        }
        model::StreamEvent::Checkpoint(head) => Kind::Checkpoint(pb::StreamCheckpoint {
            size: head.size,
            checkpoint: head.checkpoint,
        }),
    };
    pb::Event { kind: Some(kind) }
}

pub fn check_result(result: Result<crate::engine::check::Summary, String>) -> pb::CheckResult {
    match result {
        Ok(s) => pb::CheckResult {
            ok: true,
            problem: String::new(),
            entries: s.entries,
            documents: s.documents,
            live: s.live,
            size: s.size,
            root: s.root.0.to_vec(),
        },
        Err(problem) => pb::CheckResult {
            ok: false,
            problem,
            ..Default::default()
        },
    }
}
