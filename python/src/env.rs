//! The environments' Rust side: one pendulum ([`PendulumCore`]), one cart-pole swing-up
//! ([`CartPoleCore`]) and `N` of either stepped together ([`VectorCore`]). Physics, seeding and
//! rendering are `ekvae_envs`'s; the Gymnasium classes around them are in
//! `python/ekvae/envs.py`.

use ekvae_envs::System;
use ekvae_envs::cartpole::CartPoleSwingUp;
use ekvae_envs::dataset::MIN_SIZE;
use ekvae_envs::pendulum::Pendulum;
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

/// The cart-pole system of registry id `env_id` (its pole drawing), or an error naming it an
/// unknown `what` and listing the ids (`also` first, then the three cart-poles').
fn cartpole_system(env_id: &str, what: &str, also: &str) -> PyResult<CartPoleSystem> {
    match env_id {
        CartPoleSystem::ID => Ok(CartPoleSystem::default()),
        CartPoleSystem::BIG_POLE_ID => Ok(CartPoleSystem::big_pole()),
        CartPoleSystem::GHOST_ID => Ok(CartPoleSystem::big_pole_ghost()),
        other => Err(value_error(format!(
            "unknown {what} {other:?}; use {also}{:?}, {:?} or {:?}",
            CartPoleSystem::ID,
            CartPoleSystem::BIG_POLE_ID,
            CartPoleSystem::GHOST_ID
        ))),
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
        let system = cartpole_system(env_id, "cart-pole id", "")?;
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

/// One environment of a [`VectorCore`]: what the vector needs to reset, step, observe and draw
/// it.
trait Member: Send + Sync {
    /// Starts an episode from the environment's own reset; with `seed`, re-seeded first.
    fn restart(&mut self, seed: Option<u64>);
    /// Applies action `u` for one step: `(reward, terminated)`.
    fn advance(&mut self, u: f64) -> (f64, bool);
    /// Writes the exact state into `out` (its length is [`Kind::state_dim`]).
    fn state_into(&self, out: &mut [f64]);
    /// Writes the state observation (`obs_type="state"`) into `out` ([`Kind::obs_dim`] long).
    fn observation_into(&self, out: &mut [f64]);
    /// Draws the current state into `out` (`size × size` gray bytes).
    fn draw_into(&self, size: usize, out: &mut [u8]);
}

impl Member for Pendulum {
    fn restart(&mut self, seed: Option<u64>) {
        Env::reset(self, seed);
    }

    fn advance(&mut self, u: f64) -> (f64, bool) {
        // Pendulum-v1 never terminates; only the time limit ends an episode.
        (Env::step(self, &[u]).reward, false)
    }

    fn state_into(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.state());
    }

    fn observation_into(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.obs());
    }

    fn draw_into(&self, size: usize, out: &mut [u8]) {
        render_into(self.state()[0], size, out);
    }
}

/// A cart-pole of the vector with the system that draws it (the registry id's pole drawing).
struct CartPoleMember {
    env: CartPoleSwingUp,
    system: CartPoleSystem,
}

impl Member for CartPoleMember {
    fn restart(&mut self, seed: Option<u64>) {
        self.env.reset(seed);
    }

    fn advance(&mut self, u: f64) -> (f64, bool) {
        let s = self.env.step(&[u]);
        (s.reward, s.terminated)
    }

    fn state_into(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.env.state());
    }

    fn observation_into(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.env.state());
    }

    fn draw_into(&self, size: usize, out: &mut [u8]) {
        self.system.render_into(&self.env.state(), size, out);
    }
}

/// The systems a [`VectorCore`] steps, with their dimensions.
#[derive(Debug, Clone, Copy)]
struct Kind {
    /// Length of the exact state (`info["state"]`).
    state_dim: usize,
    /// Length of the state observation.
    obs_dim: usize,
}

/// `num_envs` fresh members of the registry id `env_id`, and their dimensions.
fn members(env_id: &str, num_envs: usize) -> PyResult<(Vec<Box<dyn Member>>, Kind)> {
    if env_id == "Pendulum-v1" {
        let envs = (0..num_envs).map(|_| Box::new(Pendulum::default()) as Box<dyn Member>);
        return Ok((envs.collect(), Kind { state_dim: 2, obs_dim: 3 }));
    }
    let cartpole = cartpole_system(env_id, "environment id", "\"Pendulum-v1\", ")?;
    let envs = (0..num_envs).map(|_| {
        let env = CartPoleSwingUp::new(cartpole.params);
        Box::new(CartPoleMember { env, system: cartpole.clone() }) as Box<dyn Member>
    });
    Ok((envs.collect(), Kind { state_dim: 4, obs_dim: 4 }))
}

/// `N` environments of one registry id (the pendulum or a cart-pole) stepped together, with a
/// time limit and next-step autoreset (Gymnasium's default: the step after an episode ends
/// resets that environment, ignores its action and returns reward 0).
#[pyclass(module = "ekvae._ekvae")]
pub struct VectorCore {
    envs: Vec<Box<dyn Member>>,
    kind: Kind,
    size: usize,
    obs: ObsType,
    max_steps: usize,
    elapsed: Vec<usize>,
    ended: Vec<bool>,
}

/// The arrays of one vector step: frames, state observations, rewards, terminated, truncated, states.
type Outputs = (Vec<u8>, Vec<f64>, Vec<f64>, Vec<bool>, Vec<bool>, Vec<f64>);

impl VectorCore {
    /// Frames or state observations of all environments (fresh arrays).
    fn observe(&self) -> (Vec<u8>, Vec<f64>) {
        let (n, s) = (self.envs.len(), self.size);
        match self.obs {
            ObsType::Pixels => {
                let mut frames = vec![0u8; n * s * s];
                frames
                    .par_chunks_mut(s * s)
                    .with_min_len(min_len(s))
                    .zip(self.envs.par_iter())
                    .for_each(|(f, env)| env.draw_into(s, f));
                (frames, Vec::new())
            }
            ObsType::State => {
                let mut obs = vec![0.0; n * self.kind.obs_dim];
                for (env, o) in self.envs.iter().zip(obs.chunks_exact_mut(self.kind.obs_dim)) {
                    env.observation_into(o);
                }
                (Vec::new(), obs)
            }
        }
    }

    fn states(&self) -> Vec<f64> {
        let mut states = vec![0.0; self.envs.len() * self.kind.state_dim];
        for (env, st) in self.envs.iter().zip(states.chunks_exact_mut(self.kind.state_dim)) {
            env.state_into(st);
        }
        states
    }

    fn obs_array<'py>(
        &self,
        py: Python<'py>,
        frames: Vec<u8>,
        obs: Vec<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = self.envs.len();
        match self.obs {
            ObsType::Pixels => Ok(array(py, frames, &[n, self.size, self.size])?.into_any()),
            ObsType::State => Ok(array(py, obs, &[n, self.kind.obs_dim])?.into_any()),
        }
    }
}

/// Pendulums per rayon task: enough pixels per task that splitting pays.
fn min_len(size: usize) -> usize {
    (4096 / (size * size)).max(1)
}

#[pymethods]
impl VectorCore {
    /// `num_envs` environments of registry id `env_id` (`Pendulum-v1` or one of the cart-pole
    /// ids) observed as frames or states; episodes are cut after `max_episode_steps` steps.
    #[new]
    #[pyo3(signature = (num_envs, size = 16, obs_type = "pixels", max_episode_steps = 200, env_id = "Pendulum-v1"))]
    fn new(
        num_envs: usize,
        size: usize,
        obs_type: &str,
        max_episode_steps: usize,
        env_id: &str,
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
                "use fewer or smaller environments",
            )
            .map_err(crate::errors::to_py)?;
        }
        let (envs, kind) = members(env_id, num_envs)?;
        Ok(Self {
            envs,
            kind,
            size,
            obs,
            max_steps: max_episode_steps,
            elapsed: vec![0; num_envs],
            ended: vec![false; num_envs],
        })
    }

    /// Number of environments.
    #[getter]
    fn num_envs(&self) -> usize {
        self.envs.len()
    }

    /// Resets every environment: with `seeds` (one per environment, or None each) re-seeded
    /// first. Returns `(observations, states)`.
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
            env.restart(seed);
        }
        self.elapsed.fill(0);
        self.ended.fill(false);
        let (frames, obs) = py.detach(|| self.observe());
        let states = self.states();
        Ok((self.obs_array(py, frames, obs)?, array(py, states, &[n, self.kind.state_dim])?))
    }

    /// Steps every environment with its action (`actions`: `N` numbers, float64): returns
    /// `(observations, rewards, terminated, truncated, states)`. An environment whose episode
    /// ended at the previous step (terminated or truncated) is reset instead (its action
    /// ignored, reward 0).
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
                "actions have shape {}; expected {n} actions (shape ({n}, 1) or ({n},))",
                py_shape(&shape(&a))
            )));
        }
        if let Some(i) = u.iter().position(|v| !v.is_finite()) {
            return Err(value_error(format!("action {} of environment {i} is not finite", u[i])));
        }
        let u = u.to_vec();
        let (s, max_steps, kind) = (self.size, self.max_steps, self.kind);
        let pixels = self.obs == ObsType::Pixels;
        let (envs, elapsed, ended) = (&mut self.envs, &mut self.elapsed, &mut self.ended);
        let (frames, obs, rewards, terminated, truncated, states): Outputs = py.detach(|| {
            let mut frames = vec![0u8; if pixels { n * s * s } else { 0 }];
            let mut obs = vec![0.0f64; if pixels { 0 } else { n * kind.obs_dim }];
            let mut rewards = vec![0.0f64; n];
            let mut terminated = vec![false; n];
            let mut truncated = vec![false; n];
            let mut states = vec![0.0f64; kind.state_dim * n];
            let step_one = |env: &mut Box<dyn Member>,
                            elapsed: &mut usize,
                            ended: &mut bool,
                            u: f64,
                            (reward, term, trunc): (&mut f64, &mut bool, &mut bool),
                            state: &mut [f64]| {
                if *ended {
                    env.restart(None);
                    *elapsed = 0;
                    *ended = false;
                } else {
                    let (r, t) = env.advance(u);
                    *reward = r;
                    *term = t;
                    *elapsed += 1;
                    *trunc = *elapsed >= max_steps;
                    *ended = *term || *trunc;
                }
                env.state_into(state);
            };
            let work = envs
                .par_iter_mut()
                .zip(elapsed.par_iter_mut())
                .zip(ended.par_iter_mut())
                .zip(u.par_iter())
                .zip(rewards.par_iter_mut())
                .zip(terminated.par_iter_mut())
                .zip(truncated.par_iter_mut())
                .zip(states.par_chunks_mut(kind.state_dim))
                .with_min_len(min_len(s));
            if pixels {
                work.zip(frames.par_chunks_mut(s * s)).for_each(
                    |((((((((env, el), en), u), r), te), tr), st), f)| {
                        step_one(env, el, en, *u, (r, te, tr), st);
                        env.draw_into(s, f);
                    },
                );
            } else {
                work.zip(obs.par_chunks_mut(kind.obs_dim)).for_each(
                    |((((((((env, el), en), u), r), te), tr), st), o)| {
                        step_one(env, el, en, *u, (r, te, tr), st);
                        env.observation_into(o);
                    },
                );
            }
            (frames, obs, rewards, terminated, truncated, states)
        });
        Ok((
            self.obs_array(py, frames, obs)?,
            array(py, rewards, &[n])?,
            array(py, terminated, &[n])?,
            array(py, truncated, &[n])?,
            array(py, states, &[n, kind.state_dim])?,
        ))
    }

    /// Frames of all environments at `size`, `uint8 [N, size, size]` (or `[N, size, size, 3]`
    /// with `rgb`).
    #[pyo3(signature = (size = None, rgb = false))]
    fn frames<'py>(
        &self,
        py: Python<'py>,
        size: Option<usize>,
        rgb: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let size = size.unwrap_or(self.size);
        check_size(size, "render size")?;
        let mut gray = vec![0u8; self.envs.len() * size * size];
        for (env, f) in self.envs.iter().zip(gray.chunks_exact_mut(size * size)) {
            env.draw_into(size, f);
        }
        gray_array(py, gray, &[self.envs.len()], size, rgb)
    }

    /// The exact states of all environments, `float64 [N, state_dim]` (the pendulum's `(θ, θ̇)`,
    /// the cart-pole's `(x, ẋ, θ, θ̇)`).
    fn states_array<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        array(py, self.states(), &[self.envs.len(), self.kind.state_dim])
    }
}
