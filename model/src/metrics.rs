//! Latent-space identification: ordinary least squares with an intercept from latent features
//! to true physical quantities, and the coefficient of determination R².
//!
//! Plain f64 Rust (no burn): the normal equations [1 X]ᵀ[1 X] w = [1 X]ᵀ y are solved by a
//! Cholesky factorisation ([`ekvae_numerics::cholesky`]); features are standardised first so that the system is well
//! conditioned, and a tiny ridge (10⁻¹² of the trace) keeps it solvable for constant features.

use ekvae_numerics::{cholesky, cholesky_solve};

use crate::{Error, Result};

/// A fitted linear map y ≈ W x + c from `inputs` features to `outputs` targets.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegression {
    /// Number of input features.
    pub inputs: usize,
    /// Number of outputs.
    pub outputs: usize,
    /// Weights, `[outputs][inputs]` row-major, in the original (unstandardised) units.
    pub weights: Vec<f64>,
    /// Intercepts, `[outputs]`.
    pub intercept: Vec<f64>,
}

impl LinearRegression {
    /// Least-squares fit with intercept of `y` (`rows × outputs`, row-major) on `x`
    /// (`rows × inputs`, row-major).
    pub fn fit(x: &[f64], inputs: usize, y: &[f64], outputs: usize) -> Result<Self> {
        if inputs == 0
            || outputs == 0
            || !x.len().is_multiple_of(inputs)
            || !y.len().is_multiple_of(outputs)
        {
            return Err(Error::ShapeMismatch(
                "regression needs at least one input and output".into(),
            ));
        }
        let rows = x.len() / inputs;
        if y.len() / outputs != rows {
            return Err(Error::ShapeMismatch(format!(
                "regression inputs have {rows} rows, targets {}",
                y.len() / outputs
            )));
        }
        if rows <= inputs {
            return Err(Error::ShapeMismatch(format!(
                "regression needs more rows ({rows}) than features ({inputs})"
            )));
        }
        if x.iter().chain(y).any(|v| !v.is_finite()) {
            return Err(Error::Numerical("regression data contain NaN or infinity".into()));
        }
        // Standardise features.
        let mut mean = vec![0.0; inputs];
        let mut scale = vec![0.0; inputs];
        for r in 0..rows {
            for j in 0..inputs {
                mean[j] += x[r * inputs + j];
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        for r in 0..rows {
            for j in 0..inputs {
                let d = x[r * inputs + j] - mean[j];
                scale[j] += d * d;
            }
        }
        scale.iter_mut().for_each(|s| *s = (*s / rows as f64).sqrt().max(1e-300));
        let p = inputs + 1;
        let mut gram = vec![0.0; p * p];
        let mut rhs = vec![0.0; p * outputs];
        let mut row = vec![0.0; p];
        for r in 0..rows {
            row[0] = 1.0;
            for j in 0..inputs {
                row[j + 1] = (x[r * inputs + j] - mean[j]) / scale[j];
            }
            for i in 0..p {
                for j in 0..p {
                    gram[i * p + j] += row[i] * row[j];
                }
                for o in 0..outputs {
                    rhs[o * p + i] += row[i] * y[r * outputs + o];
                }
            }
        }
        let trace: f64 = (0..p).map(|i| gram[i * p + i]).sum();
        for i in 1..p {
            gram[i * p + i] += 1e-12 * trace;
        }
        let mut chol = vec![0.0; p * p];
        cholesky(&gram, p, &mut chol)
            .map_err(|_| Error::Numerical("regression normal equations are singular".into()))?;
        let mut weights = vec![0.0; outputs * inputs];
        let mut intercept = vec![0.0; outputs];
        for o in 0..outputs {
            let mut b = rhs[o * p..(o + 1) * p].to_vec();
            cholesky_solve(&chol, p, &mut b);
            let mut c = b[0];
            for j in 0..inputs {
                let w = b[j + 1] / scale[j];
                weights[o * inputs + j] = w;
                c -= w * mean[j];
            }
            intercept[o] = c;
        }
        Ok(Self { inputs, outputs, weights, intercept })
    }

    /// Predictions for `x` (`rows × inputs`), row-major `rows × outputs`.
    pub fn predict(&self, x: &[f64]) -> Vec<f64> {
        let rows = x.len() / self.inputs;
        let mut out = Vec::with_capacity(rows * self.outputs);
        for r in 0..rows {
            for o in 0..self.outputs {
                let mut v = self.intercept[o];
                for j in 0..self.inputs {
                    v += self.weights[o * self.inputs + j] * x[r * self.inputs + j];
                }
                out.push(v);
            }
        }
        out
    }
}

/// R² of each output column: 1 − SS_res / SS_tot (`y_true`, `y_pred` row-major
/// `rows × outputs`). A constant column has R² = 1 if predicted exactly, else −∞.
pub fn r2_per_output(y_true: &[f64], y_pred: &[f64], outputs: usize) -> Vec<f64> {
    let rows = y_true.len() / outputs;
    (0..outputs)
        .map(|o| {
            let mean = (0..rows).map(|r| y_true[r * outputs + o]).sum::<f64>() / rows as f64;
            let (mut ss_res, mut ss_tot) = (0.0, 0.0);
            for r in 0..rows {
                let t = y_true[r * outputs + o];
                ss_res += (t - y_pred[r * outputs + o]).powi(2);
                ss_tot += (t - mean).powi(2);
            }
            if ss_tot > 0.0 {
                1.0 - ss_res / ss_tot
            } else if ss_res == 0.0 {
                1.0
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// R² averaged uniformly over the outputs (scikit-learn's `r2_score` default,
/// `multioutput="uniform_average"`).
pub fn r2_score(y_true: &[f64], y_pred: &[f64], outputs: usize) -> f64 {
    let per = r2_per_output(y_true, y_pred, outputs);
    per.iter().sum::<f64>() / per.len() as f64
}

/// Mean squared difference of two equally long pixel buffers.
///
/// # Panics
/// If the lengths differ or are zero (a caller bug, not a data error).
pub fn mean_squared_error(a: &[f32], b: &[f32]) -> f64 {
    assert!(
        !a.is_empty() && a.len() == b.len(),
        "mean_squared_error of {} vs {}",
        a.len(),
        b.len()
    );
    a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>()
        / a.len() as f64
}

/// Absolute angular distance |wrap(a − b)| in [0, π] (radians), with the workspace's one wrap
/// [`ekvae_numerics::angle_normalize`].
pub fn angle_error(a: f64, b: f64) -> f64 {
    ekvae_numerics::angle_normalize(a - b).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn exact_linear_data_is_recovered_with_r2_one() {
        // y0 = 2 x0 − 3 x1 + 0.5 x2 + 7, y1 = −x2 + 100 · x0 − 1 (constructed).
        let mut s = 1;
        let rows = 200;
        let x: Vec<f64> = (0..rows * 3).map(|_| lcg(&mut s) * 10.0).collect();
        let y: Vec<f64> = (0..rows)
            .flat_map(|r| {
                let (a, b, c) = (x[3 * r], x[3 * r + 1], x[3 * r + 2]);
                [2.0 * a - 3.0 * b + 0.5 * c + 7.0, -c + 100.0 * a - 1.0]
            })
            .collect();
        let fit = LinearRegression::fit(&x, 3, &y, 2).unwrap();
        let want = [2.0, -3.0, 0.5, 100.0, 0.0, -1.0];
        for (w, v) in fit.weights.iter().zip(want) {
            // The 1e-12·trace ridge biases the weights by ~1e-10 relative.
            assert!((w - v).abs() < 1e-8 * (1.0 + v.abs()), "{w} vs {v}");
        }
        assert!((fit.intercept[0] - 7.0).abs() < 1e-8);
        assert!((fit.intercept[1] + 1.0).abs() < 1e-8);
        let r2 = r2_score(&y, &fit.predict(&x), 2);
        assert!((r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn useless_features_give_r2_near_zero_out_of_sample() {
        let mut s = 7;
        let rows = 4000;
        let x: Vec<f64> = (0..rows * 2).map(|_| lcg(&mut s)).collect();
        let y: Vec<f64> = (0..rows).map(|_| lcg(&mut s)).collect(); // independent of x
        let fit = LinearRegression::fit(&x[..rows], 2, &y[..rows / 2], 1).unwrap();
        let r2 = r2_score(&y[rows / 2..], &fit.predict(&x[rows..]), 1);
        assert!(r2.abs() < 0.01, "r2 = {r2}");
        // Predicting the mean of the evaluation data itself gives exactly 0.
        let mean = y.iter().sum::<f64>() / rows as f64;
        assert!(r2_score(&y, &vec![mean; rows], 1).abs() < 1e-12);
    }

    #[test]
    fn r2_of_a_half_explained_target() {
        // y = x + e with x, e independent of equal variance: R² of y on x is 1/2.
        let mut s = 3;
        let rows = 20000;
        let x: Vec<f64> = (0..rows).map(|_| lcg(&mut s)).collect();
        let y: Vec<f64> = x.iter().map(|v| v + lcg(&mut s)).collect();
        let fit = LinearRegression::fit(&x, 1, &y, 1).unwrap();
        let r2 = r2_score(&y, &fit.predict(&x), 1);
        assert!((r2 - 0.5).abs() < 0.02, "r2 = {r2}");
    }

    #[test]
    fn pixel_mse_of_identical_and_of_known_frames() {
        let a = [0.0f32, 0.25, 1.0, 0.5];
        assert_eq!(mean_squared_error(&a, &a), 0.0);
        // (1² + 0.25² + 0 + 0.5²) / 4 = 1.3125 / 4, by hand.
        let b = [1.0f32, 0.0, 1.0, 0.0];
        assert!((mean_squared_error(&a, &b) - 1.3125 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn angle_error_wraps_at_plus_minus_pi() {
        use std::f64::consts::PI;
        // Just either side of ±π are 0.2 apart, not 2π − 0.2.
        assert!((angle_error(PI - 0.1, -PI + 0.1) - 0.2).abs() < 1e-12);
        assert!((angle_error(-PI + 0.1, PI - 0.1) - 0.2).abs() < 1e-12);
        // Whole turns do not count; opposite angles are π apart.
        assert!(angle_error(3.0 * PI, PI).abs() < 1e-12);
        assert!(angle_error(0.3 + 4.0 * PI, 0.3).abs() < 1e-9);
        assert!((angle_error(0.0, PI) - PI).abs() < 1e-12);
        assert!((angle_error(1.0, -1.0) - 2.0).abs() < 1e-12);
        for i in -100..100 {
            let e = angle_error(i as f64 * 0.37, -(i as f64) * 0.11);
            assert!((0.0..=PI).contains(&e));
        }
        // Opposite angles: the wrap maps π to −π, so the error is π either way round.
        assert_eq!(angle_error(PI, 0.0), PI);
    }

    #[test]
    fn bad_shapes_and_nan_are_errors() {
        assert!(LinearRegression::fit(&[1.0, 2.0], 1, &[1.0], 1).is_err());
        assert!(LinearRegression::fit(&[1.0, 2.0, 3.0], 1, &[1.0, f64::NAN, 2.0], 1).is_err());
        assert!(LinearRegression::fit(&[1.0], 1, &[1.0], 1).is_err());
    }
}
