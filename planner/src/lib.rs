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

// Index loops mirror the matrix formulas (Q_ux[i*n + j], …); iterators would hide them.
#![allow(clippy::needless_range_loop)]

pub mod boxqp;
pub mod cost;
pub mod dynamics;
mod error;
pub mod ilqr;
pub mod mpc;
pub mod pendulum;
#[cfg(test)]
mod testutil;

pub use cost::{Cost, PendulumCost, QuadraticCost, Quadratization};
pub use dynamics::{Dynamics, LinearDynamics};
pub use error::{Error, Result};
pub use ilqr::{
    ControlBounds, Ilqr, IlqrConfig, IlqrSolution, InitialGuess, LineSearch, MultiStartSolution,
    Regularization, StopReason,
};
pub use mpc::{ExactState, Mpc, MpcAgent, MpcConfig, MpcStep, StateEstimator};
pub use pendulum::TruePendulum;
