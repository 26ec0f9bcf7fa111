//! Latent-space identification (`docs/design.md`, section 5): regress the true [cos θ, sin θ] and
//! θ̇ linearly from the smoothed latent mean, fitted on training sequences, scored by R² on
//! held-out sequences.

use serde::{Deserialize, Serialize};

use crate::data::Sequences;
use crate::ekvae::Ekvae;
use crate::metrics::{LinearRegression, r2_per_output, r2_score};
use crate::{Error, Result};

/// Smoothed latent means E[z_t | a_{1:T}] of the given episodes, row-major `[N, T, n]`,
/// computed in chunks of `chunk` episodes on `model`'s device.
pub fn smoothed_latents(
    model: &Ekvae,
    data: &Sequences,
    episodes: &[usize],
    chunk: usize,
) -> Result<Vec<f64>> {
    let device = model.device();
    let mut out = Vec::with_capacity(episodes.len() * data.steps * model.state_dim());
    for eps in episodes.chunks(chunk.max(1)) {
        let windows: Vec<(usize, usize)> = eps.iter().map(|&e| (e, 0)).collect();
        let (frames, actions) = data.batch(&windows, data.steps, &device);
        let z = model.smoothed_means(frames, actions)?;
        let v = z
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| Error::Numerical(format!("{e:?}")))?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Numerical("smoothed latent means contain NaN or infinity".into()));
        }
        out.extend(v);
    }
    Ok(out)
}

/// Regression targets of the given episodes of pendulum data (states θ, θ̇): `([cos θ, sin θ]
/// rows, [θ̇] rows)`.
pub fn targets(data: &Sequences, episodes: &[usize]) -> Result<(Vec<f64>, Vec<f64>)> {
    if data.state_dim != 2 {
        return Err(Error::ShapeMismatch(format!(
            "the pendulum's identification needs states (θ, θ̇); the dataset has {} state coordinates",
            data.state_dim
        )));
    }
    let mut angle = Vec::with_capacity(episodes.len() * data.steps * 2);
    let mut velocity = Vec::with_capacity(episodes.len() * data.steps);
    for &e in episodes {
        for t in 0..data.steps {
            let (th, thd) = (data.state(e, t)[0], data.state(e, t)[1]);
            angle.extend([th.cos(), th.sin()]);
            velocity.push(thd);
        }
    }
    Ok((angle, velocity))
}

/// The identification targets `features(state)` (k values per state) of the given episodes,
/// row-major `[frames, k]`.
pub fn feature_targets(
    data: &Sequences,
    episodes: &[usize],
    k: usize,
    features: &dyn Fn(&[f64], &mut Vec<f64>),
) -> Result<Vec<f64>> {
    if data.state_dim == 0 {
        return Err(Error::ShapeMismatch("the dataset has no true states to regress on".into()));
    }
    let mut out = Vec::with_capacity(episodes.len() * data.steps * k);
    for &e in episodes {
        for t in 0..data.steps {
            let before = out.len();
            features(data.state(e, t), &mut out);
            if out.len() != before + k {
                return Err(Error::ShapeMismatch(format!(
                    "the features of a state have {} values, expected {k}",
                    out.len() - before
                )));
            }
        }
    }
    Ok(out)
}

/// The R² of one identification target (a linear regression from the smoothed latent mean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureScore {
    /// The target's name (e.g. `"cos theta"`).
    pub name: String,
    /// R² on the held-out sequences.
    pub r2: f64,
    /// R² on the training sequences the regression was fitted on.
    pub train_r2: f64,
}

/// Fit `latent → targets` on `(z_train, y_train)` (n latent, k target columns) and score each
/// target by R² on `(z_test, y_test)`; returns the scores named by `names` and the fit.
pub fn feature_scores(
    (z_train, y_train): (&[f64], &[f64]),
    (z_test, y_test): (&[f64], &[f64]),
    n: usize,
    names: &[String],
) -> Result<(Vec<FeatureScore>, LinearRegression)> {
    let k = names.len();
    let fit = LinearRegression::fit(z_train, n, y_train, k)?;
    let test = r2_per_output(y_test, &fit.predict(z_test), k);
    let train = r2_per_output(y_train, &fit.predict(z_train), k);
    let scores = names
        .iter()
        .zip(test.iter().zip(&train))
        .map(|(name, (&r2, &train_r2))| FeatureScore { name: name.clone(), r2, train_r2 })
        .collect();
    Ok((scores, fit))
}

/// The latent and its pairwise products, for a quadratic readout: each row `z` (`n` values)
/// becomes `[z − c, (z_i − c_i)(z_j − c_j) for i ≤ j]`, `n + n(n+1)/2` values, with `c` the
/// mean of `centre_of` (the training rows), so that the products are those of centred
/// coordinates. A coordinate a latent holds as a smooth but not linear function (the
/// cart-pole's θ̇, held as the velocity of the pole's direction (θ̇ cos θ, −θ̇ sin θ)) reads out
/// here though the linear readout misses it.
pub fn quadratic_features(z: &[f64], n: usize, centre_of: &[f64]) -> (Vec<f64>, usize) {
    let width = n + n * (n + 1) / 2;
    if n == 0 {
        return (Vec::new(), 0);
    }
    let rows_c = (centre_of.len() / n).max(1);
    let mut c = vec![0.0; n];
    for row in centre_of.chunks_exact(n) {
        for (a, &v) in c.iter_mut().zip(row) {
            *a += v;
        }
    }
    c.iter_mut().for_each(|a| *a /= rows_c as f64);
    let mut out = Vec::with_capacity(z.len() / n * width);
    let mut d = vec![0.0; n];
    for row in z.chunks_exact(n) {
        for ((d, &v), &m) in d.iter_mut().zip(row).zip(&c) {
            *d = v - m;
        }
        out.extend_from_slice(&d);
        for i in 0..n {
            for j in i..n {
                out.push(d[i] * d[j]);
            }
        }
    }
    (out, width)
}

/// The result of [`identify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identification {
    /// R² of [cos θ, sin θ] on the test sequences (uniform average of the two outputs).
    pub r2_cos_sin: f64,
    /// R² of θ̇ on the test sequences.
    pub r2_theta_dot: f64,
    /// R² of cos θ and of sin θ separately on the test sequences.
    pub r2_cos: f64,
    /// See `r2_cos`.
    pub r2_sin: f64,
    /// The same R² values on the training sequences the regressions were fitted on.
    pub train_r2_cos_sin: f64,
    /// See `train_r2_cos_sin`.
    pub train_r2_theta_dot: f64,
    /// Frames the regression was fitted on.
    pub train_frames: usize,
    /// Frames it was scored on.
    pub test_frames: usize,
}

/// Everything [`identify`] computes.
#[derive(Debug, Clone)]
pub struct IdentifyOutput {
    /// The scores.
    pub report: Identification,
    /// Smoothed latent means of the test episodes, row-major `[N, T, n]`.
    pub z_test: Vec<f64>,
    /// The fitted regression latent → [cos θ, sin θ] (reused for prediction angle errors).
    pub angle_fit: LinearRegression,
}

/// Fit the regressions on the smoothed latents of `train` (episodes `train_eps`) and score
/// them on all episodes of `test`.
pub fn identify(
    model: &Ekvae,
    train: &Sequences,
    train_eps: &[usize],
    test: &Sequences,
) -> Result<IdentifyOutput> {
    let z_train = smoothed_latents(model, train, train_eps, 64)?;
    let test_eps: Vec<usize> = (0..test.episodes).collect();
    let z_test = smoothed_latents(model, test, &test_eps, 64)?;
    identify_latents(model.state_dim(), &z_train, train, train_eps, z_test, test)
}

/// [`identify`] on smoothed latents already computed (`z_train` of `train_eps`, `z_test` of all
/// test episodes; `n` latent dimensions).
pub fn identify_latents(
    n: usize,
    z_train: &[f64],
    train: &Sequences,
    train_eps: &[usize],
    z_test: Vec<f64>,
    test: &Sequences,
) -> Result<IdentifyOutput> {
    let test_eps: Vec<usize> = (0..test.episodes).collect();
    let (ang_train, vel_train) = targets(train, train_eps)?;
    let (ang_test, vel_test) = targets(test, &test_eps)?;
    let fit_ang = LinearRegression::fit(z_train, n, &ang_train, 2)?;
    let fit_vel = LinearRegression::fit(z_train, n, &vel_train, 1)?;
    let pred_ang = fit_ang.predict(&z_test);
    let per = r2_per_output(&ang_test, &pred_ang, 2);
    let report = Identification {
        r2_cos_sin: r2_score(&ang_test, &pred_ang, 2),
        r2_theta_dot: r2_score(&vel_test, &fit_vel.predict(&z_test), 1),
        r2_cos: per[0],
        r2_sin: per[1],
        train_r2_cos_sin: r2_score(&ang_train, &fit_ang.predict(z_train), 2),
        train_r2_theta_dot: r2_score(&vel_train, &fit_vel.predict(z_train), 1),
        train_frames: vel_train.len(),
        test_frames: vel_test.len(),
    };
    Ok(IdentifyOutput { report, z_test, angle_fit: fit_ang })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout by hand, and what the readout is for: a speed held as the velocity of a
    /// direction, (v cos θ, v sin θ) next to (cos θ, sin θ), reads out linearly only in part and
    /// exactly from the products (v = (v cos θ)·cos θ + (v sin θ)·sin θ).
    #[test]
    fn quadratic_features_layout_and_a_bilinear_target() {
        let (q, w) = quadratic_features(&[1.0, 2.0, 3.0, 6.0], 2, &[0.0, 0.0, 2.0, 4.0]);
        assert_eq!(w, 5);
        // centre (1, 2): rows (0, 0) and (2, 4) → [d0, d1, d0², d0·d1, d1²]
        assert_eq!(q, [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 4.0, 4.0, 8.0, 16.0]);

        let rows = 2000;
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let th = 0.37 * r as f64;
            let v = 8.0 * (0.0113 * r as f64).sin();
            z.extend([th.cos(), th.sin(), v * th.cos(), v * th.sin()]);
            y.push(v);
        }
        let names = ["v".to_string()];
        let (train, test) = (&z[..2 * rows], &z[2 * rows..]);
        let (ytr, yte) = (&y[..rows / 2], &y[rows / 2..]);
        let linear = feature_scores((train, ytr), (test, yte), 4, &names).unwrap().0[0].r2;
        let (qtr, w) = quadratic_features(train, 4, train);
        let (qte, _) = quadratic_features(test, 4, train);
        let quad = feature_scores((&qtr, ytr), (&qte, yte), w, &names).unwrap().0[0].r2;
        assert!(linear < 0.5 && quad > 0.999, "linear {linear}, quadratic {quad}");
    }
}
