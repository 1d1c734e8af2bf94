//! The engine: the ledgers of one data folder, their sequencers, the read path, the change
//! stream's follower, and the tamper check and restore that work on the same storage.
//!
//! Writes go through each ledger's [`sequencer`]; reads take a storage snapshot and never
//! wait for it. The engine never logs or returns a signing key. Everything here speaks
//! domain types ([`crate::model`]) and [`crate::error::Error`]; storage is reached only
//! through [`crate::storage`], and nothing here knows gRPC.

mod apply;
pub mod check;
pub mod files;
pub mod follower;
pub mod lease;
mod ledger;
pub mod prepare;
pub mod reads;
pub mod restore;
mod sequencer;
pub mod statement;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use graven_verify::{Checkpoint, EMPTY_ROOT, Hash, HashReader, Signer, open_checkpoint, tree_hash};

pub use files::{DB_FILE, KEY_FILE, LOCK_FILE};
pub use ledger::{Closed, Ledger};

use crate::error::{Error, ErrorKind, Quote, Result};
use crate::model::{Limits, check_ledger_name};
use crate::storage::{self, Format, Location, NewLedger, Snapshot, Store};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The server name: checkpoint origins are `<server name>/<ledger>`.
    pub server_name: String,
    /// Limits on documents, transactions and pages.
    pub limits: Limits,
    /// redb page cache per ledger, in bytes.
    pub cache_bytes: usize,
    /// Where the ledgers' key spaces live: redb files in the data folder (the default), or
    /// a PostgreSQL database (the data folder then holds the signing keys).
    pub storage: Location,
    /// On shared storage: the address other servers reach this one at, to forward the
    /// writes of the ledgers it writes (`http://HOST:PORT`).
    pub address: String,
    /// On shared storage: how long a write lease lasts without renewal, so about how long
    /// writes wait for a server that died.
    pub lease: std::time::Duration,
    /// Revisions between two writes of the state map's changed records (see
    /// `storage/state.rs`): more is faster, and longer to replay after a crash.
    pub state_flush: u64,
}

impl Config {
    /// Defaults for a data folder: server name `graven.local`, default limits, 64 MiB of
    /// cache per ledger.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            server_name: "graven.local".into(),
            limits: Limits::default(),
            cache_bytes: storage::DEFAULT_CACHE_BYTES,
            storage: Location::Embedded,
            address: String::new(),
            lease: lease::DEFAULT_LEASE,
            state_flush: storage::DEFAULT_STATE_FLUSH,
        }
    }
}

/// All ledgers of one data folder.
pub struct Engine {
    config: Config,
    ledgers: RwLock<BTreeMap<String, Arc<Ledger>>>,
    /// Serializes creating and deleting ledgers.
    catalog: Mutex<()>,
    /// Set by [`Engine::close`]: every request is then refused as UNAVAILABLE.
    closed: AtomicBool,
    /// The data folder's lock, held until [`Engine::close`].
    lock: Mutex<Option<std::fs::File>>,
    /// This server, as it claims write leases on shared storage.
    claimant: Arc<lease::Claimant>,
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Signs the checkpoint of `size` and `root` with `signer`, whose name is the origin.
pub(crate) fn sign_checkpoint(signer: &Signer, size: u64, root: Hash) -> Result<String> {
    Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root,
    }
    .sign(signer)
    .map_err(|e| Error::internal(format!("signing checkpoint: {e}")))
}

/// The signed checkpoint of `size` over the stored hashes `hashes`: always the same bytes
/// for the same size (a checkpoint has no timestamp and Ed25519 is deterministic).
pub(crate) fn checkpoint_of(
    signer: &Signer,
    size: u64,
    hashes: &impl HashReader,
) -> Result<String> {
    let root = tree_hash(size, hashes)
        .map_err(|e| Error::internal(format!("tree hash at {size}: {e}")))?;
    sign_checkpoint(signer, size, root)
}

/// Why a ledger's stored head does not hold up: see [`verified_head`].
#[derive(Debug)]
pub(crate) enum HeadProblem {
    /// The data is not what its key and format say (a discrepancy).
    Damaged(String),
    /// The data may be fine, but this build cannot read it.
    Unreadable(String),
}

impl From<storage::Error> for HeadProblem {
    fn from(e: storage::Error) -> HeadProblem {
        match e.kind() {
            storage::ErrorKind::Damaged => {
                HeadProblem::Damaged(format!("the database is damaged: {e}"))
            }
            _ => HeadProblem::Unreadable(format!("reading the database: {e}")),
        }
    }
}

/// The checks every open makes of a ledger's metadata, the same at start-up, in `graven
/// check` and after `graven import`: the storage format is this build's, the origin is the
/// key's name, and the stored latest checkpoint is signed by the key for that origin.
/// Returns the checkpoint's note and its parsed form.
pub(crate) fn verified_head(
    snap: &Snapshot,
    signer: &Signer,
) -> std::result::Result<(String, Checkpoint), HeadProblem> {
    match snap.format()? {
        Format::Missing => {
            return Err(HeadProblem::Damaged(
                "meta: the storage format is missing".into(),
            ));
        }
        Format::Malformed => {
            return Err(HeadProblem::Damaged(
                "meta: the storage format is malformed".into(),
            ));
        }
        Format::Version(f) if f != storage::FORMAT_VERSION => {
            return Err(HeadProblem::Unreadable(format!(
                "storage format {f} is not {} (this build's)",
                storage::FORMAT_VERSION
            )));
        }
        Format::Version(_) => {}
    }
    let origin = snap.origin()?;
    if signer.name() != origin {
        return Err(HeadProblem::Damaged(format!(
            "{KEY_FILE} is for {}, the ledger's origin is {}",
            Quote(signer.name()),
            Quote(&origin)
        )));
    }
    let note = snap.checkpoint()?;
    let head = open_checkpoint(note.as_bytes(), &[signer.verifier()])
        .map_err(|e| {
            HeadProblem::Damaged(format!(
                "meta: the latest checkpoint is not signed by the ledger's key: {e}"
            ))
        })?
        .checkpoint;
    if head.origin != origin {
        return Err(HeadProblem::Damaged(format!(
            "meta: the latest checkpoint's origin {} is not the ledger's origin {}",
            Quote(&head.origin),
            Quote(&origin)
        )));
    }
    Ok((note, head))
}

/// Creates ledger `name`'s storage (in its folder `dir` when embedded): its metadata and
/// an empty, signed tree.
pub(crate) fn create_store(
    location: &Location,
    dir: &std::path::Path,
    name: &str,
    signer: &Signer,
    deletion_protection: bool,
    cache_bytes: usize,
) -> Result<Store> {
    let checkpoint = sign_checkpoint(signer, 0, EMPTY_ROOT)?;
    Ok(Store::create_at(
        location,
        &dir.join(DB_FILE),
        name,
        cache_bytes,
        &NewLedger {
            origin: signer.name(),
            created_micros: now_micros(),
            deletion_protection,
            checkpoint: &checkpoint,
        },
    )?)
}

impl Engine {
    /// Opens (creating if needed) the data folder and every ledger in it.
    pub fn open(config: Config) -> Result<Engine> {
        if !graven_verify::note::is_valid_key_name(&config.server_name) {
            return Err(Error::invalid(format!(
                "server name {} is invalid: no spaces or '+'",
                Quote(&config.server_name)
            )));
        }
        let lock = files::lock_data_dir(&config.data_dir)?;
        let root = files::ledgers_dir(&config.data_dir);
        let listing = |e| Error::internal_from(format!("reading {}", root.display()), e);
        files::remove_leftovers(&root).map_err(listing)?;
        let claimant = Arc::new(lease::Claimant::new(&config.address, config.lease));
        let mut ledgers = BTreeMap::new();
        for name in files::ledger_names(&root).map_err(listing)? {
            let ledger = match Ledger::open(&name, &root.join(&name), &config, &claimant) {
                Ok(ledger) => ledger,
                // On shared storage: deleted through another server while this one was
                // down. Its key stays (a key is never removed but by its own deletion).
                Err(e) if e.kind == ErrorKind::NotFound && config.storage != Location::Embedded => {
                    tracing::warn!(ledger = %name, key = %root.join(&name).display(), "{e}; its key folder is left here, remove it");
                    continue;
                }
                Err(e) => return Err(e.context(format!("opening ledger {}", Quote(&name)))),
            };
            tracing::info!(ledger = %name, size = ledger.head().borrow().size, "opened ledger");
            ledgers.insert(name, Arc::new(ledger));
        }
        Ok(Engine {
            config,
            ledgers: RwLock::new(ledgers),
            catalog: Mutex::new(()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
            claimant,
        })
    }

    /// The engine's limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Whether the engine was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How long a write lease lasts without renewal (shared storage only).
    pub fn lease(&self) -> std::time::Duration {
        self.config.lease
    }

    /// Where the ledgers are kept.
    pub fn storage(&self) -> &Location {
        &self.config.storage
    }

    /// A ledger by name. On shared storage, a ledger another server created is opened
    /// here the first time it is asked for, once its key is in this server's data folder.
    pub fn ledger(&self, name: &str) -> Result<Arc<Ledger>> {
        self.check_open()?;
        check_ledger_name(name)?;
        let open = self
            .ledgers
            .read()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .get(name)
            .cloned();
        if let Some(ledger) = open {
            if ledger.closed() != Some(Closed::Deleted) {
                return Ok(ledger);
            }
            // Deleted through another server: this one forgets it, and looks again (the
            // name may have been given to a new ledger).
            self.forget(&ledger);
        }
        self.discover(name)?
            .ok_or_else(|| Error::not_found(format!("ledger {} does not exist", Quote(name))))
    }

    /// On shared storage: opens ledger `name` if its folder (with its key) appeared in
    /// the data folder since start-up. Blocking.
    fn discover(&self, name: &str) -> Result<Option<Arc<Ledger>>> {
        if self.config.storage == Location::Embedded {
            return Ok(None);
        }
        let root = files::ledgers_dir(&self.config.data_dir);
        let dir = root.join(name);
        if !dir.join(KEY_FILE).exists() {
            return Ok(None);
        }
        let _guard = self
            .catalog
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        self.check_open()?;
        let mut ledgers = self
            .ledgers
            .write()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?;
        if let Some(ledger) = ledgers.get(name) {
            return Ok(Some(ledger.clone()));
        }
        let ledger = Ledger::open(name, &dir, &self.config, &self.claimant)
            .map_err(|e| e.context(format!("opening ledger {}", Quote(name))))?;
        tracing::info!(ledger = %name, size = ledger.head().borrow().size, "opened ledger");
        let ledger = Arc::new(ledger);
        ledgers.insert(name.to_owned(), ledger.clone());
        Ok(Some(ledger))
    }

    /// Takes a ledger found deleted out of the catalog (unless it was replaced already).
    fn forget(&self, ledger: &Arc<Ledger>) {
        ledger.close(Closed::Deleted);
        if let Ok(mut ledgers) = self.ledgers.write()
            && ledgers
                .get(ledger.name())
                .is_some_and(|l| Arc::ptr_eq(l, ledger))
        {
            ledgers.remove(ledger.name());
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// Every ledger, by name (on shared storage, those whose keys this server has).
    pub fn ledgers(&self) -> Result<Vec<Arc<Ledger>>> {
        self.check_open()?;
        if self.config.storage != Location::Embedded {
            let root = files::ledgers_dir(&self.config.data_dir);
            let names = files::ledger_names(&root)
                .map_err(|e| Error::internal_from(format!("reading {}", root.display()), e))?;
            for name in names {
                if let Err(e) = self.ledger(&name) {
                    tracing::warn!(ledger = %name, error = %e, "cannot open ledger");
                }
            }
        }
        Ok(self
            .ledgers
            .read()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .values()
            .cloned()
            .collect())
    }

    /// Creates a ledger: its folder, its signing key (given, in private key text form,
    /// or generated) and an empty journal with a signed checkpoint of size 0. Blocking.
    pub fn create_ledger(
        &self,
        name: &str,
        signing_key: Option<&str>,
        deletion_protection: bool,
    ) -> Result<Arc<Ledger>> {
        check_ledger_name(name)?;
        let _guard = self
            .catalog
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        self.check_open()?;
        if self.ledger(name).is_ok() {
            return Err(Error::exists(format!(
                "ledger {} already exists",
                Quote(name)
            )));
        }
        let origin = format!("{}/{name}", self.config.server_name);
        let signer = match signing_key {
            Some(text) => {
                let signer =
                    Signer::parse(text).map_err(|e| Error::invalid(format!("signing_key: {e}")))?;
                if signer.name() != origin {
                    return Err(Error::invalid(format!(
                        "signing_key: key name {} must equal the ledger's origin {}",
                        Quote(signer.name()),
                        Quote(&origin)
                    )));
                }
                signer
            }
            None => Signer::generate(&origin)
                .map_err(|e| Error::internal(format!("generating key: {e}")))?,
        };
        let root = files::ledgers_dir(&self.config.data_dir);
        files::build_ledger_folder(
            &root,
            "creating",
            name,
            |path, e| Error::internal_from(format!("creating {}", path.display()), e),
            |staging| {
                files::write_key_file(staging, &signer)?;
                create_store(
                    &self.config.storage,
                    staging,
                    name,
                    &signer,
                    deletion_protection,
                    self.config.cache_bytes,
                )?;
                Ok(())
            },
        )
        .map_err(|e| e.context(format!("creating ledger {}", Quote(name))))?;
        let ledger = Arc::new(Ledger::open(
            name,
            &root.join(name),
            &self.config,
            &self.claimant,
        )?);
        self.ledgers
            .write()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .insert(name.to_owned(), ledger.clone());
        tracing::info!(ledger = %name, %origin, "created ledger");
        Ok(ledger)
    }

    /// Deletes a ledger and its folder. Refused while deletion protection is on. Blocking.
    pub fn delete_ledger(&self, name: &str) -> Result<()> {
        let _guard = self
            .catalog
            .lock()
            .map_err(|_| Error::internal("catalog lock poisoned"))?;
        let ledger = self.ledger(name)?;
        if ledger.deletion_protection()? {
            return Err(Error::precondition(format!(
                "ledger {} has deletion protection on; turn it off first \
                 (graven ledger update {name} --deletion-protection false)",
                Quote(name)
            )));
        }
        self.ledgers
            .write()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .remove(name);
        ledger.close(Closed::Deleted);
        let root = files::ledgers_dir(&self.config.data_dir);
        let trash = root.join(format!(".deleting-{name}-{}", now_micros()));
        std::fs::rename(root.join(name), &trash)?;
        files::sync_dir(&root)?;
        std::fs::remove_dir_all(&trash)?;
        Store::destroy_at(&self.config.storage, name)?;
        tracing::info!(ledger = %name, "deleted ledger");
        Ok(())
    }

    /// Shuts the engine down: refuses new requests (UNAVAILABLE), lets each sequencer
    /// finish the work already queued, and releases the ledgers' files once the requests
    /// still reading them are done. Blocking.
    pub fn close(&self) {
        let Ok(_guard) = self.catalog.lock() else {
            return;
        };
        self.closed.store(true, Ordering::Release);
        let ledgers = match self.ledgers.write() {
            Ok(mut map) => std::mem::take(&mut *map),
            Err(_) => return,
        };
        for ledger in ledgers.values() {
            ledger.close(Closed::Shutdown);
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}
