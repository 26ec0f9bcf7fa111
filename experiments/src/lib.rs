//! The `ekvae` command line: one module per subcommand, glue over the library crates.

pub mod cli;
pub mod collect;
pub mod eval;
pub mod inspect;
pub mod mpc;
pub mod train;
