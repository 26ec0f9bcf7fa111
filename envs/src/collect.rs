//! Rollout collection: many pendulum episodes under a policy, rendered, in parallel.
//!
//! Each episode `i` draws from its own generator, `ChaCha8Rng::seed_from_u64(seed)` with stream
//! `i` ([`episode_rng`]): first the initial state (θ ~ U(−π, π), θ̇ ~ U(−1, 1), as
//! [`Pendulum::reset`](crate::pendulum::Pendulum)), then the policy's random numbers. Episodes
//! are therefore independent of each other and of the order or thread they run on: the dataset
//! is identical, byte for byte, whatever the number of rayon threads.
//!
//! Per step `t` of an episode (the dataset's conventions):
//! 1. render frame `t` of the current state `s_t` and record `states[t] = s_t`;
//! 2. the policy picks `u_t`, rounded to `f32` (what the file stores), and `actions[t] = u_t`;
//! 3. the physics applies `u_t` (as f64) — so replaying the stored actions from `states[0]`
//!    reproduces the stored states exactly — and `rewards[t] = −cost(s_t, clip(u_t))`.

use crate::dataset::{Dataset, DatasetMeta, FORMAT_VERSION, MIN_SIZE, RendererMeta};
use crate::pendulum::{self, PendulumParams};
use crate::space::uniform;
use crate::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// The random generator of episode `episode` of a collection seeded with `seed`.
pub fn episode_rng(seed: u64, episode: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(episode);
    rng
}

/// A policy for collection: the torque to apply at step `t` in state `[θ, θ̇]`.
///
/// Policies are shared between threads (`Sync`) and keep no per-episode state; randomness must
/// come from `rng` (the episode's own generator) so that collection stays deterministic.
pub trait Policy: Sync {
    /// The torque for step `t` of an episode in `state`; the environment clips it to its limits.
    fn act(&self, t: usize, state: [f64; 2], rng: &mut ChaCha8Rng) -> f64;

    /// A short description stored in the dataset's metadata (for the built-in policies, the
    /// text [`PolicySpec::from_str`] parses back).
    fn describe(&self) -> String;
}

/// The built-in policies, selectable by name on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicySpec {
    /// I.i.d. uniform torques in `[low, high)`, one draw per step (the default: `[-2, 2)`).
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Always zero torque: the pendulum swings freely from its random start.
    Zero,
    /// The same torque at every step.
    Constant(f64),
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec::Uniform { low: -2.0, high: 2.0 }
    }
}

impl Policy for PolicySpec {
    fn act(&self, _t: usize, _state: [f64; 2], rng: &mut ChaCha8Rng) -> f64 {
        match *self {
            PolicySpec::Uniform { low, high } => uniform(rng, low, high),
            PolicySpec::Zero => 0.0,
            PolicySpec::Constant(u) => u,
        }
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySpec::Uniform { low, high } => write!(f, "uniform:{low},{high}"),
            PolicySpec::Zero => write!(f, "zero"),
            PolicySpec::Constant(u) => write!(f, "constant:{u}"),
        }
    }
}

impl FromStr for PolicySpec {
    type Err = Error;

    /// `uniform` (= `uniform:-2,2`), `uniform:LOW,HIGH`, `zero`, or `constant:U`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument { what: "policy", reason };
        let num = |v: &str| -> Result<f64> {
            let x: f64 = v.trim().parse().map_err(|_| bad(format!("'{v}' is not a number")))?;
            if x.is_finite() { Ok(x) } else { Err(bad(format!("'{v}' is not finite"))) }
        };
        let (name, args) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, args) {
            ("uniform", None) => Ok(PolicySpec::default()),
            ("uniform", Some(a)) => {
                let (lo, hi) = a
                    .split_once(',')
                    .ok_or_else(|| bad(format!("'{s}': expected uniform:LOW,HIGH")))?;
                let (low, high) = (num(lo)?, num(hi)?);
                if low > high {
                    return Err(bad(format!("'{s}': LOW must not exceed HIGH")));
                }
                Ok(PolicySpec::Uniform { low, high })
            }
            ("zero", None) => Ok(PolicySpec::Zero),
            ("constant", Some(a)) => Ok(PolicySpec::Constant(num(a)?)),
            _ => Err(bad(format!(
                "unknown policy '{s}'; use uniform, uniform:LOW,HIGH, zero or constant:U"
            ))),
        }
    }
}

/// What to collect.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    /// Number of episodes `N` (≥ 1).
    pub episodes: usize,
    /// Steps per episode `T` (≥ 1): frames 0..T, actions 0..T.
    pub steps: usize,
    /// Image size `S` in pixels (≥ the dataset's [`MIN_SIZE`]).
    pub size: usize,
    /// Master seed; episode `i` uses [`episode_rng`]`(seed, i)`.
    pub seed: u64,
    /// The pendulum's physical parameters.
    pub params: PendulumParams,
}

impl Default for CollectConfig {
    /// The main job's default: 1000 episodes × 100 steps of 32 × 32 frames, seed 0, Pendulum-v1.
    fn default() -> Self {
        Self { episodes: 1000, steps: 100, size: 32, seed: 0, params: PendulumParams::default() }
    }
}

impl CollectConfig {
    /// Check the invariants: at least one episode and step, size ≥ [`MIN_SIZE`], positive finite
    /// physical parameters, and a total size that fits in memory addressing.
    pub fn check(&self) -> Result<()> {
        let bad = |what, reason: String| Err(Error::InvalidArgument { what, reason });
        if self.episodes == 0 {
            return bad("number of episodes", "must be at least 1".into());
        }
        if self.steps == 0 {
            return bad("number of steps", "must be at least 1".into());
        }
        if self.size < MIN_SIZE {
            return bad(
                "image size",
                format!("{} is below the minimum of {MIN_SIZE} pixels", self.size),
            );
        }
        let p = &self.params;
        for (name, v) in [
            ("g", p.g),
            ("m", p.m),
            ("l", p.l),
            ("dt", p.dt),
            ("max_speed", p.max_speed),
            ("max_torque", p.max_torque),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(
                    "pendulum parameter",
                    format!("{name} = {v}, must be positive and finite"),
                );
            }
        }
        if self.total_image_bytes().is_none() {
            return bad("dataset size", "episodes × steps × size² overflows".into());
        }
        Ok(())
    }

    /// `N·T·S²`, the size of the image array in bytes, if it does not overflow.
    pub fn total_image_bytes(&self) -> Option<usize> {
        self.episodes.checked_mul(self.steps)?.checked_mul(self.size)?.checked_mul(self.size)
    }

    /// The metadata of a fresh collection with these settings under the policy described by
    /// `policy` (what [`collect`] stores in its [`Dataset`]).
    pub fn meta(&self, policy: String) -> DatasetMeta {
        DatasetMeta {
            format_version: FORMAT_VERSION,
            env: "Pendulum-v1".into(),
            params: self.params,
            seed: self.seed,
            policy,
            episodes: self.episodes,
            steps: self.steps,
            size: self.size,
            first_episode: 0,
            renderer: RendererMeta {
                rod_length: crate::render::ROD_LENGTH,
                rod_width: crate::render::ROD_WIDTH,
                orientation: "pivot at the image centre; theta=0 up, counter-clockwise positive (theta=pi/2 points left); white rod on black".into(),
            },
            seeding: "episode i: ChaCha8Rng::seed_from_u64(seed) with stream i; draws theta~U(-pi,pi), thetadot~U(-1,1), then the policy's draws".into(),
            generator: format!("ekvae-envs {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Collect `cfg.episodes` episodes under `policy` on all rayon threads, calling `progress(1)`
/// after each finished episode (from any thread). The result does not depend on the thread count.
pub fn collect<P: Policy + ?Sized>(
    cfg: &CollectConfig,
    policy: &P,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Dataset> {
    cfg.check()?;
    let (n, t, s) = (cfg.episodes, cfg.steps, cfg.size);
    let frame = s * s;
    let mut images = alloc_zeroed::<u8>(n * t * frame, "image array")?;
    let mut actions = alloc_zeroed::<f32>(n * t, "action array")?;
    let mut states = alloc_zeroed::<f64>(n * t * 2, "state array")?;
    let mut rewards = alloc_zeroed::<f32>(n * t, "reward array")?;
    images
        .par_chunks_mut(t * frame)
        .zip(actions.par_chunks_mut(t))
        .zip(states.par_chunks_mut(2 * t))
        .zip(rewards.par_chunks_mut(t))
        .enumerate()
        .for_each(|(ep, (((img, act), st), rew))| {
            let mut rng = episode_rng(cfg.seed, ep as u64);
            let mut state = pendulum::sample_initial_state(&mut rng);
            for k in 0..t {
                crate::render::render_into(state[0], s, &mut img[k * frame..(k + 1) * frame]);
                st[2 * k] = state[0];
                st[2 * k + 1] = state[1];
                let u = policy.act(k, state, &mut rng) as f32;
                act[k] = u;
                let out = pendulum::step(&cfg.params, state, u as f64);
                rew[k] = -out.cost as f32;
                state = out.state;
            }
            progress(1);
        });
    let meta = cfg.meta(policy.describe());
    Ok(Dataset { images, actions, states, rewards, episodes: n, steps: t, size: s, meta })
}

/// A zero-filled vector of `len` elements, or an error (instead of an abort) if memory runs out.
fn alloc_zeroed<T: Clone + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::InvalidArgument {
        what: "dataset size",
        reason: format!(
            "cannot allocate the {what} ({len} elements); collect fewer or smaller frames"
        ),
    })?;
    v.resize(len, T::default());
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CollectConfig {
        CollectConfig {
            episodes: 6,
            steps: 12,
            size: 16,
            seed: 5,
            params: PendulumParams::default(),
        }
    }

    #[test]
    fn conventions_frame_state_action_reward() {
        let d = collect(&small(), &PolicySpec::default(), &|_| {}).unwrap();
        let p = PendulumParams::default();
        for ep in 0..d.episodes {
            for t in 0..d.steps {
                let s = d.state(ep, t);
                assert_eq!(
                    d.frame(ep, t),
                    &crate::render::render(s[0], 16)[..],
                    "frame shows state t"
                );
                let u = d.actions[ep * d.steps + t];
                assert!((-2.0..2.0).contains(&u));
                let out = pendulum::step(&p, s, u as f64);
                assert_eq!(d.rewards[ep * d.steps + t], -out.cost as f32);
                if t + 1 < d.steps {
                    assert_eq!(
                        d.state(ep, t + 1),
                        out.state,
                        "stored actions replay the states exactly"
                    );
                }
            }
            let [th, thd] = d.state(ep, 0);
            assert!(
                (-std::f64::consts::PI..std::f64::consts::PI).contains(&th)
                    && (-1.0..1.0).contains(&thd)
            );
        }
    }

    #[test]
    fn same_seed_same_data_and_episodes_independent() {
        let a = collect(&small(), &PolicySpec::default(), &|_| {}).unwrap();
        let b = collect(&small(), &PolicySpec::default(), &|_| {}).unwrap();
        assert_eq!(a.states, b.states);
        assert_eq!(a.images, b.images);
        // Episode i does not depend on how many episodes are collected.
        let c = collect(&CollectConfig { episodes: 2, ..small() }, &PolicySpec::default(), &|_| {})
            .unwrap();
        assert_eq!(c.states[..], a.states[..2 * 2 * 12]);
        let d = collect(&CollectConfig { seed: 6, ..small() }, &PolicySpec::default(), &|_| {})
            .unwrap();
        assert_ne!(a.states, d.states);
    }

    #[test]
    fn thread_count_does_not_matter() {
        let run = |threads| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
                collect(&CollectConfig { episodes: 17, ..small() }, &PolicySpec::default(), &|_| {})
                    .unwrap()
            })
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.images, b.images);
        assert_eq!(a.states, b.states);
        assert_eq!(a.actions, b.actions);
    }

    /// Through the file: one or two threads give the same bytes, and the metadata records the
    /// collection's settings.
    #[test]
    fn same_seed_same_bytes_with_one_or_two_threads() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = CollectConfig { episodes: 9, steps: 7, size: 16, seed: 3, ..Default::default() };
        let mut files = Vec::new();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let d = pool.install(|| collect(&cfg, &PolicySpec::default(), &|_| {})).unwrap();
            let path = dir.path().join(format!("t{threads}.npz"));
            d.save(&path).unwrap();
            files.push(std::fs::read(&path).unwrap());
            let m = Dataset::load(&path).unwrap().meta;
            assert_eq!(m, cfg.meta("uniform:-2,2".into()));
            assert_eq!((m.episodes, m.steps, m.size, m.seed), (9, 7, 16, 3));
            assert_eq!((m.first_episode, m.format_version), (0, FORMAT_VERSION));
        }
        assert_eq!(files[0], files[1]);
    }

    #[test]
    fn progress_counts_episodes() {
        let n = std::sync::atomic::AtomicUsize::new(0);
        collect(&small(), &PolicySpec::Zero, &|k| {
            n.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(n.into_inner(), 6);
    }

    #[test]
    fn refuses_bad_configs() {
        for cfg in [
            CollectConfig { episodes: 0, ..small() },
            CollectConfig { steps: 0, ..small() },
            CollectConfig { size: 7, ..small() },
            CollectConfig {
                params: PendulumParams { dt: f64::NAN, ..Default::default() },
                ..small()
            },
            CollectConfig { episodes: usize::MAX, steps: 2, ..small() },
        ] {
            let e = collect(&cfg, &PolicySpec::default(), &|_| {}).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        }
    }

    #[test]
    fn policy_specs_parse_and_print() {
        for (text, spec) in [
            ("uniform", PolicySpec::Uniform { low: -2.0, high: 2.0 }),
            ("uniform:-1,0.5", PolicySpec::Uniform { low: -1.0, high: 0.5 }),
            ("zero", PolicySpec::Zero),
            ("constant:1.5", PolicySpec::Constant(1.5)),
        ] {
            let p: PolicySpec = text.parse().unwrap();
            assert_eq!(p, spec);
            assert_eq!(p.to_string().parse::<PolicySpec>().unwrap(), spec);
        }
        for bad in
            ["", "random", "uniform:1", "uniform:2,1", "constant:x", "constant:inf", "zero:1"]
        {
            assert!(bad.parse::<PolicySpec>().is_err(), "{bad}");
        }
    }
}
