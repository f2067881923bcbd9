"""Checkpoint loading, model detection and the errors raised before any image work."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

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
            "image_encoder.pos_embed": torch.empty(1, 64, 64, cfg.encoder_embed_dim),
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
    assert "not a readable PyTorch checkpoint" in _error(half)


def test_foreign_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    assert "not a readable PyTorch checkpoint" in _error(text)
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
    validate_checkpoint("sam", checkpoint=str(partial))  # the quick check reads shapes only
    with pytest.raises(CheckpointError, match=r"1 missing tensors.*of another shape") as info:
        create_segmenter("sam", checkpoint=str(partial))
    assert str(partial) in str(info.value)


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
