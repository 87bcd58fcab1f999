//! `tessera sim`: runs a balancing scenario on the real cores, faster than
//! real time, under one policy or (with `--compare`) every policy on the
//! same seed, prints a table, and writes `summary.json`, frames of the
//! layout (SVG, and JSON snapshots that `tessera viz` can draw) and
//! `index.html` that plays them into `--out`.

use anyhow::{bail, Context};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tessera_manager::balance::POLICIES;
use tessera_sim::scenario::{self, Scenario, Spec};
use tessera_sim::score::Score;

mod figure;

/// `tessera sim`.
#[derive(Args, Clone, Debug)]
pub struct SimArgs {
    /// uniform, hotspot, moving-hotspot, converge, join or retire.
    #[arg(long, default_value = "hotspot")]
    pub scenario: String,
    /// static, bigworld or tessera (ignored with --compare).
    #[arg(long, default_value = "tessera")]
    pub policy: String,
    /// Run every policy on the same seed and print a table.
    #[arg(long)]
    pub compare: bool,
    /// Cellapps.
    #[arg(long, default_value_t = 8)]
    pub cellapps: usize,
    /// NPCs in the world.
    #[arg(long, default_value_t = 20_000)]
    pub entities: usize,
    /// Virtual seconds to simulate.
    #[arg(long, default_value_t = 300)]
    pub duration: u32,
    /// Drives everything: the same seed gives the same summary.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Space size in metres (default: about 200 m² per entity).
    #[arg(long)]
    pub size: Option<f32>,
    /// Seconds between two layout frames.
    #[arg(long, default_value_t = 5)]
    pub frame_every: u32,
    /// Where summary.json, the frames and index.html go.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

fn check(a: &SimArgs) -> anyhow::Result<(Spec, Vec<&'static str>)> {
    let scenario: Scenario = a.scenario.parse().map_err(anyhow::Error::msg)?;
    let policies: Vec<&'static str> = if a.compare {
        POLICIES.to_vec()
    } else {
        match POLICIES.iter().find(|p| **p == a.policy) {
            Some(p) => vec![*p],
            None => bail!(
                "unknown policy {:?}; choose one of {}",
                a.policy,
                POLICIES.join(", ")
            ),
        }
    };
    if !(1..=64).contains(&a.cellapps) {
        bail!("--cellapps must be between 1 and 64");
    }
    if scenario == Scenario::Join && a.cellapps < 2 {
        bail!("the join scenario needs --cellapps of at least 2");
    }
    if a.entities == 0 || a.entities > 1_000_000 {
        bail!("--entities must be between 1 and 1000000");
    }
    if a.duration == 0 || a.duration > 86_400 {
        bail!("--duration must be between 1 and 86400 seconds");
    }
    if let Some(s) = a.size {
        if !(s.is_finite() && (200.0..=1_000_000.0).contains(&s)) {
            bail!("--size must be between 200 and 1000000 metres");
        }
    }
    let spec = Spec {
        scenario,
        cellapps: a.cellapps,
        entities: a.entities,
        duration: a.duration,
        seed: a.seed,
        size: a.size,
        frame_every: a.frame_every,
        game: None,
    };
    Ok((spec, policies))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn fmt_recovery(r: &[Option<u32>]) -> String {
    if r.is_empty() {
        return "-".into();
    }
    r.iter()
        .map(|v| v.map_or("never".to_string(), |s| format!("{s} s")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `tessera sim`.
pub fn run(a: SimArgs, game: tessera_game::Game) -> anyhow::Result<()> {
    let (mut spec, policies) = check(&a)?;
    game.check()
        .with_context(|| format!("game {} does not fit its definitions", game.name()))?;
    spec.game = Some(game);
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    println!(
        "game {} · scenario {} · {} cellapps · {} entities · {} s · seed {} · {:.0} m square",
        spec.game.as_ref().map_or("demo", |g| g.name()),
        spec.scenario.name(),
        spec.cellapps,
        spec.entities,
        spec.duration,
        spec.seed,
        spec.side()
    );
    let mut scores: Vec<(&str, Score, f64)> = Vec::new();
    for policy in &policies {
        let started = Instant::now();
        let quiet = a.quiet;
        let mut progress = |p: scenario::Progress| {
            if !quiet && (p.second.is_multiple_of(5) || p.second == p.of) {
                let wall = started.elapsed().as_secs_f64().max(1e-6);
                eprint!(
                    "\r{policy:>9}: {:>5}/{} s  imbalance {:>5.2}  {:>5.1}x real time ",
                    p.second,
                    p.of,
                    p.imbalance,
                    f64::from(p.second) / wall
                );
                let _ = std::io::stderr().flush();
            }
        };
        let score = scenario::run(&spec, policy, &mut progress);
        let wall = started.elapsed().as_secs_f64();
        if !quiet {
            eprintln!();
        }
        let dir = a.out.join(policy);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (k, f) in score.frames.iter().enumerate() {
            let title = format!("{} · {}", spec.scenario.name(), policy);
            write(
                &dir.join(format!("frame-{:04}.svg", k + 1)),
                &figure::frame_svg(f, &title),
            )?;
            write(
                &dir.join(format!("frame-{:04}.json", k + 1)),
                &serde_json::to_string(&f.view)?,
            )?;
        }
        scores.push((policy, score, wall));
    }
    let named: Vec<(&str, &Score)> = scores.iter().map(|(p, s, _)| (*p, s)).collect();
    write(
        &a.out.join("summary.json"),
        &scenario::summary_json(&spec, &named),
    )?;
    let title = format!(
        "{}: {} cellapps, {} entities, seed {}",
        spec.scenario.name(),
        spec.cellapps,
        spec.entities,
        spec.seed
    );
    write(
        &a.out.join("imbalance.svg"),
        &figure::imbalance_svg(&named, &format!("max ÷ mean cellapp load · {title}")),
    )?;
    let frames: Vec<(&str, usize)> = scores
        .iter()
        .map(|(p, s, _)| (*p, s.frames.len()))
        .collect();
    write(&a.out.join("index.html"), &figure::page(&title, &frames))?;

    println!(
        "{:<9} {:>7} {:>7} {:>7} {:>12} {:>8} {:>7} {:>9} {:>11} {:>5} {:>8}",
        "policy",
        "p50",
        "p95",
        "max",
        "recovery",
        "migr/s",
        "ghosts",
        "reversals",
        "over-budget",
        "lost",
        "speed"
    );
    let mut lost = 0;
    for (p, s, wall) in &scores {
        println!(
            "{:<9} {:>7.3} {:>7.3} {:>7.3} {:>12} {:>8.2} {:>7.3} {:>9} {:>11} {:>5} {:>7.1}x",
            p,
            s.imbalance.p50,
            s.imbalance.p95,
            s.imbalance.max,
            fmt_recovery(&s.recovery_s),
            s.migrations_per_s,
            s.ghosts_per_real,
            s.line_reversals,
            s.ticks_over_budget,
            s.entities_lost,
            f64::from(spec.duration) / wall.max(1e-6)
        );
        lost += s.entities_lost + s.entities_duplicated;
        if let Some(b) = &s.broken {
            eprintln!("{p}: invariant broken: {b}");
        }
    }
    println!("wrote {}", a.out.join("summary.json").display());
    println!("frames: {}", a.out.join("index.html").display());
    if lost > 0 || scores.iter().any(|(_, s, _)| s.broken.is_some()) {
        bail!("entities were lost, duplicated, or an invariant broke (see above)");
    }
    Ok(())
}
