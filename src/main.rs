//! The `ekvae` command line; all logic lives in `ekvae-experiments`.

/// mimalloc instead of glibc malloc: a training step creates and drops thousands of tensors, and
/// glibc's malloc and free took about 10 % of it (README, "Dependencies and why", has the
/// measurement). Results do not depend on the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ekvae_model::backend::keep_freed_memory();
    ekvae_experiments::cli::main()
}
