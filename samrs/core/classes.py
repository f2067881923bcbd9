"""Versioned class tables per source: official and SAMRS orders, spelling aliases, palettes.

A class table maps canonical class names to contiguous ids ``0..K-1`` (the pixel values of
semantic labels; 255 is unlabelled). Names from files are matched through
:func:`normalize_class_name`, so ``Small Car``, ``small-car`` and ``small_car`` are one class.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

Color = tuple[int, int, int]


def as_color(values: Iterable[int]) -> Color:
    """The 3 values ``R, G, B`` as a :data:`Color` of Python ints (ValueError for another
    count)."""
    r, g, b = (int(v) for v in values)
    return (r, g, b)


UNLABELLED = 255
"""Pixel value of unlabelled pixels in semantic labels (the mmsegmentation ignore index)."""


def normalize_class_name(name: str) -> str:
    """The key under which a class name is matched: lower case, no spaces, '-' or '_'."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@dataclass(frozen=True)
class ClassTable:
    """An ordered class table of one source and version.

    Attributes:
        source: dataset format name.
        version: dataset version.
        order: ``official`` or ``samrs``.
        names: canonical class names; the id of a class is its position.
        palette: one RGB colour per class.
        supercategories: per class, the supercategory name (COCO) or None.
        aliases: extra spellings (normalized key -> canonical name).
    """

    source: str
    version: str
    order: str
    names: tuple[str, ...]
    palette: tuple[Color, ...]
    supercategories: tuple[str | None, ...]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.palette) == len(self.supercategories)):
            raise ValueError("names, palette and supercategories must have the same length")
        if len(self.names) >= UNLABELLED:
            raise ValueError(f"at most {UNLABELLED - 1} classes fit an 8-bit label")

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, name: str) -> int | None:
        """Class id for a name as spelled in a file, or None if the table does not know it."""
        key = normalize_class_name(name)
        canonical = self.aliases.get(key)
        if canonical is None:
            for candidate in self.names:
                if normalize_class_name(candidate) == key:
                    canonical = candidate
                    break
        return None if canonical is None else self.names.index(canonical)

    def full_palette(self, background: Color = (0, 0, 0)) -> list[int]:
        """A flat 768-entry palette: class colours first, ``background`` for the rest."""
        flat: list[int] = []
        for i in range(256):
            flat.extend(self.palette[i] if i < len(self.palette) else background)
        return flat

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description (written to samrs.json and export metadata)."""
        return {
            "source": self.source,
            "version": self.version,
            "order": self.order,
            "classes": [
                {"id": i, "name": n, "supercategory": s, "color": list(c)}
                for i, (n, s, c) in enumerate(
                    zip(self.names, self.supercategories, self.palette, strict=True)
                )
            ],
            "unlabelled": UNLABELLED,
        }


def distinct_palette(n: int, seed: float = 0.0) -> tuple[Color, ...]:
    """``n`` well-separated colours (golden-ratio hue steps), deterministic."""
    colors = []
    for i in range(n):
        hue = (seed + i * 0.618033988749895) % 1.0
        sat = 0.65 + 0.3 * ((i // 7) % 2)
        val = 0.95 - 0.25 * ((i // 3) % 2)
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colors)


# --- DOTA -------------------------------------------------------------------------------
DOTA_V1_0 = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle",
    "large-vehicle", "ship", "tennis-court", "basketball-court", "storage-tank",
    "soccer-ball-field", "roundabout", "harbor", "swimming-pool", "helicopter",
)  # fmt: skip
DOTA_V1_5 = (*DOTA_V1_0, "container-crane")
DOTA_V2_0 = (*DOTA_V1_5, "airport", "helipad")
DOTA_SAMRS_V2_0 = (
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship",
    "soccer-ball-field", "basketball-court", "ground-track-field", "small-vehicle",
    "baseball-diamond", "tennis-court", "roundabout", "storage-tank", "harbor",
    "container-crane", "airport", "helipad",
)  # fmt: skip

# iSAID colours (as used by SAMRS and mmsegmentation's iSAID dataset) for the DOTA classes;
# the three classes iSAID lacks get colours of the same family.
DOTA_COLORS: dict[str, Color] = {
    "ship": (0, 0, 63),
    "storage-tank": (0, 63, 63),
    "baseball-diamond": (0, 63, 0),
    "tennis-court": (0, 63, 127),
    "basketball-court": (0, 63, 191),
    "ground-track-field": (0, 63, 255),
    "bridge": (0, 127, 63),
    "large-vehicle": (0, 127, 127),
    "small-vehicle": (0, 0, 127),
    "helicopter": (0, 0, 191),
    "swimming-pool": (0, 0, 255),
    "roundabout": (0, 191, 127),
    "soccer-ball-field": (0, 127, 191),
    "plane": (0, 127, 255),
    "harbor": (0, 100, 155),
    "container-crane": (0, 191, 191),
    "airport": (0, 191, 255),
    "helipad": (0, 255, 127),
}

ISAID_NAMES = {
    "plane": "plane", "ship": "ship", "storage-tank": "storage_tank",
    "baseball-diamond": "baseball_diamond", "tennis-court": "tennis_court",
    "basketball-court": "basketball_court", "ground-track-field": "Ground_Track_Field",
    "harbor": "Harbor", "bridge": "Bridge", "large-vehicle": "Large_Vehicle",
    "small-vehicle": "Small_Vehicle", "helicopter": "Helicopter", "roundabout": "Roundabout",
    "soccer-ball-field": "Soccer_ball_field", "swimming-pool": "Swimming_pool",
}  # fmt: skip
"""DOTA class name -> iSAID category name (iSAID categories are matched by name)."""

# --- DIOR -------------------------------------------------------------------------------
DIOR_OFFICIAL = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam",
    "expressway-service-area", "expressway-toll-station", "golffield", "groundtrackfield",
    "harbor", "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation",
    "vehicle", "windmill",
)  # fmt: skip
DIOR_SAMRS = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney",
    "expressway-service-area", "expressway-toll-station", "dam", "golffield",
    "groundtrackfield", "harbor", "overpass", "ship", "stadium", "storagetank",
    "tenniscourt", "trainstation", "vehicle", "windmill",
)  # fmt: skip

# --- FAIR1M -----------------------------------------------------------------------------
FAIR1M_GROUPS: dict[str, tuple[str, ...]] = {
    "Ship": ("Passenger Ship", "Motorboat", "Fishing Boat", "Tugboat", "other-ship",
             "Engineering Ship", "Liquid Cargo Ship", "Dry Cargo Ship", "Warship"),
    "Vehicle": ("Small Car", "Bus", "Cargo Truck", "Dump Truck", "other-vehicle", "Van",
                "Trailer", "Tractor", "Excavator", "Truck Tractor"),
    "Airplane": ("Boeing737", "Boeing747", "Boeing777", "Boeing787", "ARJ21", "C919", "A220",
                 "A321", "A330", "A350", "other-airplane"),
    "Court": ("Baseball Field", "Basketball Court", "Football Field", "Tennis Court"),
    "Road": ("Roundabout", "Intersection", "Bridge"),
}  # fmt: skip
FAIR1M_OFFICIAL = tuple(name for group in FAIR1M_GROUPS.values() for name in group)
FAIR1M_SUPER = {name: group for group, names in FAIR1M_GROUPS.items() for name in names}
FAIR1M_SAMRS = (
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737",
    "Boeing747", "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck",
    "Dry-Cargo-Ship", "Dump-Truck", "Engineering-Ship", "Excavator", "Fishing-Boat",
    "Football-Field", "Intersection", "Liquid-Cargo-Ship", "Motorboat", "other-airplane",
    "other-ship", "other-vehicle", "Passenger-Ship", "Roundabout", "Small-Car", "Tennis-Court",
    "Tractor", "Trailer", "Truck-Tractor", "Tugboat", "Van", "Warship",
)  # fmt: skip
"""SAMRS (FAST) order: spaces -> ``-``, sorted case-insensitively (``other-*`` among the O's),
as in the SAMRS generation scripts' ``mapping.py``."""

SOURCES = ("dota", "dior", "fair1m", "hrsc", "isaid")
VERSIONS: dict[str, tuple[str, ...]] = {
    "dota": ("1.0", "1.5", "2.0"),
    "dior": ("1.0",),
    "fair1m": ("1.0", "2.0"),
    "hrsc": ("2016",),
    "isaid": ("1.0",),
}
DEFAULT_VERSION = {"dota": "1.0", "dior": "1.0", "fair1m": "2.0", "hrsc": "2016", "isaid": "1.0"}
ORDERS = ("official", "samrs")


def class_table(source: str, version: str | None = None, order: str = "official") -> ClassTable:
    """The class table of ``source`` / ``version`` in the ``official`` or ``samrs`` order.

    Raises:
        ValueError: unknown source, version or order (the message lists the valid ones).
    """
    if source not in VERSIONS:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    version = version or DEFAULT_VERSION[source]
    if version not in VERSIONS[source]:
        raise ValueError(
            f"unknown {source} version {version!r}; expected one of {', '.join(VERSIONS[source])}"
        )
    if order not in ORDERS:
        raise ValueError(f"unknown class order {order!r}; expected one of {', '.join(ORDERS)}")

    aliases: dict[str, str] = {}
    if source == "dota":
        names = {"1.0": DOTA_V1_0, "1.5": DOTA_V1_5, "2.0": DOTA_V2_0}[version]
        if order == "samrs":
            names = tuple(n for n in DOTA_SAMRS_V2_0 if n in names)
        palette = tuple(DOTA_COLORS[n] for n in names)
        supers: tuple[str | None, ...] = (None,) * len(names)
    elif source == "isaid":
        names = DOTA_V1_0
        palette = tuple(DOTA_COLORS[n] for n in names)
        supers = (None,) * len(names)
        aliases = {normalize_class_name(v): k for k, v in ISAID_NAMES.items()}
        aliases[normalize_class_name("store_tank")] = "storage-tank"
    elif source == "dior":
        names = DIOR_SAMRS if order == "samrs" else DIOR_OFFICIAL
        palette = distinct_palette(len(names), seed=0.1)
        supers = (None,) * len(names)
        aliases = {normalize_class_name("expresswayservicearea"): "expressway-service-area"}
    elif source == "fair1m":
        official = FAIR1M_OFFICIAL
        names = FAIR1M_SAMRS if order == "samrs" else official
        supers = tuple(FAIR1M_SUPER[n.replace("-", " ") if n not in FAIR1M_SUPER else n]
                       for n in names)  # fmt: skip
        palette = distinct_palette(len(names), seed=0.3)
    else:  # hrsc: SAMRS uses the single level-1 class
        names = ("ship",)
        palette = ((0, 0, 63),)
        supers = (None,)
    # colours follow the class, not its position, so both orders paint a class alike
    if source in ("dior", "fair1m") and order == "samrs":
        base = class_table(source, version, "official")
        colors: list[Color] = []
        for n in names:
            i = base.lookup(n)
            if i is None:  # pragma: no cover - every SAMRS class is an official one (tested)
                raise AssertionError(f"{source} SAMRS class {n!r} is not an official class")
            colors.append(base.palette[i])
        palette = tuple(colors)
    return ClassTable(source, version, order, tuple(names), palette, supers, aliases)
