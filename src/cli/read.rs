//! `graven get`, `history` and `scan`: documents as JSON lines.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;
use graven::client::Client;
use graven::pb;

use super::output::{revision_json, rpc};

/// `graven get` options.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
    /// Document id.
    id: String,
    /// A given version instead of the current one.
    #[arg(long)]
    version: Option<u64>,
}

/// `graven history` options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
    /// Document id.
    id: String,
}

/// `graven scan` options.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Ledger name.
    ledger: String,
    /// Table name.
    table: String,
}

pub async fn get(c: &mut Client, a: GetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let request = pb::GetDocumentRequest {
        ledger: a.ledger,
        table: a.table,
        id: a.id,
        version: a.version,
        proof: None,
    };
    let r = c
        .docs
        .get_document(request)
        .await
        .map_err(rpc)?
        .into_inner();
    let rev = r
        .revision
        .ok_or_else(|| anyhow!("server sent no revision"))?;
    writeln!(out, "{}", revision_json(&rev)?)?;
    Ok(())
}

/// Prints page after page until the server says there is none left; `fetch` gets the
/// page of a token.
async fn pages<F, Fut>(out: &mut impl Write, mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<pb::Revision>, String), tonic::Status>>,
{
    let mut token = String::new();
    loop {
        let (revisions, next) = fetch(token).await.map_err(rpc)?;
        for rev in &revisions {
            writeln!(out, "{}", revision_json(rev)?)?;
        }
        if next.is_empty() {
            return Ok(());
        }
        token = next;
    }
}

pub async fn history(c: &mut Client, a: HistoryArgs, out: &mut impl Write) -> anyhow::Result<()> {
    pages(out, |page_token| {
        let mut docs = c.docs.clone();
        let request = pb::HistoryRequest {
            ledger: a.ledger.clone(),
            table: a.table.clone(),
            id: a.id.clone(),
            page_size: 0,
            page_token,
            proof: None,
        };
        async move {
            let page = docs.history(request).await?.into_inner();
            Ok((page.revisions, page.next_page_token))
        }
    })
    .await
}

pub async fn scan(c: &mut Client, a: ScanArgs, out: &mut impl Write) -> anyhow::Result<()> {
    pages(out, |page_token| {
        let mut docs = c.docs.clone();
        let request = pb::ScanRequest {
            ledger: a.ledger.clone(),
            table: a.table.clone(),
            page_size: 0,
            page_token,
            proof: None,
        };
        async move {
            let page = docs.scan(request).await?.into_inner();
            Ok((page.revisions, page.next_page_token))
        }
    })
    .await
}
