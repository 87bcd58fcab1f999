//! `arena`: Tessera's command line with the arena inside.

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_arena::game())
}
