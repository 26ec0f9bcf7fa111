//! The Gymnasium-style environment interface: [`Env`], [`Step`], [`Info`] and [`Frame`].
//!
//! Conventions follow Gymnasium (≥ 0.26):
//! - `reset(seed)` starts an episode and returns `(observation, info)`. With `Some(seed)` the
//!   environment's random generator is re-seeded (same seed → same episode on every machine);
//!   with `None` it continues from its current generator state.
//! - `step(action)` returns a [`Step`] with `terminated` (the task ended: a terminal state of the
//!   MDP) and `truncated` (the episode was cut, e.g. by [`crate::wrappers::TimeLimit`]) kept apart.
//! - `render` returns a grayscale [`Frame`] of the current state.

use crate::space::BoxSpace;

/// The result of [`Env::step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step<O> {
    /// The observation after the step.
    pub obs: O,
    /// The reward of the step.
    pub reward: f64,
    /// Whether a terminal state of the MDP was reached (the episode must be reset).
    pub terminated: bool,
    /// Whether the episode was cut short from outside the MDP (a time limit).
    pub truncated: bool,
    /// Auxiliary diagnostics (Gymnasium's `info` dict).
    pub info: Info,
}

impl<O> Step<O> {
    /// `terminated || truncated`: the episode is over and the next call should be `reset`.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }

    /// The same step with its observation mapped by `f` (used by observation wrappers).
    pub fn map_obs<P>(self, f: impl FnOnce(O) -> P) -> Step<P> {
        Step {
            obs: f(self.obs),
            reward: self.reward,
            terminated: self.terminated,
            truncated: self.truncated,
            info: self.info,
        }
    }
}

/// Gymnasium's `info` dict, restricted to named numbers; empty (and allocation-free) by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    entries: Vec<(&'static str, f64)>,
}

impl Info {
    /// An empty info.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: &'static str, value: f64) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.entries.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }

    /// All entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.entries.iter().copied()
    }

    /// Whether no entry is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A square grayscale image, row-major, one byte per pixel (0 = black, 255 = white).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width and height in pixels.
    pub size: usize,
    /// `size × size` bytes, row 0 at the top.
    pub pixels: Vec<u8>,
}

impl Frame {
    /// The pixel in row `y`, column `x`.
    pub fn get(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.size + x]
    }
}

/// A Gymnasium-style environment.
pub trait Env {
    /// What the agent observes.
    type Obs;
    /// What the agent does.
    type Action;

    /// Start a new episode; re-seed the environment's generator first if `seed` is given.
    fn reset(&mut self, seed: Option<u64>) -> (Self::Obs, Info);

    /// Apply `action` for one time step.
    fn step(&mut self, action: &Self::Action) -> Step<Self::Obs>;

    /// The space of valid actions (actions outside it may be clipped by the environment).
    fn action_space(&self) -> &BoxSpace;

    /// The space observations lie in.
    fn observation_space(&self) -> &BoxSpace;

    /// A grayscale picture of the current state, `size × size` pixels.
    fn render(&self, size: usize) -> Frame;
}

/// Environments that can start an episode from a chosen state (Gymnasium does this through
/// `reset(options=...)`); wrappers forward it and reset their own bookkeeping.
pub trait ResetTo: Env {
    /// The full state of the environment.
    type State;

    /// Start a new episode in `state`.
    fn reset_to(&mut self, state: Self::State) -> (Self::Obs, Info);
}
