//! Shared fixtures: an in-process server over an in-memory duplex pipe (no ports), and
//! request builders.

use std::sync::Arc;

use graven::engine::{Config, Engine};
use graven::pb;
use graven::pb::operation::Kind;
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
pub async fn start_with(config: Config, dir: tempfile::TempDir) -> TestServer {
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
