"""Moving results off a CUDA device without waiting for later work: one side stream per copy.

On the CPU both helpers do nothing special, so the same code runs (synchronously) there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np


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
