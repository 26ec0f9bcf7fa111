//! The dataset file: one `.npz` archive that `numpy.load` opens as it is.
//!
//! ## Arrays (C order, little endian)
//! | name      | dtype | shape          | meaning                                              |
//! |-----------|-------|----------------|------------------------------------------------------|
//! | `images`  | `u1`  | `[N, T, S, S]` | frame `t` shows the state *before* action `t`         |
//! | `actions` | `<f4` | `[N, T, 1]`    | torque applied after frame `t` (unclipped policy output) |
//! | `states`  | `<f8` | `[N, T, 2]`    | `θ, θ̇` of frame `t` (θ not wrapped)                  |
//! | `rewards` | `<f4` | `[N, T]`       | reward of action `t`: `−cost(states[t], clip(actions[t]))` |
//! | `meta`    | `u1`  | `[bytes]`      | UTF-8 JSON, [`DatasetMeta`]                          |
//!
//! ## Reading it in Python
//! ```python
//! import json, numpy as np
//! d = np.load("pendulum.npz")
//! images, actions, states, rewards = d["images"], d["actions"], d["states"], d["rewards"]
//! meta = json.loads(d["meta"].tobytes())   # {"format_version": 1, "params": {...}, ...}
//! ```
//!
//! ## Guarantees
//! [`Dataset::save`] writes atomically (temporary file in the same folder, then rename), so a
//! failed or interrupted save never leaves a partial file under the final name nor destroys an
//! existing one. [`Dataset::load`] checks everything (arrays present, dtypes, shapes, consistent
//! `N`, `T`, `S` between arrays and metadata, finite values, format version, zip checksums) and
//! returns an [`Error`] naming the file and the problem; it never panics on a bad file.

use crate::pendulum::PendulumParams;
use crate::{Error, Result};
use npyz::WriterBuilder;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

/// The dataset format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The smallest image size the dataset (and so the collector) accepts.
pub const MIN_SIZE: usize = 8;

/// The self-description stored in the `meta` array as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The environment, `"Pendulum-v1"`.
    pub env: String,
    /// Its physical parameters.
    pub params: PendulumParams,
    /// The master seed of the collection.
    pub seed: u64,
    /// The collecting policy's self-description (its `describe()`), e.g. `"uniform:-2,2"`.
    pub policy: String,
    /// Number of episodes `N` in this file.
    pub episodes: usize,
    /// Steps per episode `T`.
    pub steps: usize,
    /// Image size `S` (frames are `S × S`).
    pub size: usize,
    /// Index, in the original collection, of this file's episode 0 (non-zero for the later part of
    /// a split): episode `i` here was generated with stream `first_episode + i`.
    pub first_episode: usize,
    /// How frames were drawn.
    pub renderer: RendererMeta,
    /// How episodes were seeded, in words.
    pub seeding: String,
    /// The writer, `"ekvae-envs <version>"`.
    pub generator: String,
}

/// Renderer settings recorded in the metadata (see [`crate::render`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RendererMeta {
    /// Rod length, pivot to tip centre, as a fraction of the image size.
    pub rod_length: f64,
    /// Rod width as a fraction of the image size.
    pub rod_width: f64,
    /// Orientation convention.
    pub orientation: String,
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

/// A collection of `episodes × steps` frames with their actions, true states and rewards.
///
/// Layout is row-major: `images[((ep·T + t)·S + y)·S + x]`, `actions[ep·T + t]`,
/// `states[(ep·T + t)·2 + {0: θ, 1: θ̇}]`, `rewards[ep·T + t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[N, T, S, S]` grayscale frames.
    pub images: Vec<u8>,
    /// `[N, T, 1]` torques.
    pub actions: Vec<f32>,
    /// `[N, T, 2]` states `θ, θ̇`.
    pub states: Vec<f64>,
    /// `[N, T]` rewards.
    pub rewards: Vec<f32>,
    /// `N`.
    pub episodes: usize,
    /// `T`.
    pub steps: usize,
    /// `S`.
    pub size: usize,
    /// The self-description.
    pub meta: DatasetMeta,
}

impl Dataset {
    /// Frame `t` of episode `ep`, `S × S` bytes.
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
        let f = self.size * self.size;
        let i = ep * self.steps + t;
        &self.images[i * f..(i + 1) * f]
    }

    /// The state `[θ, θ̇]` shown in frame `t` of episode `ep` (panics if out of range).
    pub fn state(&self, ep: usize, t: usize) -> [f64; 2] {
        assert!(ep < self.episodes && t < self.steps, "state ({ep}, {t}) out of range");
        let i = 2 * (ep * self.steps + t);
        [self.states[i], self.states[i + 1]]
    }

    /// The action applied after frame `t` of episode `ep` (panics if out of range).
    pub fn action(&self, ep: usize, t: usize) -> f32 {
        assert!(ep < self.episodes && t < self.steps, "action ({ep}, {t}) out of range");
        self.actions[ep * self.steps + t]
    }

    /// Check that the arrays have the lengths `N`, `T`, `S` imply, agree with the metadata,
    /// and hold finite values.
    pub fn check(&self) -> Result<()> {
        let (n, t, s) = (self.episodes, self.steps, self.size);
        if n == 0 || t == 0 || s < MIN_SIZE {
            return Err(Error::Inconsistent(format!(
                "need N ≥ 1, T ≥ 1, S ≥ {MIN_SIZE}; have N={n}, T={t}, S={s}"
            )));
        }
        let nt = n.checked_mul(t).ok_or_else(|| Error::Inconsistent("N·T overflows".into()))?;
        let lens = [
            ("images", self.images.len(), nt.checked_mul(s * s)),
            ("actions", self.actions.len(), Some(nt)),
            ("states", self.states.len(), nt.checked_mul(2)),
            ("rewards", self.rewards.len(), Some(nt)),
        ];
        for (name, have, want) in lens {
            if Some(have) != want {
                return Err(Error::Inconsistent(format!(
                    "{name} has {have} elements, N={n}, T={t}, S={s} need {want:?}"
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
        let (t, f) = (self.steps, self.size * self.size);
        let (a, b) = (range.start * t, range.end * t);
        let mut meta = self.meta.clone();
        meta.episodes = range.end - range.start;
        meta.first_episode = self.meta.first_episode + range.start;
        Ok(Dataset {
            images: self.images[a * f..b * f].to_vec(),
            actions: self.actions[a..b].to_vec(),
            states: self.states[2 * a..2 * b].to_vec(),
            rewards: self.rewards[a..b].to_vec(),
            episodes: meta.episodes,
            steps: t,
            size: self.size,
            meta,
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
        let meta = serde_json::to_vec(&self.meta)
            .map_err(|e| Error::BadMeta { path: path.into(), reason: e.to_string() })?;
        let (n, t, s) = (self.episodes as u64, self.steps as u64, self.size as u64);
        write_atomic(path, |w| {
            let mut npz = npyz::npz::NpzWriter::new(w);
            let written = (|| {
                write_array(&mut npz, "images", &[n, t, s, s], "|u1", &self.images, |v, out| {
                    out.push(*v)
                })?;
                write_array(&mut npz, "actions", &[n, t, 1], "<f4", &self.actions, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })?;
                write_array(&mut npz, "states", &[n, t, 2], "<f8", &self.states, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })?;
                write_array(&mut npz, "rewards", &[n, t], "<f4", &self.rewards, |v, out| {
                    out.extend_from_slice(&v.to_le_bytes())
                })?;
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
        for name in ["images", "actions", "states", "rewards", "meta"] {
            if !names.iter().any(|n| n == name) {
                let found =
                    if names.is_empty() { "no arrays".to_string() } else { names.join(", ") };
                return Err(Error::MissingArray { path: path.into(), name, found });
            }
        }
        let p = path;
        // Metadata first: its version decides how to read the rest.
        let (shape, bytes) = read_array(&mut npz, p, "meta", "|u1")?;
        expect_rank(p, "meta", &shape, 1, "[bytes]")?;
        let meta = parse_meta(p, &bytes)?;

        let (shape, images) = read_array(&mut npz, p, "images", "|u1")?;
        expect_rank(p, "images", &shape, 4, "[N, T, S, S]")?;
        let (n, t, h, w) = (shape[0], shape[1], shape[2], shape[3]);
        if h != w || h < MIN_SIZE as u64 || n == 0 || t == 0 {
            return Err(Error::WrongShape {
                path: p.into(),
                name: "images",
                expected: format!("[N, T, S, S] with N, T ≥ 1 and square frames S ≥ {MIN_SIZE}"),
                found: shape,
            });
        }
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
        check("actions", &shape, &[n, t, 1], "[N, T, 1]")?;
        let (shape, states) = read_array(&mut npz, p, "states", "<f8")?;
        check("states", &shape, &[n, t, 2], "[N, T, 2]")?;
        let (shape, rewards) = read_array(&mut npz, p, "rewards", "<f4")?;
        check("rewards", &shape, &[n, t], "[N, T]")?;

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
        Ok(Dataset { images, actions, states, rewards, episodes: n, steps: t, size: s, meta })
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
    if version != FORMAT_VERSION as u64 {
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
            params: PendulumParams::default(),
            seed: 11,
            policy: "uniform:-2,2".into(),
            episodes: n,
            steps: t,
            size: s,
            first_episode: 0,
            renderer: RendererMeta {
                rod_length: crate::render::ROD_LENGTH,
                rod_width: crate::render::ROD_WIDTH,
                orientation: "test".into(),
            },
            seeding: "test".into(),
            generator: "ekvae-envs test".into(),
        };
        Dataset { images, actions, states, rewards, episodes: n, steps: t, size: s, meta }
    }

    /// One array for [`write_raw`]: name, numpy dtype, shape, raw bytes.
    type Raw = (&'static str, &'static str, Vec<u64>, Vec<u8>);

    fn raw_arrays(d: &Dataset) -> Vec<Raw> {
        let (n, t, s) = (d.episodes as u64, d.steps as u64, d.size as u64);
        let le32 = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let le64 = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let meta = serde_json::to_vec(&d.meta).unwrap();
        vec![
            ("images", "|u1", vec![n, t, s, s], d.images.clone()),
            ("actions", "<f4", vec![n, t, 1], le32(&d.actions)),
            ("states", "<f8", vec![n, t, 2], le64(&d.states)),
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
        a.retain(|x| x.0 != "rewards");
        let e = load_err(&p, &a);
        assert!(matches!(e, Error::MissingArray { name: "rewards", .. }), "{e}");
        assert!(msg(&e).contains("bad.npz") && msg(&e).contains("rewards"), "{e}");

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
        let e = meta_case(br#"{"format_version": 2}"#.to_vec());
        assert!(matches!(e, Error::UnsupportedVersion { found: 2, supported: 1, .. }), "{e}");
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
