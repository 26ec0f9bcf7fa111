"""A model of colour frames from Python: frames are (..., S, S, C), channels last, as
Gymnasium's image observations; what the model draws comes back the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ekvae


@pytest.fixture(scope="module")
def colour(tmp_path_factory, cli):
    """A one-epoch 16×16 model of three-channel recorded frames (the pendulum's frame, its
    negative and its half), and the frames of another dataset like them."""
    d = tmp_path_factory.mktemp("colour")

    def coloured(seed):
        g = ekvae.collect(episodes=6, steps=30, size=16, seed=seed)["images"]
        rgb = np.stack([g, 255 - g, g // 2], axis=-1)
        n, t = rgb.shape[:2]
        meta = {"format_version": 2, "episodes": n, "steps": t, "size": 16}
        actions = ekvae.collect(episodes=6, steps=30, size=16, seed=seed)["actions"]
        return {
            "images": rgb,
            "actions": actions,
            "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        }

    ekvae.save_dataset(d / "train.npz", coloured(0))
    cfg = d / "tiny.toml"
    cfg.write_text(
        "epochs = 1\nbatch_size = 4\nseq_len = 8\nsteps_per_epoch = 2\nval_fraction = 0.2\n"
        "[model]\nchannels = 4\nhidden = 16\ntransition_hidden = 8\nnum_bases = 2\n"
    )
    cli("train", "--data", d / "train.npz", "--out", d / "run", "--config", cfg,
        "--state-dim", 3, "--aux-dim", 2, "--quiet")
    return ekvae.load_run(d / "run"), coloured(1)


def test_colour_run_reads_and_draws_channels_last(colour):
    run, data = colour
    frames, actions = data["images"], data["actions"]
    assert (run.image_size, run.image_channels) == (16, 3)
    assert "image_channels = 3" in run.config_toml
    mean, log_var = run.encode(frames)
    assert mean.shape == (6, 30, 2) and log_var.shape == (6, 30, 2)
    one, _ = run.encode(frames[0, 3])
    np.testing.assert_allclose(one, mean[0, 3], atol=1e-5)
    # Every channel is read: swapping two changes the encoding.
    swapped, _ = run.encode(frames[0, 3][..., [1, 0, 2]])
    assert np.abs(swapped - one).max() > 1e-4

    f = run.filter(frames[0], actions[0])
    assert f["mean"].shape == (30, 3) and np.isfinite(f["mean"]).all()
    k, h = 10, 5
    latents, predicted = run.predict(frames[0, :k], actions[0, : k - 1 + h])
    assert latents.shape == (h, 3) and predicted.shape == (h, 16, 16, 3)
    assert ((predicted >= 0) & (predicted <= 1)).all()
    decoded = run.decode(latents)
    assert decoded.shape == (h, 16, 16, 3)
    np.testing.assert_allclose(decoded, predicted, atol=1e-6)


def test_colour_run_refuses_gray_frames(colour):
    run, data = colour
    with pytest.raises(ValueError, match=r"3 channel\(s\) \(shape \(\.\.\., 16, 16, 3\)\)"):
        run.encode(data["images"][..., 0])
    with pytest.raises(ValueError, match="16, 16, 3"):
        run.encode(np.zeros((2, 16, 16, 4), np.uint8))
    # A run of recorded data has no environment to control.
    with pytest.raises(ValueError, match="recorded"):
        run.controller()
