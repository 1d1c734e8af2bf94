//! `graven serve`: the engine behind tonic, with gRPC health and server reflection (v1
//! and v1alpha), until Ctrl-C or SIGTERM. On shutdown it stops taking requests, lets the
//! ones in flight finish, then stops each sequencer after the work already queued.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tonic::transport::server::Router;
use tonic::transport::{Server, ServerTlsConfig};

use crate::auth::Auth;
use crate::engine::{Config, Engine};
use crate::model::MAX_MESSAGE_BYTES;
use crate::pb;
use crate::service::{GravenService, fix_tonic_codes};
use crate::storage::{Location, Store};

/// The PEM files of `graven serve --tls-cert/--tls-key/--tls-client-ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Mutual TLS: accept only clients with a certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into tonic's TLS settings.
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        use tonic::transport::{Certificate, Identity};
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(tls)
    }
}

/// The HTTP response of a gRPC call.
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

/// The router [`router`] builds: graven's services behind [`fix_tonic_codes`].
pub type GravenRouter = Router<
    tower::layer::util::Stack<
        tower::util::MapResponseLayer<fn(HttpResponse) -> HttpResponse>,
        tower::layer::util::Identity,
    >,
>;

/// A generated server with graven's message limits both ways.
macro_rules! limited {
    ($server:expr) => {
        $server
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    };
}

/// The gRPC router: the graven services, health and reflection. With `auth`, the graven
/// services admit only its principals, by role (health and reflection stay open); with
/// `tls`, it serves TLS.
pub async fn router(
    engine: Arc<Engine>,
    auth: Option<Arc<Auth>>,
    tls: Option<ServerTlsConfig>,
) -> anyhow::Result<GravenRouter> {
    let watched = engine.clone();
    let service = match auth {
        Some(auth) => GravenService::with_auth(engine, auth),
        None => GravenService::new(engine),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::admin_server::AdminServer<GravenService>>()
        .await;
    health
        .set_serving::<pb::documents_server::DocumentsServer<GravenService>>()
        .await;
    health
        .set_serving::<pb::proofs_server::ProofsServer<GravenService>>()
        .await;
    health
        .set_serving::<pb::stream_server::StreamServer<GravenService>>()
        .await;
    if *watched.storage() != Location::Embedded {
        tokio::spawn(watch_storage(watched, health.clone()));
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // v1, and v1alpha for the clients that speak only it (grpcio-reflection, older grpcurl).
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the reflection service")?;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("TLS settings")?;
    }
    Ok(builder
        .layer(tower::util::MapResponseLayer::new(
            fix_tonic_codes::<tonic::body::Body> as fn(HttpResponse) -> HttpResponse,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(limited!(pb::admin_server::AdminServer::new(
            service.clone()
        )))
        .add_service(limited!(pb::documents_server::DocumentsServer::new(
            service.clone()
        )))
        .add_service(limited!(pb::proofs_server::ProofsServer::new(
            service.clone()
        )))
        .add_service(limited!(pb::stream_server::StreamServer::new(service))))
}

/// How often the health of a storage across a network is looked at.
const STORAGE_HEALTH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps gRPC health true to the storage: graven's services are NOT_SERVING while the
/// database does not answer, SERVING again once it does. Ends with the engine.
async fn watch_storage(engine: Arc<Engine>, health: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut serving = true;
    while !engine.is_closed() {
        tokio::time::sleep(STORAGE_HEALTH_EVERY).await;
        let location = engine.storage().clone();
        let ok = tokio::task::spawn_blocking(move || Store::reachable(&location))
            .await
            .is_ok_and(|r| r.is_ok());
        if ok == serving {
            continue;
        }
        serving = ok;
        let status = if ok {
            tracing::info!("the storage answers again: serving");
            ServingStatus::Serving
        } else {
            tracing::warn!("the storage does not answer: not serving");
            ServingStatus::NotServing
        };
        for name in [
            <pb::admin_server::AdminServer<GravenService> as tonic::server::NamedService>::NAME,
            <pb::documents_server::DocumentsServer<GravenService> as tonic::server::NamedService>::NAME,
            <pb::proofs_server::ProofsServer<GravenService> as tonic::server::NamedService>::NAME,
            <pb::stream_server::StreamServer<GravenService> as tonic::server::NamedService>::NAME,
            "",
        ] {
            health.set_service_status(name, status).await;
        }
    }
}

/// Opens the engine on a blocking thread (opening fsyncs and reads files).
pub async fn open_engine(config: Config) -> anyhow::Result<Arc<Engine>> {
    let dir = config.data_dir.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .context("opening the data folder")?
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening data folder {}", dir.display()))?;
    Ok(Arc::new(engine))
}

/// Serves on `addr` until `shutdown` completes; with `auth`, to its principals only.
pub async fn serve(
    config: Config,
    addr: SocketAddr,
    auth: Option<Arc<Auth>>,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let engine = open_engine(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "graven listening");
    // Without TCP_NODELAY, small replies wait on delayed ACKs (~40 ms a commit).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // On the signal, close the engine first: queued transactions finish and are answered,
    // change streams end with UNAVAILABLE, new requests are refused; then tonic waits for
    // the requests in flight, which can now all complete.
    let closing = engine.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    };
    match &auth {
        Some(a) => tracing::info!(principals = ?a, "authentication on"),
        None => tracing::warn!(
            "authentication off: every request is allowed and recorded as \"anonymous\" \
             (graven serve --auth FILE turns it on)"
        ),
    }
    if tls.is_none() {
        tracing::info!("TLS off (graven serve --tls-cert FILE --tls-key FILE turns it on)");
    }
    let result = router(engine, auth, tls)
        .await?
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("serving");
    tracing::info!("graven stopped");
    result
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
