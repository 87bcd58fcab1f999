//! A process that speaks the app protocol by hand, for the hostile tests:
//! it dials internal ports with whatever certificate it is given (or
//! none), claims whatever it likes, and sends and reads raw [`AppMsg`]
//! frames. Nothing here trusts or checks anything; the servers must.

use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::time::Duration;
use tessera::frame;
use tessera::link::MAX_APP_FRAME;
use tessera::net::ca::ClusterIdentity;
use tessera::proto::app::AppMsg;

/// An endpoint that dials the cluster's internal ports.
pub struct Intruder {
    endpoint: quinn::Endpoint,
    cfg: quinn::ClientConfig,
}

/// How a connection ended, as its far end closed it.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed it on purpose: the close code and reason.
    Closed(u32, String),
    /// TLS or QUIC failed it (a refused handshake ends here).
    Failed(String),
    /// It did not end in time.
    Open,
}

impl Intruder {
    /// An intruder presenting `identity` (a certificate from some CA), or
    /// none; it trusts servers whose certificate `ca` signed.
    pub fn new(identity: Option<&ClusterIdentity>, ca: &CertificateDer<'static>) -> Intruder {
        let endpoint = tessera::net::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None)
            .expect("intruder endpoint");
        let cfg = match identity {
            Some(id) => {
                let mut id = id.clone();
                // Trust the cluster's servers, whoever signed our own.
                id.ca = ca.clone();
                tessera::net::internal_client_config(&id).expect("client config")
            }
            None => tessera::net::client_config(ca, tessera::proto::ALPN_APP).expect("config"),
        };
        Intruder { endpoint, cfg }
    }

    /// Dials `addr` and opens the link's stream; the handshake may still
    /// be refused after this returns (the server checks the client's
    /// certificate last).
    pub async fn dial(&self, addr: SocketAddr) -> Result<Peer, String> {
        let conn = tessera::net::connect_internal(&self.endpoint, self.cfg.clone(), addr)
            .await
            .map_err(|e| e.to_string())?;
        let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        Ok(Peer {
            conn,
            send,
            recv,
            buf: Vec::new(),
        })
    }

    /// The local address connections come from.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().expect("bound")
    }
}

/// One connection an intruder opened.
pub struct Peer {
    /// The connection.
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

impl Peer {
    /// Sends a message; false if the connection is gone.
    pub async fn send(&mut self, msg: &AppMsg) -> bool {
        self.send_raw(&frame::encode(msg)).await
    }

    /// Sends raw bytes; false if the connection is gone.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.send.write_all(bytes).await.is_ok()
    }

    /// The next message, if one comes within `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Option<AppMsg> {
        let read = frame::read_msg::<AppMsg>(&mut self.recv, MAX_APP_FRAME, &mut self.buf);
        match tokio::time::timeout(wait, read).await {
            Ok(Ok(msg)) => msg,
            _ => None,
        }
    }

    /// Reads until a message `pick` takes comes, within `wait`.
    pub async fn recv_until<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(AppMsg) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Some(t) = pick(self.recv(left).await?) {
                return Some(t);
            }
        }
    }

    /// How the connection ends, waiting at most `wait`.
    pub async fn ended(&self, wait: Duration) -> Ended {
        match tokio::time::timeout(wait, self.conn.closed()).await {
            Err(_) => Ended::Open,
            Ok(quinn::ConnectionError::ApplicationClosed(c)) => Ended::Closed(
                u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            Ok(e) => Ended::Failed(e.to_string()),
        }
    }
}
