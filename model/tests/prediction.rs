//! Open-loop prediction metrics on a tiny (untrained) model and constructed inputs whose
//! answers are known independently of the model.

mod common;

use burn::tensor::Device;
use common::Synthetic;
use ekvae_model::metrics::{LinearRegression, angle_error, mean_squared_error};
use ekvae_model::predict::{open_loop_prediction, prediction_windows};
use ekvae_model::{Ekvae, EkvaeConfig, Inference};

fn tiny(inference: Inference) -> Ekvae {
    EkvaeConfig::new()
        .with_image_size(8)
        .with_channels(4)
        .with_hidden(16)
        .with_transition_hidden(8)
        .with_num_bases(2)
        .with_state_dim(3)
        .with_inference(inference)
        .with_rnn_hidden(8)
        .init_seeded(&Device::flex(), 3)
        .unwrap()
}

#[test]
fn baseline_and_angle_errors_match_hand_computation() {
    let data = Synthetic::pendulum(4, 20, 8, 9);
    let seqs = data.view();
    let (cond, horizon) = (4, 6);
    let windows = prediction_windows(4, 20, cond + horizon);
    assert_eq!(windows.len(), 8);
    // A regressor that ignores z and always says θ = 0 ([cos, sin] = [1, 0]).
    let zero_angle = LinearRegression {
        inputs: 3,
        outputs: 2,
        weights: vec![0.0; 6],
        intercept: vec![1.0, 0.0],
    };
    for inference in [Inference::Kalman, Inference::Rnn] {
        let model = tiny(inference);
        let (curves, strips) =
            open_loop_prediction(&model, &seqs, &windows, cond, horizon, Some((&zero_angle, 0)), 3)
                .unwrap();
        assert_eq!((curves.condition, curves.windows, curves.diverged_windows), (cond, 8, 0));
        assert_eq!(strips.len(), 3);
        assert_eq!(strips[0].truth.len(), (horizon + 1) * 64);
        assert_eq!(strips[0].predicted.len(), horizon * 64);
        let px = 64;
        let frame = |e: usize, t: usize| -> Vec<f32> {
            data.images[(e * 20 + t) * px..(e * 20 + t + 1) * px]
                .iter()
                .map(|&v| f32::from(v) / 255.0)
                .collect()
        };
        for h in 1..=horizon {
            let mut last = 0.0;
            let mut angle = 0.0;
            for &(e, start) in &windows {
                last += mean_squared_error(
                    &frame(e, start + cond - 1),
                    &frame(e, start + cond - 1 + h),
                );
                angle +=
                    angle_error(0.0, data.states[(e * 20 + start + cond - 1 + h) * 2]).to_degrees();
            }
            let (last, angle) = (last / 8.0, angle / 8.0);
            assert!(
                (curves.pixel_mse_last_frame[h - 1] - last).abs() < 1e-12,
                "{inference:?} h={h}"
            );
            assert!((curves.angle_error_deg[h - 1] - angle).abs() < 1e-9, "{inference:?} h={h}");
            let mse = curves.pixel_mse[h - 1];
            assert!(mse.is_finite() && (0.0..=1.0).contains(&mse));
        }
        // The first strip's truth starts at the last conditioned frame of window 0.
        assert_eq!(strips[0].truth[..px], frame(0, cond - 1)[..]);
    }
}

#[test]
fn kalman_conditioning_is_the_filtered_end_of_the_smoother() {
    // The RTS smoother's last mean is the filter's last mean, so conditioning on k frames must
    // give the smoothed mean of step k − 1 over the same k frames.
    let data = Synthetic::pendulum(2, 10, 8, 4);
    let seqs = data.view();
    let model = tiny(Inference::Kalman);
    let device = model.device();
    let (frames, actions) = seqs.batch(&[(0, 0), (1, 2)], 7, &device);
    let z = model.condition(frames.clone(), actions.clone()).unwrap();
    let smoothed = model.smoothed_means(frames, actions).unwrap().narrow(1, 6, 1).reshape([2, 3]);
    let diff = (z - smoothed).abs().max().into_scalar::<f64>();
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn windows_that_do_not_fit_are_errors() {
    let data = Synthetic::pendulum(2, 10, 8, 4);
    let model = tiny(Inference::Rnn);
    let fit = LinearRegression {
        inputs: 3,
        outputs: 2,
        weights: vec![0.0; 6],
        intercept: vec![1.0, 0.0],
    };
    let w = [(0, 0)];
    assert!(open_loop_prediction(&model, &data.view(), &w, 5, 6, Some((&fit, 0)), 0).is_err());
    assert!(open_loop_prediction(&model, &data.view(), &w, 0, 6, Some((&fit, 0)), 0).is_err());
    assert!(open_loop_prediction(&model, &data.view(), &[], 2, 3, Some((&fit, 0)), 0).is_err());
    // Windows outside the data.
    assert!(
        open_loop_prediction(&model, &data.view(), &[(2, 0)], 2, 3, Some((&fit, 0)), 0).is_err()
    );
    assert!(
        open_loop_prediction(&model, &data.view(), &[(1, 6)], 2, 3, Some((&fit, 0)), 0).is_err()
    );
    assert!(open_loop_prediction(&model, &data.view(), &w, 2, 3, Some((&fit, 0)), 0).is_ok());
}

#[test]
fn predictions_line_up_with_the_recorded_actions_and_frames() {
    // A transition with F = I and B = e_1 (every base): z_{t+1} = z_t + u_t e_1 exactly. The
    // prediction h steps after frame k − 1 is then z_{k−1} + Σ_{i<h} u_{k−1+i} e_1, computed
    // here by hand with the data's own indexing, decoded, and compared with frame k − 1 + h.
    use burn::module::Param;
    use burn::tensor::{Tensor, TensorData};
    let data = Synthetic::pendulum(2, 16, 8, 5);
    let seqs = data.view();
    let mut model = tiny(Inference::Kalman);
    let device = model.device();
    let (n, kb) = (3, 2);
    let eye: Vec<f32> = (0..kb).flat_map(|_| [1., 0., 0., 0., 1., 0., 0., 0., 1.]).collect();
    let b_col: Vec<f32> = (0..kb).flat_map(|_| [1., 0., 0.]).collect();
    model.transition.f_bases =
        Param::from_tensor(Tensor::from_data(TensorData::new(eye, [kb, n * n]), &device));
    model.transition.b_bases =
        Param::from_tensor(Tensor::from_data(TensorData::new(b_col, [kb, n]), &device));
    let (cond, horizon) = (3, 5);
    let windows = [(0, 0), (1, 8)];
    let fit = LinearRegression {
        inputs: 3,
        outputs: 2,
        weights: vec![0.0; 6],
        intercept: vec![1.0, 0.0],
    };
    let (curves, _) =
        open_loop_prediction(&model, &seqs, &windows, cond, horizon, Some((&fit, 0)), 0).unwrap();
    let px = 64;
    for h in 1..=horizon {
        let mut sum = 0.0;
        for &(e, start) in &windows {
            let (frames, actions) = seqs.batch(&[(e, start)], cond, &device);
            let z0 =
                model.condition(frames, actions).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let shift: f32 = (0..h).map(|i| data.actions[e * 16 + start + cond - 1 + i]).sum();
            let z = vec![z0[0] + shift, z0[1], z0[2]];
            let pred = model.decode_mean(Tensor::from_data(TensorData::new(z, [1, 1, n]), &device));
            let pred = pred.into_data().try_to_vec::<f32>().unwrap();
            let t = start + cond - 1 + h;
            let truth: Vec<f32> = data.images[(e * 16 + t) * px..(e * 16 + t + 1) * px]
                .iter()
                .map(|&v| f32::from(v) / 255.0)
                .collect();
            sum += mean_squared_error(&pred, &truth);
        }
        let want = sum / windows.len() as f64;
        assert!(
            (curves.pixel_mse[h - 1] - want).abs() < 1e-6,
            "h = {h}: {} vs {want}",
            curves.pixel_mse[h - 1]
        );
    }
}
