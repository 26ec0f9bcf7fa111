//! Open-loop prediction (`docs/design.md`, section 5): condition on the first k frames of a
//! window, roll the transition mean forward under the recorded actions, decode, and compare
//! with the true frames (pixel MSE, and against the last conditioned frame held) and with the
//! true angle (through the angle regression fitted for identification).

use serde::{Deserialize, Serialize};

use crate::data::Sequences;
use crate::ekvae::Ekvae;
use crate::metrics::{LinearRegression, angle_error, mean_squared_error};
use crate::{Error, Result};

/// Disjoint prediction windows of `len` steps: starts 0, len, 2·len, … of every episode
/// while the window fits.
pub fn prediction_windows(episodes: usize, steps: usize, len: usize) -> Vec<(usize, usize)> {
    if len == 0 {
        return Vec::new();
    }
    (0..episodes).flat_map(|e| (0..).map(move |i| (e, i * len)).take(steps / len)).collect()
}

/// Error curves of open-loop prediction, index h − 1 for h = 1 … horizon steps after the last
/// conditioned frame, each a mean over the windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionCurves {
    /// Frames conditioned on (k).
    pub condition: usize,
    /// Windows averaged over (those whose prediction stayed finite).
    pub windows: usize,
    /// Windows left out because the rolled-out latents or frames overflowed (NaN or ±∞): a
    /// model whose open-loop dynamics explode. All curves are NaN if every window diverged.
    pub diverged_windows: usize,
    /// Mean squared error per pixel between the decoded prediction (Bernoulli means) and the
    /// true frame, pixels in [0, 1].
    pub pixel_mse: Vec<f64>,
    /// The same for the last conditioned frame held still (the trivial predictor).
    pub pixel_mse_last_frame: Vec<f64>,
    /// Mean absolute angle error in degrees, wrapped to [0°, 180°]: the angle atan2(ŝ, ĉ) of
    /// the regressed [cos θ, sin θ] of the predicted latent against the true θ.
    pub angle_error_deg: Vec<f64>,
}

/// True and predicted frames of one window, for figures.
#[derive(Debug, Clone)]
pub struct PredictionStrip {
    /// (episode, start) of the window.
    pub window: (usize, usize),
    /// The true frames k − 1, k, …, k − 1 + horizon of the window (the last conditioned frame
    /// first), `[horizon + 1, S, S]`, pixels in [0, 1] (of colour frames, the mean of the
    /// channels).
    pub truth: Vec<f32>,
    /// The predicted frames for steps 1 … horizon, `[horizon, S, S]` (likewise).
    pub predicted: Vec<f32>,
}

fn to_vec(t: burn::tensor::Tensor<3>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Numerical(format!("{e:?}")))
}

/// Open-loop prediction on `windows` of `data` (each `condition + horizon` steps): returns the
/// error curves and the strips of the first `strips` windows.
///
/// `angle_fit`, when given, is `(fit, i)`: `fit` maps a latent state (n inputs) to [cos θ, sin θ]
/// (as fitted by [`crate::identify::identify`]) and θ is state coordinate `i` of `data`, which
/// must then hold true states; without it the angle errors are NaN (a system with no angle, or
/// data with no states).
pub fn open_loop_prediction(
    model: &Ekvae,
    data: &Sequences,
    windows: &[(usize, usize)],
    condition: usize,
    horizon: usize,
    angle_fit: Option<(&LinearRegression, usize)>,
    strips: usize,
) -> Result<(PredictionCurves, Vec<PredictionStrip>)> {
    if condition < 1 || horizon < 1 {
        return Err(Error::InvalidSetting(format!(
            "prediction needs at least one conditioning frame and one step (got {condition}, {horizon})"
        )));
    }
    let len = condition.checked_add(horizon).ok_or_else(|| {
        Error::InvalidSetting(format!("prediction length {condition} + {horizon} overflows"))
    })?;
    if data.steps < len {
        return Err(Error::ShapeMismatch(format!(
            "episodes have {} steps but prediction needs {condition} + {horizon}",
            data.steps
        )));
    }
    if windows.is_empty() {
        return Err(Error::ShapeMismatch("no prediction windows".into()));
    }
    if let Some((_, i)) = angle_fit
        && i >= data.state_dim
    {
        return Err(Error::ShapeMismatch(format!(
            "the dataset has no true state coordinate {i} for angle errors (its states have {} coordinates)",
            data.state_dim
        )));
    }
    if let Some(&(e, start)) =
        windows.iter().find(|&&(e, start)| e >= data.episodes || start + len > data.steps)
    {
        return Err(Error::ShapeMismatch(format!(
            "prediction window (episode {e}, start {start}, {len} steps) is outside the data ({} episodes × {} steps)",
            data.episodes, data.steps
        )));
    }
    let (s, n, c) = (data.size, model.state_dim(), data.channels);
    let px = s * s * c; // values per frame (the channel planes stacked)
    let device = model.device();
    let mut sum_mse = vec![0.0; horizon];
    let mut sum_last = vec![0.0; horizon];
    let mut sum_angle = vec![0.0; horizon];
    let mut out_strips = Vec::new();
    let (mut used, mut diverged) = (0usize, 0usize);
    for chunk in windows.chunks(64) {
        let b = chunk.len();
        let (frames, actions) = data.batch(chunk, len, &device);
        let z0 = model.condition(
            frames.clone().narrow(1, 0, condition),
            actions.clone().narrow(1, 0, condition),
        )?; // [B, n]
        // actions[:, k − 1] drives the last conditioned frame k − 1 → k.
        let z = model.rollout(z0, actions.narrow(1, condition - 1, horizon)); // [B, H, n]
        let predicted = to_vec(model.decode_mean(z.clone()).reshape([b, horizon, px]))?;
        let truth =
            to_vec(frames.narrow(1, condition - 1, horizon + 1).reshape([b, horizon + 1, px]))?;
        let z = to_vec(z)?;
        let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
        let cos_sin = angle_fit.map(|(fit, _)| fit.predict(&z64)); // [B·H, 2]
        for (i, &(ep, start)) in chunk.iter().enumerate() {
            let finite = z[i * horizon * n..(i + 1) * horizon * n].iter().all(|v| v.is_finite())
                && predicted[i * horizon * px..(i + 1) * horizon * px]
                    .iter()
                    .all(|v| v.is_finite());
            if !finite {
                diverged += 1;
                continue;
            }
            used += 1;
            let last = &truth[i * (horizon + 1) * px..][..px];
            for h in 0..horizon {
                let true_frame = &truth[(i * (horizon + 1) + h + 1) * px..][..px];
                let pred_frame = &predicted[(i * horizon + h) * px..][..px];
                sum_mse[h] += mean_squared_error(pred_frame, true_frame);
                sum_last[h] += mean_squared_error(last, true_frame);
                let row = i * horizon + h;
                sum_angle[h] += match (&cos_sin, angle_fit) {
                    (Some(cs), Some((_, k))) => {
                        let theta_hat = cs[2 * row + 1].atan2(cs[2 * row]);
                        let theta = data.state(ep, start + condition + h)[k];
                        angle_error(theta_hat, theta).to_degrees()
                    }
                    _ => f64::NAN,
                };
            }
            if out_strips.len() < strips {
                out_strips.push(PredictionStrip {
                    window: (ep, start),
                    truth: channel_mean(
                        &truth[i * (horizon + 1) * px..(i + 1) * (horizon + 1) * px],
                        c,
                        s * s,
                    ),
                    predicted: channel_mean(
                        &predicted[i * horizon * px..(i + 1) * horizon * px],
                        c,
                        s * s,
                    ),
                });
            }
        }
    }
    let count = used as f64; // 0 → NaN curves
    let mean = |v: Vec<f64>| v.into_iter().map(|x| x / count).collect();
    Ok((
        PredictionCurves {
            condition,
            windows: used,
            diverged_windows: diverged,
            pixel_mse: mean(sum_mse),
            pixel_mse_last_frame: mean(sum_last),
            angle_error_deg: mean(sum_angle),
        },
        out_strips,
    ))
}

/// Frames of `channels` stacked planes of `plane` values each (`[C, S, S]` per frame, frames
/// back to back) as one-channel frames: the mean of each pixel's planes (the frames
/// themselves for `channels` = 1).
fn channel_mean(frames: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    if channels == 1 {
        return frames.to_vec();
    }
    frames
        .chunks_exact(channels * plane)
        .flat_map(|f| {
            (0..plane).map(move |p| {
                (0..channels).map(|c| f[c * plane + p]).sum::<f32>() / channels as f32
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mean_averages_each_pixels_planes() {
        // Two frames of 2 channels × 2 pixels.
        let f = [0.0, 1.0, 0.5, 0.0, /* frame 2 */ 0.2, 0.4, 0.6, 0.8];
        assert_eq!(channel_mean(&f, 2, 2), vec![0.25, 0.5, 0.4, 0.6]);
        assert_eq!(channel_mean(&f, 1, 8), f.to_vec());
    }

    #[test]
    fn windows_are_disjoint_and_fit() {
        assert_eq!(prediction_windows(2, 100, 50), vec![(0, 0), (0, 50), (1, 0), (1, 50)]);
        assert_eq!(prediction_windows(1, 49, 50), vec![]);
        assert_eq!(prediction_windows(1, 120, 50), vec![(0, 0), (0, 50)]);
        assert_eq!(prediction_windows(3, 10, 0), vec![]);
    }
}
