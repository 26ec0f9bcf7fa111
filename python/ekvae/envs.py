"""Gymnasium classes over the Rust pendulum and cart-pole (``ekvae._ekvae.PendulumCore``,
``CartPoleCore`` and, for N of either, ``VectorCore``).

The physics is Gymnasium's ``Pendulum-v1`` to the last bit in float64 (``ekvae_envs::pendulum``),
the frames are the anti-aliased renderer of ``ekvae collect`` (``ekvae_envs::render``): a white
rod on black, θ = 0 up, counter-clockwise positive. Stepping, seeding and rendering happen in
Rust; these classes only hold the Gymnasium spaces and conventions.

Actions are converted to float64 before they reach Rust, so a float32 action ``a`` acts as the
float64 number ``float(a)``. (Gymnasium's own ``Pendulum-v1`` computes part of its step in
float32 when given a float32 action under numpy 2, about 1.2e-8 per step away from the float64
step; give both float64 actions to compare trajectories exactly.)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import _ekvae

MAX_TORQUE = 2.0
MAX_SPEED = 8.0


def _observation_space(size: int, obs_type: str) -> spaces.Box:
    if obs_type == "pixels":
        return spaces.Box(0, 255, (size, size), np.uint8)
    if obs_type == "state":
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32)
    raise ValueError(f'unknown obs_type {obs_type!r}; use "pixels" or "state"')


def _action_space() -> spaces.Box:
    return spaces.Box(-MAX_TORQUE, MAX_TORQUE, (1,), np.float32)


def _torque(action: Any) -> float:
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != 1:
        raise ValueError(f"action has {a.size} values; the pendulum takes one torque")
    return float(a[0])


def _check_render_mode(render_mode: str | None, metadata: dict) -> None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"unknown render_mode {render_mode!r}; use None or 'rgb_array'")


class _CoreEnv(gym.Env):
    """What the single environments share: the exact state and ``render()`` from the Rust core
    (``self._core``), at ``self.render_size``."""

    @property
    def state(self) -> np.ndarray:
        """The exact state (float64): the pendulum's ``[θ, θ̇]`` (θ not wrapped), the
        cart-pole's ``[x, ẋ, θ, θ̇]``."""
        return np.array(self._core.state(), dtype=np.float64)

    def render(self):
        if self.render_mode == "rgb_array":
            return self._core.frame(self.render_size, True)
        return None

    def _check_render_mode(self, render_mode: str | None) -> None:
        _check_render_mode(render_mode, self.metadata)

    def _reset_core(self, seed: int | None):
        """Resets the core from its generator, seeded with `seed`; a first reset without a seed
        draws one from Gymnasium's ``np_random``. Returns the state."""
        if seed is None and not self._seeded:
            seed = int(self.np_random.integers(0, 2**63 - 1))
        state = self._core.reset(None if seed is None else int(seed))
        self._seeded = True
        return state


class PixelPendulumEnv(_CoreEnv):
    """Gymnasium's ``Pendulum-v1`` observed as ``size × size`` grayscale frames.

    Registered as ``ekvae/PixelPendulum-v0`` (200-step time limit, as ``Pendulum-v1``).

    Args:
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns ``uint8 [R, R, 3]``).
        size: side S of the observed frames (default 16, the committed model's size).
        obs_type: ``"pixels"`` (``uint8 [S, S]``) or ``"state"`` (Pendulum-v1's float32
            ``[cos θ, sin θ, θ̇]``).
        render_size: side R of ``render()``'s frames (default 256).

    ``reset(seed=...)`` seeds the Rust generator (θ ~ U(−π, π), θ̇ ~ U(−1, 1)); a first
    ``reset()`` without a seed draws one from Gymnasium's ``np_random``.
    ``reset(options={"state": (θ, θ̇)})`` starts from a given state. ``info["state"]`` is the
    exact state ``[θ, θ̇]`` (float64, θ not wrapped) after every reset and step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        render_mode: str | None = None,
        size: int = 16,
        obs_type: str = "pixels",
        render_size: int = 256,
    ):
        self._check_render_mode(render_mode)
        self.observation_space = _observation_space(size, obs_type)
        self.action_space = _action_space()
        self.render_mode = render_mode
        self.size = size
        self.obs_type = obs_type
        self.render_size = render_size
        self._core = _ekvae.PendulumCore(size, obs_type)
        self._seeded = False

    def _info(self, state) -> dict:
        return {"state": np.array(state, dtype=np.float64)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options is not None and "state" in options:
            theta, theta_dot = (float(v) for v in np.asarray(options["state"]).reshape(2))
            state = self._core.reset_to(theta, theta_dot)
        else:
            state = self._reset_core(seed)
        return self._core.observation(), self._info(state)

    def step(self, action):
        reward, state = self._core.step(_torque(action))
        return self._core.observation(), reward, False, False, self._info(state)


class _CoreVectorEnv(VectorEnv):
    """What the vector environments share: ``reset``, ``step`` and ``render`` over the Rust
    ``VectorCore`` (``self._core``), next-step autoreset and the seeding convention."""

    metadata = {
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def _setup(self, num_envs, single_observation_space, single_action_space, render_mode):
        _check_render_mode(render_mode, self.metadata)
        self.num_envs = num_envs
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, num_envs)
        self.action_space = batch_space(single_action_space, num_envs)
        self.render_mode = render_mode
        self._seeded = False

    def _obs(self, obs):
        return obs if self.obs_type == "pixels" else obs.astype(self.single_observation_space.dtype, copy=False)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple)):
            if len(seed) != self.num_envs:
                raise ValueError(f"{len(seed)} seeds for {self.num_envs} environments")
            seeds = [None if s is None else int(s) for s in seed]
            first = next((s for s in seeds if s is not None), None)
        else:
            first = seed
            if seed is None and not self._seeded:
                seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
            seeds = [None] * self.num_envs if seed is None else [int(seed) + i for i in range(self.num_envs)]
        if first is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(first)
        self._seeded = True
        obs, states = self._core.reset(seeds)
        return self._obs(obs), {"state": states}

    def step(self, actions):
        obs, rewards, terminated, truncated, states = self._core.step(
            np.asarray(actions, dtype=np.float64)
        )
        return self._obs(obs), rewards, terminated, truncated, {"state": states}

    def render(self):
        if self.render_mode == "rgb_array":
            return tuple(self._core.frames(self.render_size, True))
        return None


class PixelPendulumVectorEnv(_CoreVectorEnv):
    """``num_envs`` pendulums stepped together in Rust, returning batched numpy arrays.

    ``gymnasium.make_vec("ekvae/PixelPendulum-v0", num_envs=N)`` builds it. Observations are
    ``uint8 [N, S, S]`` (or ``float32 [N, 3]`` with ``obs_type="state"``), rewards ``float64
    [N]``, terminated/truncated ``bool [N]``; ``info["state"]`` holds the states ``float64
    [N, 2]``. Episodes are truncated after ``max_episode_steps`` (200) steps.

    Autoreset mode: **next-step** (``AutoresetMode.NEXT_STEP``, Gymnasium's default): the step
    after a pendulum's episode ended resets that pendulum, ignores its action and returns its
    first observation with reward 0 and ``terminated = truncated = False``.
    ``reset(seed=s)`` seeds pendulum i with ``s + i`` (a list gives one seed each), as
    Gymnasium's ``SyncVectorEnv`` does.
    """

    metadata = {**_CoreVectorEnv.metadata, "render_fps": 20}

    def __init__(
        self,
        num_envs: int = 1,
        size: int = 16,
        obs_type: str = "pixels",
        render_mode: str | None = None,
        render_size: int = 64,
        max_episode_steps: int = 200,
    ):
        self._setup(num_envs, _observation_space(size, obs_type), _action_space(), render_mode)
        self.size = size
        self.obs_type = obs_type
        self.render_size = render_size
        self._core = _ekvae.VectorCore(num_envs, size, obs_type, max_episode_steps, "Pendulum-v1")


def _cartpole_observation_space(size: int, obs_type: str) -> spaces.Box:
    if obs_type == "pixels":
        return spaces.Box(0, 255, (size, size), np.uint8)
    if obs_type == "state":
        return spaces.Box(-np.inf, np.inf, (4,), np.float64)
    raise ValueError(f'unknown obs_type {obs_type!r}; use "pixels" or "state"')


def _cartpole_action_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (1,), np.float32)


class PixelCartPoleSwingUpEnv(_CoreEnv):
    """The cart-pole swing-up (``CartPoleSwingUp-v0`` of the ``gymnasium-cartpole-swingup``
    package: its physics, reward, reset and termination) observed as ``size × size`` grayscale
    frames.

    Registered as ``ekvae/PixelCartPoleSwingUp-v0``, ``ekvae/PixelCartPoleSwingUpBigPole-v0``
    and ``ekvae/PixelCartPoleSwingUpBigPoleGhost-v0`` (1000-step time limit): the same system,
    the frames drawn as the workspace's environments of those ids draw them (the pole drawn
    2.5× longer and wider; also the next step's pole as a ghost), so a model trained on ``ekvae
    collect --env ID`` data sees the frames it was trained on.

    Args:
        env_id: the workspace's id (``"CartPoleSwingUp-v0"`` and the two above).
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns ``uint8 [R, R, 3]``).
        size: side S of the observed frames (default 32).
        obs_type: ``"pixels"`` (``uint8 [S, S]``) or ``"state"`` (the state ``float64 [4]``,
            ``[x, ẋ, θ, θ̇]``).
        render_size: side R of ``render()``'s frames (default 256).

    The action is one number in ``[-1, 1]`` (10 N of force per unit; clipped).
    ``reset(seed=...)`` seeds the Rust generator (``ekvae mpc --env ID --seed K`` seeds episode
    i with ``K + i``); ``reset(options={"state": (x, ẋ, θ, θ̇)})`` starts from a given state.
    ``terminated`` is the package's: the cart left the track (|x| > 2.4). ``info["state"]`` is
    the exact state after every reset and step (float64, θ wrapped into [−π, π)).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        env_id: str = "CartPoleSwingUp-v0",
        render_mode: str | None = None,
        size: int = 32,
        obs_type: str = "pixels",
        render_size: int = 256,
    ):
        self._check_render_mode(render_mode)
        self.observation_space = _cartpole_observation_space(size, obs_type)
        self.action_space = _cartpole_action_space()
        self._core = _ekvae.CartPoleCore(env_id, size)
        self.env_id = env_id
        self.render_mode = render_mode
        self.size = size
        self.obs_type = obs_type
        self.render_size = render_size
        self._seeded = False

    def _obs(self, state):
        if self.obs_type == "pixels":
            return self._core.frame()
        return np.array(state, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options is not None and "state" in options:
            state = self._core.reset_to([float(v) for v in np.asarray(options["state"]).reshape(4)])
        else:
            state = self._reset_core(seed)
        return self._obs(state), {"state": np.array(state, dtype=np.float64)}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.size != 1:
            raise ValueError(f"action has {a.size} values; the cart-pole takes one")
        reward, terminated, state = self._core.step(float(a[0]))
        info = {"state": np.array(state, dtype=np.float64)}
        return self._obs(state), reward, terminated, False, info


class PixelCartPoleSwingUpVectorEnv(_CoreVectorEnv):
    """``num_envs`` cart-poles of one workspace id stepped together in Rust.

    ``gymnasium.make_vec("ekvae/PixelCartPoleSwingUp-v0", num_envs=N)`` (or the big-pole and
    ghost ids) builds it. Observations are ``uint8 [N, S, S]`` (or the states ``float64 [N,
    4]`` with ``obs_type="state"``), rewards ``float64 [N]``, terminated (the cart left the
    track) and truncated (``max_episode_steps``, 1000) ``bool [N]``; ``info["state"]`` holds
    the states ``float64 [N, 4]``, ``[x, ẋ, θ, θ̇]``.

    Autoreset mode: **next-step**, as :class:`PixelPendulumVectorEnv`: the step after a
    cart-pole's episode ended (terminated or truncated) resets it, ignores its action and
    returns reward 0 with both flags false. ``reset(seed=s)`` seeds cart-pole i with ``s + i``,
    so cart-pole i is :class:`PixelCartPoleSwingUpEnv` reset with ``seed=s + i``.
    """

    metadata = {**_CoreVectorEnv.metadata, "render_fps": 10}

    def __init__(
        self,
        num_envs: int = 1,
        env_id: str = "CartPoleSwingUp-v0",
        size: int = 32,
        obs_type: str = "pixels",
        render_mode: str | None = None,
        render_size: int = 64,
        max_episode_steps: int = 1000,
    ):
        self._setup(
            num_envs, _cartpole_observation_space(size, obs_type), _cartpole_action_space(), render_mode
        )
        self.env_id = env_id
        self.size = size
        self.obs_type = obs_type
        self.render_size = render_size
        self._core = _ekvae.VectorCore(num_envs, size, obs_type, max_episode_steps, env_id)
