//! The data folder on disk: its lock, the ledger folders, signing key files, and the
//! staging protocol by which a ledger folder appears whole or not at all.
//!
//! ```text
//! <data>/graven.lock                   held by graven serve and graven import
//! <data>/ledgers/<name>/ledger.redb    journal, bodies, indexes, tree hashes, checkpoint
//! <data>/ledgers/<name>/signing.key    the ledger's Ed25519 key, owner-only (0600)
//! <data>/ledgers/.<anything>           a ledger being created, imported or deleted
//! ```

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use graven_verify::Signer;

use crate::error::{Error, Result};

/// File name of a ledger's database inside its folder.
pub const DB_FILE: &str = "ledger.redb";
/// File name of a ledger's signing key inside its folder.
pub const KEY_FILE: &str = "signing.key";
/// File name of the data folder's lock, held by the server (and `graven import`) while it
/// uses the folder.
pub const LOCK_FILE: &str = "graven.lock";

/// The folder holding a data folder's ledgers.
pub fn ledgers_dir(data: &Path) -> PathBuf {
    data.join("ledgers")
}

/// Takes the data folder's lock (an exclusive advisory lock on [`LOCK_FILE`], released
/// when the file is closed, so also when the process dies), creating the folder if need
/// be. Refused while another process holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<fs::File> {
    fs::create_dir_all(ledgers_dir(dir))
        .map_err(|e| Error::internal_from(format!("creating {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Best effort: a folder the operator made with other permissions still works.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::internal_from(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
            "data folder {} is in use by another graven process (a running graven serve?)",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::internal_from(
            format!("locking {}", path.display()),
            e,
        )),
    }
}

/// The names of the ledger folders in `root`, sorted. Hidden entries (a ledger being
/// created, imported or deleted) are not ledgers.
pub fn ledger_names(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for dirent in fs::read_dir(root)? {
        let name = dirent?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes what an interrupted create, import or delete left in `root`. Best effort: a
/// leftover that cannot be removed is logged and left (it is never read as a ledger).
pub(crate) fn remove_leftovers(root: &Path) -> std::io::Result<()> {
    for dirent in fs::read_dir(root)? {
        let path = dirent?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden && let Err(e) = fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover");
        }
    }
    Ok(())
}

/// Writes `signer`'s private key to `dir`/[`KEY_FILE`], readable by its owner only, and
/// makes it durable. Fails if the file exists.
pub(crate) fn write_key_file(dir: &Path, signer: &Signer) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(dir.join(KEY_FILE))?;
    file.write_all(format!("{}\n", signer.to_private_key()).as_bytes())?;
    file.sync_all()
}

/// Why a key file could not be read.
#[derive(Debug)]
pub enum KeyFileError {
    /// There is no key file.
    Missing,
    /// It could not be read.
    Unreadable(std::io::Error),
    /// It is not a private key.
    Malformed(String),
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::Missing => write!(f, "{KEY_FILE} is missing"),
            KeyFileError::Unreadable(e) => write!(f, "reading {KEY_FILE}: {e}"),
            KeyFileError::Malformed(e) => write!(f, "{KEY_FILE}: {e}"),
        }
    }
}

/// Reads and parses the signing key of the ledger folder `dir`.
pub fn read_key_file(dir: &Path) -> std::result::Result<Signer, KeyFileError> {
    let text = fs::read_to_string(dir.join(KEY_FILE)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeyFileError::Missing,
        _ => KeyFileError::Unreadable(e),
    })?;
    Signer::parse(&text).map_err(|e| KeyFileError::Malformed(e.to_string()))
}

/// Makes a directory's entries (new files, renames) durable.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Builds the ledger folder `root/name` so that it appears whole or not at all: `build`
/// fills a hidden staging folder `root/.<purpose>-<name>` (any leftover of an earlier
/// attempt removed first), which is made durable and renamed into place only if `build`
/// succeeds, and removed if anything fails. `io` turns a failure of the protocol's own
/// steps into the caller's error.
pub(crate) fn build_ledger_folder<T, E>(
    root: &Path,
    purpose: &str,
    name: &str,
    io: impl Fn(&Path, std::io::Error) -> E,
    build: impl FnOnce(&Path) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let staging = root.join(format!(".{purpose}-{name}"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    fs::create_dir(&staging).map_err(|e| io(&staging, e))?;
    let result = build(&staging).and_then(|out| {
        sync_dir(&staging).map_err(|e| io(&staging, e))?;
        fs::rename(&staging, root.join(name)).map_err(|e| io(&staging, e))?;
        sync_dir(root).map_err(|e| io(root, e))?;
        Ok(out)
    });
    if result.is_err() {
        // Best effort: a leftover is removed at the next start or attempt.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_build_leaves_nothing_and_a_good_one_appears_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let failed: std::result::Result<(), String> =
            build_ledger_folder(root, "creating", "a", io, |staging| {
                fs::write(staging.join("x"), b"half").map_err(|e| e.to_string())?;
                Err("refused".into())
            });
        assert_eq!(failed, Err("refused".into()));
        assert!(ledger_names(root).expect("names").is_empty());
        assert_eq!(
            fs::read_dir(root).expect("dir").count(),
            0,
            "staging removed"
        );

        fs::create_dir(root.join(".creating-b")).expect("leftover");
        fs::write(root.join(".creating-b/stale"), b"old").expect("stale file");
        build_ledger_folder(root, "creating", "b", io, |staging| {
            fs::write(staging.join(DB_FILE), b"db").map_err(|e| e.to_string())
        })
        .expect("built");
        assert_eq!(ledger_names(root).expect("names"), ["b"]);
        assert!(
            !root.join("b/stale").exists(),
            "the leftover was not reused"
        );
        remove_leftovers(root).expect("clean");
        assert_eq!(fs::read_dir(root).expect("dir").count(), 1);
    }

    #[test]
    fn key_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(matches!(
            read_key_file(dir.path()),
            Err(KeyFileError::Missing)
        ));
        let signer = Signer::generate("example.com/l").expect("key");
        write_key_file(dir.path(), &signer).expect("write");
        assert!(
            write_key_file(dir.path(), &signer).is_err(),
            "never overwritten"
        );
        let back = read_key_file(dir.path()).expect("read");
        assert_eq!(back.verifier().to_vkey(), signer.verifier().to_vkey());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        fs::write(dir.path().join(KEY_FILE), "garbage").expect("overwrite");
        assert!(matches!(
            read_key_file(dir.path()),
            Err(KeyFileError::Malformed(_))
        ));
    }
}
