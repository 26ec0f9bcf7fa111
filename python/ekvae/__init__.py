"""ekvae from Python: the pixel pendulum as a Gymnasium environment, datasets, trained EKVAE
world models and their pixel MPC controller, and the PyTorch export.

Everything runs in Rust (the ``ekvae`` workspace); this package is a thin layer over the native
module ``ekvae._ekvae``. Importing it registers the Gymnasium ids

- ``ekvae/PixelPendulum-v0``: Pendulum-v1 observed as rendered grayscale frames (``uint8``);
  ``gymnasium.make("ekvae/PixelPendulum-v0", size=16, obs_type="pixels" | "state")``;
  ``gymnasium.make_vec("ekvae/PixelPendulum-v0", num_envs=N)`` steps N pendulums in Rust.
- ``ekvae/PixelCartPoleSwingUp-v0``, ``ekvae/PixelCartPoleSwingUpBigPole-v0``,
  ``ekvae/PixelCartPoleSwingUpBigPoleGhost-v0``: the cart-pole swing-up observed as frames
  drawn as the workspace's environment of that id draws them (``size=32`` by default);
  ``gymnasium.make_vec(id, num_envs=N)`` steps N cart-poles in Rust.

Functions: :func:`collect`, :func:`load_dataset`, :func:`save_dataset`, :func:`load_run`,
:func:`export_pytorch`. Errors from Rust are ``ValueError`` (bad arguments), ``OSError`` and
its subclasses (files), or :class:`EkvaeError` (bad datasets or runs, numerical failures), with
the one-line message the ``ekvae`` command line prints.
"""

from __future__ import annotations

import gymnasium as _gym

from . import _ekvae
from ._ekvae import (
    Controller,
    EkvaeError,
    Run,
    collect,
    export_pytorch,
    load_dataset,
    load_run,
    save_dataset,
)
from .envs import (
    PixelCartPoleSwingUpEnv,
    PixelCartPoleSwingUpVectorEnv,
    PixelPendulumEnv,
    PixelPendulumVectorEnv,
)

__version__ = _ekvae.__version__

ENV_ID = "ekvae/PixelPendulum-v0"

if ENV_ID not in _gym.registry:
    _gym.register(
        id=ENV_ID,
        entry_point="ekvae.envs:PixelPendulumEnv",
        vector_entry_point="ekvae.envs:PixelPendulumVectorEnv",
        max_episode_steps=200,
    )

#: The Gymnasium id of each cart-pole environment of the workspace.
CARTPOLE_ENV_IDS = {
    "CartPoleSwingUp-v0": "ekvae/PixelCartPoleSwingUp-v0",
    "CartPoleSwingUpBigPole-v0": "ekvae/PixelCartPoleSwingUpBigPole-v0",
    "CartPoleSwingUpBigPoleGhost-v0": "ekvae/PixelCartPoleSwingUpBigPoleGhost-v0",
}

for _env_id, _gym_id in CARTPOLE_ENV_IDS.items():
    if _gym_id not in _gym.registry:
        _gym.register(
            id=_gym_id,
            entry_point="ekvae.envs:PixelCartPoleSwingUpEnv",
            vector_entry_point="ekvae.envs:PixelCartPoleSwingUpVectorEnv",
            max_episode_steps=1000,
            kwargs={"env_id": _env_id},
        )

__all__ = [
    "CARTPOLE_ENV_IDS",
    "ENV_ID",
    "Controller",
    "EkvaeError",
    "PixelCartPoleSwingUpEnv",
    "PixelCartPoleSwingUpVectorEnv",
    "PixelPendulumEnv",
    "PixelPendulumVectorEnv",
    "Run",
    "collect",
    "export_pytorch",
    "load_dataset",
    "load_run",
    "save_dataset",
]
