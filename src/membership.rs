//! An app's membership of the cluster as its driver keeps it: the link to
//! the manager, and getting back in when that link drops.
//!
//! The manager may die and be restarted while cellapps and baseapps keep
//! simulating (design §1: it is rebuilt from the apps). When the manager
//! link closes, the app carries on and dials the manager again every
//! [`REDIAL`] with an [`AppMsg::Rejoin`] describing what it holds. A
//! restarted manager takes it back under the same id; a manager that
//! declared it dead refuses it, and the app must stop, since its entities
//! are being restored elsewhere.

use crate::link::{self, Joined, LinkError, LinkEvent, LinkSender};
use crate::metrics::LinkMeter;
use crate::proto::app::{AppMsg, Registration};
use crate::AppId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often an app without a manager dials it again.
pub const REDIAL: Duration = Duration::from_millis(250);

/// How long one dial may take. A dial sent while no manager listened
/// waits for its packets to be resent, which QUIC spaces out ever more; a
/// fresh dial reaches a restarted manager sooner. A dial the manager took
/// but the app gave up on is replaced by the next (inside the rejoin
/// window) or refused (outside it, where every `Rejoin` is refused anyway).
pub const DIAL_TIMEOUT: Duration = Duration::from_millis(500);

/// What a dial of the manager came to.
#[derive(Debug)]
pub enum Rejoined {
    /// Back in the cluster.
    Back,
    /// The manager will not take this app back: it must stop.
    Refused(String),
    /// The manager could not be reached; the app dials again later.
    Unreachable,
}

/// The manager link of a running app.
pub struct Membership {
    endpoint: quinn::Endpoint,
    trust: rustls::pki_types::CertificateDer<'static>,
    addr: SocketAddr,
    events: mpsc::UnboundedSender<(AppId, LinkEvent)>,
    meter: LinkMeter,
    link: Option<LinkSender>,
    dialing: bool,
    last_dial: Option<Instant>,
    /// Failed dials since the link dropped (only the first is logged).
    failures: u32,
    /// A link that closed before its dial's outcome was handled.
    closed_early: Option<u64>,
    results: mpsc::UnboundedSender<Result<Joined, LinkError>>,
}

/// Where the outcome of each dial arrives; hand it to
/// [`Membership::dialled`].
pub type Dials = mpsc::UnboundedReceiver<Result<Joined, LinkError>>;

impl Membership {
    /// Joins the cluster: dials the manager at `addr` from `endpoint` with
    /// a [`AppMsg::Register`]. The manager link, and those dialled again
    /// later, report on `events`, keyed [`crate::MANAGER`].
    pub async fn join(
        endpoint: quinn::Endpoint,
        trust: rustls::pki_types::CertificateDer<'static>,
        addr: SocketAddr,
        registration: &Registration,
        events: mpsc::UnboundedSender<(AppId, LinkEvent)>,
        meter: LinkMeter,
    ) -> Result<(Joined, Membership, Dials), LinkError> {
        let register = AppMsg::Register(registration.clone());
        let joined = link::join(&endpoint, &trust, addr, &register, events.clone(), &meter).await?;
        let (results, dials) = mpsc::unbounded_channel();
        let m = Membership {
            endpoint,
            trust,
            addr,
            events,
            meter,
            link: Some(joined.manager.clone()),
            dialing: false,
            last_dial: None,
            failures: 0,
            closed_early: None,
            results,
        };
        Ok((joined, m, dials))
    }

    /// Sends to the manager; false (the message is dropped) while there is
    /// no link.
    pub fn send(&self, msg: &AppMsg) -> bool {
        self.link.as_ref().is_some_and(|l| l.send(msg))
    }

    /// Whether the app has a manager link.
    pub fn is_up(&self) -> bool {
        self.link.is_some()
    }

    /// A manager link closed; true if it was the current one (a late close
    /// of a replaced link changes nothing).
    pub fn closed(&mut self, link: Option<u64>) -> bool {
        if link.is_some() && self.link.as_ref().map(LinkSender::id) == link {
            self.link = None;
            self.failures = 0;
            return true;
        }
        if self.dialing {
            self.closed_early = link;
        }
        false
    }

    /// While there is no link and no dial under way, at most every
    /// [`REDIAL`]: dials the manager with the app's report, which `report`
    /// makes now.
    pub fn redial(&mut self, report: impl FnOnce() -> AppMsg) {
        if self.link.is_some()
            || self.dialing
            || self.last_dial.is_some_and(|t| t.elapsed() < REDIAL)
        {
            return;
        }
        self.dialing = true;
        self.last_dial = Some(Instant::now());
        let msg = report();
        let (endpoint, trust, addr, events, meter, results) = (
            self.endpoint.clone(),
            self.trust.clone(),
            self.addr,
            self.events.clone(),
            self.meter.clone(),
            self.results.clone(),
        );
        tokio::spawn(async move {
            let dial = link::join(&endpoint, &trust, addr, &msg, events, &meter);
            let r = match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                Ok(r) => r,
                Err(_) => Err(LinkError::Handshake {
                    addr,
                    reason: format!("no answer within {} ms", DIAL_TIMEOUT.as_millis()),
                }),
            };
            let _ = results.send(r);
        });
    }

    /// The outcome of a dial, from [`Dials`].
    pub fn dialled(&mut self, result: Result<Joined, LinkError>) -> Rejoined {
        self.dialing = false;
        let early = self.closed_early.take();
        match result {
            Ok(joined) if Some(joined.manager.id()) == early => {
                tracing::warn!("the manager link closed as soon as it opened; dialling again");
                Rejoined::Unreachable
            }
            Ok(joined) => {
                self.link = Some(joined.manager);
                Rejoined::Back
            }
            Err(LinkError::Refused(reason)) => Rejoined::Refused(reason),
            Err(e) => {
                if self.failures == 0 {
                    tracing::warn!(error = %e, "manager unreachable; dialling it again until it is back");
                }
                self.failures += 1;
                Rejoined::Unreachable
            }
        }
    }
}
