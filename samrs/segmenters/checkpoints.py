"""Reading and checking SAM / HQ-SAM checkpoints, before any image work starts.

``builtin:NAME`` names a checkpoint shipped in the package (:func:`resolve_checkpoint`;
``builtin:tiny`` is the ``tiny`` model trained by ``samrs pretrain``); every function here
that takes a path accepts it.

A checkpoint is a ``torch.save`` of the model's ``state_dict`` (the official
``sam_vit_*.pth`` and ``sam_hq_vit_*.pth`` files), optionally wrapped in ``{"model": ...}``
or ``{"state_dict": ...}`` and/or with a ``module.`` prefix (DDP). It is loaded with
``torch.load(..., map_location="cpu", weights_only=True)``, memory-mapped when the file is in
the zip format, so checking even a 2.5 GB ViT-H file takes a moment.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from samrs.errors import SamrsError
from samrs.segmenters.models import SAM_MODELS, SamConfig

if TYPE_CHECKING:
    import torch


class CheckpointError(SamrsError):
    """A checkpoint is missing, unreadable, truncated, foreign or of another architecture.

    The message is one line naming the path and the cause.
    """


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds.

    Attributes:
        path: the file.
        model: registry name of its architecture (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``).
        hq: whether it is an HQ-SAM checkpoint (has the HQ output token).
        n_tensors: number of tensors in its state dict.
    """

    path: str
    model: str
    hq: bool
    n_tensors: int


_PATCH_KEY = "image_encoder.patch_embed.proj.weight"
_HQ_KEY = "mask_decoder.hf_token.weight"
_BLOCK_RE = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).with_name("weights")
"""Checkpoints shipped with the package: ``NAME.pth`` and ``NAME.json`` (how it was made)."""


def builtin_names() -> tuple[str, ...]:
    """Names of the shipped checkpoints (``--checkpoint builtin:NAME``)."""
    return tuple(sorted(p.stem for p in BUILTIN_DIR.glob("*.pth")))


def is_builtin(path: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` names a shipped checkpoint (``builtin:NAME``)."""
    return path is not None and str(path).startswith(BUILTIN_PREFIX)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The file of a checkpoint argument: ``builtin:NAME`` is the shipped ``NAME.pth``
    (trained by ``samrs pretrain``); anything else is a path, returned as given.

    Raises:
        CheckpointError: an unknown builtin name (the message lists the known ones).
    """
    if not is_builtin(path):
        return Path(path)
    name = str(path)[len(BUILTIN_PREFIX) :]
    file = BUILTIN_DIR / f"{name}.pth"
    if not name or "/" in name or not file.is_file():
        known = ", ".join(BUILTIN_PREFIX + n for n in builtin_names()) or "none"
        raise CheckpointError(f"{path}: no such builtin checkpoint; known: {known}")
    return file


def builtin_info(name: str) -> dict[str, object]:
    """The JSON recorded beside a shipped checkpoint (training config, sha256, losses)."""
    import json

    file = resolve_checkpoint(BUILTIN_PREFIX + name).with_suffix(".json")
    return json.loads(file.read_text())


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks); ``builtin:NAME`` is resolved."""
    digest = hashlib.sha256()
    with open(resolve_checkpoint(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:  # torch's messages go on with advice; keep their first sentence
        first = first.split(". ", 1)[0][:limit]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (CPU tensors, memory-mapped where possible).

    Raises:
        CheckpointError: missing, not a regular file, unreadable, truncated or not a
            ``torch.save`` of a dict of tensors (or an unknown ``builtin:NAME``).
    """
    p = resolve_checkpoint(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found")
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint is not a regular file")
    if not os.access(p, os.R_OK):
        raise CheckpointError(f"{p}: checkpoint is not readable (permission denied)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint is empty (0 bytes)")
    _check_signature(p)
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before failing
            warnings.simplefilter("ignore", UserWarning)
            obj = _torch_load(p)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(
            f"{p}: not a readable PyTorch checkpoint (truncated or foreign file?): {_one_line(exc)}"
        ) from exc
    return _unwrap(obj, p)


_ZIP_HEADER = b"PK\x03\x04"
_ZIP_END = b"PK\x05\x06"  # end-of-central-directory record, within the last 64 KiB + 22 bytes
_ZIP_END_SPAN = (1 << 16) + 22


def _check_signature(p: Path) -> None:
    """Fail fast, without importing torch, on files that cannot be a ``torch.save`` output.

    ``torch.save`` writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle
    (first byte 0x80). A zip without its end record was cut short (an interrupted copy or
    download); text (an HTML error page, a Git LFS pointer) or a safetensors file is foreign.
    """
    size = p.stat().st_size
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
            fh.seek(max(0, size - _ZIP_END_SPAN))
            tail = fh.read()
    except OSError as exc:
        raise CheckpointError(f"{p}: checkpoint is not readable: {exc.strerror}") from exc
    if head.startswith(_ZIP_HEADER):
        if _ZIP_END not in tail:
            raise CheckpointError(
                f"{p}: truncated checkpoint ({size} bytes, the end of its zip archive is "
                "missing: an interrupted copy or download?)"
            )
        return
    if head[:1] == b"\x80":  # a pickle: legacy torch.save format, torch.load judges it
        return
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        raise CheckpointError(
            f"{p}: a safetensors file; samrs reads PyTorch checkpoints (.pth from torch.save)"
        )
    text = head.decode("utf-8", errors="ignore")  # a character cut at byte 64 is dropped
    if len(text.encode()) >= len(head) - 3 and all(c.isprintable() or c.isspace() for c in text):
        hint = (
            "a Git LFS pointer: fetch the real file with git lfs pull"
            if text.startswith("version https://git-lfs")
            else "an HTML page: a failed download?"
            if text.lstrip().lower().startswith(("<!doctype html", "<html"))
            else "a text file"
        )
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({hint})")
    raise CheckpointError(
        f"{p}: not a PyTorch checkpoint (unknown file signature {head[:4].hex()}; "
        "expected a zip archive or a pickle written by torch.save)"
    )


def _torch_load(p: Path) -> object:
    import torch

    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(p, map_location="cpu", weights_only=True)  # legacy format


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _PATCH_KEY not in obj:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: not a SAM checkpoint (expected a state dict, found {type(obj).__name__})"
        )
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    import torch

    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a SAM checkpoint (entry {bad[0]!r} is not a tensor)")
    return state


def detect_model(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike[str] = ""
) -> tuple[str, bool]:
    """``(model name, is_hq)`` of a SAM / HQ-SAM state dict, from its tensors' shapes.

    Raises:
        CheckpointError: not a SAM state dict, or an architecture not in the registry.
    """
    if _PATCH_KEY not in state:
        if any(k.startswith("image_encoder.layers.") for k in state):
            raise CheckpointError(
                f"{path}: a TinyViT (MobileSAM / Light HQ-SAM vit_tiny) checkpoint; samrs "
                "supports the ViT encoders vit_b, vit_l, vit_h and tiny"
            )
        raise CheckpointError(f"{path}: not a SAM checkpoint (no tensor {_PATCH_KEY!r})")
    embed_dim = int(state[_PATCH_KEY].shape[0])
    depth = len({int(m.group(1)) for k in state if (m := _BLOCK_RE.match(k))})
    prompt = state.get("prompt_encoder.no_mask_embed.weight")
    prompt_dim = int(prompt.shape[1]) if prompt is not None else -1
    pos = state.get("image_encoder.pos_embed")
    grid = int(pos.shape[1]) if pos is not None else -1
    for name, cfg in SAM_MODELS.items():
        if (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.prompt_embed_dim, cfg.embedding_size) == (
            embed_dim,
            depth,
            prompt_dim,
            grid,
        ):
            return name, _HQ_KEY in state
    raise CheckpointError(
        f"{path}: unknown SAM architecture (encoder width {embed_dim}, {depth} blocks, "
        f"prompt width {prompt_dim}, embedding grid {grid}); known: {', '.join(SAM_MODELS)}"
    )


def inspect_checkpoint(
    path: str | os.PathLike[str], model: str | None = None, hq: bool = False
) -> tuple[CheckpointInfo, dict[str, torch.Tensor]]:
    """Load a checkpoint and check it against the expected model and family.

    Args:
        path: the file.
        model: expected architecture, or None to accept the detected one.
        hq: whether an HQ-SAM checkpoint is expected (segmenter ``sam-hq``) or a SAM one.

    Returns:
        The facts and the state dict.

    Raises:
        CheckpointError: any problem, with a one-line cause naming the path.
    """
    state = load_state_dict(path)
    detected, is_hq = detect_model(state, path)
    if model is not None and model not in SAM_MODELS:
        raise CheckpointError(f"{path}: unknown model {model!r}; known: {', '.join(SAM_MODELS)}")
    if model is not None and model != detected:
        raise CheckpointError(
            f"{path}: checkpoint holds a {detected} model, not the requested {model}"
        )
    if is_hq and not hq:
        raise CheckpointError(f"{path}: an HQ-SAM checkpoint; use the sam-hq segmenter for it")
    if hq and not is_hq:
        raise CheckpointError(
            f"{path}: a plain SAM checkpoint (no HQ output token); use the sam segmenter for it"
        )
    check_structure(state, detected, is_hq, path)
    info = CheckpointInfo(str(path), detected, is_hq, len(state))
    return info, state


def expected_shapes(model: str, hq: bool) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a registry model's state dict (built on the meta device:
    no memory, a fraction of a second even for vit_h)."""
    import torch

    from samrs.segmenters.models import build_model

    with torch.device("meta"):
        net = build_model(SAM_MODELS[model], hq=hq)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def structure_problems(
    own: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor]
) -> list[str]:
    """What keeps ``state`` from loading strictly into a model with tensors ``own`` (empty
    when it fits): missing, unexpected and wrong-shaped tensors, counted, the first named."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k]) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensors of another shape (e.g. {k}: {tuple(state[k].shape)} "
            f"instead of {tuple(own[k])})"
        )
    return problems


def check_structure(
    state: Mapping[str, torch.Tensor], model: str, hq: bool, path: str | os.PathLike[str]
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` loads strictly into ``model``: found
    when the checkpoint is inspected, before any image work (not inside a worker)."""
    problems = structure_problems(expected_shapes(model, hq), state)
    if problems:
        kind = "HQ-SAM" if hq else "SAM"
        raise CheckpointError(
            f"{path}: not a complete {kind} {model} checkpoint: {'; '.join(problems)}"
        )


def load_into(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]
) -> None:
    """``model.load_state_dict(state, strict=True)``, errors turned into :class:`CheckpointError`."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = structure_problems(own, state)
    if problems:
        raise CheckpointError(f"{path}: does not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def config_of(model: str) -> SamConfig:
    """The registry entry of a model name (``ValueError`` naming the known ones otherwise)."""
    try:
        return SAM_MODELS[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(SAM_MODELS)}") from None


# --- ROS-SAM ----------------------------------------------------------------------------------

ROS_SAM_FILES = (
    ("model.safetensors", "model_1.safetensors"),
    ("pytorch_model.bin", "pytorch_model_1.bin"),
)
"""An ``accelerate`` checkpoint folder of ROS-SAM's training: its HQ decoder (``net``), then
its SAM with LoRA on every block's qkv (``sam``)."""
_ROS_LORA = re.compile(
    r"^(image_encoder\.blocks\.\d+\.attn\.qkv)\.(qkv\.(weight|bias)|linear_[ab]_[qv]\.weight)$"
)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - optional dependency
            raise CheckpointError(
                f"{path}: reading safetensors needs the safetensors package "
                "(pip install 'samrs[ros-sam]')"
            ) from exc
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not a readable safetensors file: {_one_line(exc)}"
            ) from exc
        return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    return load_state_dict(path)


def ros_sam_state(folder: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """An HQ-SAM state dict from a ROS-SAM checkpoint folder (see :data:`ROS_SAM_FILES`).

    The LoRA updates are merged into the qkv weights (``W + B A`` on the q and v rows: the
    same linear map), the trained HQ decoder replaces SAM's decoder, and the result is checked
    to be a complete HQ-SAM checkpoint of its size (:func:`check_structure`), so the ``sam-hq``
    segmenter reproduces ROS-SAM's network (its HQ output: ``--hq-token-only``).

    Raises:
        CheckpointError: files missing or unreadable, LoRA tensors incomplete, or a result
            that is not a complete HQ-SAM checkpoint.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a folder (expected ROS-SAM's checkpoint folder)")
    for dec_name, enc_name in ROS_SAM_FILES:
        if (root / dec_name).is_file() and (root / enc_name).is_file():
            break
    else:
        names = " or ".join(f"{a} + {b}" for a, b in ROS_SAM_FILES)
        raise CheckpointError(f"{root}: no ROS-SAM checkpoint files ({names})")
    decoder = _read_tensors(root / dec_name)
    sam = _read_tensors(root / enc_name)
    state: dict[str, torch.Tensor] = {}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sam.items():
        m = _ROS_LORA.match(key)
        if m:
            lora.setdefault(m.group(1), {})[m.group(2)] = value
        elif key.startswith(("image_encoder.", "prompt_encoder.")):
            state[key] = value
    for prefix, parts in lora.items():
        need = ("qkv.weight", "linear_a_q.weight", "linear_b_q.weight", "linear_a_v.weight",
                "linear_b_v.weight")  # fmt: skip
        missing = [p for p in need if p not in parts]
        if missing:
            raise CheckpointError(f"{root / enc_name}: {prefix} lacks {', '.join(missing)}")
        weight = parts["qkv.weight"].float().clone()
        d = weight.shape[1]
        weight[:d] += parts["linear_b_q.weight"].float() @ parts["linear_a_q.weight"].float()
        weight[2 * d :] += parts["linear_b_v.weight"].float() @ parts["linear_a_v.weight"].float()
        state[f"{prefix}.weight"] = weight.to(parts["qkv.weight"].dtype)
        if "qkv.bias" in parts:
            state[f"{prefix}.bias"] = parts["qkv.bias"]
    state.update({f"mask_decoder.{k}": v for k, v in decoder.items()})
    model, is_hq = detect_model(state, root)
    if not is_hq:
        raise CheckpointError(
            f"{root / dec_name}: no HQ output token (hf_token): not ROS-SAM's decoder"
        )
    check_structure(state, model, True, root)
    return state
