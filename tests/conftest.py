"""Shared fixtures. Fake-data generators live in ``tests/helpers/`` (import them as
``tests.helpers.<name>``); fixtures used by more than one test module live here.

``pytest -m "not slow"`` is the fast loop (``slow`` is deselected by default, see
pyproject.toml); ``pytest -m "slow or not slow"`` (CI, the README) runs everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dota(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 synthetic DOTA images (seed 7), shared by the build tests: read-only, copy it first
    to change it."""
    from samrs.synth import write_synthetic

    root = tmp_path_factory.mktemp("data") / "dota"
    write_synthetic("dota", root, 6, 7)
    return root


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module's tiny tensors (avoids OpenMP contention on a busy
    2-core machine); the previous count is restored after the module."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
