//! The QUIC side of app links: what a driver uses to carry out the
//! [`Transmit`]s of its core's link table and manager link, and to report
//! back what happened to each connection as [`ConnEvent`]s. It decides
//! nothing: every rule about who dials whom, when, and what to resend is
//! in [`super::Links`] and [`crate::membership::Membership`].
//!
//! Each connection carries one bidirectional stream of [`AppMsg`] frames.
//! A writer task owns its send half (frames queued in order, coalesced into
//! writes of up to about 1 MiB); a reader task decodes frames, bounded by
//! [`MAX_APP_FRAME`], and reports them. A connection another process opens
//! passes the port's [`Gate`] and must send its first frame within the
//! gate's wait.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::{ConnEvent, ConnId, Transmit, LOSSY_QUEUE, MAX_APP_FRAME};
use crate::frame;
use crate::metrics::LinkMeter;
use crate::net::ca::ClusterIdentity;
use crate::net::gate::{self, Gate};
use crate::net::NetError;
use crate::proto::app::AppMsg;
use crate::proto::app::CertId;

/// How long a closing connection waits for what it sent to be read before
/// it closes.
const CLOSE_LINGER: Duration = Duration::from_millis(200);

enum Cmd {
    Frame(Bytes),
    Close { code: u32, reason: String },
}

enum Internal {
    Event(ConnId, ConnEvent),
    Accepted(ConnId, Writer, AppMsg, CertId),
}

/// The queue of one connection's writer task, and the bytes in it.
struct Writer {
    tx: mpsc::UnboundedSender<Cmd>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn new() -> (Writer, mpsc::UnboundedReceiver<Cmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (Writer { tx, queued }, rx)
    }

    fn frame(&self, frame: Bytes) {
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        let _ = self.tx.send(Cmd::Frame(frame));
    }

    /// Queues a frame sent outside the session, unless the connection is
    /// already [`LOSSY_QUEUE`] bytes behind.
    fn lossy(&self, frame: Bytes) {
        if self.queued.load(Ordering::Relaxed) < LOSSY_QUEUE {
            self.frame(frame);
        }
    }
}

/// The connections of one endpoint, named by [`ConnId`].
pub struct Transport {
    endpoint: quinn::Endpoint,
    dial: quinn::ClientConfig,
    writers: HashMap<ConnId, Writer>,
    tx: mpsc::UnboundedSender<Internal>,
    rx: mpsc::UnboundedReceiver<Internal>,
    meter: LinkMeter,
    accepted: Arc<AtomicU64>,
}

impl Transport {
    /// The connections of `endpoint` (an internal port, made with
    /// [`crate::net::internal_server_config`]), dialling other processes
    /// as `identity`, counting traffic on `meter`.
    pub fn new(
        endpoint: quinn::Endpoint,
        identity: &ClusterIdentity,
        meter: LinkMeter,
    ) -> Result<Transport, NetError> {
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Transport {
            endpoint,
            dial: crate::net::internal_client_config(identity)?,
            writers: HashMap::new(),
            tx,
            rx,
            meter,
            accepted: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Starts taking the connections other processes open to this
    /// endpoint, through `gate`; each is reported as
    /// [`ConnEvent::Accepted`] with its first message.
    pub fn listen(&self, gate: Gate) {
        let (endpoint, tx, meter, accepted) = (
            self.endpoint.clone(),
            self.tx.clone(),
            self.meter.clone(),
            self.accepted.clone(),
        );
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let peer = incoming.remote_address();
                let Some((connecting, pass)) = gate::admit(&gate, incoming) else {
                    continue;
                };
                let (tx, meter, accepted) = (tx.clone(), meter.clone(), accepted.clone());
                let wait = gate.config().first_wait;
                tokio::spawn(async move {
                    let first = async {
                        let conn = connecting.await.map_err(|e| e.to_string())?;
                        // The handshake asked for a certificate from the
                        // cluster CA; without one it would have failed.
                        let cert = crate::net::peer_cert(&conn)
                            .ok_or_else(|| "no certificate".to_string())?;
                        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
                        let mut buf = Vec::new();
                        match frame::read_msg::<AppMsg>(&mut recv, MAX_APP_FRAME, &mut buf).await {
                            Ok(Some(first)) => {
                                meter.received(buf.len() + frame::HEADER_LEN);
                                Ok((conn, send, recv, first, cert))
                            }
                            Ok(None) => Err("closed before its first message".to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    };
                    let (conn, send, recv, first, cert) =
                        match tokio::time::timeout(wait, first).await {
                            Ok(Ok(c)) => c,
                            Ok(Err(reason)) => {
                                tracing::warn!(%peer, %reason, "incoming app link failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%peer, "incoming app link sent nothing in time");
                                return;
                            }
                        };
                    drop(pass);
                    let id = ConnId::accepted(accepted.fetch_add(1, Ordering::Relaxed) + 1);
                    let (writer, wrx) = Writer::new();
                    let queued = writer.queued.clone();
                    if tx
                        .send(Internal::Accepted(id, writer, first, cert))
                        .is_err()
                    {
                        return;
                    }
                    run(id, conn, send, recv, (wrx, queued), tx, meter).await;
                });
            }
        });
    }

    /// Carries out one thing a core asked.
    pub fn apply(&mut self, t: Transmit) {
        match t {
            Transmit::Send { conn, frame } => {
                if let Some(w) = self.writers.get(&conn) {
                    w.frame(frame);
                }
            }
            Transmit::SendLossy { conn, frame } => {
                if let Some(w) = self.writers.get(&conn) {
                    w.lossy(frame);
                }
            }
            Transmit::Close { conn, code, reason } => {
                if let Some(w) = self.writers.remove(&conn) {
                    let _ = w.tx.send(Cmd::Close { code, reason });
                }
            }
            Transmit::Dial { conn, addr, hello } => {
                let (writer, wrx) = Writer::new();
                let queued = writer.queued.clone();
                self.writers.insert(conn, writer);
                let (endpoint, cfg, tx, meter) = (
                    self.endpoint.clone(),
                    self.dial.clone(),
                    self.tx.clone(),
                    self.meter.clone(),
                );
                tokio::spawn(async move {
                    let dial = async {
                        let c = crate::net::connect_internal(&endpoint, cfg, addr)
                            .await
                            .map_err(|e| e.to_string())?;
                        let cert = crate::net::peer_cert(&c)
                            .ok_or_else(|| "the peer presented no certificate".to_string())?;
                        let (mut send, recv) = c.open_bi().await.map_err(|e| e.to_string())?;
                        send.write_all(&hello).await.map_err(|e| e.to_string())?;
                        meter.sent(hello.len());
                        Ok::<_, String>((c, send, recv, cert))
                    };
                    match dial.await {
                        Ok((c, send, recv, cert)) => {
                            let _ = tx.send(Internal::Event(conn, ConnEvent::Opened(cert)));
                            run(conn, c, send, recv, (wrx, queued), tx, meter).await;
                        }
                        Err(reason) => {
                            let _ = tx.send(Internal::Event(conn, ConnEvent::Closed(reason)));
                        }
                    }
                });
            }
        }
    }

    /// The next thing that happened to a connection. Cancel-safe.
    pub async fn next(&mut self) -> (ConnId, ConnEvent) {
        loop {
            // The transport holds a sender itself, so this never ends.
            let Some(internal) = self.rx.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match internal {
                Internal::Event(conn, ev) => {
                    if let ConnEvent::Closed(_) = ev {
                        self.writers.remove(&conn);
                    }
                    return (conn, ev);
                }
                Internal::Accepted(conn, writer, first, cert) => {
                    self.writers.insert(conn, writer);
                    return (conn, ConnEvent::Accepted(first, cert));
                }
            }
        }
    }

    /// Closes every connection once what was queued on it has gone out
    /// (waiting at most [`CLOSE_LINGER`]), then the endpoint.
    pub async fn shutdown(&mut self, code: u32, reason: &str) {
        for (_, w) in self.writers.drain() {
            let _ = w.tx.send(Cmd::Close {
                code,
                reason: reason.to_string(),
            });
        }
        tokio::time::sleep(CLOSE_LINGER).await;
        self.endpoint.close(code.into(), reason.as_bytes());
    }
}

/// Runs a connection's writer and reader until it ends, then reports it
/// closed (unless this side closed it).
async fn run(
    id: ConnId,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    (mut cmds, queued): (mpsc::UnboundedReceiver<Cmd>, Arc<AtomicUsize>),
    events: mpsc::UnboundedSender<Internal>,
    meter: LinkMeter,
) {
    let writer_conn = conn.clone();
    let writer_meter = meter.clone();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(cmd) = cmds.recv().await {
            let mut close = None;
            let mut frames = 0;
            buf.clear();
            match cmd {
                Cmd::Frame(f) => {
                    buf.extend_from_slice(&f);
                    frames += 1;
                }
                Cmd::Close { code, reason } => close = Some((code, reason)),
            }
            // Coalesce what is queued into one write.
            while close.is_none() && buf.len() < 1 << 20 {
                match cmds.try_recv() {
                    Ok(Cmd::Frame(f)) => {
                        buf.extend_from_slice(&f);
                        frames += 1;
                    }
                    Ok(Cmd::Close { code, reason }) => close = Some((code, reason)),
                    Err(_) => break,
                }
            }
            if !buf.is_empty() {
                if send.write_all(&buf).await.is_err() {
                    return;
                }
                queued.fetch_sub(buf.len(), Ordering::Relaxed);
                writer_meter.msgs_out.add(frames);
                writer_meter.bytes_out.add(buf.len() as u64);
            }
            if let Some((code, reason)) = close {
                let _ = send.finish();
                let _ = tokio::time::timeout(CLOSE_LINGER, send.stopped()).await;
                writer_conn.close(code.into(), reason.as_bytes());
                return;
            }
        }
        // Every handle to the writer is gone: the core forgot the
        // connection without closing it.
        let _ = send.finish();
    });
    // A frame that breaks the rules closes the connection.
    let broken = |e: frame::FrameError| {
        if !matches!(e, frame::FrameError::Read(_)) {
            conn.close(
                crate::proto::close::PROTOCOL.into(),
                e.to_string().as_bytes(),
            );
        }
        e.to_string()
    };
    let mut reader = frame::Reader::new(MAX_APP_FRAME);
    let reason = 'read: loop {
        let batch = match reader.next_batch(&mut recv).await {
            Ok(Some(batch)) => batch,
            Ok(None) => break "the peer closed the link".to_string(),
            Err(e) => break broken(e),
        };
        for body in frame::bodies(batch) {
            let msg = match frame::decode::<AppMsg>(body) {
                Ok(msg) => msg,
                Err(e) => break 'read broken(e),
            };
            meter.received(body.len() + frame::HEADER_LEN);
            if events
                .send(Internal::Event(id, ConnEvent::Msg(msg)))
                .is_err()
            {
                writer.abort();
                return;
            }
        }
    };
    let _ = events.send(Internal::Event(id, ConnEvent::Closed(reason)));
}
