//! The balancing scenarios of `tessera sim`: a world of NPCs and simulated
//! clients whose groups do something (form a crowd, walk, converge) while
//! cellapps come or go, run under one policy on the real cores, sampled
//! once a (virtual) second.
//!
//! A scenario is a file ([`file`]); the built-in ones ship inside the
//! binary:
//!
//! | scenario | what happens |
//! |---|---|
//! | `uniform` | everyone wanders; nothing shifts |
//! | `hotspot` | from 5 s, 30 % of the NPCs gather around one point and stay |
//! | `moving-hotspot` | the crowd gathers, then walks across the world |
//! | `converge` | from 5 s, everyone heads for the same place |
//! | `join` | a hotspot, and a cellapp arrives at a third of the run |
//! | `retire` | a hotspot, and a cellapp retires at a third of the run |
//! | `town` | 2,000 clients among 18,000 NPCs; half the clients and a fifth of the NPCs gather in a town |

use serde::Serialize;
use std::collections::BTreeMap;

use std::sync::Arc;

use super::crowd::{Crowds, Group, Motion};
use super::net::Conditions;
use super::replay::Replay;
use super::score::{Sampler, Score};
use super::world::{SimConfig, SimWorld};

pub mod file;

pub use file::{
    built_in_names, Change, Event, GroupSpec, MotionSpec, Scenario, ScenarioError, When, Who,
    BUILT_IN,
};

/// What the command line may set over a scenario file's own values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Virtual seconds.
    pub duration: Option<u32>,
    /// Cellapps at the start.
    pub cellapps: Option<usize>,
    /// NPCs.
    pub npcs: Option<usize>,
    /// Simulated clients.
    pub clients: Option<usize>,
    /// The space's side, metres.
    pub size: Option<f32>,
}

impl Scenario {
    /// The scenario with `o`'s values over its own.
    pub fn with(mut self, o: &Overrides) -> Scenario {
        self.duration = o.duration.unwrap_or(self.duration);
        self.cellapps = o.cellapps.unwrap_or(self.cellapps);
        self.npcs = o.npcs.unwrap_or(self.npcs);
        self.clients = o.clients.unwrap_or(self.clients);
        self.size = o.size.or(self.size);
        self
    }
}

/// One run's settings: a scenario with every moment, place and count
/// resolved, the seed, and the game whose world runs.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The scenario, overrides applied.
    pub scenario: Scenario,
    /// Drives everything.
    pub seed: u64,
    /// Seconds between two layout frames (0: none).
    pub frame_every: u32,
    /// The game whose world runs (the demo's if `None`); the NPC groups
    /// move its NPC type, the client groups its player type.
    pub game: tessera_game::Game,
    /// The changes to the cellapps, by the second they happen at.
    timeline: Vec<(u32, Change)>,
    /// The recording it replays, if it is a replay.
    replay: Option<Arc<Replay>>,
    /// Tuning parameters for policies: (policy, key, value).
    pub policy_params: Vec<(String, String, f64)>,
    npcs: Crowds,
    clients: Crowds,
}

impl Spec {
    /// Resolves `scenario` for a run, checking what depends on the final
    /// duration, counts and game.
    pub fn new(
        scenario: Scenario,
        seed: u64,
        frame_every: u32,
        game: Option<tessera_game::Game>,
    ) -> Result<Spec, ScenarioError> {
        let game = game.unwrap_or_else(tessera_demo::game);
        let fail = |key: &str, line: Option<usize>, message: String| ScenarioError::Value {
            origin: scenario.origin.clone(),
            key: key.to_string(),
            line,
            message,
        };
        let s = &scenario;
        if s.npcs + s.clients == 0 {
            return Err(fail("npcs", None, "the world needs NPCs or clients".into()));
        }
        if !(1..=86_400).contains(&s.duration) {
            return Err(fail("duration", None, "must be 1 to 86400 s".into()));
        }
        if !(1..=64).contains(&s.cellapps) {
            return Err(fail("cellapps", None, "must be 1 to 64".into()));
        }
        let mut timeline = Vec::new();
        let mut running = s.cellapps as i64;
        let mut events = s.events.clone();
        events.sort_by(|a, b| a.at.at(s.duration).total_cmp(&b.at.at(s.duration)));
        for e in &events {
            let at = e.at.at(s.duration);
            if at > s.duration as f32 {
                return Err(fail(
                    "event.at",
                    e.line,
                    format!("{at} s is after the run's end ({} s)", s.duration),
                ));
            }
            running += match e.change {
                Change::Join(n) => n as i64,
                Change::Retire(n) => -(n as i64),
            };
            if !(1..=64).contains(&running) {
                return Err(fail(
                    "event",
                    e.line,
                    format!("leaves {running} cellapps; there must be 1 to 64"),
                ));
            }
            timeline.push((at.ceil() as u32, e.change));
        }
        let side = side(s);
        let player = game
            .definitions()
            .by_name(game.player_type())
            .map_or(f32::INFINITY, |t| t.max_speed);
        let mut npcs = Crowds::default();
        let mut clients = Crowds::default();
        for g in &s.groups {
            if g.who == Who::Clients {
                if let Some(v) = g.speed.filter(|v| *v > player) {
                    return Err(fail(
                        "group.speed",
                        g.line,
                        format!("{v} m/s is faster than the player type's max_speed ({player} m/s): the server would correct every move"),
                    ));
                }
            }
            let group = resolve(g, s.duration, side).map_err(|m| fail("group", g.line, m))?;
            match g.who {
                Who::Npcs => npcs.groups.push(group),
                Who::Clients => clients.groups.push(group),
            }
        }
        let game = match s.client_aoi {
            Some(r) => {
                let defs = game
                    .definitions()
                    .with_aoi_radius(game.player_type(), r)
                    .ok_or_else(|| {
                        fail(
                            "client_aoi",
                            None,
                            format!(
                                "the game's player type {} has no client",
                                game.player_type()
                            ),
                        )
                    })?;
                game.replace_definitions(defs)
            }
            None => game,
        };
        Ok(Spec {
            scenario,
            seed,
            frame_every,
            game,
            timeline,
            replay: None,
            policy_params: Vec::new(),
            npcs,
            clients,
        })
    }

    /// A run replaying `recording` (read from `origin`): its space, its
    /// cellapps at the start, its entities along their tracks.
    pub fn replay(
        recording: tessera::recording::Recording,
        origin: &str,
        seed: u64,
        frame_every: u32,
        game: Option<tessera_game::Game>,
    ) -> Result<Spec, ScenarioError> {
        let fail = |message: String| ScenarioError::Value {
            origin: origin.to_string(),
            key: "recording".into(),
            line: None,
            message,
        };
        let replay = Replay::new(recording).map_err(fail)?;
        let game = game.unwrap_or_else(tessera_demo::game);
        if game.npc_type().is_none() {
            return Err(fail(format!(
                "game {} has no NPC type to replay entities without a client",
                game.name()
            )));
        }
        if !(1..=64).contains(&replay.cellapps()) {
            return Err(fail(format!(
                "it starts with {} cells; the simulator runs 1 to 64 cellapps",
                replay.cellapps()
            )));
        }
        if !(200.0..=1_000_000.0).contains(&replay.side) {
            return Err(fail(format!(
                "its space ({} m) is outside what the simulator runs (200 to 1000000 m)",
                replay.side
            )));
        }
        let (npcs, clients) = replay.counts();
        let scenario = Scenario {
            name: "replay".into(),
            about: format!("a replay of {origin}"),
            origin: origin.to_string(),
            duration: replay.duration(),
            cellapps: replay.cellapps(),
            npcs,
            clients,
            size: Some(replay.side),
            client_aoi: None,
            cost: tessera_cellapp::load::CostModel::default(),
            events: Vec::new(),
            groups: Vec::new(),
        };
        Ok(Spec {
            scenario,
            seed,
            frame_every,
            game,
            timeline: Vec::new(),
            replay: Some(Arc::new(replay)),
            policy_params: Vec::new(),
            npcs: Crowds::default(),
            clients: Crowds::default(),
        })
    }

    /// The recording this replays, if it is a replay.
    pub fn replaying(&self) -> Option<&Replay> {
        self.replay.as_deref()
    }

    /// How many entities should be real at the end of a run, once every
    /// migration has landed.
    pub fn expected_entities(&self) -> usize {
        match &self.replay {
            Some(r) => r.expected_at_end(),
            None => self.scenario.npcs + self.scenario.clients,
        }
    }

    /// The side of the square space.
    pub fn side(&self) -> f32 {
        side(&self.scenario)
    }

    /// Virtual seconds.
    pub fn duration(&self) -> u32 {
        self.scenario.duration
    }

    /// When the load shifts (seconds): a group starting or ending its
    /// motion, a cellapp arriving or leaving.
    pub fn shifts(&self) -> Vec<u32> {
        let d = self.scenario.duration;
        let mut at: Vec<u32> = self.timeline.iter().map(|(t, _)| *t).collect();
        for g in self.npcs.groups.iter().chain(&self.clients.groups) {
            if g.motion == Motion::Wander && g.speed.is_none() {
                continue;
            }
            at.push(g.from.ceil() as u32);
            if g.until.is_finite() {
                at.push(g.until.ceil() as u32);
            }
        }
        at.retain(|t| (1..=d).contains(t));
        at.sort_unstable();
        at.dedup();
        at
    }

    /// The simulated world of this spec under `policy` (a replay's with
    /// its first sample's entities made).
    pub fn world(&self, policy: &'static str) -> SimWorld {
        let s = &self.scenario;
        let replay = self.replay.as_ref();
        let mut world = SimWorld::new(&SimConfig {
            seed: self.seed,
            cellapps: s.cellapps,
            baseapps: 1,
            npcs: 0,
            // A replay makes its entities itself.
            npcs_total: Some(if replay.is_some() { 0 } else { s.npcs }),
            clients: if replay.is_some() { 0 } else { s.clients },
            follow: replay.map(|r| r.follow()),
            size: self.side(),
            net: Conditions {
                min_delay_us: 200,
                max_delay_us: 2_000,
                loss: 0.0,
                ..Conditions::default()
            },
            check_every_step: false,
            cost: s.cost,
            policy,
            policy_params: self.policy_params.clone(),
            // With no group the game's own behaviours move everyone.
            crowd: (!self.npcs.groups.is_empty()).then(|| self.npcs.clone()),
            client_crowd: (!self.clients.groups.is_empty()).then(|| self.clients.clone()),
            game: self.game.clone(),
            ..SimConfig::default()
        });
        if let Some(r) = replay {
            r.begin(&mut world);
        }
        world
    }
}

/// The side of a scenario's space: its size, or about 200 m² per entity.
fn side(s: &Scenario) -> f32 {
    s.size
        .unwrap_or_else(|| (((s.npcs + s.clients) as f32 * 200.0).sqrt() / 100.0).ceil() * 100.0)
        .max(200.0)
}

/// A group in metres and seconds.
fn resolve(g: &GroupSpec, duration: u32, side: f32) -> Result<Group, String> {
    let m = |(x, z): (f32, f32)| (x * side, z * side);
    let motion = match &g.motion {
        MotionSpec::Wander => Motion::Wander,
        MotionSpec::Gather { track, radius } => {
            let track: Vec<(f32, f32, f32)> = track
                .iter()
                .map(|(w, x, z)| {
                    let (x, z) = m((*x, *z));
                    (w.at(duration), x, z)
                })
                .collect();
            if track.windows(2).any(|w| w[1].0 < w[0].0) {
                // Shares of the run and seconds can cross when the run is
                // short: say where they fell.
                let at: Vec<String> = track.iter().map(|w| format!("{} s", w.0)).collect();
                return Err(format!(
                    "waypoints must be in time order; in a run of {duration} s they fall at {}",
                    at.join(", ")
                ));
            }
            Motion::Gather {
                track,
                radius: radius * side,
            }
        }
        MotionSpec::Path {
            points,
            pace,
            looped,
            radius,
        } => Motion::Path {
            points: points.iter().map(|p| m(*p)).collect(),
            pace: *pace,
            looped: *looped,
            radius: radius * side,
        },
        MotionSpec::Converge { at, radius } => Motion::Converge {
            at: m(*at),
            radius: radius * side,
        },
    };
    let from = g.from.at(duration);
    let until = g.until.map_or(f32::INFINITY, |w| w.at(duration));
    if until < from {
        return Err(format!("until ({until} s) is before from ({from} s)"));
    }
    Ok(Group {
        share: g.share,
        from,
        until,
        speed: g.speed,
        motion,
    })
}

/// How far a run has come, for progress output.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Virtual seconds done.
    pub second: u32,
    /// Of how many.
    pub of: u32,
    /// The imbalance just sampled.
    pub imbalance: f64,
}

/// Applies a change to the cellapps.
fn apply(world: &mut SimWorld, change: Change) {
    match change {
        Change::Join(n) => {
            for _ in 0..n {
                world.add_cellapp();
            }
        }
        Change::Retire(n) => {
            for _ in 0..n {
                if let Some(app) = world.cellapps().last().copied() {
                    world.retire(app);
                }
            }
        }
    }
}

/// Runs one policy through a scenario and scores it. `progress` hears of
/// every virtual second.
pub fn run(spec: &Spec, policy: &'static str, progress: &mut dyn FnMut(Progress)) -> Score {
    let mut world = spec.world(policy);
    let mut sampler = Sampler::new(spec.frame_every);
    let duration = spec.duration();
    for (_, change) in spec.timeline.iter().filter(|(t, _)| *t == 0) {
        apply(&mut world, *change);
    }
    for second in 1..=duration {
        world.run_until(u64::from(second) * 1_000_000);
        if let (Some(r), Some(f)) = (spec.replaying(), world.follow()) {
            let t = f.replay_time(world.now);
            r.start(&mut world, t);
        }
        for (_, change) in spec.timeline.iter().filter(|(t, _)| *t == second) {
            apply(&mut world, *change);
        }
        let imbalance = sampler.sample(&world, second);
        progress(Progress {
            second,
            of: duration,
            imbalance,
        });
    }
    // Let every migration under way land and every view catch up before
    // counting: no more line moves, no more walking.
    world.set_policy(Box::new(tessera_manager::balance::Static));
    world.freeze();
    world.run_until(u64::from(duration + 3) * 1_000_000);
    sampler.finish(&world, spec)
}

/// What `summary.json` holds.
#[derive(Serialize)]
struct Summary<'a> {
    scenario: &'a str,
    seed: u64,
    cellapps: usize,
    entities: usize,
    #[serde(skip_serializing_if = "is_zero")]
    clients: usize,
    duration_s: u32,
    size_m: f32,
    shifts_s: Vec<u32>,
    policies: BTreeMap<&'a str, &'a Score>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The text of `summary.json` for runs of `spec` (the same scenario and
/// seed give the same bytes).
pub fn summary_json(spec: &Spec, scores: &[(&str, &Score)]) -> String {
    let s = &spec.scenario;
    let summary = Summary {
        scenario: &s.name,
        seed: spec.seed,
        cellapps: s.cellapps,
        entities: s.npcs,
        clients: s.clients,
        duration_s: s.duration,
        size_m: spec.side(),
        shifts_s: spec.shifts(),
        policies: scores.iter().map(|(p, s)| (*p, *s)).collect(),
    };
    // Plain data with string keys: serialising it cannot fail.
    serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n"
}
