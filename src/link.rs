//! A link between two processes of a cluster: one QUIC bidirectional stream
//! carrying [`AppMsg`] frames both ways. A writer task owns the send half;
//! a reader task decodes frames and hands them, tagged with a key that names
//! the peer, to the role's driver.

use crate::frame;
use crate::metrics::LinkMeter;
use crate::proto::app::AppMsg;
use tokio::sync::mpsc;

/// The largest frame accepted on an app link.
pub const MAX_APP_FRAME: usize = 16 << 20;

/// What a link reports to its driver.
#[derive(Debug)]
pub enum LinkEvent {
    /// The link is up; messages to the peer go through this sender. Comes
    /// before any message from the peer.
    Opened(LinkSender),
    /// A message arrived.
    Msg(AppMsg),
    /// The link is gone, and why. `link` names which link (see
    /// [`LinkSender::id`]); `None` means a dial that never became a link. A
    /// driver ignores the close of a link it has already replaced.
    Closed {
        /// Why.
        reason: String,
        /// Which link, if one was up.
        link: Option<u64>,
    },
}

/// The sending side of a link. Cloning gives another handle to the same link.
#[derive(Clone, Debug)]
pub struct LinkSender {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    id: u64,
    meter: LinkMeter,
}

static NEXT_LINK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl LinkSender {
    /// Queues a message. Returns false if the link is gone.
    pub fn send(&self, msg: &AppMsg) -> bool {
        let bytes = frame::encode(msg);
        let len = bytes.len();
        let queued = self.tx.send(bytes).is_ok();
        if queued {
            self.meter.sent(len);
        }
        queued
    }

    /// This link's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Starts the reader and writer tasks of a link. Messages arrive on `events`
/// tagged with `key`; a final [`LinkEvent::Closed`] follows the last one.
/// Traffic both ways is counted on `meter`.
pub fn spawn<K>(
    key: K,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    events: mpsc::UnboundedSender<(K, LinkEvent)>,
    meter: &LinkMeter,
) -> LinkSender
where
    K: Clone + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let id = NEXT_LINK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sender = LinkSender {
        tx,
        id,
        meter: meter.clone(),
    };
    let meter = meter.clone();
    let _ = events.send((key.clone(), LinkEvent::Opened(sender.clone())));
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Coalesce what is queued into one write.
            let mut buf = first;
            while buf.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if send.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
    });
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let reason = loop {
            match frame::read_msg::<AppMsg>(&mut recv, MAX_APP_FRAME, &mut buf).await {
                Ok(Some(msg)) => {
                    meter.received(buf.len() + frame::HEADER_LEN);
                    if events.send((key.clone(), LinkEvent::Msg(msg))).is_err() {
                        return;
                    }
                }
                Ok(None) => break "peer closed the link".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        let _ = events.send((
            key,
            LinkEvent::Closed {
                reason,
                link: Some(id),
            },
        ));
    });
    sender
}

/// Why joining or dialling failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// QUIC failed.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The peer closed or broke the link during the handshake.
    #[error("link handshake with {addr} failed: {reason}")]
    Handshake {
        /// The peer.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The manager refused the app.
    #[error("the manager refused to register this app: {0}")]
    Refused(String),
}

/// What an app learns when it joins the cluster.
#[derive(Debug)]
pub struct Joined {
    /// Its id.
    pub app: crate::AppId,
    /// Entity ids it may hand out.
    pub ids: crate::IdBlock,
    /// The space.
    pub space: crate::proto::app::SpaceInfo,
    /// The link to the manager; its events arrive keyed [`crate::MANAGER`].
    pub manager: LinkSender,
}

/// Dials `addr`, opens the link's stream and sends `hello` as its first message.
pub async fn dial(
    endpoint: &quinn::Endpoint,
    trust: &rustls::pki_types::CertificateDer<'static>,
    addr: std::net::SocketAddr,
    hello: &AppMsg,
) -> Result<(quinn::SendStream, quinn::RecvStream), LinkError> {
    let cfg = crate::net::client_config(trust, crate::proto::ALPN_APP)?;
    let conn = crate::net::connect(endpoint, cfg, addr).await?;
    let fail = |e: &dyn std::fmt::Display| LinkError::Handshake {
        addr,
        reason: e.to_string(),
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| fail(&e))?;
    send.write_all(&frame::encode(hello))
        .await
        .map_err(|e| fail(&e))?;
    Ok((send, recv))
}

/// Registers with the manager at `addr` and starts the manager link,
/// counting its traffic on `meter`.
pub async fn join(
    endpoint: &quinn::Endpoint,
    trust: &rustls::pki_types::CertificateDer<'static>,
    addr: std::net::SocketAddr,
    register: &AppMsg,
    events: mpsc::UnboundedSender<(crate::AppId, LinkEvent)>,
    meter: &LinkMeter,
) -> Result<Joined, LinkError> {
    let (send, mut recv) = dial(endpoint, trust, addr, register).await?;
    let mut buf = Vec::new();
    let reply = frame::read_msg::<AppMsg>(&mut recv, MAX_APP_FRAME, &mut buf)
        .await
        .map_err(|e| LinkError::Handshake {
            addr,
            reason: e.to_string(),
        })?;
    match reply {
        Some(AppMsg::Registered { app, ids, space }) => Ok(Joined {
            app,
            ids,
            space,
            manager: spawn(crate::MANAGER, send, recv, events, meter),
        }),
        Some(AppMsg::RegisterRefused { reason }) => Err(LinkError::Refused(reason)),
        other => Err(LinkError::Handshake {
            addr,
            reason: format!("expected Registered, got {other:?}"),
        }),
    }
}

/// Accepts the link stream of an incoming app connection and reads its first message.
pub async fn accept_first(
    conn: &quinn::Connection,
) -> Result<(AppMsg, quinn::SendStream, quinn::RecvStream), LinkError> {
    let addr = conn.remote_address();
    let fail = |reason: String| LinkError::Handshake { addr, reason };
    let (send, mut recv) = conn.accept_bi().await.map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    match frame::read_msg::<AppMsg>(&mut recv, MAX_APP_FRAME, &mut buf).await {
        Ok(Some(first)) => Ok((first, send, recv)),
        Ok(None) => Err(fail("closed before its first message".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Accepts the links other apps dial to this one (each opens with
/// [`AppMsg::LinkHello`]), refusing any whose definitions differ, and
/// reports each as `Opened` under the dialler's id.
pub async fn accept(
    endpoint: quinn::Endpoint,
    digest: [u8; 32],
    events: mpsc::UnboundedSender<(crate::AppId, LinkEvent)>,
    meter: LinkMeter,
) {
    while let Some(incoming) = endpoint.accept().await {
        let events = events.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            match accept_first(&conn).await {
                Ok((AppMsg::LinkHello { app, defs_digest }, send, recv)) => {
                    if defs_digest != digest {
                        tracing::warn!(%app, "app with other definitions refused");
                        conn.close(
                            crate::net::close::REFUSED.into(),
                            b"definitions digest mismatch",
                        );
                        return;
                    }
                    spawn(app, send, recv, events, &meter);
                    // Keep the connection alive as long as the link is.
                    let _ = conn.closed().await;
                }
                Ok((other, _, _)) => {
                    tracing::warn!(peer = %conn.remote_address(), ?other, "link without hello refused");
                    conn.close(crate::net::close::PROTOCOL.into(), b"expected LinkHello");
                }
                Err(e) => tracing::warn!(error = %e, "incoming link failed"),
            }
        });
    }
}
