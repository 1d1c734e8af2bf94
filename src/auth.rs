//! Authentication and per-ledger authorization, off unless `graven serve --auth FILE`.
//!
//! The file names principals, each with the SHA-256 of its bearer token (the token itself
//! is never stored) and a role per ledger, `"*"` standing for every ledger:
//!
//! ```toml
//! [[principal]]
//! name = "orders-service"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! roles = { shop = "writer", "*" = "reader" }
//! ```
//!
//! A request carries `authorization: Bearer <token>`. Without a known token it is refused
//! with UNAUTHENTICATED; a principal without the role an operation needs gets
//! PERMISSION_DENIED. Roles are ordered: a reader reads (documents, history, scans,
//! proofs, checkpoints, entries, the change stream); a writer also transacts; an admin also
//! creates and deletes its ledgers and their tables, changes their settings and runs the
//! online check. The principal's name is what the journal records as the writer of each
//! revision.
//!
//! Tokens are compared by their SHA-256, in constant time against every principal, and
//! never appear in errors, logs or debug output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a principal may do on a ledger; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, proofs, checkpoints, the change stream.
    Reader,
    /// Also transactions.
    Writer,
    /// Also creating and deleting the ledger and its tables, its settings, and the online
    /// check (`CheckLedger`, which reads everything).
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// The ledger key that stands for every ledger.
pub const ALL_LEDGERS: &str = "*";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    token_sha256: String,
    #[serde(default)]
    roles: BTreeMap<String, Role>,
}

/// One principal, as loaded.
struct Principal {
    name: String,
    token_hash: [u8; 32],
    roles: BTreeMap<String, Role>,
}

/// The principals of an auth file.
pub struct Auth {
    principals: Vec<Principal>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: token hashes stay out of debug output too.
        f.debug_struct("Auth")
            .field(
                "principals",
                &self.principals.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Who a request was made by, once its token is known: a view of its principal.
#[derive(Clone, Copy)]
pub struct Caller<'a>(&'a Principal);

impl fmt::Debug for Caller<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Caller").field(&self.0.name).finish()
    }
}

impl PartialEq for Caller<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl<'a> Caller<'a> {
    /// The principal's name, recorded in journal entries.
    pub fn name(&self) -> &'a str {
        &self.0.name
    }

    /// The caller's role on `ledger`: its own entry, else the `"*"` one.
    pub fn role(&self, ledger: &str) -> Option<Role> {
        let roles = &self.0.roles;
        roles
            .get(ledger)
            .or_else(|| roles.get(ALL_LEDGERS))
            .copied()
    }

    /// Whether the caller holds at least `needed` on `ledger`.
    pub fn may(&self, ledger: &str, needed: Role) -> bool {
        self.role(ledger).is_some_and(|r| r >= needed)
    }
}

/// Why a request was refused. (Whether a known principal may do something is the
/// caller's [`Caller::may`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, a malformed header, or a token no principal has.
    Unauthenticated,
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Compares two hashes without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The lower-case hex SHA-256 of a token: what an auth file stores.
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Why an auth file was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFileError(String);

impl fmt::Display for AuthFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthFileError {}

impl Auth {
    /// Parses an auth file's text.
    pub fn parse(text: &str) -> Result<Auth, AuthFileError> {
        Auth::parse_fields(text).map_err(AuthFileError)
    }

    fn parse_fields(text: &str) -> Result<Auth, String> {
        let file: FileFormat = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut principals: Vec<Principal> = Vec::new();
        for (i, p) in file.principal.into_iter().enumerate() {
            let at = format!("principal[{i}]");
            if p.name.is_empty() || p.name.len() > 128 || p.name.chars().any(char::is_control) {
                return Err(format!(
                    "{at}.name: use 1 to 128 bytes without control characters"
                ));
            }
            if principals.iter().any(|q| q.name == p.name) {
                return Err(format!("{at}.name: {:?} is named twice", p.name));
            }
            let token_hash = decode_hash(&p.token_sha256).ok_or_else(|| {
                format!("{at}.token_sha256: 64 hexadecimal digits (graven token makes one)")
            })?;
            if principals.iter().any(|q| same(&q.token_hash, &token_hash)) {
                return Err(format!(
                    "{at}.token_sha256: another principal has the same token"
                ));
            }
            for ledger in p.roles.keys() {
                if ledger != ALL_LEDGERS {
                    crate::model::check_ledger_name(ledger)
                        .map_err(|e| format!("{at}.roles: {}", e.message))?;
                }
            }
            principals.push(Principal {
                name: p.name,
                token_hash,
                roles: p.roles,
            });
        }
        if principals.is_empty() {
            return Err("no [[principal]]: nobody could use the server".into());
        }
        Ok(Auth { principals })
    }

    /// Reads and parses an auth file.
    pub fn load(path: &Path) -> Result<Auth, AuthFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthFileError(format!("reading {}: {e}", path.display())))?;
        Auth::parse(&text).map_err(|e| AuthFileError(format!("{}: {e}", path.display())))
    }

    /// The caller behind an `authorization` header value, if its token is known.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller<'_>, Denied> {
        let token = header
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .ok_or(Denied::Unauthenticated)?;
        let hash: [u8; 32] = Sha256::digest(token).into();
        // Look at every principal, so the time does not say which one matched.
        let mut found = None;
        for p in &self.principals {
            if same(&p.token_hash, &hash) {
                found = Some(p);
            }
        }
        found.map(Caller).ok_or(Denied::Unauthenticated)
    }
}

/// A new random token (32 bytes, base64url without padding) and its SHA-256 in hex.
pub fn new_token() -> Result<(String, String), getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash_hex(&token);
    Ok((token, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> String {
        format!(
            r#"
[[principal]]
name = "ops"
token_sha256 = "{}"
roles = {{ "*" = "admin" }}

[[principal]]
name = "orders"
token_sha256 = "{}"
roles = {{ shop = "writer", "*" = "reader" }}
"#,
            token_hash_hex("ops-token"),
            token_hash_hex("orders-token")
        )
    }

    #[test]
    fn tokens_find_their_principal_and_roles_order() {
        let auth = Auth::parse(&file()).expect("parses");
        let orders = auth
            .authenticate(Some(b"Bearer orders-token"))
            .expect("known token");
        assert_eq!(orders.name(), "orders");
        assert!(orders.may("shop", Role::Writer));
        assert!(!orders.may("shop", Role::Admin));
        assert!(orders.may("other", Role::Reader));
        assert!(!orders.may("other", Role::Writer));
        let ops = auth.authenticate(Some(b"Bearer ops-token")).expect("ops");
        assert!(ops.may("anything", Role::Admin));
        for bad in [
            None,
            Some(&b"orders-token"[..]),
            Some(b"Bearer "),
            Some(b"Bearer orders-token "),
            Some(b"Basic b3JkZXJz"),
        ] {
            assert_eq!(
                auth.authenticate(bad),
                Err(Denied::Unauthenticated),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_field() {
        let h = token_hash_hex("t");
        for (text, why) in [
            (String::new(), "no [[principal]]"),
            (
                format!("[[principal]]\nname = \"\"\ntoken_sha256 = \"{h}\"\n"),
                "principal[0].name",
            ),
            (
                "[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n".to_owned(),
                "principal[0].token_sha256",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{h}\"\n\
                     [[principal]]\nname = \"b\"\ntoken_sha256 = \"{h}\"\n"
                ),
                "same token",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{h}\"\nroles = {{ Bad = \"reader\" }}\n"
                ),
                "principal[0].roles",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{h}\"\nroles = {{ x = \"owner\" }}\n"
                ),
                "owner",
            ),
            (
                format!("[[principal]]\nname = \"a\"\ntoken = \"{h}\"\n"),
                "token",
            ),
        ] {
            let err = Auth::parse(&text).expect_err(&text);
            assert!(err.to_string().contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn debug_output_shows_no_token_hash() {
        let auth = Auth::parse(&file()).expect("parses");
        let shown = format!("{auth:?}");
        assert!(shown.contains("orders"));
        assert!(!shown.contains(&token_hash_hex("orders-token")));
    }
}
