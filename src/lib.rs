//! `ekvae`: learn deep state-space models from pixels and control real systems with them.
//!
//! This facade re-exports the workspace crates:
//! - [`numerics`]: the small shared numerics (dense f64 Cholesky and products, the angle wrap);
//! - [`envs`]: gymnasium-style environments (the pixel pendulum), rollout collection, dataset files;
//! - [`model`]: the EKVAE world model in burn (Kalman smoother, constrained ELBO, training);
//! - [`planner`]: iLQR and MPC, the true pendulum as a `Dynamics`;
//! - [`experiments`]: the `ekvae` command line (collect, inspect, train, eval, mpc).

pub use ekvae_envs as envs;
pub use ekvae_experiments as experiments;
pub use ekvae_model as model;
pub use ekvae_numerics as numerics;
pub use ekvae_planner as planner;
