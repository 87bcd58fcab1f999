//! `tessera ca`: the cluster's certificate authority. `init` makes it in a
//! data directory, with the world's self-signed public certificate beside
//! it; `issue` signs a certificate for one process into another directory,
//! for a machine that must not hold the CA key, and copies the public
//! certificate there, so that every public port of the world presents the
//! one certificate its clients trust. A process whose data directory holds
//! the CA key makes its own certificate at start, so `tessera up` (one
//! machine) needs neither.

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
    /// Make the cluster CA in a data directory, and the public certificate
    /// (both kept if they exist).
    Init {
        /// The data directory.
        #[arg(long, default_value = "data", env = "TESSERA_DATA")]
        data: PathBuf,
    },
    /// Sign a certificate for one process into its data directory, and copy
    /// the public certificate there.
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
            tessera::net::load_or_create_identity(&data).with_context(|| {
                format!("cannot make the public certificate in {}", data.display())
            })?;
            println!(
                "public certificate: {} (clients trust it)",
                tessera::net::cert_path(&data).display()
            );
        }
        CaCommand::Issue { data, out, days } => {
            let id = ca::issue(&data, &out, days as i64).with_context(|| {
                format!(
                    "cannot issue a certificate from the CA in {}",
                    data.display()
                )
            })?;
            println!("certificate {id} issued into {}", out.join("tls").display());
            if tessera::net::cert_path(&data).exists() {
                copy_public(&data, &out)?;
                println!(
                    "public certificate copied into {}",
                    out.join("tls").display()
                );
            }
        }
    }
    Ok(())
}

/// Copies the public certificate and its key from one data directory to
/// another (the key readable by its owner alone, as it was made).
fn copy_public(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    for file in ["cert.der", "key.der"] {
        let (src, dst) = (from.join("tls").join(file), to.join("tls").join(file));
        let bytes =
            std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
        tessera::net::write_file_atomic(&dst, &bytes, file == "key.der")
            .with_context(|| format!("cannot write {}", dst.display()))?;
    }
    Ok(())
}
