//! `graven ledger create|list|describe|update|delete`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use graven::client::Client;
use graven::pb;

use super::output::{ledger_json, rpc};

/// `graven ledger ...`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Create a ledger; prints its description.
    Create {
        /// Ledger name.
        name: String,
        /// Import this private key file (graven-verify keygen) instead of generating one;
        /// its name must be the ledger's origin.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// Create with deletion protection off.
        #[arg(long)]
        no_deletion_protection: bool,
    },
    /// List ledger names.
    List,
    /// Print a ledger's description as JSON.
    Describe {
        /// Ledger name.
        name: String,
    },
    /// Change a ledger's settings.
    Update {
        /// Ledger name.
        name: String,
        /// Turn deletion protection on or off.
        #[arg(long, action = clap::ArgAction::Set)]
        deletion_protection: Option<bool>,
    },
    /// Delete a ledger (deletion protection must be off).
    Delete {
        /// Ledger name.
        name: String,
    },
}

pub async fn run(c: &mut Client, cmd: LedgerCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let info = match cmd {
        LedgerCommand::Create {
            name,
            signing_key,
            no_deletion_protection,
        } => {
            let signing_key = match signing_key {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading key file {}", path.display()))?,
                None => String::new(),
            };
            let request = pb::CreateLedgerRequest {
                name,
                signing_key,
                deletion_protection_off: no_deletion_protection,
            };
            c.admin.create_ledger(request).await.map_err(rpc)?
        }
        LedgerCommand::List => {
            let list = c
                .admin
                .list_ledgers(pb::ListLedgersRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            for l in list.ledgers {
                writeln!(out, "{}", l.name)?;
            }
            return Ok(());
        }
        LedgerCommand::Describe { name } => c
            .admin
            .describe_ledger(pb::DescribeLedgerRequest { name })
            .await
            .map_err(rpc)?,
        LedgerCommand::Update {
            name,
            deletion_protection,
        } => c
            .admin
            .update_ledger(pb::UpdateLedgerRequest {
                name,
                deletion_protection,
            })
            .await
            .map_err(rpc)?,
        LedgerCommand::Delete { name } => {
            c.admin
                .delete_ledger(pb::DeleteLedgerRequest { name })
                .await
                .map_err(rpc)?;
            return Ok(());
        }
    };
    writeln!(out, "{}", ledger_json(info.get_ref()))?;
    Ok(())
}
