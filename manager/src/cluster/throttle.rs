//! Limits on logins, checked before any password is hashed (design §10).
//! Hashing is deliberately slow, so it is what a flood of logins attacks:
//! each address and each account name has a token bucket, making accounts
//! has its own per address, and the account checks in flight (queued for the
//! hashing threads or being hashed) are bounded. A login over a limit is
//! answered at once, without touching the database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;
use tessera::Time;

/// A refill rate and how much may be spent at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens a full bucket holds.
    pub burst: f64,
    /// Tokens added per second.
    pub per_sec: f64,
}

impl Rate {
    /// No limit in practice: for worlds whose clients share an address
    /// (bots on one machine).
    pub const UNLIMITED: Rate = Rate {
        burst: 1e9,
        per_sec: 1e9,
    };
}

/// The limits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoginLimits {
    /// Logins and resumes from one address.
    pub per_addr: Rate,
    /// Logins to one account name.
    pub per_account: Rate,
    /// Accounts made from one address.
    pub creates_per_addr: Rate,
    /// Account checks queued or being hashed at once; more are answered
    /// "unavailable".
    pub max_checks: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_addr: Rate {
                burst: 20.0,
                per_sec: 5.0,
            },
            per_account: Rate {
                burst: 10.0,
                per_sec: 1.0,
            },
            creates_per_addr: Rate {
                burst: 20.0,
                per_sec: 1.0 / 60.0,
            },
            max_checks: 64,
        }
    }
}

impl LoginLimits {
    /// Limits for a world whose players all connect from one address, as
    /// bots on the server's own machine do: rates unlimited, the bound on
    /// checks in flight kept.
    pub fn one_address() -> LoginLimits {
        LoginLimits {
            per_addr: Rate::UNLIMITED,
            per_account: Rate::UNLIMITED,
            creates_per_addr: Rate::UNLIMITED,
            max_checks: 4096,
        }
    }
}

/// Why a login was not let through to the hashing threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttled {
    /// Too many logins from this address.
    Address,
    /// Too many logins to this account.
    Account,
    /// Too many accounts made from this address.
    Creates,
    /// The hashing threads have all they can take.
    Busy,
}

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Throttled::Address => "too many logins from this address; try again later",
            Throttled::Account => "too many logins to this account; try again later",
            Throttled::Creates => "too many accounts made from this address; try again later",
            Throttled::Busy => "the server is busy; try again",
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Time,
}

/// Buckets by key, bounded: full buckets are forgotten (a fresh one is
/// full too), and past [`MAX_KEYS`] the table is swept.
#[derive(Debug)]
struct Buckets<K> {
    rate: Rate,
    map: HashMap<K, Bucket>,
}

/// Keys a table holds before it forgets its full buckets.
const MAX_KEYS: usize = 100_000;

impl<K: std::hash::Hash + Eq> Buckets<K> {
    fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            map: HashMap::new(),
        }
    }

    fn level(&self, b: &Bucket, now: Time) -> f64 {
        let secs = now.since(b.at).as_secs_f64();
        (b.tokens + secs * self.rate.per_sec).min(self.rate.burst)
    }

    /// Whether `key` has a token left at `now`, without taking it.
    fn has(&self, key: &K, now: Time) -> bool {
        self.map.get(key).is_none_or(|b| self.level(b, now) >= 1.0)
    }

    /// Takes a token (the caller checked [`Buckets::has`]).
    fn take(&mut self, key: K, now: Time) {
        if self.map.len() >= MAX_KEYS {
            self.sweep(now);
        }
        let full = Bucket {
            tokens: self.rate.burst,
            at: now,
        };
        let b = self.map.get(&key).copied().unwrap_or(full);
        let tokens = self.level(&b, now) - 1.0;
        self.map.insert(key, Bucket { tokens, at: now });
    }

    /// Forgets every bucket that has refilled.
    fn sweep(&mut self, now: Time) {
        let (rate, map) = (self.rate, &mut self.map);
        map.retain(|_, b| {
            let secs = now.since(b.at).as_secs_f64();
            b.tokens + secs * rate.per_sec < rate.burst
        });
    }
}

/// The manager's login limits and what they have counted.
#[derive(Debug)]
pub struct Throttle {
    limits: LoginLimits,
    addrs: Buckets<IpAddr>,
    accounts: Buckets<String>,
    creates: Buckets<IpAddr>,
    /// Account checks handed to the hashing threads and not yet back.
    checking: usize,
    last_sweep: Time,
}

/// How often full buckets are forgotten.
const SWEEP: Duration = Duration::from_secs(60);

impl Throttle {
    /// A throttle with these limits.
    pub fn new(limits: LoginLimits) -> Throttle {
        Throttle {
            limits,
            addrs: Buckets::new(limits.per_addr),
            accounts: Buckets::new(limits.per_account),
            creates: Buckets::new(limits.creates_per_addr),
            checking: 0,
            last_sweep: Time(0),
        }
    }

    /// A login from `from` to account `name` (making it if `create`):
    /// either it may go to the hashing threads (and counts as in flight
    /// until [`Throttle::checked`]), or why not. Names are counted
    /// case-insensitively, as accounts are.
    pub fn login(
        &mut self,
        now: Time,
        from: IpAddr,
        name: &str,
        create: bool,
    ) -> Result<(), Throttled> {
        let name = name.to_ascii_lowercase();
        if !self.addrs.has(&from, now) {
            return Err(Throttled::Address);
        }
        if !self.accounts.has(&name, now) {
            return Err(Throttled::Account);
        }
        if create && !self.creates.has(&from, now) {
            return Err(Throttled::Creates);
        }
        if self.checking >= self.limits.max_checks {
            return Err(Throttled::Busy);
        }
        self.addrs.take(from, now);
        self.accounts.take(name, now);
        if create {
            self.creates.take(from, now);
        }
        self.checking += 1;
        Ok(())
    }

    /// A resume from `from`: counted against the address only (the token
    /// it presents is checked without hashing).
    pub fn resume(&mut self, now: Time, from: IpAddr) -> Result<(), Throttled> {
        if !self.addrs.has(&from, now) {
            return Err(Throttled::Address);
        }
        self.addrs.take(from, now);
        Ok(())
    }

    /// An account check came back (or was dropped because its client left).
    pub fn checked(&mut self) {
        self.checking = self.checking.saturating_sub(1);
    }

    /// Account checks in flight.
    pub fn checking(&self) -> usize {
        self.checking
    }

    /// Forgets refilled buckets now and then, so a flood from many
    /// addresses leaves nothing behind.
    pub fn tick(&mut self, now: Time) {
        if now.since(self.last_sweep) < SWEEP {
            return;
        }
        self.last_sweep = now;
        self.addrs.sweep(now);
        self.accounts.sweep(now);
        self.creates.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Time = Time(1_000_000_000);

    fn at(ms: u64) -> Time {
        T0.plus(Duration::from_millis(ms))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn limits() -> LoginLimits {
        LoginLimits {
            per_addr: Rate {
                burst: 3.0,
                per_sec: 1.0,
            },
            per_account: Rate {
                burst: 5.0,
                per_sec: 1.0,
            },
            creates_per_addr: Rate {
                burst: 1.0,
                per_sec: 0.1,
            },
            max_checks: 100,
        }
    }

    #[test]
    fn an_address_spends_its_burst_then_its_rate() {
        let mut t = Throttle::new(limits());
        for n in 0..3 {
            assert_eq!(t.login(at(0), ip(1), &format!("a{n}"), false), Ok(()));
        }
        assert_eq!(t.login(at(0), ip(1), "a9", false), Err(Throttled::Address));
        assert_eq!(
            t.login(at(0), ip(2), "a9", false),
            Ok(()),
            "others unaffected"
        );
        assert_eq!(
            t.login(at(999), ip(1), "a9", false),
            Err(Throttled::Address)
        );
        assert_eq!(t.login(at(1_000), ip(1), "a9", false), Ok(()));
        assert_eq!(t.resume(at(1_000), ip(1)), Err(Throttled::Address));
    }

    #[test]
    fn one_account_is_limited_across_addresses_whatever_its_case() {
        let mut t = Throttle::new(limits());
        for n in 0..5 {
            let name = if n % 2 == 0 { "Vic" } else { "vic" };
            assert_eq!(t.login(at(0), ip(n), name, false), Ok(()));
        }
        assert_eq!(t.login(at(0), ip(9), "VIC", false), Err(Throttled::Account));
        assert_eq!(t.login(at(0), ip(9), "other", false), Ok(()));
    }

    #[test]
    fn making_accounts_has_its_own_limit() {
        let mut t = Throttle::new(limits());
        assert_eq!(t.login(at(0), ip(1), "new1", true), Ok(()));
        assert_eq!(t.login(at(0), ip(1), "new2", true), Err(Throttled::Creates));
        assert_eq!(
            t.login(at(0), ip(1), "old", false),
            Ok(()),
            "logins still go"
        );
        assert_eq!(t.login(at(10_000), ip(1), "new2", true), Ok(()));
    }

    #[test]
    fn checks_in_flight_are_bounded() {
        let mut t = Throttle::new(LoginLimits {
            max_checks: 2,
            ..LoginLimits::one_address()
        });
        assert_eq!(t.login(at(0), ip(1), "a", false), Ok(()));
        assert_eq!(t.login(at(0), ip(1), "b", false), Ok(()));
        assert_eq!(t.login(at(0), ip(1), "c", false), Err(Throttled::Busy));
        t.checked();
        assert_eq!(t.login(at(0), ip(1), "c", false), Ok(()));
        assert_eq!(t.checking(), 2);
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut t = Throttle::new(limits());
        for n in 0..50 {
            let _ = t.login(at(0), ip(n), "x", false);
        }
        t.tick(at(0).plus(SWEEP));
        assert!(t.addrs.map.is_empty() && t.accounts.map.is_empty());
    }
}
