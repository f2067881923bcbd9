"""A realistic-looking aerial scene for GrabCut, with ground-truth masks (no files needed).

Textured background (smooth illumination gradient, grain noise, a grass-like low-frequency
texture, two asphalt roads with lane marks), and objects whose shape is *not* their rotated
box (so the box is not the answer): ships (pointed hulls) with deck texture, low-contrast
vehicles, small cars of a few pixels, a round tank, and a long thin diagonal pier. Each object
comes with its rotated box (the annotation) and its true mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from samrs.core.geometry import rasterize_polygon, rbox_polygon


@dataclass(frozen=True)
class SceneObject:
    """One object: its kind, rotated box polygon (8 floats) and true mask."""

    kind: str
    polygon: tuple[float, ...]
    mask: np.ndarray


def _hull(cx: float, cy: float, length: float, beam: float, angle: float) -> np.ndarray:
    """A ship outline: a hexagon with pointed bow and stern inside its rotated box."""
    half_l, half_b = length / 2, beam / 2
    local = np.array(
        [
            [-half_l, 0.0],
            [-half_l * 0.6, -half_b],
            [half_l * 0.55, -half_b],
            [half_l, 0.0],
            [half_l * 0.55, half_b],
            [-half_l * 0.6, half_b],
        ]
    )
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return local @ rot.T + [cx, cy]


def realistic_scene(seed: int = 0, size: int = 512) -> tuple[np.ndarray, list[SceneObject]]:
    """``(rgb image, objects)`` of a deterministic synthetic aerial scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    base = 95 + 25 * (xx / size) + 15 * np.sin(yy / size * 3.0)  # illumination gradient
    blobs = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 9)
    base += 60 * blobs / (np.abs(blobs).max() + 1e-9)  # fields / vegetation patches
    image = np.stack([base * 0.85, base * 1.0, base * 0.8], axis=2)
    # two asphalt roads with lane marks
    for p0, p1, width in (((0, 140), (size, 220), 22), ((300, 0), (360, size), 18)):
        road = np.zeros((size, size), np.uint8)
        cv2.line(road, p0, p1, 1, width)
        image[road.astype(bool)] = (70, 72, 75)
        mark = np.zeros((size, size), np.uint8)
        cv2.line(mark, p0, p1, 1, 1)
        image[mark.astype(bool) & (rng.random((size, size)) < 0.5)] = (180, 180, 170)
    objects: list[SceneObject] = []

    def add(kind: str, outline: np.ndarray, polygon: tuple[float, ...], colour, texture: float):
        mask = rasterize_polygon(outline.reshape(-1), size, size)
        tex = cv2.GaussianBlur(rng.normal(0, texture, (size, size)), (0, 0), 1.5)
        for c in range(3):
            image[..., c][mask] = colour[c] + tex[mask]
        if kind == "ship":  # superstructure: a darker block along the keel, aft
            poly = np.asarray(polygon).reshape(4, 2)
            centre, axis = poly.mean(axis=0), (poly[1] - poly[0]) / 2
            across = (poly[3] - poly[0]) / 2
            block = np.array(
                [
                    centre + s * axis * 0.1 + t * across * 0.45
                    for s, t in ((-4, -1), (-1, -1), (-1, 1), (-4, 1))
                ]
            )
            deck = rasterize_polygon(block.reshape(-1), size, size) & mask
            image[deck] = np.asarray(colour) * 0.7
        objects.append(SceneObject(kind, polygon, mask))

    # ships: pointed hulls with deck texture, some low contrast
    for cx, cy, length, beam, angle, colour in (
        (90, 60, 90, 26, 10, (175, 180, 170)),
        (420, 70, 70, 20, -35, (135, 150, 125)),  # low contrast against the field
        (180, 330, 110, 30, 55, (190, 185, 170)),
        (440, 300, 60, 18, 80, (60, 70, 80)),  # dark hull
    ):
        outline = _hull(cx, cy, length, beam, angle)
        add("ship", outline, rbox_polygon(cx, cy, length, beam, np.deg2rad(angle)), colour, 12)
    # a dense harbour row: same-coloured hulls side by side, 3 px apart
    for k in range(5):
        cx, cy = 40 + k * 21, 255
        outline = _hull(cx, cy, 64, 18, 90)
        add("ship", outline, rbox_polygon(cx, cy, 64, 18, np.deg2rad(90)), (185, 185, 180), 12)
    # storage tank: a disc in its box
    disc = np.array(
        [[250 + 22 * np.cos(t), 430 + 22 * np.sin(t)] for t in np.linspace(0, 2 * np.pi, 40)[:-1]]
    )
    add("tank", disc, rbox_polygon(250, 430, 44, 44, 0.0), (200, 205, 195), 10)
    # vehicles: rounded rectangles on the roads (the box corners are road)
    for cx, cy, length, beam, angle in ((60, 155, 22, 11, 17), (200, 185, 26, 12, 17)):
        local = cv2.ellipse2Poly((0, 0), (int(length / 2), int(beam / 2)), 0, 0, 360, 20)
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        outline = local.astype(np.float64) @ rot.T + [cx, cy]
        add("vehicle", outline, rbox_polygon(cx, cy, length, beam, a), (150, 60, 60), 12)
    # tiny car: a few pixels
    add(
        "small-vehicle",
        np.array([[330, 400], [334, 400], [334, 403], [330, 403]], float),
        (329.0, 399.0, 335.0, 399.0, 335.0, 404.0, 329.0, 404.0),
        (230, 230, 230),
        2,
    )
    # a speck: below GrabCut's minimum side, it must fall back (and say so)
    add(
        "speck",
        np.array([[100, 470], [103, 470], [103, 472], [100, 472]], float),
        (100.0, 470.0, 103.0, 470.0, 103.0, 472.0, 100.0, 472.0),
        (240, 240, 240),
        1,
    )
    # a long thin diagonal pier (the box is tight: the object is the box, minus its ends)
    length, beam, angle = 230.0, 9.0, np.deg2rad(-40)
    outline = np.array(rbox_polygon(380, 420, length - 8, beam - 2, angle)).reshape(4, 2)
    add("pier", outline, rbox_polygon(380, 420, length, beam + 2, angle), (150, 145, 125), 10)
    # an annotated object with no contrast at all: nothing for GrabCut to find
    ghost = rasterize_polygon(rbox_polygon(470, 200, 30, 14, 0.3), size, size)
    objects.append(SceneObject("ghost", rbox_polygon(470, 200, 30, 14, 0.3), ghost))
    image = cv2.GaussianBlur(image, (0, 0), 1.2)  # soft, low-contrast object edges
    image += rng.normal(0, 8, image.shape)  # sensor grain
    return np.clip(image, 0, 255).astype(np.uint8), objects
