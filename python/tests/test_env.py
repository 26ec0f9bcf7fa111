"""The Gymnasium environment: API checks, dtypes, seeding, and Pendulum-v1 parity."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ekvae

# Gymnasium's own Pendulum-v1 gets the same advice (its torque space is [-2, 2] too).
ACTION_SPACE_ADVICE = "we recommend using a symmetric and normalized space"


def checked(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=False)
    other = [str(w.message) for w in caught if ACTION_SPACE_ADVICE not in str(w.message)]
    assert not other, other


@pytest.mark.parametrize("obs_type", ["pixels", "state"])
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env(obs_type, render_mode):
    env = gym.make(ekvae.ENV_ID, size=16, obs_type=obs_type, render_mode=render_mode)
    checked(env)


def test_spaces_dtypes_and_render():
    env = gym.make(ekvae.ENV_ID, size=32, render_mode="rgb_array", render_size=48)
    obs, info = env.reset(seed=3)
    assert obs.shape == (32, 32) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert info["state"].dtype == np.float64 and info["state"].shape == (2,)
    obs, reward, terminated, truncated, info = env.step(np.array([1.0], np.float32))
    assert isinstance(reward, float) and reward <= 0
    assert terminated is False and truncated is False
    frame = env.render()
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
    assert (frame[..., 0] == frame[..., 1]).all() and frame.max() == 255
    # Anti-aliased edges: intermediate gray values, white rod on black.
    assert ((obs > 0) & (obs < 255)).any() and obs[0, 0] == 0
    state_env = gym.make(ekvae.ENV_ID, obs_type="state")
    obs, info = state_env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (3,)
    theta, theta_dot = info["state"]
    np.testing.assert_array_equal(
        obs, np.array([np.cos(theta), np.sin(theta), theta_dot], np.float32)
    )


def test_time_limit_and_seeding():
    env = gym.make(ekvae.ENV_ID)
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    c, _ = env.reset(seed=12)
    assert (a == b).all() and not (a == c).all()
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step([0.0])
        if terminated or truncated:
            break
    assert steps == 200 and truncated and not terminated
    # A first reset without a seed works and is random.
    e1, e2 = gym.make(ekvae.ENV_ID), gym.make(ekvae.ENV_ID)
    assert not np.array_equal(e1.reset()[1]["state"], e2.reset()[1]["state"])


def test_state_trajectory_equals_gymnasium_pendulum():
    """200 steps from the same start with the same float64 actions (some beyond the torque
    limit, some driving the velocity into its clip): the states are equal, bit for bit; the
    rewards to the last bits."""
    rng = np.random.default_rng(0)
    ours = gym.make(ekvae.ENV_ID, size=16)
    ref = gym.make("Pendulum-v1")
    for episode in range(5):
        _, info = ours.reset(seed=episode)
        ref.reset(seed=episode)
        ref.unwrapped.state = info["state"].copy()
        for t in range(200):
            u = rng.uniform(-3.0, 3.0, size=1) if episode < 4 else np.array([2.0 * np.sign(np.sin(t / 9))])
            _, r_ours, *_, info = ours.step(u)
            _, r_ref, *_ = ref.step(u)
            np.testing.assert_array_equal(info["state"], ref.unwrapped.state)
            # The reward may differ in its last bits (about one step in seven): ekvae_envs's
            # cost computes 0.1·θ̇·θ̇ as (0.1·θ̇)·θ̇, Gymnasium as 0.1·(θ̇²).
            assert abs(r_ours - float(r_ref)) <= 4 * np.spacing(abs(float(r_ref))), (episode, t)
    assert np.abs(ref.unwrapped.state[1]) <= 8.0


def test_float32_actions_act_as_their_float64_value():
    """A float32 action is converted to float64 exactly before the step (Gymnasium's own
    Pendulum-v1 computes part of its step in float32 for float32 actions under numpy 2)."""
    a, b = gym.make(ekvae.ENV_ID), gym.make(ekvae.ENV_ID)
    a.reset(seed=1)
    b.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(50):
        u32 = rng.uniform(-2, 2, size=1).astype(np.float32)
        *_, ia = a.step(u32)
        *_, ib = b.step(u32.astype(np.float64))
        np.testing.assert_array_equal(ia["state"], ib["state"])


def test_gymnasium_replays_a_dataset_exactly_with_float64_actions():
    """The README's caveat: Gymnasium's Pendulum-v1 replays a dataset's states exactly from
    its float32 actions cast to float64; fed the float32 actions themselves, numpy 2 computes
    part of its step in float32 and drifts by about 1e-8 per step."""
    d = ekvae.collect(episodes=3, steps=100, size=16, seed=6)
    ref = gym.make("Pendulum-v1").unwrapped
    ref.reset(seed=0)
    drift = []
    for ep in range(3):
        ref.state = d["states"][ep, 0].copy()
        for t in range(99):
            ref.step(d["actions"][ep, t].astype(np.float64))
            np.testing.assert_array_equal(ref.state, d["states"][ep, t + 1])
        ref.state = d["states"][ep, 0].copy()
        ref.step(d["actions"][ep, 0])  # float32
        drift.append(np.abs(ref.state - d["states"][ep, 1]).max())
    assert 0 < max(drift) < 1e-7, drift


def test_frames_and_states_equal_the_collected_dataset():
    """Replaying a collected episode's actions from its first state gives its states and its
    frames exactly (the env and `ekvae collect` share the physics and the renderer)."""
    d = ekvae.collect(episodes=2, steps=30, size=16, seed=4)
    env = gym.make(ekvae.ENV_ID, size=16)
    for ep in range(2):
        obs, info = env.reset(options={"state": d["states"][ep, 0]})
        for t in range(30):
            np.testing.assert_array_equal(info["state"], d["states"][ep, t])
            np.testing.assert_array_equal(obs, d["images"][ep, t])
            obs, reward, *_, info = env.step(d["actions"][ep, t].astype(np.float64))
            assert np.float32(reward) == d["rewards"][ep, t]


def test_bad_actions_and_arguments():
    env = gym.make(ekvae.ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step([np.nan])
    with pytest.raises(ValueError, match="one torque"):
        env.step([0.0, 1.0])
    with pytest.raises(ValueError, match="frames are 8 to"):
        gym.make(ekvae.ENV_ID, size=4)
    with pytest.raises(ValueError, match="obs_type"):
        gym.make(ekvae.ENV_ID, obs_type="rgb")
