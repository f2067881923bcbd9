"""Checkpoint loading, model detection and the errors raised before any image work."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from samrs.benchmarks.run import make_bench_dataset
from samrs.cli import main
from samrs.outputs.manifest import read_table
from samrs.segmenters import (
    CheckpointError,
    checkpoint_sha256,
    create_segmenter,
    validate_checkpoint,
)
from samrs.segmenters.checkpoints import detect_model, inspect_checkpoint, load_state_dict
from samrs.segmenters.models import SAM_MODELS, build_random_model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(build_random_model(SAM_MODELS["tiny"], seed=5).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_hq_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_hq_tiny.pth"
    torch.save(build_random_model(SAM_MODELS["tiny"], hq=True, seed=5).state_dict(), path)
    return path


def _error(path: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        validate_checkpoint(kw.pop("name", "sam"), checkpoint=str(path), **kw)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_detects_the_model_of_a_saved_tiny_checkpoint(tiny_ckpt: Path, tiny_hq_ckpt: Path) -> None:
    info = validate_checkpoint("sam", checkpoint=str(tiny_ckpt))
    assert info is not None and (info.model, info.hq) == ("tiny", False)
    hq = validate_checkpoint("sam-hq", checkpoint=str(tiny_hq_ckpt), model="tiny")
    assert hq is not None and (hq.model, hq.hq) == ("tiny", True)


def test_detects_the_published_architectures_from_shapes() -> None:
    for name, cfg in SAM_MODELS.items():
        # shapes only: the tensors the detection reads, without building the big models
        state = {
            "image_encoder.patch_embed.proj.weight": torch.empty(cfg.encoder_embed_dim, 3, 16, 16),
            "image_encoder.pos_embed": torch.empty(
                1, cfg.embedding_size, cfg.embedding_size, cfg.encoder_embed_dim
            ),
            "prompt_encoder.no_mask_embed.weight": torch.empty(1, cfg.prompt_embed_dim),
            **{
                f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1)
                for i in range(cfg.encoder_depth)
            },
        }
        assert detect_model(state) == (name, False)


def test_checkpoint_loads_the_same_weights(tiny_ckpt: Path) -> None:
    seg = create_segmenter("sam", checkpoint=str(tiny_ckpt), device="cpu")
    ref = create_segmenter("sam", random_weights=True, seed=5, device="cpu")
    for (k, a), b in zip(
        seg.model.state_dict().items(), ref.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    facts = seg.describe()
    assert facts["model"] == "tiny" and facts["random_weights"] is False
    assert facts["checkpoint_sha256"] == hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()
    assert checkpoint_sha256(tiny_ckpt) == facts["checkpoint_sha256"]
    assert ref.describe()["checkpoint_sha256"] is None and ref.describe()["random_weights"] is True


def test_wrapped_and_prefixed_state_dicts_are_accepted(tiny_ckpt: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_ckpt, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    info, loaded = inspect_checkpoint(wrapped)
    assert info.model == "tiny" and set(loaded) == set(state)


def test_missing_and_unreadable(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.pth")
    assert "not a regular file" in _error(tmp_path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty" in _error(empty)


def test_truncated_checkpoint(tiny_ckpt: Path, tmp_path: Path) -> None:
    data = tiny_ckpt.read_bytes()
    half = tmp_path / "half.pth"
    half.write_bytes(data[: len(data) // 2])
    assert "truncated checkpoint" in _error(half)
    almost = tmp_path / "almost.pth"  # only the zip's end record is missing
    almost.write_bytes(data[:-22])
    assert "truncated checkpoint" in _error(almost)
    legacy = tmp_path / "legacy.pth"  # the pre-1.6 pickle format, whole then cut short
    torch.save(
        torch.load(tiny_ckpt, weights_only=True), legacy, _use_new_zipfile_serialization=False
    )
    assert validate_checkpoint("sam", checkpoint=str(legacy)).model == "tiny"  # type: ignore[union-attr]
    legacy.write_bytes(legacy.read_bytes()[:-1000])
    message = _error(legacy)
    assert "not a readable PyTorch checkpoint" in message and len(message) < 400
    corrupt = tmp_path / "corrupt.pth"  # whole, but its last central directory entry is broken
    at = data.rfind(b"PK\x01\x02")
    corrupt.write_bytes(data[:at] + b"XXXX" + data[at + 4 :])
    message = _error(corrupt)
    assert "RuntimeError: PytorchStreamReader failed reading zip archive" in message
    assert len(message) < 300


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    assert "not a PyTorch checkpoint (a text file)" in _error(text)
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 2564550879\n")
    assert "Git LFS pointer" in _error(lfs)
    page = tmp_path / "page.pth"
    page.write_text("<!DOCTYPE html>\n<html><body>Not Found</body></html>\n")
    assert "HTML page" in _error(page)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    safetensors = tmp_path / "model.safetensors"
    safetensors.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    assert "a safetensors file" in _error(safetensors)
    binary = tmp_path / "random.pth"
    binary.write_bytes(bytes(range(256)))
    assert "unknown file signature 00010203" in _error(binary)
    pickled = tmp_path / "object.pth"
    pickled.write_bytes(pickle.dumps({"weights": np.arange(3), "when": Path("x")}))
    _error(pickled)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, other)
    assert "not a SAM checkpoint" in _error(other)
    not_tensors = tmp_path / "config.pth"
    torch.save({"lr": 0.1}, not_tensors)
    assert "not a SAM checkpoint" in _error(not_tensors)


def test_wrong_architecture_and_family(tiny_ckpt: Path, tiny_hq_ckpt: Path, tmp_path: Path) -> None:
    assert "holds a tiny model, not the requested vit_b" in _error(tiny_ckpt, model="vit_b")
    assert "use the sam-hq segmenter" in _error(tiny_hq_ckpt)
    assert "use the sam segmenter" in _error(tiny_ckpt, name="sam-hq")
    # construction fails the same way, before any image work
    with pytest.raises(CheckpointError, match="not the requested vit_b"):
        create_segmenter("sam", checkpoint=str(tiny_ckpt), model="vit_b")
    state = torch.load(tiny_ckpt, weights_only=True)
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(48, 3, 16, 16)
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    assert "unknown SAM architecture" in _error(odd)
    state = torch.load(tiny_ckpt, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.iou_prediction_head.layers.0.weight"] = torch.zeros(7, 7)
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    # the structure is checked with the checkpoint, before any image work
    for check in (validate_checkpoint, create_segmenter):
        with pytest.raises(CheckpointError, match=r"1 missing tensors.*of another shape") as info:
            check("sam", checkpoint=str(partial))
        assert str(partial) in str(info.value)
        assert "not a complete SAM tiny checkpoint" in str(info.value)


def test_weight_options() -> None:
    with pytest.raises(CheckpointError, match=r"--checkpoint.*grabcut"):
        validate_checkpoint("sam")
    with pytest.raises(CheckpointError, match="grabcut"):
        create_segmenter("sam-hq")
    assert validate_checkpoint("sam", random_weights=True) is None
    assert validate_checkpoint("grabcut") is None
    with pytest.raises(ValueError, match="unknown segmenter"):
        validate_checkpoint("sam2")
    with pytest.raises(ValueError, match="unknown model"):
        validate_checkpoint("sam", model="vit_g", random_weights=True)
    with pytest.raises(ValueError, match="not both"):
        validate_checkpoint("sam", checkpoint="x.pth", random_weights=True)


def test_load_state_dict_returns_cpu_tensors(tiny_ckpt: Path) -> None:
    state = load_state_dict(tiny_ckpt)
    assert all(v.device.type == "cpu" for v in state.values())
    assert len(state) == len(build_random_model(SAM_MODELS["tiny"]).state_dict())


# ----------------------------------------------------------------------------- samrs build


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dota"
    make_bench_dataset(root, n_images=1, objects_per_image=3, image_size=256, seed=3)
    return root


def _build(root: Path, out: Path, *args: str) -> Result:
    argv = ["-q", "build", "--source", "dota", "--root", str(root), "--out", str(out)]
    return CliRunner().invoke(main, [*argv, "--gpus", "0", *args])


def test_build_checks_the_checkpoint_before_any_work(
    bench_root: Path, tiny_ckpt: Path, tiny_hq_ckpt: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:100_000])
    text = tmp_path / "readme.pth"
    text.write_text("weights are at https://example.org\n")
    state = torch.load(tiny_ckpt, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    partial = tmp_path / "partial.pth"
    torch.save(state, partial)
    cases = [
        (["--checkpoint", str(partial)], "partial.pth: not a complete SAM tiny checkpoint: 1 miss"),
        (["--checkpoint", str(tmp_path / "missing.pth")], "missing.pth: checkpoint not found"),
        (["--checkpoint", str(truncated)], "truncated.pth: truncated checkpoint"),
        (["--checkpoint", str(text)], "readme.pth: not a PyTorch checkpoint (a text file)"),
        (["--checkpoint", str(tiny_ckpt), "--model", "vit_b"], "not the requested vit_b"),
        (["--checkpoint", str(tiny_hq_ckpt)], "use the sam-hq segmenter"),
        (["--checkpoint", str(tiny_ckpt), "--segmenter", "sam-hq"], "use the sam segmenter"),
        ([], "--checkpoint"),
        (["--checkpoint", str(tiny_ckpt), "--random-weights"], "not both"),
    ]
    out = tmp_path / "out"
    for args, expected in cases:
        result = _build(bench_root, out, *args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert expected in lines[0]
        assert not out.exists(), args  # nothing was written: the check ran before any work


@pytest.mark.slow
def test_build_detects_the_model_and_records_the_weights(
    bench_root: Path, tiny_ckpt: Path, tmp_path: Path
) -> None:
    with_ckpt, random = tmp_path / "ckpt", tmp_path / "random"
    assert _build(bench_root, with_ckpt, "--checkpoint", str(tiny_ckpt)).exit_code == 0
    # the checkpoint holds the random weights of seed 5: the same masks prove they were loaded
    result = _build(bench_root, random, "--random-weights", "--model", "tiny", "--seed", "5")
    assert result.exit_code == 0, result.output
    meta = json.loads((with_ckpt / "samrs.json").read_text())["segmenter"]
    assert meta["model"] == "tiny" and meta["random_weights"] is False
    assert meta["checkpoint"] == str(tiny_ckpt.resolve())
    assert meta["checkpoint_sha256"] == hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()
    meta = json.loads((random / "samrs.json").read_text())["segmenter"]
    assert meta["random_weights"] is True and meta["model"] == "tiny"
    assert meta["checkpoint"] is None and meta["checkpoint_sha256"] is None
    a = read_table(with_ckpt, "instances").column("segmentation").to_pylist()
    b = read_table(random, "instances").column("segmentation").to_pylist()
    assert len(a) == 3 and a == b
    other = _build(bench_root, tmp_path / "seed0", "--random-weights", "--model", "tiny")
    assert other.exit_code == 0
    assert read_table(tmp_path / "seed0", "instances").column("segmentation").to_pylist() != a
