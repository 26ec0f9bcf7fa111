"""The cart-pole swing-up from Python: the Gymnasium env against the command line's episodes and
frames, and a trained model's pixel controller against `ekvae mpc --run RUN` on the cart-pole."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ekvae


def rows_of(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


STATE = ["x", "x_dot", "theta", "theta_dot"]


@pytest.mark.parametrize("env_id", list(ekvae.CARTPOLE_ENV_IDS))
def test_check_env(env_id):
    for obs_type in ["pixels", "state"]:
        check_env(gym.make(ekvae.CARTPOLE_ENV_IDS[env_id], size=16, obs_type=obs_type).unwrapped)


def test_env_replays_the_true_model_episodes(cli, tmp_path):
    """`ekvae mpc --env CartPoleSwingUpBigPole-v0 --seed 7` seeds episode i with 7 + i: the env
    reset with that seed starts in the same state, and the episode's forces give its states and
    rewards bit for bit."""
    out = tmp_path / "mpc"
    cli("mpc", "--env", "CartPoleSwingUpBigPole-v0", "--episodes", 2, "--seed", 7,
        "--steps", 40, "--gif-size", 16, "--quiet", "--out", out)
    rows = rows_of(out / "steps.csv")
    env = gym.make("ekvae/PixelCartPoleSwingUpBigPole-v0", size=16)
    for ep in range(2):
        steps = [r for r in rows if r["episode"] == ep]
        obs, info = env.reset(seed=7 + ep)
        assert obs.shape == (16, 16) and obs.dtype == np.uint8
        for r, nxt in zip(steps, steps[1:] + [None]):
            assert list(info["state"]) == [r[k] for k in STATE], (ep, r["t"])
            obs, reward, terminated, truncated, info = env.step([r["u0"]])
            assert reward == r["reward"] and not truncated
            assert terminated == (nxt is None and len(steps) < 40)
    # The time limit is the package's: 1000 steps.
    assert env.spec.max_episode_steps == 1000


@pytest.mark.parametrize("env_id", list(ekvae.CARTPOLE_ENV_IDS))
def test_frames_equal_the_collected_dataset(env_id):
    d = ekvae.collect(episodes=2, steps=5, size=16, seed=3, env=env_id)
    env = gym.make(ekvae.CARTPOLE_ENV_IDS[env_id], size=16)
    for ep in range(2):
        for t in range(5):
            obs, info = env.reset(options={"state": d["states"][ep, t]})
            np.testing.assert_array_equal(obs, d["images"][ep, t])
    rgb = gym.make(ekvae.CARTPOLE_ENV_IDS[env_id], render_mode="rgb_array", render_size=24)
    rgb.reset(seed=0)
    frame = rgb.render()
    assert frame.shape == (24, 24, 3) and (frame[..., 0] == frame[..., 2]).all()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown cart-pole id"):
        ekvae.PixelCartPoleSwingUpEnv(env_id="Pendulum-v1")
    with pytest.raises(ValueError, match="unknown obs_type"):
        ekvae.PixelCartPoleSwingUpEnv(obs_type="rgb")
    with pytest.raises(ValueError, match="frames are"):
        ekvae.PixelCartPoleSwingUpEnv(size=2)
    env = ekvae.PixelCartPoleSwingUpEnv(size=16)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step([float("nan")])
    with pytest.raises(ValueError, match="takes one"):
        env.step([0.1, 0.2])
    with pytest.raises(ValueError, match="not finite"):
        env.reset(options={"state": [0, 0, float("inf"), 0]})


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory, cli):
    """A one-epoch 16×16 model of `CartPoleSwingUp-v0` (untrained for control, but a model)."""
    d = tmp_path_factory.mktemp("cartpole")
    cli("collect", "--env", "CartPoleSwingUp-v0", "--episodes", 8, "--steps", 20, "--size", 16,
        "--seed", 0, "--out", d / "train.npz", "--quiet")
    cfg = d / "tiny.toml"
    cfg.write_text(
        "epochs = 1\nbatch_size = 4\nseq_len = 8\nsteps_per_epoch = 2\nval_fraction = 0.2\n"
        "[model]\nimage_size = 16\nchannels = 4\nhidden = 16\ntransition_hidden = 8\n"
        "num_bases = 2\n"
    )
    cli("train", "--data", d / "train.npz", "--out", d / "run", "--config", cfg,
        "--state-dim", 4, "--aux-dim", 3, "--quiet")
    return d / "run"


def test_controller_equals_the_cli_on_the_cartpole(cartpole_run, cli, tmp_path):
    """The run's controller plans toward the cart-pole's goal (its own environment, read from
    the run): driven on the Gymnasium env from the CLI's seeded start, with the CLI's seed for
    its random multi-starts, every action equals `ekvae mpc --run RUN`'s, bit for bit."""
    out = tmp_path / "mpc"
    cli("mpc", "--run", cartpole_run, "--episodes", 1, "--seed", 3, "--steps", 25,
        "--gif-size", 16, "--quiet", "--out", out)
    rows = rows_of(out / "steps.csv")
    run = ekvae.load_run(cartpole_run)
    controller = run.controller(seed=3)  # the seed of the planner's random starts, as --seed
    assert controller.horizon == 30 and controller.goal.shape == (4,)
    env = gym.make("ekvae/PixelCartPoleSwingUp-v0", size=16)
    obs, info = env.reset(seed=3)
    controller.reset()
    for r in rows:
        assert list(info["state"]) == [r[k] for k in STATE], r["t"]
        u = controller.policy(obs)
        assert u == r["u0"], r
        obs, reward, terminated, truncated, info = env.step([u])
        assert reward == r["reward"]
        if terminated:
            break
    assert len(rows) >= 1
