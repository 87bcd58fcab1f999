//! Tessera's command line, for any game: run a whole world on one machine
//! (`up`), one role of it (`manager`, `cellapp`, `baseapp`), bot clients
//! (`bots`), the load-balancing simulator (`sim`), draw a layout snapshot
//! (`viz`), or make the cluster's certificates (`ca`). A game's binary
//! calls [`run`] with its [`Game`]; every process `up` starts is that same
//! binary, so the game's logic is in all of them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use tessera_game::Game;

use crate::{bots, ca, config, roles, simulate, up};

/// Tessera: a seamless-world spatial server for MMO games.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "TESSERA_LOG_JSON")]
    log_json: bool,
    /// The settings file (default: `tessera.toml` here, if there is one).
    /// Environment variables `TESSERA_*` override it, and flags override both.
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a whole world on this machine: manager, cellapps, baseapps (and bots).
    Up(up::UpArgs),
    /// Run the manager.
    Manager(roles::ManagerArgs),
    /// Run a cellapp.
    Cellapp(roles::CellappArgs),
    /// Run a baseapp.
    Baseapp(roles::BaseappArgs),
    /// Run bot clients against a world.
    Bots(bots::BotsArgs),
    /// Score load-balancing policies on a simulated world, faster than real time.
    Sim(simulate::SimArgs),
    /// Make the cluster's certificate authority, or issue a process's certificate.
    Ca(ca::CaArgs),
    /// Draw a layout snapshot (a live manager's layout, or a frame of `tessera sim`) as SVG or PNG.
    Viz(VizArgs),
    /// Print the effective settings (of a role with its flags, if one is
    /// named) and where each came from.
    Config(ConfigArgs),
}

/// `tessera config`.
#[derive(Args)]
struct ConfigArgs {
    #[command(subcommand)]
    role: Option<Role>,
}

/// A role, with the flags it would be started with.
#[derive(Subcommand)]
enum Role {
    /// The manager's settings.
    Manager(roles::ManagerArgs),
    /// A cellapp's settings.
    Cellapp(roles::CellappArgs),
    /// A baseapp's settings.
    Baseapp(roles::BaseappArgs),
}

/// `tessera viz`.
#[derive(Args)]
struct VizArgs {
    /// An admin URL (`http://127.0.0.1:7080/api/spaces/1/layout`) or a
    /// snapshot file (`frame-0001.json` from `tessera sim`).
    #[arg(long)]
    from: String,
    /// The drawing: `.svg` or `.png`.
    #[arg(long)]
    out: PathBuf,
    /// The title above the map.
    #[arg(long, default_value = "Tessera")]
    title: String,
}

fn init_logs(json: bool, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The command line's definition: every command, flag and environment
/// variable `tessera` takes (for checks that files naming them stay true).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the command line with `game` inside: parses the arguments, checks
/// that the game's registrations fit its definitions, and runs the
/// command.
pub fn run(game: Game) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = cli.log_json;
    if json {
        // The processes `tessera up` starts log the same way. Nothing else
        // runs yet, so setting the environment is safe here.
        std::env::set_var("TESSERA_LOG_JSON", "1");
    }
    let file = cli.config.as_deref();
    match cli.command {
        Command::Sim(a) => {
            // One thread, no sockets: the simulated world's own log is noise.
            init_logs(json, "warn");
            simulate::run(a, game)
        }
        Command::Up(a) => {
            let loaded = config::load(file, &a)?;
            roles::check_policy(&loaded.settings, &game)?;
            serve(json, up::run(a, loaded))
        }
        Command::Manager(a) => {
            let s = config::load(file, &a)?.settings;
            roles::check_policy(&s, &game)?;
            serve(json, roles::manager(s, a.common.stop_on_eof, game))
        }
        Command::Cellapp(a) => {
            let s = config::load(file, &a)?.settings;
            serve_on(
                json,
                Threads::One,
                roles::cellapp(s, a.common.stop_on_eof, game),
            )
        }
        Command::Baseapp(a) => {
            let s = config::load(file, &a)?.settings;
            serve(json, roles::baseapp(s, a.common.stop_on_eof, game))
        }
        Command::Bots(a) => serve(json, bots::run(a, game)),
        Command::Config(a) => {
            let loaded = match &a.role {
                None => config::load(file, &config::NoFlags {})?,
                Some(Role::Manager(f)) => config::load(file, f)?,
                Some(Role::Cellapp(f)) => config::load(file, f)?,
                Some(Role::Baseapp(f)) => config::load(file, f)?,
            };
            match &loaded.file {
                Some(path) => println!(
                    "# settings: defaults < {} < TESSERA_* < flags",
                    path.display()
                ),
                None => println!("# settings: defaults < TESSERA_* < flags (no settings file)"),
            }
            print!("{}", loaded.render());
            Ok(())
        }
        Command::Ca(a) => {
            init_logs(json, "warn");
            ca::run(a)
        }
        Command::Viz(a) => {
            init_logs(json, "warn");
            crate::viz::render(&a.from, &a.out, &a.title)?;
            println!("wrote {}", a.out.display());
            Ok(())
        }
    }
}

/// The threads a networked command's runtime runs its tasks on.
enum Threads {
    /// The calling thread alone. A cellapp is one core's work (a machine
    /// runs one per core), so its tick and its links share one thread and
    /// never hand work across threads.
    One,
    /// A worker per core: a baseapp relays every client of its share, and
    /// the bots and the manager's logins spread over the cores.
    PerCore,
}

/// Runs a networked command with a worker per core.
fn serve(
    json: bool,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    serve_on(json, Threads::PerCore, run)
}

/// Runs a networked command on the threads given.
fn serve_on(
    json: bool,
    threads: Threads,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    init_logs(json, "info");
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build()?;
    let result = runtime.block_on(run);
    // A read of standard input still waiting (`--stop-on-eof`, when the
    // process was asked to stop by a signal instead) must not hold the exit.
    runtime.shutdown_background();
    result
}
