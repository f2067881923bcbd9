"""The ``sam`` segmenter: segment-anything's model behind a batched, device-agnostic pipeline.

Pipeline (``SamPredictor`` is not used):

1. :meth:`SamSegmenter.preprocess`: each uint8 image goes to the device as is (pinned memory,
   non-blocking copy on CUDA), is resized there so its longest side is the model input size
   (SAM's ``ResizeLongestSide`` rule; bilinear with antialiasing, rounded to integers as an
   8-bit image would be), normalised and zero-padded to a square; images are stacked into
   batches of ``batch_size``.
2. :meth:`SamSegmenter.encode`: one image-encoder call per batch.
3. :meth:`SamSegmenter.decode`: the prompts of all images of the batch are decoded together in
   chunks of ``chunk_size`` (each prompt gathers its own image's embedding, so one chunk can
   span several images and memory stays bounded for images with hundreds of objects);
   multimask output keeps the mask with the highest predicted IoU.
4. Postprocessing on the device: low-resolution logits upsampled to the padded input, cropped,
   resized to the image size, thresholded at 0; SAM's stability score (offset 1.0) from the
   same logits; boxes and crops (:mod:`.postprocess`). With ``keep_device_masks`` the
   full-image masks also stay on the device in ``MaskSet.device_masks`` for the build's RLE
   stage (:func:`samrs.core.rle.encode_masks`).

The chunk loop does not wait on the device for the chunk it has just launched: chunk k is
finished on the host (its crops gathered and copied back on a side CUDA stream that waits
on chunk k's event, into pinned memory) after chunk k+1 has been queued, and the small
results travel through pinned, non-blocking copies. The only waits are for work already
queued before (chunk k's copies), where the size of the crops is data-dependent.

Prompt coordinates are used as annotated (as SAMRS did) and scaled to the model input like
``ResizeLongestSide.apply_coords``. A mask prompt (``rbox-mask``) is the polygon rasterized on
the decoder's low-resolution grid, given as logits of ``+MASK_PROMPT_LOGIT`` inside and
``-MASK_PROMPT_LOGIT`` outside.

On CUDA: bf16 autocast, TF32 matmuls, ``scaled_dot_product_attention`` (also with the
encoder's relative-position bias), batched encoder and decoder calls and an optional
``torch.compile`` of the encoder (the last, smaller batch is padded so it is compiled once).
On the CPU the same code runs in fp32, but the encoder sees one image and the decoder one
prompt at a time: oneDNN/BLAS kernels round differently with the number of rows, batching
gains little on a few cores, and this way results are bit-identical whatever ``batch_size``
and ``chunk_size`` (on CUDA they agree within bf16 tolerance).

Speed on 2 shared CPU cores, ``tiny``: encoder about 0.23 s per image, decoder about 0.08-0.1 s
for 20 boxes, postprocessing to a 1024 x 1024 image about 0.09 s for 20 masks.

For benchmarks, :meth:`SamSegmenter.model_forward` runs encoder + decoder alone on
pre-loaded, preprocessed tensors (the "model only" ceiling).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from samrs.core.geometry import rasterize_polygon
from samrs.core.masks import DeviceMasks, MaskCrop
from samrs.devices import resolve_device
from samrs.segmenters import check_weights
from samrs.segmenters.base import MaskSet, PromptSet, Segmenter, as_rgb, empty_maskset
from samrs.segmenters.checkpoints import (
    checkpoint_sha256,
    config_of,
    inspect_checkpoint,
    load_into,
)
from samrs.segmenters.models import build_model, build_random_model
from samrs.segmenters.postprocess import (
    crops_from_boxes,
    mask_boxes,
    resize_longest_side,
    stability_into,
    stability_score,
    threshold_logits,
    upscale_logits,
    upscale_logits_host,
)

MASK_PROMPT_LOGIT = 10.0
"""Magnitude of the logits of a dense mask prompt (``+`` inside the polygon, ``-`` outside)."""

PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("sdpa", "eager")
RESIZES = ("torch", "pil")

if TYPE_CHECKING:

    class SamModule(torch.nn.Module):
        """What this pipeline uses of segment_anything's (or HQ-SAM's) ``Sam``, for the type
        checker only: torch types a submodule reached by attribute as ``Tensor | Module``, and
        segment_anything ships no types (its submodules stay ``Any``)."""

        image_encoder: Any
        prompt_encoder: Any
        mask_decoder: Any
        pixel_mean: torch.Tensor
        pixel_std: torch.Tensor
        mask_threshold: float


# --------------------------------------------------------------------------- attention


def _rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """SAM's decomposed relative-position term as an additive (B, heads, HW, HW) bias."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, heads, _, dim = q.shape
    h, w = size
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)
    r_q = q.reshape(b * heads, h, w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, heads, h * w, h * w)


def _encoder_attention_sdpa(self: Any, x: torch.Tensor) -> torch.Tensor:
    """ImageEncoderViT ``Attention.forward`` through ``scaled_dot_product_attention``."""
    b, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    bias = _rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w)) if self.use_rel_pos else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return self.proj(out)


def _decoder_attention_sdpa(
    self: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """TwoWayTransformer ``Attention.forward`` through ``scaled_dot_product_attention``."""
    q = self._separate_heads(self.q_proj(q), self.num_heads)
    k = self._separate_heads(self.k_proj(k), self.num_heads)
    v = self._separate_heads(self.v_proj(v), self.num_heads)
    out = F.scaled_dot_product_attention(q, k, v)
    return self.out_proj(self._recombine_heads(out))


_SWAPPED: dict[tuple[type, Any], type] = {}


def _swap_forward(module: torch.nn.Module, forward: Any) -> None:
    """Give one module instance a subclass whose ``forward`` is ``forward`` (same parameters)."""
    cls = type(module)
    key = (cls, forward)
    if key not in _SWAPPED:
        _SWAPPED[key] = type(f"Sdpa{cls.__name__}", (cls,), {"forward": forward})
    module.__class__ = _SWAPPED[key]


def use_sdpa(model: SamModule) -> None:
    """Route every attention of a SAM model through ``scaled_dot_product_attention`` (in place).

    Same parameters and state dict; only this instance changes (the reference ``SamPredictor``
    path of another instance keeps SAM's own attention).
    """
    for block in model.image_encoder.blocks:
        _swap_forward(block.attn, _encoder_attention_sdpa)
    transformer = model.mask_decoder.transformer
    for layer in transformer.layers:
        for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            _swap_forward(getattr(layer, name), _decoder_attention_sdpa)
    _swap_forward(transformer.final_attn_token_to_image, _decoder_attention_sdpa)


# --------------------------------------------------------------------------- pipeline


@dataclass
class Encoded:
    """Image embeddings of one batch.

    Attributes:
        embeddings: (B, C, h, w) image embeddings.
        hq_features: (B, C/8, 4h, 4w) HQ-SAM's fused early/late features, or None for SAM.
        input_sizes: per image, ``(h, w)`` after the longest-side resize (before padding).
        original_sizes: per image, ``(H, W)``.
    """

    embeddings: torch.Tensor
    hq_features: torch.Tensor | None
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


@dataclass
class _DevicePiece:
    """The device-postprocessed masks of one image within a decoded chunk.

    Attributes:
        image, loc: the image (index in the batch) and the masks' positions in its MaskSet.
        binary: (n, H, W) bool masks, on the device until their crops are copied.
        boxes, scores, stability: host tensors (filled asynchronously on CUDA).
        copied: CUDA event after which the host tensors are complete (None elsewhere).
    """

    image: int
    loc: np.ndarray
    binary: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    stability: torch.Tensor
    copied: Any = None


class SamSegmenter(Segmenter):
    """SAM prompted with boxes, points and/or dense masks, batched on any device.

    Args:
        model: ``vit_b``, ``vit_l``, ``vit_h`` or ``tiny``; None: detected from the checkpoint
            (``tiny`` with ``random_weights``).
        checkpoint: path of the weights (the only source of weights).
        random_weights: run without a checkpoint on seeded random weights (tests, benchmarks).
        device: ``cuda``, ``cuda:1``, ``cpu``...; None: CUDA when available.
        seed: seed of the random weights.
        batch_size: images per encoder call.
        chunk_size: prompts per decoder call (bounds memory).
        multimask: predict 3 masks per prompt and keep the one with the highest predicted IoU.
        compile: ``torch.compile`` the image encoder (compiled on the first batch; see
            :meth:`warmup`).
        precision: ``fp32`` or ``bf16`` (autocast); None: bf16 on CUDA, fp32 elsewhere.
        attention: ``sdpa`` (default) or ``eager`` (segment-anything's own attention code).
        resize: ``torch`` (default: antialiased bilinear on the device) or ``pil`` (PIL's
            bilinear resize on the host, exactly what segment-anything's ``SamPredictor`` does:
            for reproducing SAMRS on images that are not 1024 px, ~1% of pixels differ).
        keep_device_masks: on the device path, also leave each image's full-image masks on
            the device in ``MaskSet.device_masks`` (for the build's RLE stage); they hold
            device memory until the MaskSet is dropped. Off: nothing stays on the device.

    Raises:
        CheckpointError: no checkpoint (and not ``random_weights``), or a missing, unreadable,
            truncated, foreign or mismatching checkpoint; raised here, before any image work.
    """

    name = "sam"
    hq = False
    prefetches = True

    def __init__(
        self,
        model: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        random_weights: bool = False,
        device: str | None = None,
        seed: int = 0,
        batch_size: int = 4,
        chunk_size: int = 64,
        multimask: bool = False,
        compile: bool = False,
        precision: str | None = None,
        attention: str = "sdpa",
        resize: str = "torch",
        keep_device_masks: bool = False,
    ) -> None:
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        self.resize = resize
        if batch_size < 1 or chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be at least 1")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        check_weights(self.name, checkpoint, random_weights)
        self.device = resolve_device(device)
        self.precision = precision or ("bf16" if self.device.type == "cuda" else "fp32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.random_weights = bool(random_weights)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.multimask = bool(multimask)
        self.attention = attention
        self.keep_device_masks = bool(keep_device_masks)
        self._sha256: str | None = None
        if self.checkpoint is not None:
            info, state = inspect_checkpoint(self.checkpoint, model, hq=self.hq)
            self.model_name = info.model
            net = build_model(config_of(info.model), hq=self.hq)
            load_into(net, state, self.checkpoint)
            del state
        else:
            self.model_name = model or "tiny"
            net = build_random_model(config_of(self.model_name), hq=self.hq, seed=self.seed)
        self.config = config_of(self.model_name)
        sam = cast("SamModule", net)  # build_model's segment_anything (or HQ-SAM) Sam
        if attention == "sdpa":
            use_sdpa(sam)
        for p in sam.parameters():
            p.requires_grad_(False)
        self.model = sam.to(self.device).eval()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.compile = bool(compile)
        self._encoder: Any = self.model.image_encoder
        if self.compile:
            self._encoder = torch.compile(self.model.image_encoder, dynamic=False)
        self.compile_seconds: float | None = None
        self._per_sample = self.device.type == "cpu"
        self._host_postprocess = self.device.type == "cpu"
        self._mean = torch.tensor(self.model.pixel_mean.flatten().tolist(), device=self.device)
        self._std = torch.tensor(self.model.pixel_std.flatten().tolist(), device=self.device)
        with torch.inference_mode():
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        self._upcoming: list[np.ndarray] = []  # the next segment() call's images (prefetch)
        self._ahead: tuple[list[np.ndarray], Encoded] | None = None

    # ------------------------------------------------------------------ facts

    def describe(self) -> dict[str, object]:
        """Model, checkpoint (path and sha256, computed on first call), weights, device, dtype."""
        if self.checkpoint is not None and self._sha256 is None:
            self._sha256 = checkpoint_sha256(self.checkpoint)
        return {
            "segmenter": self.name,
            "model": self.model_name,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self._sha256,
            "random_weights": self.random_weights,
            "seed": self.seed if self.random_weights else None,
            "device": str(self.device),
            "dtype": "bfloat16 autocast" if self.precision == "bf16" else "float32",
            "resize": self.resize,
            "attention": self.attention,
            "multimask": self.multimask,
            "compile": self.compile,
            "image_size": self.config.image_size,
        }

    def _autocast(self) -> Any:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    # ------------------------------------------------------------------ stages

    def _to_device(self, image: np.ndarray) -> torch.Tensor:
        arr = np.ascontiguousarray(as_rgb(image))
        if not arr.flags.writeable:
            arr = arr.copy()
        return self._upload(torch.from_numpy(arr))

    def preprocess(
        self, images: Sequence[np.ndarray]
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """(B, 3, S, S) normalised, padded float32 input on the device, and each image's
        ``(h, w)`` after the longest-side resize."""
        size = self.config.image_size
        batch = torch.zeros((len(images), 3, size, size), device=self.device)
        input_sizes = []
        for i, image in enumerate(images):
            h, w = int(image.shape[0]), int(image.shape[1])
            new_h, new_w = resize_longest_side(h, w, size)
            if self.resize == "pil" and (new_h, new_w) != (h, w):
                pil = Image.fromarray(np.ascontiguousarray(image))
                image = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR))
            t = self._to_device(image).permute(2, 0, 1)[None].float()
            h, w = int(t.shape[-2]), int(t.shape[-1])
            if (new_h, new_w) != (h, w):
                t = F.interpolate(
                    t, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True
                )
                t = t.round_().clamp_(0, 255)
            t = (t[0] - self._mean[:, None, None]) / self._std[:, None, None]
            batch[i, :, :new_h, :new_w] = t
            input_sizes.append((new_h, new_w))
        return batch, input_sizes

    def _encode_batch(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One encoder call: image embeddings and (HQ-SAM only) HQ features."""
        return self._encoder(pixels), None

    def _run_encoder(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image embeddings (and HQ features) of a preprocessed batch.

        On the CPU the images are encoded one at a time: batching gains nothing there, and it
        keeps results bit-identical whatever the batch size.
        """
        start = time.perf_counter()
        if self._per_sample:
            parts = [self._encode_batch(pixels[i : i + 1]) for i in range(pixels.shape[0])]
            emb = torch.cat([p[0] for p in parts])
            hq_parts = [p[1] for p in parts if p[1] is not None]  # all (HQ-SAM) or none (SAM)
            hq = torch.cat(hq_parts) if hq_parts else None
        elif self.compile and pixels.shape[0] < self.batch_size:
            # a compiled encoder is specialised to one batch shape: pad the last batch
            n = pixels.shape[0]
            pad = pixels.new_zeros((self.batch_size - n, *pixels.shape[1:]))
            emb, hq = self._encode_batch(torch.cat([pixels, pad]))
            emb, hq = emb[:n], None if hq is None else hq[:n]
        else:
            emb, hq = self._encode_batch(pixels)
        if self.compile and self.compile_seconds is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - start
        return emb, hq

    def encode(self, images: Sequence[np.ndarray]) -> Encoded:
        """Preprocess and encode a batch of images (one encoder call)."""
        originals = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        with torch.inference_mode():
            pixels, input_sizes = self.preprocess(images)
            with self._autocast():
                emb, hq_features = self._run_encoder(pixels)
        return Encoded(emb, hq_features, input_sizes, originals)

    def _prompt_tensors(
        self, prompts: PromptSet, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> dict[str, torch.Tensor | None]:
        """One image's prompts in model-input coordinates, on the device."""
        sy = input_size[0] / original_size[0]
        sx = input_size[1] / original_size[1]
        scale = np.array([sx, sy], dtype=np.float64)
        out: dict[str, torch.Tensor | None] = {"boxes": None, "points": None, "masks": None}
        if prompts.boxes is not None:
            boxes = np.asarray(prompts.boxes, dtype=np.float64).reshape(-1, 2, 2) * scale
            out["boxes"] = torch.as_tensor(boxes.reshape(-1, 4), dtype=torch.float32)
        if prompts.points is not None:
            pts = np.asarray(prompts.points, dtype=np.float64).reshape(-1, 1, 2) * scale
            out["points"] = torch.as_tensor(pts, dtype=torch.float32)
        if prompts.use_mask_prompt:
            low = self.config.low_res_size
            factor = self.config.image_size / low
            polys = (
                np.asarray(prompts.polygons, dtype=np.float64).reshape(-1, 4, 2) * scale / factor
            )
            grid = (
                np.stack([rasterize_polygon(p, low, low) for p in polys])
                if len(polys)
                else np.zeros((0, low, low), bool)
            )
            logits = np.where(grid, MASK_PROMPT_LOGIT, -MASK_PROMPT_LOGIT).astype(np.float32)
            out["masks"] = torch.from_numpy(logits[:, None])
        return out

    def _decode_chunk(
        self,
        embeddings: torch.Tensor,
        hq_features: torch.Tensor | None,
        image_index: torch.Tensor,
        boxes: torch.Tensor | None,
        points: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (n, s, s) and predicted IoU (n,) of one chunk of prompts, each prompt
        using the embedding ``embeddings[image_index[k]]``.

        On the CPU the prompts go through the decoder one at a time: its small matrix products
        round differently with the number of rows, and per prompt the results are
        bit-identical whatever the chunk size (batching gains little there).
        """
        n = int(image_index.shape[0])
        if self._per_sample and n > 1:
            parts = [
                self._decode_chunk(
                    embeddings,
                    hq_features,
                    image_index[k : k + 1],
                    None if boxes is None else boxes[k : k + 1],
                    None if points is None else points[k : k + 1],
                    None if masks is None else masks[k : k + 1],
                )
                for k in range(n)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        pe = self.model.prompt_encoder
        point_arg = None
        if points is not None:
            labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
            point_arg = (points, labels)
        sparse, dense = pe(points=point_arg, boxes=boxes, masks=masks)
        src = embeddings[image_index] + dense
        return self._predict_masks(
            src, sparse, None if hq_features is None else hq_features[image_index]
        )

    def _predict_masks(
        self, src: torch.Tensor, sparse: torch.Tensor, hq_features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` + output selection, for prompts whose image
        embeddings (plus dense prompt embeddings) are already gathered in ``src``."""
        dec = self.model.mask_decoder
        token_weights = [dec.iou_token.weight, dec.mask_tokens.weight]
        if hq_features is not None:
            token_weights.append(dec.hf_token.weight)
        out_tokens = torch.cat(token_weights, dim=0)
        tokens = torch.cat((out_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)
        n, c, h, w = src.shape
        hs, img = dec.transformer(src, self._dense_pe, tokens)
        iou_pred = dec.iou_prediction_head(hs[:, 0, :])
        mask_tokens = hs[:, 1 : 1 + out_tokens.shape[0] - 1, :]
        upscaled = dec.output_upscaling(img.transpose(1, 2).reshape(n, c, h, w))
        picks = [1, 2, 3] if self.multimask else [0]
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[i](mask_tokens[:, i, :]) for i in picks], 1
        )
        uc, uh, uw = upscaled.shape[1:]
        logits = (hyper @ upscaled.reshape(n, uc, uh * uw)).reshape(n, len(picks), uh, uw)
        if self.multimask:
            scores, best = iou_pred[:, 1:4].max(dim=1)
            logits = logits[torch.arange(n, device=logits.device), best]
        else:
            scores = iou_pred[:, 0]
            logits = logits[:, 0]
        if hq_features is not None:
            hq_up = dec.embedding_maskfeature(upscaled) + hq_features
            hq_hyper = dec.hf_mlp(mask_tokens[:, -1, :])[:, None, :]
            hq_logits = (hq_hyper @ hq_up.reshape(n, uc, uh * uw)).reshape(n, uh, uw)
            logits = hq_logits if getattr(self, "hq_token_only", False) else logits + hq_logits
        return logits, scores

    def _postprocess_on_device(
        self,
        low: torch.Tensor,
        scores: torch.Tensor,
        chunk_img: np.ndarray,
        chunk_loc: np.ndarray,
        encoded: Encoded,
        results: list[MaskSet],
    ) -> list[_DevicePiece]:
        """Masks, stability and boxes of one decoded chunk, computed on the device image by
        image, without any wait on the device: the small results travel to the host through
        pinned, non-blocking copies; the masks stay on the device until
        :meth:`_finish_pieces` copies their crops, one chunk later, so the device keeps
        decoding meanwhile (and, with ``keep_device_masks``, in ``MaskSet.device_masks``)."""
        pieces = []
        for i in np.unique(chunk_img):
            sel = np.flatnonzero(chunk_img == i)
            # an image's prompts are consecutive in a chunk: a slice, no index upload
            part = slice(int(sel[0]), int(sel[-1]) + 1)
            assert part.stop - part.start == sel.size
            logits = upscale_logits(
                low[part],
                self.config.image_size,
                encoded.input_sizes[i],
                encoded.original_sizes[i],
            )
            binary = threshold_logits(logits, self.model.mask_threshold)
            stab = stability_score(logits, self.model.mask_threshold, 1.0)
            del logits
            pieces.append(
                _DevicePiece(
                    int(i),
                    chunk_loc[sel],
                    binary,
                    self._to_host(mask_boxes(binary)),
                    self._to_host(scores[part].float()),
                    self._to_host(stab),
                )
            )
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            for piece in pieces:
                piece.copied = event
        if self.keep_device_masks:
            for piece in pieces:
                target = results[piece.image]
                if target.device_masks is None:
                    target.device_masks = DeviceMasks()
                target.device_masks.parts.append((piece.loc, piece.binary, event))
        return pieces

    def _to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host copy of a small device tensor, made without waiting on CUDA (pinned)."""
        if self.device.type != "cuda":
            return tensor.cpu()
        out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        return out.copy_(tensor, non_blocking=True)

    def _upload(self, tensor: torch.Tensor) -> torch.Tensor:
        """A host tensor on the device, copied without waiting (pinned, non-blocking on
        CUDA: a plain copy would wait for all the work queued on the device)."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _finish_pieces(self, pieces: list[_DevicePiece], results: list[MaskSet]) -> None:
        """Copy the crops, scores and stability of postprocessed pieces into ``results``.

        Waits only for the pieces' own work (their event); the crops are gathered and copied
        on a side stream (CUDA), so work queued after them (the next chunk) keeps running."""
        for piece in pieces:
            if piece.copied is not None:
                piece.copied.synchronize()
            target = results[piece.image]
            crops = crops_from_boxes(piece.binary, piece.boxes.numpy(), ready=piece.copied)
            for j, crop in zip(piece.loc.tolist(), crops, strict=True):
                target.crops[j] = crop
            target.scores[piece.loc] = piece.scores.numpy()
            target.stability[piece.loc] = piece.stability.numpy()

    def _postprocess_on_host(
        self,
        low: torch.Tensor,
        scores: torch.Tensor,
        chunk_img: np.ndarray,
        chunk_loc: np.ndarray,
        encoded: Encoded,
        results: list[MaskSet],
    ) -> None:
        """The CPU version of :meth:`_postprocess_on_device`, one mask at a time: each mask's
        full-resolution logits (4 MB for a 1024 x 1024 image) stay in the cache while they
        are thresholded into ``results`` and counted for the stability score, instead of
        going through memory several times as a whole chunk; the resize is OpenCV's
        (:func:`.postprocess.upscale_logits_host`). Same values up to float rounding."""
        threshold = float(self.model.mask_threshold)
        scores_np = scores.float().numpy()
        low_np = low.float().numpy()
        scratch: dict[tuple[int, int], np.ndarray] = {}
        for k, (i, j) in enumerate(zip(chunk_img.tolist(), chunk_loc.tolist(), strict=True)):
            height, width = encoded.original_sizes[i]
            logits = upscale_logits_host(
                low_np[k], self.config.image_size, encoded.input_sizes[i], (height, width)
            )
            binary = scratch.setdefault((height, width), np.empty((height, width), dtype=bool))
            target = results[i]
            target.stability[j] = stability_into(logits, binary, threshold, 1.0)
            target.scores[j] = scores_np[k]
            target.crops[j] = MaskCrop.from_full(binary)

    def decode(
        self,
        encoded: Encoded,
        prompts: Sequence[PromptSet],
        before_last_wait: Any = None,
    ) -> list[MaskSet]:
        """Masks of every prompt of the encoded images (chunked across images).

        ``before_last_wait``: called once every chunk is queued, before waiting for the last
        one's results (to queue more device work meanwhile)."""
        n_images = len(encoded.original_sizes)
        if len(prompts) != n_images:
            raise ValueError(f"{len(prompts)} prompt sets for {n_images} images")
        # Group prompts by their kind (boxes / points / masks) so a chunk has one token layout.
        groups: dict[tuple[bool, bool, bool], list[tuple[int, PromptSet]]] = {}
        for i, ps in enumerate(prompts):
            if len(ps):
                key = (ps.boxes is not None, ps.points is not None, bool(ps.use_mask_prompt))
                groups.setdefault(key, []).append((i, ps))
        results = [empty_maskset(h, w) for h, w in encoded.original_sizes]
        for i, ps in enumerate(prompts):
            if len(ps):
                h, w = encoded.original_sizes[i]
                results[i] = MaskSet(
                    crops=[MaskCrop.empty(h, w)] * len(ps),
                    height=h,
                    width=w,
                    scores=np.zeros(len(ps), dtype=np.float32),
                    stability=np.zeros(len(ps), dtype=np.float32),
                )
        pieces: list[_DevicePiece] = []  # the last chunk's, finished during the next one
        with torch.inference_mode():
            for members in groups.values():
                flat: dict[str, list[torch.Tensor]] = {"boxes": [], "points": [], "masks": []}
                image_index, local_index = [], []
                for i, ps in members:
                    tensors = self._prompt_tensors(
                        ps, encoded.input_sizes[i], encoded.original_sizes[i]
                    )
                    for kind, value in tensors.items():
                        if value is not None:
                            flat[kind].append(value)
                    image_index.append(np.full(len(ps), i, dtype=np.int64))
                    local_index.append(np.arange(len(ps), dtype=np.int64))
                img_idx = np.concatenate(image_index)
                loc_idx = np.concatenate(local_index)
                cat = {k: self._upload(torch.cat(v)) if v else None for k, v in flat.items()}
                img_idx_dev = self._upload(torch.from_numpy(img_idx))
                for start in range(0, len(img_idx), self.chunk_size):
                    sl = slice(start, start + self.chunk_size)
                    with self._autocast():
                        low, scores = self._decode_chunk(
                            encoded.embeddings,
                            encoded.hq_features,
                            img_idx_dev[sl],
                            None if cat["boxes"] is None else cat["boxes"][sl],
                            None if cat["points"] is None else cat["points"][sl],
                            None if cat["masks"] is None else cat["masks"][sl],
                        )
                    if self._host_postprocess:
                        self._postprocess_on_host(
                            low, scores, img_idx[sl], loc_idx[sl], encoded, results
                        )
                    else:
                        done = pieces  # the previous chunk's, copied while this one ran
                        pieces = self._postprocess_on_device(
                            low, scores, img_idx[sl], loc_idx[sl], encoded, results
                        )
                        self._finish_pieces(done, results)
            if before_last_wait is not None:
                before_last_wait()
            self._finish_pieces(pieces, results)
        return results

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image; images without prompts are not encoded."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        results = [empty_maskset(int(im.shape[0]), int(im.shape[1])) for im in images]
        todo = [i for i, ps in enumerate(prompts) if len(ps)]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            batch = [images[i] for i in idx]
            encoded = self._take_ahead(batch) or self.encode(batch)
            last = start + self.batch_size >= len(todo)
            decoded = self.decode(
                encoded, [prompts[i] for i in idx], self._encode_upcoming if last else None
            )
            for i, ms in zip(idx, decoded, strict=True):
                results[i] = ms
        self._upcoming = []
        return results

    def prefetch(self, images: Sequence[np.ndarray]) -> None:
        """Encode ``images`` (at most one batch) while the next :meth:`segment` call waits for
        its last decoder results, so the device never runs dry between calls; that call
        uses the embeddings if it gets the same arrays (anything else discards them)."""
        self._upcoming = list(images) if 0 < len(images) <= self.batch_size else []

    def _encode_upcoming(self) -> None:
        if self._upcoming:
            self._ahead = (self._upcoming, self.encode(self._upcoming))
            self._upcoming = []

    def _take_ahead(self, images: list[np.ndarray]) -> Encoded | None:
        ahead, self._ahead = self._ahead, None
        if ahead is None or len(ahead[0]) != len(images):
            return None
        same = all(a is b for a, b in zip(ahead[0], images, strict=True))
        return ahead[1] if same else None

    # ------------------------------------------------------------------ benchmarks

    def model_forward(
        self, pixels: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder + decoder alone, on pre-loaded tensors (the "model only" benchmark).

        Args:
            pixels: (B, 3, S, S) preprocessed input on the device (see :meth:`preprocess`).
            boxes: (B, M, 4) ``xyxy`` box prompts in model-input coordinates, on the device.

        Returns:
            Low-resolution logits (B, M, s, s) and predicted IoU (B, M), decoded in chunks of
            ``chunk_size``; no postprocessing, no copy to the host.
        """
        b, m = int(boxes.shape[0]), int(boxes.shape[1])
        with torch.inference_mode(), self._autocast():
            emb, hq = self._run_encoder(pixels)
            flat = boxes.reshape(b * m, 4).float()
            index = torch.arange(b, device=pixels.device).repeat_interleave(m)
            lows, scores = [], []
            for start in range(0, b * m, self.chunk_size):
                sl = slice(start, start + self.chunk_size)
                low, score = self._decode_chunk(emb, hq, index[sl], flat[sl], None, None)
                lows.append(low)
                scores.append(score)
        low = torch.cat(lows).reshape(b, m, *lows[0].shape[-2:]) if lows else torch.zeros(0)
        return low, torch.cat(scores).reshape(b, m) if scores else torch.zeros(0)

    def warmup(self, batch_size: int | None = None, n_boxes: int = 4) -> float:
        """Run the model once on a blank batch (compiles it when ``compile`` is set); seconds."""
        size = self.config.image_size
        b = batch_size or self.batch_size
        pixels = torch.zeros((b, 3, size, size), device=self.device)
        boxes = torch.tensor([[0.0, 0.0, size / 2, size / 2]], device=self.device).expand(
            b, n_boxes, 4
        )
        start = time.perf_counter()
        self.model_forward(pixels, boxes.contiguous())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
