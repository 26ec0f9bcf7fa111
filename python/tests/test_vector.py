"""The vectorised environment: Gymnasium's vector API, shapes, dtypes and next-step autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import ekvae


@pytest.mark.parametrize("obs_type,shape,dtype", [("pixels", (5, 24, 24), np.uint8), ("state", (5, 3), np.float32)])
def test_shapes_and_dtypes(obs_type, shape, dtype):
    envs = gym.make_vec(ekvae.ENV_ID, num_envs=5, size=24, obs_type=obs_type)
    assert isinstance(envs.unwrapped, ekvae.PixelPendulumVectorEnv)
    assert envs.num_envs == 5
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == shape and envs.action_space.shape == (5, 1)
    obs, info = envs.reset(seed=0)
    assert obs.shape == shape and obs.dtype == dtype and envs.observation_space.contains(obs)
    assert info["state"].shape == (5, 2) and info["state"].dtype == np.float64
    obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs.shape == shape and obs.dtype == dtype
    assert rewards.shape == (5,) and rewards.dtype == np.float64 and (rewards <= 0).all()
    assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
    assert not terminated.any() and not truncated.any()


def test_each_pendulum_is_the_single_env_seeded_with_seed_plus_i():
    n = 4
    envs = ekvae.PixelPendulumVectorEnv(num_envs=n, size=16)
    obs, info = envs.reset(seed=7)
    singles = [gym.make(ekvae.ENV_ID, size=16) for _ in range(n)]
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=7 + i)
        np.testing.assert_array_equal(obs[i], o)
        np.testing.assert_array_equal(info["state"][i], inf["state"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        u = rng.uniform(-2, 2, size=(n, 1))
        obs, rewards, _, _, info = envs.step(u)
        for i, env in enumerate(singles):
            o, r, *_, inf = env.step(u[i])
            np.testing.assert_array_equal(obs[i], o)
            np.testing.assert_array_equal(info["state"][i], inf["state"])
            assert rewards[i] == r


def test_next_step_autoreset():
    envs = gym.make_vec(ekvae.ENV_ID, num_envs=3, max_episode_steps=4)
    single = gym.make(ekvae.ENV_ID)
    single.reset(seed=20)
    second_start = single.reset()[1]["state"]  # the generator continues, as in the autoreset
    envs.reset(seed=20)
    for t in range(4):
        obs, rewards, terminated, truncated, info = envs.step(np.ones((3, 1)))
        assert truncated.all() == (t == 3) and not terminated.any()
    # The step after the end: reset, action ignored, reward 0, flags false.
    obs, rewards, terminated, truncated, info = envs.step(np.full((3, 1), 2.0))
    assert (rewards == 0).all() and not truncated.any() and not terminated.any()
    np.testing.assert_array_equal(info["state"][0], second_start)
    o, _ = single.reset(options={"state": second_start})
    np.testing.assert_array_equal(obs[0], o)
    # Then the new episode runs.
    obs, rewards, terminated, truncated, info = envs.step(np.zeros((3, 1)))
    assert (rewards < 0).all() and not truncated.any()


def test_render_and_bad_input():
    envs = ekvae.PixelPendulumVectorEnv(num_envs=2, render_mode="rgb_array", render_size=32)
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    with pytest.raises(ValueError, match="expected 2 torques"):
        envs.step(np.zeros(3))
    with pytest.raises(ValueError, match="not finite"):
        envs.step(np.array([[0.0], [np.inf]]))
    with pytest.raises(ValueError, match="num_envs"):
        ekvae.PixelPendulumVectorEnv(num_envs=0)
