//! Replaying a recording of a live world (`tessera sim --replay`): every
//! recorded entity becomes a track of positions over time. An entity no
//! client played is made an NPC of the game's NPC type where the recording
//! first saw it, and moved along its track each tick (straight between two
//! samples); it is destroyed a second after its track ends. An entity a
//! client played becomes a simulated client whose player is stored at the
//! track's first position before it logs in, and who walks after its track
//! (at most at the player type's speed, so the server accepts every move);
//! a client whose track ends stands where it was. The cut lines start where
//! the recording's first sample had them; then the policy under test moves
//! them.

use glam::Vec3;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tessera::layout::Rect;
use tessera::recording::{unquantize, Recording};
use tessera::EntityId;
use tessera_cellapp::behavior::{CellBehavior, Ctx};

use super::world::SimWorld;

/// One recorded entity's positions: (seconds, x, z), in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    /// Where it was, when.
    pub points: Vec<(f32, f32, f32)>,
    /// Whether a client played it.
    pub client: bool,
}

impl Track {
    /// When it starts, seconds.
    pub fn start(&self) -> f32 {
        self.points.first().map_or(0.0, |p| p.0)
    }

    /// When it ends, seconds.
    pub fn end(&self) -> f32 {
        self.points.last().map_or(0.0, |p| p.0)
    }

    /// Where it is at `t` seconds (its first point before it starts, its
    /// last after it ends).
    pub fn at(&self, t: f32) -> (f32, f32) {
        let Some(first) = self.points.first() else {
            return (0.0, 0.0);
        };
        if t <= first.0 {
            return (first.1, first.2);
        }
        for w in self.points.windows(2) {
            let ((t0, x0, z0), (t1, x1, z1)) = (w[0], w[1]);
            if t < t1 {
                let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 1.0 };
                return (x0 + (x1 - x0) * f, z0 + (z1 - z0) * f);
            }
        }
        self.points.last().map_or((0.0, 0.0), |p| (p.1, p.2))
    }
}

/// How far ahead of its track's start a replayed client's login is
/// scheduled, seconds: more than the time between two calls of
/// [`Replay::start`] plus [`LOGIN_AHEAD`].
pub const CLIENT_LEAD: f32 = 2.0;

/// How long before its track starts a replayed client sends its login,
/// seconds. A login in the simulator takes 20-180 ms to make a real; the
/// recording first saw the client at a sample, so it came into the world
/// within the second before. Logging in this much ahead brings the
/// replayed client in about half a second before its track starts.
pub const LOGIN_AHEAD: f32 = 0.65;

/// A recording made ready to replay.
#[derive(Debug)]
pub struct Replay {
    /// The recording.
    pub recording: Recording,
    /// The space's side, metres.
    pub side: f32,
    /// Every recorded entity's track, by recorded id.
    tracks: Arc<BTreeMap<u64, Track>>,
}

/// The tracks and who follows which: the NPC type's cell behaviour in a
/// replay, and the way for its simulated clients.
#[derive(Clone, Default)]
pub struct Follow {
    /// Every recorded entity's track, by recorded id.
    tracks: Arc<BTreeMap<u64, Track>>,
    /// Which track each replayed NPC follows (filled as they are made).
    npcs: Arc<RwLock<BTreeMap<EntityId, u64>>>,
    /// Which track each simulated client follows, by client number.
    clients: Arc<RwLock<BTreeMap<u64, u64>>>,
    /// The world's time when the replay began, microseconds: the
    /// recording's time 0.
    origin_us: Arc<AtomicU64>,
    /// The recording's time up to which tracks have been started, seconds
    /// (`None` before the first): each track starts exactly once, however
    /// the calls of [`Replay::start`] fall.
    started: Arc<RwLock<Option<f32>>>,
}

impl Replay {
    /// Tracks from a recording. The simulator runs square spaces starting
    /// at the origin: a recording of another space is refused.
    pub fn new(recording: Recording) -> Result<Replay, String> {
        let b = recording.header.bounds;
        if b.x0 != 0.0 || b.z0 != 0.0 || (b.x1 - b.z1).abs() > 1e-3 {
            return Err(format!(
                "the recording's space {b:?} is not a square from the origin, which is what the simulator runs"
            ));
        }
        let mut tracks: BTreeMap<u64, Track> = BTreeMap::new();
        for s in &recording.samples {
            let t = s.t_ms as f32 / 1e3;
            for spot in &s.spots {
                let track = tracks.entry(spot.id).or_insert(Track {
                    points: Vec::new(),
                    client: false,
                });
                track.client |= spot.client;
                track.points.push((
                    t,
                    unquantize(spot.x, b.x0, b.x1),
                    unquantize(spot.z, b.z0, b.z1),
                ));
            }
        }
        Ok(Replay {
            side: b.x1,
            recording,
            tracks: Arc::new(tracks),
        })
    }

    /// Seconds the recording covers (at least one).
    pub fn duration(&self) -> u32 {
        let last = self.recording.samples.last().map_or(0, |s| s.t_ms);
        last.div_ceil(1_000).max(1)
    }

    /// The first sample taken once the world had a layout.
    fn first_laid(&self) -> Option<&tessera::recording::Sample> {
        self.recording.samples.iter().find(|s| !s.cells.is_empty())
    }

    /// Cellapps at the recording's start.
    pub fn cellapps(&self) -> usize {
        self.first_laid().map_or(1, |s| s.cells.len().max(1))
    }

    /// Every recorded entity's track, by recorded id.
    pub fn tracks(&self) -> &BTreeMap<u64, Track> {
        &self.tracks
    }

    /// NPC and client tracks.
    pub fn counts(&self) -> (usize, usize) {
        let clients = self.tracks().values().filter(|t| t.client).count();
        (self.tracks().len() - clients, clients)
    }

    /// The entities that should be real at the end of a run: every client,
    /// and every NPC whose track reaches the end.
    pub fn expected_at_end(&self) -> usize {
        let end = self.duration() as f32;
        self.tracks()
            .values()
            .filter(|t| t.client || t.end() + 1.0 >= end)
            .count()
    }

    /// The NPC behaviour and the clients' way for one run (who follows
    /// which is filled in as the run makes them): give it to the world.
    pub fn follow(&self) -> Follow {
        Follow {
            tracks: self.tracks.clone(),
            ..Follow::default()
        }
    }

    /// Sets the world up at the recording's start (its time 0 is the
    /// world's time now): the lines where they were, and every entity of
    /// the first sample made.
    pub fn begin(&self, world: &mut SimWorld) {
        if let Some(f) = world.follow() {
            f.origin_us.store(world.now, Ordering::Relaxed);
        }
        if let Some(first) = self.first_laid() {
            for (i, pos) in first.lines.iter().enumerate() {
                world.move_line_to(i, *pos);
            }
        }
        self.start(world, 0.0);
    }

    /// Makes the NPCs whose tracks start by `upto` seconds of the
    /// recording, and schedules the logins of the clients whose tracks
    /// start by [`CLIENT_LEAD`] seconds later, each [`LOGIN_AHEAD`] before
    /// its track starts (so that it is in the world when its track starts),
    /// following the tracks of the world's [`Follow`]. What an earlier call
    /// started is not started again.
    pub fn start(&self, world: &mut SimWorld, upto: f32) {
        let Some(follow) = world.follow().cloned() else {
            return;
        };
        let after = {
            let Ok(mut started) = follow.started.write() else {
                return;
            };
            let after = started.unwrap_or(f32::NEG_INFINITY);
            if upto <= after {
                return;
            }
            *started = Some(upto);
            after
        };
        let starting: Vec<(u64, Track)> = self
            .tracks()
            .iter()
            .filter(|(_, t)| {
                let lead = if t.client { CLIENT_LEAD } else { 0.0 };
                t.start() > after + lead && t.start() <= upto + lead
            })
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        for (id, track) in starting {
            let (x, z) = track.at(track.start());
            if track.client {
                let c = world.log_in_at(follow.world_time(track.start() - LOGIN_AHEAD));
                world.store_player(c, [x, 0.0, z]);
                if let Ok(mut map) = follow.clients.write() {
                    map.insert(c, id);
                }
            } else if let Some(npc) = world.spawn_npc_at(Vec3::new(x, 0.0, z)) {
                if let Ok(mut map) = follow.npcs.write() {
                    map.insert(npc, id);
                }
            }
        }
    }

    /// Each cell's rectangle and reals at a recorded sample.
    pub fn recorded_counts(&self, sample: usize) -> Vec<(Rect, u32)> {
        self.recording
            .samples
            .get(sample)
            .map(|s| s.cells.iter().map(|c| (c.rect, c.reals)).collect())
            .unwrap_or_default()
    }
}

impl Follow {
    /// The recording's time at the world's time `now_us`, seconds.
    pub fn replay_time(&self, now_us: u64) -> f32 {
        now_us.saturating_sub(self.origin_us.load(Ordering::Relaxed)) as f32 / 1e6
    }

    /// The world's time at the recording's time `t` seconds, microseconds.
    pub fn world_time(&self, t: f32) -> u64 {
        self.origin_us.load(Ordering::Relaxed) + (f64::from(t.max(0.0)) * 1e6) as u64
    }

    /// Where client `c` should walk at the world's time `now_us`, if it
    /// follows a track.
    pub fn client_goal(&self, c: u64, now_us: u64) -> Option<[f32; 2]> {
        let id = self.clients.read().ok()?.get(&c).copied()?;
        let (x, z) = self.tracks.get(&id)?.at(self.replay_time(now_us));
        Some([x, z])
    }
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Follow")
    }
}

impl CellBehavior for Follow {
    fn tick(&self, ctx: &mut Ctx<'_>) {
        let id = self
            .npcs
            .read()
            .ok()
            .and_then(|m| m.get(&ctx.id()).copied());
        let Some(track) = id.and_then(|id| self.tracks.get(&id)) else {
            return;
        };
        let t = self.replay_time(ctx.now().0);
        if t > track.end() + 1.0 {
            let _ = ctx.destroy();
            return;
        }
        let (x, z) = track.at(t);
        let pos = ctx.pos();
        let to = Vec3::new(x, pos.y, z);
        if to.distance(pos) > 1e-3 {
            let yaw = (to.x - pos.x).atan2(to.z - pos.z);
            ctx.move_to(to, yaw);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::Spec;
    use tessera::layout::Rect;
    use tessera::recording::{CellCount, Header, Recording, Sample, Spot};

    /// A recording of 1 km² on two cells: an NPC from the first sample, a
    /// client from the second, another from the third.
    fn recording() -> Recording {
        let spot = |id, client| Spot {
            id,
            x: 20_000,
            z: 30_000,
            client,
        };
        let sample = |t_ms, spots| Sample {
            t_ms,
            lines: vec![500.0],
            cells: vec![
                CellCount {
                    rect: Rect::new(0.0, 0.0, 500.0, 1_000.0),
                    reals: 0,
                },
                CellCount {
                    rect: Rect::new(500.0, 0.0, 1_000.0, 1_000.0),
                    reals: 0,
                },
            ],
            spots,
        };
        Recording {
            header: Header {
                bounds: Rect::new(0.0, 0.0, 1_000.0, 1_000.0),
                tick_hz: 10,
            },
            samples: vec![
                sample(1_000, vec![spot(1, false)]),
                sample(2_000, vec![spot(1, false), spot(2, true)]),
                sample(3_000, vec![spot(1, false), spot(2, true), spot(3, true)]),
                sample(4_000, vec![spot(1, false), spot(2, true), spot(3, true)]),
            ],
            torn: None,
        }
    }

    #[test]
    fn every_track_starts_once_however_the_calls_fall() {
        let spec = Spec::replay(recording(), "test", 1, 0, None).expect("a replay");
        let replay = spec.replaying().expect("replaying");
        let mut world = spec.world("static");
        // Calls at times that overlap what the start already covered, twice
        // at one time, and one going back.
        for t in [0.3, 0.3, 1.3, 0.9, 2.3, 4.5] {
            let at = world.follow().expect("replaying").world_time(t);
            world.run_until(at);
            replay.start(&mut world, t);
        }
        assert_eq!(world.next_client(), 2, "one client a client track");
        // At 4.5 s the NPC's track has ended less than a second ago.
        assert_eq!(world.reals().len(), 3, "the NPC and the two clients");
    }
}
