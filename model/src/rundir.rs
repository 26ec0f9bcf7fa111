//! The run directory and its one owner, [`RunDir`]: it creates, validates, locks and reads run
//! directories, writes the config, the metrics rows, the checkpoints and `state.json`, knows the
//! `metrics.csv` schema once ([`EpochRow`]), and is the only place that decides whether `train`
//! starts a fresh run, continues one, restarts one that never finished an epoch, or refuses.
//!
//! # Layout
//! - `config.toml`: the complete [`TrainConfig`] (every field written out; reading it back is
//!   strict: a missing or empty field is an error, see [`TrainConfig::from_run_toml`]);
//! - `metrics.csv`: one row per finished epoch, header and columns from [`EpochRow`];
//! - `checkpoints/epoch-NNNN/{model.safetensors, optimizer.bpk}`: weights (safetensors, header
//!   keys sorted, so identical weights give identical bytes) and Adam state (burnpack, tensors
//!   sorted by name);
//! - `state.json`: the last finished epoch, its checkpoint folder, the λ schedule, the model
//!   config and optimizer the checkpoint belongs to, the size and SHA-256 of each checkpoint
//!   file, and the exact bits of every float in it (so λ and D̂ resume bit for bit);
//! - `.lock`: held (an OS file lock, released when the process dies) while `train` writes.
//!
//! # Invariants
//! - Every file is written by [`write_atomic`] (temporary sibling, fsync, rename); a crash at
//!   any moment leaves the previous consistent state. `state.json` is replaced only after the
//!   checkpoint folder is complete, so it always names a complete checkpoint; older checkpoint
//!   folders are removed afterwards. Temporary files of dead processes are removed when the run
//!   directory is opened for training.
//! - A checkpoint file is loaded only if its size and SHA-256 match `state.json`, and only into
//!   a model built from the config recorded there, which must equal `config.toml`'s.
//! - An epoch is logged and checkpointed only if its training loss and its validation −ELBO
//!   are finite.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::AdamConfig;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::ekvae::{Ekvae, EkvaeConfig};
use crate::objective::LambdaSchedule;
use crate::train::{EpochRow, TrainConfig, Trainer};
use crate::{Error, Result};

/// The `state.json` format this build writes and reads.
pub const STATE_FORMAT: u32 = 2;
/// The weights file of a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer-state file of a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

fn checkpoint_err(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.into(), message: one_line(&message.into()) }
}

/// A message on one line: line breaks become "; ", runs of blanks one space, at most 300 chars.
pub fn one_line(text: &str) -> String {
    let joined = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    let s = joined.join("; ");
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// Write `bytes` to `path` with the workspace's one atomic-write function
/// ([`ekvae_envs::fsio::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ekvae_envs::fsio::write_atomic(path, |w| w.write_all(bytes)).map_err(Error::from)
}

/// Size and SHA-256 of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        let hash = sha2::Sha256::digest(data);
        Self { bytes: data.len() as u64, sha256: hash.iter().map(|b| format!("{b:02x}")).collect() }
    }
}

/// The optimizer a checkpoint's `optimizer.bpk` belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerInfo {
    /// Always `adam`.
    pub kind: String,
    /// Parameter tensors of the model it optimises.
    pub parameters: usize,
    /// State tensors in the file.
    pub state_tensors: usize,
}

/// What a run directory's `state.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Completed epochs.
    pub epoch: usize,
    /// The checkpoint folder of that epoch, relative to the run directory.
    pub checkpoint: String,
    /// The λ schedule after that epoch.
    pub schedule: LambdaSchedule,
    /// The model config the checkpoint's weights belong to.
    pub model: EkvaeConfig,
    /// The optimizer its optimizer state belongs to (absent for a weights-only export).
    pub optimizer: Option<OptimizerInfo>,
    /// Size and SHA-256 of each file of the checkpoint folder, by file name.
    pub files: BTreeMap<String, FileDigest>,
}

fn collect_floats(v: &serde_json::Value, ptr: &str, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            out.insert(ptr.to_string(), format!("{:016x}", n.as_f64().unwrap_or(0.0).to_bits()));
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                collect_floats(v, &format!("{ptr}/{key}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_floats(v, &format!("{ptr}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Rebuild every object with its keys inserted in sorted order (stable output whatever the
/// map type).
fn sort_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sort_keys).collect())
        }
        other => other,
    }
}

impl RunState {
    /// `state.json`'s text. Besides the fields, an `exact` object holds the bits (hex) of every
    /// float, by JSON pointer: serde_json reads decimal numbers back only approximately (it is
    /// built without `float_roundtrip`), these bits make a resume bit-exact.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a RunState serialises");
        let mut exact = BTreeMap::new();
        collect_floats(&value, "", &mut exact);
        value["exact"] = serde_json::to_value(exact).expect("a map serialises");
        let mut text = serde_json::to_string_pretty(&sort_keys(value)).expect("serialisable");
        text.push('\n');
        text
    }

    /// Parse `state.json`'s text; every float gets its exact recorded bits.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(STATE_FORMAT)) {
            return Err(match format {
                None => "written by an older ekvae (no format, no checkpoint digests); retrain the run, or resume it with the ekvae that made it".into(),
                Some(f) => format!("state format {f}, but this build reads format {STATE_FORMAT}"),
            });
        }
        let exact: BTreeMap<String, String> = match value
            .as_object_mut()
            .and_then(|m| m.remove("exact"))
        {
            Some(e) => serde_json::from_value(e).map_err(|e| format!("exact: {e}"))?,
            None => {
                return Err("no `exact` float bits; the file was edited or is incomplete".into());
            }
        };
        for (ptr, hex) in &exact {
            let bits = u64::from_str_radix(hex, 16)
                .map_err(|_| format!("exact{ptr}: `{hex}` is not 16 hex digits"))?;
            let x = f64::from_bits(bits);
            let slot = value
                .pointer_mut(ptr)
                .ok_or_else(|| format!("exact names {ptr}, which is missing"))?;
            let shown = slot.as_f64().ok_or_else(|| format!("{ptr} is not a number"))?;
            // The printed number may come back one ulp off; anything more is an edit.
            if (shown - x).abs() > 1e-12 * x.abs().max(1e-300) {
                return Err(format!(
                    "{ptr} = {shown} disagrees with its exact bits ({x}); the file was edited"
                ));
            }
            *slot = serde_json::Number::from_f64(x)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("{ptr} is not finite"))?;
        }
        // Model fields added after runs were made take their defaults, as in config.toml
        // ([`crate::train::ADDED_LATER`]): a state without `image_channels` is grayscale.
        if let Some(model) = value.get_mut("model").and_then(serde_json::Value::as_object_mut) {
            let defaults = serde_json::to_value(EkvaeConfig::new()).map_err(|e| e.to_string())?;
            for field in crate::train::ADDED_LATER.iter().filter_map(|f| f.strip_prefix("model.")) {
                if let Some(v) = defaults.get(field) {
                    model.entry(field).or_insert_with(|| v.clone());
                }
            }
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// The model weights as safetensors bytes with the header's keys sorted (byte-stable).
pub fn model_bytes(model: &Ekvae) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| Error::Numerical(format!("cannot serialise the model weights: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::Numerical(format!("cannot serialise the model weights: {e}")))?;
    sorted_safetensors(&bytes).map_err(Error::Numerical)
}

/// Re-emit a safetensors file with its JSON header's keys (metadata included) sorted.
pub fn sorted_safetensors(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let bad = || "not a safetensors file".to_string();
    let n = u64::from_le_bytes(bytes.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let end = usize::try_from(n).ok().and_then(|n| n.checked_add(8)).ok_or_else(bad)?;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..end).ok_or_else(bad)?).map_err(|e| e.to_string())?;
    let mut h = serde_json::to_vec(&sort_keys(header)).map_err(|e| e.to_string())?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + bytes.len() - end);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// The optimizer state as burnpack bytes with its tensors sorted by name (byte-stable), and
/// the number of state tensors.
fn optimizer_bytes(trainer: &Trainer) -> Result<(Vec<u8>, usize)> {
    use burn::store::burn_pack::{Reader, Writer};
    let err = |e: String| Error::Numerical(format!("cannot serialise the optimizer state: {e}"));
    let raw = trainer.optim.into_bytes().map_err(|e| err(format!("{e:?}")))?;
    let reader = Reader::from_bytes(raw).map_err(|e| err(e.to_string()))?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().map_err(|e| err(e.to_string()))?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let count = tensors.len();
    let mut writer = Writer::new(tensors);
    for (k, v) in &scalars {
        writer = writer.with_scalar(k, *v);
    }
    for (k, v) in &metadata {
        writer = writer.with_metadata(k, v);
    }
    let bytes = writer.into_bytes().map_err(|e| err(e.to_string()))?;
    Ok((bytes.to_vec(), count))
}

fn count_params(model: &Ekvae) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(
            &mut self,
            _param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0 += 1;
        }
    }
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Load weights (safetensors bytes) into a model built from `config`, checking that every
/// tensor is present with the right shape. `path` names the file in errors.
pub fn load_model_bytes(
    config: &EkvaeConfig,
    bytes: Vec<u8>,
    path: &Path,
    device: &Device,
) -> Result<Ekvae> {
    let mut model = config.init(device)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(false).validate(true);
    let result = model.load_from(&mut store).map_err(|e| {
        checkpoint_err(
            path,
            match e {
                burn::store::SafetensorsStoreError::ValidationFailed(detail) => format!(
                    "the weights do not fit the model config ({}); the checkpoint and the config come from different runs",
                    one_line(&detail).chars().take(160).collect::<String>()
                ),
                other => format!(
                    "not readable as safetensors weights ({}); restore the file or retrain",
                    one_line(&other.to_string()).chars().take(160).collect::<String>()
                ),
            },
        )
    })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        let detail = result
            .errors
            .iter()
            .map(|e| format!("{e:?}"))
            .chain(result.missing.iter().map(|(p, _)| format!("missing {p}")))
            .chain(result.unused.iter().map(|p| format!("unexpected {p}")))
            .take(3)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(checkpoint_err(
            path,
            format!("the weights do not fit the model config ({detail})"),
        ));
    }
    Ok(model)
}

/// Load a weights file saved by [`RunDir::save_checkpoint`] into a model built from `config`
/// (no digest check: use [`RunDir::load_model`] for a run's checkpoint).
pub fn load_model_file(config: &EkvaeConfig, path: &Path, device: &Device) -> Result<Ekvae> {
    let bytes = fs::read(path)
        .map_err(|e| checkpoint_err(path, format!("cannot read the checkpoint file ({e})")))?;
    load_model_bytes(config, bytes, path, device)
}

/// The columns every `metrics.csv` has had since the first version; columns added to
/// [`EpochRow`] later may be absent from older files (they read as their defaults).
pub const FIRST_METRICS_COLUMNS: [&str; 7] =
    ["epoch", "lambda", "D", "R", "neg_elbo", "val_neg_elbo", "seconds"];

/// The header line of `metrics.csv`, derived from [`EpochRow`].
pub fn metrics_header() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(EpochRow::default()).expect("an EpochRow serialises");
    let bytes = w.into_inner().expect("in memory");
    String::from_utf8_lossy(&bytes).lines().next().unwrap_or_default().to_string()
}

/// `metrics.csv`'s text for `rows` (header from [`EpochRow`]).
pub fn metrics_text(rows: &[EpochRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        let mut t = metrics_header();
        t.push('\n');
        return t;
    }
    for r in rows {
        w.serialize(r).expect("an EpochRow serialises");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("CSV of numbers is UTF-8")
}

/// Read a `metrics.csv`: the header must be [`metrics_header`] exactly, epochs 1, 2, … in order.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>> {
    let text = fs::read_to_string(path)
        .map_err(|e| checkpoint_err(path, format!("cannot read the metrics ({e})")))?;
    parse_metrics(&text).map_err(|m| checkpoint_err(path, m))
}

fn parse_metrics(text: &str) -> std::result::Result<Vec<EpochRow>, String> {
    let expected = metrics_header();
    let first = text.lines().next().unwrap_or_default().trim_end();
    // The columns must be this build's, in its order; columns added to `EpochRow` after
    // `FIRST_METRICS_COLUMNS` may be missing (a run of an older version: they read as their
    // defaults and are written out on the next append).
    let known: Vec<&str> = expected.split(',').collect();
    let got: Vec<&str> = first.split(',').collect();
    let in_order = got.iter().all(|c| known.contains(c))
        && got
            .windows(2)
            .all(|w| known.iter().position(|k| k == &w[0]) < known.iter().position(|k| k == &w[1]));
    if !in_order || !FIRST_METRICS_COLUMNS.iter().all(|c| got.contains(c)) {
        return Err(format!(
            "not a metrics.csv of this version (header `{first}`, expected `{expected}`)"
        ));
    }
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows: Vec<EpochRow> = Vec::new();
    for (i, row) in reader.deserialize::<EpochRow>().enumerate() {
        let row =
            row.map_err(|e| format!("malformed row {} ({})", i + 2, one_line(&e.to_string())))?;
        if row.epoch != i + 1 {
            return Err(format!("row {} is epoch {}, expected {}", i + 2, row.epoch, i + 1));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What `train` will do with a run directory (decided by [`RunDir::plan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// No run there: start one.
    Fresh,
    /// A run that never finished an epoch (config.toml, no state.json): start it again from
    /// scratch, with the given config (the new one for `train`, the recorded one for
    /// `train --resume`).
    Restart,
    /// Continue after the last finished epoch.
    Continue(Box<RunState>),
}

/// An exclusive lock on a run directory, held while training writes to it; the OS releases it
/// when the process ends, however it ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Files of a run directory (see the module docs).
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run directory.
    pub root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (not created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `checkpoints/`.
    pub fn checkpoints_path(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Whether a run (config or state) already lives here.
    pub fn holds_run(&self) -> bool {
        self.config_path().exists() || self.state_path().exists()
    }

    /// Whether a finished epoch (a `state.json`) is recorded here.
    pub fn has_checkpoint(&self) -> bool {
        self.state_path().exists()
    }

    fn check_root(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(m) if !m.is_dir() => Err(checkpoint_err(
                &self.root,
                "not a folder; give a run directory (or a new path) as the run",
            )),
            _ => Ok(()),
        }
    }

    /// Decide what `train` (or `train --resume`) does here. The one place for that decision.
    pub fn plan(&self, resume: bool) -> Result<Plan> {
        self.check_root()?;
        let (config, state) = (self.config_path().exists(), self.state_path().exists());
        match (config, state, resume) {
            (false, false, false) => Ok(Plan::Fresh),
            (false, false, true) => Err(checkpoint_err(
                &self.root,
                if self.root.exists() {
                    "holds no run to resume; train without --resume to start one"
                } else {
                    "run directory does not exist, so there is nothing to resume; train without --resume to start one"
                },
            )),
            (true, false, _) => Ok(Plan::Restart),
            (_, true, false) => {
                let epoch = self.read_state().map(|s| s.epoch.to_string()).unwrap_or("?".into());
                Err(checkpoint_err(
                    &self.root,
                    format!(
                        "already holds a run (finished epoch {epoch}); use --resume to continue it or choose another --out"
                    ),
                ))
            }
            (false, true, true) => Err(checkpoint_err(
                self.config_path(),
                "missing, but state.json is there; restore the run's config.toml",
            )),
            (true, true, true) => Ok(Plan::Continue(Box::new(self.read_state()?))),
        }
    }

    /// Create the run directory if needed and take its lock (refused while another process
    /// trains here); then remove temporary files of dead processes.
    pub fn lock(&self) -> Result<RunLock> {
        self.check_root()?;
        fs::create_dir_all(&self.root)
            .map_err(|source| Error::Io { path: self.root.clone(), source })?;
        let path = self.lock_path();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Io { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(checkpoint_err(
                    &self.root,
                    "another ekvae process is training in this run directory; wait for it to finish or choose another --out",
                ));
            }
            Err(fs::TryLockError::Error(source)) => return Err(Error::Io { path, source }),
        }
        ekvae_envs::fsio::remove_stale_temps(&self.root, None);
        ekvae_envs::fsio::remove_stale_temps(&self.checkpoints_path(), None);
        Ok(RunLock { _file: file })
    }

    /// Read `config.toml` strictly (every field present, none empty) and check it.
    pub fn read_config(&self) -> Result<TrainConfig> {
        let path = self.config_path();
        if !self.root.is_dir() {
            return Err(checkpoint_err(
                &self.root,
                "run directory does not exist; train one with `ekvae train --out DIR`",
            ));
        }
        let text = fs::read_to_string(&path).map_err(|e| {
            checkpoint_err(
                &path,
                format!("cannot read the run config ({e}); is this a run directory made by `ekvae train`?"),
            )
        })?;
        let cfg = TrainConfig::from_run_toml(&text).map_err(|m| checkpoint_err(&path, m))?;
        cfg.check().map_err(|e| checkpoint_err(&path, e.to_string()))?;
        Ok(cfg)
    }

    /// Write `config.toml` (complete: every field).
    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        write_atomic(&self.config_path(), config.to_toml().as_bytes())
    }

    /// Read `state.json`.
    pub fn read_state(&self) -> Result<RunState> {
        let path = self.state_path();
        let text = fs::read_to_string(&path).map_err(|e| {
            checkpoint_err(
                &path,
                format!("cannot read the run state ({e}); the run has not finished an epoch"),
            )
        })?;
        RunState::from_json(&text)
            .map_err(|m| checkpoint_err(&path, format!("corrupt run state: {m}")))
    }

    /// Read and cross-check config and state of a finished run (for eval and mpc).
    pub fn open(&self) -> Result<(TrainConfig, RunState)> {
        let config = self.read_config()?;
        let state = self.read_state()?;
        check_model_config(&self.config_path(), &config.model, &state.model)?;
        Ok((config, state))
    }

    /// The bytes of checkpoint file `name` of `state`, verified against its recorded digest.
    pub fn checkpoint_bytes(&self, state: &RunState, name: &str) -> Result<Vec<u8>> {
        let path = self.root.join(&state.checkpoint).join(name);
        let Some(expected) = state.files.get(name) else {
            return Err(checkpoint_err(
                &path,
                "not recorded in state.json (no digest), so it cannot be trusted; retrain or resume from a run that has it",
            ));
        };
        let bytes = fs::read(&path)
            .map_err(|e| checkpoint_err(&path, format!("cannot read the checkpoint file ({e})")))?;
        let found = FileDigest::of(&bytes);
        if found != *expected {
            return Err(checkpoint_err(
                &path,
                format!(
                    "damaged or replaced: its {} bytes have SHA-256 {}…, state.json records {} bytes with {}…; restore the file or retrain",
                    found.bytes,
                    &found.sha256[..12],
                    expected.bytes,
                    &expected.sha256[..12.min(expected.sha256.len())]
                ),
            ));
        }
        Ok(bytes)
    }

    /// Load the model of the last checkpoint onto `device` (which decides autodiff), after
    /// checking the digest and that `config` is the model config the weights belong to.
    pub fn load_model(
        &self,
        config: &TrainConfig,
        state: &RunState,
        device: &Device,
    ) -> Result<Ekvae> {
        check_model_config(&self.config_path(), &config.model, &state.model)?;
        let bytes = self.checkpoint_bytes(state, MODEL_FILE)?;
        let path = self.root.join(&state.checkpoint).join(MODEL_FILE);
        load_model_bytes(&state.model, bytes, &path, device)
    }

    /// Rebuild a [`Trainer`] from the last checkpoint (model, optimizer state, λ, epoch) with
    /// `config` (the run's, perhaps with a new epoch count).
    pub fn resume(
        &self,
        config: TrainConfig,
        state: &RunState,
        device: &Device,
    ) -> Result<Trainer> {
        let mut trainer = Trainer::new(config.clone(), device)?;
        let model = self.load_model(&config, state, trainer.device())?;
        trainer.set_model(model);
        let optim_path = self.root.join(&state.checkpoint).join(OPTIMIZER_FILE);
        let expected = state.optimizer.clone().ok_or_else(|| {
            checkpoint_err(
                &optim_path,
                "this checkpoint has no optimizer state (weights only), so it cannot be resumed; train a new run",
            )
        })?;
        let parameters = count_params(trainer.model());
        if expected.kind != "adam" || expected.parameters != parameters {
            return Err(checkpoint_err(
                &optim_path,
                format!(
                    "state.json records an optimizer ({}) for {} parameter tensors, but the model has {}; the checkpoint belongs to another model",
                    expected.kind, expected.parameters, parameters
                ),
            ));
        }
        let bytes = self.checkpoint_bytes(state, OPTIMIZER_FILE)?;
        let optim = std::mem::replace(&mut trainer.optim, AdamConfig::new().init());
        trainer.optim =
            optim.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| {
                checkpoint_err(&optim_path, format!("not readable as optimizer state ({e:?})"))
            })?;
        let loaded = trainer.optim.to_record().len();
        if loaded != expected.state_tensors {
            return Err(checkpoint_err(
                &optim_path,
                format!(
                    "holds {loaded} optimizer tensors where state.json records {}; it belongs to another model",
                    expected.state_tensors
                ),
            ));
        }
        trainer.schedule = state.schedule;
        trainer.epoch = state.epoch;
        Ok(trainer)
    }

    /// Save model and optimizer of `trainer` as the checkpoint of its current epoch, then point
    /// `state.json` at it (with digests) and remove older checkpoints. On failure the temporary
    /// checkpoint folder is removed and `state.json` still names the previous checkpoint.
    pub fn save_checkpoint(&self, trainer: &Trainer) -> Result<RunState> {
        let name = format!("epoch-{:04}", trainer.epoch);
        let rel = format!("checkpoints/{name}");
        let checkpoints = self.checkpoints_path();
        fs::create_dir_all(&checkpoints)
            .map_err(|source| Error::Io { path: checkpoints.clone(), source })?;
        let tmp = checkpoints.join(ekvae_envs::fsio::temp_dir_name(&name));
        let dir = self.root.join(&rel);
        let written = (|| -> Result<BTreeMap<String, FileDigest>> {
            if tmp.exists() {
                fs::remove_dir_all(&tmp)
                    .map_err(|source| Error::Io { path: tmp.clone(), source })?;
            }
            fs::create_dir(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
            let model = model_bytes(trainer.model())?;
            let (optim, _) = optimizer_bytes(trainer)?;
            write_atomic(&tmp.join(MODEL_FILE), &model)?;
            write_atomic(&tmp.join(OPTIMIZER_FILE), &optim)?;
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .map_err(|source| Error::Io { path: dir.clone(), source })?;
            }
            fs::rename(&tmp, &dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
            ekvae_envs::fsio::sync_dir(&checkpoints);
            Ok(BTreeMap::from([
                (MODEL_FILE.to_string(), FileDigest::of(&model)),
                (OPTIMIZER_FILE.to_string(), FileDigest::of(&optim)),
            ]))
        })();
        let files = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let state_tensors = trainer.optim.to_record().len();
        let state = RunState {
            format: STATE_FORMAT,
            epoch: trainer.epoch,
            checkpoint: rel.clone(),
            schedule: trainer.schedule,
            model: trainer.config.model.clone(),
            optimizer: Some(OptimizerInfo {
                kind: "adam".into(),
                parameters: count_params(trainer.model()),
                state_tensors,
            }),
            files,
        };
        write_atomic(&self.state_path(), state.to_json().as_bytes())?;
        // Remove older checkpoints (best effort: they are no longer referenced).
        if let Ok(entries) = fs::read_dir(&checkpoints) {
            for entry in entries.flatten() {
                let n = entry.file_name().to_string_lossy().into_owned();
                if n.starts_with("epoch-") && n != name {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(state)
    }

    /// Copy this run's last checkpoint, config and metrics into the run directory `dest`, so
    /// that `train --resume` on `dest` continues exactly where this run stopped (model
    /// selection continues the chosen candidate this way instead of training it again).
    /// `dest` is locked while it is written; `state.json` is written last, so an interrupted
    /// copy leaves no resumable half-run behind. A run already in `dest` is refused.
    pub fn copy_to(&self, dest: &RunDir) -> Result<RunState> {
        let (config, state) = self.open()?;
        // Rows past the checkpoint (a crash between the two writes) are not part of the run.
        let metrics: Vec<EpochRow> =
            self.read_metrics()?.into_iter().filter(|r| r.epoch <= state.epoch).collect();
        if dest.has_checkpoint() {
            return Err(checkpoint_err(
                &dest.root,
                "already holds a run; copy the candidate into an empty run directory",
            ));
        }
        let _lock = dest.lock()?;
        let checkpoints = dest.checkpoints_path();
        fs::create_dir_all(&checkpoints)
            .map_err(|source| Error::Io { path: checkpoints.clone(), source })?;
        let target = dest.root.join(&state.checkpoint);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| "checkpoint".into());
        let tmp = checkpoints.join(ekvae_envs::fsio::temp_dir_name(&name));
        let copied = (|| -> Result<()> {
            for path in [&tmp, &target] {
                if path.exists() {
                    fs::remove_dir_all(path)
                        .map_err(|source| Error::Io { path: path.clone(), source })?;
                }
            }
            fs::create_dir(&tmp).map_err(|source| Error::Io { path: tmp.clone(), source })?;
            for file in state.files.keys() {
                // Verified against the recorded digest on the way.
                write_atomic(&tmp.join(file), &self.checkpoint_bytes(&state, file)?)?;
            }
            fs::rename(&tmp, &target).map_err(|source| Error::Io { path: target.clone(), source })
        })();
        if let Err(e) = copied {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        ekvae_envs::fsio::sync_dir(&checkpoints);
        dest.write_config(&config)?;
        write_atomic(&dest.metrics_path(), metrics_text(&metrics).as_bytes())?;
        write_atomic(&dest.state_path(), state.to_json().as_bytes())?;
        Ok(state)
    }

    /// The rows of `metrics.csv` (none if it does not exist yet).
    pub fn read_metrics(&self) -> Result<Vec<EpochRow>> {
        if !self.metrics_path().exists() {
            return Ok(Vec::new());
        }
        read_metrics(&self.metrics_path())
    }

    /// Rewrite `metrics.csv` with the rows of epochs ≤ `epoch` (after a crash between log and
    /// checkpoint, or before starting over).
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let rows = if epoch == 0 { Vec::new() } else { self.read_metrics()? };
        let kept: Vec<EpochRow> = rows.into_iter().filter(|r| r.epoch <= epoch).collect();
        write_atomic(&self.metrics_path(), metrics_text(&kept).as_bytes())
    }

    /// Add `row` to `metrics.csv` (replacing any row of its epoch or later), atomically.
    pub fn append_metrics(&self, row: &EpochRow) -> Result<()> {
        let mut rows: Vec<EpochRow> =
            self.read_metrics()?.into_iter().filter(|r| r.epoch < row.epoch).collect();
        rows.push(*row);
        write_atomic(&self.metrics_path(), metrics_text(&rows).as_bytes())
    }

    /// Remove what a run that never finished an epoch left (metrics, checkpoints), keeping the
    /// folder's other files; used before restarting it.
    pub fn clear_unfinished(&self) -> Result<()> {
        let checkpoints = self.checkpoints_path();
        if checkpoints.exists() {
            fs::remove_dir_all(&checkpoints)
                .map_err(|source| Error::Io { path: checkpoints, source })?;
        }
        self.truncate_metrics(0)
    }
}

/// Refuse a config whose model differs from the one the checkpoint was made with.
fn check_model_config(
    config_path: &Path,
    config: &EkvaeConfig,
    recorded: &EkvaeConfig,
) -> Result<()> {
    if config == recorded {
        return Ok(());
    }
    let a = toml::Value::try_from(config).ok();
    let b = toml::Value::try_from(recorded).ok();
    let diffs: Vec<String> = match (a, b) {
        (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                let other = b.get(k).map_or("missing".to_string(), ToString::to_string);
                format!("{k} = {v} here but {other} in the checkpoint")
            })
            .take(3)
            .collect(),
        _ => vec!["differs".into()],
    };
    Err(checkpoint_err(
        config_path,
        format!(
            "[model] does not match the model the checkpoint was trained with ({}; see state.json); restore the run's config.toml",
            diffs.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn state_with(lambda: f64, d_hat: Option<f64>) -> RunState {
        let mut schedule = LambdaSchedule::new(crate::objective::LambdaConfig::default());
        schedule.lambda = lambda;
        schedule.d_hat = d_hat;
        RunState {
            format: STATE_FORMAT,
            epoch: 3,
            checkpoint: "checkpoints/epoch-0003".into(),
            schedule,
            model: EkvaeConfig::new(),
            optimizer: None,
            files: BTreeMap::from([("model.safetensors".into(), FileDigest::of(b"abc"))]),
        }
    }

    #[test]
    fn state_floats_round_trip_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut plain_json_lossy = 0;
        for _ in 0..2000 {
            let lambda = 1.0 + 99.0 * rng.random::<f64>();
            let d_hat = rng.random::<f64>() * 10f64.powi(rng.random_range(-8..3));
            let s = state_with(lambda, Some(d_hat));
            let back = RunState::from_json(&s.to_json()).unwrap();
            assert_eq!(back.schedule.lambda.to_bits(), lambda.to_bits());
            assert_eq!(back.schedule.d_hat.unwrap().to_bits(), d_hat.to_bits());
            // What serde_json alone gives back (the failure this fixes).
            let plain: f64 = serde_json::from_str(&serde_json::to_string(&d_hat).unwrap()).unwrap();
            plain_json_lossy += usize::from(plain.to_bits() != d_hat.to_bits());
        }
        // Documents why the bits are needed (serde_json without float_roundtrip).
        eprintln!("plain serde_json lost the last bit of {plain_json_lossy} of 2000 values");
    }

    #[test]
    fn state_refuses_old_formats_and_edits() {
        let s = state_with(2.5, None);
        let text = s.to_json();
        assert_eq!(RunState::from_json(&text).unwrap(), s);
        let old = r#"{"epoch": 1, "checkpoint": "c", "schedule": {}}"#;
        assert!(RunState::from_json(old).unwrap_err().contains("older ekvae"));
        let edited = text.replace("\"lambda\": 2.5", "\"lambda\": 3.5");
        assert_ne!(edited, text);
        assert!(RunState::from_json(&edited).unwrap_err().contains("edited"));
        assert_eq!(text, RunState::from_json(&text).unwrap().to_json(), "stable text");
    }

    #[test]
    fn metrics_schema_round_trip() {
        let rows: Vec<EpochRow> = (1..=3)
            .map(|e| EpochRow {
                epoch: e,
                lambda: 0.1 * e as f64,
                val_neg_elbo: f64::NAN,
                ..EpochRow::default()
            })
            .collect();
        let text = metrics_text(&rows);
        assert!(text.starts_with(&metrics_header()));
        assert!(metrics_header().starts_with("epoch,lambda,D,R,neg_elbo,val_neg_elbo,seconds"));
        let back = parse_metrics(&text).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].lambda.to_bits(), rows[2].lambda.to_bits());
        assert!(back[0].val_neg_elbo.is_nan());
        assert!(parse_metrics("epoch,lambda\n1,2\n").unwrap_err().contains("header"));
        let mut swapped = text.replacen("epoch,lambda", "lambda,epoch", 1);
        assert!(parse_metrics(&swapped).unwrap_err().contains("header"));
        swapped = text.replacen("seconds", "seconds,extra", 1);
        assert!(parse_metrics(&swapped).unwrap_err().contains("header"));
        let skipped = text.replace("\n2,", "\n5,");
        assert!(parse_metrics(&skipped).unwrap_err().contains("expected 2"));
        assert_eq!(parse_metrics(&metrics_text(&[])).unwrap().len(), 0);
    }

    #[test]
    fn safetensors_header_is_sorted_and_stable() {
        let header = br#"{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"z":"1","a":"2"}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0, 0, 128, 63]);
        let sorted = sorted_safetensors(&file).unwrap();
        let n = u64::from_le_bytes(sorted[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let h = std::str::from_utf8(&sorted[8..8 + n]).unwrap().trim_end();
        assert!(h.starts_with(r#"{"__metadata__":{"a":"2","z":"1"},"b""#), "{h}");
        assert_eq!(&sorted[8 + n..], &[0, 0, 128, 63]);
        assert_eq!(sorted_safetensors(&sorted).unwrap(), sorted);
    }

    #[test]
    fn one_line_messages() {
        assert_eq!(one_line("a\n  b\n\nc"), "a; b; c");
        assert!(one_line(&"x".repeat(400)).ends_with('…'));
    }
}
