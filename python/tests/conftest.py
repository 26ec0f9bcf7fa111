"""Shared fixtures: the repository, the `ekvae` command-line binary and the committed run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED_RUN = REPO / "results" / "pixmpc-model"


def _binary() -> Path:
    if "EKVAE_BIN" in os.environ:
        return Path(os.environ["EKVAE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "ekvae"


@pytest.fixture(scope="session")
def ekvae_bin() -> Path:
    """The `ekvae` binary that `cargo test --workspace --release` builds (python/test.sh runs
    that build first); set EKVAE_BIN to use another one."""
    path = _binary()
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: build it with `cargo test --workspace --release --no-run` "
            "(python/test.sh does) or set EKVAE_BIN"
        )
    return path


@pytest.fixture(scope="session")
def cli(ekvae_bin):
    """Runs `ekvae ARGS...`; returns the CompletedProcess (text output)."""

    def run(*args, check=True):
        out = subprocess.run(
            [str(ekvae_bin), *map(str, args)], capture_output=True, text=True, timeout=600
        )
        if check and out.returncode != 0:
            raise AssertionError(f"ekvae {' '.join(map(str, args))} failed: {out.stderr}")
        return out

    return run


def cli_error(result) -> str:
    """The one-line message of a failed command (`error: MESSAGE` on stderr)."""
    assert result.returncode != 0, result.stdout
    lines = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0][len("error: ") :]


@pytest.fixture(scope="session")
def committed_run() -> Path:
    assert (COMMITTED_RUN / "state.json").is_file(), COMMITTED_RUN
    return COMMITTED_RUN
