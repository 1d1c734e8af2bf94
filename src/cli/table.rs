//! `graven table create|list|drop`.

use std::io::Write;

use clap::Subcommand;
use graven::client::Client;
use graven::pb;

use super::output::rpc;

/// `graven table ...`
#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create a table.
    Create {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
    },
    /// List tables.
    List {
        /// Ledger name.
        ledger: String,
    },
    /// Drop a table.
    Drop {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
    },
}

pub async fn run(c: &mut Client, cmd: TableCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        TableCommand::Create { ledger, table } => {
            c.admin
                .create_table(pb::CreateTableRequest { ledger, table })
                .await
                .map_err(rpc)?;
        }
        TableCommand::List { ledger } => {
            let list = c
                .admin
                .list_tables(pb::ListTablesRequest { ledger })
                .await
                .map_err(rpc)?
                .into_inner();
            for t in list.tables {
                writeln!(out, "{}", t.name)?;
            }
        }
        TableCommand::Drop { ledger, table } => {
            c.admin
                .drop_table(pb::DropTableRequest { ledger, table })
                .await
                .map_err(rpc)?;
        }
    }
    Ok(())
}
