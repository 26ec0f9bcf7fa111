//! Shared helpers of the model's integration tests: a tiny synthetic pendulum-like dataset.

#![allow(dead_code)]

use ekvae_model::data::Sequences;

/// Owned buffers of a synthetic dataset.
pub struct Synthetic {
    pub images: Vec<u8>,
    pub actions: Vec<f32>,
    pub states: Vec<f64>,
    pub episodes: usize,
    pub steps: usize,
    pub size: usize,
    /// Channels per pixel (1 unless [`Synthetic::coloured`]).
    pub channels: usize,
}

impl Synthetic {
    /// `episodes` sequences of a pendulum (θ = 0 up, θ̈ = 10 sin θ + 3u, dt = 0.05) drawn as a
    /// bright 2-pixel-wide spoke from the image centre, on `size × size` frames.
    pub fn pendulum(episodes: usize, steps: usize, size: usize, seed: u64) -> Self {
        let mut s = seed.wrapping_mul(2862933555777941757).wrapping_add(3037000493);
        let mut uniform = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let mut images = vec![0u8; episodes * steps * size * size];
        let mut actions = Vec::with_capacity(episodes * steps);
        let mut states = Vec::with_capacity(episodes * steps * 2);
        for e in 0..episodes {
            let mut th = (uniform() * 2.0 - 1.0) * std::f64::consts::PI;
            let mut thd = uniform() * 2.0 - 1.0;
            for t in 0..steps {
                let u = uniform() * 4.0 - 2.0;
                states.extend([th, thd]);
                actions.push(u as f32);
                let c = (size as f64 - 1.0) / 2.0;
                let img =
                    &mut images[(e * steps + t) * size * size..(e * steps + t + 1) * size * size];
                for k in 0..=(4 * size) {
                    let r = k as f64 / (4 * size) as f64 * (size as f64 * 0.45);
                    let (x, y) = (c - r * th.sin(), c - r * th.cos());
                    let (xi, yi) = (x.round() as usize, y.round() as usize);
                    if xi < size && yi < size {
                        img[yi * size + xi] = 255;
                    }
                }
                thd = (thd + (10.0 * th.sin() + 3.0 * u) * 0.05).clamp(-8.0, 8.0);
                th += thd * 0.05;
            }
        }
        Self { images, actions, states, episodes, steps, size, channels: 1 }
    }

    /// The same frames with `channels` channels per pixel (channels last): channel 0 the
    /// frame, channel 1 its negative, channel 2 on half its value, the rest its value again —
    /// a colour dataset whose channels differ.
    pub fn coloured(self, channels: usize) -> Self {
        assert_eq!(self.channels, 1);
        let images = self
            .images
            .iter()
            .flat_map(|&v| {
                (0..channels).map(move |c| match c {
                    0 => v,
                    1 => 255 - v,
                    2 => v / 2,
                    _ => v,
                })
            })
            .collect();
        Self { images, channels, ..self }
    }

    /// The model-side view.
    pub fn view(&self) -> Sequences<'_> {
        Sequences {
            images: &self.images,
            actions: &self.actions,
            states: &self.states,
            state_dim: if self.states.is_empty() { 0 } else { 2 },
            episodes: self.episodes,
            steps: self.steps,
            size: self.size,
            channels: self.channels,
            action_dim: 1,
        }
    }
}
