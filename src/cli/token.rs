//! `graven token NAME`: a new bearer token and its auth-file entry.

use std::io::Write;

use clap::Args;

/// `graven token` options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The principal's name.
    name: String,
}

pub fn run(a: &TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let (token, hash) = graven::auth::new_token()
        .map_err(|e| anyhow::anyhow!("reading the system's randomness: {e}"))?;
    writeln!(out, "{token}")?;
    eprintln!(
        "# for the auth file of graven serve --auth (set the roles: reader, writer or \
         admin, per ledger or \"*\"):\n[[principal]]\nname = {:?}\ntoken_sha256 = \
         \"{hash}\"\nroles = {{ }}",
        a.name
    );
    Ok(())
}
