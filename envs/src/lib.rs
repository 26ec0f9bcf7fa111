//! Gymnasium-style environments with pixel observations, rollout collection and dataset files.
//!
//! - [`Env`], [`Step`], [`Info`], [`Frame`] and [`ResetTo`]: the environment interface, with
//!   Gymnasium's conventions (`reset(seed) -> (obs, info)`, `terminated` vs `truncated`).
//! - [`BoxSpace`]: Gymnasium's `Box` space with seeded sampling.
//! - [`wrappers`]: [`TimeLimit`](wrappers::TimeLimit), [`PixelObservation`](wrappers::PixelObservation),
//!   [`ClipAction`](wrappers::ClipAction), [`RecordEpisodeStatistics`](wrappers::RecordEpisodeStatistics),
//!   [`FrameStack`](wrappers::FrameStack).
//! - [`pendulum`]: the exact physics of Gymnasium's `Pendulum-v1` as pure functions
//!   ([`pendulum::PendulumParams`], [`pendulum::step`], [`pendulum::angle_normalize`]), shared
//!   with the planner so the physics exists once, and the environment [`Pendulum`] built on them.
//! - [`render`]: the anti-aliased rasteriser ([`render::render`], [`render::render_into`]).
//! - [`collect`]: parallel, seed-deterministic random-action rollouts ([`collect::collect`],
//!   the [`collect::Policy`] trait, built-in [`collect::PolicySpec`]s).
//! - [`dataset`]: the `.npz` dataset file ([`Dataset`], [`DatasetMeta`]) that `numpy.load` opens.
//!
//! Errors are [`Error`]; every file error names the file.
//!
//! ```
//! use ekvae_envs::{Env, pendulum, wrappers::PixelObservation};
//! // gymnasium.make("Pendulum-v1") with 32×32 grayscale pixel observations:
//! let mut env = PixelObservation::new(pendulum::make(), 32);
//! let (frame, _info) = env.reset(Some(0));
//! assert_eq!(frame.pixels.len(), 32 * 32);
//! let mut steps = 0;
//! loop {
//!     let step = env.step(&[0.5]);
//!     steps += 1;
//!     assert!(step.reward <= 0.0);
//!     if step.terminated || step.truncated {
//!         break;
//!     }
//! }
//! assert_eq!(steps, 200);
//! ```
//!
//! This crate does no machine learning and depends on no other ekvae crate but the leaf
//! `ekvae-numerics` (for the angle wrap).

pub mod cartpole;
pub mod collect;
pub mod dataset;
pub mod env;
pub mod error;
pub mod fsio;
pub mod pendulum;
pub mod render;
pub mod space;
pub mod system;
pub mod wrappers;

pub use dataset::{Dataset, DatasetMeta};
pub use env::{Env, Frame, Info, ResetTo, Step};
pub use error::{Error, Result};
pub use pendulum::Pendulum;
pub use space::BoxSpace;
pub use system::{Outcome, Registry, System};
