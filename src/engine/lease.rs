//! Who writes a ledger when several servers share its storage: the write lease, as one
//! ledger's sequencer sees it.
//!
//! On a storage with leases (PostgreSQL), a sequencer claims the ledger's lease when a
//! write reaches it and nobody holds the lease; holds it while it renews it every third of
//! its length; and gives it up when it stops. While another server holds it, the
//! sequencer answers writes with [`ErrorKind::NotWriter`] naming that server, and the gRPC
//! adapter forwards them there. A lease that lapsed (its holder died) is claimed by the
//! next server a write reaches.
//!
//! The lease is an availability device, not the safety one: every batch is fenced by the
//! lease it was made under and by the journal size it extends, both checked by the
//! storage in the commit's own transaction. A server that believes it still holds a
//! lease it lost (a long pause, a clock that jumped) has its commit refused; nothing it
//! does can fork the journal.
//!
//! On embedded storage there is no lease: the data folder's lock makes its server the
//! only writer ([`Standing::Sole`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::storage::{Claim, Holder, Lease, Store};

/// The default lease length: a writer that dies is replaced within about this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

/// This server, as it claims leases.
#[derive(Debug)]
pub struct Claimant {
    /// Unique to this process: its id and start time.
    id: String,
    /// The address the other servers forward writes to.
    address: String,
    /// How long a lease lasts without renewal.
    ttl: Duration,
}

impl Claimant {
    /// A claimant for this process, reachable at `address`, taking leases of `ttl`.
    pub fn new(address: &str, ttl: Duration) -> Claimant {
        Claimant {
            id: format!("{}-{}-{address}", std::process::id(), super::now_micros()),
            address: address.to_owned(),
            ttl,
        }
    }
}

/// Where this server stands on writing one ledger.
#[derive(Debug)]
enum Standing {
    /// No leases (embedded storage): the only writer.
    Sole,
    /// Holds `lease` until `valid_until` (this server's clock, counted from before the
    /// claim or renewal was sent, so never later than the storage's own expiry).
    Writer {
        lease: Lease,
        valid_until: Instant,
        renew_at: Instant,
    },
    /// The server at `address` holds it until at least `until`.
    Elsewhere { address: String, until: Instant },
    /// Not known: claim before the next write.
    Unknown,
}

/// One ledger's write lease, owned by its sequencer.
#[derive(Debug)]
pub(crate) struct WriteLease {
    claimant: Arc<Claimant>,
    standing: Standing,
}

/// What [`WriteLease::ensure`] found: this server may write.
pub(crate) struct Writable {
    /// The lease to fence the batch with (`None` without leases).
    pub(crate) fence: Option<Lease>,
    /// Claimed just now: the journal must be read back before writing, for another
    /// server may have extended it.
    pub(crate) claimed: bool,
}

impl WriteLease {
    /// The lease of the ledger in `store`, not held yet.
    pub(crate) fn new(store: &Store, claimant: Arc<Claimant>) -> WriteLease {
        let standing = match store.leases() {
            None => Standing::Sole,
            Some(_) => Standing::Unknown,
        };
        WriteLease { claimant, standing }
    }

    /// Whether the storage is shared, so that the lease needs looking after.
    pub(crate) fn shared(&self) -> bool {
        !matches!(self.standing, Standing::Sole)
    }

    /// Whether this server may write now without claiming.
    pub(crate) fn is_writer(&self) -> bool {
        match &self.standing {
            Standing::Sole => true,
            Standing::Writer { valid_until, .. } => Instant::now() < *valid_until,
            _ => false,
        }
    }

    /// Makes sure this server holds the lease, claiming it when nobody does; refused with
    /// [`Error::not_writer`] while another server holds it.
    pub(crate) fn ensure(&mut self, store: &Store, ledger: &str) -> Result<Writable> {
        let now = Instant::now();
        match &self.standing {
            Standing::Sole => {
                return Ok(Writable {
                    fence: None,
                    claimed: false,
                });
            }
            Standing::Writer {
                lease, valid_until, ..
            } if now < *valid_until => {
                return Ok(Writable {
                    fence: Some(*lease),
                    claimed: false,
                });
            }
            Standing::Elsewhere { address, until } if now < *until => {
                return Err(Error::not_writer(ledger, address));
            }
            _ => {}
        }
        // Only a storage with leases stands anywhere but Sole.
        let Some(leases) = store.leases() else {
            return Ok(Writable {
                fence: None,
                claimed: false,
            });
        };
        let holder = Holder {
            id: &self.claimant.id,
            address: &self.claimant.address,
        };
        let ttl = self.claimant.ttl;
        match leases.claim(holder, ttl)? {
            Claim::Granted(lease) => {
                tracing::info!(ledger, epoch = lease.epoch, "took the write lease");
                self.standing = Standing::Writer {
                    lease,
                    valid_until: now + ttl,
                    renew_at: now + ttl / 3,
                };
                Ok(Writable {
                    fence: Some(lease),
                    claimed: true,
                })
            }
            Claim::Held { address, remaining } => {
                let err = Error::not_writer(ledger, &address);
                self.standing = Standing::Elsewhere {
                    address,
                    until: now + remaining.min(ttl),
                };
                Err(err)
            }
        }
    }

    /// Renews the lease when a third of it has passed; on failure it lapses at its time.
    pub(crate) fn renew_if_due(&mut self, store: &Store, ledger: &str) {
        let Standing::Writer {
            lease, renew_at, ..
        } = self.standing
        else {
            return;
        };
        let now = Instant::now();
        if now < renew_at {
            return;
        }
        let Some(leases) = store.leases() else {
            return;
        };
        let ttl = self.claimant.ttl;
        match leases.renew(lease, ttl) {
            Ok(true) => {
                self.standing = Standing::Writer {
                    lease,
                    valid_until: now + ttl,
                    renew_at: now + ttl / 3,
                };
            }
            Ok(false) => {
                tracing::warn!(ledger, epoch = lease.epoch, "lost the write lease");
                self.standing = Standing::Unknown;
            }
            Err(e) => {
                // Tried again at the next tick; the lease lapses on its own meanwhile.
                tracing::warn!(ledger, error = %e, "renewing the write lease failed");
            }
        }
    }

    /// After the storage refused a batch's fence: the lease is somebody else's now.
    pub(crate) fn lost(&mut self) {
        if self.shared() {
            self.standing = Standing::Unknown;
        }
    }

    /// Gives the lease up, so that another server can take over at once.
    pub(crate) fn release(&mut self, store: &Store, ledger: &str) {
        if let Standing::Writer { lease, .. } = self.standing
            && let Some(leases) = store.leases()
        {
            match leases.release(lease) {
                Ok(()) => tracing::info!(ledger, "released the write lease"),
                Err(e) => tracing::warn!(ledger, error = %e, "releasing the write lease failed"),
            }
            self.standing = Standing::Unknown;
        }
    }
}
