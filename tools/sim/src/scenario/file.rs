//! The scenario file: a TOML description of a balancing experiment — the
//! world's size and population, cellapps joining and retiring over time,
//! groups of NPCs and simulated clients with how they move, and the cost
//! model. The built-in scenarios are files of this format compiled into the
//! binary; `docs/balancing.md` documents every key.
//!
//! Reading a file checks everything that does not depend on the run's
//! overrides (`--duration`, `--npcs`, ...); [`super::Spec::new`] checks the
//! rest once they are known. Every refusal names the key, and the line
//! where the file has one.

use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use tessera_cellapp::load::CostModel;
use toml::Spanned;

use crate::crowd::Motion;

/// The built-in scenarios, by name, as their files read.
pub const BUILT_IN: [(&str, &str); 7] = [
    ("uniform", include_str!("../../scenarios/uniform.toml")),
    ("hotspot", include_str!("../../scenarios/hotspot.toml")),
    (
        "moving-hotspot",
        include_str!("../../scenarios/moving-hotspot.toml"),
    ),
    ("converge", include_str!("../../scenarios/converge.toml")),
    ("join", include_str!("../../scenarios/join.toml")),
    ("retire", include_str!("../../scenarios/retire.toml")),
    ("town", include_str!("../../scenarios/town.toml")),
];

/// Why a scenario cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a scenario (TOML's own message names the line).
    #[error("scenario {origin}: {message}")]
    Syntax {
        /// The file or built-in name.
        origin: String,
        /// TOML's message.
        message: String,
    },
    /// A value is out of bounds or does not fit the rest.
    #[error("scenario {origin}: {key}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Value {
        /// The file or built-in name.
        origin: String,
        /// The key, as `group[2].share`.
        key: String,
        /// Its line, where known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Neither a built-in name nor a file.
    #[error("no scenario {0:?}: neither a built-in ({names}) nor a file", names = built_in_names())]
    Unknown(String),
}

/// The built-in scenarios' names, comma-separated.
pub fn built_in_names() -> String {
    BUILT_IN.map(|(n, _)| n).join(", ")
}

/// A moment of the run: seconds from the start, or a share of the run's
/// duration (so a scenario keeps its shape under `--duration`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum When {
    /// Seconds.
    Seconds(f32),
    /// This share (0 to 1) of the duration.
    Share(f32),
}

impl When {
    /// The second it falls on in a run of `duration` seconds (a share
    /// falls on the nearest whole second).
    pub fn at(self, duration: u32) -> f32 {
        match self {
            When::Seconds(s) => s,
            When::Share(f) => (f64::from(duration) * f64::from(f)).round() as f32,
        }
    }

    /// Reads a number of seconds, `"N%"` or `"a/b"` of the run.
    fn read(raw: &RawWhen) -> Result<When, String> {
        let bad = || {
            Err(format!(
                "{raw} is not a time: give seconds (5), a percentage (\"20%\") or a fraction (\"1/3\") of the run"
            ))
        };
        let when = match raw {
            RawWhen::Seconds(s) => When::Seconds(*s as f32),
            RawWhen::Text(t) => {
                let t = t.trim();
                if let Some(p) = t.strip_suffix('%') {
                    match p.trim().parse::<f32>() {
                        Ok(p) => When::Share(p / 100.0),
                        Err(_) => return bad(),
                    }
                } else if let Some((a, b)) = t.split_once('/') {
                    match (a.trim().parse::<f32>(), b.trim().parse::<f32>()) {
                        (Ok(a), Ok(b)) if b > 0.0 => When::Share(a / b),
                        _ => return bad(),
                    }
                } else {
                    return bad();
                }
            }
        };
        match when {
            When::Seconds(s) if !(s.is_finite() && s >= 0.0) => {
                Err(format!("{raw} must be zero or more seconds"))
            }
            When::Share(f) if !(f.is_finite() && (0.0..=1.0).contains(&f)) => {
                Err(format!("{raw} must fall within the run (0 to 100 %)"))
            }
            w => Ok(w),
        }
    }
}

/// Which population a group moves.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// The NPCs.
    Npcs,
    /// The simulated clients.
    Clients,
}

/// A group's motion as the file gives it: points and radii as fractions of
/// the space's side, times as [`When`].
pub type MotionSpec = Motion<When>;

/// A group as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    /// Which population.
    pub who: Who,
    /// Its share of that population.
    pub share: f32,
    /// When it starts.
    pub from: When,
    /// When it stops (members wander after).
    pub until: Option<When>,
    /// Walking speed, metres per second.
    pub speed: Option<f32>,
    /// What it does.
    pub motion: MotionSpec,
    /// Its line in the file.
    pub line: Option<usize>,
}

/// A change to the cellapps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// This many cellapps arrive.
    Join(usize),
    /// This many retire (the newest first).
    Retire(usize),
}

/// A change at a moment of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    /// When.
    pub at: When,
    /// What.
    pub change: Change,
    /// Its line in the file.
    pub line: Option<usize>,
}

/// A scenario, read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What happens, in a line.
    pub about: String,
    /// Where it came from (a built-in's name or a file's path), for errors.
    pub origin: String,
    /// Virtual seconds.
    pub duration: u32,
    /// Cellapps at the start.
    pub cellapps: usize,
    /// NPCs.
    pub npcs: usize,
    /// Simulated clients.
    pub clients: usize,
    /// The square space's side in metres (`None`: about 200 m² per entity).
    pub size: Option<f32>,
    /// The clients' AoI radius (`None`: the player type's).
    pub client_aoi: Option<f32>,
    /// What ticks cost.
    pub cost: CostModel,
    /// Cellapps arriving and retiring.
    pub events: Vec<Event>,
    /// How the populations move.
    pub groups: Vec<GroupSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    about: String,
    duration: Spanned<usize>,
    cellapps: Spanned<usize>,
    npcs: Option<Spanned<usize>>,
    clients: Option<Spanned<usize>>,
    size: Option<Spanned<f32>>,
    client_aoi: Option<Spanned<f32>>,
    cost: Option<Spanned<RawCost>>,
    #[serde(default, rename = "event")]
    events: Vec<Spanned<RawEvent>>,
    #[serde(default, rename = "group")]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCost {
    real_us: Option<f32>,
    witness_us: Option<f32>,
    ghost_us: Option<f32>,
    migration_us: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: RawWhen,
    join: Option<usize>,
    retire: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    who: Who,
    #[serde(default = "one")]
    share: f32,
    from: Option<RawWhen>,
    until: Option<RawWhen>,
    speed: Option<f32>,
    motion: RawMotion,
    at: Option<[f32; 2]>,
    radius: Option<f32>,
    waypoints: Option<Vec<(RawWhen, f32, f32)>>,
    path: Option<Vec<[f32; 2]>>,
    pace: Option<f32>,
    #[serde(default, rename = "loop")]
    looped: bool,
}

fn one() -> f32 {
    1.0
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawMotion {
    Wander,
    Gather,
    Waypoints,
    Path,
    Converge,
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum RawWhen {
    Seconds(f64),
    Text(String),
}

impl std::fmt::Display for RawWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawWhen::Seconds(s) => write!(f, "{s}"),
            RawWhen::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Checks one value: `ok` or the error naming `key` at `span`.
struct Checker<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn fail(&self, key: &str, span: Option<&Range<usize>>, message: String) -> ScenarioError {
        ScenarioError::Value {
            origin: self.origin.to_string(),
            key: key.to_string(),
            line: span.map(|s| line_of(self.text, s)),
            message,
        }
    }

    fn within(
        &self,
        key: &str,
        span: &Range<usize>,
        v: f32,
        range: std::ops::RangeInclusive<f32>,
    ) -> Result<f32, ScenarioError> {
        if v.is_finite() && range.contains(&v) {
            Ok(v)
        } else {
            Err(self.fail(
                key,
                Some(span),
                format!(
                    "{v} is out of bounds ({} to {})",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }
}

impl Scenario {
    /// The built-in scenario `name`, or the file at `name`.
    pub fn load(name: &str) -> Result<Scenario, ScenarioError> {
        if let Some((n, text)) = BUILT_IN.iter().find(|(n, _)| *n == name) {
            return Scenario::parse(text, n);
        }
        let path = Path::new(name);
        if !path.exists() {
            return Err(ScenarioError::Unknown(name.to_string()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: name.to_string(),
            source,
        })?;
        Scenario::parse(&text, name)
    }

    /// The built-in scenario `name`'s file, as shipped.
    pub fn built_in_text(name: &str) -> Option<&'static str> {
        BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// Reads a scenario file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let c = Checker { origin, text };
        let count = |key: &str, v: &Spanned<usize>, range: std::ops::RangeInclusive<usize>| {
            if range.contains(v.get_ref()) {
                Ok(*v.get_ref())
            } else {
                Err(c.fail(
                    key,
                    Some(&v.span()),
                    format!(
                        "{} is out of bounds ({} to {})",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                ))
            }
        };
        let duration = count("duration", &raw.duration, 1..=86_400)? as u32;
        let cellapps = count("cellapps", &raw.cellapps, 1..=64)?;
        let npcs = match &raw.npcs {
            Some(n) => count("npcs", n, 0..=1_000_000)?,
            None => 0,
        };
        let clients = match &raw.clients {
            Some(n) => count("clients", n, 0..=100_000)?,
            None => 0,
        };
        let size = match &raw.size {
            Some(s) => Some(c.within("size", &s.span(), *s.get_ref(), 200.0..=1_000_000.0)?),
            None => None,
        };
        let client_aoi = match &raw.client_aoi {
            Some(s) => Some(c.within("client_aoi", &s.span(), *s.get_ref(), 1.0..=10_000.0)?),
            None => None,
        };
        let mut cost = CostModel::default();
        if let Some(raw_cost) = &raw.cost {
            let span = raw_cost.span();
            let r = raw_cost.get_ref();
            let set = |slot: &mut f32, key: &str, v: Option<f32>| -> Result<(), ScenarioError> {
                if let Some(v) = v {
                    *slot = c.within(&format!("cost.{key}"), &span, v, 0.0..=1_000_000.0)?;
                }
                Ok(())
            };
            set(&mut cost.real_us, "real_us", r.real_us)?;
            set(&mut cost.witness_us, "witness_us", r.witness_us)?;
            set(&mut cost.ghost_us, "ghost_us", r.ghost_us)?;
            set(&mut cost.migration_us, "migration_us", r.migration_us)?;
        }
        let mut events = Vec::new();
        for (i, e) in raw.events.iter().enumerate() {
            let span = e.span();
            let key = |k: &str| format!("event[{}].{k}", i + 1);
            let r = e.get_ref();
            let at = When::read(&r.at).map_err(|m| c.fail(&key("at"), Some(&span), m))?;
            let change = match (r.join, r.retire) {
                (Some(n), None) if n >= 1 => Change::Join(n),
                (None, Some(n)) if n >= 1 => Change::Retire(n),
                _ => {
                    return Err(c.fail(
                        &format!("event[{}]", i + 1),
                        Some(&span),
                        "give one of join = N or retire = N, N at least 1".into(),
                    ))
                }
            };
            events.push(Event {
                at,
                change,
                line: Some(line_of(text, &span)),
            });
        }
        let mut groups = Vec::new();
        for (i, g) in raw.groups.iter().enumerate() {
            groups.push(group(&c, i + 1, g)?);
        }
        for who in [Who::Npcs, Who::Clients] {
            let total: f32 = groups
                .iter()
                .filter(|g| g.who == who)
                .map(|g| g.share)
                .sum();
            if total > 1.0 + 1e-4 {
                let line = groups.iter().rfind(|g| g.who == who).and_then(|g| g.line);
                return Err(ScenarioError::Value {
                    origin: origin.to_string(),
                    key: "group.share".into(),
                    line,
                    message: format!(
                        "the groups of {} take {:.0} % of them; at most 100 %",
                        if who == Who::Npcs { "npcs" } else { "clients" },
                        total * 100.0
                    ),
                });
            }
        }
        Ok(Scenario {
            name: raw.name,
            about: raw.about,
            origin: origin.to_string(),
            duration,
            cellapps,
            npcs,
            clients,
            size,
            client_aoi,
            cost,
            events,
            groups,
        })
    }
}

/// Reads group `n` (1-based).
fn group(c: &Checker<'_>, n: usize, g: &Spanned<RawGroup>) -> Result<GroupSpec, ScenarioError> {
    let span = g.span();
    let r = g.get_ref();
    let key = |k: &str| format!("group[{n}].{k}");
    let fail = |k: &str, m: String| c.fail(&key(k), Some(&span), m);
    let share = c.within(&key("share"), &span, r.share, 0.0..=1.0)?;
    let speed = match r.speed {
        Some(s) if !(s.is_finite() && s > 0.0 && s <= 1_000.0) => {
            return Err(fail(
                "speed",
                format!("{s} is out of bounds (above 0, up to 1000 m/s)"),
            ))
        }
        s => s,
    };
    let when = |k: &str, w: &RawWhen| When::read(w).map_err(|m| fail(k, m));
    let point = |k: &str, p: [f32; 2]| -> Result<(f32, f32), ScenarioError> {
        if p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
            Ok((p[0], p[1]))
        } else {
            Err(fail(
                k,
                format!("{p:?} is outside the space: points are fractions of its side, 0 to 1"),
            ))
        }
    };
    let radius = || -> Result<f32, ScenarioError> {
        match r.radius {
            Some(v) => c.within(&key("radius"), &span, v, 0.0..=1.0),
            None => Err(fail(
                "radius",
                "missing: a fraction of the space's side".into(),
            )),
        }
    };
    let needs = |k: &str, what: &str| fail(k, format!("missing: motion = {what} needs it"));
    // Keys that belong to other motions are refused, not ignored.
    let allowed: &[&str] = match r.motion {
        RawMotion::Wander => &[],
        RawMotion::Gather | RawMotion::Converge => &["at", "radius"],
        RawMotion::Waypoints => &["waypoints", "radius"],
        RawMotion::Path => &["path", "pace", "loop", "radius"],
    };
    let given = [
        ("at", r.at.is_some()),
        ("radius", r.radius.is_some()),
        ("waypoints", r.waypoints.is_some()),
        ("path", r.path.is_some()),
        ("pace", r.pace.is_some()),
        ("loop", r.looped),
    ];
    if let Some((k, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(fail(k, "does not apply to this motion".into()));
    }
    let mut from = match &r.from {
        Some(w) => when("from", w)?,
        None => When::Seconds(0.0),
    };
    let motion = match r.motion {
        RawMotion::Wander => MotionSpec::Wander,
        RawMotion::Gather => MotionSpec::Gather {
            track: vec![{
                let (x, z) = point("at", r.at.ok_or_else(|| needs("at", "gather"))?)?;
                (from, x, z)
            }],
            radius: radius()?,
        },
        RawMotion::Waypoints => {
            let raw = r
                .waypoints
                .as_ref()
                .ok_or_else(|| needs("waypoints", "waypoints"))?;
            if raw.is_empty() {
                return Err(fail(
                    "waypoints",
                    "empty: give at least one [when, x, z]".into(),
                ));
            }
            let mut track = Vec::new();
            for (w, x, z) in raw {
                let (x, z) = point("waypoints", [*x, *z])?;
                track.push((when("waypoints", w)?, x, z));
            }
            // The group starts with its first waypoint.
            if r.from.is_none() {
                from = track[0].0;
            }
            MotionSpec::Gather {
                track,
                radius: radius()?,
            }
        }
        RawMotion::Path => {
            let raw = r.path.as_ref().ok_or_else(|| needs("path", "path"))?;
            if raw.len() < 2 {
                return Err(fail("path", "give at least two points [x, z]".into()));
            }
            let points = raw
                .iter()
                .map(|p| point("path", *p))
                .collect::<Result<Vec<_>, _>>()?;
            let pace = match r.pace {
                Some(p) => c.within(&key("pace"), &span, p, 0.001..=1_000.0)?,
                None => return Err(needs("pace", "path")),
            };
            MotionSpec::Path {
                points,
                pace,
                looped: r.looped,
                radius: r.radius.map_or(Ok(0.0), |_| radius())?,
            }
        }
        RawMotion::Converge => MotionSpec::Converge {
            at: point("at", r.at.ok_or_else(|| needs("at", "converge"))?)?,
            radius: radius()?,
        },
    };
    let until = match &r.until {
        Some(w) => Some(when("until", w)?),
        None => None,
    };
    Ok(GroupSpec {
        who: r.who,
        share,
        from,
        until,
        speed,
        motion,
        line: Some(line_of(c.text, &span)),
    })
}

#[cfg(test)]
mod tests;
