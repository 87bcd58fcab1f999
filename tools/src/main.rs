//! `tessera`: the stock binary, which runs the demo world. A game's own
//! binary is this file with its own game.

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_demo::game())
}
