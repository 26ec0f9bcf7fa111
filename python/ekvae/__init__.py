"""ekvae from Python: the pixel pendulum as a Gymnasium environment, datasets, trained EKVAE
world models and their pixel MPC controller, and the PyTorch export.

Everything runs in Rust (the ``ekvae`` workspace); this package is a thin layer over the native
module ``ekvae._ekvae``. Importing it registers the Gymnasium ids

- ``ekvae/PixelPendulum-v0``: Pendulum-v1 observed as rendered grayscale frames (``uint8``);
  ``gymnasium.make("ekvae/PixelPendulum-v0", size=16, obs_type="pixels" | "state")``;
  ``gymnasium.make_vec("ekvae/PixelPendulum-v0", num_envs=N)`` steps N pendulums in Rust.

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
from .envs import PixelPendulumEnv, PixelPendulumVectorEnv

__version__ = _ekvae.__version__

ENV_ID = "ekvae/PixelPendulum-v0"

if ENV_ID not in _gym.registry:
    _gym.register(
        id=ENV_ID,
        entry_point="ekvae.envs:PixelPendulumEnv",
        vector_entry_point="ekvae.envs:PixelPendulumVectorEnv",
        max_episode_steps=200,
    )

__all__ = [
    "ENV_ID",
    "Controller",
    "EkvaeError",
    "PixelPendulumEnv",
    "PixelPendulumVectorEnv",
    "Run",
    "collect",
    "export_pytorch",
    "load_dataset",
    "load_run",
    "save_dataset",
]
