//! Gymnasium-style environments with pixel observations, rollout collection and dataset files.
//!
//! - [`Env`], [`Step`], [`Info`], [`Frame`] and [`ResetTo`]: the environment interface, with
//!   Gymnasium's conventions (`reset(seed) -> (obs, info)`, `terminated` vs `truncated`).
//! - [`BoxSpace`]: Gymnasium's `Box` space with seeded sampling.
//! - [`wrappers`]: [`TimeLimit`](wrappers::TimeLimit), [`PixelObservation`](wrappers::PixelObservation),
//!   [`ClipAction`](wrappers::ClipAction), [`RecordEpisodeStatistics`](wrappers::RecordEpisodeStatistics).
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
//! This crate does no machine learning and depends on no other ekvae crate.

pub mod collect;
pub mod dataset;
pub mod env;
pub mod error;
pub mod pendulum;
pub mod render;
pub mod space;
pub mod wrappers;

pub use dataset::{Dataset, DatasetMeta};
pub use env::{Env, Frame, Info, ResetTo, Step};
pub use error::{Error, Result};
pub use pendulum::Pendulum;
pub use space::BoxSpace;
