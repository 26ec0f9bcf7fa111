//! `ekvae collect`: random-action pendulum rollouts rendered to pixels, saved as one `.npz`.

use anyhow::{Context, Result};
use clap::Args;
use ekvae_envs::collect::{self, CollectConfig, PolicySpec};
use ekvae_envs::pendulum::PendulumParams;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Collect pendulum episodes (frames, actions, true states, rewards) into a dataset file.
///
/// Each episode starts from a random state (θ ~ U(−π, π), θ̇ ~ U(−1, 1)) and applies the policy's
/// torques for --steps steps. Episode i is seeded from (--seed, i), so the file is identical,
/// byte for byte, whatever the number of threads. The defaults make the main training set.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Number of episodes N (at least 1).
    #[arg(long, default_value_t = 1000)]
    pub episodes: usize,
    /// Steps per episode T (at least 1): T frames and T actions per episode.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Image size S in pixels; frames are S × S grayscale (a multiple of 8, the sizes the
    /// model trains on).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Master random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file (.npz). Its folder is created if missing; an existing file is replaced only
    /// when the new one is completely written.
    #[arg(long, default_value = "runs/pendulum.npz")]
    pub out: PathBuf,
    /// Action policy: `uniform` (i.i.d. U(−2, 2) torques), `uniform:LOW,HIGH`, `zero`
    /// (free swinging) or `constant:U`.
    #[arg(long, default_value = "uniform")]
    pub policy: String,
    /// Worker threads (default: all cores). The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not show the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Image sides must be multiples of this for `ekvae train` (the model's pixel-unshuffle by S/8).
pub const MODEL_SIZE_STEP: usize = 8;

/// Run `ekvae collect`.
pub fn run(args: CollectArgs) -> Result<()> {
    let policy: PolicySpec = args.policy.parse()?;
    let cfg = CollectConfig {
        episodes: args.episodes,
        steps: args.steps,
        size: args.size,
        seed: args.seed,
        params: PendulumParams::default(),
    };
    cfg.check()?;
    if !args.size.is_multiple_of(MODEL_SIZE_STEP) {
        anyhow::bail!(
            "invalid --size {}: the model trains on images whose side is a multiple of {MODEL_SIZE_STEP} (8, 16, 24, 32, …); use one of those",
            args.size
        );
    }
    // Bounds before allocation: the whole dataset is built in memory before it is written.
    let bytes = cfg
        .total_image_bytes()
        .and_then(|b| b.checked_add(cfg.episodes.checked_mul(cfg.steps)?.checked_mul(24)?))
        .map(|b| b as u64);
    ekvae_envs::fsio::check_memory(
        bytes,
        "this dataset (--episodes × --steps × --size²)",
        "lower --episodes, --steps or --size",
    )?;
    if args.threads == Some(0) {
        anyhow::bail!("invalid --threads: must be at least 1");
    }
    // Fail before the work, not after it, if the output cannot be written.
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!(
                "{}: not a folder, so {} cannot be written",
                dir.display(),
                args.out.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    }
    ekvae_envs::dataset::check_writable(&args.out)?;

    let frames = cfg.episodes * cfg.steps;
    let mb = cfg.total_image_bytes().unwrap_or(usize::MAX) as f64 / 1e6;
    eprintln!(
        "collecting {} episodes × {} steps of {}×{} frames (policy {policy}, seed {}): {frames} frames, {mb:.1} MB of images",
        cfg.episodes, cfg.steps, cfg.size, cfg.size, cfg.seed
    );
    let bar = if args.quiet {
        ProgressBar::with_draw_target(Some(cfg.episodes as u64), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(cfg.episodes as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} episodes  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    let start = Instant::now();
    let work = || collect::collect(&cfg, &policy, &|k| bar.inc(k as u64));
    let data = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .context("cannot start the worker threads")?
            .install(work),
        None => work(),
    }?;
    bar.finish_and_clear();
    let collected = start.elapsed().as_secs_f64();
    data.save(&args.out)?;
    let total = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "collected in {collected:.2} s ({:.0} frames/s), saved in {:.2} s: {} ({:.1} MB)",
        frames as f64 / collected,
        total - collected,
        args.out.display(),
        bytes as f64 / 1e6
    );
    Ok(())
}
