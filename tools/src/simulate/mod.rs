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
use tessera_manager::balance;
use tessera_sim::scenario::{self, Overrides, Scenario, Spec};
use tessera_sim::score::Score;

mod figure;
pub mod sweep;

use sweep::Sweep;

/// `tessera sim`.
#[derive(Args, Clone, Debug)]
pub struct SimArgs {
    /// A built-in scenario (uniform, hotspot, moving-hotspot, converge,
    /// join, retire, town) or a scenario file.
    #[arg(long, default_value = "hotspot")]
    pub scenario: String,
    /// Replay a recording of a live world (`tessera up --record FILE`)
    /// instead of a scenario.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Run the scenario (or replay) once for each value of one parameter,
    /// every policy each time: KEY=A,B,C, KEY a scenario key (cellapps,
    /// npcs, clients, duration, size, seed, client_aoi, cost.real_us, ...)
    /// or POLICY.PARAM (tessera.dead_share, bigworld.dead_band, ...).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Print the built-in scenario's file and exit (a start for your own).
    #[arg(long)]
    pub print_scenario: bool,
    /// static, bigworld, tessera or one of the game's own (ignored with
    /// --compare).
    #[arg(long, default_value = "tessera")]
    pub policy: String,
    /// Run every policy (the built-in ones and the game's) on the same seed
    /// and print a table.
    #[arg(long)]
    pub compare: bool,
    /// Cellapps at the start (default: the scenario's).
    #[arg(long)]
    pub cellapps: Option<usize>,
    /// NPCs in the world (default: the scenario's).
    #[arg(long, alias = "npcs")]
    pub entities: Option<usize>,
    /// Simulated clients (default: the scenario's).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Virtual seconds to simulate (default: the scenario's).
    #[arg(long)]
    pub duration: Option<u32>,
    /// Drives everything: the same seed gives the same summary.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Space size in metres (default: the scenario's, or about 200 m² per
    /// entity).
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

fn check(a: &SimArgs, game: &tessera_game::Game) -> anyhow::Result<Vec<&'static str>> {
    let known = balance::with(game.policies()).names();
    let policies: Vec<&'static str> = if a.compare {
        known
    } else {
        match known.iter().find(|p| **p == a.policy) {
            Some(p) => vec![*p],
            None => bail!(
                "unknown policy {:?}; choose one of {}",
                a.policy,
                known.join(", ")
            ),
        }
    };
    if let Some(c) = a.cellapps {
        if !(1..=64).contains(&c) {
            bail!("--cellapps must be between 1 and 64");
        }
    }
    if let Some(e) = a.entities {
        if e > 1_000_000 {
            bail!("--entities must be at most 1000000");
        }
    }
    if let Some(c) = a.clients {
        if c > 100_000 {
            bail!("--clients must be at most 100000");
        }
    }
    if let Some(d) = a.duration {
        if d == 0 || d > 86_400 {
            bail!("--duration must be between 1 and 86400 seconds");
        }
    }
    if let Some(s) = a.size {
        if !(s.is_finite() && (200.0..=1_000_000.0).contains(&s)) {
            bail!("--size must be between 200 and 1000000 metres");
        }
    }
    Ok(policies)
}

/// The run `a` describes, with the swept parameter set to a value if
/// given; `recording` is `--replay`'s, read once.
fn spec(
    a: &SimArgs,
    game: &tessera_game::Game,
    recording: Option<&tessera::recording::Recording>,
    swept: Option<(&Sweep, f64)>,
) -> anyhow::Result<Spec> {
    // A sweep draws no frames.
    let frame_every = if swept.is_some() { 0 } else { a.frame_every };
    let spec = match (recording, &a.replay) {
        (Some(rec), Some(path)) => {
            if let Some((s, _)) = swept.filter(|(s, _)| !s.is_policy() && s.key != "seed") {
                bail!(
                    "--sweep {}: a replay's world is its recording's; sweep the seed or a policy's parameter",
                    s.key
                );
            }
            Spec::replay(
                rec.clone(),
                &path.display().to_string(),
                a.seed,
                frame_every,
                Some(game.clone()),
            )?
        }
        _ => {
            let mut scenario = Scenario::load(&a.scenario)?.with(&Overrides {
                duration: a.duration,
                cellapps: a.cellapps,
                npcs: a.entities,
                clients: a.clients,
                size: a.size,
            });
            if let Some((s, v)) = swept {
                scenario = s.apply(scenario, v)?;
            }
            Spec::new(scenario, a.seed, frame_every, Some(game.clone()))?
        }
    };
    match swept {
        Some((s, v)) => s.apply_to_spec(spec, v),
        None => Ok(spec),
    }
}

/// The largest recording `--replay` reads.
const MAX_RECORDING: u64 = 4 << 30;

/// Reads a recording file.
fn read_recording(path: &Path) -> anyhow::Result<tessera::recording::Recording> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?
        .len();
    if len > MAX_RECORDING {
        bail!(
            "the recording {} is {len} bytes, more than the {MAX_RECORDING} --replay reads",
            path.display()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the recording {}", path.display()))?;
    let rec = tessera::recording::read(&bytes)
        .with_context(|| format!("the recording {} cannot be replayed", path.display()))?;
    if let Some(at) = rec.torn {
        eprintln!(
            "warning: the recording {} ends in a sample cut short at byte {at} (its writer \
             stopped while appending it); replaying the {} whole samples before it",
            path.display(),
            rec.samples.len()
        );
    }
    Ok(rec)
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
    if a.print_scenario {
        match Scenario::built_in_text(&a.scenario) {
            Some(text) => {
                print!("{text}");
                return Ok(());
            }
            None => bail!(
                "no built-in scenario {:?}; choose one of {}",
                a.scenario,
                scenario::built_in_names()
            ),
        }
    }
    game.check()
        .with_context(|| format!("game {} does not fit its definitions", game.name()))?;
    let game_name = game.name().to_string();
    let policies = check(&a, &game)?;
    let recording = match &a.replay {
        Some(path) => Some(read_recording(path)?),
        None => None,
    };
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    if let Some(text) = &a.sweep {
        let sweep: Sweep = text.parse()?;
        let specs = sweep
            .values
            .iter()
            .map(|v| spec(&a, &game, recording.as_ref(), Some((&sweep, *v))))
            .collect::<anyhow::Result<Vec<Spec>>>()?;
        return run_sweep(&a, &sweep, &specs, &policies);
    }
    let spec = spec(&a, &game, recording.as_ref(), None)?;
    let s = &spec.scenario;
    println!(
        "game {game_name} · scenario {} · {} cellapps · {} NPCs · {} clients · {} s · seed {} · {:.0} m square",
        s.name,
        s.cellapps,
        s.npcs,
        s.clients,
        s.duration,
        spec.seed,
        spec.side()
    );
    let jobs: Vec<(&Spec, &'static str)> = policies.iter().map(|p| (&spec, *p)).collect();
    let scores: Vec<(&str, Score, f64)> = run_jobs(&jobs, a.quiet)
        .into_iter()
        .zip(&policies)
        .map(|((score, wall), p)| (*p, score, wall))
        .collect();
    for (policy, score, _) in &scores {
        let dir = a.out.join(policy);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (k, f) in score.frames.iter().enumerate() {
            let title = format!("{} · {}", s.name, policy);
            write(
                &dir.join(format!("frame-{:04}.svg", k + 1)),
                &figure::frame_svg(f, &title),
            )?;
            write(
                &dir.join(format!("frame-{:04}.json", k + 1)),
                &serde_json::to_string(&f.view)?,
            )?;
        }
    }
    let named: Vec<(&str, &Score)> = scores.iter().map(|(p, s, _)| (*p, s)).collect();
    write(
        &a.out.join("summary.json"),
        &scenario::summary_json(&spec, &named),
    )?;
    let title = format!(
        "{}: {} cellapps, {} NPCs, {} clients, seed {}",
        s.name, s.cellapps, s.npcs, s.clients, spec.seed
    );
    write(
        &a.out.join("imbalance.svg"),
        &figure::imbalance_svg(&named, &format!("max ÷ mean cellapp load · {title}")),
    )?;
    let frames: Vec<(&str, usize)> = scores
        .iter()
        .map(|(p, s, _)| (*p, s.frames.len()))
        .collect();
    write(
        &a.out.join("index.html"),
        &figure::page(&title, &frames, a.frame_every),
    )?;

    let duration = f64::from(spec.duration());
    print_table(&scores, duration);
    println!("wrote {}", a.out.join("summary.json").display());
    println!("frames: {}", a.out.join("index.html").display());
    let lost: u64 = scores
        .iter()
        .map(|(_, s, _)| s.entities_lost + s.entities_duplicated)
        .sum();
    if lost > 0 || scores.iter().any(|(_, s, _)| s.broken.is_some()) {
        bail!("entities were lost, duplicated, or an invariant broke (see above)");
    }
    let wrong: usize = scores
        .iter()
        .filter_map(|(_, s, _)| s.clients.as_ref())
        .map(|c| c.views_wrong_at_end)
        .sum();
    if wrong > 0 {
        bail!("{wrong} client views did not equal the truth at the end (see above)");
    }
    Ok(())
}

/// Runs each job (a spec and a policy), in parallel: one thread per core,
/// at most one per job. Each run is a function of its spec and policy
/// alone, so the order of finishing changes nothing. Returns each job's
/// score and wall-clock seconds, in the jobs' order.
fn run_jobs(jobs: &[(&Spec, &'static str)], quiet: bool) -> Vec<(Score, f64)> {
    let one = |(spec, policy): (&Spec, &'static str),
               progress: &mut dyn FnMut(scenario::Progress)| {
        let started = Instant::now();
        let score = scenario::run(spec, policy, progress);
        (score, started.elapsed().as_secs_f64())
    };
    if let [job] = jobs {
        let (_, policy) = *job;
        let started = Instant::now();
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
        let result = one(*job, &mut progress);
        if !quiet {
            eprintln!();
        }
        return vec![result];
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&job) = jobs.get(k) else { break };
                let result = one(job, &mut |_| {});
                if !quiet {
                    eprintln!(
                        "{:>9}: done ({} of {}), {:.1}x real time",
                        job.1,
                        k + 1,
                        jobs.len(),
                        f64::from(job.0.duration()) / result.1.max(1e-6)
                    );
                }
                if let Ok(mut d) = done.lock() {
                    d.push((k, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Runs every policy at every value of a sweep, prints one table and
/// writes `sweep.json` and `sweep.svg`.
fn run_sweep(
    a: &SimArgs,
    sweep: &Sweep,
    specs: &[Spec],
    policies: &[&'static str],
) -> anyhow::Result<()> {
    let name = specs.first().map_or("", |s| s.scenario.name.as_str());
    println!(
        "scenario {name} · sweep {} over {:?} · {} policies · seed {}",
        sweep.key,
        sweep.values,
        policies.len(),
        a.seed
    );
    let jobs: Vec<(&Spec, &'static str)> = specs
        .iter()
        .flat_map(|s| policies.iter().map(move |p| (s, *p)))
        .collect();
    let results = run_jobs(&jobs, a.quiet);
    let mut runs = Vec::new();
    println!(
        "{:>12} {:<9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>9} {:>5}",
        sweep.key, "policy", "p50", "p95", "max", "migr/s", "ghosts", "reversals", "lost"
    );
    for (k, ((_, policy), (score, _))) in jobs.iter().zip(&results).enumerate() {
        let value = sweep.values[k / policies.len()];
        println!(
            "{:>12} {:<9} {:>7.3} {:>7.3} {:>7.3} {:>8.2} {:>7.3} {:>9} {:>5}",
            value,
            policy,
            score.imbalance.p50,
            score.imbalance.p95,
            score.imbalance.max,
            score.migrations_per_s,
            score.ghosts_per_real,
            score.line_reversals,
            score.entities_lost
        );
        runs.push(sweep::Run {
            value,
            policy,
            score,
        });
    }
    let table = sweep::Table {
        scenario: name,
        key: &sweep.key,
        values: &sweep.values,
        runs,
    };
    write(
        &a.out.join("sweep.json"),
        &(serde_json::to_string_pretty(&table)? + "\n"),
    )?;
    let series: Vec<(&str, Vec<f64>)> = policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p95 = results
                .iter()
                .skip(i)
                .step_by(policies.len())
                .map(|(s, _)| s.imbalance.p95)
                .collect();
            (*p, p95)
        })
        .collect();
    write(
        &a.out.join("sweep.svg"),
        &figure::chart_svg(
            &format!("p95 of max ÷ mean cellapp load · {name}, seed {}", a.seed),
            &sweep.key,
            &sweep.values,
            &series,
            true,
        ),
    )?;
    println!("wrote {}", a.out.join("sweep.json").display());
    println!("chart: {}", a.out.join("sweep.svg").display());
    let lost: u64 = results
        .iter()
        .map(|(s, _)| s.entities_lost + s.entities_duplicated)
        .sum();
    if lost > 0 || results.iter().any(|(s, _)| s.broken.is_some()) {
        bail!("entities were lost, duplicated, or an invariant broke");
    }
    Ok(())
}

/// Prints the policies' scores as a table, with the clients' columns when
/// the world had clients.
fn print_table(scores: &[(&str, Score, f64)], duration: f64) {
    let with_clients = scores.iter().any(|(_, s, _)| s.clients.is_some());
    print!(
        "{:<9} {:>7} {:>7} {:>7} {:>12} {:>8} {:>7} {:>9} {:>11} {:>5}",
        "policy",
        "p50",
        "p95",
        "max",
        "recovery",
        "migr/s",
        "ghosts",
        "reversals",
        "over-budget",
        "lost"
    );
    if with_clients {
        print!(" {:>9} {:>7} {:>9}", "aoi/cl/s", "behind", "corrected");
    }
    println!(" {:>8}", "speed");
    for (p, s, wall) in scores {
        print!(
            "{:<9} {:>7.3} {:>7.3} {:>7.3} {:>12} {:>8.2} {:>7.3} {:>9} {:>11} {:>5}",
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
        );
        if with_clients {
            let c = s.clients.clone().unwrap_or_default();
            print!(
                " {:>9.1} {:>6.2}% {:>9}",
                c.aoi_updates_per_client_s,
                c.views_behind * 100.0,
                c.corrected
            );
        }
        println!(" {:>7.1}x", duration / wall.max(1e-6));
        if let Some(b) = &s.broken {
            eprintln!("{p}: invariant broken: {b}");
        }
        if let Some(w) = s.clients.as_ref().and_then(|c| c.first_wrong.as_ref()) {
            eprintln!("{p}: a view at the end: {w}");
        }
    }
}
