//! The environments' Rust side: one pendulum ([`PendulumCore`]), `N` pendulums stepped
//! together ([`VectorCore`]) and one cart-pole swing-up ([`CartPoleCore`]). Physics, seeding and
//! rendering are `ekvae_envs`'s; the Gymnasium classes around them are in
//! `python/ekvae/envs.py`.

use ekvae_envs::System;
use ekvae_envs::cartpole::CartPoleSwingUp;
use ekvae_envs::dataset::MIN_SIZE;
use ekvae_envs::pendulum::{self, Pendulum};
use ekvae_envs::render::render_into;
use ekvae_envs::system::CartPoleSystem;
use ekvae_envs::{Env, ResetTo};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::arrays::{array, data, input, py_shape, shape};
use crate::errors::value_error;

/// The largest frame side the bindings render (a 4096 × 4096 frame is 16 MB).
const MAX_SIZE: usize = 4096;

fn check_size(size: usize, what: &str) -> PyResult<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(value_error(format!(
            "invalid {what} {size}: frames are {MIN_SIZE} to {MAX_SIZE} pixels wide"
        )));
    }
    Ok(())
}

fn check_action(u: f64) -> PyResult<()> {
    if !u.is_finite() {
        return Err(value_error(format!("action {u} is not finite")));
    }
    Ok(())
}

/// What the environment observes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ObsType {
    /// The rendered frame, `uint8 [S, S]`.
    Pixels,
    /// Pendulum-v1's `[cos θ, sin θ, θ̇]`, `float32 [3]`.
    State,
}

fn obs_type(name: &str) -> PyResult<ObsType> {
    match name {
        "pixels" => Ok(ObsType::Pixels),
        "state" => Ok(ObsType::State),
        other => {
            Err(value_error(format!("unknown obs_type {other:?}; use \"pixels\" or \"state\"")))
        }
    }
}

/// Frames of the pendulums at `thetas` as `uint8 [*lead, size, size]` or, with `rgb`,
/// `[*lead, size, size, 3]` (gray repeated).
fn frame_array<'py>(
    py: Python<'py>,
    thetas: &[f64],
    lead: &[usize],
    size: usize,
    rgb: bool,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let mut gray = vec![0u8; thetas.len() * size * size];
    for (theta, f) in thetas.iter().zip(gray.chunks_mut(size * size)) {
        render_into(*theta, size, f);
    }
    gray_array(py, gray, lead, size, rgb)
}

/// Gray frames `gray` as `uint8 [*lead, size, size]` or, with `rgb`, `[*lead, size, size, 3]`
/// (gray repeated).
fn gray_array<'py>(
    py: Python<'py>,
    gray: Vec<u8>,
    lead: &[usize],
    size: usize,
    rgb: bool,
) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let mut shape = lead.to_vec();
    shape.extend([size, size]);
    if rgb {
        shape.push(3);
        array(py, gray.iter().flat_map(|&v| [v, v, v]).collect(), &shape)
    } else {
        array(py, gray, &shape)
    }
}

/// One `Pendulum-v1` (exact physics, `ekvae_envs::Pendulum`) with the anti-aliased renderer.
#[pyclass(module = "ekvae._ekvae")]
pub struct PendulumCore {
    env: Pendulum,
    size: usize,
    obs: ObsType,
}

#[pymethods]
impl PendulumCore {
    /// A pendulum observed as `size × size` frames (`obs_type="pixels"`) or as
    /// `[cos θ, sin θ, θ̇]` (`obs_type="state"`).
    #[new]
    #[pyo3(signature = (size = 16, obs_type = "pixels"))]
    fn new(size: usize, obs_type: &str) -> PyResult<Self> {
        check_size(size, "size")?;
        Ok(Self { env: Pendulum::default(), size, obs: self::obs_type(obs_type)? })
    }

    /// Starts an episode from Gymnasium's random start (θ ~ U(−π, π), θ̇ ~ U(−1, 1)); with
    /// `seed`, the generator is re-seeded first. Returns the state `(θ, θ̇)`.
    #[pyo3(signature = (seed = None))]
    fn reset(&mut self, seed: Option<u64>) -> [f64; 2] {
        self.env.reset(seed);
        self.env.state()
    }

    /// Starts an episode in the state `(θ, θ̇)`.
    fn reset_to(&mut self, theta: f64, theta_dot: f64) -> PyResult<[f64; 2]> {
        if !(theta.is_finite() && theta_dot.is_finite()) {
            return Err(value_error(format!("start state ({theta}, {theta_dot}) is not finite")));
        }
        self.env.reset_to([theta, theta_dot]);
        Ok(self.env.state())
    }

    /// Applies torque `u` (clipped to [−2, 2]) for one step; returns `(reward, (θ, θ̇))`.
    fn step(&mut self, u: f64) -> PyResult<(f64, [f64; 2])> {
        check_action(u)?;
        let s = self.env.step(&[u]);
        Ok((s.reward, self.env.state()))
    }

    /// The state `(θ, θ̇)` (θ not wrapped).
    fn state(&self) -> [f64; 2] {
        self.env.state()
    }

    /// The observation: the frame `uint8 [S, S]` or `float32 [3]` `[cos θ, sin θ, θ̇]`.
    fn observation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.obs {
            ObsType::Pixels => {
                Ok(frame_array(py, &[self.env.state()[0]], &[], self.size, false)?.into_any())
            }
            ObsType::State => {
                let o = self.env.obs().map(|v| v as f32).to_vec();
                Ok(array(py, o, &[3])?.into_any())
            }
        }
    }

    /// The current state drawn at `size` (default: the observation size), gray `[S, S]` or
    /// with `rgb=True` `[S, S, 3]`.
    #[pyo3(signature = (size = None, rgb = false))]
    fn frame<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
        rgb: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let size = size.unwrap_or(self.size);
        check_size(size, "render size")?;
        frame_array(py, &[self.env.state()[0]], &[], size, rgb)
    }
}

/// One `CartPoleSwingUp-v0` (the package's physics, reset and termination,
/// `ekvae_envs::cartpole`) drawn as one of the registered cart-pole environments draws it.
#[pyclass(module = "ekvae._ekvae")]
pub struct CartPoleCore {
    env: CartPoleSwingUp,
    system: CartPoleSystem,
    size: usize,
}

#[pymethods]
impl CartPoleCore {
    /// The cart-pole of registry id `env_id` (`CartPoleSwingUp-v0`, `CartPoleSwingUpBigPole-v0`
    /// or `CartPoleSwingUpBigPoleGhost-v0`: the same physics, the pole drawn as that id draws
    /// it), observed as `size × size` frames.
    #[new]
    #[pyo3(signature = (env_id = "CartPoleSwingUp-v0", size = 32))]
    fn new(env_id: &str, size: usize) -> PyResult<Self> {
        check_size(size, "size")?;
        let system = match env_id {
            CartPoleSystem::ID => CartPoleSystem::default(),
            CartPoleSystem::BIG_POLE_ID => CartPoleSystem::big_pole(),
            CartPoleSystem::GHOST_ID => CartPoleSystem::big_pole_ghost(),
            other => {
                return Err(value_error(format!(
                    "unknown cart-pole id {other:?}; use {:?}, {:?} or {:?}",
                    CartPoleSystem::ID,
                    CartPoleSystem::BIG_POLE_ID,
                    CartPoleSystem::GHOST_ID
                )));
            }
        };
        Ok(Self { env: CartPoleSwingUp::new(system.params), system, size })
    }

    /// Starts an episode from the package's reset (hanging at rest plus N(0, 0.05²) per
    /// component); with `seed`, the generator is re-seeded first (as `ekvae mpc --seed K` seeds
    /// episode i with K + i). Returns the state `(x, ẋ, θ, θ̇)`.
    #[pyo3(signature = (seed = None))]
    fn reset(&mut self, seed: Option<u64>) -> [f64; 4] {
        self.env.reset(seed);
        self.env.state()
    }

    /// Starts an episode in the state `(x, ẋ, θ, θ̇)`.
    fn reset_to(&mut self, state: [f64; 4]) -> PyResult<[f64; 4]> {
        if !state.iter().all(|v| v.is_finite()) {
            return Err(value_error(format!("start state {state:?} is not finite")));
        }
        self.env.reset_to(state);
        Ok(self.env.state())
    }

    /// Applies action `a` (clipped to [−1, 1], 10 N per unit) for one step; returns
    /// `(reward, terminated, (x, ẋ, θ, θ̇))` (terminated: the cart left the track).
    fn step(&mut self, a: f64) -> PyResult<(f64, bool, [f64; 4])> {
        check_action(a)?;
        let s = self.env.step(&[a]);
        Ok((s.reward, s.terminated, self.env.state()))
    }

    /// The state `(x, ẋ, θ, θ̇)` (θ wrapped into [−π, π), as the package wraps it).
    fn state(&self) -> [f64; 4] {
        self.env.state()
    }

    /// The registry id the frames are drawn for.
    #[getter]
    fn env_id(&self) -> String {
        self.system.id().to_string()
    }

    /// The current state drawn at `size` (default: the observation size), gray `[S, S]` or
    /// with `rgb=True` `[S, S, 3]`.
    #[pyo3(signature = (size = None, rgb = false))]
    fn frame<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
        rgb: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let size = size.unwrap_or(self.size);
        check_size(size, "render size")?;
        let mut gray = vec![0u8; size * size];
        self.system.render_into(&self.env.state(), size, &mut gray);
        gray_array(py, gray, &[], size, rgb)
    }
}

/// `N` pendulums stepped together, with a 200-step time limit and next-step autoreset
/// (Gymnasium's default: the step after an episode ends resets that pendulum, ignores its
/// action and returns reward 0).
#[pyclass(module = "ekvae._ekvae")]
pub struct VectorCore {
    envs: Vec<Pendulum>,
    size: usize,
    obs: ObsType,
    max_steps: usize,
    elapsed: Vec<usize>,
    ended: Vec<bool>,
}

/// The arrays of one vector step: frames, state observations, rewards, terminated, truncated, states.
type Outputs = (Vec<u8>, Vec<f32>, Vec<f64>, Vec<bool>, Vec<bool>, Vec<f64>);

impl VectorCore {
    /// Frames or state observations of all pendulums (fresh arrays).
    fn observe(&self) -> (Vec<u8>, Vec<f32>) {
        let (n, s) = (self.envs.len(), self.size);
        match self.obs {
            ObsType::Pixels => {
                let mut frames = vec![0u8; n * s * s];
                frames
                    .par_chunks_mut(s * s)
                    .with_min_len(min_len(s))
                    .zip(self.envs.par_iter())
                    .for_each(|(f, env)| render_into(env.state()[0], s, f));
                (frames, Vec::new())
            }
            ObsType::State => {
                (Vec::new(), self.envs.iter().flat_map(|e| e.obs().map(|v| v as f32)).collect())
            }
        }
    }

    fn states(&self) -> Vec<f64> {
        self.envs.iter().flat_map(|e| e.state()).collect()
    }

    fn obs_array<'py>(
        &self,
        py: Python<'py>,
        frames: Vec<u8>,
        obs: Vec<f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = self.envs.len();
        match self.obs {
            ObsType::Pixels => Ok(array(py, frames, &[n, self.size, self.size])?.into_any()),
            ObsType::State => Ok(array(py, obs, &[n, 3])?.into_any()),
        }
    }
}

/// Pendulums per rayon task: enough pixels per task that splitting pays.
fn min_len(size: usize) -> usize {
    (4096 / (size * size)).max(1)
}

#[pymethods]
impl VectorCore {
    /// `num_envs` pendulums observed as frames or states; episodes are cut after
    /// `max_episode_steps` steps.
    #[new]
    #[pyo3(signature = (num_envs, size = 16, obs_type = "pixels", max_episode_steps = 200))]
    fn new(
        num_envs: usize,
        size: usize,
        obs_type: &str,
        max_episode_steps: usize,
    ) -> PyResult<Self> {
        if num_envs == 0 || num_envs > 1 << 20 {
            return Err(value_error(format!("num_envs {num_envs} must be 1 to {}", 1 << 20)));
        }
        if max_episode_steps == 0 {
            return Err(value_error("max_episode_steps must be at least 1"));
        }
        check_size(size, "size")?;
        let obs = self::obs_type(obs_type)?;
        if obs == ObsType::Pixels {
            ekvae_envs::fsio::check_memory(
                num_envs.checked_mul(size * size).map(|b| 2 * b as u64),
                "num_envs × size²",
                "use fewer or smaller pendulums",
            )
            .map_err(crate::errors::to_py)?;
        }
        Ok(Self {
            envs: vec![Pendulum::default(); num_envs],
            size,
            obs,
            max_steps: max_episode_steps,
            elapsed: vec![0; num_envs],
            ended: vec![false; num_envs],
        })
    }

    /// Number of pendulums.
    #[getter]
    fn num_envs(&self) -> usize {
        self.envs.len()
    }

    /// Resets every pendulum: with `seeds` (one per pendulum, or None each) re-seeded first.
    /// Returns `(observations, states)`.
    fn reset<'py>(
        &mut self,
        py: Python<'py>,
        seeds: Vec<Option<u64>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArrayDyn<f64>>)> {
        let n = self.envs.len();
        if seeds.len() != n {
            return Err(value_error(format!("{} seeds for {n} environments", seeds.len())));
        }
        for (env, seed) in self.envs.iter_mut().zip(seeds) {
            env.reset(seed);
        }
        self.elapsed.fill(0);
        self.ended.fill(false);
        let (frames, obs) = py.detach(|| self.observe());
        let states = self.states();
        Ok((self.obs_array(py, frames, obs)?, array(py, states, &[n, 2])?))
    }

    /// Steps every pendulum with its torque (`actions`: `N` numbers, float64): returns
    /// `(observations, rewards, terminated, truncated, states)`. A pendulum whose episode
    /// ended at the previous step is reset instead (its action ignored, reward 0).
    #[allow(clippy::type_complexity)]
    fn step<'py>(
        &mut self,
        py: Python<'py>,
        actions: &Bound<'py, PyAny>,
    ) -> PyResult<(
        Bound<'py, PyAny>,
        Bound<'py, PyArrayDyn<f64>>,
        Bound<'py, PyArrayDyn<bool>>,
        Bound<'py, PyArrayDyn<bool>>,
        Bound<'py, PyArrayDyn<f64>>,
    )> {
        let n = self.envs.len();
        let a = input::<f64>(actions, "actions")?;
        let u = data(&a)?;
        if u.len() != n {
            return Err(value_error(format!(
                "actions have shape {}; expected {n} torques (shape ({n}, 1) or ({n},))",
                py_shape(&shape(&a))
            )));
        }
        if let Some(i) = u.iter().position(|v| !v.is_finite()) {
            return Err(value_error(format!("action {} of environment {i} is not finite", u[i])));
        }
        let u = u.to_vec();
        let (s, max_steps) = (self.size, self.max_steps);
        let pixels = self.obs == ObsType::Pixels;
        let (envs, elapsed, ended) = (&mut self.envs, &mut self.elapsed, &mut self.ended);
        let (frames, obs, rewards, terminated, truncated, states): Outputs = py.detach(|| {
            let mut frames = vec![0u8; if pixels { n * s * s } else { 0 }];
            let mut rewards = vec![0.0f64; n];
            let mut truncated = vec![false; n];
            let mut states = vec![0.0f64; 2 * n];
            let step_one = |env: &mut Pendulum,
                            elapsed: &mut usize,
                            ended: &mut bool,
                            u: f64,
                            reward: &mut f64,
                            trunc: &mut bool,
                            state: &mut [f64]| {
                if *ended {
                    env.reset(None);
                    *elapsed = 0;
                    *ended = false;
                } else {
                    *reward = env.step(&[u]).reward;
                    *elapsed += 1;
                    *trunc = *elapsed >= max_steps;
                    *ended = *trunc;
                }
                state.copy_from_slice(&env.state());
            };
            let work = envs
                .par_iter_mut()
                .zip(elapsed.par_iter_mut())
                .zip(ended.par_iter_mut())
                .zip(u.par_iter())
                .zip(rewards.par_iter_mut())
                .zip(truncated.par_iter_mut())
                .zip(states.par_chunks_mut(2))
                .with_min_len(min_len(s));
            if pixels {
                work.zip(frames.par_chunks_mut(s * s)).for_each(
                    |(((((((env, el), en), u), r), t), st), f)| {
                        step_one(env, el, en, *u, r, t, st);
                        render_into(st[0], s, f);
                    },
                );
            } else {
                work.for_each(|((((((env, el), en), u), r), t), st)| {
                    step_one(env, el, en, *u, r, t, st)
                });
            }
            let obs: Vec<f32> = if pixels {
                Vec::new()
            } else {
                states
                    .chunks_exact(2)
                    .flat_map(|st| pendulum::observation([st[0], st[1]]).map(|v| v as f32))
                    .collect()
            };
            // Pendulum-v1 never terminates; only the time limit ends an episode.
            (frames, obs, rewards, vec![false; n], truncated, states)
        });
        Ok((
            self.obs_array(py, frames, obs)?,
            array(py, rewards, &[n])?,
            array(py, terminated, &[n])?,
            array(py, truncated, &[n])?,
            array(py, states, &[n, 2])?,
        ))
    }

    /// Frames of all pendulums at `size`, `uint8 [N, size, size]` (or `[N, size, size, 3]` with `rgb`).
    #[pyo3(signature = (size = None, rgb = false))]
    fn frames<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
        rgb: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let size = size.unwrap_or(self.size);
        check_size(size, "render size")?;
        let thetas: Vec<f64> = self.envs.iter().map(|env| env.state()[0]).collect();
        frame_array(py, &thetas, &[self.envs.len()], size, rgb)
    }

    /// The states `(θ, θ̇)` of all pendulums, `float64 [N, 2]`.
    fn states_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        array(py, self.states(), &[self.envs.len(), 2])
    }
}
