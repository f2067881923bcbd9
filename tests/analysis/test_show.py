"""``samrs show`` and the shared drawing helpers (windowed RLE decode, label colours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from PIL import Image

from samrs.analysis.render import RenderError, label_class_mask, label_colors, read_region
from samrs.analysis.show import ImageNotFoundError, find_image, render_image, show
from samrs.cli import main
from samrs.core import rle
from samrs.core.classes import class_table
from samrs.outputs.manifest import part_path, read_table, write_part
from tests.helpers.outputs import FAKE, make_fake_build
from tests.helpers.quality import Inst, add_image, box, box_mask

W = H = 160


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    out = tmp_path_factory.mktemp("show") / "OUT"
    make_fake_build(out)
    pixels = add_image(
        out,
        "R0001",
        W,
        H,
        [
            Inst("plane", box(60, 60, 120, 120), box_mask(W, H, 60, 60, 120, 120), 0.9, 0.9),
            Inst("ship", box(10, 120, 40, 150), box_mask(W, H, 12, 122, 38, 148), 0.2, 0.5,
                 kept=False, reject_reason="low-score"),
        ],
        shard=2,
        first_instance_id=50,
    )  # fmt: skip
    return out, pixels


def test_render_overlays_objects_and_keeps_the_rest(build: tuple[Path, np.ndarray]) -> None:
    out, pixels = build
    drawn = render_image(out, "R0001", rejected=False)
    assert drawn.shape == (H, W, 3) and drawn.dtype == np.uint8
    inside = np.any(drawn[64:116, 64:116] != pixels[64:116, 64:116], axis=2)
    assert inside.mean() > 0.95  # the plane's label colour is blended over the object
    # plane colour (0, 127, 255) at alpha 0.45: the blue channel rises everywhere inside
    assert (drawn[64:116, 64:116, 2].astype(int) >= pixels[64:116, 64:116, 2]).all()
    # far from every object (and from its label, drawn above the box) nothing changes
    assert np.array_equal(drawn[125:, 125:], pixels[125:, 125:])
    assert np.array_equal(drawn[0:40, 0:40], pixels[0:40, 0:40])
    # the rejected ship is unlabelled: untouched without --rejected ...
    assert np.array_equal(drawn[124:146, 14:36], pixels[124:146, 14:36])
    # ... and boxed in red with it
    with_rejected = render_image(out, "R0001")
    edge = with_rejected[120, 15:35]
    assert ((edge[:, 0] > 200) & (edge[:, 1] < 100)).all()


def test_show_writes_png_of_the_image_size(build: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    out, _ = build
    path = show(out, "R0001")
    assert path == out / "show" / "R0001.png"
    with Image.open(path) as im:
        assert im.size == (W, H) and im.mode == "RGB"
    first = path.read_bytes()
    assert show(out, "R0001", tmp_path / "x" / "r.png").read_bytes() == first  # deterministic
    tile = FAKE["tile_image"]
    with Image.open(show(out, tile)) as im:
        assert im.size == (20, 20)


def test_read_region_reads_tiles_and_source_images(build: tuple[Path, np.ndarray]) -> None:
    out, pixels = build
    image = find_image(out, "R0001")
    assert np.array_equal(read_region(out, image, (10, 20, 50, 40)), pixels[20:40, 10:50])
    # a tile whose file is the whole source image is read through its window
    whole = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    Image.fromarray(whole).save(out / "whole.png")
    tile = {"image_id": "t", "file_name": "whole.png", "width": 20, "height": 10,
            "tile_window": [30, 5, 20, 10]}  # fmt: skip
    assert np.array_equal(read_region(out, tile), whole[5:15, 30:50])


def test_unknown_image_lists_existing_ids(build: tuple[Path, np.ndarray]) -> None:
    out, _ = build
    with pytest.raises(ImageNotFoundError, match="P0002__20__10") as err:
        render_image(out, "P0002")
    assert "similar ids" in str(err.value)
    with pytest.raises(ImageNotFoundError, match="existing ids: P0001, P0002__20__10"):
        render_image(out, "zzz")


def test_failed_image_names_its_error(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    make_fake_build(out)
    row = read_table(out, "images", filter=pc.field("image_id") == "P0001").to_pylist()[0]
    row |= {"image_id": "BROKEN", "status": "error", "semantic_file": None, "n_objects": 0,
            "n_kept": 0, "shard": 3}  # fmt: skip
    write_part(part_path(out, "images", 3), "images", [row])
    write_part(part_path(out, "instances", 3), "instances", [])
    error = {"source_file": "images/BROKEN.png", "line": None, "stage": "image",
             "message": "cannot read image images/BROKEN.png: image file is truncated",
             "image_id": "BROKEN", "n_objects": 2, "shard": 3}  # fmt: skip
    write_part(part_path(out, "errors", 3), "errors", [error])
    with pytest.raises(RenderError, match=r"BROKEN failed in the build.*image file is truncated"):
        render_image(out, "BROKEN")
    result = CliRunner().invoke(main, ["show", str(out), "BROKEN"])
    assert result.exit_code == 1 and "image file is truncated" in result.output


def test_cli_show(build: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    out, _ = build
    runner = CliRunner()
    target = tmp_path / "p.png"
    result = runner.invoke(main, ["show", str(out), "P0001", "--to", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target)
    with Image.open(target) as im:
        assert im.size == (32, 24)
    bad = runner.invoke(main, ["show", str(out), "nope"])
    assert bad.exit_code == 1 and "no image 'nope'" in bad.output and "P0001" in bad.output


def test_decode_window_equals_a_crop_of_the_full_decode() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if trial % 2:
            mask = rng.random((h, w)) < rng.random()
        else:  # long runs across columns exercise the delta coding of large counts
            mask = np.zeros((h, w), dtype=bool)
            mask[rng.integers(0, h) :, rng.integers(0, w) :] = True
        encoded = rle.encode(mask)
        assert rle.run_lengths(encoded).sum() == h * w
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        ww, hh = int(rng.integers(0, w - x + 1)), int(rng.integers(0, h - y + 1))
        assert np.array_equal(
            rle.decode_window(encoded, (x, y, ww, hh)), mask[y : y + hh, x : x + ww]
        )
    big = np.zeros((3000, 2000), dtype=bool)
    big[1000:2500, 300:1700] = True
    assert rle.decode_window(rle.encode(big), (250, 900, 100, 200)).sum() == 50 * 100
    with pytest.raises(ValueError, match="not inside"):
        rle.decode_window(rle.encode(big), (1990, 0, 20, 5))


def test_label_colours_follow_the_background_shift() -> None:
    table = class_table("dota", "1.0")
    plain, shifted = label_colors(table), label_colors(table, background=True)
    assert tuple(plain[0]) == table.palette[0] and tuple(shifted[1]) == table.palette[0]
    label = np.array([[0, 1, 15, 255]], dtype=np.uint8)
    assert label_class_mask(label, 15).tolist() == [[True, True, False, False]]
    assert label_class_mask(label, 15, background=True).tolist() == [[False, True, True, False]]
