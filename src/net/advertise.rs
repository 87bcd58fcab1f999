//! The address a process tells others to reach it at, apart from the one it
//! binds: a process bound to every interface (`0.0.0.0`), or behind NAT,
//! must say which address its peers (other apps, or clients) can reach. An
//! address nobody could reach is refused at start rather than handed out.

use std::net::SocketAddr;

/// Why an address cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    /// Bound to every interface, with nothing advertised.
    #[error(
        "{bound} listens on every interface; set the address to advertise (one its peers reach)"
    )]
    Unspecified {
        /// The bound address.
        bound: SocketAddr,
    },
    /// An address no unicast peer can reach.
    #[error("{addr} is not a unicast address its peers can reach")]
    NotUnicast {
        /// The address.
        addr: SocketAddr,
    },
    /// A loopback address for peers on other machines.
    #[error(
        "{addr} is a loopback address, but {peers} is not: peers on other machines cannot reach it"
    )]
    Loopback {
        /// The address.
        addr: SocketAddr,
        /// An address of the peers it serves (the manager's, or the bound one).
        peers: SocketAddr,
    },
}

/// The address to hand out for a socket bound at `bound`: `advertise` if
/// set (its port 0 meaning the bound port), else `bound`. `peers` is an
/// address on the side of those who will dial it (the manager's address
/// for apps; the bound address for clients): a loopback address is refused
/// when `peers` is not loopback.
pub fn advertised(
    bound: SocketAddr,
    advertise: Option<SocketAddr>,
    peers: SocketAddr,
) -> Result<SocketAddr, Unroutable> {
    let mut addr = advertise.unwrap_or(bound);
    if addr.port() == 0 {
        addr.set_port(bound.port());
    }
    let ip = addr.ip();
    if ip.is_unspecified() {
        return Err(Unroutable::Unspecified { bound });
    }
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_multicast() || broadcast || addr.port() == 0 {
        return Err(Unroutable::NotUnicast { addr });
    }
    if ip.is_loopback() && !peers.ip().is_loopback() {
        return Err(Unroutable::Loopback { addr, peers });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_process_advertises_what_its_peers_can_reach() {
        let manager = a("10.0.0.1:7000");
        // Bound to one address: that one.
        assert_eq!(
            advertised(a("10.0.0.3:4000"), None, manager),
            Ok(a("10.0.0.3:4000"))
        );
        // Bound to all: the advertised host, with the bound port.
        assert_eq!(
            advertised(a("0.0.0.0:4000"), Some(a("10.0.0.3:0")), manager),
            Ok(a("10.0.0.3:4000"))
        );
        // Behind NAT: another port too.
        assert_eq!(
            advertised(a("0.0.0.0:4000"), Some(a("203.0.113.9:14000")), manager),
            Ok(a("203.0.113.9:14000"))
        );
        // One machine: loopback among loopback.
        let local = a("127.0.0.1:7000");
        assert_eq!(
            advertised(a("127.0.0.1:4000"), None, local),
            Ok(a("127.0.0.1:4000"))
        );
    }

    #[test]
    fn an_address_nobody_reaches_is_refused() {
        let manager = a("10.0.0.1:7000");
        assert!(matches!(
            advertised(a("0.0.0.0:4000"), None, manager),
            Err(Unroutable::Unspecified { .. })
        ));
        assert!(matches!(
            advertised(a("[::]:4000"), None, manager),
            Err(Unroutable::Unspecified { .. })
        ));
        assert!(matches!(
            advertised(a("0.0.0.0:4000"), Some(a("224.0.0.1:4000")), manager),
            Err(Unroutable::NotUnicast { .. })
        ));
        assert!(matches!(
            advertised(a("0.0.0.0:4000"), Some(a("255.255.255.255:4000")), manager),
            Err(Unroutable::NotUnicast { .. })
        ));
        let e = advertised(a("127.0.0.1:4000"), None, manager);
        assert!(matches!(e, Err(Unroutable::Loopback { .. })), "{e:?}");
        let shown = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            shown.contains("127.0.0.1:4000") && shown.contains("10.0.0.1:7000"),
            "{shown}"
        );
    }
}
