//! `graven tail`: the change stream as JSON lines, flushed as they come.

use std::io::Write;

use clap::Args;
use graven::client::Client;
use graven::pb;

use super::output::{event_json, rpc};

/// `graven tail` options.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Ledger name.
    ledger: String,
    /// First journal index (default: from now on). To resume, pass one past the last
    /// index processed.
    #[arg(long)]
    from: Option<u64>,
    /// Only revisions of this table (repeat for several); others appear as `skipped`.
    #[arg(long = "table")]
    tables: Vec<String>,
    /// Stop before this index instead of following new commits.
    #[arg(long)]
    to: Option<u64>,
}

pub async fn run(c: &mut Client, a: TailArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let request = pb::SubscribeRequest {
        ledger: a.ledger,
        from_index: a.from,
        to_index: a.to,
        tables: a.tables,
    };
    let mut events = c.stream.subscribe(request).await.map_err(rpc)?.into_inner();
    while let Some(e) = events.message().await.map_err(rpc)? {
        writeln!(out, "{}", event_json(&e)?)?;
        // Consumers follow live: every line goes out as it comes.
        out.flush()?;
    }
    Ok(())
}
