"""Trained runs: the committed 16×16 model loaded, used, and its controller driven on the
Gymnasium env; the controller's torques equal those of `ekvae mpc --run RUN`."""

from __future__ import annotations

import csv
import shutil

import gymnasium as gym
import numpy as np
import pytest

import ekvae
from conftest import cli_error


@pytest.fixture(scope="module")
def run(committed_run):
    return ekvae.load_run(committed_run)


def angle_normalize(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def test_properties(run, committed_run):
    assert (run.image_size, run.state_dim, run.aux_dim, run.action_dim) == (16, 3, 2, 1)
    assert run.epoch == 40 and run.inference == "ekvae"
    assert str(run.path) == str(committed_run)
    assert "image_size = 16" in run.config_toml


def test_encode_filter_predict_decode(run):
    d = ekvae.collect(episodes=2, steps=30, size=16, seed=1)
    frames, actions = d["images"], d["actions"]
    mean, log_var = run.encode(frames)
    assert mean.shape == (2, 30, 2) and log_var.shape == (2, 30, 2) and mean.dtype == np.float32
    one, _ = run.encode(frames[0, 3])
    np.testing.assert_allclose(one, mean[0, 3], atol=1e-5)

    f = run.filter(frames[0], actions[0], smooth=True)
    for key, shape in [("mean", (30, 3)), ("cov", (30, 3, 3)), ("mean_pred", (30, 3)),
                       ("cov_pred", (30, 3, 3)), ("mean_smooth", (30, 3)), ("cov_smooth", (30, 3, 3))]:
        assert f[key].shape == shape, key
        assert np.isfinite(f[key]).all()
    cov = f["cov"].astype(np.float64)
    np.testing.assert_allclose(cov, cov.transpose(0, 2, 1), atol=1e-5)
    assert (np.linalg.eigvalsh(cov) > 0).all()
    assert np.isfinite(f["log_likelihood"])
    # The filter's uncertainty shrinks once frames come in.
    assert np.trace(f["cov"][-1]) < np.trace(f["cov_pred"][0])

    k, h = 10, 5
    latents, predicted = run.predict(frames[0, :k], actions[0, : k - 1 + h])
    assert latents.shape == (h, 3) and predicted.shape == (h, 16, 16)
    assert ((predicted >= 0) & (predicted <= 1)).all() and predicted.max() > 0.5
    # One step ahead, the prediction is closer to the true next frame than the held frame is.
    truth = frames[0, k].astype(np.float32) / 255
    held = frames[0, k - 1].astype(np.float32) / 255
    assert ((predicted[0] - truth) ** 2).mean() < ((held - truth) ** 2).mean()
    decoded = run.decode(latents)
    assert decoded.shape == (h, 16, 16)
    np.testing.assert_allclose(decoded, predicted, atol=1e-6)


def test_controller_swings_up_from_pixels(run):
    """The pixel MPC with the CLI's defaults, driven by a Python loop on the Gymnasium env,
    swings the pendulum up from hanging at rest (as `ekvae mpc ... --start 3.14159,0` does)."""
    env = gym.make(ekvae.ENV_ID, size=run.image_size)
    controller = run.controller()
    assert controller.horizon == 30 and controller.goal.shape == (3,)
    obs, info = env.reset(options={"state": [np.pi, 0.0]})
    controller.reset()
    angles, total = [], 0.0
    for _ in range(200):
        u = controller.policy(obs)
        assert -2.0 <= u <= 2.0
        obs, reward, terminated, truncated, info = env.step([u])
        total += reward
        angles.append(abs(angle_normalize(info["state"][0])))
    assert max(angles[-50:]) < 0.3, angles[-50:]
    assert total > -400, total
    mean, cov = controller.belief
    assert mean.shape == (3,) and cov.shape == (3, 3)
    np.testing.assert_array_equal(controller.last_state, mean)


def test_controller_equals_the_cli(run, committed_run, cli, tmp_path):
    """Same start, same defaults: every torque equals `ekvae mpc --run RUN`'s, bit for bit."""
    out = tmp_path / "mpc"
    cli("mpc", "--run", committed_run, "--episodes", 1, "--steps", 60,
        "--start", "2.0,-0.5", "--out", out, "--gif-size", 16)
    with open(out / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    env = gym.make(ekvae.ENV_ID, size=16)
    controller = run.controller()
    obs, info = env.reset(options={"state": [2.0, -0.5]})
    for row in rows:
        assert float(row["theta"]) == info["state"][0]
        u = controller.policy(obs)
        assert u == float(row["u"]), row
        obs, reward, *_, info = env.step([u])
        assert reward == float(row["reward"])


def test_controller_options(run):
    c = run.controller(horizon=12, jacobians="local", iterations=2, no_short_horizon_start=True)
    assert c.horizon == 12
    with pytest.raises(ValueError, match="--horizon 0 is out of range"):
        run.controller(horizon=0)
    with pytest.raises(ValueError, match="invalid value 'sideways' for '--jacobians"):
        run.controller(jacobians="sideways")
    assert run.controller(warm_start="feedback", horizon=8).horizon == 8
    with pytest.raises(ValueError, match="invalid value 'closed' for '--warm-start"):
        run.controller(warm_start="closed")
    with pytest.raises(ValueError, match="unknown controller option \"episodes\""):
        run.controller(episodes=3)
    with pytest.raises(ValueError, match="latent cost weights"):
        run.controller(control_weight=0.0)
    with pytest.raises(ValueError, match="the model takes 16×16 frames"):
        c.policy(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        c.policy(np.zeros((16, 16), np.float32))


def test_bad_runs(run, committed_run, cli, tmp_path):
    with pytest.raises(ekvae.EkvaeError) as e:
        ekvae.load_run(tmp_path / "nothing")
    assert "run directory does not exist" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ekvae.EkvaeError, match="config.toml: cannot read the run config"):
        ekvae.load_run(empty)
    damaged = tmp_path / "damaged"
    shutil.copytree(committed_run, damaged)
    weights = damaged / "checkpoints" / "epoch-0040" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ekvae.EkvaeError, match="damaged or replaced") as e:
        ekvae.load_run(damaged)
    data_file = tmp_path / "d.npz"
    ekvae.save_dataset(data_file, ekvae.collect(episodes=2, steps=20, size=16, seed=0))
    assert str(e.value) == cli_error(cli("eval", "--run", damaged, "--data", data_file, check=False))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="the model takes 16×16 frames"):
        run.encode(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"actions have shape \(4,\); expected \(5,\)"):
        run.filter(np.zeros((5, 16, 16), np.uint8), np.zeros(4))
    with pytest.raises(ValueError, match="give K − 1 \\+ H actions"):
        run.predict(np.zeros((5, 16, 16), np.uint8), np.zeros(4))
