//! Training loop, checkpoints and resume on a tiny model and a tiny synthetic dataset.

mod common;

use burn::module::Module;
use burn::tensor::Device;
use common::Synthetic;
use ekvae_model::data::split_episodes;
use ekvae_model::train::{NoProgress, RunDir, TrainConfig, Trainer, draw_noise, train};
use ekvae_model::{EkvaeConfig, Error, Objective};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

fn tiny_config() -> TrainConfig {
    TrainConfig {
        model: EkvaeConfig::new()
            .with_image_size(8)
            .with_channels(4)
            .with_hidden(16)
            .with_transition_hidden(8)
            .with_num_bases(2)
            .with_state_dim(2),
        objective: Objective::Constrained,
        epochs: 2,
        batch_size: 4,
        seq_len: 6,
        steps_per_epoch: 3,
        learning_rate: 3e-3,
        grad_clip: 100.0,
        val_fraction: 0.25,
        seed: 7,
        ..TrainConfig::default()
    }
}

#[test]
fn loss_falls_on_a_fixed_batch() {
    let data = Synthetic::pendulum(4, 8, 8, 1);
    let seqs = data.view();
    let cfg = TrainConfig { objective: Objective::Elbo, learning_rate: 1e-2, ..tiny_config() };
    let device = Device::flex();
    let mut trainer = Trainer::new(cfg, &device).unwrap();
    let dev = trainer.device().clone();
    let windows = [(0, 0), (1, 1), (2, 2), (3, 0)];
    let (x, u) = seqs.batch(&windows, 6, &dev);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let noise = draw_noise(trainer.model(), &mut rng, 4, 6, &dev);
    let mut losses = Vec::new();
    for _ in 0..40 {
        losses.push(trainer.step(x.clone(), u.clone(), &noise).unwrap().loss);
    }
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[37..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.8 * first, "loss did not fall: {first} → {last}");
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs_and_resume_continues_exactly() {
    let data = Synthetic::pendulum(4, 8, 8, 2);
    let seqs = data.view();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();

    // Two epochs in one go.
    let straight = dir.path().join("straight");
    let rows_straight =
        train(tiny_config(), &seqs, &straight, false, &device, &mut NoProgress).unwrap();
    assert_eq!(rows_straight.len(), 2);

    // One epoch, then resume to two.
    let split = dir.path().join("split");
    let one = TrainConfig { epochs: 1, ..tiny_config() };
    let rows1 = train(one.clone(), &seqs, &split, false, &device, &mut NoProgress).unwrap();
    assert_eq!(rows1.len(), 1);
    let run = RunDir::new(&split);
    assert_eq!(run.read_state().unwrap().epoch, 1);
    // Training again into the same directory without --resume is refused, nothing changes.
    let before = std::fs::read(run.state_path()).unwrap();
    assert!(matches!(
        train(one, &seqs, &split, false, &device, &mut NoProgress),
        Err(Error::Checkpoint { .. })
    ));
    assert_eq!(std::fs::read(run.state_path()).unwrap(), before);

    let rows2 = train(tiny_config(), &seqs, &split, true, &device, &mut NoProgress).unwrap();
    assert_eq!(rows2.len(), 1);
    assert_eq!(rows2[0].epoch, 2, "resume continues at the saved epoch");
    // Same seed, same data: resuming (model, Adam state, λ) reproduces the straight run.
    let (a, b) = (rows_straight[1], rows2[0]);
    assert_eq!(
        (a.lambda, a.distortion, a.rate, a.val_neg_elbo),
        (b.lambda, b.distortion, b.rate, b.val_neg_elbo)
    );
    let csv = std::fs::read_to_string(run.metrics_path()).unwrap();
    let epochs: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(epochs, ["1", "2"]);

    // Save → load → identical outputs.
    let cfg = run.read_config().unwrap();
    let state = run.read_state().unwrap();
    let loaded = run.load_model(&cfg, &state, &device).unwrap();
    let resumed = run.resume(cfg.clone(), &state, &device).unwrap();
    let (x, u) = seqs.batch(&[(0, 0), (3, 1)], 7, &device);
    let z1 = loaded.smoothed_means(x.clone(), u.clone()).unwrap().into_data();
    let z2 = resumed.model().valid().smoothed_means(x, u).unwrap().into_data();
    assert_eq!(z1.try_to_vec::<f32>().unwrap(), z2.try_to_vec::<f32>().unwrap());
    let (_, val) = split_episodes(4, 0.25);
    assert_eq!(val, vec![3]);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let data = Synthetic::pendulum(3, 8, 8, 3);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    // Image size that does not fit the model.
    let cfg = TrainConfig { model: tiny_config().model.with_image_size(16), ..tiny_config() };
    let err = train(cfg, &data.view(), &dir.path().join("a"), false, &device, &mut NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch(_)), "{err}");
    assert!(!dir.path().join("a").exists(), "nothing written on bad input");
    // Resuming a run directory that does not exist.
    let err = train(
        tiny_config(),
        &data.view(),
        &dir.path().join("none"),
        true,
        &device,
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // A checkpoint from another config.
    let run_dir = dir.path().join("b");
    train(
        TrainConfig { epochs: 1, ..tiny_config() },
        &data.view(),
        &run_dir,
        false,
        &device,
        &mut NoProgress,
    )
    .unwrap();
    let run = RunDir::new(&run_dir);
    let state = run.read_state().unwrap();
    let other = TrainConfig { model: tiny_config().model.with_state_dim(3), ..tiny_config() };
    let err = run.load_model(&other, &state, &device).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // A corrupt checkpoint.
    let ckpt = run_dir.join(&state.checkpoint).join("model.safetensors");
    std::fs::write(&ckpt, b"not a safetensors file").unwrap();
    let cfg = run.read_config().unwrap();
    let err = run.load_model(&cfg, &state, &device).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
}

#[test]
fn non_finite_loss_stops_the_step_and_leaves_the_model_unchanged() {
    let data = Synthetic::pendulum(4, 8, 8, 5);
    let device = Device::flex();
    let mut trainer = Trainer::new(tiny_config(), &device).unwrap();
    let dev = trainer.device().clone();
    let (x, u) = data.view().batch(&[(0, 0), (1, 0)], 6, &dev);
    let bad = x.clone().mask_fill(x.clone().greater_elem(0.5), f32::NAN);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let noise = draw_noise(trainer.model(), &mut rng, 2, 6, &dev);
    let before =
        trainer.model().valid().smoothed_means(x.clone().inner(), u.clone().inner()).unwrap();
    let err = trainer.step(bad, u.clone(), &noise).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { .. } | Error::NotPositiveDefinite { .. }),
        "unexpected error {err}"
    );
    let after = trainer.model().valid().smoothed_means(x.inner(), u.inner()).unwrap();
    assert_eq!(
        before.into_data().try_to_vec::<f32>().unwrap(),
        after.into_data().try_to_vec::<f32>().unwrap()
    );
    // A clean batch still trains afterwards.
    let (x, u) = data.view().batch(&[(0, 0), (1, 0)], 6, &dev);
    assert!(trainer.step(x, u, &noise).unwrap().loss.is_finite());
}

/// Sum of |gradient| over the parameters of a module (0 when none has a gradient).
fn grad_mass<M: Module>(module: &M, grads: &burn::optim::GradientsParams) -> f64 {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct V<'a>(&'a burn::optim::GradientsParams, f64);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1 += g.abs().sum().into_scalar::<f64>();
            }
        }
    }
    let mut v = V(grads, 0.0);
    module.visit(&mut v);
    v.1
}

#[test]
fn warm_dynamics_cuts_the_encoder_out_of_the_rate_gradient_only() {
    let data = Synthetic::pendulum(4, 8, 8, 1);
    let seqs = data.view();
    let device = Device::flex().autodiff();
    let model = tiny_config().model.init_seeded(&device, 3).unwrap();
    let (x, u) = seqs.batch(&[(0, 0), (1, 1)], 6, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let noise = draw_noise(&model, &mut rng, 2, 6, &device);
    let plain = model.rate_distortion_with(x.clone(), u.clone(), &noise, false).unwrap();
    let cut = model.rate_distortion_with(x, u, &noise, true).unwrap();
    // The same values: only the gradient paths differ.
    let v = |t: &burn::tensor::Tensor<1>| {
        t.clone().into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
    };
    assert_eq!(v(&plain.rate), v(&cut.rate));
    assert_eq!(v(&plain.distortion), v(&cut.distortion));
    let g_plain = burn::optim::GradientsParams::from_grads(plain.rate.sum().backward(), &model);
    let g_cut = burn::optim::GradientsParams::from_grads(cut.rate.sum().backward(), &model);
    // The rate moves the encoder normally, not when cut; the dynamics get the same gradient.
    assert!(grad_mass(&model.encoder, &g_plain) > 1e-3);
    assert_eq!(grad_mass(&model.encoder, &g_cut), 0.0);
    let (tp, tc) = (grad_mass(&model.transition, &g_plain), grad_mass(&model.transition, &g_cut));
    assert!(tp > 1e-3 && ((tp - tc) / tp).abs() < 1e-5, "{tp} vs {tc}");
}

/// All parameter values of a module, flattened in visiting order.
fn values<M: Module>(module: &M) -> Vec<f64> {
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct V(Vec<f64>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(param.val().into_data().convert::<f64>().try_to_vec::<f64>().unwrap());
        }
    }
    let mut v = V(Vec::new());
    module.visit(&mut v);
    v.0
}

#[test]
fn ae_lr_factor_slows_only_the_encoder_and_decoder_after_the_rate_enters() {
    let data = Synthetic::pendulum(4, 8, 8, 1);
    let seqs = data.view();
    let device = Device::flex();
    let step_deltas = |factor: f64| {
        let cfg = TrainConfig { ae_lr_factor: factor, ..tiny_config() };
        let mut trainer = Trainer::new(cfg, &device).unwrap();
        trainer.schedule.phase = ekvae_model::Phase::Lagrangian; // the rate has entered
        trainer.schedule.constraint_met = true;
        let dev = trainer.device().clone();
        let (x, u) = seqs.batch(&[(0, 0), (1, 1)], 6, &dev);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let noise = draw_noise(trainer.model(), &mut rng, 2, 6, &dev);
        let (e0, t0) = (values(&trainer.model().encoder), values(&trainer.model().transition));
        trainer.step(x, u, &noise).unwrap();
        let (e1, t1) = (values(&trainer.model().encoder), values(&trainer.model().transition));
        let delta = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>();
        (delta(&e0, &e1), delta(&t0, &t1))
    };
    let (enc_full, trans_full) = step_deltas(1.0);
    let (enc_slow, trans_slow) = step_deltas(0.01);
    // Adam's first step moves each parameter by about lr (m̂/√v̂ = ±1 up to ε): the encoder's
    // total movement scales with the factor, the transition's does not change.
    assert!(enc_full > 0.0 && trans_full > 0.0);
    assert!((enc_slow / enc_full - 0.01).abs() < 2e-3, "{enc_slow} / {enc_full}");
    assert!(((trans_slow - trans_full) / trans_full).abs() < 1e-9, "{trans_slow} vs {trans_full}");
}
