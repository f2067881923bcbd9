"""One root for samrs's exceptions.

Every exception samrs raises on purpose derives from :class:`SamrsError`, and keeps the built-in
class it had as a mixin (``class ManifestError(SamrsError, ValueError)``), as rasterio does with
``RasterioError``: callers can catch every samrs problem at once (``except SamrsError``) and
code that caught ``ValueError`` still works. The CLI turns an uncaught ``SamrsError`` into one
line on stderr (``samrs.cli.LazyGroup.invoke``); its message names the file and what was
expected. The classes stay beside the code that raises them.
"""

from __future__ import annotations


class SamrsError(Exception):
    """A problem samrs reports to its user: a one-line message, no traceback needed."""


__all__ = ["SamrsError"]
