//! The small numerics the ekvae crates share, each in one place: dense `f64` linear algebra
//! on row-major slices for the sizes a latent state-space model and iLQR see (n ≤ 8 or so),
//! and the angle wrap of Gymnasium's pendulum.
//!
//! - [`dense`]: products ([`mat_vec`], [`mat_t_vec`], [`mat_mul`], [`mat_mul_t`],
//!   [`add_mat_t_mul`]), [`symmetrize`], [`is_symmetric`], the Cholesky factorisation
//!   [`cholesky`] (an error, [`NotPositiveDefinite`], when the matrix is not numerically
//!   positive definite) and the solve [`cholesky_solve`] with its factor. Hand-written and
//!   allocation-free (the caller owns every buffer), so the planner can call them in its inner
//!   loop; no BLAS.
//! - [`angle`]: [`angle_normalize`], Gymnasium's `((x + π) mod 2π) − π` with a floor modulo.
//!
//! A matrix `A` of shape `[r, c]` is a slice with `A[i·c + j] = A_ij`.
//!
//! This crate depends on nothing; every other ekvae crate may use it.
//!
//! ```
//! use ekvae_numerics::{angle_normalize, cholesky, cholesky_solve};
//!
//! // Solve S x = b for S = [[4, 2], [2, 3]] (L = [[2, 0], [1, √2]]) and b = S·[1, −1] = [2, −1].
//! let s = [4.0, 2.0, 2.0, 3.0];
//! let mut l = [0.0; 4];
//! cholesky(&s, 2, &mut l).expect("S is positive definite");
//! assert_eq!(l[..3], [2.0, 0.0, 1.0]);
//! let mut x = [2.0, -1.0];
//! cholesky_solve(&l, 2, &mut x);
//! assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] + 1.0).abs() < 1e-12);
//!
//! // An indefinite matrix (eigenvalues 3 and −1) has no Cholesky factor.
//! assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2, &mut l).is_err());
//!
//! // Angles wrap into [−π, π): π itself maps to −π.
//! assert_eq!(angle_normalize(std::f64::consts::PI), -std::f64::consts::PI);
//! ```

// Index loops mirror the matrix formulas (A[i*c + j], …); iterators would hide them.
#![allow(clippy::needless_range_loop)]

pub mod angle;
pub mod dense;

pub use angle::angle_normalize;
pub use dense::{
    NotPositiveDefinite, add_mat_t_mul, cholesky, cholesky_solve, is_symmetric, mat_mul, mat_mul_t,
    mat_t_vec, mat_vec, symmetric_eigen, symmetrize,
};
