//! The gRPC adapter: unwraps requests into domain types, calls the engine, and maps every
//! engine error to a gRPC status in one place ([`status`]). No engine logic lives here.

use std::sync::Arc;

use graven_verify::Hash;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::auth::{Auth, Caller, Role};
use crate::check;
use crate::engine::{Engine, Ledger};
use crate::error::{Error, ErrorKind, Result};
use crate::json::canonicalize_document;
use crate::model::{self, Condition, Limits, Op, Transaction, check_document_id, check_table_name};
use crate::pb;

/// The principal recorded in entries while authentication is off.
pub const ANONYMOUS: &str = "anonymous";

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Maps an engine error to its gRPC status: the one place that decides codes.
pub fn status(e: Error) -> Status {
    let code = match e.kind {
        ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
        ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => tonic::Code::ResourceExhausted,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Internal => {
            tracing::error!(error = %e.message, "internal error");
            tonic::Code::Internal
        }
    };
    Status::new(code, e.message)
}

/// The gRPC services over one engine.
#[derive(Clone)]
pub struct GravenService {
    engine: Arc<Engine>,
    /// Principals and roles; `None`: authentication off, everyone is [`ANONYMOUS`].
    auth: Option<Arc<Auth>>,
}

impl GravenService {
    /// Services over `engine`, open to everyone.
    pub fn new(engine: Arc<Engine>) -> GravenService {
        GravenService { engine, auth: None }
    }

    /// Services over `engine` that admit only `auth`'s principals, by role.
    pub fn with_auth(engine: Arc<Engine>, auth: Arc<Auth>) -> GravenService {
        GravenService {
            engine,
            auth: Some(auth),
        }
    }

    /// The caller of a request, `None` when authentication is off.
    fn caller<T>(&self, request: &Request<T>) -> Result<Option<Caller<'_>>, Status> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        match auth.authenticate(header) {
            Ok(caller) => Ok(Some(caller)),
            Err(_) => Err(Status::unauthenticated(
                "authentication required: send \"authorization: Bearer <token>\" with a \
                 token the server knows",
            )),
        }
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
        let Some(caller) = self.caller(request)? else {
            return Ok(ANONYMOUS);
        };
        if caller.may(ledger, needed) {
            return Ok(caller.name());
        }
        let has = caller
            .role(ledger)
            .map_or_else(|| "no role".to_owned(), |r| format!("the {r} role"));
        Err(Status::permission_denied(format!(
            "principal {:?} may not {what} ledger {ledger:?}: that needs the {needed} role, \
             it has {has} there",
            caller.name()
        )))
    }

    fn ledger(&self, name: &str) -> Result<Arc<Ledger>, Status> {
        self.engine.ledger(name).map_err(status)
    }

    /// Runs blocking engine work (file creation, fsync) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Engine>) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || work(engine))
            .await
            .map_err(|e| Status::internal(format!("task failed: {e}")))?
            .map_err(status)
    }
}

/// A 128-bit id for inserts without one: 48 bits of milliseconds (so ids sort roughly by
/// creation time) and 80 random bits, as 32 hexadecimal digits.
pub fn generate_id() -> Result<String> {
    Ok(generate_ids(1)?.pop().unwrap_or_default())
}

/// `count` ids as [`generate_id`] makes them, with one read of the system's randomness.
pub fn generate_ids(count: usize) -> Result<Vec<String>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = vec![0u8; 10 * count];
    getrandom::fill(&mut random).map_err(|e| Error::internal(format!("randomness: {e}")))?;
    Ok(random
        .chunks_exact(10)
        .map(|r| {
            let mut id = String::with_capacity(32);
            for &b in millis.to_be_bytes()[2..].iter().chain(r) {
                id.push(char::from(HEX[usize::from(b >> 4)]));
                id.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            id
        })
        .collect())
}

/// Feeds a length-prefixed field into the request hash.
fn hash_field(h: &mut Sha256, field: &[u8]) {
    h.update((field.len() as u64).to_be_bytes());
    h.update(field);
}

/// Converts and validates a Transact request: names, JSON (to canonical form), limits.
/// (The shape rules, one write per document and at least one revision, are the
/// sequencer's.) The idempotency hash covers the request as sent (before ids
/// are generated), so a retry matches its first attempt.
pub fn transaction(
    req: pb::TransactRequest,
    limits: &Limits,
    principal: &str,
) -> Result<(String, Transaction)> {
    use pb::operation::Kind;
    if req.operations.is_empty() {
        return Err(Error::invalid(
            "operations: a transaction needs at least one operation",
        ));
    }
    if req.operations.len() > limits.max_transaction_operations {
        return Err(Error::exhausted(format!(
            "operations: {} operations is over the limit of {}",
            req.operations.len(),
            limits.max_transaction_operations
        )));
    }
    if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Error::invalid(format!(
            "idempotency_key: longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    // Only a request with an idempotency key needs its hash.
    let mut request_hash = (!req.idempotency_key.is_empty()).then(Sha256::new);
    let mut total = 0usize;
    let mut ops = Vec::with_capacity(req.operations.len());
    let canonical = |i: usize, json: &[u8]| -> Result<Vec<u8>> {
        // Refuse absurd input before parsing it.
        if json.len() > limits.max_document_bytes.saturating_mul(4) {
            return Err(Error::exhausted(format!(
                "operations[{i}].json: {} bytes is far over the document limit of {} bytes",
                json.len(),
                limits.max_document_bytes
            )));
        }
        let body = canonicalize_document(json)
            .map_err(|e| Error::invalid(format!("operations[{i}].json: {e}")))?;
        if body.len() > limits.max_document_bytes {
            return Err(Error::exhausted(format!(
                "operations[{i}].json: the document is {} bytes of canonical JSON, over the \
                 limit of {} bytes",
                body.len(),
                limits.max_document_bytes
            )));
        }
        Ok(body)
    };
    for (i, op) in req.operations.into_iter().enumerate() {
        let kind = op
            .kind
            .ok_or_else(|| Error::invalid(format!("operations[{i}]: no operation set")))?;
        let op = match kind {
            Kind::Insert(x) => {
                check_table_name(&x.table)
                    .map_err(|e| e.context(format!("operations[{i}].table")))?;
                if !x.id.is_empty() {
                    check_document_id(&x.id)
                        .map_err(|e| e.context(format!("operations[{i}].id")))?;
                }
                Op::Insert {
                    table: x.table,
                    id: x.id,
                    body: canonical(i, &x.json)?,
                }
            }
            Kind::Update(x) => {
                check_table_name(&x.table)
                    .map_err(|e| e.context(format!("operations[{i}].table")))?;
                check_document_id(&x.id).map_err(|e| e.context(format!("operations[{i}].id")))?;
                Op::Update {
                    table: x.table,
                    id: x.id,
                    body: canonical(i, &x.json)?,
                    expected_version: x.expected_version,
                }
            }
            Kind::Delete(x) => {
                check_table_name(&x.table)
                    .map_err(|e| e.context(format!("operations[{i}].table")))?;
                check_document_id(&x.id).map_err(|e| e.context(format!("operations[{i}].id")))?;
                Op::Delete {
                    table: x.table,
                    id: x.id,
                    expected_version: x.expected_version,
                }
            }
            Kind::Check(x) => {
                check_table_name(&x.table)
                    .map_err(|e| e.context(format!("operations[{i}].table")))?;
                check_document_id(&x.id).map_err(|e| e.context(format!("operations[{i}].id")))?;
                let condition = match x.condition {
                    Some(pb::check::Condition::Version(v)) => Condition::Version(v),
                    Some(pb::check::Condition::Exists(true)) => Condition::Exists,
                    Some(pb::check::Condition::NotExists(true)) => Condition::NotExists,
                    _ => {
                        return Err(Error::invalid(format!(
                            "operations[{i}].condition: set version, exists: true or \
                             not_exists: true"
                        )));
                    }
                };
                Op::Check {
                    table: x.table,
                    id: x.id,
                    condition,
                }
            }
        };
        let (table, id) = op.target();
        total += table.len() + id.len() + op.body().map_or(0, <[u8]>::len);
        if total > limits.max_transaction_bytes {
            return Err(Error::exhausted(format!(
                "operations: the transaction is over the limit of {} bytes (at operations[{i}])",
                limits.max_transaction_bytes
            )));
        }
        if let Some(h) = request_hash.as_mut() {
            h.update([op_code(&op)]);
            hash_field(h, table.as_bytes());
            hash_field(h, id.as_bytes());
            hash_field(h, op.body().unwrap_or_default());
            hash_field(h, &condition_bytes(op_condition(&op)));
        }
        ops.push(op);
    }
    let unnamed = ops
        .iter()
        .filter(|op| matches!(op, Op::Insert { id, .. } if id.is_empty()))
        .count();
    if unnamed > 0 {
        let mut ids = generate_ids(unnamed)?.into_iter();
        for op in &mut ops {
            if let Op::Insert { id, .. } = op
                && id.is_empty()
            {
                *id = ids.next().unwrap_or_default();
            }
        }
    }
    let idempotency = request_hash.map(|h| (req.idempotency_key, Hash(h.finalize().into())));
    Ok((
        req.ledger,
        Transaction {
            ops,
            idempotency,
            principal: principal.to_owned(),
        },
    ))
}

fn op_code(op: &Op) -> u8 {
    match op {
        Op::Insert { .. } => 1,
        Op::Update { .. } => 2,
        Op::Delete { .. } => 3,
        Op::Check { .. } => 4,
    }
}

/// A fixed encoding of a condition for the request hash: a tag byte, then the version.
fn condition_bytes(condition: Option<Condition>) -> [u8; 9] {
    let (tag, version) = match condition {
        None => (0, 0),
        Some(Condition::Version(v)) => (1, v),
        Some(Condition::Exists) => (2, 0),
        Some(Condition::NotExists) => (3, 0),
    };
    let mut out = [0u8; 9];
    out[0] = tag;
    out[1..].copy_from_slice(&version.to_be_bytes());
    out
}

fn op_condition(op: &Op) -> Option<Condition> {
    match op {
        Op::Update {
            expected_version, ..
        }
        | Op::Delete {
            expected_version, ..
        } => expected_version.map(Condition::Version),
        Op::Check { condition, .. } => Some(*condition),
        Op::Insert { .. } => None,
    }
}

fn ledger_info(i: model::LedgerInfo) -> pb::LedgerInfo {
    pb::LedgerInfo {
        name: i.name,
        origin: i.origin,
        size: i.size,
        checkpoint: i.checkpoint,
        vkey: i.vkey,
        deletion_protection: i.deletion_protection,
        created_micros: i.created_micros,
    }
}

fn table_info(t: model::TableInfo) -> pb::TableInfo {
    pb::TableInfo {
        name: t.name,
        created_micros: t.created_micros,
    }
}

fn inclusion_proof(p: model::InclusionProof) -> pb::InclusionProof {
    pb::InclusionProof {
        index: p.index,
        tree_size: p.tree_size,
        hashes: p.hashes.iter().map(|h| h.0.to_vec()).collect(),
        checkpoint: p.checkpoint,
    }
}

fn revision(r: model::Revision) -> pb::Revision {
    pb::Revision {
        table: r.table,
        id: r.id,
        version: r.version,
        operation: r.operation.as_str().to_owned(),
        index: r.index,
        tx_id: r.tx_id,
        commit_micros: r.commit_micros,
        principal: r.principal,
        json: r.body,
        entry: r.entry,
        proof: r.proof.map(inclusion_proof),
    }
}

fn receipt(r: model::Receipt) -> pb::Receipt {
    pb::Receipt {
        tx_id: r.tx_id,
        results: r
            .results
            .into_iter()
            .map(|o| pb::OperationResult {
                table: o.table,
                id: o.id,
                version: o.version,
                index: o.index,
            })
            .collect(),
        first_index: r.first_index,
        revisions: r.revisions,
        commit_micros: r.commit_micros,
        checkpoint: r.checkpoint,
        replayed: r.replayed,
    }
}

fn proof_size(p: Option<pb::ProofRequest>) -> Option<u64> {
    p.map(|p| p.tree_size)
}

#[tonic::async_trait]
impl pb::admin_server::Admin for GravenService {
    async fn create_ledger(
        &self,
        request: Request<pb::CreateLedgerRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
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
        Ok(Response::new(ledger_info(info)))
    }

    async fn list_ledgers(
        &self,
        request: Request<pb::ListLedgersRequest>,
    ) -> Result<Response<pb::ListLedgersResponse>, Status> {
        // With authentication on: the ledgers the caller holds a role on.
        let caller = self.caller(&request)?;
        let visible = |name: &str| caller.as_ref().is_none_or(|c| c.may(name, Role::Reader));
        let ledgers = self
            .engine
            .ledgers()
            .and_then(|ls| {
                ls.iter()
                    .map(|l| l.info().map(ledger_info))
                    .filter(|info| info.as_ref().map_or(true, |i| visible(&i.name)))
                    .collect()
            })
            .map_err(status)?;
        Ok(Response::new(pb::ListLedgersResponse { ledgers }))
    }

    async fn describe_ledger(
        &self,
        request: Request<pb::DescribeLedgerRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        self.authorize(&request, &request.get_ref().name, Role::Reader, "describe")?;
        let ledger = self.ledger(&request.into_inner().name)?;
        Ok(Response::new(ledger_info(ledger.info().map_err(status)?)))
    }

    async fn update_ledger(
        &self,
        request: Request<pb::UpdateLedgerRequest>,
    ) -> Result<Response<pb::LedgerInfo>, Status> {
        self.authorize(&request, &request.get_ref().name, Role::Admin, "update")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.name)?;
        if let Some(on) = r.deletion_protection {
            ledger.set_deletion_protection(on).await.map_err(status)?;
        }
        Ok(Response::new(ledger_info(ledger.info().map_err(status)?)))
    }

    async fn delete_ledger(
        &self,
        request: Request<pb::DeleteLedgerRequest>,
    ) -> Result<Response<pb::DeleteLedgerResponse>, Status> {
        self.authorize(&request, &request.get_ref().name, Role::Admin, "delete")?;
        let name = request.into_inner().name;
        self.blocking(move |engine| engine.delete_ledger(&name))
            .await?;
        Ok(Response::new(pb::DeleteLedgerResponse {}))
    }

    async fn create_table(
        &self,
        request: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::TableInfo>, Status> {
        self.authorize(
            &request,
            &request.get_ref().ledger,
            Role::Admin,
            "create tables in",
        )?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let info = ledger.create_table(&r.table).await.map_err(status)?;
        Ok(Response::new(table_info(info)))
    }

    async fn list_tables(
        &self,
        request: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        self.authorize(
            &request,
            &request.get_ref().ledger,
            Role::Reader,
            "list the tables of",
        )?;
        let ledger = self.ledger(&request.into_inner().ledger)?;
        let tables = ledger.tables().map_err(status)?;
        Ok(Response::new(pb::ListTablesResponse {
            tables: tables.into_iter().map(table_info).collect(),
        }))
    }

    async fn drop_table(
        &self,
        request: Request<pb::DropTableRequest>,
    ) -> Result<Response<pb::DropTableResponse>, Status> {
        self.authorize(
            &request,
            &request.get_ref().ledger,
            Role::Admin,
            "drop tables of",
        )?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        ledger.drop_table(&r.table).await.map_err(status)?;
        Ok(Response::new(pb::DropTableResponse {}))
    }

    type CheckLedgerStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::CheckLedgerEvent, Status>>;

    async fn check_ledger(
        &self,
        request: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<Self::CheckLedgerStream>, Status> {
        use pb::check_ledger_event::Kind;
        self.authorize(&request, &request.get_ref().name, Role::Admin, "check")?;
        let ledger = self.ledger(&request.into_inner().name)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let send = |tx: &tokio::sync::mpsc::Sender<_>, kind| {
            let _ = tx.blocking_send(Ok(pb::CheckLedgerEvent { kind: Some(kind) }));
        };
        tokio::task::spawn_blocking(move || {
            let mut last = std::time::Instant::now();
            let outcome = check::check_open_ledger(&ledger, &mut |phase, done, total| {
                if ledger.is_closed() {
                    return Err("the server is shutting down or the ledger was deleted".into());
                }
                if tx.is_closed() {
                    return Err("the client went away".into());
                }
                if last.elapsed() >= CHECK_PROGRESS_EVERY {
                    last = std::time::Instant::now();
                    send(
                        &tx,
                        Kind::Progress(pb::CheckProgress {
                            phase: phase.to_owned(),
                            done,
                            total,
                        }),
                    );
                }
                Ok(())
            });
            let result = match outcome {
                Ok(s) => pb::CheckResult {
                    ok: true,
                    problem: String::new(),
                    entries: s.entries,
                    documents: s.documents,
                    live: s.live,
                    size: s.size,
                    root: s.root.0.to_vec(),
                },
                Err(check::Fail::Bad(problem)) => {
                    tracing::error!(ledger = %ledger.name(), %problem, "online check failed");
                    pb::CheckResult {
                        ok: false,
                        problem,
                        ..Default::default()
                    }
                }
                Err(check::Fail::Cannot(_)) if tx.is_closed() => return,
                Err(check::Fail::Cannot(reason)) => {
                    let _ = tx.blocking_send(Err(if ledger.is_closed() {
                        Status::unavailable(reason)
                    } else {
                        tracing::error!(ledger = %ledger.name(), %reason, "online check");
                        Status::internal(reason)
                    }));
                    return;
                }
            };
            send(&tx, Kind::Result(result));
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

/// How often a running check reports its progress.
const CHECK_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

#[tonic::async_trait]
impl pb::documents_server::Documents for GravenService {
    async fn transact(
        &self,
        request: Request<pb::TransactRequest>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let principal =
            self.authorize(&request, &request.get_ref().ledger, Role::Writer, "write")?;
        let (name, tx) =
            transaction(request.into_inner(), self.engine.limits(), principal).map_err(status)?;
        let ledger = self.ledger(&name)?;
        let r = ledger.transact(tx).await.map_err(status)?;
        Ok(Response::new(receipt(r)))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let rev = ledger
            .get(&r.table, &r.id, r.version, proof_size(r.proof))
            .map_err(status)?;
        Ok(Response::new(pb::GetDocumentResponse {
            revision: Some(revision(rev)),
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let page = ledger
            .history(
                &r.table,
                &r.id,
                r.page_size,
                &r.page_token,
                proof_size(r.proof),
            )
            .map_err(status)?;
        Ok(Response::new(pb::HistoryResponse {
            revisions: page.revisions.into_iter().map(revision).collect(),
            next_page_token: page.next.unwrap_or_default(),
        }))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let page = ledger
            .scan(&r.table, r.page_size, &r.page_token, proof_size(r.proof))
            .map_err(status)?;
        Ok(Response::new(pb::ScanResponse {
            revisions: page.revisions.into_iter().map(revision).collect(),
            next_page_token: page.next.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl pb::proofs_server::Proofs for GravenService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let ledger = self.ledger(&request.into_inner().ledger)?;
        let (checkpoint, size) = ledger.checkpoint().map_err(status)?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint,
            size,
        }))
    }

    async fn get_key(
        &self,
        request: Request<pb::GetKeyRequest>,
    ) -> Result<Response<pb::GetKeyResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let ledger = self.ledger(&request.into_inner().ledger)?;
        Ok(Response::new(pb::GetKeyResponse {
            vkey: ledger.vkey().to_owned(),
        }))
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::GetEntryResponse>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let (entry, json) = ledger.entry(r.index).map_err(status)?;
        Ok(Response::new(pb::GetEntryResponse { entry, json }))
    }

    async fn prove_inclusion(
        &self,
        request: Request<pb::ProveInclusionRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let proof = ledger
            .prove_inclusion(r.index, r.tree_size)
            .map_err(status)?;
        Ok(Response::new(inclusion_proof(proof)))
    }

    async fn prove_consistency(
        &self,
        request: Request<pb::ProveConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        let p = ledger
            .prove_consistency(r.old_size, r.new_size)
            .map_err(status)?;
        Ok(Response::new(pb::ConsistencyProof {
            old_size: p.old_size,
            new_size: p.new_size,
            hashes: p.hashes.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: p.checkpoint,
        }))
    }
}

/// Revisions read per storage read while streaming (bounded by bytes as well).
const STREAM_CHUNK_BYTES: usize = 1 << 20;

/// While catching up from storage, a checkpoint at least this often.
const STREAM_CHECKPOINT_EVERY: u64 = 1_000;

/// Events buffered per subscriber before the producer waits for it (backpressure).
const STREAM_BUFFER: usize = 16;

fn event(kind: pb::event::Kind) -> pb::Event {
    pb::Event { kind: Some(kind) }
}

fn checkpoint_event(size: u64, checkpoint: String) -> pb::Event {
    event(pb::event::Kind::Checkpoint(pb::StreamCheckpoint {
        size,
        checkpoint,
    }))
}

/// Feeds one subscriber: catches up from storage in bounded chunks, then follows the
/// ledger's head. Returns when the subscriber goes away or the requested end is reached;
/// an error status ends the stream.
async fn produce(
    engine: Arc<Engine>,
    ledger: Arc<Ledger>,
    request: pb::SubscribeRequest,
    tx: tokio::sync::mpsc::Sender<Result<pb::Event, Status>>,
) -> Result<(), Status> {
    let mut head = ledger.head();
    let start = head.borrow_and_update().size;
    let mut next = request.from_index.unwrap_or(start);
    let end = request.to_index.unwrap_or(u64::MAX);
    let send = |e: pb::Event| {
        let tx = tx.clone();
        async move {
            tx.send(Ok(e))
                .await
                .map_err(|_| Status::cancelled("subscriber gone"))
        }
    };
    if next > 0 {
        let frontier = ledger.frontier(next).map_err(status)?;
        send(event(pb::event::Kind::Frontier(pb::Frontier {
            size: next,
            subtrees: frontier.subtrees().iter().map(|h| h.0.to_vec()).collect(),
        })))
        .await?;
    }
    // The size of the last checkpoint sent, and where the stream began.
    let mut covered: Option<u64> = None;
    let first = next;
    loop {
        let durable = head.borrow_and_update().clone();
        let target = durable.size.min(end);
        while next < target {
            let items = {
                let ledger = ledger.clone();
                let tables = request.tables.clone();
                tokio::task::spawn_blocking(move || {
                    ledger.journal(next, target, &tables, STREAM_CHUNK_BYTES)
                })
                .await
                .map_err(|e| Status::internal(format!("reading the journal: {e}")))?
                .map_err(status)?
            };
            for item in items {
                let kind = match item {
                    model::JournalItem::Revision(r) => {
                        next = r.index + 1;
                        pb::event::Kind::Revision(revision(r))
                    }
                    model::JournalItem::Skipped { index, leaf_hash } => {
                        next = index + 1;
                        pb::event::Kind::Skipped(pb::Skipped {
                            index,
                            leaf_hash: leaf_hash.0.to_vec(),
                        })
                    }
                };
                send(event(kind)).await?;
                if next - covered.unwrap_or(first) >= STREAM_CHECKPOINT_EVERY && next < target {
                    let note = ledger.checkpoint_at(next).map_err(status)?;
                    send(checkpoint_event(next, note)).await?;
                    covered = Some(next);
                }
            }
        }
        if covered != Some(next) {
            // Caught up with this head (or the requested end): its checkpoint covers all.
            let note = if next == durable.size {
                durable.checkpoint.clone()
            } else {
                ledger.checkpoint_at(next).map_err(status)?
            };
            send(checkpoint_event(next, note)).await?;
            covered = Some(next);
        }
        if next >= end {
            return Ok(());
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    // The sequencer stopped: shutdown, or the ledger was deleted.
                    return Err(match engine.ledger(ledger.name()) {
                        Err(e) if e.kind == ErrorKind::NotFound => Status::not_found(format!(
                            "ledger {:?} was deleted", ledger.name()
                        )),
                        _ => Status::unavailable("the server is shutting down; reconnect \
                            with from_index one past the last index you processed"),
                    });
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}

#[tonic::async_trait]
impl pb::stream_server::Stream for GravenService {
    type SubscribeStream = tokio_stream::wrappers::ReceiverStream<Result<pb::Event, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.authorize(&request, &request.get_ref().ledger, Role::Reader, "read")?;
        let r = request.into_inner();
        let ledger = self.ledger(&r.ledger)?;
        for table in &r.tables {
            check_table_name(table).map_err(|e| status(e.context("tables")))?;
        }
        let size = ledger.head().borrow().size;
        if let Some(from) = r.from_index
            && from > size
        {
            return Err(Status::invalid_argument(format!(
                "from_index {from} is beyond the journal (size {size})"
            )));
        }
        if let (Some(from), Some(to)) = (r.from_index.or(Some(size)), r.to_index)
            && to < from
        {
            return Err(Status::invalid_argument(format!(
                "to_index {to} is below the first index {from}"
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            if let Err(s) = produce(engine, ledger, r, tx.clone()).await
                && s.code() != tonic::Code::Cancelled
            {
                let _ = tx.send(Err(s)).await;
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}
