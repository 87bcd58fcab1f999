//! `tessera ca`: the cluster's certificate authority. `init` makes it in a
//! data directory; `issue` signs a certificate for one process into another
//! directory, for a machine that must not hold the CA key. A process whose
//! data directory holds the CA key makes its own certificate at start, so
//! `tessera up` (one machine) needs neither.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use tessera::net::ca;

/// `tessera ca`.
#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make the cluster CA in a data directory (kept if it exists).
    Init {
        /// The data directory.
        #[arg(long, default_value = "data", env = "TESSERA_DATA")]
        data: PathBuf,
    },
    /// Sign a certificate for one process into its data directory.
    Issue {
        /// The data directory holding the CA.
        #[arg(long, default_value = "data", env = "TESSERA_DATA")]
        data: PathBuf,
        /// The process's data directory (gets tls/node.der, tls/node.key.der
        /// and tls/ca.der).
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid (1–3650).
        #[arg(long, default_value_t = ca::DEFAULT_DAYS as u64,
              value_parser = clap::value_parser!(u64).range(1..=3650))]
        days: u64,
    },
}

/// Runs `tessera ca …`.
pub fn run(a: CaArgs) -> anyhow::Result<()> {
    match a.command {
        CaCommand::Init { data } => {
            let what = ca::init(&data)
                .with_context(|| format!("cannot make the cluster CA in {}", data.display()))?;
            let path = ca::ca_path(&data);
            match what {
                ca::Init::Created => println!("cluster CA created: {}", path.display()),
                ca::Init::Existing => println!("cluster CA kept: {}", path.display()),
            }
        }
        CaCommand::Issue { data, out, days } => {
            let id = ca::issue(&data, &out, days as i64).with_context(|| {
                format!(
                    "cannot issue a certificate from the CA in {}",
                    data.display()
                )
            })?;
            println!("certificate {id} issued into {}", out.join("tls").display());
        }
    }
    Ok(())
}
