"""Reading (and writing) image pixels: the one place samrs decodes images.

Every reader returns ``(H, W, 3)`` uint8 RGB arrays, whatever the file holds:

- grayscale (1 band, or gray + alpha) is repeated into three channels;
- RGBA / gray+alpha: the alpha band is dropped (not composited);
- palette images are expanded through their palette;
- more than three bands (multispectral): the first three bands, in file order;
- **8-bit data is never rescaled.** Any other sample type (16/32-bit integers, floats) is
  scaled to 8 bits with one *per-image* linear stretch shared by all three channels:
  ``lo, hi`` = the 2nd and 98th percentiles (numpy's default linear interpolation) of the
  finite, non-nodata values of the selected bands, taken on the whole image decimated so its
  longer side is at most :data:`STATS_SIDE` pixels (every ``step``-th pixel, or the file's
  overview / nearest-neighbour decimation for rasterio-read files); then
  ``v8 = clip(floor((v - lo) * 255 / (hi - lo) + 0.5), 0, 255)``, NaN -> 0. If ``hi <= lo``
  the minimum and maximum are used instead; a constant image maps to 0. The statistics are
  always those of the whole image, so a window reads exactly as the same crop of the full
  image, and tiles of one image share one scale.

Windows ``(x, y, w, h)`` are in source pixels and may extend past the image (even start at
negative offsets): what lies outside is filled with ``pad_value``. TIFF/GeoTIFF (and other
GDAL formats PIL cannot open) are read with rasterio windowed reads, so only the blocks a
window touches are decoded; PNG/JPEG/BMP are decoded whole with Pillow (their codecs cannot
seek) -- use :func:`open_image` to decode once and cut many windows.

Broken input raises :class:`ImageReadError` naming the file: missing, unreadable, unknown
format, too large to decode (:class:`ImageTooLargeError`, see below), or truncated (Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` makes a
truncated PNG/JPEG raise instead of returning grey garbage; samrs never changes it). JPEG EXIF
orientation is ignored: annotations refer to the stored pixel grid.

**Pixel limit.** Remote-sensing images are legitimately huge (DOTA v2 has 20,000 x 20,000 px),
so Pillow's own decompression-bomb limit (89 Mpx) is disabled on import
(``Image.MAX_IMAGE_PIXELS = None``) and samrs applies its own, ``max_pixels`` (default
:data:`DEFAULT_MAX_IMAGE_PIXELS` = 40,000 x 40,000 = 1.6e9 px; ``None`` or 0: no limit), checked
from the header before any pixel is decoded: a 40 KB JPEG may declare 40,000 x 40,000 px and
would need about 5 GB to decode. What is limited is what one read decodes: the whole image for
files decoded with Pillow (PNG/JPEG/BMP; any window of them needs the whole decode), the window
(its part inside the image) for windowed rasterio reads -- a 100,000 px GeoTIFF cut into
1024 px tiles is fine, reading it whole is not. Header-only reads (:func:`image_size`) decode
nothing and are not limited.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from samrs.core.records import Window
from samrs.errors import SamrsError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "PAD_VALUE",
    "STATS_SIDE",
    "ImageReadError",
    "ImageSource",
    "ImageTooLargeError",
    "crop_padded",
    "georeference",
    "image_size",
    "long_name",
    "name_max",
    "open_image",
    "read_image",
    "stretch_to_uint8",
    "temp_name",
    "window_transform",
    "write_image",
    "write_png",
]

Image.MAX_IMAGE_PIXELS = None  # samrs checks its own limit, max_pixels (module docstring)

DEFAULT_MAX_IMAGE_PIXELS = 40_000 * 40_000
"""Default largest number of pixels one read decodes (1.6e9; DOTA's largest are ~20,000 px)."""

MAX_PIXELS_OPTION = "--max-image-pixels"
"""The command-line option that raises the limit (named in the error message)."""

PAD_VALUE: tuple[int, int, int] = (124, 116, 104)
"""RGB fill of window parts outside the image: mmrotate/BboxToolkit pad with
``[104, 116, 124]`` on the BGR arrays OpenCV reads, i.e. RGB (124, 116, 104)."""

STATS_SIDE = 1024
"""Longer side of the decimated whole image the >8-bit stretch percentiles are taken on."""

STRETCH_PERCENTILES = (2.0, 98.0)

# Formats read with rasterio (windowed reads); everything else goes to Pillow first.
_RASTERIO_SUFFIXES = frozenset({".tif", ".tiff", ".gtif", ".jp2", ".img", ".vrt", ".ntf"})


class ImageReadError(SamrsError):
    """An image that is missing, unreadable, of an unknown format or truncated.

    Attributes:
        path: the image file.
        reason: what went wrong (one line).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(self.path, self.reason)

    def __str__(self) -> str:
        return f"cannot read image {self.path}: {self.reason}"


class ImageTooLargeError(ImageReadError):
    """An image (or window) whose header declares more pixels than the decoding limit."""


def check_pixels(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    max_pixels: int | None,
    what: str = "image",
) -> None:
    """Raise :class:`ImageTooLargeError` when ``width x height`` exceeds ``max_pixels``.

    ``what`` says what would be decoded (``image``, or a window of an image); None or 0 as
    ``max_pixels`` means no limit.
    """
    if not max_pixels or width * height <= max_pixels:
        return
    raise ImageTooLargeError(
        path,
        f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of "
        f"{max_pixels:,} pixels to decode (max_image_pixels; raise it with {MAX_PIXELS_OPTION} "
        "if the file is genuine)",
    )


# --- helpers ----------------------------------------------------------------------------------


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a file")


def _uses_rasterio(path: Path) -> bool:
    return path.suffix.lower() in _RASTERIO_SUFFIXES


def _rasterio_open(path: Path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise ImageReadError(path, f"not a readable raster ({exc})") from exc


def crop_padded(
    array: np.ndarray, window: Window | None, pad_value: Sequence[int] = PAD_VALUE
) -> np.ndarray:
    """The window ``(x, y, w, h)`` of an (H, W, C) array, padded with ``pad_value`` outside it.

    Returns the array itself when ``window`` is None.
    """
    if window is None:
        return array
    x, y, w, h = (int(v) for v in window)
    if w <= 0 or h <= 0:
        raise ValueError(f"window {window} has no area")
    height, width = array.shape[:2]
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        return np.ascontiguousarray(array[y : y + h, x : x + w])
    out = np.empty((h, w, *array.shape[2:]), dtype=array.dtype)
    out[...] = np.asarray(pad_value, dtype=array.dtype)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = array[y0:y1, x0:x1]
    return out


def _intersection(window: Window, width: int, height: int) -> Window | None:
    x, y, w, h = window
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def _stretch_limits(values: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` of the documented stretch for a sample of values (any shape)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return (0.0, 0.0)
    lo, hi = (float(v) for v in np.percentile(flat, STRETCH_PERCENTILES))
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return (lo, hi)


def stretch_to_uint8(values: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Scale values linearly so ``limits = (lo, hi)`` map to 0 and 255 (clipped, NaN -> 0)."""
    lo, hi = limits
    data = np.asarray(values, dtype=np.float64)
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = np.floor((data - lo) * (255.0 / (hi - lo)) + 0.5)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _to_rgb(bands: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 with C in 1..3 -> (H, W, 3)."""
    if bands.shape[2] == 3:
        return np.ascontiguousarray(bands)
    return np.ascontiguousarray(np.repeat(bands[:, :, :1], 3, axis=2))


def _band_indexes(count: int) -> list[int]:
    """1-based bands samrs reads from a file with ``count`` bands (see module docstring)."""
    return [1] if count < 3 else [1, 2, 3]


# --- image sources ----------------------------------------------------------------------------


class ImageSource:
    """An open image from which windows are read as (H, W, 3) uint8 RGB.

    Use :func:`open_image` (a context manager) to create one. Files read with Pillow are
    decoded once, on the first read; rasterio files are read window by window.
    """

    def __init__(
        self, path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    ) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        _check_exists(self.path)
        self._array: np.ndarray | None = None
        self._dataset = None
        if _uses_rasterio(self.path):
            try:
                self._dataset = _rasterio_open(self.path)
            except ImageReadError as exc:
                header = _pil_header_size(self.path)  # a TIFF GDAL rejects but Pillow reads?
                if header is None:
                    raise exc from None
                self.width, self.height = header
                return
            self.width, self.height = int(self._dataset.width), int(self._dataset.height)
        else:
            self.width, self.height = _pil_size(self.path)

    @property
    def windowed(self) -> bool:
        """Whether windows are read from the file (True) or cut from a whole decode (False)."""
        return self._dataset is not None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return (self.width, self.height)

    def read(
        self, window: Window | None = None, pad_value: Sequence[int] = PAD_VALUE
    ) -> np.ndarray:
        """The whole image, or a window of it padded with ``pad_value`` where outside.

        Raises:
            ImageTooLargeError: what this read decodes (the whole image, or the window for a
                windowed read) has more than ``max_pixels`` pixels; nothing is decoded.
            ImageReadError: unreadable or truncated file.
        """
        if window is not None and (int(window[2]) <= 0 or int(window[3]) <= 0):
            raise ValueError(f"window {window} has no area")
        if self._dataset is None or window is None:
            what, (w, h) = "image", self.size
        else:
            w, h = int(window[2]), int(window[3])
            what = f"window {tuple(int(v) for v in window)} of the {self.width}x{self.height} image"
        check_pixels(self.path, w, h, self.max_pixels, what)
        try:
            if self._dataset is None:
                if self._array is None:
                    self._array = _pil_read(self.path)
                return crop_padded(self._array, window, pad_value)
            return _rasterio_read(self._dataset, self.path, window, pad_value)
        except MemoryError:  # the failed allocation is freed: report it as this file's problem
            raise ImageReadError(
                self.path,
                f"out of memory (MemoryError) decoding the {what}, {w}x{h} pixels; "
                f"use fewer workers, or a lower {MAX_PIXELS_OPTION} to skip such images",
            ) from None

    def close(self) -> None:
        """Release the file and the decoded pixels."""
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None
        self._array = None

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_image(
    path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> ImageSource:
    """Open an image for (repeated) window reads: ``with open_image(p) as src: src.read(w)``.

    Only the header is read here; ``max_pixels`` limits what each read decodes (module
    docstring).

    Raises:
        ImageReadError: missing file, or a format neither Pillow nor rasterio can open.
    """
    return ImageSource(path, max_pixels)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, without decoding the pixels.

    Raises:
        ImageReadError: missing file or unknown format.
    """
    path = Path(path)
    _check_exists(path)
    if not _uses_rasterio(path):
        return _pil_size(path)
    header = _pil_header_size(path)
    if header is not None:
        return header
    with _rasterio_open(path) as ds:
        return (int(ds.width), int(ds.height))


def read_image(
    path: str | os.PathLike[str],
    window: Window | None = None,
    pad_value: Sequence[int] = PAD_VALUE,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Pixels of an image (or of a window of it) as an (H, W, 3) uint8 RGB array.

    Args:
        path: image file (PNG, JPEG, BMP, TIFF/GeoTIFF, anything Pillow or GDAL reads).
        window: ``(x, y, w, h)`` in image pixels, or None for the whole image. Parts outside
            the image are filled with ``pad_value``.
        pad_value: RGB fill of padded pixels.
        max_pixels: most pixels the read may decode (module docstring); None or 0: no limit.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` to decode.
        ImageReadError: missing, unreadable or truncated file (message names the file).
    """
    with open_image(path, max_pixels) as src:
        return src.read(window, pad_value)


# --- Pillow backend ---------------------------------------------------------------------------


def _pil_header_size(path: Path) -> tuple[int, int] | None:
    """Size from Pillow's lazy open, or None when Pillow cannot parse the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                return (int(img.width), int(img.height))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def _pil_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return (int(img.width), int(img.height))
    except (UnidentifiedImageError, OSError, ValueError) as pil_exc:
        # formats Pillow does not know (e.g. exotic GDAL rasters under another suffix)
        try:
            with _rasterio_open(path) as ds:
                return (int(ds.width), int(ds.height))
        except ImageReadError:
            raise ImageReadError(path, f"unknown or corrupt image format ({pil_exc})") from None


def _pil_is_16bit_rgb(img: Image.Image) -> bool:
    tile = getattr(img, "tile", None) or []
    return bool(tile) and str(tile[0][3] if len(tile[0]) > 3 else "").startswith(
        ("RGB;16", "RGBA;16")
    )


def _pil_read(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            wide_rgb = _pil_is_16bit_rgb(img)
            img.load()  # raises on truncated data (LOAD_TRUNCATED_IMAGES is False)
            if wide_rgb:
                return _read_wide_rgb(path)
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                data = np.asarray(img)
                data = data.reshape(data.shape[0], data.shape[1], 1)
                return _to_rgb(_stretch_whole(data))
            return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except UnidentifiedImageError:
        # Pillow does not know the format: let GDAL try before giving up
        try:
            ds = _rasterio_open(path)
        except ImageReadError:
            raise ImageReadError(path, "unknown or corrupt image format") from None
        with ds:
            return _rasterio_read(ds, path, None, PAD_VALUE)
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        reason = str(exc) or type(exc).__name__
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            reason += " (note: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process)"
        raise ImageReadError(path, reason) from exc


def _read_wide_rgb(path: Path) -> np.ndarray:
    """16-bit RGB(A) PNGs: Pillow keeps only the high byte, so decode them with OpenCV."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.ndim != 3:
        raise ImageReadError(path, "cannot decode 16-bit colour image")
    data = data[:, :, 2::-1] if data.shape[2] >= 3 else data  # BGR(A) -> RGB
    return _to_rgb(_stretch_whole(data[:, :, :3]))


def _stretch_whole(data: np.ndarray) -> np.ndarray:
    """Stretch an in-memory (H, W, C) array of any type to uint8 with the documented rule."""
    if data.dtype == np.uint8:
        return data
    if data.dtype == np.bool_:
        return data.astype(np.uint8) * 255
    step = max(1, math.ceil(max(data.shape[:2]) / STATS_SIDE))
    return stretch_to_uint8(data, _stretch_limits(data[::step, ::step]))


# --- rasterio backend -------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _rasterio_limits(path: str, mtime_ns: int, size: int) -> tuple[float, float]:
    """Stretch limits of a rasterio-read file (cached per file version)."""
    from rasterio.enums import Resampling

    with _rasterio_open(Path(path)) as ds:
        indexes = _band_indexes(ds.count)
        scale = max(ds.width, ds.height) / STATS_SIDE
        shape = (
            len(indexes),
            max(1, math.ceil(ds.height / max(scale, 1.0))),
            max(1, math.ceil(ds.width / max(scale, 1.0))),
        )
        data = ds.read(indexes, out_shape=shape, resampling=Resampling.nearest, masked=True)
        values = np.ma.filled(data.astype(np.float64), np.nan)
    return _stretch_limits(values)


def _rasterio_read(ds, path: Path, window: Window | None, pad_value: Sequence[int]) -> np.ndarray:
    from rasterio.enums import ColorInterp
    from rasterio.errors import RasterioError, RasterioIOError
    from rasterio.windows import Window as RioWindow

    width, height = int(ds.width), int(ds.height)
    win: Window = (0, 0, width, height)
    if window is not None:
        x, y, w, h = (int(v) for v in window)
        win = (x, y, w, h)
    inside = _intersection(win, width, height)
    indexes = _band_indexes(ds.count)
    try:
        if inside is None:
            bands = np.zeros((0, 0, 3), dtype=np.uint8)
        else:  # read only the part of the window inside the image
            x, y, w, h = inside
            data = ds.read(indexes, window=RioWindow(x, y, w, h))  # (C, h, w)
            data = np.moveaxis(data, 0, -1)
            if ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
                bands = _apply_colormap(data[:, :, 0], ds.colormap(1))
            elif data.dtype == np.uint8:
                bands = _to_rgb(data)
            else:
                stat = os.stat(path)
                limits = _rasterio_limits(str(path), stat.st_mtime_ns, stat.st_size)
                bands = _to_rgb(stretch_to_uint8(data, limits))
    except (RasterioError, RasterioIOError) as exc:  # not a RasterioError before rasterio 1.4
        raise ImageReadError(path, f"read failed ({exc})") from exc
    if inside == win:
        return bands
    # place the part read (if any) into a padded window
    x, y, w, h = win
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[...] = np.asarray(pad_value, dtype=np.uint8)
    if inside is not None:
        ix, iy, iw, ih = inside
        out[iy - y : iy - y + ih, ix - x : ix - x + iw] = bands
    return out


def _apply_colormap(index: np.ndarray, colormap: dict[int, tuple[int, ...]]) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for key, color in colormap.items():
        if 0 <= key < 256:
            lut[key] = color[:3]
    return lut[index.astype(np.uint8)]


# --- georeference -----------------------------------------------------------------------------


def georeference(path: str | os.PathLike[str]) -> tuple[str, tuple[float, ...]] | None:
    """CRS and pixel-to-map transform of a georeferenced raster, or None for a plain image.

    Returns:
        ``(crs, transform)``: ``crs`` is ``"EPSG:<code>"`` when the CRS has an EPSG code,
        else its WKT; ``transform`` is the affine transform in **affine (rasterio) order**
        ``(a, b, c, d, e, f)``: ``x_map = a*col + b*row + c``, ``y_map = d*col + e*row + f``
        (GDAL order would be ``(c, a, b, f, d, e)``). None when the file has no CRS.

    Raises:
        ImageReadError: the file does not exist.
    """
    path = Path(path)
    _check_exists(path)
    try:
        ds = _rasterio_open(path)
    except ImageReadError:
        return None
    with ds:
        if ds.crs is None:
            return None
        crs = ds.crs.to_string() or ds.crs.to_wkt()
        return crs, tuple(float(v) for v in tuple(ds.transform)[:6])


def window_transform(
    transform: Sequence[float], window: Window, scale: float = 1.0
) -> tuple[float, ...]:
    """The affine transform (affine order, see :func:`georeference`) of a window's pixels.

    Args:
        transform: ``(a, b, c, d, e, f)`` of the whole image.
        window: ``(x, y, w, h)`` in that image's pixels.
        scale: patch pixels per source pixel, when the window was resized (e.g. a tiling rate).
    """
    a, b, c, d, e, f = (float(v) for v in transform[:6])
    x, y = float(window[0]), float(window[1])
    return (
        a / scale,
        b / scale,
        a * x + b * y + c,
        d / scale,
        e / scale,
        d * x + e * y + f,
    )


# --- writing ----------------------------------------------------------------------------------


NAME_MAX = 255
"""File-name limit in bytes when the file system does not say (ext4, XFS, btrfs, APFS...)."""


def name_max(folder: str | os.PathLike[str]) -> int:
    """Longest file name, in bytes, the file system of ``folder`` accepts (``PC_NAME_MAX`` of
    ``folder`` or its nearest existing parent; :data:`NAME_MAX` when it cannot tell)."""
    path = Path(os.path.abspath(folder))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        value = os.pathconf(path, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX
    return int(value) if value and value > 0 else NAME_MAX


def long_name(path: str | os.PathLike[str], limit: int, shown: str | None = None) -> str | None:
    """What is wrong with the file name of ``path`` when it is longer than ``limit`` bytes (see
    :func:`name_max`), else None. ``shown``: how to name the file (default: its name)."""
    name = Path(path).name
    size = len(os.fsencode(name))
    if size <= limit:
        return None
    return (
        f"output file name too long: {shown or name} is {size} bytes, over the file system's "
        f"limit of {limit} bytes for a file name; shorten the name of the source file"
    )


TEMP_RESERVE = 24
"""Bytes a temporary name may add to :func:`temp_name`'s result (a random or pid tag)."""


def temp_name(name: str, tag: str, name_max: int = 255) -> str:
    """Hidden temporary file name for writing ``name`` atomically: ``.<name>.<tag>``.

    When that (plus :data:`TEMP_RESERVE` bytes for a random suffix) would exceed the file
    system's name limit ``name_max`` while ``name`` itself fits, ``name`` is replaced by a
    sha256 prefix of it (``.<24 hex digits>.<tag>``), so a final name that fits never fails
    because of its temporary name.
    """
    candidate = f".{name}.{tag}"
    if len(os.fsencode(candidate)) + TEMP_RESERVE <= name_max:
        return candidate
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:24]
    return f".{digest}.{tag}"


def _create_temp(path: Path) -> tuple[int, str]:
    """Create a unique temporary file beside ``path`` with the mode the umask gives a new
    file (``0o666 & ~umask``, like ``open``), unlike ``mkstemp``'s 0600: the renamed file is
    readable by whoever may read ordinary files there."""
    for _ in range(100):
        tmp = str(path.with_name(temp_name(path.name, f"{secrets.token_hex(6)}.tmp")))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    palette: Sequence[int] | None = None,
    **options: object,
) -> Path:
    """Write an image deterministically (no timestamps), atomically (temp file + rename).

    The format follows the suffix (``.png``, ``.jpg``, ``.bmp``, ``.tif``). ``array`` is
    (H, W, 3) uint8 RGB or (H, W) uint8 (grayscale, or palette indices when ``palette`` -- a
    flat RGB list of up to 768 values -- is given); bool masks are written as 0/255.
    ``options`` go to Pillow's writer (e.g. ``quality=95`` for JPEG,
    ``compression="tiff_deflate"`` for TIFF).
    """
    path = Path(path)
    data = np.asarray(array)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8) * 255
    if data.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8 pixels, got {data.dtype}")
    if data.ndim == 3 and data.shape[2] == 3:
        img = Image.fromarray(np.ascontiguousarray(data))
    elif data.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(data))
        if palette is not None:
            img.putpalette(list(palette))  # "L" -> "P"
    else:
        raise ValueError(f"write_image expects (H, W, 3) or (H, W) arrays, got {data.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF"}.get(path.suffix.lower())  # fmt: skip
    if fmt is None:
        raise ValueError(f"cannot write {path}: unknown image suffix {path.suffix!r}")
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            img.save(handle, format=fmt, **options)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_geotiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    crs: str,
    transform: Sequence[float],
) -> Path:
    """Write a geo-referenced GeoTIFF (deflate, no timestamps), atomically.

    Args:
        path: the ``.tif`` to write.
        array: (H, W, 3) uint8 RGB or (H, W) uint8.
        crs: any CRS rasterio accepts (``EPSG:32650``).
        transform: affine ``(a, b, c, d, e, f)`` (see :func:`georeference`).
    """
    import rasterio
    from affine import Affine

    path = Path(path)
    data = np.asarray(array)
    if data.dtype != np.uint8 or data.ndim not in (2, 3):
        raise ValueError(
            f"write_geotiff expects uint8 (H, W[, 3]) arrays, got {data.dtype} {data.shape}"
        )
    bands = data[None] if data.ndim == 2 else np.moveaxis(data, 2, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    os.close(fd)
    try:
        with rasterio.open(
            tmp, "w", driver="GTiff", height=data.shape[0], width=data.shape[1],
            count=bands.shape[0], dtype="uint8", crs=crs,
            transform=Affine(*(float(v) for v in transform[:6])), compress="deflate",
            photometric="RGB" if bands.shape[0] == 3 else "MINISBLACK",
        ) as dst:  # fmt: skip
            dst.write(bands)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_png(
    path: str | os.PathLike[str],
    array: np.ndarray,
    palette: Sequence[int] | None = None,
    compress_level: int = 1,
) -> Path:
    """Write a PNG deterministically (see :func:`write_image`).

    ``compress_level`` 1 (zlib's fastest) encodes textured images about 5x faster than
    Pillow's default 6 for files about 15% larger.
    """
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"write_png writes .png files, got {path}")
    return write_image(path, array, palette=palette, compress_level=compress_level)
