//! The `graven` command line: `serve`, and the client commands scripts rely on.
//!
//! Output is for scripts: receipts and documents as one JSON object per line, checkpoints,
//! keys and proofs as the exact text `graven-verify` reads, entries as raw bytes. Errors
//! print one line on stderr and exit 1; usage errors exit 2.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use graven_verify::{ConsistencyProof, Hash, InclusionProof};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::auth::Bearer;
use crate::engine::Config;
use crate::pb;
use crate::server::MAX_MESSAGE_BYTES;

/// graven: a verifiable ledger database.
#[derive(Debug, Parser)]
#[command(name = "graven", version, about, long_about = None)]
pub struct Cli {
    /// Server address for client commands.
    #[arg(
        long,
        global = true,
        env = "GRAVEN_SERVER",
        default_value = "http://127.0.0.1:7420"
    )]
    pub server: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create, list, describe, update or delete ledgers.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Create, list or drop tables.
    #[command(subcommand)]
    Table(TableCommand),
    /// Insert a document; prints the receipt.
    Insert {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// The document, a JSON object; `-` reads it from standard input.
        json: String,
        /// Document id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        key: IdempotencyArg,
    },
    /// Replace a document; prints the receipt.
    Update {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// Document id.
        id: String,
        /// The new document, a JSON object; `-` reads it from standard input.
        json: String,
        /// Only update if the document is at this version.
        #[arg(long)]
        expect_version: Option<u64>,
        #[command(flatten)]
        key: IdempotencyArg,
    },
    /// Delete a document; prints the receipt.
    Delete {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// Document id.
        id: String,
        /// Only delete if the document is at this version.
        #[arg(long)]
        expect_version: Option<u64>,
        #[command(flatten)]
        key: IdempotencyArg,
    },
    /// Run several operations atomically, from a JSON file (`-` for stdin); prints the
    /// receipt. The file: {"operations": [{"insert": {"table": "t", "id": "1",
    /// "document": {...}}}, {"update": {..., "expect_version": 0}}, {"delete": {...}},
    /// {"check": {"table": "t", "id": "1", "version": 3 | "exists": true |
    /// "not_exists": true}}], "idempotency_key": "optional"}.
    Transact {
        /// Ledger name.
        ledger: String,
        /// The transaction file; `-` reads standard input.
        file: String,
    },
    /// Print a document: {"id", "version", "index", "document"}.
    Get {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// Document id.
        id: String,
        /// A given version instead of the current one.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Print every revision of a document, one JSON object per line, oldest first.
    History {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
        /// Document id.
        id: String,
    },
    /// Print a table's live documents, one JSON object per line, by id.
    Scan {
        /// Ledger name.
        ledger: String,
        /// Table name.
        table: String,
    },
    /// Print the latest signed checkpoint, verbatim.
    Checkpoint {
        /// Ledger name.
        ledger: String,
    },
    /// Print the ledger's verifier key (vkey).
    Key {
        /// Ledger name.
        ledger: String,
    },
    /// Write the raw entry bytes (the leaf data) at a journal index to stdout.
    Entry {
        /// Ledger name.
        ledger: String,
        /// Journal index.
        index: u64,
    },
    /// Print proofs in the text forms graven-verify checks.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Follow the change stream: one JSON object per line (revisions, checkpoints), in
    /// journal order, until interrupted. Pipe it to `graven-verify stream` to verify it.
    Tail {
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
    },
    /// Write a self-contained journal export (entries, bodies, the signed checkpoint of
    /// its end) for `graven-verify audit`. Streams in constant memory; written to a
    /// temporary name and renamed into place when complete.
    Export {
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
    },
    /// Load-test a server (or raw redb) and report throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// Check ledgers for tampering or damage: every entry, tree hash, body and index row
    /// against the signed checkpoint. Offline on a data folder (the server stopped), or
    /// with --online by the running server on a snapshot. Exits 0 when all is well, 1 on a
    /// discrepancy, 2 when it cannot run.
    Check(crate::check::CheckArgs),
    /// Rebuild a ledger from a whole journal export and its signing key, offline (no
    /// server may be using the data folder): a restore, with the same tree and checkpoint.
    /// Exits 0 when imported, 1 when the export does not verify, 2 when it cannot run.
    Import(crate::import::ImportArgs),
    /// Make a bearer token for a principal: prints the token on stdout (give it to the
    /// client, which reads it from GRAVEN_TOKEN or the file named by GRAVEN_TOKEN_FILE)
    /// and, on stderr, the entry for `graven serve --auth FILE`, which stores only its
    /// SHA-256.
    Token {
        /// The principal's name.
        name: String,
    },
}

/// `graven serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data folder.
    #[arg(long, env = "GRAVEN_DATA", default_value = "./graven-data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "GRAVEN_LISTEN", default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// Server name: ledgers created from now on get checkpoint origin `<name>/<ledger>`.
    #[arg(long, env = "GRAVEN_NAME", default_value = "graven.local")]
    pub name: String,
    /// Largest document, in bytes of canonical JSON.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_document_bytes: usize,
    /// Most operations in one transaction.
    #[arg(long, default_value_t = 10_000)]
    pub max_transaction_operations: usize,
    /// Largest transaction, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_transaction_bytes: usize,
    /// redb cache per ledger, in MiB.
    #[arg(long, default_value_t = 64)]
    pub cache_mib: usize,
    /// Turn authentication on: principals, token hashes and roles per ledger from this
    /// TOML file (see `graven token`). Off by default: every request is allowed.
    #[arg(long, env = "GRAVEN_AUTH", value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// Serve TLS (rustls) with this PEM certificate chain; needs --tls-key. Clients then
    /// use an https:// server address.
    #[arg(
        long,
        env = "GRAVEN_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "GRAVEN_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only clients with a certificate issued by this PEM CA.
    #[arg(
        long,
        env = "GRAVEN_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// The TLS settings, read from the files named, or `None` for plain TCP.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

/// Connects to a server address: `http://` plain, `https://` over TLS checked against the
/// PEM CA named by `GRAVEN_CA_FILE`, presenting the client certificate of
/// `GRAVEN_CLIENT_CERT` and `GRAVEN_CLIENT_KEY` if set (mutual TLS).
pub async fn connect_channel(server: &str) -> anyhow::Result<Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut endpoint = tonic::transport::Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("invalid server address {server:?}"))?
        .tcp_nodelay(true);
    if server.starts_with("https://") {
        let read = |var: &str| -> anyhow::Result<Option<Vec<u8>>> {
            match std::env::var_os(var) {
                None => Ok(None),
                Some(p) => std::fs::read(&p)
                    .map(Some)
                    .with_context(|| format!("{var} {}", std::path::Path::new(&p).display())),
            }
        };
        let ca = read("GRAVEN_CA_FILE")?.ok_or_else(|| {
            anyhow!(
                "an https:// server needs GRAVEN_CA_FILE: the PEM CA its certificate is issued by"
            )
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (read("GRAVEN_CLIENT_CERT")?, read("GRAVEN_CLIENT_KEY")?) {
            (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            _ => bail!("set both GRAVEN_CLIENT_CERT and GRAVEN_CLIENT_KEY, or neither"),
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {server}"))
}

/// Retry safety for single-operation commands.
#[derive(Debug, Args)]
pub struct IdempotencyArg {
    /// Idempotency key: a retry with the same key returns the first receipt.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

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

impl ServeArgs {
    /// The engine configuration these options describe.
    pub fn config(&self) -> Config {
        let mut c = Config::new(&self.data);
        c.server_name = self.name.clone();
        c.limits.max_document_bytes = self.max_document_bytes;
        c.limits.max_transaction_operations = self.max_transaction_operations;
        c.limits.max_transaction_bytes = self.max_transaction_bytes;
        c.cache_bytes = self.cache_mib << 20;
        c
    }
}

/// Connected clients of the three services.
pub struct Client {
    /// Ledgers, tables, the online check.
    pub admin: pb::admin_client::AdminClient<Conn>,
    /// Transactions and reads.
    pub docs: pb::documents_client::DocumentsClient<Conn>,
    /// Checkpoints, entries, proofs.
    pub proofs: pb::proofs_client::ProofsClient<Conn>,
    /// The change stream.
    pub stream: pb::stream_client::StreamClient<Conn>,
}

/// A channel that carries the bearer token, if one is configured.
pub type Conn = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

impl Client {
    /// Connects to `server` (see [`connect_channel`]) with the token of the environment.
    pub async fn connect(server: &str) -> anyhow::Result<Client> {
        let channel = connect_channel(server).await?;
        let bearer = Bearer::from_env().map_err(anyhow::Error::msg)?;
        Ok(Client::from_channel(channel, bearer))
    }

    /// Clients over an existing channel, sending `bearer`'s token.
    pub fn from_channel(channel: Channel, bearer: Bearer) -> Client {
        let channel = tonic::service::interceptor::InterceptedService::new(channel, bearer);
        Client {
            admin: pb::admin_client::AdminClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            docs: pb::documents_client::DocumentsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            proofs: pb::proofs_client::ProofsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            stream: pb::stream_client::StreamClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }
}

/// Turns a gRPC status into one readable line.
fn rpc(status: tonic::Status) -> anyhow::Error {
    anyhow!(status_line(&status))
}

/// A gRPC status as one line: its code, then its message.
pub(crate) fn status_line(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// A document argument: the JSON itself, or `-` for standard input.
fn document_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the document from standard input")?;
        Ok(buf)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

fn receipt_json(r: &pb::Receipt) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("tx".into(), r.tx_id.into());
    // Single-operation commands get the operation's fields at the top level.
    if let [only] = r.results.as_slice() {
        v.insert("index".into(), json!(only.index));
        v.insert("version".into(), only.version.into());
        v.insert("id".into(), only.id.clone().into());
        v.insert("table".into(), only.table.clone().into());
    }
    v.insert("first_index".into(), r.first_index.into());
    v.insert("revisions".into(), r.revisions.into());
    v.insert("commit_micros".into(), r.commit_micros.into());
    v.insert("replayed".into(), r.replayed.into());
    let results: Vec<Value> = r
        .results
        .iter()
        .map(|o| json!({"table": o.table, "id": o.id, "version": o.version, "index": o.index}))
        .collect();
    v.insert("results".into(), results.into());
    v.insert("checkpoint".into(), r.checkpoint.clone().into());
    Value::Object(v)
}

fn revision_json(r: &pb::Revision) -> anyhow::Result<String> {
    // The stored canonical JSON is spliced in unchanged.
    let document: Option<Box<RawValue>> = if r.json.is_empty() {
        None
    } else {
        Some(
            RawValue::from_string(
                String::from_utf8(r.json.clone()).context("server sent a non-UTF-8 document")?,
            )
            .context("server sent invalid JSON")?,
        )
    };
    #[derive(serde::Serialize)]
    struct Out<'a> {
        id: &'a str,
        version: u64,
        index: u64,
        document: Option<Box<RawValue>>,
        table: &'a str,
        operation: &'a str,
        tx: u64,
        commit_micros: u64,
        principal: &'a str,
    }
    Ok(serde_json::to_string(&Out {
        id: &r.id,
        version: r.version,
        index: r.index,
        document,
        table: &r.table,
        operation: &r.operation,
        tx: r.tx_id,
        commit_micros: r.commit_micros,
        principal: &r.principal,
    })?)
}

/// One `graven tail` line (docs/FORMAT.md section 10).
fn event_json(e: &pb::Event) -> anyhow::Result<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    Ok(match &e.kind {
        Some(pb::event::Kind::Frontier(f)) => json!({
            "type": "frontier",
            "size": f.size,
            "subtrees": f.subtrees.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })
        .to_string(),
        Some(pb::event::Kind::Revision(r)) => {
            let document: Option<Box<RawValue>> = if r.json.is_empty() {
                None
            } else {
                Some(RawValue::from_string(
                    String::from_utf8(r.json.clone())
                        .context("server sent a non-UTF-8 document")?,
                )?)
            };
            #[derive(serde::Serialize)]
            struct Line<'a> {
                r#type: &'static str,
                index: u64,
                entry: String,
                table: &'a str,
                id: &'a str,
                version: u64,
                operation: &'a str,
                tx: u64,
                commit_micros: u64,
                principal: &'a str,
                document: Option<Box<RawValue>>,
            }
            serde_json::to_string(&Line {
                r#type: "revision",
                index: r.index,
                entry: B64.encode(&r.entry),
                table: &r.table,
                id: &r.id,
                version: r.version,
                operation: &r.operation,
                tx: r.tx_id,
                commit_micros: r.commit_micros,
                principal: &r.principal,
                document,
            })?
        }
        Some(pb::event::Kind::Skipped(k)) => json!({
            "type": "skipped",
            "index": k.index,
            "leaf_hash": B64.encode(&k.leaf_hash),
        })
        .to_string(),
        Some(pb::event::Kind::Checkpoint(c)) => {
            json!({"type": "checkpoint", "checkpoint": c.checkpoint}).to_string()
        }
        None => bail!("server sent an empty event"),
    })
}

fn ledger_json(i: &pb::LedgerInfo) -> Value {
    json!({
        "name": i.name,
        "origin": i.origin,
        "size": i.size,
        "vkey": i.vkey,
        "deletion_protection": i.deletion_protection,
        "created_micros": i.created_micros,
        "checkpoint": i.checkpoint,
    })
}

fn hashes(raw: &[Vec<u8>]) -> anyhow::Result<Vec<Hash>> {
    raw.iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map(Hash)
                .map_err(|_| anyhow!("server sent a proof hash of {} bytes", h.len()))
        })
        .collect()
}

/// Parses the `graven transact` file format into operations.
fn transaction_file(ledger: String, text: &[u8]) -> anyhow::Result<pb::TransactRequest> {
    use pb::operation::Kind;
    let v: Value = serde_json::from_slice(text).context("transaction file is not JSON")?;
    let ops = v
        .get("operations")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("transaction file needs an \"operations\" array"))?;
    let str_field = |o: &Value, f: &str| o.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    let doc = |o: &Value, i: usize| -> anyhow::Result<Vec<u8>> {
        let d = o
            .get("document")
            .ok_or_else(|| anyhow!("operations[{i}] needs a \"document\""))?;
        Ok(serde_json::to_vec(d)?)
    };
    let mut operations = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let (name, body) = op
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| {
                anyhow!("operations[{i}] must be an object like {{\"insert\": {{...}}}}")
            })?;
        let expect = body.get("expect_version").and_then(Value::as_u64);
        let kind = match name.as_str() {
            "insert" => Kind::Insert(pb::Insert {
                table: str_field(body, "table"),
                id: str_field(body, "id"),
                json: doc(body, i)?,
            }),
            "update" => Kind::Update(pb::Update {
                table: str_field(body, "table"),
                id: str_field(body, "id"),
                json: doc(body, i)?,
                expected_version: expect,
            }),
            "delete" => Kind::Delete(pb::Delete {
                table: str_field(body, "table"),
                id: str_field(body, "id"),
                expected_version: expect,
            }),
            "check" => {
                let condition = if let Some(v) = body.get("version").and_then(Value::as_u64) {
                    pb::check::Condition::Version(v)
                } else if body.get("exists") == Some(&Value::Bool(true)) {
                    pb::check::Condition::Exists(true)
                } else if body.get("not_exists") == Some(&Value::Bool(true)) {
                    pb::check::Condition::NotExists(true)
                } else {
                    bail!(
                        "operations[{i}]: a check needs \"version\", \"exists\": true or \"not_exists\": true"
                    );
                };
                Kind::Check(pb::Check {
                    table: str_field(body, "table"),
                    id: str_field(body, "id"),
                    condition: Some(condition),
                })
            }
            other => bail!("operations[{i}]: unknown operation {other:?}"),
        };
        operations.push(pb::Operation { kind: Some(kind) });
    }
    Ok(pb::TransactRequest {
        ledger,
        operations,
        idempotency_key: str_field(&v, "idempotency_key"),
    })
}

fn one_op(ledger: String, kind: pb::operation::Kind, key: IdempotencyArg) -> pb::TransactRequest {
    pb::TransactRequest {
        ledger,
        operations: vec![pb::Operation { kind: Some(kind) }],
        idempotency_key: key.idempotency_key.unwrap_or_default(),
    }
}

/// `graven export`: subscribes to `[from, to)` and writes the export file.
async fn export(
    c: &mut Client,
    ledger: String,
    path: &std::path::Path,
    from: Option<u64>,
    to: Option<u64>,
    force: bool,
) -> anyhow::Result<()> {
    use graven_verify::CompactRange;
    use graven_verify::export::ExportWriter;
    use std::io::IsTerminal as _;
    if path.exists() && !force {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let info = c
        .admin
        .describe_ledger(pb::DescribeLedgerRequest {
            name: ledger.clone(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(info.size));
    if from > to || to > info.size {
        bail!(
            "need --from <= --to <= the ledger size {} (got {from} and {to})",
            info.size
        );
    }
    let mut events = c
        .stream
        .subscribe(pb::SubscribeRequest {
            ledger,
            from_index: Some(from),
            to_index: Some(to),
            tables: vec![],
        })
        .await
        .map_err(rpc)?
        .into_inner();
    // The frontier comes first when the export does not start at 0.
    let mut frontier = CompactRange::new();
    let mut first = None;
    if from > 0 {
        match events.message().await.map_err(rpc)?.and_then(|e| e.kind) {
            Some(pb::event::Kind::Frontier(f)) => {
                let hashes = hashes(&f.subtrees)?;
                frontier = CompactRange::from_parts(f.size, hashes)
                    .ok_or_else(|| anyhow!("server sent a malformed frontier"))?;
            }
            other => first = other,
        }
        if frontier.size() != from {
            bail!("server did not send the frontier of index {from}");
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("export"),
        std::process::id()
    ));
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
        let progress = std::io::stderr().is_terminal();
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
                    if progress && written.is_multiple_of(10_000) {
                        eprint!("\rexported {written} of {} revisions", to - from);
                    }
                }
                pb::event::Kind::Checkpoint(cp) => last_checkpoint = Some(cp),
                pb::event::Kind::Frontier(_) | pb::event::Kind::Skipped(_) => {
                    bail!("unexpected event in an unfiltered stream")
                }
            }
        }
        if progress {
            eprintln!("\rexported {written} of {} revisions", to - from);
        }
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
        if let Some(dir) = dir {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs a client command, writing its output to `out`.
pub async fn run_client(
    server: &str,
    command: Command,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    use pb::operation::Kind;
    if let Command::Token { name } = &command {
        let (token, hash) = crate::auth::new_token().map_err(anyhow::Error::msg)?;
        writeln!(out, "{token}")?;
        eprintln!(
            "# for the auth file of graven serve --auth (set the roles: reader, writer or \
             admin, per ledger or \"*\"):\n[[principal]]\nname = {name:?}\ntoken_sha256 = \"{hash}\"\nroles = {{ }}"
        );
        return Ok(());
    }
    if let Command::Bench(args) = &command {
        let report = crate::bench::run(server, args).await?;
        if args.json {
            writeln!(out, "{}", report.to_json())?;
        } else {
            write!(out, "{}", report.to_text())?;
        }
        return Ok(());
    }
    let mut c = Client::connect(server).await?;
    match command {
        Command::Serve(_)
        | Command::Bench(_)
        | Command::Check(_)
        | Command::Import(_)
        | Command::Token { .. } => {
            bail!("not a client command")
        }
        Command::Export {
            ledger,
            out: path,
            from,
            to,
            force,
        } => export(&mut c, ledger, &path, from, to, force).await?,
        Command::Tail {
            ledger,
            from,
            tables,
            to,
        } => {
            let mut events = c
                .stream
                .subscribe(pb::SubscribeRequest {
                    ledger,
                    from_index: from,
                    to_index: to,
                    tables,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            while let Some(e) = events.message().await.map_err(rpc)? {
                writeln!(out, "{}", event_json(&e)?)?;
                // Consumers follow live: every line goes out as it comes.
                out.flush()?;
            }
        }
        Command::Ledger(cmd) => match cmd {
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
                let info = c
                    .admin
                    .create_ledger(pb::CreateLedgerRequest {
                        name,
                        signing_key,
                        deletion_protection_off: no_deletion_protection,
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                writeln!(out, "{}", ledger_json(&info))?;
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
            }
            LedgerCommand::Describe { name } => {
                let info = c
                    .admin
                    .describe_ledger(pb::DescribeLedgerRequest { name })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                writeln!(out, "{}", ledger_json(&info))?;
            }
            LedgerCommand::Update {
                name,
                deletion_protection,
            } => {
                let info = c
                    .admin
                    .update_ledger(pb::UpdateLedgerRequest {
                        name,
                        deletion_protection,
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                writeln!(out, "{}", ledger_json(&info))?;
            }
            LedgerCommand::Delete { name } => {
                c.admin
                    .delete_ledger(pb::DeleteLedgerRequest { name })
                    .await
                    .map_err(rpc)?;
            }
        },
        Command::Table(cmd) => match cmd {
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
        },
        Command::Insert {
            ledger,
            table,
            json,
            id,
            key,
        } => {
            let kind = Kind::Insert(pb::Insert {
                table,
                id: id.unwrap_or_default(),
                json: document_arg(&json)?,
            });
            let r = c
                .docs
                .transact(one_op(ledger, kind, key))
                .await
                .map_err(rpc)?;
            writeln!(out, "{}", receipt_json(r.get_ref()))?;
        }
        Command::Update {
            ledger,
            table,
            id,
            json,
            expect_version,
            key,
        } => {
            let kind = Kind::Update(pb::Update {
                table,
                id,
                json: document_arg(&json)?,
                expected_version: expect_version,
            });
            let r = c
                .docs
                .transact(one_op(ledger, kind, key))
                .await
                .map_err(rpc)?;
            writeln!(out, "{}", receipt_json(r.get_ref()))?;
        }
        Command::Delete {
            ledger,
            table,
            id,
            expect_version,
            key,
        } => {
            let kind = Kind::Delete(pb::Delete {
                table,
                id,
                expected_version: expect_version,
            });
            let r = c
                .docs
                .transact(one_op(ledger, kind, key))
                .await
                .map_err(rpc)?;
            writeln!(out, "{}", receipt_json(r.get_ref()))?;
        }
        Command::Transact { ledger, file } => {
            let text = if file == "-" {
                document_arg("-")?
            } else {
                std::fs::read(&file).with_context(|| format!("reading {file}"))?
            };
            let req = transaction_file(ledger, &text)?;
            let r = c.docs.transact(req).await.map_err(rpc)?;
            writeln!(out, "{}", receipt_json(r.get_ref()))?;
        }
        Command::Get {
            ledger,
            table,
            id,
            version,
        } => {
            let r = c
                .docs
                .get_document(pb::GetDocumentRequest {
                    ledger,
                    table,
                    id,
                    version,
                    proof: None,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            let rev = r
                .revision
                .ok_or_else(|| anyhow!("server sent no revision"))?;
            writeln!(out, "{}", revision_json(&rev)?)?;
        }
        Command::History { ledger, table, id } => {
            let mut page_token = String::new();
            loop {
                let page = c
                    .docs
                    .history(pb::HistoryRequest {
                        ledger: ledger.clone(),
                        table: table.clone(),
                        id: id.clone(),
                        page_size: 0,
                        page_token,
                        proof: None,
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                for rev in &page.revisions {
                    writeln!(out, "{}", revision_json(rev)?)?;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        Command::Scan { ledger, table } => {
            let mut page_token = String::new();
            loop {
                let page = c
                    .docs
                    .scan(pb::ScanRequest {
                        ledger: ledger.clone(),
                        table: table.clone(),
                        page_size: 0,
                        page_token,
                        proof: None,
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                for rev in &page.revisions {
                    writeln!(out, "{}", revision_json(rev)?)?;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        Command::Checkpoint { ledger } => {
            let r = c
                .proofs
                .get_checkpoint(pb::GetCheckpointRequest { ledger })
                .await
                .map_err(rpc)?
                .into_inner();
            out.write_all(r.checkpoint.as_bytes())?;
        }
        Command::Key { ledger } => {
            let r = c
                .proofs
                .get_key(pb::GetKeyRequest { ledger })
                .await
                .map_err(rpc)?
                .into_inner();
            writeln!(out, "{}", r.vkey)?;
        }
        Command::Entry { ledger, index } => {
            let r = c
                .proofs
                .get_entry(pb::GetEntryRequest { ledger, index })
                .await
                .map_err(rpc)?
                .into_inner();
            out.write_all(&r.entry)?;
        }
        Command::Proof(ProofCommand::Inclusion {
            ledger,
            index,
            size,
        }) => {
            let p = c
                .proofs
                .prove_inclusion(pb::ProveInclusionRequest {
                    ledger,
                    index,
                    tree_size: size.unwrap_or(0),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            let text = InclusionProof {
                extra: None,
                index: p.index,
                hashes: hashes(&p.hashes)?,
                checkpoint: p.checkpoint,
            }
            .to_text();
            out.write_all(text.as_bytes())?;
        }
        Command::Proof(ProofCommand::Consistency {
            ledger,
            old_size,
            size,
        }) => {
            let p = c
                .proofs
                .prove_consistency(pb::ProveConsistencyRequest {
                    ledger,
                    old_size,
                    new_size: size.unwrap_or(0),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            let text = ConsistencyProof {
                old_size: p.old_size,
                hashes: hashes(&p.hashes)?,
                checkpoint: p.checkpoint,
            }
            .to_text();
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}
