//! The ekvae pipeline as a library: every stage takes a typed config and returns typed results;
//! writing them (CSV, JSON, PNG, GIF) is left to the caller (the `ekvae` command line writes
//! them with `ekvae-experiments`).
//!
//! - [`collect`]: a dataset's settings checked before any work, collected and saved
//!   ([`collect::collect_to`], over [`ekvae_envs::collect::collect`]).
//! - [`train`]: a run's config from defaults, a user's file and overrides; training with model
//!   selection over seeds ([`train::train_run`]).
//! - [`eval`]: identification, open-loop prediction and the fold diagnostic of a trained run.
//! - [`control`] and [`swingup`]: the controllers and the swing-up episodes, on the true
//!   pendulum or from pixels through a trained model.
//! - [`select`]: a controller's planning horizon chosen on starts its evaluation does not use.
//! - [`reproduce`]: the grid of the prediction-accuracy table, its shards and the table.
//!
//! ```
//! use ekvae_pipeline::swingup::{Planner, SwingUpConfig, run_swingup};
//!
//! // Swing the true pendulum up from hanging at rest, planning on its exact physics.
//! let config = SwingUpConfig {
//!     episodes: 1,
//!     start: Some([std::f64::consts::PI, 0.0]),
//!     ..SwingUpConfig::default()
//! };
//! let result = run_swingup(&config, &Planner::True, &mut |_, _| {}).unwrap();
//! assert_eq!(result.steps.len(), 200);
//! assert!(result.success_rate == 1.0, "return {}", result.mean_return);
//! ```

mod error;

pub mod collect;
pub mod control;
pub mod eval;
pub mod reproduce;
pub mod select;
pub mod swingup;
pub mod task;
pub mod train;

pub use error::{Context, Error, Result};
