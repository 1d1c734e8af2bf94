//! `graven checkpoint`, `key`, `entry` and `proof inclusion|consistency`: what an auditor
//! needs, in the exact forms `graven-verify` reads.

use std::io::Write;

use clap::{Args, Subcommand};
use graven::client::Client;
use graven::pb;
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
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}
