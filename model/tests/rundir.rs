//! The run-directory owner: digests, recorded model/optimizer config, strict configs,
//! byte-stable checkpoints, no dead ends, the NaN guard on validation, the lock.

mod common;

use burn::tensor::Device;
use common::Synthetic;
use ekvae_model::rundir::{RunDir, one_line};
use ekvae_model::train::{EpochRow, NoProgress, TrainConfig, check_validation, train};
use ekvae_model::{EkvaeConfig, Error, Inference, Objective};
use std::fs;
use std::path::Path;

fn tiny(inference: Inference) -> TrainConfig {
    TrainConfig {
        model: EkvaeConfig::new()
            .with_image_size(8)
            .with_channels(4)
            .with_hidden(16)
            .with_transition_hidden(8)
            .with_num_bases(2)
            .with_state_dim(2)
            .with_rnn_hidden(8)
            .with_inference(inference),
        objective: Objective::Constrained,
        epochs: 2,
        batch_size: 4,
        seq_len: 6,
        steps_per_epoch: 2,
        learning_rate: 3e-3,
        val_fraction: 0.25,
        seed: 7,
        data: "synthetic".into(),
        ..TrainConfig::default()
    }
}

fn ckpt(dir: &Path, file: &str) -> std::path::PathBuf {
    let state = RunDir::new(dir).read_state().unwrap();
    dir.join(state.checkpoint).join(file)
}

#[test]
fn checkpoints_are_byte_stable_and_resume_is_bit_exact() {
    let data = Synthetic::pendulum(4, 8, 8, 2);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train(tiny(Inference::Kalman), &data.view(), &a, false, &device, &mut NoProgress).unwrap();
    let one = TrainConfig { epochs: 1, ..tiny(Inference::Kalman) };
    train(one, &data.view(), &b, false, &device, &mut NoProgress).unwrap();
    train(tiny(Inference::Kalman), &data.view(), &b, true, &device, &mut NoProgress).unwrap();
    for f in ["model.safetensors", "optimizer.bpk"] {
        assert_eq!(fs::read(ckpt(&a, f)).unwrap(), fs::read(ckpt(&b, f)).unwrap(), "{f}");
    }
    let (sa, sb) = (RunDir::new(&a).read_state().unwrap(), RunDir::new(&b).read_state().unwrap());
    assert_eq!(sa.schedule.lambda.to_bits(), sb.schedule.lambda.to_bits());
    assert_eq!(sa.schedule.d_hat.map(f64::to_bits), sb.schedule.d_hat.map(f64::to_bits));
    assert_eq!(
        fs::read(RunDir::new(&a).state_path()).unwrap(),
        fs::read(RunDir::new(&b).state_path()).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(ckpt(&a, "model.safetensors")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "model.safetensors is {:o}", mode & 0o777);
    }
}

#[test]
fn a_copied_run_resumes_exactly_like_the_original() {
    // Model selection continues the chosen candidate from a copy: a 1-epoch run copied into a
    // new directory and resumed to 2 epochs must equal a run trained 2 epochs in one go.
    let data = Synthetic::pendulum(4, 8, 8, 2);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    train(tiny(Inference::Kalman), &data.view(), &a, false, &device, &mut NoProgress).unwrap();
    let one = TrainConfig { epochs: 1, ..tiny(Inference::Kalman) };
    train(one, &data.view(), &b, false, &device, &mut NoProgress).unwrap();
    let copied = RunDir::new(&b).copy_to(&RunDir::new(&c)).unwrap();
    assert_eq!(copied.epoch, 1);
    // A second copy onto a run is refused, and the copy left the source untouched.
    let err = RunDir::new(&b).copy_to(&RunDir::new(&c)).unwrap_err().to_string();
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(RunDir::new(&b).read_state().unwrap().epoch, 1);
    train(tiny(Inference::Kalman), &data.view(), &c, true, &device, &mut NoProgress).unwrap();
    for f in ["model.safetensors", "optimizer.bpk"] {
        assert_eq!(fs::read(ckpt(&a, f)).unwrap(), fs::read(ckpt(&c, f)).unwrap(), "{f}");
    }
    let (ra, rc) =
        (RunDir::new(&a).read_metrics().unwrap(), RunDir::new(&c).read_metrics().unwrap());
    assert_eq!(rc.len(), 2);
    for (x, y) in ra.iter().zip(&rc) {
        assert_eq!(x.val_neg_elbo.to_bits(), y.val_neg_elbo.to_bits(), "epoch {}", x.epoch);
    }
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused_with_one_line_naming_the_file() {
    let data = Synthetic::pendulum(4, 8, 8, 3);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let (ek, rnn) = (dir.path().join("ek"), dir.path().join("rnn"));
    train(tiny(Inference::Kalman), &data.view(), &ek, false, &device, &mut NoProgress).unwrap();
    train(tiny(Inference::Rnn), &data.view(), &rnn, false, &device, &mut NoProgress).unwrap();
    let run = RunDir::new(&ek);
    let (cfg, state) = run.open().unwrap();
    assert!(run.load_model(&cfg, &state, &device).is_ok());

    // 16 bytes flipped inside the weights.
    let model = ckpt(&ek, "model.safetensors");
    let good = fs::read(&model).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 16].iter_mut().for_each(|b| *b ^= 0xff);
    fs::write(&model, &bad).unwrap();
    let err = run.load_model(&cfg, &state, &device).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("damaged"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let err = train(tiny(Inference::Kalman), &data.view(), &ek, true, &device, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors") && err.contains("damaged"), "{err}");
    fs::write(&model, &good).unwrap();

    // An optimizer state from another model (--model rnn) copied in.
    let optim = ckpt(&ek, "optimizer.bpk");
    let own = fs::read(&optim).unwrap();
    fs::copy(ckpt(&rnn, "optimizer.bpk"), &optim).unwrap();
    let resume = |d: &Path| {
        train(
            TrainConfig { epochs: 3, ..tiny(Inference::Kalman) },
            &data.view(),
            d,
            true,
            &device,
            &mut NoProgress,
        )
    };
    let err = resume(&ek).unwrap_err().to_string();
    assert!(err.contains("optimizer.bpk"), "{err}");
    fs::write(&optim, &own).unwrap();

    // The rnn run's state.json and checkpoint copied in too: the config no longer matches.
    fs::copy(RunDir::new(&rnn).state_path(), run.state_path()).unwrap();
    let target = ek.join(RunDir::new(&rnn).read_state().unwrap().checkpoint);
    fs::create_dir_all(&target).unwrap();
    for f in ["model.safetensors", "optimizer.bpk"] {
        fs::copy(ckpt(&rnn, f), target.join(f)).unwrap();
    }
    let err = resume(&ek).unwrap_err().to_string();
    assert!(err.contains("config.toml") && err.contains("inference"), "{err}");
    assert_eq!(err.lines().count(), 1);
    // A config.toml from another model (the rnn run's) in the ekvae run: one line, no dump.
    let ek2 = dir.path().join("ek2");
    train(tiny(Inference::Kalman), &data.view(), &ek2, false, &device, &mut NoProgress).unwrap();
    fs::copy(RunDir::new(&rnn).config_path(), RunDir::new(&ek2).config_path()).unwrap();
    let err = RunDir::new(&ek2).open().unwrap_err().to_string();
    assert!(err.contains("config.toml") && err.contains("does not match"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn run_configs_are_strict_and_user_configs_partial() {
    let data = Synthetic::pendulum(4, 8, 8, 4);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("r");
    train(
        TrainConfig { epochs: 1, ..tiny(Inference::Kalman) },
        &data.view(),
        &d,
        false,
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let run = RunDir::new(&d);
    let text = fs::read_to_string(run.config_path()).unwrap();
    assert_eq!(TrainConfig::from_run_toml(&text).unwrap(), run.read_config().unwrap());
    fs::write(run.config_path(), "").unwrap();
    let err = run.read_config().unwrap_err().to_string();
    assert!(err.contains("config.toml") && err.contains("missing"), "{err}");
    let err = train(tiny(Inference::Kalman), &data.view(), &d, true, &device, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("incomplete run config"), "{err}");
    let blank = text.replace("objective = \"constrained\"", "objective = \"\"");
    fs::write(run.config_path(), blank).unwrap();
    assert!(run.read_config().unwrap_err().to_string().contains("objective"));
    let no_rnn: String =
        text.lines().filter(|l| !l.starts_with("rnn_hidden")).map(|l| format!("{l}\n")).collect();
    fs::write(run.config_path(), no_rnn).unwrap();
    assert!(run.read_config().unwrap_err().to_string().contains("model.rnn_hidden"));
    // A run made before frames could have colour has no image_channels: it reads as grayscale
    // (results/pixmpc-model is such a run).
    assert!(text.contains("image_channels = 1"), "{text}");
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("image_channels"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(run.config_path(), old).unwrap();
    assert_eq!(run.read_config().unwrap().model.image_channels, 1);
    // A user's --config may be partial.
    assert_eq!(TrainConfig::from_toml("epochs = 3").unwrap().epochs, 3);
}

#[test]
fn a_run_without_a_finished_epoch_is_no_dead_end() {
    let data = Synthetic::pendulum(4, 8, 8, 5);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("r");
    let run = RunDir::new(&d);
    // What a kill inside the first epoch leaves: config, empty metrics, a stale temp folder.
    let cfg = tiny(Inference::Kalman);
    fs::create_dir_all(d.join("checkpoints/.epoch-0001.tmp-2000000000")).unwrap();
    fs::write(run.config_path(), cfg.to_toml()).unwrap();
    fs::write(run.metrics_path(), ekvae_model::rundir::metrics_text(&[])).unwrap();
    struct Notes(Vec<String>);
    impl ekvae_model::train::Progress for Notes {
        fn notice(&mut self, m: &str) {
            self.0.push(m.to_string());
        }
    }
    let mut notes = Notes(Vec::new());
    let rows = train(cfg.clone(), &data.view(), &d, true, &device, &mut notes).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(notes.0[0].contains("never finished an epoch"), "{:?}", notes.0);
    assert!(
        !d.join("checkpoints/.epoch-0001.tmp-2000000000").exists()
            || !Path::new("/proc/self").exists()
    );
    // And plain `train` over an unfinished run is allowed too.
    fs::remove_file(run.state_path()).unwrap();
    let mut notes = Notes(Vec::new());
    train(TrainConfig { epochs: 1, ..cfg }, &data.view(), &d, false, &device, &mut notes).unwrap();
    assert!(notes.0[0].contains("with the new config"));
    assert_eq!(run.read_state().unwrap().epoch, 1);
    assert_eq!(run.read_metrics().unwrap().len(), 1);
}

#[test]
fn the_nan_guard_covers_validation_and_tells_the_truth() {
    let row = EpochRow { epoch: 3, val_neg_elbo: f64::NAN, ..EpochRow::default() };
    let err = check_validation(&row, true, Some(2)).unwrap_err().to_string();
    assert!(err.contains("validation") && err.contains("epoch 2) is kept"), "{err}");
    let err = check_validation(&EpochRow { epoch: 1, ..row }, true, None).unwrap_err().to_string();
    assert!(err.contains("no epoch finished, so there is no checkpoint"), "{err}");
    assert!(!err.contains("is kept"));
    assert!(check_validation(&row, false, None).is_ok(), "no validation split: NaN by design");
    let ok = EpochRow { val_neg_elbo: 1.0, ..row };
    assert!(check_validation(&ok, true, None).is_ok());
    // A non-finite step: the message says which checkpoint exists (none here).
    let data = Synthetic::pendulum(4, 8, 8, 6);
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        TrainConfig { learning_rate: 1e30, grad_clip: 0.0, epochs: 3, ..tiny(Inference::Rnn) };
    if let Err(e) =
        train(cfg, &data.view(), &dir.path().join("r"), false, &Device::flex(), &mut NoProgress)
    {
        let msg = e.to_string();
        if matches!(e, Error::Stopped { kept: None, .. }) {
            assert!(!RunDir::new(dir.path().join("r")).has_checkpoint(), "{msg}");
        }
        assert!(!msg.contains("the last good checkpoint is kept"), "{msg}");
    }
}

#[test]
fn a_locked_run_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path().join("r"));
    let lock = run.lock().unwrap();
    let err = run.lock().unwrap_err().to_string();
    assert!(err.contains("another ekvae process is training"), "{err}");
    drop(lock);
    assert!(run.lock().is_ok());
    assert_eq!(one_line("a\nb"), "a; b");
}
