//! Gymnasium-style wrappers: an environment wrapped in another that changes one aspect of it.
//!
//! - [`TimeLimit`]: truncates episodes after a number of steps (Gymnasium's `TimeLimit`).
//! - [`PixelObservation`]: observations are rendered grayscale frames instead of the state
//!   (Gymnasium's `AddRenderObservation(render_only=True)`, formerly `PixelObservationWrapper`).
//! - [`ClipAction`]: clips actions to the action space before passing them on.
//! - [`RecordEpisodeStatistics`]: adds the episode return and length to the last step's info.
//!
//! Every wrapper implements [`Wrapper`], which gives access to the wrapped environment
//! (Gymnasium's `env.env`), and forwards [`ResetTo`] when the inner environment has it.

use crate::env::{Env, Frame, Info, ResetTo, Step};
use crate::space::BoxSpace;

/// A wrapper around an inner environment.
pub trait Wrapper: Env {
    /// The wrapped environment type.
    type Inner: Env;
    /// The wrapped environment.
    fn inner(&self) -> &Self::Inner;
    /// The wrapped environment, mutably (changing it behind the wrapper's back, e.g. stepping it,
    /// bypasses the wrapper's bookkeeping).
    fn inner_mut(&mut self) -> &mut Self::Inner;
    /// Unwrap one level.
    fn into_inner(self) -> Self::Inner;
}

macro_rules! wrapper_access {
    ($name:ident) => {
        impl<E: Env> Wrapper for $name<E>
        where
            $name<E>: Env,
        {
            type Inner = E;
            fn inner(&self) -> &E {
                &self.env
            }
            fn inner_mut(&mut self) -> &mut E {
                &mut self.env
            }
            fn into_inner(self) -> E {
                self.env
            }
        }
    };
}

/// Truncates an episode once `max_episode_steps` steps have been taken since the last reset:
/// that step returns `truncated = true` (and `terminated` as the inner environment says).
#[derive(Debug, Clone)]
pub struct TimeLimit<E> {
    env: E,
    max_episode_steps: usize,
    elapsed: usize,
}

impl<E: Env> TimeLimit<E> {
    /// Wrap `env`, truncating after `max_episode_steps` steps.
    pub fn new(env: E, max_episode_steps: usize) -> Self {
        Self { env, max_episode_steps, elapsed: 0 }
    }

    /// The step limit.
    pub fn max_episode_steps(&self) -> usize {
        self.max_episode_steps
    }

    /// Steps taken since the last reset.
    pub fn elapsed_steps(&self) -> usize {
        self.elapsed
    }
}

impl<E: Env> Env for TimeLimit<E> {
    type Obs = E::Obs;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (E::Obs, Info) {
        self.elapsed = 0;
        self.env.reset(seed)
    }

    fn step(&mut self, action: &E::Action) -> Step<E::Obs> {
        let mut s = self.env.step(action);
        self.elapsed += 1;
        if self.elapsed >= self.max_episode_steps {
            s.truncated = true;
        }
        s
    }

    fn action_space(&self) -> &BoxSpace {
        self.env.action_space()
    }

    fn observation_space(&self) -> &BoxSpace {
        self.env.observation_space()
    }

    fn render(&self, size: usize) -> Frame {
        self.env.render(size)
    }
}

impl<E: ResetTo> ResetTo for TimeLimit<E> {
    type State = E::State;
    fn reset_to(&mut self, state: E::State) -> (E::Obs, Info) {
        self.elapsed = 0;
        self.env.reset_to(state)
    }
}

wrapper_access!(TimeLimit);

/// Observations are `size × size` grayscale renderings of the inner environment's state.
#[derive(Debug, Clone)]
pub struct PixelObservation<E> {
    env: E,
    size: usize,
    space: BoxSpace,
}

impl<E: Env> PixelObservation<E> {
    /// Wrap `env` so that it observes `size × size` frames (pixel values in `[0, 255]`).
    pub fn new(env: E, size: usize) -> Self {
        let space = BoxSpace::uniform_bounds(0.0, 255.0, vec![size, size])
            .expect("0 <= 255 for any shape");
        Self { env, size, space }
    }

    /// The frame size in pixels.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl<E: Env> Env for PixelObservation<E> {
    type Obs = Frame;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (Frame, Info) {
        let (_, info) = self.env.reset(seed);
        (self.env.render(self.size), info)
    }

    fn step(&mut self, action: &E::Action) -> Step<Frame> {
        let s = self.env.step(action);
        let frame = self.env.render(self.size);
        s.map_obs(|_| frame)
    }

    fn action_space(&self) -> &BoxSpace {
        self.env.action_space()
    }

    /// `Box(0, 255, shape=(size, size))`.
    fn observation_space(&self) -> &BoxSpace {
        &self.space
    }

    fn render(&self, size: usize) -> Frame {
        self.env.render(size)
    }
}

impl<E: ResetTo> ResetTo for PixelObservation<E> {
    type State = E::State;
    fn reset_to(&mut self, state: E::State) -> (Frame, Info) {
        let (_, info) = self.env.reset_to(state);
        (self.env.render(self.size), info)
    }
}

wrapper_access!(PixelObservation);

/// Clips each action coordinate to the inner action space's bounds before stepping.
#[derive(Debug, Clone)]
pub struct ClipAction<E> {
    env: E,
}

impl<E: Env> ClipAction<E> {
    /// Wrap `env`.
    pub fn new(env: E) -> Self {
        Self { env }
    }
}

impl<E, const N: usize> Env for ClipAction<E>
where
    E: Env<Action = [f64; N]>,
{
    type Obs = E::Obs;
    type Action = [f64; N];

    fn reset(&mut self, seed: Option<u64>) -> (E::Obs, Info) {
        self.env.reset(seed)
    }

    fn step(&mut self, action: &[f64; N]) -> Step<E::Obs> {
        let space = self.env.action_space();
        let mut a = *action;
        for (i, v) in a.iter_mut().enumerate() {
            *v = v.max(space.low()[i]).min(space.high()[i]);
        }
        self.env.step(&a)
    }

    fn action_space(&self) -> &BoxSpace {
        self.env.action_space()
    }

    fn observation_space(&self) -> &BoxSpace {
        self.env.observation_space()
    }

    fn render(&self, size: usize) -> Frame {
        self.env.render(size)
    }
}

impl<E, const N: usize> ResetTo for ClipAction<E>
where
    E: ResetTo<Action = [f64; N]>,
{
    type State = E::State;
    fn reset_to(&mut self, state: E::State) -> (E::Obs, Info) {
        self.env.reset_to(state)
    }
}

wrapper_access!(ClipAction);

/// Accumulates the return and length of the current episode; the step that ends an episode
/// (terminated or truncated) carries `episode_return` and `episode_length` in its info, like
/// Gymnasium's `info["episode"]["r"]` and `["l"]`.
#[derive(Debug, Clone)]
pub struct RecordEpisodeStatistics<E> {
    env: E,
    episode_return: f64,
    episode_length: usize,
}

impl<E: Env> RecordEpisodeStatistics<E> {
    /// Wrap `env`.
    pub fn new(env: E) -> Self {
        Self { env, episode_return: 0.0, episode_length: 0 }
    }

    /// Return accumulated so far in the current episode.
    pub fn episode_return(&self) -> f64 {
        self.episode_return
    }

    /// Steps taken so far in the current episode.
    pub fn episode_length(&self) -> usize {
        self.episode_length
    }
}

impl<E: Env> Env for RecordEpisodeStatistics<E> {
    type Obs = E::Obs;
    type Action = E::Action;

    fn reset(&mut self, seed: Option<u64>) -> (E::Obs, Info) {
        self.episode_return = 0.0;
        self.episode_length = 0;
        self.env.reset(seed)
    }

    fn step(&mut self, action: &E::Action) -> Step<E::Obs> {
        let mut s = self.env.step(action);
        self.episode_return += s.reward;
        self.episode_length += 1;
        if s.done() {
            s.info.insert("episode_return", self.episode_return);
            s.info.insert("episode_length", self.episode_length as f64);
        }
        s
    }

    fn action_space(&self) -> &BoxSpace {
        self.env.action_space()
    }

    fn observation_space(&self) -> &BoxSpace {
        self.env.observation_space()
    }

    fn render(&self, size: usize) -> Frame {
        self.env.render(size)
    }
}

impl<E: ResetTo> ResetTo for RecordEpisodeStatistics<E> {
    type State = E::State;
    fn reset_to(&mut self, state: E::State) -> (E::Obs, Info) {
        self.episode_return = 0.0;
        self.episode_length = 0;
        self.env.reset_to(state)
    }
}

wrapper_access!(RecordEpisodeStatistics);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pendulum::{self, Pendulum};

    #[test]
    fn time_limit_truncates_at_200_like_gymnasium_make() {
        let mut env = pendulum::make();
        env.reset(Some(0));
        for t in 1..=200 {
            let s = env.step(&[0.0]);
            assert_eq!(s.truncated, t == 200, "step {t}");
            assert!(!s.terminated);
        }
        env.reset(None);
        assert_eq!(env.elapsed_steps(), 0);
        env.reset_to([0.0, 0.0]);
        assert_eq!(env.inner().state(), [0.0, 0.0]);
    }

    #[test]
    fn pixel_observation_renders_the_state() {
        let mut env = PixelObservation::new(Pendulum::default(), 16);
        let (frame, _) = env.reset_to([0.5, 0.0]);
        assert_eq!(frame.size, 16);
        assert_eq!(frame.pixels, crate::render::render(0.5, 16));
        let s = env.step(&[1.0]);
        assert_eq!(s.obs.pixels, crate::render::render(env.inner().state()[0], 16));
        assert_eq!(env.observation_space().shape(), &[16, 16]);
        let (frame, _) = env.reset(Some(1));
        assert!(frame.pixels.iter().all(|&v| env.observation_space().high()[0] >= v as f64));
    }

    #[test]
    fn clip_action_clips_to_the_space() {
        let mut a = ClipAction::new(Pendulum::default());
        let mut b = Pendulum::default();
        a.reset_to([1.0, 0.0]);
        b.reset_to([1.0, 0.0]);
        a.step(&[10.0]);
        b.step(&[2.0]);
        assert_eq!(a.inner().state(), b.state());
    }

    #[test]
    fn record_episode_statistics_sums_rewards() {
        let mut env = RecordEpisodeStatistics::new(TimeLimit::new(Pendulum::default(), 5));
        env.reset(Some(2));
        let mut total = 0.0;
        for t in 1..=5 {
            let s = env.step(&[0.5]);
            total += s.reward;
            if t < 5 {
                assert!(s.info.get("episode_return").is_none());
            } else {
                assert_eq!(s.info.get("episode_return"), Some(total));
                assert_eq!(s.info.get("episode_length"), Some(5.0));
            }
        }
        assert_eq!(env.into_inner().into_inner().params().l, 1.0);
    }
}
