//! Export a trained run's weights for PyTorch: a safetensors file in the layout of a PyTorch
//! `state_dict` (what `ekvae export --pytorch RUN OUT` and the Python `ekvae.export_pytorch`
//! write).
//!
//! # Layout
//! Every tensor is `float32`. Names follow the Rust modules (`encoder.conv.weight`, …) and
//! shapes follow PyTorch:
//! - `nn.Linear` weights are `[out, in]` (burn stores `[in, out]`: transposed here), biases `[out]`;
//! - `nn.Conv2d` weights `[out, in, kh, kw]` and `nn.ConvTranspose2d` weights
//!   `[in, out, kh, kw]` (burn's layouts are the same);
//! - parameters the model stores before a softplus are exported transformed, as the model uses
//!   them: `observation.R_diag = softplus(r_raw) + 1e-4`, `prior.var = softplus(var_raw) + 1e-4`,
//!   `transition.Q_diag[k] = softplus(q_raw[k]) + 1e-4` (computed in f64, rounded to f32);
//! - the transition's bases are un-flattened: `transition.F` `[K, n, n]`, `transition.B`
//!   `[K, n, k]`.
//!
//! The file's `__metadata__` holds `format = "pt"`, `ekvae.config` (the model config as JSON),
//! `ekvae.epoch`, `ekvae.forward` (the forward pass in words, enough to rebuild the networks) and
//! `ekvae.tensors` (JSON: for every tensor its shape and meaning). See [`FORWARD`] and
//! [`describe`].
//!
//! Only EKVAE runs are exported; the RNN baseline's GRU is refused with one line.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::Device;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::ekvae::{Ekvae, Inference};
use crate::rundir::{RunDir, model_bytes, sorted_safetensors, write_atomic};
use crate::{Error, Result};

/// The forward pass in words (stored as `ekvae.forward` in the file's metadata).
pub const FORWARD: &str = "Frames x are [N, P, S, S] in [0, 1] (uint8 / 255), row-major, with P image channels \
(P = 1 for grayscale; a channels-last [S, S, P] frame transposed to its P planes). \
Encoder q(a|x): pixel-unshuffle by r = S/8 to [N, P*r*r, 8, 8] (channel p*r*r + i*r + j holds pixel (r*y + i, r*x + j) of plane p, \
i.e. torch.nn.functional.pixel_unshuffle(x, r)); h = relu(encoder.conv(., stride 2, padding 1)) -> [N, C, 4, 4]; \
flatten in C-order (channel, row, column) -> [N, 16*C]; h = relu(encoder.hidden(h)); out = encoder.head(h) -> [N, 2m]; \
mean = out[:, :m], log_var = out[:, m:]. \
Decoder p(x|a): h = relu(decoder.hidden(a)); h = relu(decoder.spatial(h)) reshaped to [N, C, 4, 4]; \
logits = decoder.deconv(h, stride 2, padding 1) -> [N, P*r*r, 8, 8]; pixel_shuffle by r -> [N, P, S, S]; \
Bernoulli means sigmoid(logits). \
Observation p(a|z) = N(H z, diag R_diag). Prior p(z_1) = N(prior.mean, diag prior.var). \
Transition p(z'|z, u) = N(F z + B u, diag Q) with alpha = softmax(transition.mix_out(tanh(transition.mix_hidden(cat[z, u])))), \
F = sum_k alpha_k F[k], B = sum_k alpha_k B[k], Q = sum_k alpha_k Q_diag[k].";

/// One exported tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedTensor {
    /// The PyTorch name, e.g. `encoder.hidden.weight`.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
    /// What it is.
    pub description: String,
}

/// How a burn tensor becomes a PyTorch one.
#[derive(Debug, Clone, Copy)]
enum Transform {
    /// Unchanged.
    Same,
    /// A Linear weight: `[in, out]` → `[out, in]`.
    Transpose,
    /// `softplus(x) + 1e-4`.
    Softplus,
    /// `[K, a·b]` → `[K, a, b]` with `b` = the given dimension's size.
    Unflatten,
}

/// The burn name, the PyTorch name, the transform and the meaning of every tensor.
fn table() -> Vec<(&'static str, &'static str, Transform, String)> {
    use Transform::*;
    let lin = |what: &str| format!("nn.Linear weight [out, in] of {what}");
    let bias = |what: &str| format!("nn.Linear bias [out] of {what}");
    vec![
        ("encoder.conv.weight", "encoder.conv.weight", Same, "nn.Conv2d weight [C, P*r*r, 3, 3], stride 2, padding 1, on the pixel-unshuffled frame [N, P*r*r, 8, 8]; ReLU after".into()),
        ("encoder.conv.bias", "encoder.conv.bias", Same, "nn.Conv2d bias [C]".into()),
        ("encoder.hidden.weight", "encoder.hidden.weight", Transpose, lin("the encoder's hidden layer (16*C -> hidden, ReLU after; input flattened (channel, row, column))")),
        ("encoder.hidden.bias", "encoder.hidden.bias", Same, bias("the encoder's hidden layer")),
        ("encoder.head.weight", "encoder.head.weight", Transpose, lin("the encoder's head (hidden -> 2m: mean then log-variance of q(a|x))")),
        ("encoder.head.bias", "encoder.head.bias", Same, bias("the encoder's head")),
        ("decoder.hidden.weight", "decoder.hidden.weight", Transpose, lin("the decoder's first layer (m -> hidden, ReLU after)")),
        ("decoder.hidden.bias", "decoder.hidden.bias", Same, bias("the decoder's first layer")),
        ("decoder.spatial.weight", "decoder.spatial.weight", Transpose, lin("the decoder's second layer (hidden -> 16*C, ReLU after, reshaped to [C, 4, 4])")),
        ("decoder.spatial.bias", "decoder.spatial.bias", Same, bias("the decoder's second layer")),
        ("decoder.deconv.weight", "decoder.deconv.weight", Same, "nn.ConvTranspose2d weight [C, P*r*r, 4, 4], stride 2, padding 1: Bernoulli logits [N, P*r*r, 8, 8] before the pixel shuffle".into()),
        ("decoder.deconv.bias", "decoder.deconv.bias", Same, "nn.ConvTranspose2d bias [P*r*r]".into()),
        ("observation.h", "observation.H", Same, "H [m, n] of p(a|z) = N(H z, diag R_diag)".into()),
        ("observation.r_raw", "observation.R_diag", Softplus, "diagonal of R [m] (softplus(r_raw) + 1e-4)".into()),
        ("prior.mean", "prior.mean", Same, "mean [n] of p(z_1)".into()),
        ("prior.var_raw", "prior.var", Softplus, "diagonal variance [n] of p(z_1) (softplus(var_raw) + 1e-4)".into()),
        ("transition.f_bases", "transition.F", Unflatten, "base matrices F_k [K, n, n] of the transition mean F z + B u".into()),
        ("transition.b_bases", "transition.B", Unflatten, "base matrices B_k [K, n, k]".into()),
        ("transition.q_bases", "transition.Q_diag", Softplus, "diagonal transition noise per base [K, n] (softplus(q_raw) + 1e-4); Q = sum_k alpha_k Q_diag[k]".into()),
        ("transition.mix_hidden.weight", "transition.mix_hidden.weight", Transpose, lin("the mixing network's hidden layer (n + k -> hidden, input cat[z, u], tanh after)")),
        ("transition.mix_hidden.bias", "transition.mix_hidden.bias", Same, bias("the mixing network's hidden layer")),
        ("transition.mix_out.weight", "transition.mix_out.weight", Transpose, lin("the mixing network's output (hidden -> K logits, softmax after: alpha)")),
        ("transition.mix_out.bias", "transition.mix_out.bias", Same, bias("the mixing network's output")),
    ]
}

/// `softplus(x) + 1e-4` in f64, as the model computes it.
fn softplus_plus(x: f32) -> f32 {
    let x = f64::from(x);
    let sp = if x > 20.0 { x } else { x.exp().ln_1p() };
    (sp + 1e-4) as f32
}

/// The model's weights in the PyTorch layout (see the module docs), in the order of the table.
pub fn pytorch_tensors(model: &Ekvae) -> Result<Vec<ExportedTensor>> {
    if model.inference() == Inference::Rnn {
        return Err(Error::InvalidSetting(
            "the PyTorch export supports EKVAE runs; this is the RNN-inference baseline (--model rnn)".into(),
        ));
    }
    let bytes = model_bytes(model)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Numerical(format!("cannot read the model's weights: {e}")))?;
    let (n, k) = (model.state_dim(), model.action_dim());
    let table = table();
    if let Some(extra) = st.names().into_iter().find(|name| !table.iter().any(|t| t.0 == *name)) {
        return Err(Error::Numerical(format!(
            "the model has a tensor {extra} that the PyTorch export does not know"
        )));
    }
    let mut out = Vec::with_capacity(table.len());
    for (burn_name, name, transform, description) in table {
        let view = st
            .tensor(burn_name)
            .map_err(|e| Error::Numerical(format!("the model's weights lack {burn_name}: {e}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::Numerical(format!(
                "{burn_name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape = view.shape().to_vec();
        let (shape, values) = match transform {
            Transform::Same => (shape, values),
            Transform::Softplus => (shape, values.into_iter().map(softplus_plus).collect()),
            Transform::Transpose => {
                let [rows, cols] = shape[..] else {
                    return Err(Error::Numerical(format!(
                        "{burn_name} is not a matrix: {shape:?}"
                    )));
                };
                let t = (0..rows * cols).map(|i| values[(i % rows) * cols + i / rows]).collect();
                (vec![cols, rows], t)
            }
            Transform::Unflatten => {
                let [bases, flat] = shape[..] else {
                    return Err(Error::Numerical(format!("{burn_name} is not [K, ·]: {shape:?}")));
                };
                let cols = if burn_name == "transition.f_bases" { n } else { k };
                if flat != n * cols {
                    return Err(Error::Numerical(format!(
                        "{burn_name} has {flat} values per base, expected {n}×{cols}"
                    )));
                }
                (vec![bases, n, cols], values)
            }
        };
        out.push(ExportedTensor { name: name.to_string(), shape, values, description });
    }
    Ok(out)
}

/// The safetensors bytes of `tensors` with the metadata of the module docs (byte-stable: the
/// header's keys are sorted).
pub fn safetensors_bytes(
    tensors: &[ExportedTensor],
    config_json: &str,
    epoch: usize,
) -> Result<Vec<u8>> {
    let raw: Vec<Vec<u8>> =
        tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, bytes) in tensors.iter().zip(&raw) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), bytes)
            .map_err(|e| Error::Numerical(format!("{}: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let described: BTreeMap<&str, serde_json::Value> = tensors
        .iter()
        .map(|t| {
            (t.name.as_str(), serde_json::json!({ "shape": t.shape, "description": t.description }))
        })
        .collect();
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("ekvae.config".to_string(), config_json.to_string()),
        ("ekvae.epoch".to_string(), epoch.to_string()),
        ("ekvae.forward".to_string(), FORWARD.to_string()),
        (
            "ekvae.tensors".to_string(),
            serde_json::to_string(&described).map_err(|e| Error::Numerical(e.to_string()))?,
        ),
    ]);
    let bytes = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| Error::Numerical(format!("cannot write safetensors: {e}")))?;
    sorted_safetensors(&bytes).map_err(Error::Numerical)
}

/// Loads the last checkpoint of the run in `run_dir` (digest-checked, as `ekvae eval` does)
/// and writes its weights as a PyTorch `state_dict` in safetensors to `out`, atomically.
/// Returns the number of tensors written.
pub fn export_pytorch(run_dir: &Path, out: &Path) -> Result<usize> {
    let run = RunDir::new(run_dir);
    let (config, state) = run.open()?;
    let model = run.load_model(&config, &state, &Device::flex())?;
    let tensors = pytorch_tensors(&model)?;
    let config_json =
        serde_json::to_string(&state.model).map_err(|e| Error::Numerical(e.to_string()))?;
    let bytes = safetensors_bytes(&tensors, &config_json, state.epoch)?;
    ekvae_envs::fsio::check_distinct(out, &[&run.config_path(), &run.state_path()])?;
    let weights = run_dir.join(&state.checkpoint).join(crate::rundir::MODEL_FILE);
    ekvae_envs::fsio::check_distinct(out, &[&weights])?;
    write_atomic(out, &bytes)?;
    Ok(tensors.len())
}

/// The description of every tensor of an exported file, `name → (shape, meaning)`, read from
/// its metadata (`None` if the file has no `ekvae.tensors`).
pub fn describe(bytes: &[u8]) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Numerical(format!("not a safetensors file: {e}")))?;
    let Some(text) = meta.metadata().as_ref().and_then(|m| m.get("ekvae.tensors")) else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| Error::Numerical(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EkvaeConfig;
    use burn::tensor::Tensor;

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn model() -> Ekvae {
        let cfg = EkvaeConfig::new().with_image_size(16).with_channels(4).with_hidden(8);
        cfg.init_seeded(&Device::flex(), 3).unwrap()
    }

    /// Every tensor is there once, with PyTorch's shapes; Linear weights are the transposes of
    /// burn's, softplus parameters are transformed, bases are un-flattened.
    #[test]
    fn layout_is_pytorch_state_dict() {
        let m = model();
        let t = pytorch_tensors(&m).unwrap();
        let get =
            |name: &str| t.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(t.len(), 23);
        assert_eq!(get("encoder.conv.weight").shape, [4, 4, 3, 3]);
        assert_eq!(get("encoder.hidden.weight").shape, [8, 64]);
        assert_eq!(get("encoder.head.weight").shape, [4, 8]);
        assert_eq!(get("decoder.deconv.weight").shape, [4, 4, 4, 4]);
        assert_eq!(get("transition.F").shape, [8, 3, 3]);
        assert_eq!(get("transition.B").shape, [8, 3, 1]);
        assert_eq!(get("transition.mix_hidden.weight").shape, [32, 4]);
        // Transpose: torch[o][i] = burn[i][o].
        let burn_w = vals(m.transition.mix_hidden.weight.val()); // [4, 32]
        let torch_w = &get("transition.mix_hidden.weight").values; // [32, 4]
        for i in 0..4 {
            for o in 0..32 {
                assert_eq!(torch_w[o * 4 + i], burn_w[i * 32 + o]);
            }
        }
        // The softplus parameters are what the model uses.
        let r = vals(m.observation.emission().r_diag);
        for (a, b) in get("observation.R_diag").values.iter().zip(&r) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let pv = vals(m.prior.prior().var);
        for (a, b) in get("prior.var").values.iter().zip(&pv) {
            assert!((a - b).abs() < 1e-6);
        }
        // F bases row-major: F[k][i][j] = f_bases[k][i·n + j].
        assert_eq!(get("transition.F").values, vals(m.transition.f_bases.val()));
        // Names are unique.
        let mut names: Vec<_> = t.iter().map(|x| x.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 23);
    }

    /// The file reads back with the safetensors reader: names, shapes, values, metadata; and
    /// identical weights give identical bytes.
    #[test]
    fn file_round_trips_and_is_byte_stable() {
        let m = model();
        let t = pytorch_tensors(&m).unwrap();
        let bytes = safetensors_bytes(&t, "{}", 7).unwrap();
        assert_eq!(bytes, safetensors_bytes(&t, "{}", 7).unwrap());
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for x in &t {
            let v = st.tensor(&x.name).unwrap();
            assert_eq!(v.shape(), x.shape.as_slice());
            let back: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(back, x.values);
        }
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["format"], "pt");
        assert_eq!(meta["ekvae.epoch"], "7");
        let d = describe(&bytes).unwrap().unwrap();
        assert_eq!(d.len(), 23);
        assert_eq!(d["encoder.head.weight"]["shape"], serde_json::json!([4, 8]));
    }

    /// The RNN baseline is refused with one line.
    #[test]
    fn refuses_the_rnn_baseline() {
        let cfg = EkvaeConfig::new()
            .with_image_size(8)
            .with_channels(2)
            .with_hidden(4)
            .with_inference(Inference::Rnn)
            .with_rnn_hidden(4);
        let m = cfg.init_seeded(&Device::flex(), 0).unwrap();
        let err = pytorch_tensors(&m).unwrap_err().to_string();
        assert!(err.contains("RNN-inference baseline"), "{err}");
    }

    /// The committed run exports; bad runs are refused with one line naming the problem.
    #[test]
    fn exports_the_committed_run_and_refuses_bad_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/pixmpc-model");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("w.safetensors");
        assert_eq!(export_pytorch(&root, &out).unwrap(), 23);
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("encoder.conv.weight").unwrap().shape(), [32, 4, 3, 3]);
        let err = export_pytorch(&dir.path().join("missing"), &out).unwrap_err().to_string();
        assert!(err.contains("does not exist") && !err.contains('\n'), "{err}");
        let err = export_pytorch(dir.path(), &out).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
    }
}
