//! `ekvae collect`: random-action rollouts of a registered environment rendered to pixels, saved
//! as one `.npz`.

use anyhow::Result;
use clap::Args;
use ekvae_envs::Registry;
use ekvae_envs::collect::{CollectConfig, PolicySpec};
use ekvae_pipeline::collect::{CollectJob, prepare_output};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Collect episodes of an environment (frames, actions, true states, rewards) into a dataset file.
///
/// Each episode starts from a random state spread over the state space (the pendulum: θ ~ U(−π,
/// π), θ̇ ~ U(−1, 1)) and applies the policy's actions for --steps steps. Episode i is seeded
/// from (--seed, i), so the file is identical, byte for byte, whatever the number of threads.
/// The defaults make the main training set.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The environment's id: `Pendulum-v1`, `CartPoleSwingUp-v0`, `CartPoleSwingUpBigPole-v0`
    /// (the same cart-pole, its pole drawn 2.5 times its length) or
    /// `CartPoleSwingUpBigPoleGhost-v0` (that drawing plus a dimmer ghost of the next step's pole).
    #[arg(long, default_value = "Pendulum-v1")]
    pub env: String,
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
    /// Output file (.npz) [default: runs/pendulum.npz for Pendulum-v1, runs/ENV.npz otherwise].
    /// Its folder is created if missing; an existing file is replaced only when the new one is
    /// completely written.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Action policy: `default` (the environment's: i.i.d. U(−2, 2) torques for the pendulum,
    /// `centring:-1,1,0.2,0.2` for the cart-pole), `uniform` (i.i.d. in the action bounds),
    /// `uniform:LOW,HIGH`, `centring:LOW,HIGH,KX,KV` (uniform minus KX·s₀ and KV·s₁, a pull of the
    /// first state coordinate to 0), `capped:LOW,HIGH,KX,KV,CAP` (the cart-pole only: `centring`
    /// with full force against the pole's swing while its energy, as a speed at the bottom,
    /// exceeds CAP rad/s), `zero` or `constant:U`.
    #[arg(long, default_value = "default")]
    pub policy: String,
    /// Worker threads [default: all cores]. The output does not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Do not show the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl CollectArgs {
    /// The output file: `--out`, or the environment's default.
    pub fn out(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| match self.env.as_str() {
            "Pendulum-v1" => PathBuf::from("runs/pendulum.npz"),
            id => PathBuf::from(format!("runs/{}.npz", id.replace('/', "_"))),
        })
    }

    /// The library's job.
    pub fn job(&self) -> Result<CollectJob> {
        Ok(CollectJob {
            system: Registry::builtin().get(&self.env)?,
            config: CollectConfig {
                episodes: self.episodes,
                steps: self.steps,
                size: self.size,
                seed: self.seed,
            },
            policy: self.policy.parse::<PolicySpec>()?,
            threads: self.threads,
        })
    }
}

/// Run `ekvae collect`.
pub fn run(args: CollectArgs) -> Result<()> {
    let job = args.job()?;
    let out = args.out();
    // Fail before the work, not after it, on bad settings or an output that cannot be written.
    job.check()?;
    prepare_output(&out)?;
    let cfg = &job.config;
    let frames = cfg.episodes * cfg.steps;
    let mb = cfg.total_image_bytes(job.system.channels()).unwrap_or(usize::MAX) as f64 / 1e6;
    if !args.quiet {
        eprintln!(
            "collecting {} episodes × {} steps of {} at {}×{} (policy {}, seed {}): {frames} frames, {mb:.1} MB of images",
            cfg.episodes,
            cfg.steps,
            job.system.id(),
            cfg.size,
            cfg.size,
            ekvae_envs::collect::Policy::describe(&job.policy, job.system.as_ref()),
            cfg.seed
        );
    }
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
    let data = job.run(&|k| bar.inc(k as u64))?;
    bar.finish_and_clear();
    let collected = start.elapsed().as_secs_f64();
    data.save(&out)?;
    let total = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    if !args.quiet {
        eprintln!(
            "collected in {collected:.2} s ({:.0} frames/s), saved in {:.2} s: {} ({:.1} MB)",
            frames as f64 / collected,
            total - collected,
            out.display(),
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
