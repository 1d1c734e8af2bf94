//! How a PostgreSQL storage URL is read: the connection settings tokio-postgres knows, and
//! the TLS settings it does not (`sslmode` beyond `require`, `sslrootcert`, `sslcert`,
//! `sslkey`), which graven turns into a rustls client configuration. The modes mean what
//! they mean to libpq, PostgreSQL's own client
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html>):
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (the default) | when the server offers it | checked against `sslrootcert` if given, else not checked |
//! | `require` | always | checked against `sslrootcert` if given (as `verify-ca`), else not checked |
//! | `verify-ca` | always | issued by a CA of `sslrootcert` (required) |
//! | `verify-full` | always | that, and naming the host connected to |
//!
//! `sslcert` and `sslkey` (PEM files, both or neither) give a client certificate.
//! Not supported, and refused by name: `sslrootcert=system`, `sslpassword`, `sslcrl`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Error, ErrorKind, Result};

/// Where and how to connect: tokio-postgres's settings and the TLS connector for them.
pub(super) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// The TLS settings taken out of a storage URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsSettings {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsSettings {
    /// Takes `key=value` if it is a TLS setting; false if it is not one of them.
    fn take(&mut self, key: &str, value: String) -> Result<bool> {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(refused(format!("{key} is not supported")));
            }
            _ => return Ok(false),
        };
        *slot = Some(value);
        Ok(true)
    }
}

fn refused(why: String) -> Error {
    Error::new(
        ErrorKind::Failed,
        format!("the PostgreSQL storage URL: {why}"),
    )
}

/// Reads a storage URL (`postgresql://...` or `key=value ...`) into a [`Target`].
pub(super) fn target(url: &str) -> Result<Target> {
    let (rest, settings) = split_tls(url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| refused(e.to_string()))?;
    let mode = settings.mode.as_deref().unwrap_or("prefer");
    let (ssl_mode, check) = match mode {
        "disable" => (SslMode::Disable, Check::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Check::CaIfGiven),
        "require" => (SslMode::Require, Check::CaIfGiven),
        "verify-ca" => (SslMode::Require, Check::Ca),
        "verify-full" => (SslMode::Require, Check::CaAndHost),
        other => {
            return Err(refused(format!(
                "sslmode {other:?} is none of disable, allow, prefer, require, verify-ca, \
                 verify-full"
            )));
        }
    };
    config.ssl_mode(ssl_mode);
    let tls = client_config(&settings, mode, check)?;
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// What the server's certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    CaIfGiven,
    Ca,
    CaAndHost,
}

/// The URL without its TLS settings, and those settings.
fn split_tls(url: &str) -> Result<(String, TlsSettings)> {
    let mut settings = TlsSettings::default();
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), settings));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !settings.take(key, percent_decoded(value)?)? {
                kept.push(pair);
            }
        }
        let rest = match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        };
        return Ok((rest, settings));
    }
    // key=value settings, separated by spaces (values quoted with '...' are kept whole
    // when they are not TLS settings; a TLS setting's value may not be quoted).
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        match word.split_once('=') {
            Some((key, value)) if !value.starts_with('\'') => {
                if !settings.take(key, value.to_owned())? {
                    kept.push(word);
                }
            }
            _ => kept.push(word),
        }
    }
    Ok((kept.join(" "), settings))
}

/// A URL query value, `%XX` escapes decoded.
fn percent_decoded(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| refused(format!("a bad %-escape in {value:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| refused(format!("{value:?} is not UTF-8 once decoded")))
}

/// The rustls configuration `settings` ask for.
fn client_config(settings: &TlsSettings, mode: &str, check: Check) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(format!("TLS: {e}")))?;
    let roots = match settings.root_cert.as_deref() {
        Some("system") => {
            return Err(refused(
                "sslrootcert=system is not supported: give the CA certificates' PEM file".into(),
            ));
        }
        Some(file) => Some(root_store(Path::new(file))?),
        None => None,
    };
    let webpki = match (check, roots) {
        (Check::Ca | Check::CaAndHost, None) => {
            return Err(refused(format!(
                "sslmode={mode} checks the server's certificate: give its CA with \
                 sslrootcert=FILE"
            )));
        }
        (Check::Nothing, _) | (Check::CaIfGiven, None) => None,
        (_, Some(roots)) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| refused(format!("sslrootcert: {e}")))?,
        ),
    };
    let verifier = Arc::new(Verifier {
        webpki,
        host: check == Check::CaAndHost,
        provider,
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (settings.cert.as_deref(), settings.key.as_deref()) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates(Path::new(cert), "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| refused(format!("sslkey {key}: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| refused(format!("sslcert and sslkey: {e}")))
        }
        _ => Err(refused(
            "sslcert and sslkey go together: give both or neither".into(),
        )),
    }
}

/// The certificates of a PEM file; none is an error naming `setting`.
fn certificates(file: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let name = file.display();
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| refused(format!("{setting} {name}: {e}")))?;
    if certs.is_empty() {
        return Err(refused(format!("{setting} {name}: no certificate in it")));
    }
    Ok(certs)
}

fn root_store(file: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(file, "sslrootcert")? {
        roots
            .add(cert)
            .map_err(|e| refused(format!("sslrootcert {}: {e}", file.display())))?;
    }
    Ok(roots)
}

/// Checks a server's certificate as the mode says: with `webpki` (a CA given), that a CA
/// of `sslrootcert` issued it, and with `host` that it names the host; without, not at
/// all (`require` and `prefer` without a CA: the connection is encrypted, the server not
/// authenticated, as libpq does). Handshake signatures are checked either way.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    host: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let checked =
            webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match checked {
            // verify-ca: the chain is what counts, not the name.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_urls_and_the_rest_kept() {
        let (rest, s) = split_tls(
            "postgresql://u:p@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20x.pem",
        )
        .expect("split");
        assert_eq!(rest, "postgresql://u:p@h:5432/db?application_name=x");
        assert_eq!(s.mode.as_deref(), Some("verify-full"));
        assert_eq!(s.root_cert.as_deref(), Some("/tmp/ca x.pem"));

        let (rest, s) = split_tls("postgresql://h/db?sslmode=require").expect("split");
        assert_eq!(
            (rest.as_str(), s.mode.as_deref()),
            ("postgresql://h/db", Some("require"))
        );

        let (rest, s) =
            split_tls("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=d").expect("kv");
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(s.mode.as_deref(), Some("verify-ca"));
        assert_eq!(s.root_cert.as_deref(), Some("/ca.pem"));
    }

    #[test]
    fn bad_tls_settings_are_refused_by_name() {
        let error = |url: &str| target(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error("postgresql://h/db?sslmode=bogus").contains("sslmode \"bogus\""));
        assert!(error("postgresql://h/db?sslmode=verify-full").contains("sslrootcert=FILE"));
        assert!(
            error("postgresql://h/db?sslmode=verify-ca&sslrootcert=/no/such.pem")
                .contains("sslrootcert /no/such.pem")
        );
        assert!(error("postgresql://h/db?sslrootcert=system").contains("system"));
        assert!(error("postgresql://h/db?sslcert=/c.pem").contains("both or neither"));
        assert!(error("postgresql://h/db?sslpassword=x").contains("sslpassword"));
        assert!(error("postgresql://h/db?sslrootcert=%zz").contains("%-escape"));
        assert!(target("postgresql://h/db?sslmode=disable").is_ok());
        assert!(target("postgresql://h/db").is_ok());
    }
}
