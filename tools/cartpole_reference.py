"""Reference trajectories of `CartPoleSwingUp-v0` from the `gymnasium-cartpole-swingup`
package, for the replay test `envs/tests/cartpole_reference.rs`.

    python3 -m venv /tmp/cp && /tmp/cp/bin/pip install gymnasium-cartpole-swingup==0.1.8
    /tmp/cp/bin/python tools/cartpole_reference.py > envs/tests/data/cartpole_reference.csv

Each episode: `reset(seed=k)` (the package draws a float64 start around hanging at rest),
then 200 actions drawn uniformly from [-s, s] (float64; s = 1.3 exercises clipping, s = 0.3
keeps the cart on the track), stepping on past a termination (the package's step does). Rows: the start (t = 0, no action) and every step's
new state, reward and termination flag. Values are printed with `repr`, so they read back
exactly.
"""

import sys

import gymnasium as gym
import numpy as np

import gymnasium_cartpole_swingup  # noqa: F401  (registers the environment)


def main():
    out = sys.stdout
    out.write(f"# gymnasium-cartpole-swingup {gymnasium_cartpole_swingup.__version__}, "
              f"gymnasium {gym.__version__}, numpy {np.__version__}\n")
    out.write("episode,t,action,x,x_dot,theta,theta_dot,reward,terminated\n")
    for episode in range(5):
        env = gym.make("CartPoleSwingUp-v0").unwrapped
        env.reset(seed=episode)
        rng = np.random.default_rng(100 + episode)
        x = [float(v) for v in env.state]
        out.write(f"{episode},0,,{x[0]!r},{x[1]!r},{x[2]!r},{x[3]!r},,\n")
        for t in range(1, 201):
            scale = 1.3 if episode % 2 == 0 else 0.3
            action = np.array([rng.uniform(-scale, scale)], dtype=np.float64)
            _, reward, terminated, _, _ = env.step(action)
            x = [float(v) for v in env.state]
            out.write(f"{episode},{t},{float(action[0])!r},{x[0]!r},{x[1]!r},{x[2]!r},"
                      f"{x[3]!r},{float(reward)!r},{int(terminated)}\n")


if __name__ == "__main__":
    main()
