"""Devices: which torch device a name means, how many GPUs are visible, and moving results
off a CUDA device without waiting for later work (one side stream per copy).

On the CPU the stream helpers do nothing special, so the same code runs (synchronously) there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from samrs.errors import SamrsError


class DeviceError(SamrsError, ValueError):
    """A device that cannot be used here (CUDA asked for on a machine without it)."""


def visible_gpus() -> int:
    """CUDA devices this process can use (0 without torch, CUDA or a working driver)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - torch missing or broken CUDA
        return 0


def resolve_device(name: str | None, local_rank: int | None = None) -> Any:
    """The ``torch.device`` a device option names: ``None``, ``""`` or ``"auto"`` -> CUDA when
    available (``cuda:<local_rank>`` when a rank is given), else CPU; otherwise
    ``torch.device(name)``, a bare ``cuda`` becoming ``cuda:<local_rank>`` when a rank is given.

    Raises:
        DeviceError: a CUDA device asked for where CUDA is not available.
    """
    import torch

    cuda = "cuda" if local_rank is None else f"cuda:{local_rank}"
    if name in (None, "", "auto"):
        return torch.device(cuda if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None and local_rank is not None:
        device = torch.device(cuda)
    return device


@contextlib.contextmanager
def side_stream(tensor: Any, ready: Any = None) -> Iterator[Any]:
    """Run the block's device work on a new CUDA stream that first waits on ``ready`` (an
    event after which ``tensor`` is complete; None: the work queued so far on the current
    stream), so it never waits for work queued later (the next chunk's decoder). Yields the
    stream, or None for a tensor that is not on a CUDA device (nothing changes then)."""
    import torch

    if tensor.device.type != "cuda":
        yield None
        return
    stream = torch.cuda.Stream(tensor.device)
    if ready is None:
        ready = torch.cuda.current_stream(tensor.device).record_event()
    stream.wait_event(ready)
    tensor.record_stream(stream)
    with torch.cuda.stream(stream):
        yield stream


def copy_to_host(tensor: Any, stream: Any) -> np.ndarray:
    """``tensor`` as a numpy array: on CUDA one non-blocking copy into pinned memory on
    ``stream`` (from :func:`side_stream`), waited for on that stream alone."""
    import torch

    if stream is None:
        return tensor.numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    stream.synchronize()
    return host.numpy()
