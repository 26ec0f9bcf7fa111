//! Sequence data as the model sees it: a borrowed view of a dataset's frames, actions and
//! true states, and batching of (sub)sequences into tensors.

use burn::tensor::{Device, Tensor, TensorData};

use crate::{Error, Result};

/// A borrowed view of `episodes` sequences of `steps` frames of `size × size` pixels of
/// `channels` channels.
///
/// Layouts (row-major): `images` u8 `[N, T, S, S, C]` (channels last, as the dataset files
/// hold them; C = 1 for grayscale), `actions` f32 `[N, T, k]`,
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
    /// Channels C per pixel (1: grayscale).
    pub channels: usize,
    /// Action dimension k.
    pub action_dim: usize,
}

impl<'a> From<&'a ekvae_envs::Dataset> for Sequences<'a> {
    /// The model's view of a dataset.
    fn from(d: &'a ekvae_envs::Dataset) -> Self {
        Sequences {
            images: &d.images,
            actions: &d.actions,
            states: &d.states,
            state_dim: d.state_dim,
            episodes: d.episodes,
            steps: d.steps,
            size: d.size,
            channels: d.channels,
            action_dim: d.action_dim,
        }
    }
}

impl<'a> Sequences<'a> {
    /// Check that the buffers have the sizes the dimensions say.
    pub fn check(&self) -> Result<()> {
        let (n, t, s, k) = (self.episodes, self.steps, self.size, self.action_dim);
        let c = self.channels;
        if n == 0 || t == 0 || s == 0 || k == 0 || c == 0 {
            return Err(Error::ShapeMismatch(format!(
                "empty dataset: {n} episodes × {t} steps, {s}×{s} images of {c} channel(s), action dim {k}"
            )));
        }
        if self.images.len() != n * t * s * s * c {
            return Err(Error::ShapeMismatch(format!(
                "images hold {} values, expected {n}·{t}·{s}·{s}·{c}",
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
    /// - returns frames `[B, len, C·S, S]` in [0, 1] — each frame's C channel planes stacked
    ///   ([`frame_planes`]; for grayscale the frame itself) — and actions `[B, len, k]`
    pub fn batch(
        &self,
        windows: &[(usize, usize)],
        len: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<3>) {
        let (t, s, k, c) = (self.steps, self.size, self.action_dim, self.channels);
        let px = s * s * c;
        let mut frames = Vec::with_capacity(windows.len() * len * px);
        let mut actions = Vec::with_capacity(windows.len() * len * k);
        for &(ep, start) in windows {
            let img = &self.images[(ep * t + start) * px..(ep * t + start + len) * px];
            if c == 1 {
                frames.extend(img.iter().map(|&v| f32::from(v) / 255.0));
            } else {
                for frame in img.chunks_exact(px) {
                    frame_planes(frame, c, &mut frames);
                }
            }
            actions
                .extend_from_slice(&self.actions[(ep * t + start) * k..(ep * t + start + len) * k]);
        }
        let b = windows.len();
        (
            Tensor::from_data(TensorData::new(frames, [b, len, c * s, s]), device),
            Tensor::from_data(TensorData::new(actions, [b, len, k]), device),
        )
    }

    /// The true state of step `t` of episode `ep` (`D` values).
    pub fn state(&self, ep: usize, t: usize) -> &'a [f64] {
        let (d, i) = (self.state_dim, ep * self.steps + t);
        &self.states[i * d..(i + 1) * d]
    }
}

/// Appends one frame of `channels`-channel pixels (`[S, S, C]`, channels last, as datasets and
/// renderers hold them) to `out` as the model reads it: the C channel planes one after the
/// other (`[C, S, S]`, i.e. `[C·S, S]`), scaled to [0, 1].
pub fn frame_planes(frame: &[u8], channels: usize, out: &mut Vec<f32>) {
    for c in 0..channels {
        out.extend(frame.iter().skip(c).step_by(channels).map(|&v| f32::from(v) / 255.0));
    }
}

/// The inverse layout of [`frame_planes`]: frames of `channels` stacked planes of `plane`
/// values each (`[C, S, S]` per frame, frames back to back) as channels-last frames
/// (`[S, S, C]`), the layout of datasets, renderers and images. A copy for one channel.
pub fn channels_last<T: Copy>(frames: &[T], channels: usize, plane: usize) -> Vec<T> {
    if channels <= 1 {
        return frames.to_vec();
    }
    frames
        .chunks_exact(channels * plane)
        .flat_map(|f| (0..plane).flat_map(move |p| (0..channels).map(move |c| f[c * plane + p])))
        .collect()
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
            channels: 1,
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
    fn colour_frames_become_stacked_channel_planes() {
        // One episode of 2 steps, 2×2 RGB frames: pixel p of step t has (r, g, b) =
        // (t·100 + p, t·100 + 10 + p, t·100 + 20 + p).
        let images: Vec<u8> = (0..2u8)
            .flat_map(|t| {
                (0..4u8).flat_map(move |p| [t * 100 + p, t * 100 + 10 + p, t * 100 + 20 + p])
            })
            .collect();
        let seqs = Sequences {
            images: &images,
            actions: &[0.5, -0.5],
            states: &[],
            state_dim: 0,
            episodes: 1,
            steps: 2,
            size: 2,
            channels: 3,
            action_dim: 1,
        };
        seqs.check().unwrap();
        let (x, _) = seqs.batch(&[(0, 0)], 2, &Device::flex());
        assert_eq!(x.dims(), [1, 2, 6, 2]);
        let got: Vec<u8> = x
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        let plane = |t: u8, c: u8| (0..4u8).map(move |p| t * 100 + 10 * c + p);
        let want: Vec<u8> = (0..2).flat_map(|t| (0..3).flat_map(move |c| plane(t, c))).collect();
        assert_eq!(got, want);
        // channels_last undoes the planes: the frames as the dataset holds them.
        let back = channels_last(&got, 3, 4);
        assert_eq!(back, images);
        assert_eq!(channels_last(&[1, 2, 3], 1, 3), vec![1, 2, 3]);
        // Three channels' worth of values is what the check wants.
        let short = Sequences { images: &images[..20], ..seqs };
        assert!(short.check().is_err());
        assert!(Sequences { channels: 0, ..seqs }.check().is_err());
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
            channels: 1,
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
