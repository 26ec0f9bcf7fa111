"""Frames per second into numpy: ekvae's vector environment (N pendulums stepped and rendered
in Rust) against Gymnasium's `make_vec("Pendulum-v1", vectorization_mode="sync",
render_mode="rgb_array")`, at 16×16 and 64×64 for N = 1, 64, 1024, in one run.

A "frame" is one pendulum's observation after a step, as a numpy array: ekvae's grayscale
`uint8 [N, S, S]` observation batch; Gymnasium's `render()` tuple of `[S, S, 3]` RGB frames, its
Pendulum drawn at S×S (its `screen_dim` set to S; pygame draws it). Each cell runs for about
`--seconds` (Gymnasium at most `--gym-steps` steps: it is slow). Prints the machine's load
average before and after, which the numbers depend on.

    python -m pip install pygame            # Gymnasium's Pendulum renders with pygame
    python python/bench_vector.py
"""

from __future__ import annotations

import argparse
import os
import platform
import time

# pygame (Gymnasium's renderer) without a display or sound device.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import ekvae  # noqa: E402


def timed(step, n: int, seconds: float, max_steps: int) -> float:
    """Frames per second of `step()` (which yields n frames), after one warm-up step."""
    step()
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or steps >= max_steps:
            return steps * n / elapsed


def bench_ekvae(size: int, n: int, seconds: float) -> float:
    envs = ekvae.PixelPendulumVectorEnv(num_envs=n, size=size)
    envs.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-2, 2, size=(n, 1))

    def step():
        obs = envs.step(actions)[0]
        assert obs.shape == (n, size, size)

    return timed(step, n, seconds, 10**9)


def bench_gymnasium(size: int, n: int, seconds: float, max_steps: int) -> float:
    envs = gym.make_vec(
        "Pendulum-v1", num_envs=n, vectorization_mode="sync", render_mode="rgb_array"
    )
    for env in envs.unwrapped.envs:
        env.unwrapped.screen_dim = size
    envs.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-2, 2, size=(n, 1)).astype(np.float32)

    def step():
        envs.step(actions)
        frames = envs.render()
        assert len(frames) == n and frames[0].shape == (size, size, 3)

    fps = timed(step, n, seconds, max_steps)
    envs.close()
    return fps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell")
    parser.add_argument("--gym-steps", type=int, default=200, help="most Gymnasium steps per cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--nums", type=int, nargs="+", default=[1, 64, 1024])
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print("| frame | N | ekvae vector env (frames/s) | gymnasium sync + rgb_array (frames/s) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for size in args.sizes:
        for n in args.nums:
            ours = bench_ekvae(size, n, args.seconds)
            theirs = bench_gymnasium(size, n, args.seconds, args.gym_steps)
            print(f"| {size}×{size} | {n} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:,.0f}× |",
                  flush=True)
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
