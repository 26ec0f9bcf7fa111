"""The PyTorch export: layout, metadata, the CLI subcommand, and a numpy forward pass of the
encoder from the exported file alone that reproduces the Rust encoder's means."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

import ekvae
from conftest import cli_error


def relu(x):
    return np.maximum(x, 0.0)


def encoder_reference(w: dict, frames: np.ndarray):
    """q(a|x) in numpy from the exported tensors (PyTorch layout), float64.

    pixel_unshuffle by r = S/8 → Conv2d(3×3, stride 2, padding 1) + ReLU → flatten (channel,
    row, column) → Linear + ReLU → Linear → (mean, log_var)."""
    x = frames.astype(np.float64) / 255.0
    n, s, _ = x.shape
    r = s // 8
    # [N, S, S] → [N, y, i, x, j] → [N, i, j, y, x] → [N, r², 8, 8]
    blocks = x.reshape(n, 8, r, 8, r).transpose(0, 2, 4, 1, 3).reshape(n, r * r, 8, 8)
    weight = w["encoder.conv.weight"].astype(np.float64)  # [C, r², 3, 3]
    bias = w["encoder.conv.bias"].astype(np.float64)
    padded = np.pad(blocks, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.empty((n, weight.shape[0], 4, 4))
    for oy in range(4):
        for ox in range(4):
            patch = padded[:, :, 2 * oy : 2 * oy + 3, 2 * ox : 2 * ox + 3]
            conv[:, :, oy, ox] = np.einsum("nchw,ochw->no", patch, weight) + bias
    h = relu(conv).reshape(n, -1)
    h = relu(h @ w["encoder.hidden.weight"].T.astype(np.float64) + w["encoder.hidden.bias"])
    out = h @ w["encoder.head.weight"].T.astype(np.float64) + w["encoder.head.bias"]
    m = out.shape[1] // 2
    return out[:, :m], out[:, m:]


@pytest.fixture(scope="module")
def exported(committed_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "pixmpc.safetensors"
    assert ekvae.export_pytorch(committed_run, out) == 23
    return out


def test_layout_and_metadata(exported):
    w = load_file(exported)
    shapes = {k: v.shape for k, v in w.items()}
    assert shapes["encoder.conv.weight"] == (32, 4, 3, 3)
    assert shapes["encoder.hidden.weight"] == (128, 512)
    assert shapes["encoder.head.weight"] == (4, 128)
    assert shapes["decoder.hidden.weight"] == (128, 2)
    assert shapes["decoder.deconv.weight"] == (32, 4, 4, 4)
    assert shapes["transition.F"] == (8, 3, 3) and shapes["transition.B"] == (8, 3, 1)
    assert shapes["transition.Q_diag"] == (8, 3) and shapes["observation.R_diag"] == (2,)
    assert all(v.dtype == np.float32 for v in w.values())
    assert (w["observation.R_diag"] > 1e-4).all() and (w["prior.var"] > 1e-4).all()
    with safe_open(exported, "np") as f:
        meta = f.metadata()
    assert meta["format"] == "pt"
    described = json.loads(meta["ekvae.tensors"])
    assert sorted(described) == sorted(w)
    assert described["encoder.head.weight"]["shape"] == [4, 128]
    assert json.loads(meta["ekvae.config"])["image_size"] == 16
    assert "pixel-unshuffle" in meta["ekvae.forward"]


def test_numpy_encoder_reproduces_the_rust_encoder(exported, committed_run):
    w = load_file(exported)
    frames = ekvae.collect(episodes=4, steps=25, size=16, seed=5)["images"].reshape(-1, 16, 16)
    mean_ref, log_var_ref = encoder_reference(w, frames)
    mean, log_var = ekvae.load_run(committed_run).encode(frames)
    assert np.abs(mean - mean_ref).max() < 1e-5, np.abs(mean - mean_ref).max()
    assert np.abs(log_var - log_var_ref).max() < 1e-5


def test_cli_export_is_the_same_file(exported, committed_run, cli, tmp_path):
    out = tmp_path / "cli.safetensors"
    result = cli("export", "--pytorch", committed_run, out)
    assert out.read_bytes() == exported.read_bytes()
    assert "23 tensors" in result.stdout


def test_bad_runs_are_refused(cli, tmp_path):
    with pytest.raises(ekvae.EkvaeError) as e:
        ekvae.export_pytorch(tmp_path / "none", tmp_path / "w.safetensors")
    assert str(e.value) == cli_error(
        cli("export", "--pytorch", tmp_path / "none", tmp_path / "w.safetensors", check=False)
    )
    assert not (tmp_path / "w.safetensors").exists()
