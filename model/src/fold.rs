//! The fold diagnostic: does the encoder hold the angle as a ring?
//!
//! A latent that identifies the pendulum's angle maps the frames of one revolution to a closed
//! curve that goes once around its centre. A *folded* latent pulls θ and −θ together (left and
//! right are lost; cos θ survives, sin θ does not): the curve doubles back on itself or forms
//! two lobes, and goes around its centre zero times. [`fold_diagnostic`] renders `N` evenly
//! spaced angles at rest, encodes them (encoder means), projects the curve on its best 2-D
//! plane (the two leading principal axes) and counts how often it winds around its centroid.
//! No labels are needed beyond the renderer, so it can be logged every epoch.
//!
//! The winding number around a point is only meaningful when the curve keeps away from that
//! point: a figure-eight or an arc traced out and back passes through (or next to) its own
//! centroid, where one step of the curve can turn the angle by ±π. [`winding_number`] therefore
//! reports 0 (no ring) when the curve comes closer to its centroid than [`MIN_CLEARANCE`] times
//! its RMS radius, and returns that clearance so that a user can see how close the call was.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ekvae::Ekvae;
use crate::{Error, Result};

/// Frames per revolution rendered by [`fold_diagnostic`].
pub const FOLD_ANGLES: usize = 64;

/// A curve closer to its centroid than this fraction of its RMS radius has no defined winding
/// number around it (reported as 0). A circle has clearance 1; an ellipse with axes 1 and b
/// roughly b·√2/√(1 + b²), so rings flatter than about 1 : 14 count as folded.
pub const MIN_CLEARANCE: f64 = 0.1;

/// The result of [`winding_number`] / [`fold_diagnostic`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Winding {
    /// Signed number of turns around the centroid (0 when the clearance is too small). The
    /// sign follows the orientation of the principal axes, which have no preferred sign: only
    /// |winding| is meaningful across models or epochs.
    pub winding: i32,
    /// Smallest distance of the closed polyline to its centroid, over its RMS radius.
    pub clearance: f64,
}

impl Winding {
    /// True when the curve is a ring around its centre: |winding| = 1.
    pub fn is_ring(&self) -> bool {
        self.winding.abs() == 1
    }
}

/// Principal axes of the rows of `z` (`rows × n`, row-major): the mean and up to `k` unit
/// axes in order of decreasing variance (power iteration with deflation, deterministic start).
pub fn principal_axes(z: &[f64], n: usize, k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let rows = z.len().checked_div(n).unwrap_or(0);
    let mut mean = vec![0.0; n];
    for r in 0..rows {
        for j in 0..n {
            mean[j] += z[r * n + j] / rows as f64;
        }
    }
    let mut cov = vec![0.0; n * n];
    for r in 0..rows {
        for i in 0..n {
            for j in 0..n {
                cov[i * n + j] += (z[r * n + i] - mean[i]) * (z[r * n + j] - mean[j]) / rows as f64;
            }
        }
    }
    let trace: f64 = (0..n).map(|i| cov[i * n + i]).sum();
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for a_idx in 0..k.min(n) {
        let mut v: Vec<f64> = (0..n).map(|i| if i == a_idx { 1.0 } else { 0.1 }).collect();
        // Start orthogonal to the axes found so far (kept if the remaining variance is zero).
        for a in &axes {
            let d: f64 = v.iter().zip(a).map(|(x, y)| x * y).sum();
            v.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
        }
        let norm0 = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        v.iter_mut().for_each(|x| *x /= norm0);
        for _ in 0..500 {
            let mut w = vec![0.0; n];
            for i in 0..n {
                for j in 0..n {
                    w[i] += cov[i * n + j] * v[j];
                }
            }
            for a in &axes {
                let d: f64 = w.iter().zip(a).map(|(x, y)| x * y).sum();
                w.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm <= 1e-12 * trace.max(1e-300) {
                break;
            }
            v = w.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    (mean, axes)
}

/// The rows of `z` (`rows × n`) projected on their two leading principal axes (centred).
pub fn pca_2d(z: &[f64], n: usize) -> Vec<(f64, f64)> {
    let (mean, axes) = principal_axes(z, n, 2);
    let rows = z.len().checked_div(n).unwrap_or(0);
    (0..rows)
        .map(|r| {
            let p = |a: &Vec<f64>| (0..n).map(|j| (z[r * n + j] - mean[j]) * a[j]).sum::<f64>();
            (p(&axes[0]), if axes.len() > 1 { p(&axes[1]) } else { 0.0 })
        })
        .collect()
}

/// Winding number of the closed polygon `points` (the last point joins the first) around its
/// centroid, with the clearance rule of the module docs.
pub fn winding_number(points: &[(f64, f64)]) -> Winding {
    let n = points.len();
    if n < 3 || points.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
        return Winding { winding: 0, clearance: 0.0 };
    }
    let cx = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let cy = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let q: Vec<(f64, f64)> = points.iter().map(|p| (p.0 - cx, p.1 - cy)).collect();
    let rms = (q.iter().map(|p| p.0 * p.0 + p.1 * p.1).sum::<f64>() / n as f64).sqrt();
    if rms.is_nan() || rms <= 0.0 {
        return Winding { winding: 0, clearance: 0.0 };
    }
    let mut turns = 0.0;
    let mut closest = f64::INFINITY;
    for i in 0..n {
        let (a, b) = (q[i], q[(i + 1) % n]);
        let d = ekvae_numerics::angle_normalize(b.1.atan2(b.0) - a.1.atan2(a.0));
        turns += d;
        // Distance from the origin (the centroid) to the segment a–b.
        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
        let len2 = ex * ex + ey * ey;
        let s = if len2 > 0.0 { (-(a.0 * ex + a.1 * ey) / len2).clamp(0.0, 1.0) } else { 0.0 };
        closest = closest.min((a.0 + s * ex).hypot(a.1 + s * ey));
    }
    let clearance = closest / rms;
    let winding =
        if clearance < MIN_CLEARANCE { 0 } else { (turns / std::f64::consts::TAU).round() as i32 };
    Winding { winding, clearance }
}

/// Winding number of the curve `z` (`rows × n`, rows in order around the curve) in its best
/// 2-D plane.
pub fn curve_winding(z: &[f64], n: usize) -> Winding {
    winding_number(&pca_2d(z, n))
}

/// The fold diagnostic of `model`: render [`FOLD_ANGLES`] evenly spaced angles of one
/// revolution at the model's image size, encode them, and return the winding number of the
/// encoder means (the auxiliary observation for the EKVAE; the frame embedding the RNN
/// baseline's inference reads) in their best 2-D plane.
pub fn fold_diagnostic(model: &Ekvae) -> Result<Winding> {
    if model.image_channels() != 1 {
        return Err(Error::ShapeMismatch(format!(
            "the pendulum's fold diagnostic draws grayscale frames, but the model reads {} channels",
            model.image_channels()
        )));
    }
    let s = model.image_size();
    let n = FOLD_ANGLES;
    let mut frames = Vec::with_capacity(n * s * s);
    for i in 0..n {
        let theta = std::f64::consts::TAU * i as f64 / n as f64;
        frames
            .extend(ekvae_envs::render::render(theta, s).into_iter().map(|v| f32::from(v) / 255.0));
    }
    encoded_winding(model, frames)
}

/// The fold diagnostic on another system: its goal state ([`System::goal_state`]) with the
/// angle coordinate ([`System::angle_coordinate`]) turned through [`FOLD_ANGLES`] values of one
/// revolution, rendered, encoded, and the winding of the encoder means. `None` when the system
/// has no angle or no goal state, or draws other channels than the model reads (it cannot show
/// the model its frames).
///
/// [`System::goal_state`]: ekvae_envs::System::goal_state
/// [`System::angle_coordinate`]: ekvae_envs::System::angle_coordinate
pub fn fold_diagnostic_of(
    model: &Ekvae,
    system: &dyn ekvae_envs::System,
) -> Result<Option<Winding>> {
    let (Some(i), Some(goal)) = (system.angle_coordinate(), system.goal_state()) else {
        return Ok(None);
    };
    let (s, c) = (model.image_size(), model.image_channels());
    if system.channels() != c {
        return Ok(None);
    }
    let n = FOLD_ANGLES;
    let mut frames = Vec::with_capacity(n * s * s * c);
    let mut frame = vec![0u8; s * s * c];
    for k in 0..n {
        let mut state = goal.clone();
        state[i] = std::f64::consts::TAU * k as f64 / n as f64;
        system.render_into(&state, s, &mut frame);
        crate::data::frame_planes(&frame, c, &mut frames);
    }
    encoded_winding(model, frames).map(Some)
}

/// Winding of the encoder means of `frames` (`FOLD_ANGLES` frames of the model's size, in
/// order around the revolution).
fn encoded_winding(model: &Ekvae, frames: Vec<f32>) -> Result<Winding> {
    let (s, c, n) = (model.image_size(), model.image_channels(), FOLD_ANGLES);
    let device = model.device();
    let x = Tensor::<4>::from_data(TensorData::new(frames, [1, n, c * s, s]), &device);
    let (mean, _) = model.encode(x);
    let m = model.aux_dim();
    let values = mean
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_err(|e| Error::InvalidSetting(format!("reading the encoder means: {e:?}")))?;
    debug_assert_eq!(values.len(), n * m);
    Ok(curve_winding(&values, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn curve(n: usize, f: impl Fn(f64) -> (f64, f64)) -> Vec<(f64, f64)> {
        (0..n).map(|i| f(TAU * i as f64 / n as f64)).collect()
    }

    #[test]
    fn winding_of_constructed_curves() {
        // A circle once counter-clockwise: 1, clearance 1 (every point at the RMS radius).
        let w = winding_number(&curve(64, |t| (3.0 + t.cos(), -1.0 + t.sin())));
        assert_eq!(w.winding, 1);
        assert!((w.clearance - (TAU / 128.0).cos()).abs() < 1e-12, "{w:?}");
        // Reversed: −1.
        assert_eq!(winding_number(&curve(64, |t| (t.cos(), -t.sin()))).winding, -1);
        // Traversed twice: 2.
        assert_eq!(winding_number(&curve(64, |t| ((2.0 * t).cos(), (2.0 * t).sin()))).winding, 2);
        // An ellipse 1 : 4 is still a ring.
        assert!(winding_number(&curve(64, |t| (4.0 * t.cos(), t.sin()))).is_ring());
        // A figure-eight (lemniscate of Gerono) passes through its centroid: 0, whatever the
        // sampling (the raw angle sum would give 0 or ±1 depending on the phase of the samples).
        for (n, off) in [(16, 0.0), (64, 0.0), (65, 0.0), (64, 0.37), (128, 0.5)] {
            let pts: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let t = TAU * (i as f64 + off) / n as f64;
                    (t.cos(), t.sin() * t.cos())
                })
                .collect();
            let w = winding_number(&pts);
            assert_eq!(w.winding, 0, "n = {n}, offset {off}: {w:?}");
            assert!(w.clearance < MIN_CLEARANCE);
        }
        // A fold: θ and −θ map to the same point (an arc traced out and back): 0.
        assert_eq!(winding_number(&curve(64, |t| (t.cos(), 0.3 * t.cos().powi(2)))).winding, 0);
    }

    #[test]
    fn winding_in_the_best_plane_of_a_higher_dimensional_curve() {
        // A circle in a tilted plane of R^3 with a little noise along the third axis.
        let z: Vec<f64> = (0..64)
            .flat_map(|i| {
                let t = TAU * i as f64 / 64.0;
                let (c, s) = (t.cos(), t.sin());
                [c + 0.5 * s, s - 0.5 * c, 0.7 * c + 0.01 * (7.0 * t).sin()]
            })
            .collect();
        assert_eq!(curve_winding(&z, 3).winding.abs(), 1);
    }

    #[test]
    fn degenerate_curves_have_no_winding() {
        assert_eq!(winding_number(&[]).winding, 0);
        assert_eq!(winding_number(&[(1.0, 1.0); 10]).winding, 0);
        assert_eq!(winding_number(&[(0.0, 0.0), (1.0, f64::NAN), (0.0, 1.0)]).winding, 0);
    }

    #[test]
    fn pca_finds_the_dominant_axis() {
        // Points on the line y = 2x in 3-D with z = 0 (constructed): PC 1 carries everything.
        let z: Vec<f64> = (0..50).flat_map(|i| [i as f64, 2.0 * i as f64, 0.0]).collect();
        let p = pca_2d(&z, 3);
        let var1: f64 = p.iter().map(|q| q.0 * q.0).sum();
        let var2: f64 = p.iter().map(|q| q.1 * q.1).sum();
        assert!(var2 < 1e-9 * var1);
    }
}
