"""The vectorised environments (pendulum and cart-pole): Gymnasium's vector API, shapes, dtypes and next-step autoreset."""

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
    with pytest.raises(ValueError, match="expected 2 actions"):
        envs.step(np.zeros(3))
    with pytest.raises(ValueError, match="not finite"):
        envs.step(np.array([[0.0], [np.inf]]))
    with pytest.raises(ValueError, match="num_envs"):
        ekvae.PixelPendulumVectorEnv(num_envs=0)


@pytest.mark.parametrize("env_id", list(ekvae.CARTPOLE_ENV_IDS))
@pytest.mark.parametrize("obs_type,shape,dtype", [("pixels", (3, 16, 16), np.uint8), ("state", (3, 4), np.float64)])
def test_cartpole_vector_is_the_single_env_seeded_with_seed_plus_i(env_id, obs_type, shape, dtype):
    """`make_vec` of each cart-pole id: cart-pole i is the single env reset with seed + i, step for
    step (observations, rewards, flags, states), through the cart leaving the track."""
    gym_id = ekvae.CARTPOLE_ENV_IDS[env_id]
    n = 3
    envs = gym.make_vec(gym_id, num_envs=n, size=16, obs_type=obs_type)
    assert isinstance(envs.unwrapped, ekvae.PixelCartPoleSwingUpVectorEnv)
    assert envs.unwrapped.env_id == env_id
    assert envs.observation_space.shape == shape and envs.action_space.shape == (n, 1)
    obs, info = envs.reset(seed=11)
    assert obs.shape == shape and obs.dtype == dtype and envs.observation_space.contains(obs)
    singles = [gym.make(gym_id, size=16, obs_type=obs_type) for _ in range(n)]
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=11 + i)
        np.testing.assert_array_equal(obs[i], o)
        np.testing.assert_array_equal(info["state"][i], inf["state"])
    # Full force to the right: every cart leaves the track (|x| > 2.4) within 100 steps; the
    # step after a cart's termination resets it (reward 0, both flags false, a fresh start).
    u = np.ones((n, 1))
    ended = np.zeros(n, dtype=bool)
    restarted = np.zeros(n, dtype=bool)
    for _ in range(100):
        obs, rewards, terminated, truncated, info = envs.step(u)
        assert obs.dtype == dtype and info["state"].shape == (n, 4)
        for i, env in enumerate(singles):
            if restarted[i]:
                continue
            if ended[i]:
                assert rewards[i] == 0 and not terminated[i] and not truncated[i]
                assert abs(info["state"][i][0]) < 2.4, "reset onto the track"
                restarted[i] = True
                continue
            o, r, term, trunc, inf = env.step(u[i])
            np.testing.assert_array_equal(obs[i], o)
            np.testing.assert_array_equal(info["state"][i], inf["state"])
            assert rewards[i] == r and terminated[i] == term and not truncated[i]
            ended[i] = term
        if restarted.all():
            break
    assert restarted.all(), "full force drives every cart off the track, then it is reset"


def test_cartpole_vector_autoreset_and_time_limit():
    envs = gym.make_vec("ekvae/PixelCartPoleSwingUp-v0", num_envs=2, max_episode_steps=3)
    assert envs.unwrapped.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    envs.reset(seed=5)
    for t in range(3):
        _, rewards, terminated, truncated, _ = envs.step(np.zeros((2, 1)))
        assert truncated.all() == (t == 2) and not terminated.any()
    # The step after the end resets (action ignored, reward 0, flags false); the generator goes on.
    single = ekvae.PixelCartPoleSwingUpEnv(size=32)
    single.reset(seed=5)
    second_start = single.reset()[1]["state"]
    obs, rewards, terminated, truncated, info = envs.step(np.ones((2, 1)))
    assert (rewards == 0).all() and not truncated.any() and not terminated.any()
    np.testing.assert_array_equal(info["state"][0], second_start)
    np.testing.assert_array_equal(obs[0], single.reset(options={"state": second_start})[0])
    # The default time limit is the package's.
    assert gym.spec("ekvae/PixelCartPoleSwingUp-v0").max_episode_steps == 1000


def test_cartpole_vector_render_and_bad_input():
    envs = ekvae.PixelCartPoleSwingUpVectorEnv(
        num_envs=2, env_id="CartPoleSwingUpBigPoleGhost-v0", render_mode="rgb_array", render_size=24
    )
    envs.reset(seed=0)
    frames = envs.render()
    single = ekvae.PixelCartPoleSwingUpEnv(
        env_id="CartPoleSwingUpBigPoleGhost-v0", render_mode="rgb_array", render_size=24
    )
    single.reset(seed=1)
    np.testing.assert_array_equal(frames[1], single.render())
    with pytest.raises(ValueError, match="expected 2 actions"):
        envs.step(np.zeros(3))
    with pytest.raises(ValueError, match="not finite"):
        envs.step(np.array([[np.nan], [0.0]]))
    with pytest.raises(ValueError, match="unknown environment id"):
        ekvae.PixelCartPoleSwingUpVectorEnv(num_envs=2, env_id="CartPole-v1")
    with pytest.raises(ValueError, match="obs_type"):
        ekvae.PixelCartPoleSwingUpVectorEnv(num_envs=2, obs_type="rgb")
