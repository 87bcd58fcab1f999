//! QUIC plumbing shared by every role and the client: certificates, endpoint
//! and transport settings, and connecting with a given ALPN.
//!
//! Public ports (clients, logins) present a self-signed certificate
//! generated into the data directory on first start and reused after;
//! clients trust that certificate (pinned). Internal ports speak mutual TLS
//! with certificates from the cluster CA ([`ca`]); who may connect before
//! saying anything is decided at each port's [`gate`]. Keep-alive is on and the idle timeout is set on purpose, so a
//! dead peer is noticed within [`client_idle_timeout`] (clients) or
//! [`link_idle_timeout`] (processes of the cluster): [`IDLE_TIMEOUT`] and
//! [`LINK_IDLE_TIMEOUT`] unless the process was started with others.

pub mod advertise;
pub mod ca;
pub mod gate;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The name servers present and clients expect.
pub const SERVER_NAME: &str = "localhost";
/// By default, a client's connection with no traffic for this long is
/// closed. Short, so a client whose baseapp died notices within it and
/// resumes its session elsewhere; a client whose network only hiccuped
/// resumes too (its entity waits for it), so shortness costs little.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// By default, a link between two processes of a cluster (ALPN
/// [`crate::proto::ALPN_APP`]) with no traffic for this long is closed: a
/// killed process is noticed this soon, and its entities restored. Cluster
/// processes share a data centre network, so silence this long means the
/// process is gone or hung.
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_millis(750);
/// Keep-alives sent per idle timeout: several, so a lost packet or two
/// never closes a connection.
const KEEP_ALIVES: u32 = 5;

/// This process's link idle timeout in milliseconds.
static LINK_IDLE_MS: AtomicU64 = AtomicU64::new(LINK_IDLE_TIMEOUT.as_millis() as u64);
/// This process's client (and login) connection idle timeout in milliseconds.
static CLIENT_IDLE_MS: AtomicU64 = AtomicU64::new(IDLE_TIMEOUT.as_millis() as u64);

/// Sets the idle timeout of cluster links this process opens or accepts
/// from now on. A link closes after the shorter of its two ends' timeouts.
/// Raise it where processes share too few cores to answer within 750 ms —
/// a whole cluster in one test process, say — at the cost of noticing a
/// dead process that much later. Clamped to 100 ms – 60 s.
pub fn set_link_idle_timeout(idle: Duration) {
    let ms = idle.as_millis().clamp(100, 60_000) as u64;
    LINK_IDLE_MS.store(ms, Ordering::Relaxed);
}

/// The idle timeout of this process's cluster links.
pub fn link_idle_timeout() -> Duration {
    Duration::from_millis(LINK_IDLE_MS.load(Ordering::Relaxed))
}

/// Sets the idle timeout of client and login connections this process opens
/// or accepts from now on (the shorter of the two ends' wins). Clamped to
/// 100 ms – 60 s.
pub fn set_client_idle_timeout(idle: Duration) {
    let ms = idle.as_millis().clamp(100, 60_000) as u64;
    CLIENT_IDLE_MS.store(ms, Ordering::Relaxed);
}

/// The idle timeout of this process's client and login connections.
pub fn client_idle_timeout() -> Duration {
    Duration::from_millis(CLIENT_IDLE_MS.load(Ordering::Relaxed))
}
/// Bytes of datagrams a connection queues each way before dropping the oldest.
pub const DATAGRAM_BUFFER: usize = 16 * 1024;

/// Errors setting up QUIC.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Reading or writing certificate files failed.
    #[error("certificate file {path}: {source}")]
    CertFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file is not a key.
    #[error("key file {path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A PEM certificate or key file that cannot be used.
    #[error("TLS file {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A process of the cluster has no certificate from the cluster CA.
    #[error("no cluster certificate in {}: run `tessera ca init` there (or `tessera ca issue` into it from the CA's directory)", dir.join("tls").display())]
    NoClusterIdentity {
        /// The data directory.
        dir: PathBuf,
    },
    /// Generating a certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// QUIC refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    QuicTls(String),
    /// The address to advertise is one nobody could reach.
    #[error("cannot advertise this address: {0}")]
    Unroutable(#[from] advertise::Unroutable),
    /// Binding a UDP socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server did not answer the handshake within the idle timeout.
    #[error("cannot connect to {addr}: timed out")]
    TimedOut {
        /// The address.
        addr: SocketAddr,
    },
    /// Connecting failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// A public port's certificate chain and its key.
pub struct Identity {
    /// The certificate, then any intermediates that lead to the root
    /// clients trust.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Which certificate a process's public ports (login, clients) present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PublicCert {
    /// The self-signed one in the data directory, made on first use
    /// ([`load_or_create_identity`]): clients trust that very certificate.
    #[default]
    Generated,
    /// A certificate chain and key in PEM files, as a certificate
    /// authority issues them ([`load_pem_identity`]).
    Pem {
        /// The chain, the certificate first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

impl PublicCert {
    /// Loads (or, for [`PublicCert::Generated`], makes) the identity.
    pub fn load(&self, data_dir: &Path) -> Result<Identity, NetError> {
        match self {
            PublicCert::Generated => load_or_create_identity(data_dir),
            PublicCert::Pem { cert, key } => load_pem_identity(cert, key),
        }
    }
}

/// Loads a public port's identity from PEM files: a certificate chain (the
/// certificate first) and its private key (PKCS#8, PKCS#1 or SEC1), as a
/// certificate authority issues them.
pub fn load_pem_identity(cert: &Path, key_file: &Path) -> Result<Identity, NetError> {
    use rustls::pki_types::pem::PemObject;
    let bad = |path: &Path, reason: String| NetError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?)
        .map_err(|e| bad(key_file, format!("not a PEM private key: {e}")))?;
    let id = Identity { chain, key };
    // A key that is not the certificate's is refused now, not at the
    // first handshake.
    server_config(&id, &[crate::proto::ALPN_CLIENT]).map_err(|e| {
        bad(
            key_file,
            format!("does not fit the certificate {}: {e}", cert.display()),
        )
    })?;
    Ok(id)
}

/// Where the certificate lives in a data directory.
pub fn cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("cert.der")
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|source| NetError::CertFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file whole or not at all; a `secret` one is readable by its
/// owner alone.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), NetError> {
    write_file_atomic(path, bytes, secret).map_err(|source| NetError::CertFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file whole or not at all (a temporary beside it, then a
/// rename), creating its directory; a `secret` one is readable by its owner
/// alone (certificate keys, the admin token).
pub fn write_file_atomic(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)?;
    file.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

/// Loads the server identity from `data_dir/tls/`, generating a self-signed
/// one on first use.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Identity, NetError> {
    let cert_file = cert_path(data_dir);
    let key_file = data_dir.join("tls").join("key.der");
    if cert_file.exists() && key_file.exists() {
        return Ok(Identity {
            chain: vec![CertificateDer::from(read(&cert_file)?)],
            key: PrivatePkcs8KeyDer::from(read(&key_file)?).into(),
        });
    }
    let generated =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string(), "127.0.0.1".into()])?;
    let key = generated.signing_key.serialize_der();
    let cert = generated.cert.der().to_vec();
    write_atomic(&key_file, &key, true)?;
    write_atomic(&cert_file, &cert, false)?;
    Ok(Identity {
        chain: vec![CertificateDer::from(cert)],
        key: PrivatePkcs8KeyDer::from(key).into(),
    })
}

/// Loads the certificate a client should trust: the public ports' own
/// (DER, as `tessera up` makes it), or the root of their chain (DER, or the
/// first certificate of a PEM file).
pub fn load_trusted_cert(path: &Path) -> Result<CertificateDer<'static>, NetError> {
    use rustls::pki_types::pem::PemObject;
    let bytes = read(path)?;
    if bytes.starts_with(b"-----BEGIN") {
        return CertificateDer::from_pem_slice(&bytes).map_err(|e| NetError::Pem {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate: {e}"),
        });
    }
    Ok(CertificateDer::from(bytes))
}

// rustls deprecated its *ring* provider for lacking post-quantum key
// exchange; the one that has it (aws-lc-rs) needs a C toolchain and a
// different quinn feature, so *ring* stays for now.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings of a connection speaking `alpn`: client and login
/// connections notice a dead peer within [`client_idle_timeout`], cluster
/// links within [`link_idle_timeout`].
pub fn transport(alpn: &[u8]) -> Arc<quinn::TransportConfig> {
    let idle = if alpn == crate::proto::ALPN_APP {
        link_idle_timeout()
    } else {
        client_idle_timeout()
    };
    let keep_alive = idle / KEEP_ALIVES;
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(keep_alive));
    // Both timeouts are small enough to always convert.
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(idle));
    }
    // Datagrams carry positions, where the latest wins: a deep queue would
    // only deliver stale ones late. When the path is slower than the witness
    // budget, quinn drops the oldest datagrams beyond these bounds (about two
    // ticks of a full per-client budget) instead of queueing seconds of them.
    t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_BUFFER);
    // Fewer acknowledgements: a server sends each client a datagram or more
    // every tick, and one ACK packet per two of them is most of the packets
    // on the wire. Both ends are quinn, which speaks the ACK-frequency extension.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(8u32.into())
        .max_ack_delay(Some(Duration::from_millis(50)));
    t.ack_frequency_config(Some(acks));
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

/// A server configuration that accepts the given ALPNs.
pub fn server_config(id: &Identity, alpns: &[&[u8]]) -> Result<quinn::ServerConfig, NetError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport(alpns.first().copied().unwrap_or_default()));
    Ok(cfg)
}

/// A client configuration that trusts `cert` and speaks `alpn`.
pub fn client_config(
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(alpn));
    Ok(cfg)
}

fn cluster_roots(id: &ca::ClusterIdentity) -> Result<Arc<rustls::RootCertStore>, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(id.ca.clone())?;
    Ok(Arc::new(roots))
}

/// The server configuration of an internal port: it presents this
/// process's cluster certificate and completes a handshake only with a
/// peer that presents one signed by the same CA.
pub fn internal_server_config(id: &ca::ClusterIdentity) -> Result<quinn::ServerConfig, NetError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(cluster_roots(id)?, provider())
            .build()
            .map_err(|e| NetError::QuicTls(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![crate::proto::ALPN_APP.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport(crate::proto::ALPN_APP));
    Ok(cfg)
}

/// The client configuration for dialling another process of the cluster:
/// it expects a certificate from the cluster CA and presents this
/// process's own.
pub fn internal_client_config(id: &ca::ClusterIdentity) -> Result<quinn::ClientConfig, NetError> {
    let roots = Arc::unwrap_or_clone(cluster_roots(id)?);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![crate::proto::ALPN_APP.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(crate::proto::ALPN_APP));
    Ok(cfg)
}

/// The certificate a connection's peer presented, as [`ca::fingerprint`]
/// names it; `None` if it presented none.
pub fn peer_cert(conn: &quinn::Connection) -> Option<ca::CertId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(ca::fingerprint)
}

/// The UDP buffer size each endpoint asks the kernel for, each way. One
/// socket carries every client of a baseapp (or every bot of a bots process):
/// at a thousand clients the default (about 200 KiB) holds only a few
/// milliseconds of datagrams, so a process that is descheduled for longer
/// drops them, and the losses stall reliable streams behind retransmissions.
/// The kernel caps the request at `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// Binds an endpoint; with a server configuration it also accepts connections.
/// Must be called inside a tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, NetError> {
    let bind = |source| NetError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(bind)?;
    // A smaller buffer than asked for still works: best effort.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into()).map_err(bind)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )
    .map_err(bind)
}

/// Connects to `addr` with the given client configuration, expecting the
/// server certificate of a public port ([`SERVER_NAME`]).
pub async fn connect(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, NetError> {
    connect_named(endpoint, cfg, addr, SERVER_NAME).await
}

/// Connects to `addr`, expecting a server certificate for `name`.
pub async fn connect_as(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, NetError> {
    connect_named(endpoint, cfg, addr, name).await
}

/// Connects to another process's internal port, expecting a cluster
/// certificate ([`ca::CLUSTER_NAME`]).
pub async fn connect_internal(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, NetError> {
    connect_named(endpoint, cfg, addr, ca::CLUSTER_NAME).await
}

async fn connect_named(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, NetError> {
    let connecting = endpoint
        .connect_with(cfg, addr, name)
        .map_err(|e| NetError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    connecting.await.map_err(|e| match e {
        quinn::ConnectionError::TimedOut => NetError::TimedOut { addr },
        e => NetError::Connect {
            addr,
            reason: e.to_string(),
        },
    })
}

pub use crate::proto::close;
