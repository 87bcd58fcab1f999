//! The balancing scenarios of `tessera sim`: a world of NPCs whose crowd
//! does something (forms, walks, converges) while cellapps come or go, run
//! under one policy on the real cores, sampled once a (virtual) second.
//!
//! | scenario | what happens |
//! |---|---|
//! | `uniform` | everyone wanders; nothing shifts |
//! | `hotspot` | from 5 s, 30 % of the NPCs gather around one point and stay |
//! | `moving-hotspot` | the crowd gathers, then walks across the world |
//! | `converge` | from 5 s, everyone heads for the same place |
//! | `join` | a hotspot, and a cellapp arrives at a third of the run |
//! | `retire` | a hotspot, and a cellapp retires at a third of the run |

use serde::Serialize;
use std::collections::BTreeMap;
use std::str::FromStr;

use super::crowd::Crowd;
use super::net::Conditions;
use super::score::{Sampler, Score};
use super::world::{SimConfig, SimWorld};

/// A scenario's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Everyone wanders.
    Uniform,
    /// A crowd forms at one point.
    Hotspot,
    /// A crowd forms and walks across the world.
    MovingHotspot,
    /// Everyone heads for one place.
    Converge,
    /// A hotspot, and a cellapp arrives mid-run.
    Join,
    /// A hotspot, and a cellapp retires mid-run.
    Retire,
}

/// Every scenario, as `--scenario` spells them.
pub const SCENARIOS: [&str; 6] = [
    "uniform",
    "hotspot",
    "moving-hotspot",
    "converge",
    "join",
    "retire",
];

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Ok(match s {
            "uniform" => Scenario::Uniform,
            "hotspot" => Scenario::Hotspot,
            "moving-hotspot" => Scenario::MovingHotspot,
            "converge" => Scenario::Converge,
            "join" => Scenario::Join,
            "retire" => Scenario::Retire,
            _ => {
                return Err(format!(
                    "unknown scenario {s:?}; choose one of {}",
                    SCENARIOS.join(", ")
                ))
            }
        })
    }
}

impl Scenario {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Uniform => "uniform",
            Scenario::Hotspot => "hotspot",
            Scenario::MovingHotspot => "moving-hotspot",
            Scenario::Converge => "converge",
            Scenario::Join => "join",
            Scenario::Retire => "retire",
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Spec {
    /// What happens.
    pub scenario: Scenario,
    /// Cellapps (for `join`, how many there are once it has joined).
    pub cellapps: usize,
    /// NPCs in all.
    pub entities: usize,
    /// Virtual seconds.
    pub duration: u32,
    /// Drives everything.
    pub seed: u64,
    /// Space size in metres; by default about 200 m² per entity.
    pub size: Option<f32>,
    /// Seconds between two layout frames (0: none).
    pub frame_every: u32,
    /// The game whose world runs (the demo's if `None`); the scenario
    /// moves its NPC type.
    pub game: Option<tessera_game::Game>,
}

impl Spec {
    /// The side of the square space.
    pub fn side(&self) -> f32 {
        self.size
            .unwrap_or_else(|| ((self.entities as f32 * 200.0).sqrt() / 100.0).ceil() * 100.0)
            .max(200.0)
    }

    /// When the load shifts (seconds): the crowd starting to form, a
    /// cellapp arriving or leaving.
    pub fn shifts(&self) -> Vec<u32> {
        let third = self.duration / 3;
        match self.scenario {
            Scenario::Uniform => vec![],
            Scenario::Hotspot | Scenario::MovingHotspot | Scenario::Converge => vec![5],
            Scenario::Join | Scenario::Retire => vec![5, third],
        }
    }

    fn crowd(&self) -> Option<Crowd> {
        let s = self.side();
        let d = self.duration as f32;
        // Members cross the whole space in about 100 s.
        let speed = s / 100.0;
        let gather = |x: f32, z: f32, share: f32, radius: f32| Crowd {
            share,
            path: vec![(5.0, x * s, z * s)],
            radius: radius * s,
            speed,
        };
        match self.scenario {
            Scenario::Uniform => None,
            Scenario::Hotspot | Scenario::Join | Scenario::Retire => {
                Some(gather(0.3, 0.65, 0.3, 0.1))
            }
            Scenario::Converge => Some(gather(0.6, 0.4, 1.0, 0.15)),
            Scenario::MovingHotspot => Some(Crowd {
                share: 0.3,
                path: vec![
                    (5.0, 0.2 * s, 0.25 * s),
                    ((0.2 * d).max(5.0), 0.2 * s, 0.25 * s),
                    ((0.9 * d).max(6.0), 0.8 * s, 0.75 * s),
                ],
                radius: 0.1 * s,
                speed,
            }),
        }
    }

    /// The simulated world of this spec under `policy`.
    pub fn world(&self, policy: &'static str) -> SimWorld {
        let cellapps = match self.scenario {
            Scenario::Join => self.cellapps.saturating_sub(1).max(1),
            _ => self.cellapps.max(1),
        };
        SimWorld::new(&SimConfig {
            seed: self.seed,
            cellapps,
            baseapps: 1,
            npcs: 0,
            npcs_total: Some(self.entities),
            clients: 0,
            size: self.side(),
            net: Conditions {
                min_delay_us: 200,
                max_delay_us: 2_000,
                loss: 0.0,
                ..Conditions::default()
            },
            check_every_step: false,
            cost: Default::default(),
            policy,
            crowd: self.crowd(),
            game: self.game.clone().unwrap_or_else(tessera_demo::game),
            ..SimConfig::default()
        })
    }
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

/// Runs one policy through a scenario and scores it. `progress` hears of
/// every virtual second.
pub fn run(spec: &Spec, policy: &'static str, progress: &mut dyn FnMut(Progress)) -> Score {
    let mut world = spec.world(policy);
    let mut sampler = Sampler::new(spec.frame_every);
    let third = spec.duration / 3;
    for second in 1..=spec.duration {
        world.run_until(u64::from(second) * 1_000_000);
        if second == third {
            match spec.scenario {
                Scenario::Join => {
                    world.add_cellapp();
                }
                Scenario::Retire => {
                    if let Some(app) = world.cellapps().last().copied() {
                        world.retire(app);
                    }
                }
                _ => {}
            }
        }
        let imbalance = sampler.sample(&world, second);
        progress(Progress {
            second,
            of: spec.duration,
            imbalance,
        });
    }
    // Let every migration under way land before counting: no more line
    // moves, no more walking.
    world.set_policy(Box::new(tessera_manager::balance::Static));
    world.freeze();
    world.run_until(u64::from(spec.duration + 3) * 1_000_000);
    sampler.finish(&world, spec)
}

/// What `summary.json` holds.
#[derive(Serialize)]
struct Summary<'a> {
    scenario: &'a str,
    seed: u64,
    cellapps: usize,
    entities: usize,
    duration_s: u32,
    size_m: f32,
    shifts_s: Vec<u32>,
    policies: BTreeMap<&'a str, &'a Score>,
}

/// The text of `summary.json` for runs of `spec` (the same seed and
/// scenario give the same bytes).
pub fn summary_json(spec: &Spec, scores: &[(&str, &Score)]) -> String {
    let summary = Summary {
        scenario: spec.scenario.name(),
        seed: spec.seed,
        cellapps: spec.cellapps,
        entities: spec.entities,
        duration_s: spec.duration,
        size_m: spec.side(),
        shifts_s: spec.shifts(),
        policies: scores.iter().map(|(p, s)| (*p, *s)).collect(),
    };
    // Plain data with string keys: serialising it cannot fail.
    serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n"
}
