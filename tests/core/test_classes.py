"""Class tables: official and SAMRS orders, spelling aliases, palettes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samrs.core.classes import (
    DEFAULT_VERSION,
    UNLABELLED,
    VERSIONS,
    as_color,
    class_table,
    normalize_class_name,
)

DOTA_V1 = [
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle",
    "large-vehicle", "ship", "tennis-court", "basketball-court", "storage-tank",
    "soccer-ball-field", "roundabout", "harbor", "swimming-pool", "helicopter",
]  # fmt: skip
# BboxToolkit's DOTA v2.0 order, which SAMRS (SOTA) uses
DOTA_V2_SAMRS = [
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship",
    "soccer-ball-field", "basketball-court", "ground-track-field", "small-vehicle",
    "baseball-diamond", "tennis-court", "roundabout", "storage-tank", "harbor",
    "container-crane", "airport", "helipad",
]  # fmt: skip
# SAMRS's FAIR1M (FAST) order, from its generation scripts (mapping.py): sorted ignoring case
FAIR1M_SAMRS = [
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737",
    "Boeing747", "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck",
    "Dry-Cargo-Ship", "Dump-Truck", "Engineering-Ship", "Excavator", "Fishing-Boat",
    "Football-Field", "Intersection", "Liquid-Cargo-Ship", "Motorboat", "other-airplane",
    "other-ship", "other-vehicle", "Passenger-Ship", "Roundabout", "Small-Car", "Tennis-Court",
    "Tractor", "Trailer", "Truck-Tractor", "Tugboat", "Van", "Warship",
]  # fmt: skip
# mmsegmentation's iSAID palette (class name as iSAID spells it -> colour)
ISAID_PALETTE = {
    "ship": (0, 0, 63), "store_tank": (0, 63, 63), "baseball_diamond": (0, 63, 0),
    "tennis_court": (0, 63, 127), "basketball_court": (0, 63, 191),
    "Ground_Track_Field": (0, 63, 255), "Bridge": (0, 127, 63), "Large_Vehicle": (0, 127, 127),
    "Small_Vehicle": (0, 0, 127), "Helicopter": (0, 0, 191), "Swimming_pool": (0, 0, 255),
    "Roundabout": (0, 191, 127), "Soccer_ball_field": (0, 127, 191), "plane": (0, 127, 255),
    "Harbor": (0, 100, 155),
}  # fmt: skip
ALL_TABLES = [
    (source, version, order)
    for source, versions in VERSIONS.items()
    for version in versions
    for order in ("official", "samrs")
]


def test_dota_official_orders_and_versions() -> None:
    assert list(class_table("dota", "1.0").names) == DOTA_V1
    assert list(class_table("dota", "1.5").names) == [*DOTA_V1, "container-crane"]
    assert list(class_table("dota", "2.0").names) == [
        *DOTA_V1, "container-crane", "airport", "helipad"
    ]  # fmt: skip
    assert class_table("dota").version == DEFAULT_VERSION["dota"] == "1.0"


def test_dota_samrs_order() -> None:
    assert list(class_table("dota", "2.0", "samrs").names) == DOTA_V2_SAMRS
    # older versions keep the SAMRS relative order of their own classes
    v1 = class_table("dota", "1.0", "samrs")
    assert list(v1.names) == [n for n in DOTA_V2_SAMRS if n in DOTA_V1]
    assert v1.lookup("plane") == 4 and class_table("dota", "1.0").lookup("plane") == 0


def test_dior_orders_and_aliases() -> None:
    official = class_table("dior")
    samrs = class_table("dior", order="samrs")
    assert len(official) == len(samrs) == 20
    assert official.names[6:9] == ("dam", "expressway-service-area", "expressway-toll-station")
    assert samrs.names[6:9] == ("expressway-service-area", "expressway-toll-station", "dam")
    assert sorted(official.names) == sorted(samrs.names)
    # raw DIOR spellings and torchgeo's
    for spelling in ("Expressway-Service-area", "expresswayservicearea", "EXPRESSWAY SERVICE AREA"):
        assert official.lookup(spelling) == 7 and samrs.lookup(spelling) == 6
    assert official.lookup("Expressway-toll-station") == 8
    assert official.lookup("golffield") == 9 and official.lookup("golf field") == 9
    assert official.lookup("windmills") is None


def test_fair1m_orders_and_spellings() -> None:
    for version in ("1.0", "2.0"):
        official = class_table("fair1m", version)
        samrs = class_table("fair1m", version, "samrs")
        assert len(official) == len(samrs) == 37
        assert official.names[:2] == ("Passenger Ship", "Motorboat")
        assert list(samrs.names) == FAIR1M_SAMRS
        assert all(" " not in name for name in samrs.names)
        for spelling in ("Small Car", "small-car", "Small_Car", "small car", " SMALL CAR "):
            assert official.names[official.lookup(spelling)] == "Small Car"
            assert samrs.lookup(spelling) == 29 and samrs.names[29] == "Small-Car"
        assert official.lookup("other-ship") == 4 and official.lookup("Other Ship") == 4
        assert official.lookup("Boeing 737") == official.lookup("Boeing737")
        assert official.lookup("Car") is None
    sup = dict(zip(class_table("fair1m").names, class_table("fair1m").supercategories, strict=True))
    assert sup["Small Car"] == "Vehicle" and sup["A220"] == "Airplane" and sup["Bridge"] == "Road"
    samrs = class_table("fair1m", order="samrs")
    sup = dict(zip(samrs.names, samrs.supercategories, strict=True))
    assert sup["Small-Car"] == "Vehicle" and sup["other-ship"] == "Ship"


def test_isaid_names_match_dota_classes() -> None:
    table = class_table("isaid")
    assert list(table.names) == DOTA_V1
    for isaid_name, colour in ISAID_PALETTE.items():
        class_id = table.lookup(isaid_name)
        assert class_id is not None, isaid_name
        assert table.palette[class_id] == colour, isaid_name
    assert table.lookup("storage_tank") == table.lookup("store_tank") == 9
    assert table.lookup("Small_Vehicle") == 4 and table.lookup("Large_Vehicle") == 5


def test_dota_palette_is_the_isaid_palette_in_both_orders() -> None:
    isaid = class_table("isaid")
    for order in ("official", "samrs"):
        table = class_table("dota", "2.0", order)
        for name, colour in zip(table.names, table.palette, strict=True):
            if name in isaid.names:
                assert colour == isaid.palette[isaid.names.index(name)]
    assert len(set(class_table("dota", "2.0").palette)) == 18


@pytest.mark.parametrize(("source", "version", "order"), ALL_TABLES)
def test_every_table_is_well_formed(source: str, version: str, order: str) -> None:
    table = class_table(source, version, order)
    assert (table.source, table.version, table.order) == (source, version, order)
    assert 0 < len(table) < UNLABELLED
    assert len(set(table.names)) == len(table)
    # every name and every palette colour is distinct, and a name finds its own id
    assert len({normalize_class_name(n) for n in table.names}) == len(table)
    assert len(set(table.palette)) == len(table)
    assert all(table.lookup(name) == i for i, name in enumerate(table.names))
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in table.palette)
    # a class keeps its colour whatever the order
    other = class_table(source, version, "samrs" if order == "official" else "official")
    for name, colour in zip(table.names, table.palette, strict=True):
        assert other.palette[other.lookup(name)] == colour
    described = table.to_dict()
    assert [c["name"] for c in described["classes"]] == list(table.names)
    assert described["unlabelled"] == UNLABELLED


def test_as_color_is_three_python_ints() -> None:
    color = as_color(np.array([200, 0, 63], dtype=np.uint8))
    assert color == (200, 0, 63) and all(type(v) is int for v in color)
    assert as_color([1, 2, 3]) == (1, 2, 3)
    for wrong in ([1, 2], [1, 2, 3, 4]):
        with pytest.raises(ValueError, match="values to unpack"):
            as_color(wrong)


@pytest.mark.parametrize(("source", "version", "order"), ALL_TABLES)
def test_full_palette_paints_a_label_png(source: str, version: str, order: str) -> None:
    table = class_table(source, version, order)
    flat = table.full_palette()
    assert len(flat) == 768 and all(0 <= v <= 255 for v in flat)
    label = np.full((4, len(table) + 1), UNLABELLED, dtype=np.uint8)
    label[:2, : len(table)] = np.arange(len(table), dtype=np.uint8)
    image = Image.fromarray(label, mode="P")
    image.putpalette(flat)
    rgb = np.asarray(image.convert("RGB"))
    assert [tuple(rgb[0, i]) for i in range(len(table))] == list(table.palette)
    assert tuple(rgb[3, 0]) == (0, 0, 0)  # unlabelled: the background colour
    white = table.full_palette(background=(255, 255, 255))
    assert white[3 * UNLABELLED : 3 * UNLABELLED + 3] == [255, 255, 255]


def test_unknown_source_version_and_order_name_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of dota, dior, fair1m, hrsc, isaid"):
        class_table("kitti")
    with pytest.raises(ValueError, match=r"unknown dota version '3\.0'; expected one of 1\.0"):
        class_table("dota", "3.0")
    with pytest.raises(ValueError, match="expected one of official, samrs"):
        class_table("dota", "1.0", "alphabetical")


def test_normalize_class_name() -> None:
    assert normalize_class_name(" Small  Car ") == normalize_class_name("small-car") == "smallcar"
    assert normalize_class_name("Ground_Track_Field") == "groundtrackfield"
