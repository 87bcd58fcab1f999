//! `tessera up`: a whole world on one machine. Starts the manager, cellapps,
//! baseapps (and bots) as child processes of this binary, prints where to log
//! in and where the admin API is, and on Ctrl-C stops them in order — bots,
//! then baseapps (which save every entity), then cellapps, then the manager.
//!
//! Children run in their own process group so Ctrl-C reaches only this
//! process; each child stops cleanly when its standard input closes, which
//! also happens if this process dies.

use crate::config::Loaded;
use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `tessera up`: how many of each process, and the manager's flags (which,
/// like `--data`, override the settings of their names).
#[derive(Args, Clone, Debug, Serialize)]
pub struct UpArgs {
    /// Cellapp processes (one cell each).
    #[arg(long, default_value_t = 4)]
    #[serde(skip)]
    pub cellapps: usize,
    /// Baseapp processes.
    #[arg(long, default_value_t = 1)]
    #[serde(skip)]
    pub baseapps: usize,
    /// Server-driven entities (spread over the cellapps).
    #[arg(long, default_value_t = 200)]
    #[serde(skip)]
    pub npcs: usize,
    /// Bot clients to start once the world is up.
    #[arg(long, default_value_t = 0)]
    #[serde(skip)]
    pub bots: usize,
    /// Bot behaviour.
    #[arg(long, default_value = "wander")]
    #[serde(skip)]
    pub behavior: String,
    /// Data directory: certificate and SQLite database (default `data`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    #[serde(rename = "manager")]
    pub world: crate::roles::WorldArgs,
}

struct Proc {
    name: String,
    child: Child,
}

fn command(args: &[String]) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("cannot find the tessera binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // Own process group: the terminal's Ctrl-C reaches only `tessera up`.
    cmd.as_std_mut().process_group(0);
    Ok(cmd)
}

/// Starts a child and waits until it prints a line starting with `ready`.
async fn spawn(name: &str, args: Vec<String>, ready: &str) -> anyhow::Result<(Proc, Vec<String>)> {
    let mut child = command(&args)?
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("child has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            let done = line.starts_with(ready);
            seen.push(line);
            if done {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Ok(Err(_)) => bail!("{name} exited before it was ready"),
        Err(_) => bail!("{name} was not ready within 30 s"),
    }
    // Keep draining its output so it never blocks on a full pipe.
    let tag = name.to_string();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{tag}] {line}");
        }
    });
    Ok((
        Proc {
            name: name.to_string(),
            child,
        },
        seen,
    ))
}

async fn stop(procs: &mut Vec<Proc>) {
    for p in procs.iter_mut() {
        // Closing stdin asks the child to stop cleanly.
        drop(p.child.stdin.take());
    }
    for p in procs.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(15), p.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("{} exited with {status}", p.name),
            _ => {
                eprintln!("{} did not stop in time; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
    procs.clear();
}

/// Runs `tessera up`.
/// Connections one address may hold under `up`: its bots all connect from
/// the loopback address.
const UP_CONNS_PER_ADDR: usize = 20_000;

pub async fn run(a: UpArgs, loaded: Loaded) -> anyhow::Result<()> {
    anyhow::ensure!(a.cellapps >= 1, "--cellapps must be at least 1");
    anyhow::ensure!(a.baseapps >= 1, "--baseapps must be at least 1");
    let s = &loaded.settings;
    let world = &s.manager;
    std::fs::create_dir_all(&s.data)
        .with_context(|| format!("cannot create data directory {}", s.data.display()))?;
    // Create the certificates once, before children race to do it: the
    // public ports' certificate, and the cluster CA each child signs its
    // own certificate with.
    tessera::net::load_or_create_identity(&s.data)?;
    tessera::net::ca::init(&s.data)?;
    let data = s.data.display().to_string();
    // Every child reads the same settings file and environment.
    let file: Vec<String> = match &loaded.file {
        Some(path) => vec!["--config".into(), path.display().to_string()],
        None => Vec::new(),
    };
    let common = |role: &str| -> Vec<String> {
        let mut args = vec![role.into()];
        args.extend(file.iter().cloned());
        args.extend([
            "--data".into(),
            data.clone(),
            "--stop-on-eof".into(),
            // The world and its bots share one machine and one address.
            "--conns-per-addr".into(),
            UP_CONNS_PER_ADDR.to_string(),
            "--conn-rate-per-addr".into(),
            "0".into(),
        ]);
        args
    };
    let mut manager = common("manager");
    manager.extend([
        "--internal".into(),
        world.internal.to_string(),
        "--login".into(),
        world.login.to_string(),
        "--admin".into(),
        world.admin.to_string(),
        "--size".into(),
        world.size.to_string(),
        "--policy".into(),
        world.policy.clone(),
        "--balance-floor".into(),
        world.balance_floor.to_string(),
        // Under `up` the manager is the first of its world: no apps of an
        // earlier run can come back to it.
        "--rejoin-window-ms".into(),
        "0".into(),
        // Its bots log in from this machine's one address.
        "--login-limits".into(),
        "one-address".into(),
    ]);
    for host in &world.admin_hosts {
        manager.extend(["--admin-host".into(), host.clone()]);
    }
    if let Some(file) = &world.record {
        manager.extend(["--record".into(), file.display().to_string()]);
    }
    let (manager, lines) = spawn("manager", manager, "admin:").await?;
    let mut managers = vec![manager];
    for l in lines {
        println!("{l}");
    }
    // The manager made it on its first start; every change through the
    // admin API takes it.
    let token_file = tessera_manager::admin::guard::token_path(&s.data);
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read the admin token {}", token_file.display()))?;
    println!(
        "admin token: {} (in {}; send it as `Authorization: Bearer …` to change anything)",
        token.trim(),
        token_file.display()
    );
    let mut cellapps = Vec::new();
    let mut baseapps = Vec::new();
    let mut bots = Vec::new();
    let started = async {
        for i in 0..a.cellapps {
            let share = a.npcs / a.cellapps + usize::from(i < a.npcs % a.cellapps);
            let mut args = common("cellapp");
            args.extend([
                "--manager".into(),
                world.internal.to_string(),
                "--npcs".into(),
                share.to_string(),
                "--seed".into(),
                (i + 1).to_string(),
            ]);
            cellapps.push(
                spawn(&format!("cellapp-{}", i + 1), args, "cellapp")
                    .await?
                    .0,
            );
        }
        for i in 0..a.baseapps {
            let mut args = common("baseapp");
            args.extend(["--manager".into(), world.internal.to_string()]);
            baseapps.push(
                spawn(&format!("baseapp-{}", i + 1), args, "baseapp")
                    .await?
                    .0,
            );
        }
        println!(
            "world up: {} cellapp(s), {} baseapp(s), {} NPCs; Ctrl-C stops it",
            a.cellapps, a.baseapps, a.npcs
        );
        if a.bots > 0 {
            let args = vec![
                "bots".into(),
                "--login".into(),
                world.login.to_string(),
                "--count".into(),
                a.bots.to_string(),
                "--duration".into(),
                "0".into(),
                "--behavior".into(),
                a.behavior.clone(),
                "--cert".into(),
                tessera::net::cert_path(&s.data).display().to_string(),
                "--stop-on-eof".into(),
            ];
            bots.push(spawn("bots", args, "bots").await?.0);
        }
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = started => r.map(|_| true),
        _ = tokio::signal::ctrl_c() => Ok(false),
    };
    if matches!(result, Ok(true)) {
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("stopping the world...");
    stop(&mut bots).await;
    stop(&mut baseapps).await;
    stop(&mut cellapps).await;
    stop(&mut managers).await;
    println!("world stopped; everything saved");
    result.map(|_| ())
}
