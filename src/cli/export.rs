//! `graven export`: a self-contained journal export, streamed in constant memory into a
//! temporary file that is renamed into place when complete.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use graven::client::Client;
use graven::pb;
use graven::progress::ProgressLine;
use graven_verify::CompactRange;
use graven_verify::export::ExportWriter;

use super::output::{hashes, rpc};

/// `graven export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Ledger name.
    ledger: String,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// First journal index (default 0).
    #[arg(long)]
    from: Option<u64>,
    /// One past the last index (default: the ledger's size now).
    #[arg(long)]
    to: Option<u64>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// Subscribes to `[from, to)` and writes the export file.
pub async fn run(c: &mut Client, a: ExportArgs) -> anyhow::Result<()> {
    let path = a.out.as_path();
    if path.exists() && !a.force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let info = c
        .admin
        .describe_ledger(pb::DescribeLedgerRequest {
            name: a.ledger.clone(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    let (from, to) = (a.from.unwrap_or(0), a.to.unwrap_or(info.size));
    if from > to || to > info.size {
        bail!(
            "need --from <= --to <= the ledger size {} (got {from} and {to})",
            info.size
        );
    }
    let request = pb::SubscribeRequest {
        ledger: a.ledger,
        from_index: Some(from),
        to_index: Some(to),
        tables: vec![],
    };
    let mut events = c.stream.subscribe(request).await.map_err(rpc)?.into_inner();
    // The frontier comes first when the export does not start at 0.
    let mut frontier = CompactRange::new();
    let mut first = None;
    if from > 0 {
        match events.message().await.map_err(rpc)?.and_then(|e| e.kind) {
            Some(pb::event::Kind::Frontier(f)) => {
                frontier = CompactRange::from_parts(f.size, hashes(&f.subtrees)?)
                    .ok_or_else(|| anyhow!("server sent a malformed frontier"))?;
            }
            other => first = other,
        }
        if frontier.size() != from {
            bail!("server did not send the frontier of index {from}");
        }
    }
    let tmp = temporary_name(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let result = async {
        let mut writer = ExportWriter::new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            &info.origin,
            from,
            to,
            &frontier,
        )?;
        let mut line = ProgressLine::new();
        let mut last_checkpoint: Option<pb::StreamCheckpoint> = None;
        let mut written = 0u64;
        let mut next = first;
        loop {
            let kind = match next.take() {
                Some(k) => k,
                None => match events.message().await.map_err(rpc)? {
                    Some(pb::Event { kind: Some(k) }) => k,
                    Some(_) => bail!("server sent an empty event"),
                    None => break,
                },
            };
            match kind {
                pb::event::Kind::Revision(r) => {
                    let body = (r.operation != "delete").then_some(r.json.as_slice());
                    writer.record(&r.entry, body)?;
                    written += 1;
                    line.show(|| format!("exported {written} of {} revisions", to - from));
                }
                pb::event::Kind::Checkpoint(cp) => last_checkpoint = Some(cp),
                pb::event::Kind::Frontier(_) | pb::event::Kind::Skipped(_) => {
                    bail!("unexpected event in an unfiltered stream")
                }
            }
        }
        line.finish(&format!("exported {written} of {} revisions", to - from));
        let checkpoint = last_checkpoint
            .filter(|cp| cp.size == to)
            .ok_or_else(|| anyhow!("the stream ended without the checkpoint of size {to}"))?;
        let file = writer
            .finish(&checkpoint.checkpoint)?
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        // Best effort: the temporary file is hidden and named after this process.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.<name>.tmp-<pid>` beside `path`.
fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("export");
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
