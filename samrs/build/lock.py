"""One builder per OUT: an advisory file lock held for the whole build.

The lock is ``OUT/.samrs/lock``, taken with ``flock`` (released by the kernel when the holder
exits, also on a kill, so a crashed build never leaves a stale lock). The file names the
holder (host, pid, start time) so that a second builder can say who has the folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from samrs.errors import SamrsError


class BuildLockedError(SamrsError, RuntimeError):
    """Another process holds the lock of this OUT."""


class BuildLock:
    """Exclusive, non-blocking lock on a build folder's state directory.

    Use as a context manager; :meth:`acquire` raises :class:`BuildLockedError` naming the
    holder when another process has the lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> BuildLock:
        """Take the lock or raise :class:`BuildLockedError` at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise BuildLockedError(self._describe_holder()) from None
            raise
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (the file stays; its holder record is cleared)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def _describe_holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            holder = {}
        who = ", ".join(f"{k} {holder[k]}" for k in ("host", "pid", "since") if k in holder)
        return f"held by another samrs process ({who or 'holder unknown'})"

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
