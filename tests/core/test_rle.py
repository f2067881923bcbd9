"""The RLE stage: the vectorised (device) encoder against pycocotools, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from samrs.core import rle
from samrs.core.masks import DeviceMasks, MaskCrop


def _coco(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


@st.composite
def mask_stacks(draw: st.DrawFn) -> np.ndarray:
    """(N, H, W) masks: random densities, blobs, empty, full and 1-pixel masks, odd sizes."""
    n = draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 23)), draw(st.integers(1, 23))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out = np.zeros((n, h, w), dtype=bool)
    for k in range(n):
        kind = draw(st.sampled_from(["random", "empty", "full", "pixel", "block"]))
        if kind == "random":
            out[k] = rng.random((h, w)) < draw(st.floats(0.0, 1.0))
        elif kind == "full":
            out[k] = True
        elif kind == "pixel":
            out[k, rng.integers(h), rng.integers(w)] = True
        elif kind == "block":
            y0, x0 = rng.integers(h), rng.integers(w)
            out[k, y0 : rng.integers(y0, h + 1), x0 : rng.integers(x0, w + 1)] = True
    return out


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(mask_stacks())
def test_encode_tensor_equals_pycocotools(masks: np.ndarray) -> None:
    strings = rle.encode_tensor(torch.from_numpy(masks))
    assert strings == [_coco(m) for m in masks]
    rows = np.arange(len(masks))[::2]
    assert rle.encode_tensor(torch.from_numpy(masks), rows=rows) == [_coco(masks[r]) for r in rows]


def test_encode_tensor_large_counts_and_deltas() -> None:
    """Values of 5+ characters, negative deltas (from the 4th count on) and 0 first runs."""
    masks = np.zeros((4, 1500, 1700), dtype=bool)
    masks[0, -1, -1] = True  # one long zero run then a single pixel
    masks[1, 900:, 1200:] = True
    masks[2, 0, 0] = True  # starts with a run of 0 zeros
    masks[2, 5:1000:7, 3:1600:11] = True
    masks[3] = True
    assert rle.encode_tensor(torch.from_numpy(masks)) == [_coco(m) for m in masks]
    counts, sizes = rle.run_counts(torch.from_numpy(masks))
    assert sizes.tolist()[0] == 2 and counts[:2].tolist() == [1500 * 1700 - 1, 1]
    assert counts[-2:].tolist() == [0, 1500 * 1700]  # the full mask
    assert rle.encode_tensor(torch.zeros((0, 3, 3), dtype=torch.bool)) == []


def test_compress_counts_is_pycocotools_string_of_counts() -> None:
    rng = np.random.default_rng(1)
    runs = [rng.integers(0, 2**20, 9), rng.integers(1, 40, 1), np.array([5, 0, 3, 2**31, 7])]
    counts = torch.from_numpy(np.concatenate(runs))
    chars, lengths = rle.compress_counts(counts, torch.tensor([len(r) for r in runs]))
    text = chars.numpy().tobytes().decode()
    ends = np.cumsum(lengths.numpy())
    for r, a, b in zip(runs, ends - lengths.numpy(), ends, strict=True):
        total = int(r.sum())
        ref = mask_utils.frPyObjects({"size": [total, 1], "counts": r.tolist()}, total, 1)
        assert text[a:b] == ref["counts"].decode()


def test_encode_masks_host_device_and_substituted() -> None:
    """One function: host crops, device parts (several per image, any order) and masks the
    reject policy replaced (encoded from their crop) all give pycocotools' strings."""
    rng = np.random.default_rng(3)
    masks = rng.random((5, 31, 27)) < 0.3
    masks[1] = False
    crops = [MaskCrop.from_full(m) for m in masks]
    expected = [rle.encode(m) for m in masks]
    assert rle.encode_masks(crops) == expected
    device = DeviceMasks(
        [
            (np.array([3, 4]), torch.from_numpy(masks[[3, 4]]), None),
            (np.array([0, 1, 2]), torch.from_numpy(masks[[0, 1, 2]]), None),
        ]
    )
    assert rle.encode_masks(crops, device) == expected
    replaced = masks.copy()
    replaced[2] = ~replaced[2]
    crops[2] = MaskCrop.from_full(replaced[2])
    substituted = np.array([False, False, True, False, False])
    out = rle.encode_masks(crops, device, substituted)
    assert out == [rle.encode(m) for m in replaced]
    assert out[2] != expected[2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_encode_tensor_on_cuda() -> None:  # pragma: no cover - run on a GPU machine
    rng = np.random.default_rng(4)
    masks = rng.random((6, 257, 301)) < 0.5
    dev = torch.from_numpy(masks).cuda()
    ready = torch.cuda.current_stream().record_event()
    assert rle.encode_tensor(dev, ready) == [_coco(m) for m in masks]
