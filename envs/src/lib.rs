//! Gymnasium-style environments for ekvae.
//!
//! - [`pendulum`]: the exact physics of Gymnasium's `Pendulum-v1` as pure functions
//!   ([`pendulum::PendulumParams`], [`pendulum::step`], [`pendulum::angle_normalize`]),
//!   shared with the planner so the physics exists once.

pub mod pendulum;
