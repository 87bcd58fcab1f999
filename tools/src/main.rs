//! `tessera`: run a whole world on one machine (`up`), one role of it
//! (`manager`, `cellapp`, `baseapp`), bot clients (`bots`), or the
//! load-balancing simulator (`sim`).

mod bots;
mod roles;
mod simulate;
mod up;

use clap::{Parser, Subcommand};

/// Tessera: a seamless-world spatial server for MMO games.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "TESSERA_LOG_JSON")]
    log_json: bool,
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = cli.log_json;
    match cli.command {
        Command::Sim(a) => {
            // One thread, no sockets: the simulated world's own log is noise.
            init_logs(json, "warn");
            simulate::run(a)
        }
        Command::Up(a) => serve(json, up::run(a)),
        Command::Manager(a) => serve(json, roles::manager(a)),
        Command::Cellapp(a) => serve(json, roles::cellapp(a)),
        Command::Baseapp(a) => serve(json, roles::baseapp(a)),
        Command::Bots(a) => serve(json, bots::run(a)),
    }
}

/// Runs a networked command on a multi-threaded runtime.
fn serve(
    json: bool,
    run: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    init_logs(json, "info");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run)
}
