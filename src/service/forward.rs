//! Writes that reach a server which is not the ledger's writer, on storage several servers
//! share: they are sent on to the writer, as the client sent them (its token included,
//! so the writer authorizes and records the same principal), and its answer comes back.
//!
//! A forwarded request carries [`FORWARDED_HEADER`] and is never forwarded again: a
//! server that is not the writer either (the lease moved meanwhile) answers UNAVAILABLE,
//! and the client retries. When the writer cannot be reached at all, the connection was
//! never made and the write never left: the receiving server tries again locally every
//! [`RETRY_EVERY`] until the writer's lease lapses and it takes the lease itself, within
//! [`Forwarder::patience`]. A write whose forwarded call broke midway has an unknown
//! fate; it gets UNAVAILABLE, and its retry (with its idempotency key) tells.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::client::{Bearer, Client};
use crate::error::{Error, ErrorKind, Quote, Result};

/// The metadata key that marks a request one server forwarded to another.
pub const FORWARDED_HEADER: &str = "graven-forwarded";

/// How often a write waiting for an unreachable writer's lease to lapse tries again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// How long connecting to a writer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections to the other servers, by address.
pub(crate) struct Forwarder {
    /// Whether the storage is shared; on embedded storage nothing is ever forwarded.
    shared: bool,
    /// Clients of the other servers, with graven's message limits; no token of their own
    /// (each forwarded request carries its client's).
    clients: Mutex<HashMap<String, Client>>,
    /// How long a write waits for an unreachable writer to be replaced.
    patience: Duration,
}

/// What a write needs to be forwarded: its metadata, and a copy of the request.
pub(crate) struct Forward<R> {
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    request: R,
}

impl Forwarder {
    /// A forwarder whose writes wait up to `patience` for a writer that does not answer;
    /// one that never forwards unless the storage is `shared`.
    pub(crate) fn new(shared: bool, patience: Duration) -> Forwarder {
        Forwarder {
            shared,
            clients: Mutex::new(HashMap::new()),
            patience,
        }
    }

    /// Whether writes may be forwarded at all (shared storage).
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// What forwarding `request` needs, unless it was itself forwarded here or the storage
    /// is not shared.
    pub(crate) fn prepare<R: Clone>(&self, request: &Request<R>) -> Option<Forward<R>> {
        if !self.shared || request.metadata().contains_key(FORWARDED_HEADER) {
            return None;
        }
        Some(Forward {
            authorization: request.metadata().get("authorization").cloned(),
            request: request.get_ref().clone(),
        })
    }

    /// A client of the server at `address`, connected now if there is none; `None` when
    /// it cannot connect (nothing was sent).
    async fn client(&self, address: &str) -> Option<Client> {
        if let Some(c) = self.clients.lock().ok()?.get(address) {
            return Some(c.clone());
        }
        let channel =
            tokio::time::timeout(CONNECT_TIMEOUT, crate::client::connect_channel(address))
                .await
                .ok()?
                .ok()?;
        let client = Client::from_channel(channel, Bearer::default());
        self.clients
            .lock()
            .ok()?
            .insert(address.to_owned(), client.clone());
        Some(client)
    }

    fn forget(&self, address: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(address);
        }
    }

    /// Runs a write: `local` on this server, and where it answers NOT_WRITER, `remote`
    /// with the request sent on to the writer (when `forward` allows it), waiting for an
    /// unreachable writer to be replaced.
    pub(crate) async fn write<R, T, L, LF, F, FF>(
        &self,
        forward: Option<Forward<R>>,
        local: L,
        remote: F,
    ) -> Result<T, Status>
    where
        R: Clone,
        L: Fn() -> LF,
        LF: Future<Output = Result<T>>,
        F: Fn(Client, Request<R>) -> FF,
        FF: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.patience;
        loop {
            let e = match local().await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let (Some(forward), Some(address)) = (&forward, e.writer()) else {
                return Err(super::status(e));
            };
            if e.kind != ErrorKind::NotWriter {
                return Err(super::status(e));
            }
            // Unreachable (nothing was sent): wait for the lease to lapse, then try here.
            if let Some(client) = self.client(address).await {
                let mut request = Request::new(forward.request.clone());
                if let Some(token) = &forward.authorization {
                    request
                        .metadata_mut()
                        .insert("authorization", token.clone());
                }
                request.metadata_mut().insert(
                    FORWARDED_HEADER,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                // A writer that accepts connections but does not answer (paused, cut
                // off from the database) must not hold the client forever.
                let Ok(answer) = tokio::time::timeout(self.patience, remote(client, request)).await
                else {
                    self.forget(address);
                    return Err(Status::unavailable(format!(
                        "forwarded to the ledger's writer at {}, which did not answer within \
                         {:?}; the transaction's fate is unknown: retry it with its \
                         idempotency key",
                        Quote(address),
                        self.patience
                    )));
                };
                match answer {
                    Ok(response) => return Ok(response.into_inner()),
                    Err(s) if never_sent(&s) => self.forget(address),
                    // UNAVAILABLE, or the connection broken midway (a transport error
                    // here, which has a source; a status that came over the wire has
                    // none): its fate is unknown, and the next write connects anew.
                    Err(s)
                        if s.code() == tonic::Code::Unavailable
                            || std::error::Error::source(&s).is_some() =>
                    {
                        self.forget(address);
                        return Err(Status::unavailable(format!(
                            "forwarded to the ledger's writer at {}: {}",
                            Quote(address),
                            s.message()
                        )));
                    }
                    Err(s) => return Err(s),
                }
            }
            if Instant::now() < deadline {
                tokio::time::sleep(RETRY_EVERY).await;
                continue;
            }
            return Err(super::status(Error::unavailable(format!(
                "the ledger's writer at {} does not answer, and its lease has not \
                 lapsed in {:?}; try again",
                Quote(address),
                self.patience
            ))));
        }
    }
}

/// Whether a failed call never reached the writer: its connection was refused, so the
/// request was not sent and may go again without an idempotency key.
fn never_sent(s: &Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = e.source();
    }
    false
}
