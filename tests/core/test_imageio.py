"""Tests of samrs.core.imageio: conversions, windows, padding, broken files, georeference."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from samrs.core import imageio
from samrs.core.imageio import ImageReadError, ImageTooLargeError, image_size, read_image
from samrs.core.records import exception_message
from tests.helpers.hostile import bomb_jpeg, bomb_png


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def test_png_rgb_round_trip_and_size(tmp_path: Path, rgb: np.ndarray) -> None:
    path = imageio.write_png(tmp_path / "a.png", rgb)
    assert image_size(path) == (80, 60)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(60 * 80, dtype=np.uint32).reshape(60, 80) % 256
    Image.fromarray(gray.astype(np.uint8)).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (60, 80, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_drops_alpha_and_palette_expands(tmp_path: Path, rgb: np.ndarray) -> None:
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)

    index = (np.arange(60 * 80).reshape(60, 80) % 3).astype(np.uint8)
    palette = [10, 20, 30, 200, 100, 0, 0, 255, 0]
    imageio.write_png(tmp_path / "p.png", index, palette=palette)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], [200, 100, 0])
    np.testing.assert_array_equal(out[0, 2], [0, 255, 0])


def test_16bit_gray_percentile_stretch(tmp_path: Path) -> None:
    # values 0..9999 once each: 2nd percentile = 199.98, 98th = 9798.02
    values = np.arange(10000, dtype=np.uint16).reshape(100, 100)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = read_image(tmp_path / "g16.png")
    lo, hi = np.percentile(np.arange(10000.0), [2, 98])
    expected = np.clip(np.floor((values - lo) * 255 / (hi - lo) + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert int(out[50, 0, 0]) == round((5000 - lo) * 255 / (hi - lo))


def test_16bit_rgb_png_is_stretched_not_truncated(tmp_path: Path) -> None:
    import cv2

    data = np.zeros((20, 30, 3), np.uint16)
    data[:, :10] = (1000, 2000, 3000)  # RGB
    data[:, 10:] = (4000, 5000, 6000)
    cv2.imwrite(str(tmp_path / "c16.png"), data[:, :, ::-1])
    out = read_image(tmp_path / "c16.png")
    # one stretch for all bands: lo = 1000, hi = 6000 (2nd/98th percentiles of the values)
    flat = data.reshape(-1).astype(float)
    lo, hi = np.percentile(flat, [2, 98])
    expected = np.clip(np.floor((data - lo) * 255 / (hi - lo) + 0.5), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert out[0, 0, 0] < out[0, 0, 1] < out[0, 0, 2]  # colour order kept


def test_window_equals_crop_and_pads_outside(tmp_path: Path, rgb: np.ndarray) -> None:
    path = imageio.write_png(tmp_path / "a.png", rgb)
    full = read_image(path)
    np.testing.assert_array_equal(read_image(path, (10, 5, 30, 20)), full[5:25, 10:40])
    win = read_image(path, (70, -4, 16, 10))
    assert win.shape == (10, 16, 3)
    np.testing.assert_array_equal(win[4:, :10], full[0:6, 70:80])
    assert (win[:4] == imageio.PAD_VALUE).all() and (win[:, 10:] == imageio.PAD_VALUE).all()
    outside = read_image(path, (200, 200, 4, 3), pad_value=(1, 2, 3))
    assert (outside == (1, 2, 3)).all()
    with pytest.raises(ValueError):
        read_image(path, (0, 0, 0, 5))


def _write_geotiff(path: Path, data: np.ndarray, **kwargs: object) -> None:
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        tiled=True,
        blockxsize=32,
        blockysize=32,
    )
    profile.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)


def test_geotiff_georeference_and_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (3, 100, 130), dtype=np.uint8)
    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    path = tmp_path / "geo.tif"
    _write_geotiff(path, data, crs="EPSG:32650", transform=transform)
    assert image_size(path) == (130, 100)
    crs, affine = imageio.georeference(path)
    assert crs == "EPSG:32650"
    assert affine == (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    full = read_image(path)
    np.testing.assert_array_equal(full, np.moveaxis(data, 0, -1))
    np.testing.assert_array_equal(read_image(path, (40, 33, 50, 60)), full[33:93, 40:90])
    win = read_image(path, (100, 90, 64, 64))
    np.testing.assert_array_equal(win[:10, :30], full[90:, 100:])
    assert (win[10:] == imageio.PAD_VALUE).all()
    # the window's transform puts its pixel (0, 0) at the map position of source (40, 33)
    t = imageio.window_transform(affine, (40, 33, 50, 60))
    assert t == (0.5, 0.0, 500020.0, 0.0, -0.5, 3999983.5)
    assert imageio.window_transform(affine, (40, 33, 50, 60), scale=2.0)[0] == 0.25


def test_plain_images_have_no_georeference(tmp_path: Path, rgb: np.ndarray) -> None:
    png = imageio.write_png(tmp_path / "a.png", rgb)
    assert imageio.georeference(png) is None
    tif = tmp_path / "plain.tif"
    Image.fromarray(rgb).save(tif)
    assert imageio.georeference(tif) is None
    np.testing.assert_array_equal(read_image(tif), rgb)


def test_uint16_multispectral_tiff_window_matches_full(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = (rng.random((5, 90, 70)) * 3000 + 100).astype(np.uint16)
    data[3:] = 60000  # bands past the third are ignored, also by the stretch
    path = tmp_path / "ms.tif"
    _write_geotiff(path, data)
    full = read_image(path)
    lo, hi = np.percentile(data[:3].astype(float), [2, 98])
    expected = np.clip(np.floor((data[:3] - lo) * 255 / (hi - lo) + 0.5), 0, 255)
    np.testing.assert_array_equal(full, np.moveaxis(expected, 0, -1).astype(np.uint8))
    np.testing.assert_array_equal(read_image(path, (13, 21, 40, 50)), full[21:71, 13:53])


def test_single_band_float_tiff(tmp_path: Path) -> None:
    data = np.linspace(-1.0, 1.0, 40 * 50, dtype=np.float32).reshape(1, 40, 50)
    data[0, 0, 0] = np.nan
    path = tmp_path / "f.tif"
    _write_geotiff(path, data)
    out = read_image(path)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert (out[:, :, 0] == out[:, :, 2]).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_truncated_images_raise_naming_the_file(
    tmp_path: Path, rgb: np.ndarray, suffix: str
) -> None:
    big = np.tile(rgb, (4, 4, 1))
    path = tmp_path / f"img{suffix}"
    if suffix == ".tif":
        _write_geotiff(path, np.moveaxis(big, -1, 0), tiled=False)
    else:
        imageio.write_image(path, big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert info.value.path == str(path)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="not found"):
        image_size(tmp_path / "nope.tif")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        read_image(junk)
    with pytest.raises(ImageReadError, match=r"junk\.png"):
        image_size(junk)
    junk_tif = tmp_path / "junk.tif"
    junk_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match=r"junk\.tif"):
        read_image(junk_tif)


def test_open_image_reads_many_windows(tmp_path: Path, rgb: np.ndarray) -> None:
    path = imageio.write_png(tmp_path / "a.png", rgb)
    with imageio.open_image(path) as src:
        assert src.size == (80, 60)
        a = src.read((0, 0, 40, 30))
        b = src.read((40, 30, 40, 30))
    np.testing.assert_array_equal(a, rgb[:30, :40])
    np.testing.assert_array_equal(b, rgb[30:, 40:])


def test_writers_are_deterministic(tmp_path: Path, rgb: np.ndarray) -> None:
    for suffix, opts in ((".png", {}), (".jpg", {"quality": 95}), (".bmp", {}),
                         (".tif", {"compression": "tiff_deflate"})):  # fmt: skip
        a = imageio.write_image(tmp_path / f"a{suffix}", rgb, **opts)
        b = imageio.write_image(tmp_path / f"b{suffix}", rgb, **opts)
        assert a.read_bytes() == b.read_bytes(), suffix
    assert not list(tmp_path.glob(".*.tmp"))


# --- hostile inputs: decompression bombs, empty messages, long names -----------------------
@pytest.mark.parametrize("make", [bomb_jpeg, bomb_png], ids=["jpeg", "png"])
def test_header_declaring_a_huge_size_is_refused_before_decoding(
    tmp_path: Path, make: Callable[[Path, int, int], Path]
) -> None:
    path = make(tmp_path / f"bomb.{make.__name__[5:]}", 60000, 50000)
    assert path.stat().st_size < 2000
    assert image_size(path) == (60000, 50000)  # a header read decodes nothing: no limit
    with pytest.raises(ImageTooLargeError) as info:
        read_image(path)  # would need 9 GB if it decoded
    message = str(info.value)
    assert str(path) in message and "60000x50000" in message
    assert f"{imageio.DEFAULT_MAX_IMAGE_PIXELS:,}" in message and "--max-image-pixels" in message
    with pytest.raises(ImageTooLargeError):  # a window of a PNG/JPEG needs the whole decode
        imageio.open_image(path).read((0, 0, 8, 8))


def test_pixel_limit_is_configurable(tmp_path: Path, rgb: np.ndarray) -> None:
    path = imageio.write_png(tmp_path / "a.png", rgb)  # 80 x 60 = 4800 px
    with pytest.raises(ImageTooLargeError, match=r"80x60 = 4,800 pixels.*limit of 4,799"):
        read_image(path, max_pixels=4799)
    np.testing.assert_array_equal(read_image(path, max_pixels=4800), rgb)
    np.testing.assert_array_equal(read_image(path, max_pixels=0), rgb)  # 0: no limit


def test_pixel_limit_of_windowed_reads_applies_to_the_window(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, (3, 100, 130), dtype=np.uint8)
    path = tmp_path / "big.tif"
    _write_geotiff(path, data)
    with imageio.open_image(path, max_pixels=64 * 64) as src:
        assert src.windowed
        window = src.read((10, 20, 64, 64))  # a tile of a raster larger than the limit
        np.testing.assert_array_equal(window, np.moveaxis(data, 0, -1)[20:84, 10:74])
        with pytest.raises(ImageTooLargeError, match=r"window \(0, 0, 65, 64\) of the 130x100"):
            src.read((0, 0, 65, 64))
        with pytest.raises(ImageTooLargeError, match="image is 130x100"):
            src.read()


def test_memory_error_while_decoding_names_the_file(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = imageio.write_png(tmp_path / "a.png", rgb)

    def exhausted(path: Path) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(imageio, "_pil_read", exhausted)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value) and "out of memory (MemoryError)" in str(info.value)


def test_exception_message_is_never_empty() -> None:
    assert exception_message(ValueError("bad\n  value")) == "bad value"
    assert exception_message(KeyError()) == "KeyError"
    assert exception_message(RuntimeError(""), "segmenting") == "RuntimeError while segmenting"
    assert (
        exception_message(MemoryError(), "reading the image")
        == "out of memory (MemoryError while reading the image)"
    )
    assert exception_message(MemoryError("12 GB")) == "out of memory (MemoryError: 12 GB)"


def test_temporary_names_fit_when_the_final_name_fits(tmp_path: Path, rgb: np.ndarray) -> None:
    limit = imageio.name_max(tmp_path / "not" / "yet")
    assert limit >= 14
    assert imageio.temp_name("a.png", "7.tmp") == ".a.png.7.tmp"
    name = "x" * (limit - 4) + ".png"  # the longest name the file system takes
    short = imageio.temp_name(name, "1234567.tmp")
    assert len(short.encode()) + imageio.TEMP_RESERVE <= limit
    assert short == imageio.temp_name(name, "1234567.tmp")  # deterministic
    assert short != imageio.temp_name("y" + name[1:], "1234567.tmp")
    written = imageio.write_png(tmp_path / name, rgb)
    np.testing.assert_array_equal(read_image(written), rgb)
    assert [p.name for p in tmp_path.iterdir()] == [name]
