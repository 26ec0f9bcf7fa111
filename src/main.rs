//! The `ekvae` command line; all logic lives in `ekvae-experiments`.

/// mimalloc instead of glibc malloc: a training step creates and drops thousands of small
/// tensors, and the allocator's share of a step fell from about 10 % (README, "Dependencies and
/// why", has the measurement). Results do not depend on the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ekvae_experiments::cli::main()
}
