//! Trained runs: `load_run(dir)` → [`Run`]: encode frames, filter and smooth a sequence,
//! predict open loop, decode latents, and the pixel MPC controller ([`Controller`]).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use ekvae_model::kalman;
use ekvae_model::train::{RunDir, TrainConfig};
use ekvae_model::{Ekvae, Inference};
use numpy::PyArrayDyn;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::arrays::{array, data, input, input_u8, py_shape, shape};
use crate::errors::{IntoPy, to_py, value_error};

/// Values of a burn tensor as `f32`.
fn values<const D: usize>(t: Tensor<D>) -> PyResult<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| crate::errors::EkvaeError::new_err(format!("cannot read a tensor: {e:?}")))
}

/// `lead` followed by `[s, s]`.
fn shape_of(lead: &[usize], frame: &[usize]) -> Vec<usize> {
    let mut v = lead.to_vec();
    v.extend(frame);
    v
}

/// The shape of one frame as Python sees it: `(S, S)` for grayscale, `(S, S, C)` (channels last,
/// as Gymnasium's image observations) for C > 1.
fn frame_shape(s: usize, c: usize) -> Vec<usize> {
    if c == 1 { vec![s, s] } else { vec![s, s, c] }
}

/// A trained run (the last checkpoint of a run directory made by `ekvae train`), on the CPU.
#[pyclass(module = "ekvae._ekvae", unsendable)]
pub struct Run {
    model: Ekvae,
    config: TrainConfig,
    epoch: usize,
    dir: PathBuf,
    device: Device,
}

/// Loads the run in `path` (config, `state.json`, digest-checked weights), refusing a damaged
/// or foreign run with the message `ekvae eval --run` prints.
#[pyfunction]
pub fn load_run(path: PathBuf) -> PyResult<Run> {
    let run = RunDir::new(&path);
    let (config, state) = run.open().py()?;
    let device = Device::flex();
    let model = run.load_model(&config, &state, &device).py()?;
    Ok(Run { model, config, epoch: state.epoch, dir: path, device })
}

impl Run {
    /// The shape of one frame: `(S, S)`, or `(S, S, C)` for C > 1 channels.
    fn frame_shape(&self) -> Vec<usize> {
        frame_shape(self.model.image_size(), self.model.image_channels())
    }

    /// Frames `uint8 [..., S, S]` (`[..., S, S, C]` for C > 1 channels) as a float tensor
    /// `[N, C·S, S]` in [0, 1] (the channel planes stacked), and the leading shape.
    fn frames(&self, frames: &Bound<'_, PyAny>, what: &str) -> PyResult<(Tensor<3>, Vec<usize>)> {
        let (s, c) = (self.model.image_size(), self.model.image_channels());
        let want = self.frame_shape();
        let a = input_u8(frames, what)?;
        let sh = shape(&a);
        if sh.len() < want.len() || sh[sh.len() - want.len()..] != want[..] {
            return Err(value_error(format!(
                "{what} have shape {}; the model takes {s}×{s} frames of {c} channel(s) (shape (..., {}))",
                py_shape(&sh),
                want.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        let lead = sh[..sh.len() - want.len()].to_vec();
        let n: usize = lead.iter().product();
        if n == 0 {
            return Err(value_error(format!("{what}: no frames")));
        }
        let mut x = Vec::with_capacity(n * s * s * c);
        for frame in data(&a)?.chunks_exact(s * s * c) {
            ekvae_model::data::frame_planes(frame, c, &mut x);
        }
        Ok((Tensor::from_data(TensorData::new(x, [n, c * s, s]), &self.device), lead))
    }

    /// Decoded frames `[.., C·S, S]` (stacked planes) as Python's frames: channels last.
    fn frames_out(&self, v: Vec<f32>) -> Vec<f32> {
        let s = self.model.image_size();
        ekvae_model::data::channels_last(&v, self.model.image_channels(), s * s)
    }

    /// Torques as `[1, len, 1]` (from `[len]` or `[len, 1]`).
    fn actions(&self, actions: &Bound<'_, PyAny>, len: usize, what: &str) -> PyResult<Tensor<3>> {
        let a = input::<f64>(actions, what)?;
        let sh = shape(&a);
        if !(sh == [len] || sh == [len, 1]) {
            return Err(value_error(format!(
                "{what} have shape {}; expected ({len},) or ({len}, 1)",
                py_shape(&sh)
            )));
        }
        let u = data(&a)?;
        if let Some(i) = u.iter().position(|v| !v.is_finite()) {
            return Err(value_error(format!("{what}[{i}] = {} is not finite", u[i])));
        }
        let u: Vec<f32> = u.iter().map(|&v| v as f32).collect();
        Ok(Tensor::from_data(TensorData::new(u, [1, len, 1]), &self.device))
    }

    fn kalman_only(&self, what: &str) -> PyResult<()> {
        if self.model.inference() == Inference::Rnn {
            return Err(value_error(format!(
                "{what} needs the EKVAE's Kalman filter; this run is the RNN-inference baseline (--model rnn)"
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl Run {
    /// The run directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }
    /// Side S of the frames the model takes.
    #[getter]
    fn image_size(&self) -> usize {
        self.model.image_size()
    }
    /// Channels C per pixel of the frames the model takes (1: grayscale frames `(S, S)`;
    /// otherwise `(S, S, C)`).
    #[getter]
    fn image_channels(&self) -> usize {
        self.model.image_channels()
    }
    /// Dimension n of the latent state z.
    #[getter]
    fn state_dim(&self) -> usize {
        self.model.state_dim()
    }
    /// Dimension m of the auxiliary observation a.
    #[getter]
    fn aux_dim(&self) -> usize {
        self.model.aux_dim()
    }
    /// Dimension of the action.
    #[getter]
    fn action_dim(&self) -> usize {
        self.model.action_dim()
    }
    /// Epoch of the loaded checkpoint.
    #[getter]
    fn epoch(&self) -> usize {
        self.epoch
    }
    /// `"ekvae"` or `"rnn"`.
    #[getter]
    fn inference(&self) -> &'static str {
        self.model.inference().model_name()
    }
    /// The run's `config.toml` text (every setting of the run).
    #[getter]
    fn config_toml(&self) -> String {
        self.config.to_toml()
    }

    fn __repr__(&self) -> String {
        format!(
            "Run({:?}, epoch={}, image_size={}, state_dim={}, inference={:?})",
            self.dir.display().to_string(),
            self.epoch,
            self.model.image_size(),
            self.model.state_dim(),
            self.model.inference().model_name()
        )
    }

    /// The encoder q(a | x): mean and log-variance, `float32 [..., m]` each, of frames
    /// `uint8 [..., S, S]` (`[..., S, S, C]` for a model of C > 1 channels, as everywhere
    /// below).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Bound<'py, PyArrayDyn<f32>>)> {
        let (x, lead) = self.frames(frames, "frames")?;
        let (mean, log_var) = self.model.encoder.forward(x);
        let mut sh = lead;
        sh.push(self.model.aux_dim());
        Ok((array(py, values(mean)?, &sh)?, array(py, values(log_var)?, &sh)?))
    }

    /// The extended Kalman filter (and with `smooth=True` the RTS smoother) over one sequence:
    /// frames `uint8 [T, S, S]` and the torques `[T]` applied after each frame (the last one
    /// is not used). Returns a dict of float32 arrays: `mean` `[T, n]` and `cov` `[T, n, n]`
    /// (filtered: given frames 0..t), `mean_pred`/`cov_pred` (given frames 0..t−1),
    /// `log_likelihood` (of the encoder means), and with `smooth` `mean_smooth`/`cov_smooth`.
    #[pyo3(signature = (frames, actions, smooth = false))]
    fn filter<'py>(
        &self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
        actions: &Bound<'py, PyAny>,
        smooth: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.kalman_only("filter")?;
        let (x, lead) = self.frames(frames, "frames")?;
        let [t] = lead[..] else {
            return Err(value_error(format!(
                "frames have shape {}; filter takes one sequence (T, S, S)",
                py_shape(&shape_of(&lead, &self.frame_shape()))
            )));
        };
        let u = self.actions(actions, t, "actions")?;
        let (n, m) = (self.model.state_dim(), self.model.aux_dim());
        let (a_mean, _) = self.model.encoder.forward(x);
        let a_mean = a_mean.reshape([1, t, m]);
        let prior = self.model.prior.prior();
        let emission = self.model.observation.emission();
        let f = kalman::filter(&prior, &self.model.transition, &emission, a_mean, u).py()?;
        let out = PyDict::new(py);
        if smooth {
            let s = kalman::smooth(&f).py()?;
            out.set_item("mean_smooth", array(py, values(s.mean_smooth)?, &[t, n])?)?;
            out.set_item("cov_smooth", array(py, values(s.cov_smooth)?, &[t, n, n])?)?;
        }
        out.set_item("mean", array(py, values(f.mean_filt)?, &[t, n])?)?;
        out.set_item("cov", array(py, values(f.cov_filt)?, &[t, n, n])?)?;
        out.set_item("mean_pred", array(py, values(f.mean_pred)?, &[t, n])?)?;
        out.set_item("cov_pred", array(py, values(f.cov_pred)?, &[t, n, n])?)?;
        out.set_item("log_likelihood", values(f.log_likelihood)?[0])?;
        Ok(out)
    }

    /// Open-loop prediction: condition on frames `uint8 [K, S, S]`, then roll the transition
    /// mean forward. `actions` `[K − 1 + H]`: `actions[t]` is applied after frame t, so the
    /// first K − 1 drive the conditioning frames and the last H the prediction. Returns
    /// `(latents float32 [H, n], frames float32 [H, S, S])`: the predicted states for frames
    /// K … K + H − 1 and the decoder's Bernoulli means for them.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        frames: &Bound<'py, PyAny>,
        actions: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (x, lead) = self.frames(frames, "frames")?;
        let [k] = lead[..] else {
            return Err(value_error(format!(
                "frames have shape {}; predict takes one sequence (K, S, S)",
                py_shape(&shape_of(&lead, &self.frame_shape()))
            )));
        };
        let a = input::<f64>(actions, "actions")?;
        let len = data(&a)?.len();
        if len < k {
            return Err(value_error(format!(
                "{len} actions for {k} frames: give K − 1 + H actions (H ≥ 1 steps to predict)"
            )));
        }
        let horizon = len - k + 1;
        let u = self.actions(actions, len, "actions")?;
        let (s, n, c) =
            (self.model.image_size(), self.model.state_dim(), self.model.image_channels());
        let x = x.reshape([1, k, c * s, s]);
        let z0 = self.model.condition(x, u.clone().narrow(1, 0, k)).py()?;
        let z = self.model.rollout(z0, u.narrow(1, k - 1, horizon));
        let decoded = self.model.decode_mean(z.clone());
        let latents = array(py, values(z)?, &[horizon, n])?;
        let images = array(
            py,
            self.frames_out(values(decoded)?),
            &shape_of(&[horizon], &self.frame_shape()),
        )?;
        PyTuple::new(py, [latents.into_any(), images.into_any()])
    }

    /// The decoder's Bernoulli means σ(logits) at a = H z for latents `[..., n]`:
    /// `float32 [..., S, S]` (`[..., S, S, C]`) in (0, 1).
    fn decode<'py>(
        &self,
        py: Python<'py>,
        z: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let a = input::<f64>(z, "z")?;
        let sh = shape(&a);
        let n = self.model.state_dim();
        if sh.last() != Some(&n) {
            return Err(value_error(format!("z has shape {}; expected (..., {n})", py_shape(&sh))));
        }
        let count: usize = sh[..sh.len() - 1].iter().product();
        let v: Vec<f32> = data(&a)?.iter().map(|&x| x as f32).collect();
        let z = Tensor::<3>::from_data(TensorData::new(v, [1, count, n]), &self.device);
        let img = self.model.decode_mean(z);
        let out = shape_of(&sh[..sh.len() - 1], &self.frame_shape());
        array(py, self.frames_out(values(img)?), &out)
    }

    /// The pixel MPC controller of `ekvae mpc --run RUN_DIR`, with its defaults; keyword
    /// options are that command's flags (`horizon`, `iterations`, `replan_every`,
    /// `multistart_iterations`, `random_starts`, `no_short_horizon_start`, `terminal_weight`,
    /// `warm_start` ("controls" or "feedback"), `jacobians` ("exact" or "local"), `state_weight`,
    /// `control_weight`, `goal_steps`, `seed`).
    #[pyo3(signature = (**options))]
    fn controller(&self, options: Option<&Bound<'_, PyDict>>) -> PyResult<Controller> {
        let mut flags = Vec::new();
        if let Some(opts) = options {
            for (k, v) in opts.iter() {
                let name: String = k.extract()?;
                if v.is_none() {
                    continue;
                }
                if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
                    if b.is_true() {
                        flags.push((name, None));
                    }
                    continue;
                }
                flags.push((name, Some(v.str()?.to_string())));
            }
        }
        let inner = crate::control::Controller::new(
            self.model.clone(),
            self.config.clone(),
            self.epoch,
            &self.dir.display().to_string(),
            &flags,
        )
        .map_err(|e| {
            if e.downcast_ref::<ekvae_model::Error>().is_some() {
                to_py(e)
            } else {
                value_error(format!("{e:#}"))
            }
        })?;
        Ok(Controller { inner, last: None })
    }
}

/// The pixel MPC of `ekvae mpc --run RUN_DIR`: each frame goes through the encoder and one
/// EKF step (with the action this controller returned for the previous frame), then iLQR
/// plans on the learned latent dynamics towards the latent of the run's environment's goal
/// (the pendulum or the cart-pole's pole upright at rest).
#[pyclass(module = "ekvae._ekvae", unsendable)]
pub struct Controller {
    inner: crate::control::Controller,
    last: Option<crate::control::Action>,
}

#[pymethods]
impl Controller {
    /// The action for `frame` (`uint8 [S, S]`, or `[S, S, C]`; the model's size): the pendulum's torque, the
    /// cart-pole's force in units of 10 N. Call `reset()` at the start of every episode;
    /// between calls the action returned must be the one applied.
    fn policy(&mut self, frame: &Bound<'_, PyAny>) -> PyResult<f64> {
        let (s, c) = (self.inner.image_size(), self.inner.image_channels());
        let a = input_u8(frame, "frame")?;
        if shape(&a) != frame_shape(s, c) {
            return Err(value_error(format!(
                "frame has shape {}; the model takes {s}×{s} frames of {c} channel(s), shape {} (make the env with size={s})",
                py_shape(&shape(&a)),
                py_shape(&frame_shape(s, c))
            )));
        }
        let action = self.inner.act(data(&a)?).map_err(|e| to_py(e.context("planning failed")))?;
        let u = action.u;
        self.last = Some(action);
        Ok(u)
    }

    /// `policy(frame)`.
    fn __call__(&mut self, frame: &Bound<'_, PyAny>) -> PyResult<f64> {
        self.policy(frame)
    }

    /// Starts a new episode.
    fn reset(&mut self) {
        self.inner.reset();
        self.last = None;
    }

    /// The filter's belief after the last frame: `(mean float64 [n], cov float64 [n, n])`,
    /// or None before the first frame.
    #[getter]
    fn belief<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some((mean, cov)) = self.inner.belief() else { return Ok(None) };
        let n = mean.len();
        let m = array(py, mean, &[n])?.into_any();
        let c = array(py, cov, &[n, n])?.into_any();
        Ok(Some(PyTuple::new(py, [m, c])?))
    }

    /// The filtered latent the last plan started from, `float64 [n]`, or None.
    #[getter]
    fn last_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArrayDyn<f64>>>> {
        let Some(a) = &self.last else { return Ok(None) };
        let n = a.state.len();
        Ok(Some(array(py, a.state.clone(), &[n])?))
    }

    /// iLQR iterations of the last step.
    #[getter]
    fn last_iterations(&self) -> Option<usize> {
        self.last.as_ref().map(|a| a.iterations)
    }

    /// The goal latent (the upright pendulum at rest), `float64 [n]`.
    #[getter]
    fn goal<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let g = self.inner.goal().to_vec();
        let n = g.len();
        array(py, g, &[n])
    }

    /// The planning horizon in steps.
    #[getter]
    fn horizon(&self) -> usize {
        self.inner.horizon()
    }

    /// Side S of the frames it takes.
    #[getter]
    fn image_size(&self) -> usize {
        self.inner.image_size()
    }

    /// Channels C per pixel of the frames it takes (1: `(S, S)`; otherwise `(S, S, C)`).
    #[getter]
    fn image_channels(&self) -> usize {
        self.inner.image_channels()
    }
}
