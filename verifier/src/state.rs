//! The newest verified checkpoint of each log, kept in a directory between runs of
//! `graven-verify consistency --state DIR`.
//!
//! One file per origin holds the signed checkpoint note verbatim. Its name is the hex of
//! the origin's UTF-8 bytes plus `.checkpoint` (or, for origins over 100 bytes,
//! `sha256-` and the hex of the origin's SHA-256), so any origin gives a safe file name.
//! Files are replaced atomically: written to a temporary file in the same directory,
//! synced, then renamed over the old one.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The largest state file read.
const MAX_STATE_FILE: u64 = 1 << 20;

/// A directory of checkpoints, one per origin.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state kept in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// The file name for `origin`.
    pub fn file_name(origin: &str) -> String {
        if origin.len() <= 100 {
            format!("{}.checkpoint", hex::encode(origin.as_bytes()))
        } else {
            format!(
                "sha256-{}.checkpoint",
                hex::encode(Sha256::digest(origin.as_bytes()))
            )
        }
    }

    /// The path of the file for `origin`.
    pub fn path(&self, origin: &str) -> PathBuf {
        self.dir.join(StateDir::file_name(origin))
    }

    /// The stored checkpoint note for `origin`, if there is one.
    pub fn load(&self, origin: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(origin);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut data = Vec::new();
        file.take(MAX_STATE_FILE + 1).read_to_end(&mut data)?;
        if data.len() as u64 > MAX_STATE_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than {MAX_STATE_FILE} bytes", path.display()),
            ));
        }
        Ok(Some(data))
    }

    /// Atomically replaces the stored checkpoint note for `origin`.
    pub fn store(&self, origin: &str, note: &str) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path(origin);
        let tmp = self.dir.join(format!(
            ".{}.tmp-{}",
            StateDir::file_name(origin),
            std::process::id()
        ));
        let result = write_synced(&tmp, note.as_bytes()).and_then(|()| fs::rename(&tmp, &path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(&self.dir)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(StateDir::file_name("a/b"), "612f62.checkpoint");
        let long = "x".repeat(101);
        let name = StateDir::file_name(&long);
        assert!(
            name.starts_with("sha256-") && name.len() == 7 + 64 + 11,
            "{name}"
        );
        for origin in ["../etc", "/", "a\u{0}b", "é"] {
            let name = StateDir::file_name(origin);
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        }
    }

    #[test]
    fn store_then_load() {
        let dir = std::env::temp_dir().join(format!("graven-state-test-{}", std::process::id()));
        let state = StateDir::new(dir.join("sub"));
        assert_eq!(state.load("o").expect("load"), None);
        state.store("o", "one").expect("store");
        state.store("o", "two").expect("store");
        assert_eq!(state.load("o").expect("load"), Some(b"two".to_vec()));
        let _ = fs::remove_dir_all(&dir);
    }
}
