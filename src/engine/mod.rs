//! The engine: ledgers on disk, their sequencers, and the read path.
//!
//! Data folder layout (see docs/FORMAT.md):
//!
//! ```text
//! <data>/ledgers/<name>/ledger.redb    journal, bodies, indexes, tree hashes, checkpoint
//! <data>/ledgers/<name>/signing.key    the ledger's Ed25519 key, owner-only (0600)
//! ```
//!
//! Writes go through each ledger's [`sequencer`]; reads open redb read transactions and
//! never wait for it. The engine never logs or returns a signing key.

mod ledger;
mod sequencer;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use graven_verify::{Checkpoint, EMPTY_ROOT, Signer};

pub use ledger::Ledger;

use crate::error::{Error, Result};
use crate::model::{Limits, check_ledger_name};
use crate::storage;

/// File name of a ledger's database inside its folder.
pub const DB_FILE: &str = "ledger.redb";
/// File name of a ledger's signing key inside its folder.
pub const KEY_FILE: &str = "signing.key";

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
}

impl Config {
    /// Defaults for a data folder: server name `graven.local`, default limits, 64 MiB of
    /// cache per ledger.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            server_name: "graven.local".into(),
            limits: Limits::default(),
            cache_bytes: 64 << 20,
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
    lock: Mutex<Option<fs::File>>,
}

/// File name of the data folder's lock, held by the server (and `graven import`) while
/// it uses the folder.
pub const LOCK_FILE: &str = "graven.lock";

/// Takes the data folder's lock (an exclusive advisory lock on [`LOCK_FILE`], released
/// when the file is closed, so also when the process dies), creating the folder if need
/// be. Refused while another process holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<fs::File> {
    fs::create_dir_all(dir.join("ledgers"))
        .map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
            "data folder {} is in use by another graven process (a running graven serve?)",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => {
            Err(Error::internal(format!("locking {}: {e}", path.display())))
        }
    }
}

/// Creates a file readable and writable by its owner only, failing if it exists.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a directory's entries (new files, renames) durable.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

impl Engine {
    /// Opens (creating if needed) the data folder and every ledger in it.
    pub fn open(config: Config) -> Result<Engine> {
        if !graven_verify::note::is_valid_key_name(&config.server_name) {
            return Err(Error::invalid(format!(
                "server name {:?} is invalid: no spaces or '+'",
                config.server_name
            )));
        }
        let lock = lock_data_dir(&config.data_dir)?;
        let root = config.data_dir.join("ledgers");
        let mut ledgers = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        for dirent in fs::read_dir(&root)
            .map_err(|e| Error::internal(format!("reading {}: {e}", root.display())))?
        {
            let dirent = dirent?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // Leftovers of an interrupted create or delete.
                let _ = fs::remove_dir_all(dirent.path());
                continue;
            }
            names.push(name);
        }
        names.sort();
        for name in names {
            let ledger = Ledger::open(&name, &root.join(&name), &config)
                .map_err(|e| e.context(format!("opening ledger {name:?}")))?;
            tracing::info!(ledger = %name, size = ledger.size_hint(), "opened ledger");
            ledgers.insert(name, Arc::new(ledger));
        }
        Ok(Engine {
            config,
            ledgers: RwLock::new(ledgers),
            catalog: Mutex::new(()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The engine's limits.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// A ledger by name.
    pub fn ledger(&self, name: &str) -> Result<Arc<Ledger>> {
        self.check_open()?;
        check_ledger_name(name)?;
        self.ledgers
            .read()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("ledger {name:?} does not exist")))
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// Every ledger, by name.
    pub fn ledgers(&self) -> Result<Vec<Arc<Ledger>>> {
        self.check_open()?;
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
            return Err(Error::exists(format!("ledger {name:?} already exists")));
        }
        let origin = format!("{}/{name}", self.config.server_name);
        let signer = match signing_key {
            Some(text) => {
                let signer =
                    Signer::parse(text).map_err(|e| Error::invalid(format!("signing_key: {e}")))?;
                if signer.name() != origin {
                    return Err(Error::invalid(format!(
                        "signing_key: key name {:?} must equal the ledger's origin {origin:?}",
                        signer.name()
                    )));
                }
                signer
            }
            None => Signer::generate(&origin)
                .map_err(|e| Error::internal(format!("generating key: {e}")))?,
        };
        let root = self.config.data_dir.join("ledgers");
        let staging = root.join(format!(".creating-{name}"));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging)?;
        let result = (|| -> Result<()> {
            let mut key = create_private_file(&staging.join(KEY_FILE))?;
            key.write_all(format!("{}\n", signer.to_private_key()).as_bytes())?;
            key.sync_all()?;
            initialize_database(
                &staging.join(DB_FILE),
                &origin,
                &signer,
                deletion_protection,
                self.config.cache_bytes,
            )?;
            sync_dir(&staging)?;
            fs::rename(&staging, root.join(name))?;
            sync_dir(&root)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&staging);
            return Err(e.context(format!("creating ledger {name:?}")));
        }
        let ledger = Arc::new(Ledger::open(name, &root.join(name), &self.config)?);
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
                "ledger {name:?} has deletion protection on; turn it off first \
                 (graven ledger update {name} --deletion-protection false)"
            )));
        }
        self.ledgers
            .write()
            .map_err(|_| Error::internal("ledger catalog lock poisoned"))?
            .remove(name);
        ledger.close();
        let root = self.config.data_dir.join("ledgers");
        let trash = root.join(format!(".deleting-{name}-{}", sequencer::now_micros()));
        fs::rename(root.join(name), &trash)?;
        sync_dir(&root)?;
        fs::remove_dir_all(&trash)?;
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
            ledger.close();
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

/// Writes the metadata and an empty, signed tree into a new database file.
pub(crate) fn initialize_database(
    path: &Path,
    origin: &str,
    signer: &Signer,
    deletion_protection: bool,
    cache_bytes: usize,
) -> Result<()> {
    let db = redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)?;
    let checkpoint = Checkpoint {
        origin: origin.to_owned(),
        size: 0,
        root: EMPTY_ROOT,
    }
    .sign(signer)
    .map_err(|e| Error::internal(format!("signing checkpoint: {e}")))?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(storage::META)?;
        meta.insert(
            storage::META_FORMAT,
            storage::FORMAT_VERSION.to_be_bytes().as_slice(),
        )?;
        meta.insert(storage::META_ORIGIN, origin.as_bytes())?;
        meta.insert(
            storage::META_CREATED,
            sequencer::now_micros().to_be_bytes().as_slice(),
        )?;
        meta.insert(
            storage::META_PROTECTION,
            [u8::from(deletion_protection)].as_slice(),
        )?;
        meta.insert(storage::META_CHECKPOINT, checkpoint.as_bytes())?;
        txn.open_table(storage::LEAVES)?;
        txn.open_table(storage::DOCS)?;
        txn.open_table(storage::TABLES)?;
        txn.open_table(storage::IDEMPOTENCY)?;
    }
    txn.commit()?;
    Ok(())
}
