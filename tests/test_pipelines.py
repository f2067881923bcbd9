"""The recipes in pipelines/: each states and reads the annotation set SAMRS used."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs.build.config import BuildConfig
from samrs.cli.build import load_config_file
from samrs.sources import read_dataset

PIPELINES = Path(__file__).parent.parent / "pipelines"
DIOR = Path(__file__).parent / "fixtures/sources/dior"
# recipe -> (source, version, the set named in its "# Reads:" comment)
EXPECTED = {
    "sota.toml": ("dota", "2.0", "DOTA v2.0 oriented boxes"),
    "sior.toml": ("dior", "hbb", "DIOR's horizontal boxes"),
    "fast.toml": ("fair1m", "2.0", "FAIR1M 2.0 oriented boxes"),
}


def test_every_recipe_is_listed() -> None:
    assert sorted(p.name for p in PIPELINES.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_states_the_annotation_set_it_reads(name: str) -> None:
    source, version, stated = EXPECTED[name]
    values = load_config_file(str(PIPELINES / name))
    assert (values["source"], values["version"]) == (source, version)
    config = BuildConfig.from_dict({**values, "root": "r", "out": "o"})
    assert (config.source, config.version) == (source, version)
    reads = [line for line in (PIPELINES / name).read_text().splitlines() if "# Reads:" in line]
    assert len(reads) == 1 and stated in reads[0]


def test_sior_reads_the_horizontal_set_where_both_exist() -> None:
    assert (DIOR / "Annotations/Oriented Bounding Boxes").is_dir()  # the default would take it
    values = load_config_file(str(PIPELINES / "sior.toml"))
    dataset = read_dataset(
        "dior", DIOR, version=values["version"], class_order=values["class_order"]
    )
    files = {im.annotation_file for im in dataset.images if im.annotation_file}
    assert files and all("Horizontal Bounding Boxes" in f for f in files)
    default = read_dataset("dior", DIOR, class_order=values["class_order"])
    assert any("Oriented Bounding Boxes" in (im.annotation_file or "") for im in default.images)
