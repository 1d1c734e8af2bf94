//! Every request of the gRPC API, through the real service handlers, in process. Byte 0
//! of an input picks the request, byte 1 the caller, and the rest is decoded as that
//! request's protobuf message and answered by `graven::service::GravenService` (without
//! authentication, or with principals `reader`, `writer` and `admin` holding those roles
//! on the base ledger), over one engine whose state carries over from input to input.
//!
//! The handlers pass names and numbers straight to the engine's checked lookups; this is
//! where those checks meet arbitrary input. Beyond "no panic":
//!
//! 1. no request is answered INTERNAL or UNKNOWN;
//! 2. a refused request changes nothing: the ledger names, and the base ledger's latest
//!    checkpoint, active tables and deletion protection are as they were;
//! 3. a request without a known token, or with the reader's, changes none of those,
//!    whatever the answer; without a known token the answer is UNAUTHENTICATED, and the
//!    reader's writes are PERMISSION_DENIED (SECURITY.md);
//! 4. the online check (CheckLedger, read to its end) passes on every ledger: whatever
//!    sequence of requests built them, ledgers made through the API are consistent.
//!
//! Requests that succeed may create, change and delete ledgers, the base one included.
//! After each input the fixture is brought back within bounds (see `Fixture::restore`),
//! so that state stays small and inputs mostly mean the same from one run to the next.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use graven::auth::{Auth, new_token};
use graven::engine::{Config, Engine};
use graven::model::{Limits, TableInfo};
use graven::pb;
use graven::pb::admin_server::Admin as _;
use graven::pb::documents_server::Documents as _;
use graven::pb::proofs_server::Proofs as _;
use graven::pb::stream_server::Stream as _;
use graven::service::GravenService;
use prost::Message as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Code, Request, Status};

/// The ledger every run starts with, and its table.
const BASE: &str = "l";
const TABLE: &str = "t";
/// Bounds restored after each input.
const MAX_LEDGERS: usize = 8;
const MAX_BASE_ENTRIES: u64 = 2_000;
const MAX_BASE_TABLES: usize = 8;
/// Data folders are `<parent>/graven-fuzz-requests-<pid>`.
const FOLDER_PREFIX: &str = "graven-fuzz-requests-";

/// The requests (in the order of graven.proto, then those added later, CheckLedger and
/// ExecuteStatement): byte 0 (modulo their number) picks one. ExecuteStatement is not
/// `beyond_reader`: a reader's SELECT is answered; its writes are refused.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    CreateLedger,
    ListLedgers,
    DescribeLedger,
    UpdateLedger,
    DeleteLedger,
    CreateTable,
    ListTables,
    DropTable,
    Transact,
    GetDocument,
    History,
    Scan,
    GetCheckpoint,
    GetKey,
    GetEntry,
    ProveInclusion,
    ProveConsistency,
    Subscribe,
    CheckLedger,
    ExecuteStatement,
}

const RPCS: [Rpc; 20] = [
    Rpc::CreateLedger,
    Rpc::ListLedgers,
    Rpc::DescribeLedger,
    Rpc::UpdateLedger,
    Rpc::DeleteLedger,
    Rpc::CreateTable,
    Rpc::ListTables,
    Rpc::DropTable,
    Rpc::Transact,
    Rpc::GetDocument,
    Rpc::History,
    Rpc::Scan,
    Rpc::GetCheckpoint,
    Rpc::GetKey,
    Rpc::GetEntry,
    Rpc::ProveInclusion,
    Rpc::ProveConsistency,
    Rpc::Subscribe,
    Rpc::CheckLedger,
    Rpc::ExecuteStatement,
];

impl Rpc {
    /// Whether the request needs more than the reader role.
    fn beyond_reader(self) -> bool {
        matches!(
            self,
            Rpc::CreateLedger
                | Rpc::UpdateLedger
                | Rpc::DeleteLedger
                | Rpc::CreateTable
                | Rpc::DropTable
                | Rpc::Transact
                | Rpc::CheckLedger
        )
    }
}

/// Who makes a request: byte 1 (modulo their number) picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// Authentication off.
    Anyone,
    /// Authentication on, no `authorization` header.
    NoHeader,
    /// Authentication on, a bearer token no principal has.
    WrongToken,
    Reader,
    Writer,
    Admin,
}

const CALLERS: [Caller; 6] = [
    Caller::Anyone,
    Caller::NoHeader,
    Caller::WrongToken,
    Caller::Reader,
    Caller::Writer,
    Caller::Admin,
];

/// What a refused request, or any request of a caller who may only read, must leave as
/// it was.
#[derive(Debug, PartialEq, Eq)]
struct State {
    ledgers: Vec<String>,
    /// The base ledger's latest checkpoint and its size, its active tables and its
    /// deletion protection; `None` while it does not exist.
    base: Option<(String, u64, Vec<TableInfo>, bool)>,
}

/// One engine and the services over it, for the whole process.
struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    /// Authentication off.
    open: GravenService,
    /// Authentication on.
    guarded: GravenService,
    /// `authorization` header values.
    wrong_token: MetadataValue<Ascii>,
    reader: MetadataValue<Ascii>,
    writer: MetadataValue<Ascii>,
    admin: MetadataValue<Ascii>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

/// A fresh data folder: under `GRAVEN_FUZZ_DATA` if set, else `/dev/shm` (where fsync
/// costs nothing), else the temporary folder. The folders of earlier runs whose process
/// is gone are removed first: libFuzzer exits without running destructors, so a run
/// never removes its own.
fn data_dir() -> PathBuf {
    let parent = std::env::var_os("GRAVEN_FUZZ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_owned()
            } else {
                std::env::temp_dir()
            }
        });
    // Without /proc, whether a process is alive is unknown: leave every folder.
    if Path::new("/proc/self").exists()
        && let Ok(entries) = std::fs::read_dir(&parent)
    {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(FOLDER_PREFIX)) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = parent.join(format!("{FOLDER_PREFIX}{}", std::process::id()));
    // Left by an earlier process with the same id.
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}")
        .parse()
        .expect("a token is header text")
}

impl Fixture {
    fn new() -> Fixture {
        let mut config = Config::new(data_dir());
        // Small limits, so that requests reach them.
        config.limits = Limits {
            max_document_bytes: 256,
            max_transaction_operations: 8,
            max_transaction_bytes: 1024,
            max_page_size: 10,
            ..Limits::default()
        };
        config.cache_bytes = 1 << 20;
        let engine = Arc::new(Engine::open(config).expect("opening the engine"));
        let roles = ["reader", "writer", "admin"];
        let tokens = roles.map(|_| new_token().expect("a token"));
        let auth_file: String = roles
            .iter()
            .zip(&tokens)
            .map(|(role, (_, hash))| {
                format!(
                    "[[principal]]\nname = \"{role}\"\ntoken_sha256 = \"{hash}\"\n\
                     roles = {{ {BASE} = \"{role}\" }}\n"
                )
            })
            .collect();
        let auth = Auth::parse(&auth_file).expect("the auth file");
        let [reader, writer, admin] = tokens.map(|(token, _)| bearer(&token));
        let fixture = Fixture {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            open: GravenService::new(engine.clone()),
            guarded: GravenService::with_auth(engine.clone(), Arc::new(auth)),
            engine,
            wrong_token: bearer("not-a-known-token"),
            reader,
            writer,
            admin,
        };
        fixture.runtime.block_on(create_base(&fixture.open));
        fixture
    }

    fn state(&self) -> State {
        let ledgers = self
            .engine
            .ledgers()
            .expect("listing ledgers")
            .iter()
            .map(|l| l.name().to_owned())
            .collect();
        let base = self.engine.ledger(BASE).ok().map(|l| {
            let head = l
                .checkpoint(graven::model::TreeSize::Latest)
                .expect("the base checkpoint");
            let (checkpoint, size) = (head.checkpoint, head.size);
            let tables = l.tables().expect("the base tables");
            let protection = l.deletion_protection().expect("the base protection");
            (checkpoint, size, tables, protection)
        });
        State { ledgers, base }
    }

    /// Decodes `bytes` as an `rpc` request and has the service answer it for `caller`;
    /// `None` when the bytes are not such a request. A Subscribe stream is dropped at
    /// once, which ends its producer task; a CheckLedger stream is read to its end, and
    /// its result must be a pass.
    fn call(&self, rpc: Rpc, caller: Caller, bytes: &[u8]) -> Option<Result<(), Status>> {
        let (service, header) = match caller {
            Caller::Anyone => (&self.open, None),
            Caller::NoHeader => (&self.guarded, None),
            Caller::WrongToken => (&self.guarded, Some(&self.wrong_token)),
            Caller::Reader => (&self.guarded, Some(&self.reader)),
            Caller::Writer => (&self.guarded, Some(&self.writer)),
            Caller::Admin => (&self.guarded, Some(&self.admin)),
        };
        macro_rules! request {
            ($message:ty) => {{
                let mut request = Request::new(<$message>::decode(bytes).ok()?);
                if let Some(value) = header {
                    request
                        .metadata_mut()
                        .insert("authorization", value.clone());
                }
                request
            }};
        }
        macro_rules! answer {
            ($handler:ident, $message:ty) => {{
                let request = request!($message);
                self.runtime.block_on(service.$handler(request)).map(drop)
            }};
        }
        Some(match rpc {
            Rpc::CreateLedger => answer!(create_ledger, pb::CreateLedgerRequest),
            Rpc::ListLedgers => answer!(list_ledgers, pb::ListLedgersRequest),
            Rpc::DescribeLedger => answer!(describe_ledger, pb::DescribeLedgerRequest),
            Rpc::UpdateLedger => answer!(update_ledger, pb::UpdateLedgerRequest),
            Rpc::DeleteLedger => answer!(delete_ledger, pb::DeleteLedgerRequest),
            Rpc::CreateTable => answer!(create_table, pb::CreateTableRequest),
            Rpc::ListTables => answer!(list_tables, pb::ListTablesRequest),
            Rpc::DropTable => answer!(drop_table, pb::DropTableRequest),
            Rpc::Transact => answer!(transact, pb::TransactRequest),
            Rpc::GetDocument => answer!(get_document, pb::GetDocumentRequest),
            Rpc::History => answer!(history, pb::HistoryRequest),
            Rpc::Scan => answer!(scan, pb::ScanRequest),
            Rpc::ExecuteStatement => answer!(execute_statement, pb::ExecuteStatementRequest),
            Rpc::GetCheckpoint => answer!(get_checkpoint, pb::GetCheckpointRequest),
            Rpc::GetKey => answer!(get_key, pb::GetKeyRequest),
            Rpc::GetEntry => answer!(get_entry, pb::GetEntryRequest),
            Rpc::ProveInclusion => answer!(prove_inclusion, pb::ProveInclusionRequest),
            Rpc::ProveConsistency => answer!(prove_consistency, pb::ProveConsistencyRequest),
            Rpc::Subscribe => answer!(subscribe, pb::SubscribeRequest),
            Rpc::CheckLedger => {
                let request = request!(pb::CheckLedgerRequest);
                self.runtime.block_on(async {
                    let name = request.get_ref().name.clone();
                    let mut events = service
                        .check_ledger(request)
                        .await?
                        .into_inner()
                        .into_inner();
                    while let Some(event) = events.recv().await {
                        if let Some(pb::check_ledger_event::Kind::Result(r)) = event?.kind {
                            assert!(
                                r.ok,
                                "ledger {name:?} fails the online check: {}",
                                r.problem
                            );
                        }
                    }
                    Ok(())
                })
            }
        })
    }

    /// Brings the engine back within bounds after an input, `now` being its state: beyond
    /// `MAX_LEDGERS` ledgers, all but the base one are deleted; a missing base ledger, or
    /// one past `MAX_BASE_ENTRIES` entries or `MAX_BASE_TABLES` tables, is made anew by
    /// `create_base`; otherwise its table is re-created if dropped (its documents and
    /// deletion protection stay as the inputs left them, so that an input can turn the
    /// protection off and a later one delete it). Through the service, authentication off.
    fn restore(&self, now: State) {
        let State { ledgers, base } = now;
        let service = &self.open;
        self.runtime.block_on(async {
            if ledgers.len() > MAX_LEDGERS {
                for name in ledgers.iter().filter(|name| *name != BASE) {
                    delete_ledger(service, name).await;
                }
            }
            match base {
                None => create_base(service).await,
                Some((_, size, tables, _))
                    if size > MAX_BASE_ENTRIES || tables.len() > MAX_BASE_TABLES =>
                {
                    delete_ledger(service, BASE).await;
                    create_base(service).await;
                }
                Some((_, _, tables, _)) => {
                    if !tables.iter().any(|t| t.name == TABLE) {
                        service
                            .create_table(Request::new(pb::CreateTableRequest {
                                ledger: BASE.into(),
                                table: TABLE.into(),
                            }))
                            .await
                            .expect("re-creating the base table");
                    }
                }
            }
        });
    }
}

/// Deletes a ledger, turning its deletion protection off first.
async fn delete_ledger(service: &GravenService, name: &str) {
    service
        .update_ledger(Request::new(pb::UpdateLedgerRequest {
            name: name.into(),
            deletion_protection: Some(false),
        }))
        .await
        .expect("turning deletion protection off");
    service
        .delete_ledger(Request::new(pb::DeleteLedgerRequest { name: name.into() }))
        .await
        .expect("deleting a ledger");
}

/// The base ledger: deletion protection on, table `t`, and documents `d1` (versions 0 and
/// 1), `d2`, `d3` and `gone` (inserted, then deleted), at journal indexes 0 to 5.
async fn create_base(service: &GravenService) {
    use pb::operation::Kind;
    service
        .create_ledger(Request::new(pb::CreateLedgerRequest {
            name: BASE.into(),
            ..Default::default()
        }))
        .await
        .expect("creating the base ledger");
    service
        .create_table(Request::new(pb::CreateTableRequest {
            ledger: BASE.into(),
            table: TABLE.into(),
        }))
        .await
        .expect("creating the base table");
    let insert = |id: &str, json: &str| {
        Kind::Insert(pb::Insert {
            table: TABLE.into(),
            id: id.into(),
            json: json.into(),
        })
    };
    let transactions = [
        vec![
            insert("d1", r#"{"v":0}"#),
            insert("d2", r#"{"name":"two","tags":["a","b"]}"#),
            insert("d3", r#"{"n":3.5,"ok":true}"#),
            insert("gone", "{}"),
        ],
        vec![
            Kind::Update(pb::Update {
                table: TABLE.into(),
                id: "d1".into(),
                json: r#"{"v":1}"#.into(),
                expected_version: Some(0),
            }),
            Kind::Delete(pb::Delete {
                table: TABLE.into(),
                id: "gone".into(),
                expected_version: None,
            }),
        ],
    ];
    for operations in transactions {
        service
            .transact(Request::new(pb::TransactRequest {
                ledger: BASE.into(),
                operations: operations
                    .into_iter()
                    .map(|kind| pb::Operation { kind: Some(kind) })
                    .collect(),
                idempotency_key: String::new(),
            }))
            .await
            .expect("writing the base documents");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [rpc, caller, bytes @ ..] = data else {
        return;
    };
    let rpc = RPCS[usize::from(*rpc) % RPCS.len()];
    let caller = CALLERS[usize::from(*caller) % CALLERS.len()];
    let fixture = &*FIXTURE;
    let before = fixture.state();
    let Some(answer) = fixture.call(rpc, caller, bytes) else {
        return;
    };
    let after = fixture.state();
    if let Err(status) = &answer {
        assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown),
            "{rpc:?} by {caller:?}: {status:?}"
        );
        assert_eq!(
            before, after,
            "{rpc:?} by {caller:?} was refused ({status:?}) but changed the state"
        );
    }
    let code = answer.as_ref().err().map(Status::code);
    match caller {
        Caller::NoHeader | Caller::WrongToken => assert_eq!(
            code,
            Some(Code::Unauthenticated),
            "{rpc:?} by {caller:?}: {answer:?}"
        ),
        Caller::Reader if rpc.beyond_reader() => assert_eq!(
            code,
            Some(Code::PermissionDenied),
            "{rpc:?} by {caller:?}: {answer:?}"
        ),
        _ => {}
    }
    if matches!(
        caller,
        Caller::NoHeader | Caller::WrongToken | Caller::Reader
    ) {
        assert_eq!(before, after, "{rpc:?} by {caller:?} changed the state");
    }
    fixture.restore(after);
});
