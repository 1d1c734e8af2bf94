//! The client side of the gRPC API, for the CLI, `graven-bench` and anything else that
//! talks to a server: the connection (plain or TLS, from the environment), the bearer
//! token, the message limits, and clients of the four services.

use std::fmt;
use std::path::Path;

use tonic::transport::Channel;

use crate::model::MAX_MESSAGE_BYTES;
use crate::pb;

/// Why a connection could not be made.
#[derive(Debug)]
pub struct ConnectError(String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

/// Reads the file named by environment variable `var`, if it is set.
fn env_file(var: &str) -> Result<Option<Vec<u8>>, ConnectError> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(p) => std::fs::read(&p)
            .map(Some)
            .map_err(|e| ConnectError(format!("{var} {}: {e}", Path::new(&p).display()))),
    }
}

/// Connects to a server address: `http://` plain, `https://` over TLS checked against the
/// PEM CA named by `GRAVEN_CA_FILE`, presenting the client certificate of
/// `GRAVEN_CLIENT_CERT` and `GRAVEN_CLIENT_KEY` if set (mutual TLS).
pub async fn connect_channel(server: &str) -> Result<Channel, ConnectError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| ConnectError(format!("invalid server address {server:?}: {e}")))?
        .tcp_nodelay(true);
    if server.starts_with("https://") {
        let ca = env_file("GRAVEN_CA_FILE")?.ok_or_else(|| {
            ConnectError(
                "an https:// server needs GRAVEN_CA_FILE: the PEM CA its certificate is \
                 issued by"
                    .into(),
            )
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (
            env_file("GRAVEN_CLIENT_CERT")?,
            env_file("GRAVEN_CLIENT_KEY")?,
        ) {
            (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            _ => {
                return Err(ConnectError(
                    "set both GRAVEN_CLIENT_CERT and GRAVEN_CLIENT_KEY, or neither".into(),
                ));
            }
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| ConnectError(format!("TLS settings: {e}")))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| ConnectError(format!("cannot connect to {server}: {e}")))
}

/// The client side: adds `authorization: Bearer <token>` to every request when a token
/// is configured. The token comes from the environment, never from a command-line
/// argument (which other users can see and shells log): `GRAVEN_TOKEN`, or the first line
/// of the file named by `GRAVEN_TOKEN_FILE`.
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<token>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// The token from `GRAVEN_TOKEN` or `GRAVEN_TOKEN_FILE`, if either is set.
    pub fn from_env() -> Result<Bearer, ConnectError> {
        let token = match (
            std::env::var("GRAVEN_TOKEN").ok(),
            std::env::var_os("GRAVEN_TOKEN_FILE"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConnectError(
                    "set GRAVEN_TOKEN or GRAVEN_TOKEN_FILE, not both".into(),
                ));
            }
            (Some(t), None) => t,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConnectError(format!(
                        "GRAVEN_TOKEN_FILE {}: {e}",
                        Path::new(&path).display()
                    ))
                })?;
                text.lines().next().unwrap_or("").trim().to_owned()
            }
            (None, None) => return Ok(Bearer(None)),
        };
        Bearer::new(&token)
    }

    /// A bearer of `token`.
    pub fn new(token: &str) -> Result<Bearer, ConnectError> {
        if token.is_empty() {
            return Err(ConnectError("the token is empty".into()));
        }
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {token}").parse().map_err(|_| {
                ConnectError("the token holds characters a header cannot carry".into())
            })?;
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that carries the bearer token, if one is configured.
pub type Conn = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// Connected clients of the four services, with the server's message limits.
#[derive(Clone)]
pub struct Client {
    /// Ledgers, tables, the online check.
    pub admin: pb::admin_client::AdminClient<Conn>,
    /// Transactions and reads.
    pub docs: pb::documents_client::DocumentsClient<Conn>,
    /// Checkpoints, entries, proofs.
    pub proofs: pb::proofs_client::ProofsClient<Conn>,
    /// The change stream.
    pub stream: pb::stream_client::StreamClient<Conn>,
}

/// A generated client with graven's message limits both ways.
macro_rules! limited {
    ($client:expr) => {
        $client
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    };
}

impl Client {
    /// Connects to `server` (see [`connect_channel`]) with the token of the environment
    /// ([`Bearer::from_env`]).
    pub async fn connect(server: &str) -> Result<Client, ConnectError> {
        let bearer = Bearer::from_env()?;
        let channel = connect_channel(server).await?;
        Ok(Client::from_channel(channel, bearer))
    }

    /// Clients over an existing channel, sending `bearer`'s token.
    pub fn from_channel(channel: Channel, bearer: Bearer) -> Client {
        let channel = tonic::service::interceptor::InterceptedService::new(channel, bearer);
        Client {
            admin: limited!(pb::admin_client::AdminClient::new(channel.clone())),
            docs: limited!(pb::documents_client::DocumentsClient::new(channel.clone())),
            proofs: limited!(pb::proofs_client::ProofsClient::new(channel.clone())),
            stream: limited!(pb::stream_client::StreamClient::new(channel)),
        }
    }
}

/// A gRPC status as one line: its code, then its message.
pub fn status_line(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
