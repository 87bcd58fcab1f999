//! The pace check against the two promises of its module: a walk that keeps
//! to the speed limit is never corrected, however its moves are delayed
//! (by amounts that differ by less than the tolerance), bunched or
//! reordered on the way; and whatever a
//! client sends, the moves accepted over any stretch of the server's clock
//! add up to no more than the limit allows over that stretch plus the
//! window — so a path faster than that is corrected.

use super::*;
use proptest::prelude::*;

const BOUNDS: [f32; 4] = [0.0, 0.0, 1000.0, 1000.0];
const LIMIT: Limit = Limit {
    max_speed: 6.0,
    window_s: 2.0,
};

fn at(s: f64) -> Time {
    Time((1_000.0e6 + s * 1e6) as u64)
}

/// One move as the client sends it: its time on the client's clock (in
/// seconds from the start), sequence number and position.
#[derive(Clone, Copy, Debug)]
struct Sent {
    t: f64,
    seq: u32,
    pos: Vec3,
}

/// A walk: legs of (seconds, heading, share of the speed limit), sampled
/// every `step` seconds.
fn walk(legs: &[(f64, f32, f32)], step: f64, speed: f32) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut pos = Vec3::new(500.0, 0.0, 500.0);
    let mut t = 0.0;
    let mut seq = 1;
    for &(secs, heading, share) in legs {
        let v = Vec3::new(heading.cos(), 0.0, heading.sin()) * speed * share;
        let end = t + secs;
        while t + step <= end + 1e-9 {
            t += step;
            pos += v * step as f32;
            out.push(Sent { t, seq, pos });
            seq += 1;
        }
    }
    out
}

/// Delivers `sent` with each move's delay, in order of arrival, and runs
/// the check; returns the moves refused and the accepted moves with their
/// arrival times and lengths.
fn deliver(sent: &[Sent], delays: &[f64]) -> (Vec<MoveError>, Vec<(f64, f32)>) {
    let mut arrivals: Vec<(f64, Sent)> = sent
        .iter()
        .zip(delays.iter().cycle())
        .map(|(s, d)| (s.t + d, *s))
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut pace = Pace::full(LIMIT, at(0.0));
    let mut here = Vec3::new(500.0, 0.0, 500.0);
    let (mut refused, mut accepted) = (Vec::new(), Vec::new());
    for (when, s) in arrivals {
        match pace.judge(at(when), LIMIT, s.seq, here, s.pos, 0.0, BOUNDS) {
            Ok(Verdict::Apply) => {
                accepted.push((when, (s.pos - here).length()));
                here = s.pos;
            }
            Ok(Verdict::Stale) => {}
            Err(e) => refused.push(e),
        }
    }
    (refused, accepted)
}

fn legs() -> impl Strategy<Value = Vec<(f64, f32, f32)>> {
    prop::collection::vec(
        (0.1f64..3.0, 0.0f32..std::f32::consts::TAU, 0.0f32..=1.0),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every move of a legal walk is late by anything up to the tolerance
    /// for its send interval; moves overtake each other and arrive in
    /// bunches. None is refused.
    #[test]
    fn a_legal_walk_is_never_corrected(
        legs in legs(),
        step in prop::sample::select(vec![0.033f64, 0.05, 0.1, 0.2, 0.5]),
        delays in prop::collection::vec(0.0f64..1.0, 1..64),
    ) {
        let sent = walk(&legs, step, LIMIT.max_speed);
        let tolerance = LIMIT.tolerance(step as f32) as f64;
        let delays: Vec<f64> = delays.iter().map(|d| d * tolerance).collect();
        let (refused, _) = deliver(&sent, &delays);
        prop_assert!(refused.is_empty(), "refused: {:?}", refused);
    }

    /// Whatever is sent and however it is delayed, the accepted moves over
    /// any stretch of the server's clock fit the limit over that stretch
    /// plus the window; a path that goes faster for long enough is refused.
    #[test]
    fn nobody_outruns_the_limit_over_the_window(
        legs in legs(),
        speed in 1.0f32..4.0,
        delays in prop::collection::vec(0.0f64..3.0, 1..64),
    ) {
        let sent = walk(&legs, 0.1, LIMIT.max_speed * speed);
        let (refused, accepted) = deliver(&sent, &delays);
        for (i, &(start, _)) in accepted.iter().enumerate() {
            let mut metres = 0.0f32;
            for &(end, len) in &accepted[i..] {
                metres += len;
                let allowed = LIMIT.max_speed * ((end - start) as f32 + LIMIT.window_s);
                prop_assert!(
                    metres <= allowed + 0.01 * (accepted.len() as f32),
                    "{metres} m accepted from {start:.2} s to {end:.2} s, {allowed} m allowed"
                );
            }
        }
        // The newest move is never stale: unless something was refused,
        // the server ends where the path ends, however far that is.
        let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
            return Ok(());
        };
        let reach = (last.pos - Vec3::new(500.0, 0.0, 500.0)).length();
        let latest = accepted.last().map_or(0.0, |a| a.0) as f32;
        if reach > LIMIT.max_speed * (latest + LIMIT.window_s) + 0.01 * sent.len() as f32 {
            prop_assert!(!refused.is_empty(), "{reach} m from the start by {latest} s (first move at {} s) went unchecked", first.t);
        }
    }
}

#[test]
fn a_speeder_is_refused_and_keeps_its_allowance() {
    let mut pace = Pace::full(LIMIT, at(0.0));
    let from = Vec3::new(10.0, 0.0, 10.0);
    // A full window is 12 m; 13 m at once is too far.
    let far = Vec3::new(23.0, 0.0, 10.0);
    assert!(matches!(
        pace.judge(at(0.0), LIMIT, 1, from, far, 0.0, BOUNDS),
        Err(MoveError::TooFast { .. })
    ));
    // Standing a whole minute banks no more than the window.
    assert!(matches!(
        pace.judge(at(60.0), LIMIT, 2, from, far, 0.0, BOUNDS),
        Err(MoveError::TooFast { .. })
    ));
    let near = Vec3::new(21.9, 0.0, 10.0);
    assert_eq!(
        pace.judge(at(60.0), LIMIT, 3, from, near, 0.0, BOUNDS),
        Ok(Verdict::Apply)
    );
    // An older move than one applied is dropped, not judged.
    assert_eq!(
        pace.judge(at(60.0), LIMIT, 2, near, far, 0.0, BOUNDS),
        Ok(Verdict::Stale)
    );
    assert_eq!(
        pace.judge(at(60.0), LIMIT, 4, near, Vec3::NAN, 0.0, BOUNDS),
        Err(MoveError::NotFinite)
    );
    assert!(matches!(
        pace.judge(
            at(60.0),
            LIMIT,
            5,
            near,
            Vec3::new(-1.0, 0.0, 5.0),
            0.0,
            BOUNDS
        ),
        Err(MoveError::OutOfBounds { .. })
    ));
}
