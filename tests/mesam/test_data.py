"""MeSAM data: label space, manifests, splits, letterbox/augmentation, sampler, loss, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs.core.classes import UNLABELLED
from samrs.mesam.data import (
    DataError,
    EpochSampler,
    SegmentationDataset,
    dihedral,
    label_space_from_build,
    letterbox_image,
    letterbox_label,
    read_build,
    split_samples,
)
from samrs.mesam.losses import ce_dice_loss
from samrs.mesam.metrics import ConfusionMatrix
from samrs.outputs.semantic import semantic_palette
from tests.helpers.mesam import PLANE, SHIP, TABLE, make_seg_build


def _meta(background: bool) -> dict:
    return {"class_table": TABLE.to_dict(), "config": {"background": background}}


def test_label_space_without_background():
    space = label_space_from_build(_meta(False))
    assert space.num_classes == len(TABLE)
    assert space.names[0] == "unlabelled" and space.names[1:] == TABLE.names
    assert space.dataset_ids == (255, *range(len(TABLE)))
    lut = space.lut()
    assert lut[0] == 1 and lut[PLANE] == PLANE + 1 and lut[255] == 255
    assert not space.scored and space.scored_channels() == list(range(1, len(TABLE) + 1))
    assert space.palette() == semantic_palette(TABLE)
    # channel 0 predictions are written back as unlabelled
    assert space.channel_to_id()[0] == 255 and space.channel_to_id()[PLANE + 1] == PLANE


def test_label_space_with_background_and_subset():
    space = label_space_from_build(_meta(True), classes=["Ship", "plane"])
    assert space.names == ("background", "plane", "ship")  # table order, not the given order
    assert space.dataset_ids == (0, PLANE + 1, SHIP + 1)
    lut = space.lut()
    assert (lut[0], lut[PLANE + 1], lut[SHIP + 1]) == (0, 1, 2)
    others = [v for v in range(1, 255) if v not in (PLANE + 1, SHIP + 1)]
    assert (lut[others] == 255).all() and lut[255] == 255
    assert space.scored and space.palette() == semantic_palette(TABLE, background=True)
    with pytest.raises(DataError, match=r"unknown class.*airplane"):
        label_space_from_build(_meta(True), classes=["airplane"])


def test_unlabelled_as_background():
    space = label_space_from_build(_meta(False), unlabelled_as_background=True)
    assert space.lut()[255] == 0 and space.scored and space.names[0] == "background"


def test_read_build_skips_error_rows_and_resolves_paths(tmp_path):
    facts = make_seg_build(tmp_path / "b", n_train=3, n_val=2)
    build = read_build(tmp_path / "b")
    assert [s.image_id for s in build.samples] == facts["ids"]
    assert build.n_error_rows == 1
    assert all(s.image_path.startswith(str(tmp_path / "b")) for s in build.samples)
    train, val = split_samples(build.samples)
    assert [s.image_id for s in train] == facts["train"]
    assert [s.image_id for s in val] == facts["val"]
    with pytest.raises(DataError, match=r"no training images.*splits found: train, val"):
        split_samples(build.samples, train_splits=("trainval",))
    with pytest.raises(DataError, match=r"samrs\.json"):
        read_build(tmp_path)


def test_seeded_split_is_deterministic_and_disjoint(tmp_path):
    make_seg_build(tmp_path / "b", n_train=8, n_val=2)
    samples = read_build(tmp_path / "b").samples
    train, val = split_samples(samples, val_fraction=0.3, seed=1)
    again = split_samples(list(reversed(samples)), val_fraction=0.3, seed=1)
    assert {s.image_id for s in val} == {s.image_id for s in again[1]}
    assert len(val) == 3 and len(train) == 7
    assert not {s.image_id for s in train} & {s.image_id for s in val}
    other = split_samples(samples, val_fraction=0.3, seed=2)[1]
    assert {s.image_id for s in other} != {s.image_id for s in val}


def test_letterbox_keeps_aspect_and_pads_with_ignore():
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    label = np.zeros((20, 40), dtype=np.uint8)
    label[:, 20:] = 3
    out_i, out_l = letterbox_image(image, 16), letterbox_label(label, 16)
    assert out_i.shape == (16, 16, 3) and out_l.shape == (16, 16)
    assert (out_l[8:] == UNLABELLED).all() and (out_l[:8, :8] == 0).all()
    assert (out_l[:8, 8:] == 3).all()
    assert (out_i[8:] == (124, 116, 104)).all() and (out_i[:8] == 0).all()


def test_augmentation_moves_image_and_label_together(tmp_path):
    make_seg_build(tmp_path / "b", n_train=2, n_val=1)
    build = read_build(tmp_path / "b")
    space = label_space_from_build(build.meta)
    plain = SegmentationDataset(build.samples, space, 64)
    aug = SegmentationDataset(build.samples, space, 64, augment=True, seed=3)
    seen = set()
    for epoch in range(6):
        aug.epoch = epoch
        img, lab = aug[0]
        assert torch.equal(img, aug[0][0])  # seeded by (seed, epoch, index)
        red = (img[0] > 200) & (img[1] < 60)
        assert torch.equal(red, lab == PLANE + 1)  # the plane label follows the red pixels
        seen.add(img.numpy().tobytes())
    assert len(seen) > 1
    base_img, base_lab = plain[0]
    rotated = dihedral([base_img.permute(1, 2, 0).numpy(), base_lab.numpy()], 1, True)
    assert rotated[1].shape == (64, 64)


def test_epoch_sampler_shards_and_resumes():
    full = EpochSampler(10, shuffle=True, seed=4)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == list(range(10))
    full.set_epoch(3)
    assert list(full) != order
    shards = []
    for rank in range(3):
        s = EpochSampler(10, shuffle=True, seed=4, rank=rank, world=3)
        s.set_epoch(2)
        shards.append(list(s))
    assert [len(s) for s in shards] == [4, 4, 4]  # padded so every rank runs as many batches
    assert set().union(*shards) == set(range(10))
    resumed = EpochSampler(10, shuffle=True, seed=4)
    resumed.set_epoch(2, start=6)
    assert list(resumed) == order[6:] and len(resumed) == 4


# --- loss and metrics -----------------------------------------------------------------------


def test_ignored_pixels_do_not_affect_the_loss():
    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 8, 8))
    target[:, :3] = UNLABELLED
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    other = logits.detach().clone()
    other[:, :, :3] = torch.randn(2, 4, 3, 8) * 100  # anything at the ignored pixels
    other.requires_grad_(True)
    a = ce_dice_loss(logits, target)
    b = ce_dice_loss(other, target)
    for key in ("loss", "ce", "dice"):
        assert torch.equal(a[key], b[key])
    a["loss"].backward()
    b["loss"].backward()
    assert torch.equal(logits.grad, other.grad)
    assert (logits.grad[:, :, :3] == 0).all() and logits.grad[:, :, 3:].abs().sum() > 0
    # relabelling an ignored pixel as a class does change it
    changed = target.clone()
    changed[0, 0, 0] = 1
    assert not torch.equal(ce_dice_loss(logits, changed)["loss"], a["loss"])


def test_loss_values():
    target = torch.tensor([[[0, 1], [UNLABELLED, UNLABELLED]]])
    perfect = torch.full((1, 2, 2, 2), -50.0)
    perfect[0, 0, 0, 0] = perfect[0, 1, 0, 1] = 50.0
    out = ce_dice_loss(perfect, target)
    assert out["ce"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["dice"].item() == pytest.approx(0.0, abs=1e-6)
    uniform = ce_dice_loss(torch.zeros(1, 2, 2, 2), target)
    assert uniform["ce"].item() == pytest.approx(np.log(2))
    # per class: 1 - (2 * 0.5 + 1) / (1 + 1 + 1) = 1/3 with smooth = 1
    assert uniform["dice"].item() == pytest.approx(1 / 3)
    assert uniform["loss"].item() == pytest.approx(0.2 * np.log(2) + 0.8 / 3)
    empty = ce_dice_loss(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), UNLABELLED))
    assert torch.isfinite(empty["loss"]) and empty["ce"].item() == 0.0


def test_confusion_matrix_report():
    space = label_space_from_build(_meta(True), classes=["plane", "ship"])
    cm = ConfusionMatrix(3)
    target = torch.tensor([0, 0, 1, 1, 2, 255, 255])
    pred = torch.tensor([0, 1, 1, 1, 0, 2, 2])
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    report = cm.report(space)
    ious = {c["name"]: c["iou"] for c in report["classes"]}
    assert ious == {"background": pytest.approx(1 / 3), "plane": pytest.approx(2 / 3), "ship": 0.0}
    assert report["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert report["pixel_accuracy"] == pytest.approx(3 / 5)
    assert report["pixels"] == 5
    assert report["confusion_matrix"]["labels"] == ["background", "plane", "ship"]
    # without a background class, channel 0 is not scored and absent classes give no IoU
    space0 = label_space_from_build(_meta(False), classes=["plane", "ship"])
    cm0 = ConfusionMatrix(3)
    cm0.update(torch.tensor([0, 1]), torch.tensor([1, 1]))
    rep0 = cm0.report(space0)
    assert [c["name"] for c in rep0["classes"]] == ["plane", "ship"]
    assert rep0["classes"][1]["iou"] is None and rep0["miou"] == pytest.approx(0.5)
