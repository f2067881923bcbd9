"""One root for samrs's exceptions, and one place in the CLI that reports them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from click.testing import CliRunner

import samrs
from samrs.cli import main
from samrs.errors import SamrsError


def samrs_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in a samrs module (the CLI package aside)."""
    found = {}
    for info in pkgutil.walk_packages(samrs.__path__, "samrs."):
        if info.name.startswith("samrs.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def test_every_samrs_exception_derives_from_samrs_error() -> None:
    classes = samrs_exceptions()
    assert len(classes) >= 17  # the 18 of issue 19, ImageTooLargeError included
    outside = [c.__qualname__ for c in classes if not issubclass(c, SamrsError)]
    assert outside == []


def test_built_in_mixins_are_kept() -> None:
    from samrs.analysis.show import ImageNotFoundError
    from samrs.build.lock import BuildLockedError
    from samrs.outputs.manifest import ManifestError
    from samrs.sources import SourceError

    assert issubclass(ManifestError, ValueError)
    assert issubclass(SourceError, ValueError)
    assert issubclass(BuildLockedError, RuntimeError)
    assert issubclass(ImageNotFoundError, LookupError)


def test_cli_reports_a_samrs_error_as_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["stats", str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert str(tmp_path) in lines[0]
    assert "Traceback" not in result.output


def test_cli_reports_an_error_the_command_no_longer_catches(tmp_path: Path) -> None:
    """`samrs inspect` used to catch SourceError itself; the group does it now."""
    result = CliRunner().invoke(main, ["inspect", "--source", "dota", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: no DOTA images/ or labelTxt/ folder found under {tmp_path}"
    )
