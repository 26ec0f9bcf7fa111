//! The `ekvae` command line; all logic lives in `ekvae-experiments`.

fn main() -> std::process::ExitCode {
    ekvae_experiments::cli::main()
}
