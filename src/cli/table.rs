//! `graven table create|list|describe|drop`.

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
    /// Describe a table: {"name", "created_micros", "indexes": [{"path", "state",
    /// "indexed"}]}; an index is "building" until every document is in it, then
    /// "online" (queries use it then).
    Describe {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
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
        TableCommand::Describe { ledger, table } => {
            let list = c
                .admin
                .list_tables(pb::ListTablesRequest {
                    ledger: ledger.clone(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            let Some(t) = list.tables.into_iter().find(|t| t.name == table) else {
                anyhow::bail!("ledger {ledger:?} has no table {table:?}");
            };
            let indexes: Vec<serde_json::Value> = t
                .indexes
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "path": i.path,
                        "state": i.state,
                        "indexed": i.indexed,
                        "created_micros": i.created_micros,
                    })
                })
                .collect();
            let v = serde_json::json!({
                "name": t.name,
                "created_micros": t.created_micros,
                "indexes": indexes,
            });
            writeln!(out, "{v}")?;
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
