//! # tessera-tools
//!
//! Tessera's command line as a library: [`run`] takes a game
//! ([`tessera_game::Game`]) and gives it every `tessera` command with the
//! game's logic inside. Also [`viz`], which draws layout snapshots for
//! `tessera viz` and the simulator's frames, and [`http`], the HTTP client
//! the tools and the tests share. The stock `tessera` binary is
//! `run(tessera_demo::game())`.

mod bots;
mod ca;
mod cli;
pub mod config;
pub mod http;
mod roles;
pub mod simulate;
mod up;
pub mod viz;

pub use cli::{command, run};

/// The allocator a game's binary should use (`#[global_allocator] static
/// ALLOC: tessera_tools::Allocator = tessera_tools::Allocator;`): mimalloc.
/// The roles and the simulator allocate many small, short-lived buffers
/// (packets, messages, a behaviour's requests), where it is cheaper than
/// the system's; the simulator runs 15–20 % faster with it.
pub use mimalloc::MiMalloc as Allocator;
