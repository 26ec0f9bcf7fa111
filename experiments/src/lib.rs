//! The `ekvae` command line: one module per subcommand that parses flags into the typed
//! configs of `ekvae-pipeline`, shows progress and prints; and the output writers ([`figures`]
//! for PNG and GIF, [`writers`] for CSV, JSON and Markdown).
//!
//! ```
//! use clap::Parser;
//! use ekvae_experiments::cli::{Cli, Command};
//! use ekvae_pipeline::swingup::{Planner, SwingUpConfig};
//! // `ekvae mpc --run DIR --episodes 5 --out OUT` is the library's swing-up config and planner.
//! let cli = Cli::try_parse_from(["ekvae", "mpc", "--run", "results/pixmpc-model", "--episodes", "5", "--out", "runs/x"])
//!     .unwrap();
//! let Command::Mpc(args) = cli.command else { unreachable!() };
//! assert_eq!(args.config(), SwingUpConfig { episodes: 5, ..SwingUpConfig::default() });
//! assert!(matches!(args.planner().unwrap(), Planner::Learned(p) if p.run.ends_with("pixmpc-model")));
//! ```

/// `println!` for results on standard output that ends quietly on a closed pipe
/// (`ekvae inspect data.npz | head -1`): see [`output::line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

pub mod cli;
pub mod collect;
pub mod demo;
pub mod eval;
pub mod export;
pub mod figures;
pub mod inspect;
pub mod merge;
pub mod mpc;
pub mod output;
pub mod reproduce;
pub mod train;
pub mod writers;
