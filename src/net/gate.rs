//! Admission of connections that have not yet said who they are. Before a
//! peer's first message a connection costs memory, a task and a TLS
//! handshake, and proves nothing, so each port keeps a [`Gate`]: a cap on
//! connections still waiting for their first message, address validation
//! (QUIC Retry) once more than a few are waiting, and optionally a cap on
//! the connections one address may hold at once and on how fast it may
//! open them (client ports: one host must not take a baseapp's every slot,
//! nor its CPU with handshakes). A connection refused here costs the
//! refuser a packet, before any cryptography.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of one port.
#[derive(Clone, Copy, Debug)]
pub struct GateConfig {
    /// Connections that may wait for their first message at once; more are
    /// refused.
    pub max_waiting: usize,
    /// Beyond this many waiting, a connection from an address QUIC has not
    /// validated is sent a Retry first (it must prove it receives at the
    /// address it claims before the server keeps any state for it).
    pub retry_above: usize,
    /// Connections one IP address may hold at once, if capped.
    pub per_addr: Option<usize>,
    /// New connections one IP address may open: a burst, then so many a
    /// second; if limited.
    pub rate_per_addr: Option<(f64, f64)>,
    /// How long a connection may take to send its first message.
    pub first_wait: Duration,
}

impl GateConfig {
    /// The limits of a port other processes of the cluster dial: they are
    /// few and authenticated by their certificate, so no per-address cap.
    pub fn internal() -> GateConfig {
        GateConfig {
            max_waiting: 64,
            retry_above: 16,
            per_addr: None,
            rate_per_addr: None,
            first_wait: Duration::from_secs(5),
        }
    }

    /// The limits of a port clients connect to, with at most `per_addr`
    /// connections from one address, opened at most `rate` a second after
    /// a burst of twice that (unlimited if `rate` is zero).
    pub fn clients(per_addr: usize, rate: f64) -> GateConfig {
        GateConfig {
            max_waiting: 1024,
            retry_above: 128,
            per_addr: Some(per_addr),
            rate_per_addr: (rate > 0.0).then_some((2.0 * rate, rate)),
            first_wait: Duration::from_secs(5),
        }
    }
}

/// The default rate of new connections from one address to a client or
/// login port, a second (after a burst of twice as many).
pub const DEFAULT_RATE_PER_ADDR: f64 = 10.0;

/// The default cap on connections from one address to a client port.
pub const DEFAULT_PER_ADDR: usize = 256;

/// What a port does with a new connection.
#[derive(Debug)]
pub enum Admit {
    /// Take it; the pass keeps its place until dropped.
    Accept(Pass),
    /// Ask it to prove its address first.
    Retry,
    /// Turn it away, and why.
    Refuse(&'static str),
}

#[derive(Debug, Default)]
struct Counts {
    waiting: usize,
    by_addr: HashMap<IpAddr, usize>,
    /// Each address's bucket of new connections: tokens, and when counted.
    opened: HashMap<IpAddr, (f64, Instant)>,
}

/// Addresses whose connection buckets a gate keeps before it forgets the
/// full ones.
const MAX_BUCKETS: usize = 100_000;

/// One port's admission state; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Gate {
    cfg: GateConfig,
    counts: Arc<Mutex<Counts>>,
}

impl Gate {
    /// A gate with these limits.
    pub fn new(cfg: GateConfig) -> Gate {
        Gate {
            cfg,
            counts: Arc::default(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// Connections waiting for their first message now.
    pub fn waiting(&self) -> usize {
        self.counts.lock().map_or(0, |c| c.waiting)
    }

    /// Decides on a connection from `from`, whose address QUIC has
    /// `validated` (or not).
    pub fn admit(&self, from: SocketAddr, validated: bool) -> Admit {
        self.admit_at(from, validated, Instant::now())
    }

    fn admit_at(&self, from: SocketAddr, validated: bool, now: Instant) -> Admit {
        let Ok(mut c) = self.counts.lock() else {
            return Admit::Refuse("server error");
        };
        let ip = from.ip();
        let refuse = Admit::Refuse;
        if c.waiting >= self.cfg.max_waiting {
            return refuse("too many connections waiting");
        }
        if let Some(cap) = self.cfg.per_addr {
            if c.by_addr.get(&ip).copied().unwrap_or(0) >= cap {
                return refuse("too many connections from this address");
            }
        }
        if let Some((burst, per_sec)) = self.cfg.rate_per_addr {
            if c.opened.len() >= MAX_BUCKETS {
                c.opened.retain(|_, (tokens, at)| {
                    *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
                });
            }
            let (tokens, at) = c.opened.get(&ip).copied().unwrap_or((burst, now));
            let tokens = (tokens + now.duration_since(at).as_secs_f64() * per_sec).min(burst);
            if tokens < 1.0 {
                c.opened.insert(ip, (tokens, now));
                return refuse("too many new connections from this address");
            }
            c.opened.insert(ip, (tokens - 1.0, now));
        }
        if c.waiting >= self.cfg.retry_above && !validated {
            return Admit::Retry;
        }
        c.waiting += 1;
        if self.cfg.per_addr.is_some() {
            *c.by_addr.entry(ip).or_default() += 1;
        }
        Admit::Accept(Pass {
            gate: self.clone(),
            ip,
            waiting: true,
        })
    }
}

/// A connection's place at its port: waiting until [`Pass::arrived`], held
/// against its address until dropped.
#[derive(Debug)]
pub struct Pass {
    gate: Gate,
    ip: IpAddr,
    waiting: bool,
}

impl Pass {
    /// The connection's first message arrived: it no longer counts as
    /// waiting.
    pub fn arrived(&mut self) {
        if std::mem::take(&mut self.waiting) {
            if let Ok(mut c) = self.gate.counts.lock() {
                c.waiting -= 1;
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let Ok(mut c) = self.gate.counts.lock() else {
            return;
        };
        if self.waiting {
            c.waiting -= 1;
        }
        if self.gate.cfg.per_addr.is_some() {
            if let Some(n) = c.by_addr.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    c.by_addr.remove(&self.ip);
                }
            }
        }
    }
}

/// Takes or turns away a connection at `gate`. Returns the connection
/// being set up and its pass, or `None` if it was refused or sent a Retry.
pub fn admit(gate: &Gate, incoming: quinn::Incoming) -> Option<(quinn::Connecting, Pass)> {
    let from = incoming.remote_address();
    match gate.admit(from, incoming.remote_address_validated()) {
        Admit::Accept(pass) => match incoming.accept() {
            Ok(connecting) => Some((connecting, pass)),
            Err(e) => {
                tracing::debug!(%from, error = %e, "connection failed at accept");
                None
            }
        },
        Admit::Retry => {
            if incoming.may_retry() {
                // Cannot fail: may_retry said so.
                let _ = incoming.retry();
            } else {
                // A client answering a Retry is validated; it cannot be
                // here. Refuse rather than keep state.
                incoming.refuse();
            }
            None
        }
        Admit::Refuse(why) => {
            tracing::debug!(%from, why, "connection refused at the gate");
            incoming.refuse();
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], port))
    }

    #[test]
    fn waiting_connections_are_capped_and_released() {
        let gate = Gate::new(GateConfig {
            max_waiting: 2,
            retry_above: 10,
            per_addr: None,
            rate_per_addr: None,
            first_wait: Duration::from_secs(1),
        });
        let Admit::Accept(mut a) = gate.admit(addr(1, 1), false) else {
            panic!("first refused")
        };
        let Admit::Accept(b) = gate.admit(addr(2, 1), false) else {
            panic!("second refused")
        };
        assert!(matches!(gate.admit(addr(3, 1), true), Admit::Refuse(_)));
        a.arrived();
        assert_eq!(gate.waiting(), 1);
        let Admit::Accept(_c) = gate.admit(addr(3, 1), true) else {
            panic!("a place freed by a first message is taken again")
        };
        drop(b);
        assert_eq!(gate.waiting(), 1);
    }

    #[test]
    fn unvalidated_addresses_are_retried_under_load() {
        let gate = Gate::new(GateConfig {
            max_waiting: 10,
            retry_above: 1,
            per_addr: None,
            rate_per_addr: None,
            first_wait: Duration::from_secs(1),
        });
        let _a = gate.admit(addr(1, 1), false);
        assert!(matches!(gate.admit(addr(2, 1), false), Admit::Retry));
        assert!(matches!(gate.admit(addr(2, 1), true), Admit::Accept(_)));
    }

    #[test]
    fn one_address_holds_at_most_its_cap() {
        let gate = Gate::new(GateConfig::clients(2, 0.0));
        let mut held = Vec::new();
        for port in 0..2 {
            let Admit::Accept(mut p) = gate.admit(addr(1, port), true) else {
                panic!("refused under the cap")
            };
            p.arrived();
            held.push(p);
        }
        assert!(matches!(gate.admit(addr(1, 9), true), Admit::Refuse(_)));
        assert!(matches!(gate.admit(addr(2, 9), true), Admit::Accept(_)));
        held.pop();
        assert!(matches!(gate.admit(addr(1, 9), true), Admit::Accept(_)));
    }

    #[test]
    fn an_address_opens_connections_at_its_rate() {
        let gate = Gate::new(GateConfig::clients(1000, 2.0));
        let t0 = Instant::now();
        let mut held = Vec::new();
        for port in 0..4 {
            match gate.admit_at(addr(1, port), true, t0) {
                Admit::Accept(p) => held.push(p),
                other => panic!("within the burst of 4: {other:?}"),
            }
        }
        assert!(matches!(
            gate.admit_at(addr(1, 9), true, t0),
            Admit::Refuse(_)
        ));
        assert!(
            matches!(gate.admit_at(addr(2, 9), true, t0), Admit::Accept(_)),
            "another address is not slowed"
        );
        let later = t0 + Duration::from_millis(500);
        assert!(matches!(
            gate.admit_at(addr(1, 9), true, later),
            Admit::Accept(_)
        ));
    }
}
