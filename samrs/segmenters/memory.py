"""Process-wide memory allocator settings for fast CPU-side mask work.

SAM's CPU work allocates and frees large blocks for every image: 4-130 MB attention and bias
tensors in the encoder, a 4 MB logit map and a 1 MB mask per object. glibc's ``malloc``
serves every block over 32 MB (and, by default, every block over 128 KB until its adaptive
threshold has grown) with a fresh ``mmap`` and returns it with ``munmap`` on ``free``, so
each image pays page faults and zeroing for all of that memory again: on 2 CPU cores with
the tiny model this system time (about 40% of the wall time) made the encoder about twice
slower. :func:`retain_freed_memory` makes ``malloc`` take large blocks from the heap and
keep freed memory for reuse, which is what jemalloc or tcmalloc (``LD_PRELOAD``) would do.
It also keeps every thread on the main heap (one arena): a thread's own arena lives in 64 MB
heaps that glibc shrinks after each free, so work running outside the main thread (a Dask
worker's task thread) faulted its memory back in for every image (on 2 cores with
``--workers 2``: 14 s of system time for 64 images, and slower than one worker).
The cost: the process keeps its peak heap size instead of returning memory to the system.
The same settings are exported as glibc's environment variables (:data:`ALLOCATOR_ENV`),
so processes started afterwards (build workers, Dask workers on this machine, which are
also given them explicitly) get them from their first allocation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_TRIM_THRESHOLD = 1 << 30
"""Free memory at the top of the heap above this size is still returned to the system."""

ALLOCATOR_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD),
    "MALLOC_ARENA_MAX": "1",
}
"""glibc's environment variables for the same settings, for processes started later."""

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Configure glibc's ``malloc`` of this process to reuse freed memory (see the module
    docstring). Idempotent; a no-op (False) where the C library is not glibc.

    Returns:
        Whether the settings are in effect.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
        ok = libc.mallopt(_M_ARENA_MAX, 1) == 1 and ok
    except (OSError, AttributeError) as exc:  # pragma: no cover - exotic C libraries
        log.debug("mallopt unavailable: %s", exc)
        return False
    if ok:
        for name, value in ALLOCATOR_ENV.items():
            os.environ.setdefault(name, value)
    _applied = ok
    return ok
