//! `graven query`: PartiQL statements (docs/QUERY.md), one JSON value per result row.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use graven::client::Client;
use graven::pb;
use graven::verify::InclusionProof;

use super::output::{hashes, receipt_json, rpc};

/// `graven query` options.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  graven query orders 'SELECT * FROM Orders AS o WHERE o.customer = ?' -p '\"c-17\"'
  graven query orders 'UPDATE Orders AS o SET o.state = ? WHERE o.id = ?' -p '\"paid\"' -p 7
  echo 'SELECT COUNT(*) FROM Orders' | graven query orders -
  graven query orders --file migrate.sql      # its statements, as one transaction
  graven query orders 'EXPLAIN SELECT * FROM Orders WHERE total > 100'")]
pub struct QueryArgs {
    /// Ledger name.
    ledger: String,
    /// The statement(s), separated by `;`; `-` reads them from standard input.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    statement: Option<String>,
    /// Run the statements of this file (`-` for standard input) as one transaction.
    #[arg(long, value_name = "FILE")]
    file: Option<String>,
    /// A value for the next `?`, as JSON (`-p 42`, `-p '"text"'`, `-p '{"a": 1}'`);
    /// repeat, in order.
    #[arg(short = 'p', long = "param", value_name = "JSON")]
    params: Vec<String>,
    /// Print each row that is a stored revision as {"row", "index", "entry" (base64),
    /// "proof"}: the proof and entry are what `graven-verify inclusion` checks, and the
    /// entry records the SHA-256 of the row's canonical JSON. A row that is its
    /// document's current revision at the latest checkpoint also gets "current", the
    /// proof `graven-verify current` checks.
    #[arg(long)]
    proof: bool,
    /// Rows per page fetched (all pages are printed).
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// For statements that write, also print the receipt (with its signed checkpoint)
    /// after the rows, as {"receipt": ...}.
    #[arg(long)]
    receipt: bool,
}

fn read_input(path: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the statements from standard input")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    }
    Ok(text)
}

pub async fn run(c: &mut Client, a: QueryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let text = match (&a.statement, &a.file) {
        (Some(s), _) if s == "-" => read_input("-")?,
        (Some(s), _) => s.clone(),
        (None, Some(f)) => read_input(f)?,
        (None, None) => bail!("give a statement, or --file"),
    };
    let mut token = String::new();
    loop {
        let request = pb::ExecuteStatementRequest {
            ledger: a.ledger.clone(),
            statements: vec![pb::StatementText {
                text: text.clone(),
                parameters: a.params.clone(),
            }],
            page_size: a.page_size,
            page_token: token,
            proof: a.proof,
        };
        let r = c
            .docs
            .execute_statement(request)
            .await
            .map_err(rpc)?
            .into_inner();
        for row in &r.rows {
            print_row(row, a.proof, out)?;
        }
        if let (true, Some(receipt)) = (a.receipt, &r.receipt) {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "receipt": receipt_json(receipt) })
            )?;
        }
        if r.next_page_token.is_empty() {
            return Ok(());
        }
        token = r.next_page_token;
    }
}

fn print_row(row: &pb::ResultRow, proof: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let (Some(p), true) = (&row.proof, proof) else {
        writeln!(out, "{}", row.json)?;
        return Ok(());
    };
    let value: serde_json::Value =
        serde_json::from_str(&row.json).context("server sent a row that is not JSON")?;
    let text = InclusionProof {
        extra: None,
        index: p.index,
        hashes: hashes(&p.hashes)?,
        checkpoint: p.checkpoint.clone(),
    }
    .to_text();
    let mut line = serde_json::json!({
        "row": value,
        "index": row.index,
        "entry": base64::engine::general_purpose::STANDARD.encode(&row.entry),
        "proof": text,
    });
    // A current revision at the latest checkpoint: the file `graven-verify current` checks.
    if let Some(state) = &row.state {
        let entry = graven_verify::Entry::decode(&row.entry)
            .map_err(|e| anyhow::anyhow!("server sent an entry that does not decode: {e}"))?;
        let revision = graven_verify::current::ProvenEntry {
            index: p.index,
            entry: row.entry.clone(),
            hashes: hashes(&p.hashes)?,
        };
        let current =
            super::proof::current_proof(entry.table, entry.id, state.clone(), Some(revision))?;
        line["current"] = serde_json::Value::String(current.to_text());
    }
    writeln!(out, "{line}")?;
    Ok(())
}
