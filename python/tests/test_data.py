"""Datasets: `collect` equals `ekvae collect`'s file, round trips, and clean errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ekvae
from conftest import cli_error

KEYS = ["images", "actions", "states", "rewards", "meta"]


def assert_same(a, b):
    assert sorted(a) == sorted(b) == sorted(KEYS)
    for k in KEYS:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_collect_arrays():
    d = ekvae.collect(episodes=3, steps=7, size=16, seed=2, policy="uniform:-1,1")
    assert d["images"].shape == (3, 7, 16, 16) and d["images"].dtype == np.uint8
    assert d["actions"].shape == (3, 7, 1) and d["actions"].dtype == np.float32
    assert d["states"].shape == (3, 7, 2) and d["states"].dtype == np.float64
    assert d["rewards"].shape == (3, 7) and d["rewards"].dtype == np.float32
    meta = json.loads(d["meta"].tobytes())
    assert meta["policy"] == "uniform:-1,1" and meta["size"] == 16 and meta["seed"] == 2
    assert np.abs(d["actions"]).max() <= 1
    # The arrays own their memory (handed over from Rust, not copied into a view of a temporary).
    assert d["images"].flags["C_CONTIGUOUS"] and d["images"].flags["WRITEABLE"]
    assert_same(d, ekvae.collect(episodes=3, steps=7, size=16, seed=2, policy="uniform:-1,1", threads=1))


def test_collect_equals_the_cli_file(cli, tmp_path):
    path = tmp_path / "cli.npz"
    cli("collect", "--episodes", 4, "--steps", 12, "--size", 16, "--seed", 9, "--out", path, "--quiet")
    ours = ekvae.collect(episodes=4, steps=12, size=16, seed=9)
    with np.load(path) as f:
        assert_same({k: f[k] for k in f.files}, ours)
    assert_same(ekvae.load_dataset(path), ours)


def test_collect_cartpole_and_recorded_data(tmp_path):
    d = ekvae.collect(episodes=2, steps=6, size=16, seed=1, env="CartPoleSwingUp-v0")
    assert d["states"].shape == (2, 6, 4) and d["actions"].shape == (2, 6, 1)
    meta = json.loads(d["meta"].tobytes())
    assert meta["env"] == "CartPoleSwingUp-v0" and meta["state_names"] == ["x", "x_dot", "theta", "theta_dot"]
    # Recorded data: 3-channel frames, 2-d actions, no states, no rewards, no environment.
    rec = {
        "images": np.zeros((2, 6, 8, 8, 3), np.uint8),
        "actions": np.ones((2, 6, 2), np.float32),
        "meta": np.frombuffer(json.dumps({"format_version": 2, "episodes": 2, "steps": 6, "size": 8}).encode(), np.uint8),
    }
    path = tmp_path / "rec.npz"
    ekvae.save_dataset(path, rec)
    back = ekvae.load_dataset(path)
    assert sorted(back) == ["actions", "images", "meta"]
    assert back["images"].shape == (2, 6, 8, 8, 3) and back["actions"].shape == (2, 6, 2)
    with pytest.raises(ValueError, match="not registered"):
        ekvae.collect(episodes=1, steps=2, size=8, env="CartPole-v1")


def test_save_load_round_trip(tmp_path):
    d = ekvae.collect(episodes=2, steps=5, size=8, seed=0, policy="zero")
    path = tmp_path / "sub.npz"
    ekvae.save_dataset(path, d)
    assert_same(ekvae.load_dataset(path), d)
    with np.load(path) as f:
        assert_same({k: f[k] for k in f.files}, d)
    # A dataset whose arrays numpy rebuilt (e.g. a subset) saves too.
    sub = {k: (np.ascontiguousarray(v[:1]) if k != "meta" else v) for k, v in d.items()}
    meta = json.loads(d["meta"].tobytes())
    meta["episodes"] = 1
    sub["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    ekvae.save_dataset(path, sub)
    assert ekvae.load_dataset(path)["images"].shape == (1, 5, 8, 8)


def test_errors_are_the_cli_messages(cli, tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(FileNotFoundError) as e:
        ekvae.load_dataset(missing)
    assert str(e.value) == cli_error(cli("inspect", missing, check=False))

    good = tmp_path / "good.npz"
    ekvae.save_dataset(good, ekvae.collect(episodes=2, steps=4, size=8, seed=0))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ekvae.EkvaeError) as e:
        ekvae.load_dataset(truncated)
    assert "truncated or corrupt" in str(e.value)
    assert str(e.value) == cli_error(cli("inspect", truncated, check=False))

    wrong = tmp_path / "wrong.npz"
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["actions"] = arrays["actions"][:, :3]
    np.savez(wrong, **arrays)
    with pytest.raises(ekvae.EkvaeError, match="array 'actions' has shape") as e:
        ekvae.load_dataset(wrong)
    assert str(e.value) == cli_error(cli("inspect", wrong, check=False))

    with pytest.raises(ValueError) as e:
        ekvae.collect(episodes=0)
    assert str(e.value) == cli_error(cli("collect", "--episodes", 0, "--out", tmp_path / "x.npz", check=False))
    with pytest.raises(ValueError) as e:
        ekvae.collect(size=12)
    assert "multiple of 8" in str(e.value)
    with pytest.raises(ValueError, match="unknown policy"):
        ekvae.collect(policy="sometimes")
    with pytest.raises(ValueError, match="threads"):
        ekvae.collect(episodes=1, threads=0)


def test_save_dataset_refuses_bad_arrays(tmp_path):
    d = ekvae.collect(episodes=2, steps=4, size=8, seed=0)
    bad = dict(d, actions=d["actions"].astype(np.float64))
    with pytest.raises(ValueError, match="actions must be a numpy array of dtype float32"):
        ekvae.save_dataset(tmp_path / "a.npz", bad)
    bad = dict(d, states=d["states"][:, :3])
    with pytest.raises(ValueError, match=r"states has shape \[2, 3, 2\], expected \[2, 4, K\]"):
        ekvae.save_dataset(tmp_path / "a.npz", bad)
    bad = {k: v for k, v in d.items() if k != "actions"}
    with pytest.raises(ValueError, match="no \"actions\" array"):
        ekvae.save_dataset(tmp_path / "a.npz", bad)
    # Rewards (and states) are optional: a recorded dataset may have none.
    ekvae.save_dataset(tmp_path / "ok.npz", {k: v for k, v in d.items() if k != "rewards"})
    assert "rewards" not in ekvae.load_dataset(tmp_path / "ok.npz")
    bad = dict(d, meta=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(ValueError, match="meta"):
        ekvae.save_dataset(tmp_path / "a.npz", bad)
    bad = dict(d, states=np.full_like(d["states"], np.nan))
    with pytest.raises(ValueError, match="not finite"):
        ekvae.save_dataset(tmp_path / "a.npz", bad)
    assert not (tmp_path / "a.npz").exists()
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ekvae.EkvaeError, match="not a regular file"):
        ekvae.save_dataset(tmp_path / "dir.npz", d)
