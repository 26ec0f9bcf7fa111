//! `ekvae`: learn deep state-space models from pixels and control real systems with them.
//!
//! This facade re-exports the workspace crates:
//! - [`numerics`]: the small shared numerics (dense f64 Cholesky and products, the angle wrap);
//! - [`envs`]: gymnasium-style environments (the pixel pendulum), rollout collection, dataset files;
//! - [`model`]: the EKVAE world model in burn (Kalman smoother, constrained ELBO, training);
//! - [`planner`]: iLQR and MPC, the true pendulum as a `Dynamics`;
//! - [`pipeline`]: the stages as library functions (collect, train, eval, swing-up, the
//!   reproduction grid) with typed configs and results;
//! - [`experiments`]: the `ekvae` command line and its output writers.
//!
//! `examples/pipeline.rs` runs collect → train → eval → swing-up through [`pipeline`].

pub use ekvae_envs as envs;
pub use ekvae_experiments as experiments;
pub use ekvae_model as model;
pub use ekvae_numerics as numerics;
pub use ekvae_pipeline as pipeline;
pub use ekvae_planner as planner;
