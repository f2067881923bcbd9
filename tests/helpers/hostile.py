"""Hand-made hostile inputs: image files whose header declares a huge size.

The files are a few hundred bytes, so nothing big is ever allocated unless a reader decodes
the pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def bomb_jpeg(path: Path, width: int, height: int) -> Path:
    """A tiny (8 x 8) JPEG whose SOF0 header is patched to declare ``width x height`` pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width x height`` and whose pixel data is cut off at once."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)[:6]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat))
    return path
