//! `graven checkpoint`, `key`, `entry` and `proof inclusion|consistency|current`: what an
//! auditor needs, in the exact forms `graven-verify` reads.

use std::io::Write;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use graven::client::Client;
use graven::pb;
use graven_verify::current::{CurrentProof, ProvenEntry};
use graven_verify::map::MapProof;
use graven_verify::{ConsistencyProof, InclusionProof};

use super::output::{hashes, rpc};

/// `graven checkpoint` options.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Ledger name.
    ledger: String,
    /// The checkpoint of this tree size (at most the ledger size) instead of the latest.
    #[arg(long)]
    size: Option<u64>,
}

/// `graven key` options.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Ledger name.
    ledger: String,
}

/// `graven entry` options.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// Ledger name.
    ledger: String,
    /// Journal index.
    index: u64,
}

/// `graven proof ...`
#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// A c2sp.org/tlog-proof@v1 inclusion proof for the entry at INDEX.
    Inclusion {
        /// Ledger name.
        ledger: String,
        /// Journal index.
        index: u64,
        /// Tree size of the checkpoint (default: the latest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// A consistency proof from OLD_SIZE, as a tlog-witness add-checkpoint body.
    Consistency {
        /// Ledger name.
        ledger: String,
        /// Tree size of the older checkpoint.
        old_size: u64,
        /// New tree size (default: the latest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// That a document's revision is its current one at the latest checkpoint, or that
    /// it has none (never written, or deleted), for `graven-verify current`.
    Current {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// Document id.
        id: String,
    },
}

pub async fn checkpoint(
    c: &mut Client,
    a: CheckpointArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let request = pb::GetCheckpointRequest {
        ledger: a.ledger,
        size: a.size,
    };
    let r = c
        .proofs
        .get_checkpoint(request)
        .await
        .map_err(rpc)?
        .into_inner();
    out.write_all(r.checkpoint.as_bytes())?;
    Ok(())
}

pub async fn key(c: &mut Client, a: KeyArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let request = pb::GetKeyRequest { ledger: a.ledger };
    let r = c.proofs.get_key(request).await.map_err(rpc)?.into_inner();
    writeln!(out, "{}", r.vkey)?;
    Ok(())
}

pub async fn entry(c: &mut Client, a: EntryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let request = pb::GetEntryRequest {
        ledger: a.ledger,
        index: a.index,
    };
    let r = c.proofs.get_entry(request).await.map_err(rpc)?.into_inner();
    out.write_all(&r.entry)?;
    Ok(())
}

pub async fn run(c: &mut Client, cmd: ProofCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let text = match cmd {
        ProofCommand::Inclusion {
            ledger,
            index,
            size,
        } => {
            let request = pb::ProveInclusionRequest {
                ledger,
                index,
                // 0 is the latest on the wire.
                tree_size: size.unwrap_or(0),
            };
            let p = c
                .proofs
                .prove_inclusion(request)
                .await
                .map_err(rpc)?
                .into_inner();
            InclusionProof {
                extra: None,
                index: p.index,
                hashes: hashes(&p.hashes)?,
                checkpoint: p.checkpoint,
            }
            .to_text()
        }
        ProofCommand::Consistency {
            ledger,
            old_size,
            size,
        } => {
            let request = pb::ProveConsistencyRequest {
                ledger,
                old_size,
                new_size: size.unwrap_or(0),
            };
            let p = c
                .proofs
                .prove_consistency(request)
                .await
                .map_err(rpc)?
                .into_inner();
            ConsistencyProof {
                old_size: p.old_size,
                hashes: hashes(&p.hashes)?,
                checkpoint: p.checkpoint,
            }
            .to_text()
        }
        ProofCommand::Current { ledger, table, id } => {
            current(c, ledger, table, id).await?.to_text()
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// The current-state proof of a document, from a read with a proof at the latest size.
async fn current(
    c: &mut Client,
    ledger: String,
    table: String,
    id: String,
) -> anyhow::Result<CurrentProof> {
    let request = pb::GetDocumentRequest {
        ledger: ledger.clone(),
        table: table.clone(),
        id: id.clone(),
        version: None,
        proof: Some(pb::ProofRequest { tree_size: 0 }),
    };
    let r = c
        .docs
        .get_document(request)
        .await
        .map_err(rpc)?
        .into_inner();
    let (state, revision) = match (r.revision, r.absent) {
        (None, Some(absent)) => (absent, None),
        (Some(rev), _) => {
            let state = rev.state.ok_or_else(|| {
                anyhow!(
                    "ledger {ledger}'s latest checkpoint does not commit to its state yet: it \
                     was written before state commitments and has not committed since (any \
                     write makes the next checkpoint commit to it)"
                )
            })?;
            let proof = rev
                .proof
                .ok_or_else(|| anyhow!("the server sent no inclusion proof"))?;
            let own = ProvenEntry {
                index: rev.index,
                entry: rev.entry,
                hashes: hashes(&proof.hashes)?,
            };
            (state, Some(own))
        }
        (None, None) => return Err(anyhow!("the server sent neither a revision nor a proof")),
    };
    current_proof(table, id, state, revision)
}

/// The current-state proof file of a document from a server's state proof and, when the
/// document is current at another index than the state entry's, its revision.
pub fn current_proof(
    table: String,
    id: String,
    state: pb::StateProof,
    revision: Option<ProvenEntry>,
) -> anyhow::Result<CurrentProof> {
    let last = state
        .tree_size
        .checked_sub(1)
        .ok_or_else(|| anyhow!("the server sent a state proof at size 0"))?;
    Ok(CurrentProof {
        table,
        id,
        state: ProvenEntry {
            index: last,
            entry: state.state_entry,
            hashes: hashes(&state.state_hashes)?,
        },
        revision: revision.filter(|r| r.index != last),
        map: MapProof::decode(&state.map_proof).context("the server's map proof")?,
        checkpoint: state.checkpoint,
    })
}
