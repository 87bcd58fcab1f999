//! `arena`: Tessera's command line with the arena inside.

#[global_allocator]
static ALLOC: tessera_tools::Allocator = tessera_tools::Allocator;

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_arena::game())
}
