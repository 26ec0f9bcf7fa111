//! iLQR and MPC for ekvae. Knows nothing about burn or learned models: anything that
//! implements [`Dynamics`] and [`Cost`] can be planned for.
//!
//! - [`Dynamics`]: `x' = f(x, u)` with Jacobians `A = ∂f/∂x`, `B = ∂f/∂u` from one
//!   [`Dynamics::linearize`] call; [`LinearDynamics`]; [`TruePendulum`], the exact
//!   `Pendulum-v1` physics of [`ekvae_envs::pendulum`] with exact Jacobians (velocity and torque clips).
//! - [`Cost`]: running and terminal cost with gradients and Hessians ([`Quadratization`]);
//!   [`QuadraticCost`] around a goal state, [`PendulumCost`] (the `Pendulum-v1` cost, angle wrapped).
//! - [`Ilqr`]: iLQR with a box-QP for control limits, Levenberg–Marquardt regularisation
//!   ([`Regularization`]), backtracking [`LineSearch`], warm and multi-start ([`InitialGuess`]);
//!   returns an [`IlqrSolution`] with its [`StopReason`].
//! - [`Mpc`]: receding-horizon control with shifted warm starts and multi-start re-planning;
//!   [`StateEstimator`] (e.g. [`ExactState`]) and [`MpcAgent`] connect it to observations.
//!
//! ```
//! use ekvae_envs::pendulum::{PendulumParams, angle_normalize, step};
//! use ekvae_planner::{ControlBounds, ExactState, Mpc, MpcAgent, MpcConfig, PendulumCost, TruePendulum};
//! // Swing the pendulum up from hanging at rest with iLQR-MPC on its exact physics.
//! let (lower, upper) = TruePendulum::default().control_limits();
//! let config = MpcConfig::with_bounds(ControlBounds { lower, upper });
//! let mpc = Mpc::new(TruePendulum::default(), PendulumCost::default(), config).unwrap();
//! let mut agent = MpcAgent::new(ExactState, mpc);
//! let mut state = [std::f64::consts::PI, 0.0];
//! for _ in 0..100 {
//!     let plan = agent.act(&state).unwrap();
//!     state = step(&PendulumParams::default(), state, plan.u[0]).state;
//! }
//! assert!(angle_normalize(state[0]).abs() < 0.1, "not upright: {state:?}");
//! ```

// Index loops mirror the matrix formulas (Q_ux[i*n + j], …); iterators would hide them.
#![allow(clippy::needless_range_loop)]

pub mod boxqp;
pub mod cartpole;
pub mod cost;
pub mod dynamics;
mod error;
pub mod ilqr;
pub mod mpc;
pub mod pendulum;
#[cfg(test)]
mod testutil;

pub use cartpole::{CartPoleCost, TrueCartPole};
pub use cost::{Cost, PendulumCost, QuadraticCost, Quadratization};
pub use dynamics::{Dynamics, LinearDynamics};
pub use error::{Error, Result};
pub use ilqr::{
    ControlBounds, Ilqr, IlqrConfig, IlqrSolution, InitialGuess, LineSearch, MultiStartSolution,
    Regularization, StopReason,
};
pub use mpc::{ExactState, Mpc, MpcAgent, MpcConfig, MpcStep, StateEstimator, WarmStart};
pub use pendulum::TruePendulum;
