//! The engine's errors: a small set of kinds, each message naming the field or operation.
//! The gRPC adapter maps each kind to one gRPC code, in one place (`service::status`).
//!
//! Messages quote what the caller sent only through [`Quote`], which shows at most a short
//! prefix: an error about a 100,000-byte id must not itself be 100,000 bytes (gRPC clients
//! refuse status messages over a few KiB, and would see a transport error instead).

use std::fmt;
use std::sync::Arc;

/// What went wrong, as a client can act on it. Each kind is one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input that can never succeed: malformed JSON, bad names, inconsistent sizes.
    InvalidArgument,
    /// Past the end of the journal as it is now: an index or size that may become valid
    /// once the ledger grows.
    OutOfRange,
    /// No such ledger, table, document or version.
    NotFound,
    /// The ledger, table or document already exists.
    AlreadyExists,
    /// A condition did not hold (a check, an expected version, deletion protection).
    FailedPrecondition,
    /// Over a configured limit.
    ResourceExhausted,
    /// A transaction read something another one changed before it could commit
    /// (optimistic concurrency): nothing was written, and a retry may succeed.
    Aborted,
    /// No credentials the server knows.
    Unauthenticated,
    /// Credentials known, but their role does not allow the request.
    PermissionDenied,
    /// Shutting down, or the ledger is going away.
    Unavailable,
    /// A write reached a server that is not the ledger's writer: another server holds
    /// its write lease ([`Error::writer`] says where). The gRPC adapter forwards the write
    /// there; a client that sees it anyway gets UNAVAILABLE.
    NotWriter,
    /// Storage failure. Nothing was acknowledged.
    Internal,
}

/// An engine error: a kind, a message for people, and the error that caused it, if any.
#[derive(Debug, Clone)]
pub struct Error {
    /// The kind.
    pub kind: ErrorKind,
    /// What went wrong, naming the field or operation.
    pub message: String,
    /// The underlying failure (a storage or I/O error), kept for logs and `source()`.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// For [`ErrorKind::NotWriter`]: the address of the server that writes the ledger.
    writer: Option<Arc<str>>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            writer: None,
        }
    }

    /// [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// [`ErrorKind::OutOfRange`].
    pub fn out_of_range(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::OutOfRange, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::AlreadyExists`].
    pub fn exists(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::AlreadyExists, message)
    }

    /// [`ErrorKind::FailedPrecondition`].
    pub fn precondition(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::FailedPrecondition, message)
    }

    /// [`ErrorKind::ResourceExhausted`].
    pub fn exhausted(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::ResourceExhausted, message)
    }

    /// [`ErrorKind::Aborted`].
    pub fn aborted(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Aborted, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::NotWriter`]: the server at `address` writes `ledger`.
    pub fn not_writer(ledger: &str, address: &str) -> Error {
        let mut e = Error::new(
            ErrorKind::NotWriter,
            format!(
                "ledger {} is written by the server at {}, not this one",
                Quote(ledger),
                Quote(address)
            ),
        );
        e.writer = Some(address.into());
        e
    }

    /// The address of the ledger's writer, for [`ErrorKind::NotWriter`].
    pub fn writer(&self) -> Option<&str> {
        self.writer.as_deref()
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }

    /// An error of `kind` caused by `source`: `what: source`.
    pub fn caused(
        kind: ErrorKind,
        what: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error {
            kind,
            message: format!("{what}: {source}"),
            source: Some(Arc::new(source)),
            writer: None,
        }
    }

    /// An [`ErrorKind::Internal`] error caused by `source`: `what: source`.
    pub fn internal_from(
        what: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::caused(ErrorKind::Internal, what, source)
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::internal_from("i/o", e)
    }
}

/// Shorthand for engine results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most characters of a caller's value an error message quotes.
const QUOTE_CHARS: usize = 64;

/// A value the caller sent, quoted for an error message: as Rust's `{:?}` writes a string,
/// cut to its first 64 characters with its length in bytes after it when longer, e.g.
/// `"xxxx…"… (100000 bytes)`.
#[derive(Debug, Clone, Copy)]
pub struct Quote<'a>(pub &'a str);

impl fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short() {
        assert_eq!(Quote("a\"b").to_string(), r#""a\"b""#);
        let exact = "x".repeat(QUOTE_CHARS);
        assert_eq!(Quote(&exact).to_string(), format!("{exact:?}"));
        let long = "é".repeat(100_000);
        let shown = Quote(&long).to_string();
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.ends_with("… (200000 bytes)"), "{shown}");
    }

    #[test]
    fn the_source_is_kept() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk on fire");
        let e = Error::internal_from("writing", io);
        assert_eq!(e.message, "writing: disk on fire");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("disk on fire")
        );
    }
}
