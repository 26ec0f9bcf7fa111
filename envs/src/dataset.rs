//! The dataset file: one `.npz` archive that `numpy.load` opens as it is.
//!
//! ## Arrays (C order, little endian), format version 2
//! | name      | dtype | shape                               | meaning                                  |
//! |-----------|-------|-------------------------------------|------------------------------------------|
//! | `images`  | `u1`  | `[N, T, S, S]` or `[N, T, S, S, C]` | frame `t` shows the state *before* action `t`; 4 dimensions = grayscale, channels last otherwise |
//! | `actions` | `<f4` | `[N, T, A]`                         | action applied after frame `t` (unclipped policy output) |
//! | `states`  | `<f8` | `[N, T, D]`, optional               | true state of frame `t` (for the pendulum `θ, θ̇`, θ not wrapped) |
//! | `rewards` | `<f4` | `[N, T]`, optional                  | the environment's reward of action `t`    |
//! | `meta`    | `u1`  | `[bytes]`                           | UTF-8 JSON, [`DatasetMeta`]               |
//!
//! A recorded dataset (frames and actions from a real rig) may leave out `states` and `rewards`:
//! it can be trained on and evaluated open loop; identification needs the states. Version 1
//! files (the pendulum's: `actions [N, T, 1]`, `states [N, T, 2]`, pendulum parameters in the
//! metadata) still load.
//!
//! ## Reading it in Python
//! ```python
//! import json, numpy as np
//! d = np.load("pendulum.npz")
//! images, actions, states, rewards = d["images"], d["actions"], d["states"], d["rewards"]
//! meta = json.loads(d["meta"].tobytes())   # {"format_version": 2, "env": "Pendulum-v1", ...}
//! ```
//!
//! ## Guarantees
//! [`Dataset::save`] writes atomically (temporary file in the same folder, then rename), so a
//! failed or interrupted save never leaves a partial file under the final name nor destroys an
//! existing one. [`Dataset::load`] checks everything (arrays present, dtypes, shapes, consistent
//! `N`, `T`, `S` between arrays and metadata, finite values, format version, zip checksums) and
//! returns an [`Error`] naming the file and the problem; it never panics on a bad file.

use crate::{Error, Result};
use npyz::WriterBuilder;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

/// The dataset format version this build writes (it reads this one and version 1).
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The arrays a dataset file may hold.
pub const ARRAYS: [&str; 5] = ["images", "actions", "states", "rewards", "meta"];

/// The smallest image size the dataset (and so the collector) accepts.
pub const MIN_SIZE: usize = 8;

/// The self-description stored in the `meta` array as JSON. Only `format_version`, `episodes`,
/// `steps` and `size` are required; a hand-made file may leave the rest out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The environment's registry id (e.g. `"Pendulum-v1"`), or empty for recorded data with
    /// no environment behind it.
    #[serde(default)]
    pub env: String,
    /// Its physical parameters (the environment's own fields).
    #[serde(default)]
    pub params: serde_json::Value,
    /// The master seed of the collection.
    #[serde(default)]
    pub seed: u64,
    /// The collecting policy's self-description (its `describe()`), e.g. `"uniform:-2,2"`.
    #[serde(default)]
    pub policy: String,
    /// Number of episodes `N` in this file.
    pub episodes: usize,
    /// Steps per episode `T`.
    pub steps: usize,
    /// Image size `S` (frames are `S × S`).
    pub size: usize,
    /// Names of the state coordinates (`states[..., i]`), empty when unknown.
    #[serde(default)]
    pub state_names: Vec<String>,
    /// Index, in the original collection, of this file's episode 0 (non-zero for the later part of
    /// a split): episode `i` here was generated with stream `first_episode + i`.
    #[serde(default)]
    pub first_episode: usize,
    /// How frames were drawn (the environment's own fields).
    #[serde(default)]
    pub renderer: serde_json::Value,
    /// How episodes were seeded, in words.
    #[serde(default)]
    pub seeding: String,
    /// The writer, `"ekvae-envs <version>"`.
    #[serde(default)]
    pub generator: String,
    /// The arrays the writer stored ([`Dataset::save`] fills it in): each must be present when
    /// the file is read, so that a damaged archive cannot silently lose an optional array.
    #[serde(default)]
    pub arrays: Vec<String>,
}

/// The validation split rule, the one the training loop and [`Dataset::split_validation`] use:
/// of `episodes` episodes, the last `⌈fraction · N⌉` validate — at least one when
/// `fraction > 0` and N ≥ 2, never all of them (at most N − 1), none when `fraction ≤ 0` — and
/// the others train. Returns the number of training episodes `n`: episodes `0..n` train,
/// `n..episodes` validate. Episodes of a collected dataset are i.i.d., so a split by index is a
/// random split and needs no shuffle.
pub fn validation_split(episodes: usize, fraction: f64) -> usize {
    let mut val = (fraction * episodes as f64).ceil() as usize;
    if fraction > 0.0 && episodes >= 2 {
        val = val.max(1);
    }
    val = val.min(episodes.saturating_sub(1));
    episodes - val
}

/// A collection of `episodes × steps` frames with their actions and, when known, true states and
/// rewards.
///
/// Layout is row-major: `images[(((ep·T + t)·S + y)·S + x)·C + c]`, `actions[(ep·T + t)·A + i]`,
/// `states[(ep·T + t)·D + i]`, `rewards[ep·T + t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[N, T, S, S, C]` frames (channels last; C = 1 is grayscale).
    pub images: Vec<u8>,
    /// `[N, T, A]` actions.
    pub actions: Vec<f32>,
    /// `[N, T, D]` true states, or empty when unknown (D = 0).
    pub states: Vec<f64>,
    /// `[N, T]` rewards, or empty when unknown.
    pub rewards: Vec<f32>,
    /// `N`.
    pub episodes: usize,
    /// `T`.
    pub steps: usize,
    /// `S`.
    pub size: usize,
    /// Image channels `C`.
    pub channels: usize,
    /// Action dimension `A`.
    pub action_dim: usize,
    /// State dimension `D` (0 when the dataset has no states).
    pub state_dim: usize,
    /// The self-description.
    pub meta: DatasetMeta,
}

impl Dataset {
    /// Bytes per frame, `S·S·C`.
    pub fn frame_len(&self) -> usize {
        self.size * self.size * self.channels
    }

    /// Frame `t` of episode `ep`, `S × S × C` bytes.
    ///
    /// # Panics
    /// If `ep ≥ N` or `t ≥ T`.
    pub fn frame(&self, ep: usize, t: usize) -> &[u8] {
        assert!(
            ep < self.episodes && t < self.steps,
            "frame ({ep}, {t}) out of range [{}, {}]",
            self.episodes,
            self.steps
        );
        let f = self.frame_len();
        let i = ep * self.steps + t;
        &self.images[i * f..(i + 1) * f]
    }

    /// The true state shown in frame `t` of episode `ep` (`D` values; empty without states;
    /// panics if out of range).
    pub fn state(&self, ep: usize, t: usize) -> &[f64] {
        assert!(ep < self.episodes && t < self.steps, "state ({ep}, {t}) out of range");
        let (d, i) = (self.state_dim, ep * self.steps + t);
        &self.states[i * d..(i + 1) * d]
    }

    /// The action applied after frame `t` of episode `ep` (`A` values; panics if out of range).
    pub fn action(&self, ep: usize, t: usize) -> &[f32] {
        assert!(ep < self.episodes && t < self.steps, "action ({ep}, {t}) out of range");
        let (a, i) = (self.action_dim, ep * self.steps + t);
        &self.actions[i * a..(i + 1) * a]
    }

    /// The metadata as the file stores it: [`DatasetMeta::arrays`] lists the arrays written.
    pub fn file_meta(&self) -> DatasetMeta {
        let mut meta = self.meta.clone();
        meta.arrays = ARRAYS
            .iter()
            .filter(|&&a| match a {
                "states" => self.state_dim > 0,
                "rewards" => !self.rewards.is_empty(),
                _ => true,
            })
            .map(|a| a.to_string())
            .collect();
        meta
    }

    /// Whether the dataset records true states.
    pub fn has_states(&self) -> bool {
        self.state_dim > 0
    }

    /// Check that the arrays have the lengths `N`, `T`, `S`, `C`, `A`, `D` imply, agree with the
    /// metadata, and hold finite values.
    pub fn check(&self) -> Result<()> {
        let (n, t, s, c) = (self.episodes, self.steps, self.size, self.channels);
        let (a, d) = (self.action_dim, self.state_dim);
        if n == 0 || t == 0 || s < MIN_SIZE || c == 0 || a == 0 {
            return Err(Error::Inconsistent(format!(
                "need N ≥ 1, T ≥ 1, S ≥ {MIN_SIZE}, C ≥ 1, A ≥ 1; have N={n}, T={t}, S={s}, C={c}, A={a}"
            )));
        }
        let nt = n.checked_mul(t).ok_or_else(|| Error::Inconsistent("N·T overflows".into()))?;
        let rewards = if self.rewards.is_empty() { 0 } else { nt };
        let lens = [
            ("images", self.images.len(), nt.checked_mul(s * s).and_then(|v| v.checked_mul(c))),
            ("actions", self.actions.len(), nt.checked_mul(a)),
            ("states", self.states.len(), nt.checked_mul(d)),
            ("rewards", self.rewards.len(), Some(rewards)),
        ];
        for (name, have, want) in lens {
            if Some(have) != want {
                return Err(Error::Inconsistent(format!(
                    "{name} has {have} elements, N={n}, T={t}, S={s}, C={c}, A={a}, D={d} need {want:?}"
                )));
            }
        }
        let m = &self.meta;
        if (m.episodes, m.steps, m.size) != (n, t, s) {
            return Err(Error::Inconsistent(format!(
                "metadata says N={}, T={}, S={} but the arrays have N={n}, T={t}, S={s}",
                m.episodes, m.steps, m.size
            )));
        }
        if !m.state_names.is_empty() && m.state_names.len() != d {
            return Err(Error::Inconsistent(format!(
                "metadata names {} state coordinates but the states have D={d}",
                m.state_names.len()
            )));
        }
        let bad = |name: &str, i: usize, v: f64| {
            Error::Inconsistent(format!("{name}[{i}] = {v} is not finite"))
        };
        if let Some(i) = self.states.iter().position(|v| !v.is_finite()) {
            return Err(bad("states", i, self.states[i]));
        }
        if let Some(i) = self.actions.iter().position(|v| !v.is_finite()) {
            return Err(bad("actions", i, self.actions[i] as f64));
        }
        if let Some(i) = self.rewards.iter().position(|v| !v.is_finite()) {
            return Err(bad("rewards", i, self.rewards[i] as f64));
        }
        Ok(())
    }

    /// The episodes in `range` as a new dataset (metadata updated: `episodes`, `first_episode`).
    pub fn subset(&self, range: Range<usize>) -> Result<Dataset> {
        if range.start >= range.end || range.end > self.episodes {
            return Err(Error::InvalidArgument {
                what: "episode range",
                reason: format!(
                    "{}..{} is empty or outside 0..{}",
                    range.start, range.end, self.episodes
                ),
            });
        }
        let (t, f) = (self.steps, self.frame_len());
        let (a, b) = (range.start * t, range.end * t);
        let (k, d) = (self.action_dim, self.state_dim);
        let mut meta = self.meta.clone();
        meta.episodes = range.end - range.start;
        meta.first_episode = self.meta.first_episode + range.start;
        Ok(Dataset {
            images: self.images[a * f..b * f].to_vec(),
            actions: self.actions[k * a..k * b].to_vec(),
            states: self.states[d * a..d * b].to_vec(),
            rewards: if self.rewards.is_empty() { Vec::new() } else { self.rewards[a..b].to_vec() },
            episodes: meta.episodes,
            meta,
            ..*self
        })
    }

    /// The episodes `order` (any order, repeats allowed) as a new dataset; the metadata keeps
    /// its description, with `episodes` updated and `first_episode` 0 (the episodes need not be
    /// contiguous in the source).
    pub fn select(&self, order: &[usize]) -> Result<Dataset> {
        if order.is_empty() {
            return Err(Error::InvalidArgument {
                what: "episode selection",
                reason: "no episode selected".into(),
            });
        }
        if let Some(&bad) = order.iter().find(|&&e| e >= self.episodes) {
            return Err(Error::InvalidArgument {
                what: "episode selection",
                reason: format!("episode {bad} is outside 0..{}", self.episodes),
            });
        }
        let (t, f, k, d) = (self.steps, self.frame_len(), self.action_dim, self.state_dim);
        let mut out = Dataset {
            images: Vec::with_capacity(order.len() * t * f),
            actions: Vec::with_capacity(order.len() * t * k),
            states: Vec::with_capacity(order.len() * t * d),
            rewards: Vec::with_capacity(if self.rewards.is_empty() { 0 } else { order.len() * t }),
            episodes: order.len(),
            meta: DatasetMeta { episodes: order.len(), first_episode: 0, ..self.meta.clone() },
            ..*self
        };
        for &e in order {
            let (a, b) = (e * t, (e + 1) * t);
            out.images.extend_from_slice(&self.images[a * f..b * f]);
            out.actions.extend_from_slice(&self.actions[a * k..b * k]);
            out.states.extend_from_slice(&self.states[a * d..b * d]);
            if !self.rewards.is_empty() {
                out.rewards.extend_from_slice(&self.rewards[a..b]);
            }
        }
        Ok(out)
    }

    /// The episodes of `parts`, one after the other, as one dataset. The parts must be of one
    /// environment (id, parameters, renderer, state names) with the same steps per episode,
    /// image size, channels and dimensions, and either all or none record rewards. The
    /// metadata is the first part's, with `episodes` summed and `policy` and `seeding` naming
    /// each part's (`"P1 ×N1 + P2 ×N2"`) when they differ.
    pub fn concat(parts: &[&Dataset]) -> Result<Dataset> {
        let Some(first) = parts.first() else {
            return Err(Error::InvalidArgument {
                what: "datasets to merge",
                reason: "none given".into(),
            });
        };
        let differs = |i: usize, what: &str, a: String, b: String| Error::InvalidArgument {
            what: "datasets to merge",
            reason: format!(
                "part {} has {what} {b}, part 1 has {a}; merge data of one environment and one collection format",
                i + 1
            ),
        };
        for (i, p) in parts.iter().enumerate().skip(1) {
            let shape = |d: &Dataset| {
                format!(
                    "T={} S={} C={} A={} D={}",
                    d.steps, d.size, d.channels, d.action_dim, d.state_dim
                )
            };
            if shape(first) != shape(p) {
                return Err(differs(i, "the shape", shape(first), shape(p)));
            }
            let (m0, m) = (&first.meta, &p.meta);
            for (what, a, b) in [
                ("the environment", m0.env.clone(), m.env.clone()),
                ("the parameters", m0.params.to_string(), m.params.to_string()),
                ("the renderer", m0.renderer.to_string(), m.renderer.to_string()),
                ("the state names", m0.state_names.join(","), m.state_names.join(",")),
            ] {
                if a != b {
                    return Err(differs(i, what, a, b));
                }
            }
            if first.rewards.is_empty() != p.rewards.is_empty() {
                let has = |d: &Dataset| if d.rewards.is_empty() { "no rewards" } else { "rewards" };
                return Err(differs(i, "", has(first).into(), has(p).into()));
            }
        }
        let n: usize = parts.iter().map(|p| p.episodes).sum();
        let joined = |field: fn(&DatasetMeta) -> &String| {
            let all: Vec<&String> = parts.iter().map(|p| field(&p.meta)).collect();
            if all.iter().all(|s| *s == all[0]) {
                all[0].clone()
            } else {
                parts
                    .iter()
                    .map(|p| match field(&p.meta) {
                        // A part that is itself a merge keeps its own terms together.
                        f if f.contains(" + ") => format!("({f}) ×{}", p.episodes),
                        f => format!("{f} ×{}", p.episodes),
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            }
        };
        let meta = DatasetMeta {
            episodes: n,
            first_episode: 0,
            policy: joined(|m| &m.policy),
            seeding: joined(|m| &m.seeding),
            ..first.meta.clone()
        };
        let cat =
            |f: fn(&Dataset) -> &[u8]| parts.iter().flat_map(|p| f(p).iter().copied()).collect();
        Ok(Dataset {
            images: cat(|d| &d.images),
            actions: parts.iter().flat_map(|p| p.actions.iter().copied()).collect(),
            states: parts.iter().flat_map(|p| p.states.iter().copied()).collect(),
            rewards: parts.iter().flat_map(|p| p.rewards.iter().copied()).collect(),
            episodes: n,
            meta,
            ..**first
        })
    }

    /// Split into the first `n_first` episodes and the rest (e.g. training and validation);
    /// both parts must be non-empty. Episodes are i.i.d., so a split by index is a random split.
    pub fn split_at(&self, n_first: usize) -> Result<(Dataset, Dataset)> {
        Ok((self.subset(0..n_first)?, self.subset(n_first..self.episodes)?))
    }

    /// Split off the last `⌈fraction·N⌉` episodes (at least 1, at most N − 1) for validation,
    /// by the workspace's one rule [`validation_split`]; `fraction` must be in (0, 1) and N ≥ 2.
    pub fn split_validation(&self, fraction: f64) -> Result<(Dataset, Dataset)> {
        if !(fraction > 0.0 && fraction < 1.0) || self.episodes < 2 {
            return Err(Error::InvalidArgument {
                what: "validation split",
                reason: format!(
                    "fraction {fraction} must be in (0, 1) and N = {} at least 2",
                    self.episodes
                ),
            });
        }
        self.split_at(validation_split(self.episodes, fraction))
    }

    /// Write the dataset to `path` atomically (see the module docs). Deflate-compressed
    /// (fast level); any existing file at `path` is replaced only once the new one is complete.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check()?;
        let meta = serde_json::to_vec(&self.file_meta())
            .map_err(|e| Error::BadMeta { path: path.into(), reason: e.to_string() })?;
        let (n, t, s) = (self.episodes as u64, self.steps as u64, self.size as u64);
        let (c, a, d) = (self.channels as u64, self.action_dim as u64, self.state_dim as u64);
        let image_shape: Vec<u64> = if c == 1 { vec![n, t, s, s] } else { vec![n, t, s, s, c] };
        write_atomic(path, |w| {
            let mut npz = npyz::npz::NpzWriter::new(w);
            let written = (|| {
                write_array(&mut npz, "images", &image_shape, "|u1", &self.images, |v, out| {
                    out.push(*v)
                })?;
                write_array(&mut npz, "actions", &[n, t, a], "<f4", &self.actions, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })?;
                if d > 0 {
                    write_array(&mut npz, "states", &[n, t, d], "<f8", &self.states, |v, out| {
                        out.extend_from_slice(&v.to_le_bytes())
                    })?;
                }
                if !self.rewards.is_empty() {
                    write_array(&mut npz, "rewards", &[n, t], "<f4", &self.rewards, |v, out| {
                        out.extend_from_slice(&v.to_le_bytes())
                    })?;
                }
                write_array(&mut npz, "meta", &[meta.len() as u64], "|u1", &meta, |v, out| {
                    out.push(*v)
                })?;
                npz.zip_writer().finish().map(drop).map_err(io::Error::other)
            })();
            if written.is_err() {
                // The zip writer finishes again in `Drop` and prints there when that fails
                // (a full disk): the file is discarded anyway, so it is not dropped.
                std::mem::forget(npz);
            }
            written
        })
    }

    /// Read and validate a dataset written by [`Dataset::save`] (or by numpy with the same layout).
    pub fn load(path: &Path) -> Result<Dataset> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.into(),
            action: "open the dataset",
            source,
        })?;
        let mut npz = npyz::npz::NpzArchive::new(BufReader::new(file))
            .map_err(|e| Error::Archive { path: path.into(), reason: e.to_string() })?;
        let names: Vec<String> = npz.array_names().map(str::to_owned).collect();
        for name in ["images", "actions", "meta"] {
            if !names.iter().any(|n| n == name) {
                let found =
                    if names.is_empty() { "no arrays".to_string() } else { names.join(", ") };
                return Err(Error::MissingArray { path: path.into(), name, found });
            }
        }
        // Every array must be known: with optional arrays, a name damaged in the archive must
        // not silently drop its array.
        if let Some(other) = names.iter().find(|n| !ARRAYS.contains(&n.as_str())) {
            return Err(Error::Archive {
                path: path.into(),
                reason: format!(
                    "unexpected array '{other}' (a dataset holds {}); remove it or fix its name",
                    ARRAYS.join(", ")
                ),
            });
        }
        let has = |name: &str| names.iter().any(|n| n == name);
        let p = path;
        // Metadata first: its version decides how to read the rest.
        let (shape, bytes) = read_array(&mut npz, p, "meta", "|u1")?;
        expect_rank(p, "meta", &shape, 1, "[bytes]")?;
        let mut meta = parse_meta(p, &bytes)?;
        let v1 = meta.format_version == 1;
        if let Some(lost) = meta.arrays.iter().find(|a| !names.contains(a)) {
            return Err(Error::Archive {
                path: path.into(),
                reason: format!(
                    "the metadata lists array '{lost}' but the archive does not hold it (found: {})",
                    names.join(", ")
                ),
            });
        }
        // What is in memory is what was read, not what the writer listed.
        meta.arrays.clear();

        let (shape, images) = read_array(&mut npz, p, "images", "|u1")?;
        let square = shape.len() >= 4 && shape[2] == shape[3];
        let channels = match shape.len() {
            4 => 1,
            5 if !v1 => shape[4],
            _ => 0,
        };
        if !square || channels == 0 || shape[2] < MIN_SIZE as u64 || shape[0] == 0 || shape[1] == 0
        {
            return Err(Error::WrongShape {
                path: p.into(),
                name: "images",
                expected: format!(
                    "[N, T, S, S] or [N, T, S, S, C] with N, T, C ≥ 1 and square frames S ≥ {MIN_SIZE}"
                ),
                found: shape,
            });
        }
        let (n, t, h) = (shape[0], shape[1], shape[2]);
        let check = |name: &'static str, shape: &[u64], want: &[u64], words: &str| -> Result<()> {
            if shape != want {
                return Err(Error::WrongShape {
                    path: p.into(),
                    name,
                    expected: format!("{words} = {want:?} (N and T from images)"),
                    found: shape.to_vec(),
                });
            }
            Ok(())
        };
        let (shape, actions) = read_array(&mut npz, p, "actions", "<f4")?;
        let a = if shape.len() == 3 && !v1 { shape[2].max(1) } else { 1 };
        check("actions", &shape, &[n, t, a], "[N, T, A] with A ≥ 1")?;
        let (states, d) = if has("states") {
            let (shape, states) = read_array(&mut npz, p, "states", "<f8")?;
            let d = if shape.len() == 3 && !v1 { shape[2].max(1) } else { 2 };
            check("states", &shape, &[n, t, d], "[N, T, D] with D ≥ 1")?;
            (states, d)
        } else if v1 {
            return Err(Error::MissingArray {
                path: path.into(),
                name: "states",
                found: names.join(", "),
            });
        } else {
            (Vec::new(), 0)
        };
        let rewards = if has("rewards") {
            let (shape, rewards) = read_array(&mut npz, p, "rewards", "<f4")?;
            check("rewards", &shape, &[n, t], "[N, T]")?;
            rewards
        } else {
            Vec::new()
        };

        let actions: Vec<f32> = actions
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let states: Vec<f64> = states
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let rewards: Vec<f32> = rewards
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let non_finite = |name: &'static str, i: usize, value: f64| Error::NonFinite {
            path: p.into(),
            name,
            index: i,
            value,
        };
        if let Some(i) = states.iter().position(|v| !v.is_finite()) {
            return Err(non_finite("states", i, states[i]));
        }
        if let Some(i) = actions.iter().position(|v| !v.is_finite()) {
            return Err(non_finite("actions", i, actions[i] as f64));
        }
        if let Some(i) = rewards.iter().position(|v| !v.is_finite()) {
            return Err(non_finite("rewards", i, rewards[i] as f64));
        }
        let (n, t, s) = (n as usize, t as usize, h as usize);
        if (meta.episodes, meta.steps, meta.size) != (n, t, s) {
            return Err(Error::BadMeta {
                path: p.into(),
                reason: format!(
                    "says N={}, T={}, S={} but the arrays have N={n}, T={t}, S={s}",
                    meta.episodes, meta.steps, meta.size
                ),
            });
        }
        if v1 {
            // Version 1 is the pendulum's format: name what it holds in version 2's terms.
            meta.state_names = vec!["theta".into(), "theta_dot".into()];
            meta.format_version = FORMAT_VERSION;
        }
        if !meta.state_names.is_empty() && meta.state_names.len() != d as usize {
            return Err(Error::BadMeta {
                path: p.into(),
                reason: format!(
                    "names {} state coordinates ({}) but 'states' has D={d}",
                    meta.state_names.len(),
                    meta.state_names.join(", ")
                ),
            });
        }
        Ok(Dataset {
            images,
            actions,
            states,
            rewards,
            episodes: n,
            steps: t,
            size: s,
            channels: channels as usize,
            action_dim: a as usize,
            state_dim: d as usize,
            meta,
        })
    }
}

fn parse_meta(path: &Path, bytes: &[u8]) -> Result<DatasetMeta> {
    let bad = |reason: String| Error::BadMeta { path: path.into(), reason };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no integer 'format_version'".into()))?;
    if !(OLDEST_FORMAT_VERSION as u64..=FORMAT_VERSION as u64).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.into(),
            found: version.min(u32::MAX as u64) as u32,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

fn expect_rank(
    path: &Path,
    name: &'static str,
    shape: &[u64],
    rank: usize,
    words: &str,
) -> Result<()> {
    if shape.len() != rank {
        return Err(Error::WrongShape {
            path: path.into(),
            name,
            expected: format!("{rank} dimensions {words}"),
            found: shape.to_vec(),
        });
    }
    Ok(())
}

/// Whether two numpy type strings name the same type (the byte order of 1-byte types is moot).
fn same_dtype(found: &str, expected: &str) -> bool {
    let one_byte =
        |s: &str| s.len() == 3 && s.ends_with('1') && matches!(&s[..1], "|" | "<" | ">" | "=");
    if one_byte(found) && one_byte(expected) {
        found[1..] == expected[1..]
    } else {
        found == expected
    }
}

/// Read array `name` with numpy type `dtype` (C order) as raw little-endian bytes.
fn read_array<R: Read + io::Seek>(
    npz: &mut npyz::npz::NpzArchive<R>,
    path: &Path,
    name: &'static str,
    dtype: &'static str,
) -> Result<(Vec<u64>, Vec<u8>)> {
    let corrupt = |reason: String| Error::CorruptArray { path: path.into(), name, reason };
    let npy = match npz.by_name(name) {
        Ok(Some(npy)) => npy,
        Ok(None) => {
            return Err(Error::MissingArray {
                path: path.into(),
                name,
                found: "(not readable)".into(),
            });
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let found = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => other.descr(),
    };
    if !same_dtype(&found, dtype) {
        return Err(Error::WrongDtype { path: path.into(), name, expected: dtype, found });
    }
    if npy.order() != npyz::Order::C {
        return Err(corrupt(
            "stored in Fortran order; save it in C order (numpy's default)".into(),
        ));
    }
    let shape = npy.shape().to_vec();
    let item = if dtype.ends_with('8') {
        8
    } else if dtype.ends_with('4') {
        4
    } else {
        1
    };
    let want = shape
        .iter()
        .try_fold(item as u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(format!("shape {shape:?} overflows")))?;
    let mut data = npy.into_inner();
    // The zip entry's declared size bounds what we allocate: a lying header cannot make us
    // reserve more than the archive claims to hold.
    let entry = data.size();
    if want > entry {
        return Err(corrupt(format!(
            "header declares {want} bytes of data but the archive entry holds only {entry} bytes in all"
        )));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(want as usize)
        .map_err(|_| corrupt(format!("cannot allocate {want} bytes")))?;
    // Read one byte more than needed: reaching the end of the entry makes the zip reader verify
    // its CRC-32, and an extra byte means trailing garbage.
    (&mut data).take(want + 1).read_to_end(&mut buf).map_err(|e| corrupt(e.to_string()))?;
    if (buf.len() as u64) != want {
        return Err(corrupt(format!(
            "expected {want} bytes of data for shape {shape:?}, found {}",
            buf.len()
        )));
    }
    Ok((shape, buf))
}

/// Write one array as an `.npy` entry: header by npyz, data as little-endian bytes in chunks.
fn write_array<W: Write + io::Seek, T>(
    npz: &mut npyz::npz::NpzWriter<W>,
    name: &str,
    shape: &[u64],
    dtype: &str,
    data: &[T],
    encode: impl Fn(&T, &mut Vec<u8>),
) -> io::Result<()> {
    let bytes = data.len() as u64 * std::mem::size_of::<T>() as u64;
    let options = npyz::zip::write::FileOptions::default()
        .compression_method(npyz::zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        // A fixed timestamp (1980-01-01, zip's epoch): same data, same bytes.
        .last_modified_time(npyz::zip::DateTime::default())
        .large_file(bytes >= (1 << 32) - (1 << 20));
    let dtype: npyz::TypeStr =
        dtype.parse().map_err(|e: npyz::ParseTypeStrError| io::Error::other(e.to_string()))?;
    let dtype = npyz::DType::Plain(dtype);
    let w = npz.array::<u8>(name, options)?.dtype(dtype).shape(shape).write_header_only()?;
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in data.chunks(1 << 14) {
        buf.clear();
        for v in chunk {
            encode(v, &mut buf);
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// The one atomic-write function of the workspace and the early output check (see [`crate::fsio`]).
pub use crate::fsio::{check_writable, write_atomic};

#[cfg(test)]
mod tests {
    use super::*;

    /// A dataset of 3 episodes × 5 steps of 8×8 frames made by hand (rendered states, arbitrary
    /// actions and rewards): the file format does not care how the data came about, and this
    /// module does not depend on the collector (which is tested through files in its own
    /// module).
    fn small() -> Dataset {
        let (n, t, s) = (3, 5, 8);
        let states: Vec<f64> =
            (0..n * t).flat_map(|i| [0.45 * i as f64 - 3.0, 0.2 * i as f64 - 1.0]).collect();
        let images = states.chunks(2).flat_map(|st| crate::render::render(st[0], s)).collect();
        let actions = (0..n * t).map(|i| 2.0 * (0.7 * i as f32).sin()).collect();
        let rewards = (0..n * t).map(|i| -0.25 * i as f32).collect();
        let meta = DatasetMeta {
            format_version: FORMAT_VERSION,
            env: "Pendulum-v1".into(),
            params: serde_json::to_value(crate::pendulum::PendulumParams::default()).unwrap(),
            seed: 11,
            policy: "uniform:-2,2".into(),
            episodes: n,
            steps: t,
            size: s,
            state_names: vec!["theta".into(), "theta_dot".into()],
            first_episode: 0,
            renderer: serde_json::json!({"orientation": "test"}),
            seeding: "test".into(),
            generator: "ekvae-envs test".into(),
            arrays: Vec::new(),
        };
        Dataset {
            images,
            actions,
            states,
            rewards,
            episodes: n,
            steps: t,
            size: s,
            channels: 1,
            action_dim: 1,
            state_dim: 2,
            meta,
        }
    }

    /// `select` reorders whole episodes (every array moves with its episode); `concat` of a
    /// dataset's two halves is the dataset again, and mismatched parts are refused.
    #[test]
    fn select_and_concat_move_whole_episodes() {
        let d = small();
        let r = d.select(&[2, 0, 1]).unwrap();
        r.check().unwrap();
        for (new, old) in [(0, 2), (1, 0), (2, 1)] {
            for t in 0..d.steps {
                assert_eq!(r.frame(new, t), d.frame(old, t));
                assert_eq!(r.state(new, t), d.state(old, t));
                assert_eq!(r.action(new, t), d.action(old, t));
                assert_eq!(r.rewards[new * d.steps + t], d.rewards[old * d.steps + t]);
            }
        }
        assert!(d.select(&[]).is_err());
        assert!(d.select(&[3]).is_err());

        let (a, b) = d.split_at(1).unwrap();
        let mut whole = Dataset::concat(&[&a, &b]).unwrap();
        assert_eq!(whole.meta.first_episode, 0);
        whole.meta.first_episode = d.meta.first_episode;
        assert_eq!(whole, d, "the halves put back together");

        let mut other = b.clone();
        other.meta.policy = "mpc".into();
        let m = Dataset::concat(&[&a, &other]).unwrap();
        assert_eq!(m.meta.policy, "uniform:-2,2 ×1 + mpc ×2");
        assert_eq!(m.episodes, 3);
        let mut third = a.clone();
        third.meta.policy = "zero".into();
        let again = Dataset::concat(&[&m, &third]).unwrap();
        assert_eq!(again.meta.policy, "(uniform:-2,2 ×1 + mpc ×2) ×3 + zero ×1");

        let mut env = b.clone();
        env.meta.env = "CartPoleSwingUp-v0".into();
        let e = Dataset::concat(&[&a, &env]).unwrap_err().to_string();
        assert!(e.contains("environment") && e.contains("CartPoleSwingUp-v0"), "{e}");
        let mut no_rewards = b.clone();
        no_rewards.rewards.clear();
        assert!(Dataset::concat(&[&a, &no_rewards]).is_err());
        let short = d.select(&[0]).unwrap().subset(0..1).unwrap();
        let mut shorter = short.clone();
        shorter.steps = 4;
        assert!(Dataset::concat(&[&short, &shorter]).is_err());
        assert!(Dataset::concat(&[]).is_err());
    }

    /// Version 1 files (the pendulum's, before states became optional) load as version 2: the
    /// same arrays, the state coordinates named.
    #[test]
    fn version_1_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let d = small();
        let mut v1 = serde_json::to_value(&d.meta).unwrap();
        let obj = v1.as_object_mut().unwrap();
        obj.insert("format_version".into(), 1.into());
        obj.remove("state_names");
        let meta = serde_json::to_vec(&v1).unwrap();
        let mut arrays = raw_arrays(&d);
        arrays.last_mut().unwrap().2 = vec![meta.len() as u64];
        arrays.last_mut().unwrap().3 = meta;
        let path = dir.path().join("v1.npz");
        write_raw(&path, &arrays);
        let e = Dataset::load(&path).unwrap();
        assert_eq!(e, d, "a version 1 file reads as the same dataset");
        // Version 1 knew only [N, T, 1] actions and [N, T, 2] states.
        let mut wide = arrays.clone();
        wide[1].2 = vec![3, 5, 1, 1];
        assert!(matches!(Dataset::load_raw_for_test(&dir, &wide), Err(Error::WrongShape { .. })));
    }

    /// A recorded dataset: 3-channel frames, 2-dimensional actions, no states, no rewards.
    #[test]
    fn recorded_multichannel_datasets_without_states_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (n, t, s, c) = (2, 4, 8, 3);
        let mut d = small().subset(0..2).unwrap();
        d.images = (0..n * t * s * s * c).map(|i| (i % 251) as u8).collect();
        d.actions = (0..n * t * 2).map(|i| i as f32 * 0.5).collect();
        d.states.clear();
        d.rewards.clear();
        d.steps = t;
        d.channels = c;
        d.action_dim = 2;
        d.state_dim = 0;
        d.meta = DatasetMeta {
            env: String::new(),
            params: serde_json::Value::Null,
            state_names: Vec::new(),
            steps: t,
            ..d.meta
        };
        d.images.truncate(n * t * s * s * c);
        let path = dir.path().join("rec.npz");
        d.save(&path).unwrap();
        let e = Dataset::load(&path).unwrap();
        assert_eq!(e, d);
        assert!(
            !e.has_states() && e.frame(1, 3).len() == s * s * c && e.action(1, 2) == [6.0, 6.5]
        );
        // A hand-written metadata with only the required fields loads.
        let meta = br#"{"format_version": 2, "episodes": 2, "steps": 4, "size": 8}"#.to_vec();
        let images: Vec<u8> = d.images.clone();
        let acts: Vec<u8> = d.actions.iter().flat_map(|x| x.to_le_bytes()).collect();
        let minimal = vec![
            ("images", "|u1", vec![2, 4, 8, 8, 3], images),
            ("actions", "<f4", vec![2, 4, 2], acts),
            ("meta", "|u1", vec![meta.len() as u64], meta),
        ];
        let m = Dataset::load_raw_for_test(&dir, &minimal).unwrap();
        assert_eq!((m.channels, m.action_dim, m.state_dim, m.meta.env.as_str()), (3, 2, 0, ""));
        // State names that do not match the states are refused.
        let mut named = raw_arrays(&small());
        let mut meta = small().meta;
        meta.state_names.push("extra".into());
        let bytes = serde_json::to_vec(&meta).unwrap();
        *named.last_mut().unwrap() = ("meta", "|u1", vec![bytes.len() as u64], bytes);
        let e = Dataset::load_raw_for_test(&dir, &named).unwrap_err();
        assert!(matches!(e, Error::BadMeta { .. }), "{e}");
    }

    impl Dataset {
        fn load_raw_for_test(dir: &tempfile::TempDir, arrays: &[Raw]) -> Result<Dataset> {
            let path = dir.path().join("raw-test.npz");
            write_raw(&path, arrays);
            Dataset::load(&path)
        }
    }

    /// One array for [`write_raw`]: name, numpy dtype, shape, raw bytes.
    type Raw = (&'static str, &'static str, Vec<u64>, Vec<u8>);

    fn raw_arrays(d: &Dataset) -> Vec<Raw> {
        let (n, t, s) = (d.episodes as u64, d.steps as u64, d.size as u64);
        let (a, k) = (d.action_dim as u64, d.state_dim as u64);
        let le32 = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let le64 = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let meta = serde_json::to_vec(&d.meta).unwrap();
        vec![
            ("images", "|u1", vec![n, t, s, s], d.images.clone()),
            ("actions", "<f4", vec![n, t, a], le32(&d.actions)),
            ("states", "<f8", vec![n, t, k], le64(&d.states)),
            ("rewards", "<f4", vec![n, t], le32(&d.rewards)),
            ("meta", "|u1", vec![meta.len() as u64], meta),
        ]
    }

    /// Write arbitrary arrays as an npz, bypassing [`Dataset::check`], to make bad files.
    fn write_raw(path: &Path, arrays: &[Raw]) {
        write_atomic(path, |w| {
            let mut npz = npyz::npz::NpzWriter::new(w);
            for (name, dtype, shape, bytes) in arrays {
                write_array(&mut npz, name, shape, dtype, bytes, |v, out| out.push(*v))?;
            }
            npz.zip_writer().finish().map_err(io::Error::other)?;
            Ok(())
        })
        .unwrap();
    }

    fn with(d: &Dataset, name: &str, f: impl FnOnce(&mut Raw)) -> Vec<Raw> {
        let mut a = raw_arrays(d);
        f(a.iter_mut().find(|x| x.0 == name).unwrap());
        a
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        let d = small();
        d.save(&path).unwrap();
        let e = Dataset::load(&path).unwrap();
        assert_eq!(d, e);
        assert_eq!(e.frame(2, 4), d.frame(2, 4));
        // Saving again gives the same bytes (no timestamps in the archive).
        let bytes = std::fs::read(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        e.save(&path).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        // The raw writer used by the bad-file tests writes a loadable file when nothing is bad.
        let raw = dir.path().join("raw.npz");
        write_raw(&raw, &raw_arrays(&d));
        assert_eq!(Dataset::load(&raw).unwrap(), d);
    }

    /// The rule by hand: ⌈0.1·10⌉ = 1, ⌈0.25·10⌉ = 3, ⌈0.01·2⌉ = 1; never all episodes
    /// (N = 1 keeps its one episode for training), none for a zero fraction.
    #[test]
    fn validation_split_keeps_at_least_one_of_each() {
        assert_eq!(validation_split(10, 0.1), 9);
        assert_eq!(validation_split(10, 0.25), 7);
        assert_eq!(validation_split(2, 0.01), 1);
        assert_eq!(validation_split(100, 0.1), 90);
        assert_eq!(validation_split(1, 0.5), 1);
        assert_eq!(validation_split(5, 0.0), 5);
        assert_eq!(validation_split(5, 1.0), 1);
        assert_eq!(validation_split(0, 0.1), 0);
    }

    #[test]
    fn subsets_and_splits() {
        let d = small();
        let (a, b) = d.split_at(2).unwrap();
        assert_eq!((a.episodes, b.episodes), (2, 1));
        assert_eq!(b.meta.first_episode, 2);
        assert_eq!(b.frame(0, 3), d.frame(2, 3));
        assert_eq!(b.state(0, 1), d.state(2, 1));
        assert_eq!(a.action(1, 4), d.action(1, 4));
        a.check().unwrap();
        b.check().unwrap();
        // ⌈0.2 · 3⌉ = 1 validation episode, the last one.
        let (tr, va) = d.split_validation(0.2).unwrap();
        assert_eq!((tr.episodes, va.episodes), (2, 1));
        assert_eq!(va.meta.first_episode, 2);
        assert!(d.subset(2..2).is_err());
        assert!(d.subset(0..4).is_err());
        assert!(d.split_at(3).is_err());
        assert!(d.split_validation(1.0).is_err());
        // A subset of a subset keeps track of the original episode index.
        assert_eq!(b.subset(0..1).unwrap().meta.first_episode, 2);
    }

    #[test]
    fn save_refuses_inconsistent_data_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        std::fs::write(&path, b"precious").unwrap();
        let mut d = small();
        d.states[3] = f64::NAN;
        assert!(matches!(d.save(&path), Err(Error::Inconsistent(_))));
        let mut e = small();
        e.images.pop();
        assert!(matches!(e.save(&path), Err(Error::Inconsistent(_))));
        let mut f = small();
        f.meta.steps = 6;
        assert!(f.save(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        // A failing writer leaves neither a partial file nor a temporary file behind.
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
        // Missing folder, or a folder as the target: clear errors naming the path.
        let e = small().save(&dir.path().join("no/such/dir/d.npz")).unwrap_err();
        assert!(e.to_string().contains("no/such/dir"), "{e}");
        assert!(check_writable(dir.path()).is_err());
        assert!(check_writable(&dir.path().join("x.npz")).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "probe file left behind");
    }

    fn load_err(path: &Path, arrays: &[Raw]) -> Error {
        write_raw(path, arrays);
        Dataset::load(path).expect_err("bad file must not load")
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npz");
        let d = small();
        let msg = |e: &Error| e.to_string();

        let e = Dataset::load(&dir.path().join("missing.npz")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && msg(&e).contains("missing.npz"), "{e}");

        std::fs::write(&p, "this is not a zip file").unwrap();
        let e = Dataset::load(&p).unwrap_err();
        assert!(matches!(e, Error::Archive { .. }) && msg(&e).contains("bad.npz"), "{e}");

        let mut a = raw_arrays(&d);
        a.retain(|x| x.0 != "actions");
        let e = load_err(&p, &a);
        assert!(matches!(e, Error::MissingArray { name: "actions", .. }), "{e}");
        assert!(msg(&e).contains("bad.npz") && msg(&e).contains("actions"), "{e}");
        // States and rewards are optional from version 2 on.
        let mut a = raw_arrays(&d);
        a.retain(|x| x.0 != "rewards" && x.0 != "states");
        let bytes = serde_json::to_vec(&DatasetMeta { state_names: Vec::new(), ..d.meta.clone() });
        let bytes = bytes.unwrap();
        *a.last_mut().unwrap() = ("meta", "|u1", vec![bytes.len() as u64], bytes);
        write_raw(&p, &a);
        let e = Dataset::load(&p).unwrap();
        assert!(!e.has_states() && e.rewards.is_empty() && e.images == d.images);

        let e = load_err(
            &p,
            &with(&d, "actions", |x| {
                x.1 = "<f8";
                x.3 = x
                    .3
                    .chunks(4)
                    .flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) as f64).to_le_bytes())
                    .collect();
            }),
        );
        assert!(matches!(e, Error::WrongDtype { name: "actions", .. }), "{e}");
        let e = load_err(&p, &with(&d, "images", |x| x.1 = "<i2"));
        assert!(matches!(e, Error::WrongDtype { name: "images", .. }), "{e}");
        let e = load_err(&p, &with(&d, "states", |x| x.1 = ">f8"));
        assert!(matches!(e, Error::WrongDtype { name: "states", .. }), "{e}");

        // Inconsistent N or T between arrays.
        let e = load_err(
            &p,
            &with(&d, "actions", |x| {
                x.2 = vec![5, 3, 1];
            }),
        );
        assert!(matches!(e, Error::WrongShape { name: "actions", .. }), "{e}");
        let e = load_err(
            &p,
            &with(&d, "rewards", |x| {
                x.2 = vec![1, 15];
            }),
        );
        assert!(matches!(e, Error::WrongShape { name: "rewards", .. }), "{e}");
        let e = load_err(
            &p,
            &with(&d, "states", |x| {
                x.2 = vec![3, 5, 2, 1];
            }),
        );
        assert!(matches!(e, Error::WrongShape { name: "states", .. }), "{e}");
        // Non-square or too small frames, wrong rank.
        let e = load_err(&p, &with(&d, "images", |x| x.2 = vec![3, 5, 4, 16]));
        assert!(matches!(e, Error::WrongShape { name: "images", .. }), "{e}");
        let e = load_err(&p, &with(&d, "images", |x| x.2 = vec![3, 20, 4, 4]));
        assert!(matches!(e, Error::WrongShape { name: "images", .. }), "{e}");
        let e = load_err(&p, &with(&d, "images", |x| x.2 = vec![15, 8, 8]));
        assert!(matches!(e, Error::WrongShape { name: "images", .. }), "{e}");
        // Shape promising more data than stored.
        let e = load_err(&p, &with(&d, "images", |x| x.2 = vec![3, 5, 8, 9]));
        assert!(matches!(e, Error::WrongShape { .. } | Error::CorruptArray { .. }), "{e}");
        let e = load_err(&p, &with(&d, "images", |x| x.2 = vec![30, 50, 80, 80]));
        assert!(matches!(e, Error::CorruptArray { name: "images", .. }), "{e}");
        // More data than the shape says.
        let e = load_err(&p, &with(&d, "rewards", |x| x.3.extend_from_slice(&[0; 4])));
        assert!(matches!(e, Error::CorruptArray { name: "rewards", .. }), "{e}");

        // Non-finite values.
        let e = load_err(
            &p,
            &with(&d, "states", |x| x.3[8 * 7..8 * 8].copy_from_slice(&f64::NAN.to_le_bytes())),
        );
        assert!(matches!(e, Error::NonFinite { name: "states", index: 7, .. }), "{e}");
        let e = load_err(
            &p,
            &with(&d, "actions", |x| x.3[..4].copy_from_slice(&f32::INFINITY.to_le_bytes())),
        );
        assert!(matches!(e, Error::NonFinite { name: "actions", index: 0, .. }), "{e}");
        let e = load_err(
            &p,
            &with(&d, "rewards", |x| x.3[4..8].copy_from_slice(&f32::NAN.to_le_bytes())),
        );
        assert!(matches!(e, Error::NonFinite { name: "rewards", index: 1, .. }), "{e}");

        // Metadata: not UTF-8, not JSON, no version, future version, disagreeing with arrays.
        let meta_case = |bytes: Vec<u8>| {
            load_err(
                &p,
                &with(&d, "meta", |x| {
                    x.2 = vec![bytes.len() as u64];
                    x.3 = bytes;
                }),
            )
        };
        let e = meta_case(vec![0xff, 0xfe]);
        assert!(matches!(e, Error::BadMeta { .. }) && msg(&e).contains("UTF-8"), "{e}");
        let e = meta_case(b"{not json".to_vec());
        assert!(matches!(e, Error::BadMeta { .. }) && msg(&e).contains("JSON"), "{e}");
        let e = meta_case(b"{}".to_vec());
        assert!(matches!(e, Error::BadMeta { .. }) && msg(&e).contains("format_version"), "{e}");
        let e = meta_case(br#"{"format_version": 3}"#.to_vec());
        assert!(matches!(e, Error::UnsupportedVersion { found: 3, supported: 2, .. }), "{e}");
        let e = meta_case(br#"{"format_version": 0}"#.to_vec());
        assert!(matches!(e, Error::UnsupportedVersion { found: 0, .. }), "{e}");
        let e = meta_case(br#"{"format_version": 1, "env": "Pendulum-v1"}"#.to_vec());
        assert!(matches!(e, Error::BadMeta { .. }), "{e}");
        let mut m = d.meta.clone();
        m.steps = 4;
        let e = meta_case(serde_json::to_vec(&m).unwrap());
        assert!(matches!(e, Error::BadMeta { .. }) && msg(&e).contains("T=4"), "{e}");
        let e = load_err(&p, &with(&d, "meta", |x| x.2 = vec![1, x.3.len() as u64]));
        assert!(matches!(e, Error::WrongShape { name: "meta", .. }), "{e}");
    }

    /// A file cut anywhere, or with any byte changed, is refused with an error (never a panic,
    /// never silently wrong data: zip's CRC-32 covers every array).
    #[test]
    fn truncated_or_corrupted_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.npz");
        let d = small();
        d.save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let p = dir.path().join("cut.npz");
        let n = bytes.len();
        let mut cuts: Vec<usize> =
            vec![0, 1, 4, 30, 100, n / 3, n / 2, n - 100, n - 22, n - 21, n - 1];
        cuts.extend((0..n).step_by(97));
        for cut in cuts {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = Dataset::load(&p).expect_err("truncated file must not load");
            assert!(e.to_string().contains("cut.npz"), "cut at {cut}: {e}");
        }
        // Flip one byte at a time across the whole file: an error, or (in bytes zip ignores, such
        // as timestamps and comments) exactly the original data.
        let mut refused = 0;
        for i in (0..n).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            std::fs::write(&p, &b).unwrap();
            match Dataset::load(&p) {
                Err(_) => refused += 1,
                Ok(e) => assert_eq!(e, d, "byte {i} changed the data silently"),
            }
        }
        assert!(refused > n / 7 / 2, "only {refused} corruptions detected");
    }
}
