//! Shared fixtures: an in-process server over an in-memory duplex pipe (no ports),
//! request builders, and `graven serve` as a child process with the workspace's binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use graven::engine::{Config, Engine};
use graven::pb;
use graven::pb::operation::Kind;
use graven::storage::Location;
use graven_verify::Hash;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// A running in-process server and clients connected to it.
pub struct TestServer {
    pub engine: Arc<Engine>,
    pub admin: pb::admin_client::AdminClient<Channel>,
    pub docs: pb::documents_client::DocumentsClient<Channel>,
    pub proofs: pb::proofs_client::ProofsClient<Channel>,
    pub channel: Channel,
    pub dir: tempfile::TempDir,
}

/// Starts a server on a fresh data folder with default settings.
pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    start_with(Config::new(dir.path()), dir).await
}

/// Starts a server with `config` (its data folder inside `dir`).
pub async fn start_with(mut config: Config, dir: tempfile::TempDir) -> TestServer {
    if config.storage == Location::Embedded {
        config.storage = test_storage(&config.data_dir).await;
    }
    let engine = graven::server::open_engine(config).await.expect("engine");
    let channel = connect(engine.clone()).await;
    TestServer {
        admin: pb::admin_client::AdminClient::new(channel.clone()),
        docs: pb::documents_client::DocumentsClient::new(channel.clone())
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20),
        proofs: pb::proofs_client::ProofsClient::new(channel.clone()),
        channel,
        engine,
        dir,
    }
}

/// Where the in-process servers keep their ledgers: redb in their data folder, or, when
/// `GRAVEN_TEST_POSTGRES` names a PostgreSQL database (`.ci/run` runs the engine's suites
/// a second time so), that database, in a schema of the data folder's own (named after its
/// path, so a folder reopened finds its ledgers and two folders never meet).
pub async fn test_storage(data: &Path) -> Location {
    let Ok(url) = std::env::var("GRAVEN_TEST_POSTGRES") else {
        return Location::Embedded;
    };
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data.as_os_str().as_encoded_bytes());
    let schema = format!("t{}", hex::encode(&digest[..8]));
    let (client, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("GRAVEN_TEST_POSTGRES: connecting");
    let driver = tokio::spawn(driver);
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .expect("creating the test's schema");
    drop(client);
    let _ = driver.await;
    let sep = if url.contains('?') { '&' } else { '?' };
    // The sessions of the folder's servers carry its schema's name, so that a test can
    // tell when they have ended ([`wait_for_sessions_to_end`]).
    Location::Postgres(format!(
        "{url}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    ))
}

/// Waits until no session of `url`'s application (a data folder's servers, see
/// [`test_storage`]) is left but this one. A server killed with SIGKILL leaves its
/// sessions to PostgreSQL, which still runs what they had been sent: a batch whose COMMIT
/// was on the wire commits after the kill. Checks of what survived a kill wait for that,
/// as an operator's takeover waits for the lease to lapse.
pub async fn wait_for_sessions_to_end(url: &str) {
    let (client, driver) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to PostgreSQL");
    let driver = tokio::spawn(driver);
    let started = Instant::now();
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = \
                 current_setting('application_name') AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("reading pg_stat_activity");
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the killed server's PostgreSQL sessions are still there after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    let _ = driver.await;
}

/// [`test_storage`] from synchronous code (a test's own runtime may be running): the
/// `--storage` URL for a `graven` process on data folder `data`, if there is one.
pub fn test_storage_url(data: &Path) -> Option<String> {
    std::env::var_os("GRAVEN_TEST_POSTGRES")?;
    let data = data.to_owned();
    let location = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test_storage(&data))
    })
    .join()
    .expect("test storage");
    match location {
        Location::Postgres(url) => Some(url),
        Location::Embedded => None,
    }
}

/// Serves the engine over an in-memory pipe and returns a channel to it.
pub async fn connect(engine: Arc<Engine>) -> Channel {
    connect_with_auth(engine, None).await
}

/// [`connect`], with authentication on when `auth` is given.
pub async fn connect_with_auth(
    engine: Arc<Engine>,
    auth: Option<Arc<graven::auth::Auth>>,
) -> Channel {
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    let router = graven::server::router(engine, auth, None)
        .await
        .expect("router");
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io)))
            .await;
    });
    let mut client_io = Some(client_io);
    Endpoint::try_from("http://in-process.test")
        .expect("endpoint")
        .connect_with_connector(service_fn(move |_: Uri| {
            let io = client_io.take();
            async move {
                io.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the in-process pipe has one connection"))
            }
        }))
        .await
        .expect("in-process channel")
}

impl TestServer {
    /// Creates a ledger (deletion protection off) with the given tables.
    pub async fn ledger(&mut self, name: &str, tables: &[&str]) -> pb::LedgerInfo {
        let info = self
            .admin
            .create_ledger(pb::CreateLedgerRequest {
                name: name.into(),
                signing_key: String::new(),
                deletion_protection_off: true,
            })
            .await
            .expect("create ledger")
            .into_inner();
        for t in tables {
            self.admin
                .create_table(pb::CreateTableRequest {
                    ledger: name.into(),
                    table: (*t).into(),
                })
                .await
                .expect("create table");
        }
        info
    }

    /// Runs a transaction.
    pub async fn transact(
        &mut self,
        ledger: &str,
        ops: Vec<Kind>,
    ) -> Result<pb::Receipt, tonic::Status> {
        self.docs
            .transact(tx(ledger, ops, ""))
            .await
            .map(|r| r.into_inner())
    }
}

/// A Transact request.
pub fn tx(ledger: &str, ops: Vec<Kind>, idempotency_key: &str) -> pb::TransactRequest {
    pb::TransactRequest {
        ledger: ledger.into(),
        operations: ops
            .into_iter()
            .map(|k| pb::Operation { kind: Some(k) })
            .collect(),
        idempotency_key: idempotency_key.into(),
    }
}

pub fn insert(table: &str, id: &str, json: &str) -> Kind {
    Kind::Insert(pb::Insert {
        table: table.into(),
        id: id.into(),
        json: json.as_bytes().to_vec(),
    })
}

pub fn update(table: &str, id: &str, json: &str, expected: Option<u64>) -> Kind {
    Kind::Update(pb::Update {
        table: table.into(),
        id: id.into(),
        json: json.as_bytes().to_vec(),
        expected_version: expected,
    })
}

pub fn delete(table: &str, id: &str, expected: Option<u64>) -> Kind {
    Kind::Delete(pb::Delete {
        table: table.into(),
        id: id.into(),
        expected_version: expected,
    })
}

pub fn check(table: &str, id: &str, condition: pb::check::Condition) -> Kind {
    Kind::Check(pb::Check {
        table: table.into(),
        id: id.into(),
        condition: Some(condition),
    })
}

/// Asserts a call failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?} ({needle}), got success: {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "wrong code; message: {}", s.message());
            assert!(
                s.message().contains(needle),
                "message {:?} should contain {needle:?}",
                s.message()
            );
        }
    }
}

/// Proof hashes as a server sent them.
pub(crate) fn hashes(raw: &[Vec<u8>]) -> Vec<Hash> {
    raw.iter()
        .map(|h| Hash(h.as_slice().try_into().expect("32-byte proof hash")))
        .collect()
}

/// A small deterministic generator (xorshift64*), one per writer.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

// ---------------------------------------------------------------------------------------
// Child-process fixtures

/// The `graven` binary under test.
pub(crate) fn graven_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_graven"))
}

/// A binary of another package of the workspace, next to `graven` in the same target
/// folder, built once per test process if it is missing (cargo builds only the tested
/// package's own binaries for its tests).
fn workspace_bin(package: &str, cell: &'static OnceLock<PathBuf>) -> &'static Path {
    cell.get_or_init(|| {
        let path =
            graven_bin().with_file_name(format!("{package}{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let profile_dir = path.parent().expect("binary folder");
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["build", "-p", package]);
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => {}
                Some("release") => {
                    cargo.arg("--release");
                }
                Some(profile) => {
                    cargo.args(["--profile", profile]);
                }
            }
            if let Some(target_dir) = profile_dir.parent() {
                cargo.env("CARGO_TARGET_DIR", target_dir);
            }
            let status = cargo
                .status()
                .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
            assert!(status.success(), "cargo build -p {package}: {status}");
            assert!(
                path.exists(),
                "{} is still missing after the build",
                path.display()
            );
        }
        path
    })
}

/// The `graven-verify` binary.
pub(crate) fn verify_bin() -> &'static Path {
    static VERIFY: OnceLock<PathBuf> = OnceLock::new();
    workspace_bin("graven-verify", &VERIFY)
}

/// A `graven-bench` command (the load tool, a package of its own) with no configuration
/// inherited from the environment.
pub(crate) fn bench_command() -> Command {
    static BENCH: OnceLock<PathBuf> = OnceLock::new();
    let mut c = Command::new(workspace_bin("graven-bench", &BENCH));
    c.env_remove("GRAVEN_SERVER");
    c
}

/// Runs `graven --server URL ARGS` (no stdin), asserts that it succeeded, and returns
/// its standard output.
pub(crate) fn graven_ok(server: &str, args: &[&str]) -> String {
    let out = graven_command()
        .args(["--server", server])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("graven");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A `graven` command with no configuration inherited from the environment.
pub(crate) fn graven_command() -> Command {
    let mut c = Command::new(graven_bin());
    for var in [
        "GRAVEN_SERVER",
        "GRAVEN_DATA",
        "GRAVEN_LISTEN",
        "GRAVEN_NAME",
        "GRAVEN_STORAGE",
    ] {
        c.env_remove(var);
    }
    c.env("GRAVEN_LOG", "warn");
    c
}

/// A `graven` command ([`graven_command`]) for data folder `data`: on the test storage
/// the folder's servers use (`GRAVEN_TEST_POSTGRES`), so that `check`, `import` and the
/// like find its ledgers.
pub(crate) fn graven_on(data: &Path) -> Command {
    let mut c = graven_command();
    if let Some(url) = test_storage_url(data) {
        c.env("GRAVEN_STORAGE", url);
    }
    c
}

/// A free loopback port: bind port 0, read it, release it.
pub(crate) fn free_port() -> u16 {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0")
            && let Ok(addr) = l.local_addr()
        {
            return addr.port();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no free loopback port");
}

/// `graven serve` running as a child process. Killed (SIGKILL) when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `graven serve --data DATA` on a free port and waits until it answers gRPC.
    /// Its stderr goes to `log` (appended). Retries on another port if the one picked was
    /// taken in the meantime.
    pub(crate) fn start(data: &Path, log: &Path) -> ServerProcess {
        ServerProcess::start_with(data, log, &[], &[])
    }

    /// [`ServerProcess::start`] with environment variables for the server (`server_env`)
    /// and for the readiness probe (`probe_env`, e.g. a token when authentication is on).
    pub(crate) fn start_with(
        data: &Path,
        log: &Path,
        server_env: &[(&str, &str)],
        probe_env: &[(&str, &str)],
    ) -> ServerProcess {
        let scheme = if server_env.iter().any(|(k, _)| *k == "GRAVEN_TLS_CERT") {
            "https"
        } else {
            "http"
        };
        for _attempt in 0..5 {
            let port = free_port();
            let url = format!("{scheme}://127.0.0.1:{port}");
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("server log file");
            let child = graven_on(data)
                .arg("serve")
                .arg("--data")
                .arg(data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .envs(server_env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("spawning graven serve");
            let mut server = ServerProcess {
                child,
                url,
                log: log.to_owned(),
            };
            if server.wait_ready(Duration::from_secs(20), probe_env) {
                return server;
            }
            // It exited: a port taken between picking and binding is worth a retry.
            let text = server.log_text();
            assert!(
                text.contains("listening on") || text.contains("in use"),
                "graven serve exited at start; its log:\n{text}"
            );
        }
        panic!("graven serve could not bind a port in 5 attempts");
    }

    /// Polls `graven ledger list` until it succeeds. False if the server exited.
    fn wait_ready(&mut self, timeout: Duration, env: &[(&str, &str)]) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .child
                .try_wait()
                .expect("polling graven serve")
                .is_some()
            {
                return false;
            }
            let ok = graven_command()
                .args(["--server", &self.url, "ledger", "list"])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running graven ledger list")
                .success();
            if ok {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "graven serve did not answer within {timeout:?}; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A clean stop: SIGTERM, then wait (at most 30 s) for a successful exit.
    #[cfg(unix)]
    pub(crate) fn stop(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("polling graven serve") {
                assert!(
                    status.success(),
                    "graven serve exited with {status} on SIGTERM; its log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "graven serve did not stop within 30 s of SIGTERM; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server.
    #[cfg(unix)]
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{signal}: {sent}");
    }

    /// SIGKILL (on Unix, `Child::kill`), then reap the process.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway PostgreSQL server in a temporary folder (loopback only), if the machine
/// has one installed; stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// `postgresql://bench@127.0.0.1:PORT/postgres`.
    pub url: String,
    bin: std::path::PathBuf,
    run_as: Option<&'static str>,
    /// The server's settings (port, sockets), for a restart.
    opts: String,
}

impl Postgres {
    /// Runs `pg_ctl ARGS` on this server's data folder, as the postgres account when root.
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut c = match self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(self.bin.join("pg_ctl"));
                c
            }
            None => std::process::Command::new(self.bin.join("pg_ctl")),
        };
        c.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .expect("running pg_ctl")
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn crash(&self) {
        let out = self.pg_ctl(&["-m", "immediate", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server again, on the same port, after [`Postgres::crash`].
    pub fn start_again(&self) {
        let log = self.dir.path().join("log");
        let log = log.to_str().expect("utf-8").to_owned();
        let out = self.pg_ctl(&["-l", &log, "-o", &self.opts, "-w", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// [`Postgres::start`], or `None` after saying why on stderr; under `CI=true` (where
    /// `.ci/run` installs PostgreSQL) a missing server is a failure instead.
    pub fn start_or_skip(test: &str) -> Option<Postgres> {
        skip_unless(Postgres::start(), test)
    }

    /// A new server, if the machine has PostgreSQL's binaries.
    pub fn start() -> Option<Postgres> {
        Postgres::start_configured(|_| String::new())
    }

    /// [`Postgres::start_or_skip`] for a server that takes TLS connections only, with
    /// the certificate `server.pem` and key `server.key` of folder `certs`.
    pub fn start_tls_or_skip(test: &str, certs: &std::path::Path) -> Option<Postgres> {
        let pg = Postgres::start_configured(|data| {
            for file in ["server.pem", "server.key"] {
                std::fs::copy(certs.join(file), data.join(file)).expect("copy certificate");
                pg_chown(&data.join(file));
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod");
            // TLS or nothing: a connection without it is refused.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .expect("write pg_hba.conf");
            " -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server.key".to_owned()
        });
        skip_unless(pg, test)
    }

    /// A new server, its data folder set up by `configure` after initdb, which returns
    /// settings to add to the command line.
    fn start_configured(configure: impl FnOnce(&std::path::Path) -> String) -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())?;
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb refuses to run as root: use the postgres account then.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let run_as = root.then_some("postgres");
        let pg = |program: &str, args: &[&str]| {
            let mut c = match run_as {
                Some(user) => {
                    let mut c = std::process::Command::new("runuser");
                    c.args(["-u", user, "--"]).arg(bin.join(program));
                    c
                }
                None => std::process::Command::new(bin.join(program)),
            };
            let out = c.args(args).output().expect("running a PostgreSQL tool");
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if root {
            pg_chown(dir.path());
        }
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8 path");
        pg("initdb", &["-D", data, "-A", "trust", "-U", "bench"]);
        let port = free_port();
        let extra = configure(std::path::Path::new(data));
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c synchronous_commit=on{extra}",
            dir.path().display()
        );
        let log = dir.path().join("log");
        pg(
            "pg_ctl",
            &[
                "-D",
                data,
                "-l",
                log.to_str().expect("utf-8"),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        Some(Postgres {
            url: format!("postgresql://bench@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            run_as,
            opts,
        })
    }
}

/// `pg`, or `None` after saying why `test` is skipped; under `CI=true` (where `.ci/run`
/// installs PostgreSQL) a missing server is a failure instead.
fn skip_unless(pg: Option<Postgres>, test: &str) -> Option<Postgres> {
    if pg.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no PostgreSQL under /usr/lib/postgresql, and CI=true: .ci/run installs it"
        );
        eprintln!("SKIPPED {test}: no PostgreSQL under /usr/lib/postgresql on this machine");
    }
    pg
}

fn pg_chown(path: &std::path::Path) {
    let ok = std::process::Command::new("chown")
        .arg("postgres")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown postgres {}", path.display());
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}
