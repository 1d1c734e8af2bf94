//! TLS and mutual TLS with the real binaries: `graven serve --tls-cert/--tls-key
//! [--tls-client-ca]`, and the CLI over https with `GRAVEN_CA_FILE` (and a client
//! certificate for mTLS). Certificates are made for the test with rcgen.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Output, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

use crate::util::{ServerProcess, graven_command};

/// A CA, and certificates it issued, as PEM files in `dir`: `ca.pem`; `server.pem` and
/// `server.key` for 127.0.0.1; `client.pem` and `client.key`; and `other-ca.pem`, a CA
/// that issued none of them.
pub(crate) fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");

    let mut server = CertificateParams::new(Vec::<String>::new()).expect("params");
    server.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let server_key = KeyPair::generate().expect("key");
    let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");
    std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");

    let client = CertificateParams::new(vec!["client".to_owned()]).expect("params");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = client.signed_by(&client_key, &issuer).expect("client cert");
    std::fs::write(dir.join("client.pem"), client_cert.pem()).expect("write");
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).expect("write");

    // A CA nobody trusts, for the negative cases.
    let other_key = KeyPair::generate().expect("key");
    let mut other = CertificateParams::new(Vec::<String>::new()).expect("params");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).expect("other CA");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write");
}

fn run(url: &str, env: &[(&str, String)], args: &[&str]) -> Output {
    graven_command()
        .args(["--server", url])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("graven")
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8 path").to_owned()
}

#[test]
fn https_and_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    certificates(d);
    let ca = ("GRAVEN_CA_FILE", path(d, "ca.pem"));

    // TLS: the CLI trusts the CA and talks https.
    let (cert, key) = (path(d, "server.pem"), path(d, "server.key"));
    let server = ServerProcess::start_with(
        &d.join("data"),
        &d.join("server.log"),
        &[("GRAVEN_TLS_CERT", &cert), ("GRAVEN_TLS_KEY", &key)],
        &[("GRAVEN_CA_FILE", &ca.1)],
    );
    assert!(server.url.starts_with("https://"));
    let ok = run(
        &server.url,
        std::slice::from_ref(&ca),
        &["ledger", "create", "shop"],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Without the CA, or trusting another one: no connection.
    let no_ca = run(&server.url, &[], &["ledger", "list"]);
    assert!(!no_ca.status.success());
    assert!(
        String::from_utf8_lossy(&no_ca.stderr).contains("GRAVEN_CA_FILE"),
        "{}",
        String::from_utf8_lossy(&no_ca.stderr)
    );
    let wrong = run(
        &server.url,
        &[("GRAVEN_CA_FILE", path(d, "other-ca.pem"))],
        &["ledger", "list"],
    );
    assert!(
        !wrong.status.success(),
        "a server its CA does not vouch for"
    );
    // Plain http to a TLS port fails too.
    let plain = run(
        &server.url.replace("https", "http"),
        &[],
        &["ledger", "list"],
    );
    assert!(!plain.status.success());
    drop(server);

    // Mutual TLS: only clients with a certificate from the CA get in.
    let client_ca = path(d, "ca.pem");
    let client = [
        ca.clone(),
        ("GRAVEN_CLIENT_CERT", path(d, "client.pem")),
        ("GRAVEN_CLIENT_KEY", path(d, "client.key")),
    ];
    let probe: Vec<(&str, &str)> = client.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with(
        &d.join("data"),
        &d.join("server.log"),
        &[
            ("GRAVEN_TLS_CERT", &cert),
            ("GRAVEN_TLS_KEY", &key),
            ("GRAVEN_TLS_CLIENT_CA", &client_ca),
        ],
        &probe,
    );
    let ok = run(&server.url, &client, &["ledger", "list"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("shop"));
    let anonymous = run(&server.url, &[ca], &["ledger", "list"]);
    assert!(
        !anonymous.status.success(),
        "a client without a certificate got in"
    );
}
