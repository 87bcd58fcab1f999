//! The pace check: whether a client's moves keep to its entity type's speed
//! limit, judged by the server's clock.
//!
//! Moves reach a cell late, bunched and out of order: the network delays
//! them, a loaded baseapp relays several at once, a late tick applies a
//! second's worth together. Judging each move against the time since the
//! last one would correct honest walkers whenever that happens. Instead a
//! real holds an *allowance* of metres that fills at the speed limit as the
//! server's clock runs, up to a *window* of it (`window × speed` metres),
//! and each move spends its length; the allowance is filled when a move
//! arrives, by the time that really passed.
//!
//! A client that keeps to its speed and sends a move at least every `s`
//! seconds is never corrected as long as its moves' delays differ by less
//! than its tolerance, `(window − s) / 2` (half a second less a step: a
//! move that overtakes late ones leaves the client's path between them to
//! be paid at once). One that goes faster runs dry and is corrected: over
//! any stretch of the server's clock the moves accepted add up to at most
//! the limit over that stretch plus one window, which is also all anyone
//! can bank by standing still.
//!
//! Only the newest move counts: one older than the last applied (by its
//! sequence number) is dropped.

use glam::Vec3;
use tessera::Time;

/// The window, by default, in milliseconds: clients sending ten moves a
/// second are never corrected for delays that differ by up to 0.95 s.
pub const DEFAULT_MOVE_WINDOW_MS: u64 = 2000;

/// Rounding tolerance per move, metres (float sums of honest steps may
/// exceed the exact allowance by a hair).
const SLACK: f32 = 0.01;

/// Why a client's move was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoveError {
    /// A coordinate is NaN or infinite.
    #[error("position is not finite")]
    NotFinite,
    /// The position is outside the space.
    #[error("position ({x}, {z}) is outside the space")]
    OutOfBounds {
        /// x.
        x: f32,
        /// z.
        z: f32,
    },
    /// The move is longer than the speed limit allows.
    #[error("moved {distance:.1} m with only {allowed:.1} m allowed at {max_speed} m/s")]
    TooFast {
        /// How far it tried to move.
        distance: f32,
        /// How far it could.
        allowed: f32,
        /// The type's limit.
        max_speed: f32,
    },
}

/// A type's speed limit and the window of the server's clock over which
/// moves are judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Metres per second.
    pub max_speed: f32,
    /// Seconds of the speed limit the allowance holds at most.
    pub window_s: f32,
}

impl Limit {
    /// How much the delays of a walk's moves, sent every `step` seconds,
    /// may differ without a correction (see the module's doc).
    pub fn tolerance(&self, step: f32) -> f32 {
        ((self.window_s - step) / 2.0).max(0.0)
    }

    /// The most the allowance holds.
    fn cap(&self) -> f32 {
        self.max_speed * self.window_s
    }
}

/// A client's moves so far, as the pace check sees them. Travels with the
/// real when it moves cell.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// The last move sequence applied (0: none yet).
    pub seq: u32,
    /// Metres the client may still move, as of `at`.
    pub allowance: f32,
    /// When the allowance was last filled (the server's clock).
    pub at: Time,
}

/// What to do with a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it.
    Apply,
    /// Older than one applied: drop it silently.
    Stale,
}

impl Pace {
    /// A client that has not moved yet, with a full window, at `now`.
    pub fn full(limit: Limit, now: Time) -> Pace {
        Pace {
            seq: 0,
            allowance: limit.cap(),
            at: now,
        }
    }

    /// The allowance at `now`: filled at the speed limit since it was last
    /// filled, up to the window.
    pub fn fill(&mut self, limit: Limit, now: Time) {
        let elapsed = now.since(self.at).as_secs_f32();
        self.allowance = (self.allowance + limit.max_speed * elapsed).min(limit.cap());
        self.at = self.at.max(now);
    }

    /// Judges a move from `from` to `to` (facing `yaw`) with sequence
    /// number `seq`, arriving at `now`; on [`Verdict::Apply`] the allowance
    /// is spent. A refused move leaves the allowance as it was (the client
    /// is put back where it was).
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        now: Time,
        limit: Limit,
        seq: u32,
        from: Vec3,
        to: Vec3,
        yaw: f32,
        bounds: [f32; 4],
    ) -> Result<Verdict, MoveError> {
        if self.seq != 0 && (seq.wrapping_sub(self.seq) as i32) <= 0 {
            return Ok(Verdict::Stale);
        }
        self.seq = seq;
        if !(to.is_finite() && yaw.is_finite()) {
            return Err(MoveError::NotFinite);
        }
        if to.x < bounds[0] || to.z < bounds[1] || to.x > bounds[2] || to.z > bounds[3] {
            return Err(MoveError::OutOfBounds { x: to.x, z: to.z });
        }
        self.fill(limit, now);
        let distance = (to - from).length();
        if distance > self.allowance + SLACK {
            return Err(MoveError::TooFast {
                distance,
                allowed: self.allowance,
                max_speed: limit.max_speed,
            });
        }
        self.allowance -= distance;
        Ok(Verdict::Apply)
    }
}

#[cfg(test)]
mod tests;
