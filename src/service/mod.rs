//! The gRPC adapter: each handler authorizes the caller, unwraps the request into domain
//! types ([`convert`]), calls the engine, and maps the answer back. Every error becomes a
//! gRPC status in one place, [`status`], by its kind; tonic's own refusals of requests it
//! cannot decode are brought under the same rules by [`fix_tonic_codes`]. No engine logic
//! lives here.

mod convert;
mod forward;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::auth::{Auth, Caller, Role};
use crate::engine::check::CheckError;
use crate::engine::follower::{self, Follow};
use crate::engine::statement::{self, Work};
use crate::engine::{Closed, Engine, Ledger, prepare};
use crate::error::{Error, ErrorKind, Quote, Result};
use crate::model::TreeSize;
use crate::pb;
use crate::query::ast::Statement;

pub use convert::transact_request;
pub use forward::FORWARDED_HEADER;

use forward::Forwarder;

/// The principal recorded in entries while authentication is off.
pub const ANONYMOUS: &str = "anonymous";

/// The metadata key of a subscription's first index (see the proto's `Subscribe`).
pub const START_INDEX_HEADER: &str = "graven-start-index";

/// How often a running check reports its progress.
const CHECK_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Maps an engine error to its gRPC status: the one place that decides codes (the
/// proto's header lists the rule for each).
pub fn status(e: Error) -> Status {
    let code = match e.kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::OutOfRange => tonic::Code::OutOfRange,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorKind::Aborted => tonic::Code::Aborted,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
        // Not forwarded (it was forwarded here already): the client tries again.
        ErrorKind::Unavailable | ErrorKind::NotWriter => tonic::Code::Unavailable,
        ErrorKind::Internal => {
            let source = std::error::Error::source(&e).map(ToString::to_string);
            tracing::error!(error = %e.message, source, "internal error");
            tonic::Code::Internal
        }
    };
    Status::new(code, e.message)
}

/// Rewrites the statuses tonic itself answers before a handler runs, so that they follow
/// the API's rules: a request over the message limit is RESOURCE_EXHAUSTED (tonic says
/// OUT_OF_RANGE), and a request that is not protobuf, or has a string that is not UTF-8,
/// is INVALID_ARGUMENT (tonic says INTERNAL, which the API keeps for storage failures).
/// Every other response passes unchanged.
pub fn fix_tonic_codes<B>(
    mut response: tonic::codegen::http::Response<B>,
) -> tonic::codegen::http::Response<B> {
    let Some(s) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let fixed = match s.code() {
        tonic::Code::OutOfRange
            if s.message()
                .starts_with("Error, decoded message length too large") =>
        {
            Status::resource_exhausted(format!(
                "the request is over the server's message limit: {}",
                s.message()
                    .trim_start_matches("Error, decoded message length too large: ")
            ))
        }
        tonic::Code::Internal if s.message().starts_with("failed to decode Protobuf message") => {
            Status::invalid_argument(s.message().to_owned())
        }
        _ => return response,
    };
    // A status always fits a header; if it did not, the original is kept.
    let _ = fixed.add_header(response.headers_mut());
    response
}

/// The gRPC services over one engine.
#[derive(Clone)]
pub struct GravenService {
    engine: Arc<Engine>,
    /// Principals and roles; `None`: authentication off, everyone is [`ANONYMOUS`].
    auth: Option<Arc<Auth>>,
    /// On shared storage: sends writes on to the ledger's writer.
    forwarder: Arc<Forwarder>,
    /// Statement texts parsed recently.
    statements: Arc<statement::StatementCache>,
}

impl GravenService {
    /// Services over `engine`, open to everyone.
    pub fn new(engine: Arc<Engine>) -> GravenService {
        let shared = *engine.storage() != crate::storage::Location::Embedded;
        // Long enough for a dead writer's lease to lapse and this server to take it.
        let patience = engine.lease() * 2 + Duration::from_secs(1);
        let forwarder = Arc::new(Forwarder::new(shared, patience));
        GravenService {
            engine,
            auth: None,
            forwarder,
            statements: Arc::default(),
        }
    }

    /// Services over `engine` that admit only `auth`'s principals, by role.
    pub fn with_auth(engine: Arc<Engine>, auth: Arc<Auth>) -> GravenService {
        GravenService {
            auth: Some(auth),
            ..GravenService::new(engine)
        }
    }

    /// The caller of a request, `None` when authentication is off.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<Caller<'_>>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        auth.authenticate(header).map(Some).map_err(|_| {
            Error::new(
                ErrorKind::Unauthenticated,
                "authentication required: send \"authorization: Bearer <token>\" with a \
                 token the server knows",
            )
        })
    }

    /// Checks that the caller may do `what` (needing `needed`) on `ledger`, and returns
    /// the principal to record for it.
    fn authorize<T>(
        &self,
        request: &Request<T>,
        ledger: &str,
        needed: Role,
        what: &str,
    ) -> Result<&str, Status> {
        let Some(caller) = self.caller(request).map_err(status)? else {
            return Ok(ANONYMOUS);
        };
        if caller.may(ledger, needed) {
            return Ok(caller.name());
        }
        let has = caller
            .role(ledger)
            .map_or_else(|| "no role".to_owned(), |r| format!("the {r} role"));
        Err(status(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "principal {} may not {what} ledger {}: that needs the {needed} role, it has \
                 {has} there",
                Quote(caller.name()),
                Quote(ledger)
            ),
        )))
    }

    fn ledger(&self, name: &str) -> Result<Arc<Ledger>, Status> {
        self.engine.ledger(name).map_err(status)
    }

    /// Runs a read of ledger `name`: at once when its storage is on this machine (its
    /// reads take microseconds), on a blocking thread when the storage is across a
    /// network, so that a read's round trips do not hold one of the few async workers
    /// (inline, a server on PostgreSQL had no more reads in flight than it has cores).
    async fn read<T: Send + 'static>(
        &self,
        name: &str,
        work: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let ledger = self.ledger(name)?;
        if !ledger.remote() {
            return work(&ledger).map_err(status);
        }
        // A failure may be the ledger's deletion through another server.
        tokio::task::spawn_blocking(move || work(&ledger).map_err(|e| ledger.or_deleted(e)))
            .await
            .map_err(|e| status(Error::internal(format!("task failed: {e}"))))?
            .map_err(status)
    }

    /// Runs blocking engine work (file creation, fsync) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Engine>) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || work(engine))
            .await
            .map_err(|e| status(Error::internal(format!("task failed: {e}"))))?
            .map_err(status)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::admin_server::Admin for GravenService {
    async fn create_ledger(
        &self,
        request: Request<pb::CreateLedgerRequest>,
    ) -> Reply<pb::LedgerInfo> {
        self.authorize(&request, &request.get_ref().name, Role::Admin, "create")?;
        let r = request.into_inner();
        let info = self
            .blocking(move |engine| {
                let key = (!r.signing_key.is_empty()).then_some(r.signing_key.as_str());
                engine
                    .create_ledger(&r.name, key, !r.deletion_protection_off)?
                    .info()
            })
            .await?;
        Ok(Response::new(convert::ledger_info(info)))
    }

    async fn list_ledgers(
        &self,
        request: Request<pb::ListLedgersRequest>,
    ) -> Reply<pb::ListLedgersResponse> {
        // With authentication on: the ledgers the caller holds a role on.
        let caller = self.caller(&request).map_err(status)?;
        let visible = |name: &str| caller.as_ref().is_none_or(|c| c.may(name, Role::Reader));
        // Opening ledgers and reading their heads may wait on the storage.
        let mut ledgers = self.blocking(|engine| engine.ledgers()).await?;
        ledgers.retain(|l| visible(l.name()));
        let ledgers = self
            .blocking(move |_| {
                let mut infos = Vec::with_capacity(ledgers.len());
                for l in ledgers {
                    match l.info() {
                        Ok(info) => infos.push(convert::ledger_info(info)),
                        // Deleted through another server since this one opened it.
                        Err(e) => {
                            let e = l.or_deleted(e);
                            if l.closed() != Some(Closed::Deleted) {
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(infos)
            })
            .await?;
        Ok(Response::new(pb::ListLedgersResponse { ledgers }))
    }

    async fn describe_ledger(
        &self,
        request: Request<pb::DescribeLedgerRequest>,
    ) -> Reply<pb::LedgerInfo> {
        self.authorize(&request, &request.get_ref().name, Role::Reader, "describe")?;
        let info = self
            .read(&request.into_inner().name, |ledger| ledger.info())
            .await?;
        Ok(Response::new(convert::ledger_info(info)))
    }

    async fn update_ledger(
        &self,
        request: Request<pb::UpdateLedgerRequest>,
    ) -> Reply<pb::LedgerInfo> {
        self.authorize(&request, &request.get_ref().name, Role::Admin, "update")?;
        let ledger = self.ledger(&request.get_ref().name)?;
        let info = self
            .forwarder
            .write(
                self.forwarder.prepare(&request),
                || async {
                    if let Some(on) = request.get_ref().deletion_protection {
                        ledger.set_deletion_protection(on).await?;
                    }
                    ledger.info().map(convert::ledger_info)
                },
                |mut c, r| async move { c.admin.update_ledger(r).await },
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn delete_ledger(
        &self,
        request: Request<pb::DeleteLedgerRequest>,
    ) -> Reply<pb::DeleteLedgerResponse> {
        self.authorize(&request, &request.get_ref().name, Role::Admin, "delete")?;
        let name = request.into_inner().name;
        self.blocking(move |engine| engine.delete_ledger(&name))
            .await?;
        Ok(Response::new(pb::DeleteLedgerResponse {}))
    }

    async fn create_table(&self, request: Request<pb::CreateTableRequest>) -> Reply<pb::TableInfo> {
        let ledger = &request.get_ref().ledger;
        self.authorize(&request, ledger, Role::Admin, "create tables in")?;
        let ledger = self.ledger(&request.get_ref().ledger)?;
        let info = self
            .forwarder
            .write(
                self.forwarder.prepare(&request),
                || async {
                    let table = &request.get_ref().table;
                    ledger.create_table(table).await.map(convert::table_info)
                },
                |mut c, r| async move { c.admin.create_table(r).await },
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn list_tables(
        &self,
        request: Request<pb::ListTablesRequest>,
    ) -> Reply<pb::ListTablesResponse> {
        let ledger = &request.get_ref().ledger;
        self.authorize(&request, ledger, Role::Reader, "list the tables of")?;
        let tables = self
            .read(&request.into_inner().ledger, |ledger| ledger.tables())
            .await?;
        Ok(Response::new(pb::ListTablesResponse {
            tables: tables.into_iter().map(convert::table_info).collect(),
        }))
    }

    async fn drop_table(
        &self,
        request: Request<pb::DropTableRequest>,
    ) -> Reply<pb::DropTableResponse> {
        let ledger = &request.get_ref().ledger;
        self.authorize(&request, ledger, Role::Admin, "drop tables of")?;
        let ledger = self.ledger(&request.get_ref().ledger)?;
        let done = self
            .forwarder
            .write(
                self.forwarder.prepare(&request),
                || async {
                    let table = &request.get_ref().table;
                    ledger
                        .drop_table(table)
                        .await
                        .map(|()| pb::DropTableResponse {})
                },
                |mut c, r| async move { c.admin.drop_table(r).await },
            )
            .await?;
        Ok(Response::new(done))
    }

    type CheckLedgerStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::CheckLedgerEvent, Status>>;

    async fn check_ledger(
        &self,
        request: Request<pb::CheckLedgerRequest>,
    ) -> Reply<Self::CheckLedgerStream> {
        use pb::check_ledger_event::Kind;
        self.authorize(&request, &request.get_ref().name, Role::Admin, "check")?;
        let ledger = self.ledger(&request.into_inner().name)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let send = |tx: &tokio::sync::mpsc::Sender<_>, kind| {
            // A client that went away stops the check at its next progress report.
            let _ = tx.blocking_send(Ok(pb::CheckLedgerEvent { kind: Some(kind) }));
        };
        tokio::task::spawn_blocking(move || {
            let mut last = Instant::now();
            let outcome = ledger.check(&mut |phase, done, total| {
                if ledger.is_closed() {
                    return Err("the server is shutting down or the ledger was deleted".into());
                }
                if tx.is_closed() {
                    return Err("the client went away".into());
                }
                if last.elapsed() >= CHECK_PROGRESS_EVERY {
                    last = Instant::now();
                    let progress = pb::CheckProgress {
                        phase: phase.to_owned(),
                        done,
                        total,
                    };
                    send(&tx, Kind::Progress(progress));
                }
                Ok(())
            });
            let result = match outcome {
                Ok(summary) => Ok(summary),
                Err(CheckError::Damaged(problem)) => {
                    tracing::error!(ledger = %ledger.name(), %problem, "online check failed");
                    Err(problem)
                }
                Err(CheckError::CannotRun(_)) if tx.is_closed() => return,
                Err(CheckError::CannotRun(reason)) => {
                    let error = if ledger.is_closed() {
                        Error::unavailable(reason)
                    } else {
                        Error::internal(reason)
                    };
                    let _ = tx.blocking_send(Err(status(error)));
                    return;
                }
            };
            send(&tx, Kind::Result(convert::check_result(result)));
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

/// Runs `work` on `ledger`'s storage: at once on this machine's, on a blocking thread
/// when the storage is across a network.
async fn blocking<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    work: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
) -> Result<T> {
    if !ledger.remote() {
        return work(ledger);
    }
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || work(&ledger).map_err(|e| ledger.or_deleted(e)))
        .await
        .map_err(|e| Error::internal(format!("task failed: {e}")))?
}

/// Runs one CREATE or DROP statement; its row says what it did.
async fn run_ddl(ledger: &Ledger, st: &Statement) -> Result<pb::ExecuteStatementResponse> {
    let row = |json: serde_json::Value| pb::ResultRow {
        statement: 0,
        json: json.to_string(),
        index: None,
        proof: None,
        entry: Vec::new(),
        state: None,
    };
    let json = match st {
        Statement::CreateTable { table } => {
            ledger.create_table(table).await?;
            serde_json::json!({ "table": table })
        }
        Statement::DropTable { table } => {
            ledger.drop_table(table).await?;
            serde_json::json!({ "table": table })
        }
        Statement::CreateIndex { table, path } => {
            let info = ledger.create_index(table, path).await?;
            serde_json::json!({
                "table": table,
                "index": crate::model::path_text(&info.path),
                "state": "building",
            })
        }
        Statement::DropIndex { table, index } => {
            let tables = ledger.tables()?;
            let indexes = tables
                .iter()
                .find(|t| t.name == *table)
                .map(|t| t.indexes.clone())
                .unwrap_or_default();
            let path = statement::drop_index_path(table, index, &indexes)?;
            ledger.drop_index(table, &path).await?;
            serde_json::json!({ "table": table, "index": crate::model::path_text(&path) })
        }
        _ => return Err(Error::internal("not DDL")),
    };
    Ok(pb::ExecuteStatementResponse {
        rows: vec![row(json)],
        next_page_token: String::new(),
        receipt: None,
        tree_size: 0,
    })
}

#[tonic::async_trait]
impl pb::documents_server::Documents for GravenService {
    async fn transact(&self, request: Request<pb::TransactRequest>) -> Reply<pb::Receipt> {
        let principal =
            self.authorize(&request, &request.get_ref().ledger, Role::Writer, "write")?;
        if !self.forwarder.shared() {
            // Embedded storage: this server is the writer, and the request is not copied.
            let (name, tx) = transact_request(request.into_inner()).map_err(status)?;
            let tx = prepare::prepare(tx, self.engine.limits(), principal).map_err(status)?;
            let ledger = self.ledger(&name)?;
            let r = ledger.transact(tx).await.map_err(status)?;
            return Ok(Response::new(convert::receipt(r)));
        }
        let forward = self.forwarder.prepare(&request);
        let (name, tx) = transact_request(request.into_inner()).map_err(status)?;
        let tx = prepare::prepare(tx, self.engine.limits(), principal).map_err(status)?;
        let ledger = self.ledger(&name)?;
        let receipt = self
            .forwarder
            .write(
                forward,
                || async { ledger.transact(tx.clone()).await.map(convert::receipt) },
                |mut c, r| async move { c.docs.transact(r).await },
            )
            .await?;
        Ok(Response::new(receipt))
    }

    async fn execute_statement(
        &self,
        request: Request<pb::ExecuteStatementRequest>,
    ) -> Reply<pb::ExecuteStatementResponse> {
        let name = request.get_ref().ledger.clone();
        self.authorize(&request, &name, Role::Reader, "read")?;
        let forward = self.forwarder.prepare(&request);
        let (_, req) = convert::execute_request(request.get_ref().clone());
        let limits = self.engine.limits().clone();
        let work = statement::parse_request(&req, &limits, &self.statements).map_err(status)?;
        let parsed = match work {
            Work::Ddl(st) => {
                self.authorize(&request, &name, Role::Admin, "change tables of")?;
                let ledger = self.ledger(&name)?;
                let executed = self
                    .forwarder
                    .write(
                        forward,
                        || async { run_ddl(&ledger, &st).await },
                        |mut c, r| async move { c.docs.execute_statement(r).await },
                    )
                    .await?;
                return Ok(Response::new(executed));
            }
            Work::Statements(parsed) => parsed,
        };
        if !parsed.writes() {
            let proof = req.proof;
            let ran = self
                .read(&name, move |ledger| {
                    ledger.run_statements(&parsed, &req, &limits, ANONYMOUS)
                })
                .await?;
            let ledger = self.ledger(&name)?;
            let executed = ledger.finish(ran, proof).await.map_err(status)?;
            return Ok(Response::new(convert::executed(executed)));
        }
        let principal = self
            .authorize(&request, &name, Role::Writer, "write")?
            .to_owned();
        let ledger = self.ledger(&name)?;
        let parsed = Arc::new(parsed);
        let req = Arc::new(req);
        let executed = self
            .forwarder
            .write(
                forward,
                || {
                    let (ledger, parsed, req, limits, principal) = (
                        ledger.clone(),
                        parsed.clone(),
                        req.clone(),
                        limits.clone(),
                        principal.clone(),
                    );
                    async move {
                        let proof = req.proof;
                        let ran = blocking(&ledger, move |l| {
                            l.run_statements(&parsed, &req, &limits, &principal)
                        })
                        .await?;
                        ledger.finish(ran, proof).await.map(convert::executed)
                    }
                },
                |mut c, r| async move { c.docs.execute_statement(r).await },
            )
            .await?;
        Ok(Response::new(executed))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Reply<pb::GetDocumentResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let read = self
            .read(&r.ledger, move |ledger| {
                ledger.get(&r.table, &r.id, r.version, convert::proof(r.proof))
            })
            .await?;
        Ok(Response::new(convert::document(read)))
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Reply<pb::HistoryResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let page = self
            .read(&r.ledger, move |ledger| {
                ledger.history(
                    &r.table,
                    &r.id,
                    convert::page_size(r.page_size),
                    convert::page_token(&r.page_token),
                    convert::proof(r.proof),
                )
            })
            .await?;
        let (revisions, next_page_token) = convert::page(page);
        Ok(Response::new(pb::HistoryResponse {
            revisions,
            next_page_token,
        }))
    }

    async fn scan(&self, request: Request<pb::ScanRequest>) -> Reply<pb::ScanResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let page = self
            .read(&r.ledger, move |ledger| {
                ledger.scan(
                    &r.table,
                    convert::page_size(r.page_size),
                    convert::page_token(&r.page_token),
                    convert::proof(r.proof),
                )
            })
            .await?;
        let (revisions, next_page_token) = convert::page(page);
        Ok(Response::new(pb::ScanResponse {
            revisions,
            next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl pb::proofs_server::Proofs for GravenService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Reply<pb::GetCheckpointResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let size = r.size.map_or(TreeSize::Latest, TreeSize::At);
        let head = self
            .read(&r.ledger, move |ledger| ledger.checkpoint(size))
            .await?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: head.checkpoint,
            size: head.size,
        }))
    }

    async fn get_key(&self, request: Request<pb::GetKeyRequest>) -> Reply<pb::GetKeyResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let ledger = self.ledger(&request.into_inner().ledger)?;
        Ok(Response::new(pb::GetKeyResponse {
            vkey: ledger.vkey().to_owned(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Reply<pb::GetEntryResponse> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let (entry, json) = self
            .read(&r.ledger, move |ledger| ledger.entry(r.index))
            .await?;
        Ok(Response::new(pb::GetEntryResponse { entry, json }))
    }

    async fn prove_inclusion(
        &self,
        request: Request<pb::ProveInclusionRequest>,
    ) -> Reply<pb::InclusionProof> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let proof = self
            .read(&r.ledger, move |ledger| {
                ledger.prove_inclusion(r.index, convert::tree_size(r.tree_size))
            })
            .await?;
        Ok(Response::new(convert::inclusion_proof(proof)))
    }

    async fn prove_consistency(
        &self,
        request: Request<pb::ProveConsistencyRequest>,
    ) -> Reply<pb::ConsistencyProof> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let proof = self
            .read(&r.ledger, move |ledger| {
                ledger.prove_consistency(r.old_size, convert::tree_size(r.new_size))
            })
            .await?;
        Ok(Response::new(convert::consistency_proof(proof)))
    }
}

/// A subscription's events as the gRPC stream sends them.
pub type EventStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::stream_server::Stream for GravenService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Reply<EventStream> {
        use tokio_stream::StreamExt as _;
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let follow = Follow {
            from: r.from_index,
            to: r.to_index,
            tables: r.tables,
        };
        let subscription = follower::subscribe(ledger, follow).map_err(status)?;
        let events = tokio_stream::wrappers::ReceiverStream::new(subscription.events)
            .map(|e| e.map(convert::stream_event).map_err(status));
        let mut response = Response::new(Box::pin(events) as EventStream);
        response
            .metadata_mut()
            .insert(START_INDEX_HEADER, subscription.start.into());
        Ok(response)
    }
}
