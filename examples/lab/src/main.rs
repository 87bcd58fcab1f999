//! `lab`: Tessera's command line running the demo world with the lab's own
//! balancing policy registered beside the built-in ones.

#[global_allocator]
static ALLOC: tessera_tools::Allocator = tessera_tools::Allocator;

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_lab::game())
}
