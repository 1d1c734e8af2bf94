//! `graven serve`: the server, on the embedded default (redb in `./graven-data`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use graven::engine::Config;
use graven::server::{self, TlsFiles};
use tracing_subscriber::EnvFilter;

/// `graven serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data folder.
    #[arg(long, env = "GRAVEN_DATA", default_value = "./graven-data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub storage: super::StorageArg,
    /// Address to listen on.
    #[arg(long, env = "GRAVEN_LISTEN", default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// With --storage: the address the other servers reach this one at, to forward the
    /// writes of the ledgers it writes. Default: http(s)://<--listen>.
    #[arg(long, env = "GRAVEN_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// With --storage: how long a ledger's write lease lasts without renewal, in
    /// milliseconds; when its writer dies, another server takes over within about this.
    #[arg(long, env = "GRAVEN_LEASE_MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub lease_ms: u64,
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
    /// Most documents (and revisions) one statement may read; past it the statement is
    /// refused (RESOURCE_EXHAUSTED) and should use an index.
    #[arg(long, default_value_t = 100_000)]
    pub max_examined_documents: u64,
    /// redb page cache per ledger, in MiB (default: a sixteenth of the machine's memory,
    /// between 64 MiB and 4 GiB; it fills only as pages are read).
    #[arg(long, default_value_t = graven::storage::server_cache_bytes() >> 20)]
    pub cache_mib: usize,
    /// Revisions between two writes of the state map's changed records; between them the
    /// changes are kept in memory and a restart after a crash replays them from the
    /// journal (about 10 µs a revision). Larger is faster to write, slower to restart and
    /// bigger in memory.
    #[arg(long, env = "GRAVEN_STATE_FLUSH", default_value_t = graven::storage::DEFAULT_STATE_FLUSH, value_parser = clap::value_parser!(u64).range(1..))]
    pub state_flush: u64,
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
    /// The engine configuration these options describe.
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(&self.data);
        c.server_name = self.name.clone();
        c.limits.max_document_bytes = self.max_document_bytes;
        c.limits.max_transaction_operations = self.max_transaction_operations;
        c.limits.max_transaction_bytes = self.max_transaction_bytes;
        c.limits.max_examined_documents = self.max_examined_documents;
        c.cache_bytes = self.cache_mib << 20;
        c.state_flush = self.state_flush;
        c.storage = self.storage.location()?;
        c.address = self.advertise.clone().unwrap_or_else(|| {
            let scheme = if self.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.listen)
        });
        c.lease = std::time::Duration::from_millis(self.lease_ms);
        Ok(c)
    }

    /// The TLS files, when TLS is on.
    fn tls(&self) -> Option<TlsFiles> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(TlsFiles {
            cert,
            key,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GRAVEN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let auth = match &args.auth {
        Some(path) => Some(Arc::new(graven::auth::Auth::load(path)?)),
        None => None,
    };
    let tls = args.tls().map(|files| files.load()).transpose()?;
    server::serve(
        args.config()?,
        args.listen,
        auth,
        tls,
        server::shutdown_signal(),
    )
    .await
}
