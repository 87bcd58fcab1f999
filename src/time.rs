//! Time as cores see it: microseconds since the Unix epoch, passed in as an
//! argument. Cores never read a clock; drivers read the wall clock and the
//! simulator passes virtual time. Wall-clock microseconds also serve as the
//! server timestamp in client updates, so a client on the same clock can
//! measure update latency.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in microseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// The wall clock now. Only drivers and clients call this; cores take time as an argument.
    pub fn now() -> Time {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Time(d.as_micros() as u64)
    }

    /// This time plus a duration.
    pub fn plus(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_micros() as u64))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// Seconds since the epoch as a float, for rates.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// Sleeps until `at` on the wall clock (for ever if `None`): how a driver
/// waits for the time its core asked to be woken at.
#[cfg(feature = "transport")]
pub async fn sleep_until(at: Option<Time>) {
    match at {
        Some(at) => {
            let wait = at.since(Time::now());
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}
