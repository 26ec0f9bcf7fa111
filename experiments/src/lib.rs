//! The `ekvae` command line: one module per subcommand, glue over the library crates.

pub mod cli;
pub mod collect;
pub mod demo;
pub mod eval;
pub mod figures;
pub mod inspect;
pub mod learned;
pub mod mpc;
pub mod reproduce;
pub mod train;
