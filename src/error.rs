//! The engine's errors: a small set of kinds, each message naming the field or operation.
//! `service.rs` maps each kind to one gRPC code, in one place.

use std::fmt;

/// What went wrong, as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: malformed JSON, bad names, out-of-range sizes.
    InvalidArgument,
    /// No such ledger, table, document, version or index.
    NotFound,
    /// The ledger, table or document already exists.
    AlreadyExists,
    /// A condition did not hold (a check, an expected version, deletion protection).
    FailedPrecondition,
    /// Over a configured limit.
    ResourceExhausted,
    /// Shutting down, or the ledger is going away.
    Unavailable,
    /// Storage failure. Nothing was acknowledged.
    Internal,
}

/// An engine error: a kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind.
    pub kind: ErrorKind,
    /// What went wrong, naming the field or operation.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
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

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
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

impl std::error::Error for Error {}

/// Storage errors are internal: they are logged and reported without detail of the data.
macro_rules! storage_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::internal(format!("storage: {e}"))
            }
        }
    )*};
}

storage_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    std::io::Error
);

/// Shorthand for engine results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
