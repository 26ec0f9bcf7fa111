//! Sequence data as the model sees it: a borrowed view of a dataset's frames, actions and
//! true states, and batching of (sub)sequences into tensors.

use burn::tensor::{Device, Tensor, TensorData};

use crate::{Error, Result};

/// A borrowed view of `episodes` sequences of `steps` frames of `size × size` pixels.
///
/// Layouts (row-major): `images` u8 `[N, T, S, S]` (grayscale), `actions` f32 `[N, T, k]`,
/// `states` f64 `[N, T, D]` (for the pendulum θ, θ̇; empty when unknown). Frame t shows the
/// state before action t.
#[derive(Debug, Clone, Copy)]
pub struct Sequences<'a> {
    /// Frames, 0 = black, 255 = white.
    pub images: &'a [u8],
    /// Actions.
    pub actions: &'a [f32],
    /// True states, or empty.
    pub states: &'a [f64],
    /// State dimension D (0 without states).
    pub state_dim: usize,
    /// Number of sequences N.
    pub episodes: usize,
    /// Steps per sequence T.
    pub steps: usize,
    /// Image side S.
    pub size: usize,
    /// Action dimension k.
    pub action_dim: usize,
}

impl<'a> From<&'a ekvae_envs::Dataset> for Sequences<'a> {
    /// The model's view of a dataset (grayscale: a dataset with more channels fails
    /// [`Sequences::check`]).
    fn from(d: &'a ekvae_envs::Dataset) -> Self {
        Sequences {
            images: &d.images,
            actions: &d.actions,
            states: &d.states,
            state_dim: d.state_dim,
            episodes: d.episodes,
            steps: d.steps,
            size: d.size,
            action_dim: d.action_dim,
        }
    }
}

impl<'a> Sequences<'a> {
    /// Check that the buffers have the sizes the dimensions say.
    pub fn check(&self) -> Result<()> {
        let (n, t, s, k) = (self.episodes, self.steps, self.size, self.action_dim);
        if n == 0 || t == 0 || s == 0 || k == 0 {
            return Err(Error::ShapeMismatch(format!(
                "empty dataset: {n} episodes × {t} steps, {s}×{s} images, action dim {k}"
            )));
        }
        if self.images.len() != n * t * s * s {
            return Err(Error::ShapeMismatch(format!(
                "images hold {} values, expected {n}·{t}·{s}·{s}",
                self.images.len()
            )));
        }
        if self.actions.len() != n * t * k {
            return Err(Error::ShapeMismatch(format!(
                "actions hold {} values, expected {n}·{t}·{k}",
                self.actions.len()
            )));
        }
        let d = self.state_dim;
        if self.states.len() != n * t * d {
            return Err(Error::ShapeMismatch(format!(
                "states hold {} values, expected {n}·{t}·{d}",
                self.states.len()
            )));
        }
        if self.actions.iter().any(|a| !a.is_finite()) {
            return Err(Error::ShapeMismatch("actions contain NaN or infinity".into()));
        }
        Ok(())
    }

    /// Frames and actions of the windows `(episode, start)` of length `len` as tensors.
    ///
    /// # Shapes
    /// - returns frames `[B, len, S, S]` in [0, 1] and actions `[B, len, k]`
    pub fn batch(
        &self,
        windows: &[(usize, usize)],
        len: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<3>) {
        let (t, s, k) = (self.steps, self.size, self.action_dim);
        let px = s * s;
        let mut frames = Vec::with_capacity(windows.len() * len * px);
        let mut actions = Vec::with_capacity(windows.len() * len * k);
        for &(ep, start) in windows {
            let img = &self.images[(ep * t + start) * px..(ep * t + start + len) * px];
            frames.extend(img.iter().map(|&v| f32::from(v) / 255.0));
            actions
                .extend_from_slice(&self.actions[(ep * t + start) * k..(ep * t + start + len) * k]);
        }
        let b = windows.len();
        (
            Tensor::from_data(TensorData::new(frames, [b, len, s, s]), device),
            Tensor::from_data(TensorData::new(actions, [b, len, k]), device),
        )
    }

    /// The true state of step `t` of episode `ep` (`D` values).
    pub fn state(&self, ep: usize, t: usize) -> &'a [f64] {
        let (d, i) = (self.state_dim, ep * self.steps + t);
        &self.states[i * d..(i + 1) * d]
    }
}

/// The episode indices `0..episodes` split into (training, validation) by the workspace's one
/// rule, [`ekvae_envs::dataset::validation_split`]: the last `⌈fraction · N⌉` episodes (at least
/// one when `fraction > 0` and N ≥ 2, never all) validate.
pub fn split_episodes(episodes: usize, fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let train = ekvae_envs::dataset::validation_split(episodes, fraction);
    ((0..train).collect(), (train..episodes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_picks_the_right_windows() {
        // 2 episodes × 3 steps of 2×2 images; pixel value = 10·(3·ep + t).
        let images: Vec<u8> = (0..6).flat_map(|i| [10 * i as u8; 4]).collect();
        let actions: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let seqs = Sequences {
            images: &images,
            actions: &actions,
            states: &[],
            state_dim: 0,
            episodes: 2,
            steps: 3,
            size: 2,
            action_dim: 1,
        };
        seqs.check().unwrap();
        let device = Device::flex();
        let (x, u) = seqs.batch(&[(1, 1), (0, 0)], 2, &device);
        assert_eq!(x.dims(), [2, 2, 2, 2]);
        let xv = x.into_data().try_to_vec::<f32>().unwrap();
        assert!((xv[0] - 40.0 / 255.0).abs() < 1e-7);
        assert!((xv[4] - 50.0 / 255.0).abs() < 1e-7);
        assert_eq!(xv[8], 0.0);
        assert_eq!(u.into_data().try_to_vec::<f32>().unwrap(), vec![4.0, 5.0, 0.0, 1.0]);
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let seqs = Sequences {
            images: &[0; 7],
            actions: &[0.0; 2],
            states: &[],
            state_dim: 0,
            episodes: 1,
            steps: 2,
            size: 2,
            action_dim: 1,
        };
        assert!(seqs.check().is_err());
    }

    /// The index lists of the rule (its cases are tested with `validation_split` in envs).
    #[test]
    fn split_keeps_at_least_one_of_each() {
        assert_eq!(split_episodes(10, 0.1), ((0..9).collect(), vec![9]));
        assert_eq!(split_episodes(10, 0.25), ((0..7).collect(), vec![7, 8, 9]));
        assert_eq!(split_episodes(2, 0.01), (vec![0], vec![1]));
        assert_eq!(split_episodes(1, 0.5), (vec![0], vec![]));
        assert_eq!(split_episodes(5, 0.0), ((0..5).collect(), vec![]));
    }
}
