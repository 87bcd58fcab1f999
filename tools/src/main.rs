//! `tessera`: the stock binary, which runs the demo world. A game's own
//! binary is this file with its own game.

#[global_allocator]
static ALLOC: tessera_tools::Allocator = tessera_tools::Allocator;

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_demo::game())
}
