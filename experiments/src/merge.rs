//! `ekvae merge`: several datasets of one environment as one (e.g. random-action data plus
//! frames recorded from controlled episodes with `ekvae mpc --record`).

use anyhow::Result;
use clap::Args;
use ekvae_pipeline::collect::{MergeOrder, merge_to};
use std::path::{Path, PathBuf};

/// Merge datasets of one environment (same steps per episode, image size and dimensions) into
/// one file. The episodes are shuffled (seeded) by default, because training validates on the
/// last episodes of its data.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The datasets (.npz), two or more.
    #[arg(required = true, num_args = 2..)]
    pub inputs: Vec<PathBuf>,
    /// The merged dataset (.npz; written atomically, never over an input).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the episodes' shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the inputs' episodes in order instead of shuffling them.
    #[arg(long, conflicts_with = "seed")]
    pub no_shuffle: bool,
}

/// Runs `ekvae merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let inputs: Vec<&Path> = args.inputs.iter().map(PathBuf::as_path).collect();
    let order = if args.no_shuffle { MergeOrder::Kept } else { MergeOrder::Shuffled(args.seed) };
    let d = merge_to(&inputs, &args.out, order)?;
    say!(
        "merged {} datasets into {}: {} episodes × {} steps, {}×{} ({}); policy: {}",
        inputs.len(),
        args.out.display(),
        d.episodes,
        d.steps,
        d.size,
        d.size,
        if args.no_shuffle {
            "in order".to_string()
        } else {
            format!("shuffled, seed {}", args.seed)
        },
        d.meta.policy
    );
    Ok(())
}
